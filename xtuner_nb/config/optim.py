"""Optimizer and learning-rate schedule configs (XTuner v1 names and defaults)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable, Literal

from pydantic import Field, field_validator

from .base import XConfig

if TYPE_CHECKING:  # torch stays out of the config import path
    import torch


class AdamWConfig(XConfig):
    lr: float = Field(1e-5, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay (applied to every parameter, as XTuner).")
    betas: tuple[float, float] = Field((0.9, 0.95), description="Adam (beta1, beta2).")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the global gradient L2 norm to this value.")
    skip_grad_norm_threshold: float | None = Field(
        None, description="Skip the update when the grad norm exceeds this (None: never skip, except NaN/Inf).")
    foreach: bool | None = Field(None, description="torch foreach kernels (None: torch decides).")

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
