"""XTuner's `exp_tracker="tensorboard"`: every numeric metric as a TensorBoard scalar (tag = the metric's name, e.g.
`loss/reduced_llm_loss`) at its step, written with torch's SummaryWriter (the tensorboard package).

`tensorboard --logdir <log_dir>/exp_tracking` shows them; tracker.jsonl is written as well (resume reads it).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .events import Control, EndReason, Hook, TrainState


class TensorBoardTracker:
    def __init__(self, log_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch raises this when the tensorboard package is missing
            raise ImportError("exp_tracker='tensorboard' needs the tensorboard package: "
                              "pip install 'xtuner_nb[tensorboard]' (or pip install tensorboard)") from exc
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self._writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, row: dict[str, Any]) -> None:
        step = int(row.get("step", 0))
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and math.isfinite(value):
                self._writer.add_scalar(key, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class TensorBoardHook(Hook):
    """Mirrors each metrics row (train and eval) into TensorBoard event files in `log_dir` (opened per fit)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.tracker: TensorBoardTracker | None = None

    def _open(self) -> TensorBoardTracker:
        if self.tracker is None:
            self.tracker = TensorBoardTracker(self.log_dir)
        return self.tracker

    def on_fit_begin(self, state: TrainState, control: Control) -> None:
        self._open()

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        self._open().write(metrics)

    def on_eval_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        self._open().write({"step": state.step, **metrics})

    def on_fit_end(self, state: TrainState, reason: EndReason, control: Control) -> None:
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
