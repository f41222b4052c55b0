"""What the Trainer decides about the device before it allocates the model: precision, options the run cannot honour
(refused with the reason, never ignored), and whether the run fits in memory."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import FSDPConfig
from .dist import DistInfo
from .fit_check import check_fit, run_estimate
from .memory_estimate import MemoryEstimate
from .precision import Precision, choose_precision, enable_tf32, make_grad_scaler


@dataclass
class DevicePlan:
    precision: Precision
    memory_estimate: MemoryEstimate
    grad_scaler: "torch.amp.GradScaler | None"  # fp16 only


def plan_device(config: Any, fsdp_cfg: FSDPConfig, dist: DistInfo, logger: logging.Logger) -> DevicePlan:
    """Precision, refusals and the fit check, before the data and the model take any memory."""
    precision = choose_run_precision(fsdp_cfg, dist, logger)
    refuse_unsupported(fsdp_cfg, dist)
    est = check_run_fits(config, fsdp_cfg, precision, dist, logger)
    return DevicePlan(precision, est, make_grad_scaler(precision, dist.device))


def choose_run_precision(fsdp_cfg: FSDPConfig, dist: DistInfo, logger: logging.Logger) -> Precision:
    precision = choose_precision(fsdp_cfg, dist.device)
    tf32 = enable_tf32(precision, dist.device)
    logger.info(precision.describe() + (", TF32 matmuls on" if tf32 else ""))
    return precision


def refuse_unsupported(fsdp_cfg: FSDPConfig, dist: DistInfo) -> None:
    """Options that this run would otherwise accept and not apply."""
    if fsdp_cfg.cpu_offload and not dist.distributed:
        raise ValueError("fsdp_cfg.cpu_offload=True needs FSDP2, which the Trainer uses under torchrun with 2 or more "
                         "processes; in one process it would do nothing. Launch with torchrun, or lower the memory "
                         "with LoRA, recompute_ratio=1.0 or shorter packs (the fit check lists their estimates).")
    if fsdp_cfg.cpu_offload and dist.device.type != "cuda":
        raise ValueError("fsdp_cfg.cpu_offload=True on a CPU run: the state already lives in host memory")


def check_run_fits(config: Any, fsdp_cfg: FSDPConfig, precision: Precision, dist: DistInfo,
                   logger: logging.Logger) -> MemoryEstimate:
    """The memory estimate of this run against the device's free memory; raises MemoryFitError if it cannot fit."""
    est = run_estimate(config.model_cfg, config.dataloader_cfg.pack_max_length, precision.compute, fsdp_cfg,
                       config.loss_cfg, config.lora_cfg, dist.world_size, dist.device)
    logger.info(check_fit(est, dist.device, skip=config.skip_fit_check))
    return est


def compile_layers(model: nn.Module, fsdp_cfg: FSDPConfig, logger: logging.Logger) -> int:
    """fsdp_cfg.torch_compile set explicitly: `torch.compile` each decoder layer in place (XTuner's granularity);
    returns how many. Left at its default (True, XTuner's) it is not applied, and the log says so."""
    if not fsdp_cfg.torch_compile:
        return 0
    if "torch_compile" not in fsdp_cfg.model_fields_set:
        logger.info("fsdp_cfg.torch_compile is at its default: not applied (eager layers; set "
                    "FSDPConfig(torch_compile=True) to compile each decoder layer)")
        return 0
    from .parallel import decoder_layers

    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    return len(layers)


def log_attention_backend(logger: logging.Logger) -> str | None:
    """Name the packed attention kernel in use (and its self-check figures) once it was chosen."""
    from ..model import attention

    backend = attention.DISPATCHER.backend_in_use()
    checked = [n for n in attention.DISPATCHER.notes if "self-check" in n]
    logger.info(f"packed attention backend: {backend or 'none (no packed forward)'}"
                + (f" ({'; '.join(checked)})" if checked else ""))
    return backend
