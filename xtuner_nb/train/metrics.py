"""The metrics row of one step (the keys of XTuner's tracker.jsonl): losses, times, throughput, MFU, memory."""

from __future__ import annotations

import resource
from typing import Any

import torch

from .step import StepResult


def step_metrics(*, step: int, total_step: int, epoch: int, lr: float, grad_norm: float, updated: bool,
                 res: StepResult, step_time: float, data_time: float, wall: float, steps_done: int,
                 tokens_before: int, model_cfg, device: torch.device,
                 autocast_dtype: torch.dtype | None) -> dict[str, Any]:
    """`wall`, `steps_done`, `tokens_before`: seconds, steps and tokens of this fit() before this step ended."""
    row = {
        "step": step, "lr": lr, "grad_norm": grad_norm,
        "loss/reduced_llm_loss": res.reduced_loss, "loss/local_loss": res.local_loss,
        "time/step_time": step_time, "time/data_time": data_time,
        "time/eta_seconds": wall / steps_done * (total_step - step),
        "runtime_info/text_tokens": res.text_tokens, "runtime_info/loss_tokens": res.loss_tokens,
        "runtime_info/tgs": res.text_tokens / step_time,
        "runtime_info/exp_tgs": (tokens_before + res.text_tokens) / wall,
        "runtime_info/mfu": mfu(res, step_time, model_cfg, device, autocast_dtype),
        "memory/max_memory_GB": max_memory_gb(device),
        "epoch": epoch,
    }
    if not updated:
        row["skipped_update"] = True
    return row


def max_memory_gb(dev: torch.device) -> float:
    """Peak GPU memory allocated in this step; on CPU the process's peak resident memory."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def mfu(res: StepResult, step_time: float, model_cfg, device: torch.device,
        autocast_dtype: torch.dtype | None) -> float | None:
    from .flops import device_peak_flops, flops_per_token

    peak = device_peak_flops(device, autocast_dtype or torch.float32)
    if not peak:
        return None
    return res.text_tokens * flops_per_token(model_cfg, res.attn_len) / step_time / peak
