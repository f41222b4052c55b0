"""Out of GPU memory: say which setting to lower, with the memory each change saves by the `memory` estimate.

The Trainer catches `torch.OutOfMemoryError`, frees memory and may print `oom_advice(trainer)`; this module only
reads settings (from a Trainer, a TrainerConfig, or loose keyword arguments) and never touches the GPU itself.
"""

from __future__ import annotations

from typing import Any

from ..train.memory_estimate import GiB, estimate_memory, suggestions

__all__ = ["oom_advice"]


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    """The first attribute path that exists: `_get(trainer, "config.loss_cfg.mode", "loss_cfg.mode")`."""
    for name in names:
        cur = obj
        for part in name.split("."):
            cur = getattr(cur, part, None) if not isinstance(cur, dict) else cur.get(part)
            if cur is None:
                break
        if cur is not None:
            return cur
    return default


def oom_advice(trainer_or_cfg: Any = None, error: BaseException | None = None, **overrides: Any) -> str:
    """A few lines: what ran out, the estimated parts, and the settings to lower (largest saving first).

    Reads `model_cfg`, `dataloader_cfg.pack_max_length`, `fsdp_cfg.recompute_ratio`/`param_dtype`,
    `loss_cfg.mode`/`chunk_size` and the world size from a Trainer or TrainerConfig;
    keyword arguments (the names of `estimate_memory`) override them.
    """
    t = trainer_or_cfg
    settings = dict(
        model_cfg=_get(t, "model_cfg", "config.model_cfg"),
        pack_max_length=_get(t, "dataloader_cfg.pack_max_length", "config.dataloader_cfg.pack_max_length"),
        recompute_ratio=_get(t, "fsdp_cfg.recompute_ratio", "config.fsdp_cfg.recompute_ratio", default=1.0),
        param_dtype=_get(t, "fsdp_cfg.param_dtype", "config.fsdp_cfg.param_dtype", default="bfloat16"),
        loss_mode=_get(t, "loss_cfg.mode", "config.loss_cfg.mode", default="eager"),
        chunk_size=_get(t, "loss_cfg.chunk_size", "config.loss_cfg.chunk_size", default=1024),
        world_size=_get(t, "dist.world_size", "world_size", default=1),
        lora=_get(t, "lora_cfg", "config.lora_cfg"),
    )
    settings.update(overrides)
    head = "Out of GPU memory" + (f" ({str(error).splitlines()[0][:160]})" if error else "") + "."
    lines = [head]
    if settings["model_cfg"] is None or settings["pack_max_length"] is None:
        lines.append("Lower dataloader_cfg.pack_max_length, use loss_cfg=CELossConfig(mode='chunk'), "
                     "fsdp_cfg=FSDPConfig(recompute_ratio=1.0), LoRA, or a smaller global batch.")
        return "\n".join(lines)
    est = estimate_memory(**settings)
    parts = ", ".join(f"{k} {v / GiB:.1f}" for k, v in est.parts().items())
    lines.append(f"Estimated per GPU: {est.total / GiB:.1f} GiB ({parts} GiB).")
    tips = suggestions(est)
    if tips:
        lines.append("Lower it with (largest saving first):")
        lines += [f"  - {text}: about -{saved / GiB:.1f} GiB" for text, saved in tips]
    lines.append("A smaller global_batch_size does not lower the peak (the packs of a step run one forward at a "
                 "time); it only shortens each step.")
    return "\n".join(lines)
