"""TEMPORARY (replaced by the memory package of the memory branch): the Trainer's three memory calls."""

from __future__ import annotations

from .build import warn_if_memory_is_held
from .fit_check import check_fit, run_estimate


def check_run_fits(config, precision, dist, logger):
    from ..config import FSDPConfig

    fsdp_cfg = config.fsdp_cfg or FSDPConfig()
    warn_if_memory_is_held(config, dist, logger)
    est = run_estimate(config.model_cfg, config.dataloader_cfg.pack_max_length, precision.compute, fsdp_cfg,
                       config.loss_cfg, config.lora_cfg, dist.world_size, dist.device)
    logger.info(check_fit(est, dist.device, skip=config.skip_fit_check))
    return est


def oom_message(est) -> str:
    return ("Out of GPU memory; memory was freed, the kernel can keep going. Lower one of: "
            "dataloader_cfg.pack_max_length, use loss_cfg=CELossConfig(mode='chunk'), fsdp_cfg.recompute_ratio=1.0, "
            "or train LoRA adapters instead of all weights.")
