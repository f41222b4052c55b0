"""Placing the model, layer by layer: activation checkpointing, torch.compile, then FSDP2 under torchrun or a plain
module in one process.

One process (the notebook kernel): fp32 master weights on the device, the forward under autocast in the compute
dtype that `precision.choose_precision` picked. Several processes: PyTorch FSDP2 `fully_shard` per decoder layer,
then the root (embeddings, final norm and lm_head stay in the root group, so the loss can use the lm_head
weight inside the root's forward), with `MixedPrecisionPolicy(param_dtype, reduce_dtype)`. With
`fsdp_cfg.hsdp_sharding_size=K` (HSDP, as XTuner) the ranks form a 2-D mesh, (world // K) replicas x K shards:
parameters are sharded inside each group of K consecutive ranks (one node) and replicated across groups, so the
per-layer all-gathers stay on a node's fast links and only the gradient all-reduce crosses nodes.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn

from ..config import FSDPConfig
from .distributed import DistInfo
from .precision import Precision


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    inner = model
    for attr in ("base_model", "model"):  # peft wrapper, then CausalLM -> decoder
        while hasattr(inner, attr) and not hasattr(inner, "layers"):
            inner = getattr(inner, attr)
    return inner.layers


def apply_recompute(model: nn.Module, fsdp_cfg: FSDPConfig) -> int:
    """Checkpoint the first int(L * recompute_ratio) decoder layers; returns how many.

    Uses transformers' own per-layer switch (GradientCheckpointingLayer), which checkpoints `forward` and keeps
    module hooks (FSDP2's) outside the recomputation and parameter names unchanged.
    """
    from torch.utils.checkpoint import checkpoint

    layers = decoder_layers(model)
    n = int(len(layers) * fsdp_cfg.recompute_ratio)
    fn = functools.partial(checkpoint, use_reentrant=False, preserve_rng_state=fsdp_cfg.checkpoint_preserve_rng_state)
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i < n
        layer._gradient_checkpointing_func = fn
    return n


def compile_layers(model: nn.Module, fsdp_cfg: FSDPConfig, logger: logging.Logger) -> int:
    """fsdp_cfg.torch_compile set explicitly: `torch.compile` each decoder layer in place (XTuner's granularity);
    returns how many. Left at its default (True, XTuner's) it is not applied, and the log says so."""
    if not fsdp_cfg.torch_compile:
        return 0
    if "torch_compile" not in fsdp_cfg.model_fields_set:
        logger.info("fsdp_cfg.torch_compile is at its default: not applied (eager layers; set "
                    "FSDPConfig(torch_compile=True) to compile each decoder layer)")
        return 0
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    return len(layers)


def refuse_unplaceable(fsdp_cfg: FSDPConfig, info: DistInfo) -> None:
    """Options that a run would otherwise accept and not apply (refused with the reason, never ignored)."""
    if fsdp_cfg.cpu_offload and not info.distributed:
        raise ValueError("fsdp_cfg.cpu_offload=True needs FSDP2, which the Trainer uses under torchrun with 2 or more "
                         "processes; in one process it would do nothing. Launch with torchrun, or lower the memory "
                         "with LoRA, recompute_ratio=1.0 or shorter packs (the fit check lists their estimates).")
    if fsdp_cfg.cpu_offload and info.device.type != "cuda":
        raise ValueError("fsdp_cfg.cpu_offload=True on a CPU run: the state already lives in host memory")


def device_mesh(fsdp_cfg: FSDPConfig, info: DistInfo):
    """XTuner's HSDP mesh (replicate, shard); None (FSDP2's default, 1-D over every rank) without HSDP."""
    from torch.distributed.device_mesh import init_device_mesh

    k = fsdp_cfg.hsdp_sharding_size
    if k is None:
        return None
    if info.world_size % k:
        raise ValueError(f"fsdp_cfg.hsdp_sharding_size={k} must divide the number of ranks ({info.world_size})")
    return init_device_mesh(info.device.type, (info.world_size // k, k),
                            mesh_dim_names=("hsdp_replicate", "hsdp_shard"))


def place_model(model: nn.Module, fsdp_cfg: FSDPConfig, info: DistInfo, precision: Precision) -> nn.Module:
    """Move (or, for a model on the meta device, only shard) the model; the caller `to_empty`s a meta model."""
    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta and not info.distributed:
        raise ValueError("place_model: a model on the meta device needs FSDP (torchrun) to be sharded first")
    if not on_meta:
        model.to(device=info.device)
    for p in model.parameters():  # fp32 master weights for what trains; frozen ones (a LoRA base) keep their dtype
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if not info.distributed:
        return model
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=precision.compute, reduce_dtype=precision.reduce)
    kw = dict(mesh=device_mesh(fsdp_cfg, info), mp_policy=mp, reshard_after_forward=fsdp_cfg.reshard_after_forward)
    if fsdp_cfg.cpu_offload:
        kw["offload_policy"] = CPUOffloadPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    return model
