"""Will the run fit? Checked before the model is allocated, so a run too big stops with the ways that would fit
instead of an OOM kill mid-build (on a CPU the kernel dies without a traceback). The same estimate and the same
list of ways also make the message of an out-of-memory error and the warning about memory an earlier Trainer holds.

`XTUNER_NB_SKIP_FIT_CHECK=1` or `TrainerConfig(skip_fit_check=True)` skips the check (the estimate adds every
part, so it errs on the large side).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .budget import DeviceBudget, measure_budget
from .estimate import GiB, MemoryEstimate, estimate_run
from .warm_up import warm_up_training_runtime
from .ways import ways_to_fit

__all__ = ["SKIP_ENV", "MemoryFitError", "check_fit", "check_run_fits", "oom_message", "warn_if_memory_is_held"]

SKIP_ENV = "XTUNER_NB_SKIP_FIT_CHECK"


class MemoryFitError(MemoryError):
    """The run's memory estimate exceeds what the device has free (raised before anything large is allocated)."""


def _ways_lines(est: MemoryEstimate, budget: DeviceBudget) -> list[str]:
    lines = []
    for way in ways_to_fit(est, budget):
        host = f", host {way.estimate.host_bytes * way.processes / GiB:.1f} GiB" if way.estimate.host_bytes \
            and budget.on_gpu else ""
        lines.append(f"  {'fits ' if way.fits else 'no   '} {way.text}: {way.estimate.total / GiB:.1f} GiB{host}")
    if not est.inputs["pretrained"]:
        lines.append("  (training from scratch: load_from is None, so LoRA is not offered; adapters on a random base "
                     "learn little. Fine-tune a checkpoint with load_from=... to use LoRA.)")
    return lines


def _held_by_this_process(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _held_note(device: torch.device) -> str:
    held = _held_by_this_process(device)
    if not held:
        return ""
    return (f" This process already holds {held / GiB:.1f} GiB of it, e.g. an earlier Trainer in this kernel: free it "
            "with `old_trainer.close()` before building this one (a new Trainer never frees another by itself).")


def check_fit(est: MemoryEstimate, budget: DeviceBudget, skip: bool = False) -> str:
    """Raise MemoryFitError when `est` does not fit `budget`; else return a one-line verdict for the log."""
    verdict = f"memory estimate {est.summary()}; {budget.device_bytes / GiB:.1f} GiB {budget.what}"
    if est.host_bytes and budget.on_gpu:
        known = f"{budget.host_bytes / GiB:.1f} GiB available" if budget.host_bytes is not None else "not checked"
        verdict += f"; host RAM {est.host_bytes * budget.processes_per_node / GiB:.1f} GiB ({known})"
    if budget.fits(est):
        return f"fits: {verdict}"
    if skip or os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return f"does not fit, check skipped on request: {verdict}"
    if est.total > budget.device_bytes:
        short = f"needs about {est.summary()} of memory on {budget.device}, but only {budget.device_bytes / GiB:.1f} " \
                f"GiB is {budget.what}.{_held_note(budget.device)}"
    else:  # the host is what is short: the model is built there before it moves to the GPU, or offloaded there
        host = est.host_bytes * budget.processes_per_node
        short = f"fits {budget.device} ({est.summary()}), but needs {host / GiB:.1f} GiB of host RAM besides, and " \
                f"{budget.host_bytes / GiB:.1f} GiB is available."
    lines = [f"{est.describe_run()} {short} Nothing was allocated. Options, with their estimates:"]
    lines += _ways_lines(est, budget)
    lines.append(f"Set {SKIP_ENV}=1 or TrainerConfig(skip_fit_check=True) to try anyway.")
    raise MemoryFitError("\n".join(lines))


def check_run_fits(config: Any, precision: Any, dist: Any, logger: logging.Logger,
                   budget: DeviceBudget | None = None) -> MemoryEstimate:
    """The Trainer's fit check: logs the verdict and returns the run's estimate, or raises MemoryFitError with the
    ways that fit. `precision` is `choose_precision`'s choice for `dist.device`; `budget` (default: measured now)
    plans for another device."""
    if budget is None and dist.device.type == "cpu":  # the process's memory is part of a CPU run: measure it whole
        warm_up_training_runtime(config, precision.autocast_dtype)
    budget = budget or measure_budget(dist.device, dist.local_world_size)
    est = estimate_run(config, precision, dist.world_size, dist.device.type, budget.process_bytes)
    logger.info(check_fit(est, budget, config.skip_fit_check))
    warn_if_memory_is_held(est, dist.device, logger)
    return est


def oom_message(config: Any, precision: Any, dist: Any, budget: DeviceBudget | None = None) -> str:
    """What `Trainer.fit` adds to a `torch.OutOfMemoryError` (after freeing what it could): the estimate and the
    ways to lower it, priced on this device with the memory this process holds counted as usable (`budget`, default
    measured now, plans for another device)."""
    budget = budget or measure_budget(dist.device, dist.local_world_size, _held_by_this_process(dist.device))
    est = estimate_run(config, precision, dist.world_size, dist.device.type, budget.process_bytes)
    lines = [f"Out of {'GPU ' if budget.on_gpu else ''}memory; memory was freed, the kernel can keep going.",
             f"Estimated per {'GPU' if budget.on_gpu else 'process'}: {est.summary()}, against "
             f"{budget.device_bytes / GiB:.1f} GiB {budget.what} (with what this run holds). Ways to lower it, "
             "with their estimates:"]
    lines += _ways_lines(est, budget)
    lines.append("A smaller global_batch_size does not lower the peak (the packs of a step run one forward at a "
                 "time); it only shortens each step.")
    return "\n".join(lines)


def warn_if_memory_is_held(est: MemoryEstimate, device: torch.device, logger: logging.Logger) -> None:
    """A new Trainer never frees an earlier one (two runs may be compared in one kernel). When this process already
    holds GPU memory and the new run's weights, gradients and optimizer states (parts of `est`) would not fit in
    what is left, say how to free it, so the out-of-memory error that follows is not a mystery. (The fit check says
    the same when it refuses; this warns when the check was skipped.)"""
    if device.type != "cuda" or not _held_by_this_process(device):
        return
    need = est.weights + est.gradients + est.optimizer
    free, total = torch.cuda.mem_get_info(device)
    if need > free:
        logger.warning(f"this run needs about {need / GiB:.1f} GiB for weights, gradients and optimizer states, but "
                       f"only {free / GiB:.1f} of {total / GiB:.1f} GiB are free.{_held_note(device)}")
