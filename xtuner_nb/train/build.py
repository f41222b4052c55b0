"""Building a run's parts, in the order `Trainer.__init__` calls them: seed -> tokenizer -> data -> model ->
optimizer. Plain functions of the config; the RNG is consumed in this order, so a run is repeatable.

A new part (another tokenizer source, a memory check, a compile step) is one function here and one line in
`Trainer.__init__`.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import FSDPConfig
from ..datasets import DataloaderConfig
from ..model.lora import apply_lora, base_fingerprint, describe as describe_lora, resume_record as lora_resume_record
from .config import TrainerConfig
from .distributed import DistInfo, barrier
from .memory import builds_on_meta
from .parallel import apply_recompute, compile_layers, place_model
from .precision import Precision


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass


def build_tokenizer(cfg: TrainerConfig, logger: logging.Logger):
    """The tokenizer of `tokenizer_path` (None: a toy UTF-8 byte tokenizer). Code shipped in the folder runs only
    with `trust_remote_code=True`, as in transformers."""
    if cfg.tokenizer_path is None:
        from ..datasets.toy_tokenizer import UTF8ByteTokenizer

        logger.info("Using toy tokenizer (UTF-8 bytes): tokenizer_path is None")
        return UTF8ByteTokenizer()
    from transformers import AutoTokenizer

    # transformers 5 quietly falls back to a generic tokenizer when it may not run the folder's code, which could
    # tokenize differently from what the folder asks for: say so instead
    config_file = Path(cfg.tokenizer_path) / "tokenizer_config.json"
    wants_code = config_file.is_file() and "AutoTokenizer" in json.loads(config_file.read_text()).get("auto_map", {})
    if wants_code and not cfg.trust_remote_code:
        raise ValueError(f"{config_file}: auto_map asks to run the Python code shipped in this tokenizer folder, "
                         "which is off by default. If you trust that code, set trust_remote_code=True in the "
                         "TrainerConfig (command line: --trust-remote-code).")
    return AutoTokenizer.from_pretrained(str(cfg.tokenizer_path), trust_remote_code=cfg.trust_remote_code)


@dataclass
class DataParts:
    loader: Any
    global_batch_size: int  # packs per optimizer step over all ranks
    micro_batch_size: int  # packs per step on this rank (= gradient accumulation steps)
    total_step: int
    dataset_config_list: list[dict[str, Any]]  # the entries the loader was built from, in order


def build_data(cfg: TrainerConfig, dist: DistInfo, tokenizer, logger: logging.Logger) -> DataParts:
    world = dist.world_size
    dl_cfg: DataloaderConfig = cfg.dataloader_cfg.model_copy()
    if cfg.dataset_cfg is not None:
        dl_cfg = dl_cfg.model_copy(update={"dataset_config_list": cfg.dataset_cfg})
    pad = getattr(tokenizer, "pad_token_id", None)
    dl_cfg = dl_cfg.model_copy(update={"pad_token_id": pad if pad is not None else tokenizer.eos_token_id})
    gbs = cfg.global_batch_size or world
    if gbs % world:
        raise ValueError(f"global_batch_size={gbs} must be a multiple of the number of ranks ({world})")
    if dist.distributed and not dist.is_main:
        barrier()  # rank 0 tokenizes and writes the dataset cache first; the others then read it
    # XTuner's call (global_batch_size, micro_batch_size, seed); the rank as dp_rank/dp_size instead of a dp_mesh
    loader = dl_cfg.build(tokenizer, global_batch_size=gbs, micro_batch_size=gbs // world, seed=cfg.seed,
                          dp_rank=dist.rank, dp_size=world)
    if dist.distributed and dist.is_main:
        barrier()
    steps_per_epoch = len(loader)
    total_step = cfg.total_step or steps_per_epoch * (cfg.total_epoch or 1)
    logger.info(f"data: {getattr(loader, 'stats', '')}; {steps_per_epoch} steps/epoch, "
                f"global_batch_size {gbs} packs, grad_accumulation_steps: {gbs // world}, total_step {total_step}")
    return DataParts(loader, gbs, gbs // world, total_step, dl_cfg.dataset_config_list)


@dataclass
class ModelParts:
    model: nn.Module  # placed (FSDP2 under torchrun), in train mode
    autocast_dtype: torch.dtype | None  # one-process mixed precision; None in fp32 and under FSDP2 (it casts itself)
    lora_record: dict[str, Any]  # what a checkpoint records about LoRA (see lora.resume_record)


def build_model(cfg: TrainerConfig, dist: DistInfo, tokenizer, logger: logging.Logger,
                precision: Precision) -> ModelParts:
    from ..model import load_hf_weights

    model_cfg, fsdp_cfg = cfg.model_cfg, cfg.fsdp_cfg or FSDPConfig()
    vocab = len(tokenizer)
    if vocab > model_cfg.vocab_size:
        raise ValueError(f"tokenizer has {vocab} tokens but model_cfg.vocab_size is {model_cfg.vocab_size}")
    lora = cfg.lora_cfg  # LoRA: the frozen base needs no fp32 master copy, it lives in the compute dtype
    quantized = lora is not None and lora.quantize_base is not None  # QLoRA: its decoder linears in 4 bits
    # With weights to load, no process holds a second copy: build on the meta device, then allocate on the device
    # and fill from the safetensors files; under torchrun shard first, so each rank allocates only its shards
    # (torchtitan's order). A 4-bit base is quantized whole on every rank and sharded after (NF4 keeps one absmax
    # mean per tensor), loading into 4-bit placeholders: one tensor at a time is ever in the compute dtype.
    on_meta = builds_on_meta(cfg.load_from is not None, lora is not None, quantized)
    sharded_load = dist.distributed and on_meta and not quantized
    model = model_cfg.build(device="meta" if on_meta else "cpu",
                            dtype=torch.float32 if lora is None else precision.compute)
    if quantized and on_meta:
        from ..model.qlora import nf4_placeholders

        # FSDP2 splits every tensor over the ranks of its shard group: the NF4 scale blocks must divide evenly
        shards = (fsdp_cfg.hsdp_sharding_size or dist.world_size) if dist.distributed else 1
        nf4_placeholders(model, dist.device, shards=shards)
    if on_meta and not sharded_load:
        model.to_empty(device=dist.device)
    if cfg.load_from is not None and not sharded_load:
        load_hf_weights(model, cfg.load_from, strict=cfg.strict_load)
        logger.info(f"loaded weights from {cfg.load_from}")
    lora_record = lora_resume_record(None, None)
    if lora is not None:  # a fresh base in every Trainer: re-running the cell never stacks adapters
        lora_record = lora_resume_record(lora, base_fingerprint(model))
        model = apply_lora(model, lora, base_model_name_or_path=cfg.load_from)
        logger.info(describe_lora(model, lora))
    n = apply_recompute(model, fsdp_cfg)
    compiled = compile_layers(model, fsdp_cfg, logger)
    placed = place_model(model, fsdp_cfg, dist, precision)
    if sharded_load:
        placed.to_empty(device=dist.device)
        load_hf_weights(placed, cfg.load_from, strict=cfg.strict_load)
        logger.info(f"loaded weights from {cfg.load_from} shard by shard (meta-device build, "
                    f"{dist.world_size} ranks)")
    placed.train()
    autocast = None if dist.distributed else precision.autocast_dtype  # FSDP2: its mixed-precision policy casts
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(f"model: {type(model_cfg).__name__} {n_params / 1e6:.2f} M params, "
                f"recompute {n}/{model_cfg.num_hidden_layers} layers"
                f"{f', torch.compile {compiled} layers' if compiled else ''}")
    return ModelParts(placed, autocast, lora_record)


def build_optimizer(cfg: TrainerConfig, model: nn.Module, total_step: int):
    """(optimizer, lr_scheduler) over the trainable parameters (the adapters only, with LoRA)."""
    optimizer = cfg.optim_cfg.build([p for p in model.parameters() if p.requires_grad])
    return optimizer, cfg.lr_cfg.build(optimizer, total_step)
