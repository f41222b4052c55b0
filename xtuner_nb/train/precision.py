"""Precision by device: which dtype the forward computes in, and whether the loss needs scaling.

| device                                    | auto choice                                  |
|-------------------------------------------|----------------------------------------------|
| CUDA sm80+ (A100, L4, RTX 30xx/40xx, H100) | bf16 autocast / FSDP2 param dtype, TF32 on   |
| CUDA sm70-sm75 (V100, T4: no bf16)        | fp16 autocast with dynamic loss scaling      |
| CUDA older than sm70                      | fp32 (fp16 without tensor cores: slow, and overflows unguarded) |
| CPU                                       | fp32; bf16 only when asked for explicitly; the reason gives the bf16 and fp32 matmul speeds measured here |

Master weights, gradients and optimizer states stay fp32 in every case. `FSDPConfig(precision=...)` overrides the
choice (a dtype the device cannot compute in is refused with the reason); `param_dtype` is what "auto" uses on
sm80+ (XTuner's field, bf16 by default). This is the only place that decides a dtype: the Trainer, the memory
estimate and `env_report()` all ask `choose_precision`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..config import FSDPConfig

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Precision:
    compute: torch.dtype  # autocast dtype in one process, FSDP2 param_dtype under torchrun
    reduce: torch.dtype  # FSDP2 gradient reduce-scatter dtype
    loss_scaling: bool  # fp16: torch.amp.GradScaler
    reason: str
    tf32: bool = False  # CUDA sm80+: what stays fp32 under autocast runs as TF32 matmuls

    @property
    def name(self) -> str:
        return str(self.compute).removeprefix("torch.")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return None if self.compute == torch.float32 else self.compute

    def describe(self) -> str:
        scaled = ", dynamic loss scaling" if self.loss_scaling else ""
        return (f"precision: {self.name} compute, fp32 master weights{scaled} ({self.reason})"
                + (", TF32 matmuls on" if self.tf32 else ""))


def choose_precision(fsdp_cfg: FSDPConfig, device: torch.device,
                     capability: tuple[int, int] | None = None) -> Precision:
    """The precision for `device` (`capability` overrides the CUDA query: tests, or planning for another GPU)."""
    forced = fsdp_cfg.precision
    if device.type != "cuda":
        if forced == "float16":
            raise ValueError("fsdp_cfg.precision='float16' on CPU: fp16 autocast with loss scaling needs a GPU; use "
                             "'bfloat16' (the mixed-precision path) or 'float32'")
        if forced != "auto":
            compute, why = DTYPES[forced], "fsdp_cfg.precision"
        else:
            from .cpu_peak import cpu_precision_reason

            compute, why = torch.float32, cpu_precision_reason()
        return Precision(compute, torch.float32, False, why)
    cap = capability or torch.cuda.get_device_capability(device)
    sm = f"sm{cap[0]}{cap[1]}"
    if forced == "bfloat16" and cap < (8, 0):
        raise ValueError(f"fsdp_cfg.precision='bfloat16' but this GPU ({sm}) has no bf16 support; use 'float16' "
                         "(loss-scaled) or 'float32'")
    if forced != "auto":
        compute, why = DTYPES[forced], "fsdp_cfg.precision"
    elif cap >= (8, 0):
        compute, why = DTYPES[fsdp_cfg.param_dtype], f"{sm} computes bf16 natively; fsdp_cfg.param_dtype"
    elif cap >= (7, 0):
        compute, why = torch.float16, f"{sm} has no bf16, fp16 tensor cores"
    else:
        compute, why = torch.float32, f"{sm} has no fp16 tensor cores"
    # gradients are reduced in fp32 unless bf16 was chosen (fp16 sums overflow where fp32 does not)
    reduce = DTYPES[fsdp_cfg.reduce_dtype] if compute == torch.bfloat16 else torch.float32
    return Precision(compute, reduce, compute == torch.float16, why)


def precision_for_run(fsdp_cfg: FSDPConfig, device: torch.device) -> Precision:
    """`choose_precision` for the device a run trains on, with TF32 switched on where it applies (logged by the
    Trainer with `Precision.describe`)."""
    precision = choose_precision(fsdp_cfg, device)
    return dataclasses.replace(precision, tf32=enable_tf32(precision, device))


def enable_tf32(precision: Precision, device: torch.device) -> bool:
    """TF32 matmuls and convolutions on sm80+ (what remains fp32 under autocast: the loss, norms); True if on."""
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < (8, 0):
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def make_grad_scaler(precision: Precision, device: torch.device) -> "torch.amp.GradScaler | None":
    return torch.amp.GradScaler(device.type) if precision.loss_scaling else None
