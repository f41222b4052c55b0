"""Will the run fit? Checked before the model is allocated, so a run too big stops with advice instead of an OOM
kill mid-build (on CPU the kernel dies without a traceback).

The estimate is `memory_estimate.estimate_memory` for the run's settings; what is free is `torch.cuda.mem_get_info`
on a GPU and the available RAM on CPU (psutil when installed, else /proc/meminfo). `XTUNER_NB_SKIP_FIT_CHECK=1` or
`TrainerConfig(skip_fit_check=True)` skips it (the estimate adds every part, so it errs on the large side).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .memory_estimate import GiB, MemoryEstimate, estimate_memory, reestimate

SKIP_ENV = "XTUNER_NB_SKIP_FIT_CHECK"


class MemoryFitError(MemoryError):
    """The run's memory estimate exceeds what the device has free (raised before anything large is allocated)."""


def free_bytes(device: torch.device) -> tuple[int, str]:
    """(bytes free now, what was measured) for `device`."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return int(free), f"free of {total / GiB:.1f} GiB on {torch.cuda.get_device_name(device)}"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "RAM available"
    except ImportError:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"], "RAM available"


def options(est: MemoryEstimate, free: int) -> list[tuple[str, MemoryEstimate]]:
    """Single changes to the run, each with its estimate (those that fit first)."""
    i, out = est.inputs, []
    cfg = i["model_cfg"]
    if i["lora"] is None:
        out.append(("lora_cfg=LoRAConfig(r=16) (train adapters; the base stays frozen)", reestimate(est, lora=16)))
    if i["recompute_ratio"] < 1:
        out.append(("fsdp_cfg=FSDPConfig(recompute_ratio=1.0)", reestimate(est, recompute_ratio=1.0)))
    if i["loss_mode"] == "eager":
        out.append(("loss_cfg=CELossConfig(mode='chunk')", reestimate(est, loss_mode="chunk")))
    if i["pack_max_length"] > 512:
        half = i["pack_max_length"] // 2
        out.append((f"dataloader_cfg pack_max_length={half}", reestimate(est, pack_max_length=half)))
    if not i.get("cpu_offload"):
        out.append(("fsdp_cfg=FSDPConfig(cpu_offload=True) under torchrun (host RAM holds the state)",
                    reestimate(est, cpu_offload=True)))
    layers = _most_layers_that_fit(est, free)
    if layers and layers < cfg.num_hidden_layers:
        out.append((f"a smaller model, e.g. num_hidden_layers={layers}",
                    reestimate(est, model_cfg=cfg.model_copy(update={"num_hidden_layers": layers}))))
    # all of the savings together, then as many layers as fit with them
    together = dict(lora=i["lora"] if i["lora"] is not None else 16, recompute_ratio=1.0, loss_mode="chunk",
                    pack_max_length=min(i["pack_max_length"], 2048))
    text = ", ".join(t for t, on in [("LoRA r=16", i["lora"] is None), ("recompute_ratio=1.0", i["recompute_ratio"] < 1),
                                     ("chunked loss", i["loss_mode"] == "eager"),
                                     ("pack_max_length=2048", i["pack_max_length"] > 2048)] if on)
    if text:
        combined = reestimate(est, **together)
        out.append((text, combined))
        layers = _most_layers_that_fit(combined, free)
        if combined.total > free and layers:
            out.append((f"{text}, num_hidden_layers={layers}",
                        reestimate(combined, model_cfg=cfg.model_copy(update={"num_hidden_layers": layers}))))
    return sorted(out, key=lambda o: (o[1].total > free, o[1].total))


def _most_layers_that_fit(est: MemoryEstimate, free: int) -> int:
    cfg = est.inputs["model_cfg"]
    lo, hi = 0, cfg.num_hidden_layers
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if reestimate(est, model_cfg=cfg.model_copy(update={"num_hidden_layers": mid})).total <= free:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_fit(est: MemoryEstimate, device: torch.device, skip: bool = False) -> str:
    """Raise MemoryFitError when `est` exceeds what `device` has free; else return a one-line verdict for the log."""
    free, what = free_bytes(device)
    verdict = f"memory estimate {est.summary()}; {free / GiB:.1f} GiB {what}"
    if est.total <= free:
        return f"fits: {verdict}"
    if skip or os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return f"does not fit, check skipped on request: {verdict}"
    i = est.inputs
    what_run = (f"{type(i['model_cfg']).__name__} ({est.params / 1e9:.2f} B params, "
                f"{'LoRA' if i['lora'] is not None else 'full fine-tune'}, {i['param_dtype']} compute, "
                f"pack {i['pack_max_length']}, recompute {i['recompute_ratio']}, loss {i['loss_mode']})")
    lines = [f"{what_run} needs about {est.summary()} of memory on {device}, but only "
             f"{free / GiB:.1f} GiB is {what}. Nothing was allocated. Options, with their estimates:"]
    for text, e in options(est, free):
        host = f", host {e.host_bytes / GiB:.1f} GiB" if e.host_bytes else ""
        lines.append(f"  {'fits ' if e.total <= free else 'no   '} {text}: {e.total / GiB:.1f} GiB{host}")
    lines.append(f"Set {SKIP_ENV}=1 or TrainerConfig(skip_fit_check=True) to try anyway.")
    raise MemoryFitError("\n".join(lines))


def run_estimate(model_cfg: Any, pack_max_length: int, compute_dtype: torch.dtype, fsdp_cfg: Any, loss_cfg: Any,
                 lora_cfg: Any, world_size: int, device: torch.device) -> MemoryEstimate:
    """The estimate for a Trainer's settings (one pack per forward; no CUDA context on CPU)."""
    return estimate_memory(model_cfg, pack_max_length, param_dtype=str(compute_dtype).removeprefix("torch."),
                           recompute_ratio=fsdp_cfg.recompute_ratio, loss_mode=loss_cfg.mode,
                           chunk_size=loss_cfg.chunk_size, world_size=world_size, lora=lora_cfg,
                           fsdp=world_size > 1, overhead_gib=1.0 if device.type == "cuda" else 0.5,
                           defer_reduce_scatter=fsdp_cfg.defer_reduce_scatter, cpu_offload=fsdp_cfg.cpu_offload)
