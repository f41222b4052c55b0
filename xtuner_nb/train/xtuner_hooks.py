"""XTuner v1's `HooksConfig`: plain callables run after a train step and after each kind of save, with XTuner's
keyword signatures, on every rank:

    def after_train_step(train_step_info, step, epoch, total_step, total_epoch): ...
    def after_save_dcp(checkpoint, step, epoch, total_step, total_epoch): ...   # also after_save_hf / _snapshot

A hook object with `connect_trainer(trainer)` gets the Trainer once before the first step. They run through the
Trainer's event system (`events.Hook`); `train_step_info` is the step's metrics row (loss, lr, grad_norm, ...),
given after the optimizer step (XTuner calls it between backward and the optimizer step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pydantic import Field, field_validator

from ..config.base import XConfig

STAGES = ("after_save_dcp", "after_save_hf", "after_save_snapshot", "after_train_step")


class HooksConfig(XConfig):
    after_save_dcp: list[Callable] | None = Field(None, description="Called after each checkpoint is saved.")
    after_save_hf: list[Callable] | None = Field(None, description="Called after each HF export.")
    after_save_snapshot: list[Callable] | None = Field(None, description="Called after each snapshot.")
    after_train_step: list[Callable] | None = Field(None, description="Called after each train step.")

    @field_validator(*STAGES, mode="before")
    @classmethod
    def _as_list(cls, v: Any):
        if v is None:
            return None
        hooks = list(v) if isinstance(v, (list, tuple)) else [v]
        for h in hooks:
            if isinstance(h, str):  # what XTuner (and this project) dump: hook names
                raise ValueError(f"hook {h!r} is a name from a dumped config; hooks are code: pass the callable")
        return hooks or None

    def get_hooks(self, stage: str) -> list[Callable]:
        return list(getattr(self, str(stage)) or [])
