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
from .events import Control, Hook, TrainState

STAGES = ("after_save_dcp", "after_save_hf", "after_save_snapshot", "after_train_step")
_SAVE_STAGE = {"checkpoint": "after_save_dcp", "hf": "after_save_hf", "snapshot": "after_save_snapshot"}


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


class XTunerHooks(Hook):
    """Runs a HooksConfig's callables from the Trainer's events."""

    main_process_only = False  # XTuner calls its hooks on every rank

    def __init__(self, trainer: Any, hooks_config: HooksConfig):
        self.trainer, self.cfg = trainer, hooks_config
        self._connected = False

    def on_fit_begin(self, state: TrainState, control: Control) -> None:
        if not self._connected:
            for stage in STAGES:
                for h in self.cfg.get_hooks(stage):
                    if callable(getattr(h, "connect_trainer", None)):
                        h.connect_trainer(self.trainer)
            self._connected = True

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        for h in self.cfg.get_hooks("after_train_step"):
            h(train_step_info=metrics, **_where(state))

    def on_save(self, state: TrainState, path: Path, kind: str, control: Control) -> None:
        for h in self.cfg.get_hooks(_SAVE_STAGE.get(kind, "")):
            h(checkpoint=path, **_where(state))


def _where(state: TrainState) -> dict[str, Any]:
    return dict(step=state.step, epoch=state.epoch, total_step=state.total_step, total_epoch=state.total_epoch)


def xtuner_hooks_factory(trainer: Any) -> Hook | None:
    cfg = getattr(getattr(trainer, "config", None), "hooks_config", None)
    if cfg is None or not any(cfg.get_hooks(s) for s in STAGES):
        return None
    if getattr(trainer, "_xtuner_hooks", None) is None:  # one per Trainer: connect_trainer runs once
        trainer._xtuner_hooks = XTunerHooks(trainer, cfg)
    return trainer._xtuner_hooks


def xtuner_hook_factories() -> list[Callable[[Any], Hook | None]]:
    """The hooks behind XTuner's TrainerConfig fields profile_step, exp_tracker='tensorboard' and hooks_config
    (each factory returns None when its field is unset)."""
    from .profiler import profiler_factory
    from .tracker import tensorboard_factory

    return [profiler_factory, tensorboard_factory, xtuner_hooks_factory]
