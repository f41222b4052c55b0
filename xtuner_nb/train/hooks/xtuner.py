"""XTuner's `HooksConfig` callables, run from the Trainer's events with XTuner's keyword signatures, on every rank
(the config itself is `xtuner_nb.train.config.HooksConfig`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .events import Control, Hook, SaveKind, TrainState

_SAVE_STAGE = {"checkpoint": "after_save_dcp", "hf": "after_save_hf", "snapshot": "after_save_snapshot"}


class XTunerHooks(Hook):
    """Runs a HooksConfig's callables; a callable with `connect_trainer(trainer)` gets the Trainer once, before the
    first step of the first fit."""

    main_process_only = False  # XTuner calls its hooks on every rank

    def __init__(self, trainer: Any, hooks_config: Any):
        self.trainer, self.cfg = trainer, hooks_config
        self._connected = False

    def on_fit_begin(self, state: TrainState, control: Control) -> None:
        if not self._connected:
            for h in self.cfg.all_hooks():
                if callable(getattr(h, "connect_trainer", None)):
                    h.connect_trainer(self.trainer)
            self._connected = True

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        for h in self.cfg.get_hooks("after_train_step"):
            h(train_step_info=metrics, **_where(state))

    def on_save(self, state: TrainState, path: Path, kind: SaveKind, control: Control) -> None:
        for h in self.cfg.get_hooks(_SAVE_STAGE[kind]):
            h(checkpoint=path, **_where(state))


def _where(state: TrainState) -> dict[str, Any]:
    return dict(step=state.step, epoch=state.epoch, total_step=state.total_step, total_epoch=state.total_epoch)
