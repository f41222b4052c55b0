"""Optimizer and learning-rate schedule configs (XTuner v1 names and defaults)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Literal

from pydantic import Field, field_validator

from .base import XConfig, refused_unless_default

if TYPE_CHECKING:  # torch stays out of the config import path
    import torch


class OptimConfig(XConfig):
    """XTuner's optimizer base: the fields every optimizer config has."""

    lr: float = Field(1e-5, gt=0, description="Peak learning rate.")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the global gradient L2 norm to this value.")
    skip_grad_norm_threshold: float | None = Field(
        None, description="Skip the update when the grad norm exceeds this (None: never skip, except NaN/Inf).")


class AdamWConfig(OptimConfig):
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay (applied to every parameter, as XTuner).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="Adam (beta1, beta2).")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")
    foreach: bool | None = Field(None, description="torch foreach kernels (None: torch decides).")
    swap_optimizer: bool | None = refused_unless_default(
        False, "XTuner's SwapAdamW (optimizer states swapped to host memory) is not implemented; use "
               "fsdp_cfg.cpu_offload=True (FSDP2 keeps params, grads and AdamW states on the CPU)", also=(None,))

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v):
        if not all(0 <= b < 1 for b in v):
            raise ValueError(f"betas must lie in [0, 1), got {v}")
        return v

    def build(self, params: Iterable["torch.nn.Parameter"]) -> "torch.optim.AdamW":
        import torch

        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                 weight_decay=self.weight_decay, foreach=self.foreach)


class MuonConfig(OptimConfig):
    """XTuner's Muon config: every field is accepted, so a MuonConfig in XTuner's code builds; training with it is
    refused (`refuse_unimplemented_optimizer`: a TrainerConfig does not take it)."""

    weight_decay: float = Field(0.1, ge=0, description="Decoupled weight decay.")
    momentum: float = Field(0.95, description="Muon momentum.")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas for the non-matrix parameters.")
    eps: float = Field(1e-8, gt=0, description="Epsilon.")
    adjust_lr: Literal["rms_norm", "spectral_norm", "none"] = Field("rms_norm", description="Muon lr adjustment.")
    enable_all2all: bool = Field(True, description="XTuner's all-to-all communication strategy.")

    def build(self, params):
        refuse_unimplemented_optimizer(self)


def refuse_unimplemented_optimizer(optim_cfg: OptimConfig) -> OptimConfig:
    """The one refusal of the optimizers XTuner has and this project does not implement (Muon), asked by
    `TrainerConfig.optim_cfg` and by `MuonConfig.build`."""
    if isinstance(optim_cfg, MuonConfig):
        raise ValueError("MuonConfig is not supported by xtuner_nb: XTuner's Muon (Newton-Schulz updates for "
                         "matrices, AdamW for the rest) is not implemented; use AdamWConfig")
    return optim_cfg


class LRConfig(XConfig):
    lr_type: Literal["constant", "cosine", "linear"] = Field("constant", description="Schedule after warmup.")
    warmup_ratio: float = Field(
        0.03, ge=0, description="< 1: fraction of total steps used for linear warmup; >= 1: number of warmup steps.")
    lr_min: float = Field(1e-6, ge=0, description="Final learning rate of the cosine/linear decay.")

    def warmup_steps(self, total_step: int) -> int:
        return int(self.warmup_ratio * total_step) if self.warmup_ratio < 1 else int(self.warmup_ratio)

    def factor(self, index: int, total_step: int, base_lr: float) -> float:
        """LR multiplier of optimizer step `index` (0-based), exactly torch's SequentialLR as XTuner builds it.

        Warmup: step k (1-based) uses (k-1)/W, so the very first step runs at lr=0. Then cosine/linear starts from
        the full lr and approaches lr_min on the last step.
        """
        warmup = self.warmup_steps(total_step)
        if index < warmup:
            return index / warmup
        j, span = index - warmup, max(total_step - warmup, 1)
        floor = self.lr_min / base_lr
        if self.lr_type == "cosine":
            return floor + (1 - floor) * (1 + math.cos(math.pi * j / span)) / 2
        if self.lr_type == "linear":
            return 1.0 + (floor - 1.0) * min(j, span) / span
        return 1.0

    def build(self, optimizer: "torch.optim.Optimizer", total_step: int) -> "torch.optim.lr_scheduler.LambdaLR":
        import torch

        base_lr = optimizer.param_groups[0]["lr"]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: self.factor(i, total_step, base_lr))
