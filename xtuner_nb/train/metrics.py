"""The metrics row of one step (the keys of XTuner's tracker.jsonl): losses, times, throughput, MFU, memory.

Throughput and MFU are the job's, not rank 0's: each rank gets different packs (different token counts), so one
all-reduce per step sums the tokens and model FLOPs of every rank. `tgs` is then the job's tokens per second
divided by the number of devices (what one device contributes on average), and MFU divides the job's model
FLOP/s by the peak of every device together.
"""

from __future__ import annotations

import resource
import sys
from typing import Any

import torch

from .distributed import all_reduce_sum
from .flops import device_peak_flops, flops_per_token
from .step import StepResult


def step_metrics(*, step: int, total_step: int, epoch: int, lr: float, grad_norm: float, updated: bool,
                 res: StepResult, step_time: float, data_time: float, wall: float, steps_done: int,
                 tokens_before: int, model_cfg, device: torch.device,
                 compute_dtype: torch.dtype, world_size: int = 1, adapter_params: int | None = None) -> dict[str, Any]:
    """`wall`, `steps_done`, `tokens_before`: seconds, steps and tokens (all ranks') of this fit() before this step
    ended; `adapter_params`: LoRA's, for the FLOPs of a frozen base (`flops.flops_per_token`). Collective under
    torchrun."""
    # the peak of the dtype the forward computes in (FSDP2 runs have no autocast: its mixed-precision policy casts)
    peak = device_peak_flops(device, compute_dtype)
    speed = step_throughput(res.text_tokens, res.attn_len, step_time, model_cfg, world_size, peak, device,
                            adapter_params)
    row = {
        "step": step, "lr": lr, "grad_norm": grad_norm,
        "loss/reduced_llm_loss": res.reduced_loss, "loss/local_loss": res.local_loss,
        "time/step_time": step_time, "time/data_time": data_time,
        "time/eta_seconds": wall / steps_done * (total_step - step),
        "runtime_info/text_tokens": res.text_tokens, "runtime_info/loss_tokens": res.loss_tokens,
        **speed, "runtime_info/exp_tgs": (tokens_before + speed["runtime_info/total_text_tokens"]) / wall / world_size,
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
    return peak_rss_kib() / 2**20


def peak_rss_kib() -> int:
    """This process's own peak resident memory (Linux's VmHWM, of the memory map exec gave it). `ru_maxrss` also
    keeps the peak of the process this one was started from (a notebook kernel started by a large process, a test
    subprocess of pytest); it is the fallback where /proc is missing (macOS)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # macOS gives bytes, Linux KiB


def step_throughput(text_tokens: int, attn_len: float, step_time: float, model_cfg, world_size: int,
                    peak_flops: float | None, device: torch.device,
                    adapter_params: int | None = None) -> dict[str, float | int | None]:
    """Collective under torchrun. `text_tokens` and `attn_len` are this rank's; `peak_flops` is one device's."""
    flops = text_tokens * flops_per_token(model_cfg, attn_len, adapter_params)
    local = torch.tensor([text_tokens, flops], dtype=torch.float64, device=device)
    total_tokens, total_flops = all_reduce_sum(local).tolist()
    return {
        "runtime_info/total_text_tokens": int(total_tokens),
        "runtime_info/tgs": total_tokens / step_time / world_size,
        "runtime_info/mfu": total_flops / step_time / (peak_flops * world_size) if peak_flops else None,
    }


def history_frame(rows: list[dict[str, Any]]):
    """The metrics rows as a DataFrame, one row per step: an eval row (tracker.jsonl keeps it apart) is joined to its
    step's training row. `Trainer.history` and a launched run's `Launch.history` both show this."""
    import pandas as pd

    merged: dict[Any, dict[str, Any]] = {}
    for row in rows:
        merged.setdefault(row.get("step"), {}).update(row)
    return pd.DataFrame(list(merged.values()))
