"""Placing the model: activation checkpointing, then FSDP2 under torchrun or a plain module in one process.

One process (the notebook kernel): fp32 master weights on the device; on CUDA the forward runs under bf16
autocast (`compute_dtype`), on CPU in fp32. Several processes: PyTorch FSDP2 `fully_shard` per decoder layer,
then the root (embeddings, final norm and lm_head stay in the root group, so the loss can use the lm_head
weight inside the root's forward), with `MixedPrecisionPolicy(param_dtype, reduce_dtype)`. With
`fsdp_cfg.hsdp_sharding_size=K` (HSDP, as XTuner) the ranks form a 2-D mesh, (world // K) replicas x K shards:
parameters are sharded inside each group of K consecutive ranks (one node) and replicated across groups, so the
per-layer all-gathers stay on a node's fast links and only the gradient all-reduce crosses nodes.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from ..config import FSDPConfig
from .dist import DistInfo

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


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


def compute_dtype(fsdp_cfg: FSDPConfig, device: torch.device) -> torch.dtype:
    """bf16 (or the configured param dtype) on CUDA; fp32 on CPU, where bf16 matmuls are slow and less exact."""
    return _DTYPES[fsdp_cfg.param_dtype] if device.type == "cuda" else torch.float32


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


def place_model(model: nn.Module, fsdp_cfg: FSDPConfig, info: DistInfo, precision=None) -> nn.Module:
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

    if precision is not None:  # train.precision.Precision, chosen by device
        mp = MixedPrecisionPolicy(param_dtype=precision.compute, reduce_dtype=precision.reduce)
    else:
        mp = MixedPrecisionPolicy(param_dtype=compute_dtype(fsdp_cfg, info.device),
                                  reduce_dtype=_DTYPES[fsdp_cfg.reduce_dtype]
                                  if info.device.type == "cuda" else torch.float32)
    kw = dict(mesh=device_mesh(fsdp_cfg, info), mp_policy=mp, reshard_after_forward=fsdp_cfg.reshard_after_forward)
    if fsdp_cfg.cpu_offload:
        kw["offload_policy"] = CPUOffloadPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, **kw)
    fully_shard(model, **kw)
    return model
