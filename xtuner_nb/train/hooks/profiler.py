"""XTuner's `profile_step` / `profile_time` / `profile_memory`: profile chosen steps with torch.profiler.

Files, as XTuner names them: `<exp_dir>/profiling_time/step-N/rank{r}_trace.json` (a Chrome trace: open it in
https://ui.perfetto.dev or chrome://tracing) and `<exp_dir>/profiling_memory/step-N/rank{r}_memory_snapshot.pickle`
(CUDA: the allocator history for https://pytorch.org/memory_viz; CPU: `rank{r}_memory_timeline.json`, the
profiler's memory timeline). The profile of step N spans from the end of step N-1 to the end of step N.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .events import Control, Hook, TrainState
from ..logs import get_logger

PROFILE_TIME_DIR = "profiling_time"
PROFILE_MEMORY_DIR = "profiling_memory"


class StepProfiler(Hook):
    main_process_only = False  # every rank writes its own trace, as XTuner

    def __init__(self, exp_dir: Path, steps: list[int], profile_time: bool, profile_memory: bool, rank: int = 0):
        self.exp_dir, self.steps, self.rank = Path(exp_dir), set(steps), rank
        self.profile_time, self.profile_memory = profile_time, profile_memory
        self._prof: torch.profiler.profile | None = None
        self._step: int | None = None

    def on_fit_begin(self, state: TrainState, control: Control) -> None:
        self._maybe_start(state.step + 1)

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        if self._step == state.step:
            self._stop()
        self._maybe_start(state.step + 1)

    def on_fit_end(self, state: TrainState, reason: str, control: Control) -> None:
        if self._prof is not None:  # the run ended before the profiled step finished
            self._prof.__exit__(None, None, None)
            self._prof, self._step = None, None
        if torch.cuda.is_available() and self.profile_memory:
            torch.cuda.memory._record_memory_history(enabled=None)

    # ---- internals -------------------------------------------------------------------------------------------
    def _maybe_start(self, step: int) -> None:
        if step not in self.steps or not (self.profile_time or self.profile_memory):
            return
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            if self.profile_memory:
                torch.cuda.memory._record_memory_history(max_entries=1_000_000)
        self._prof = torch.profiler.profile(activities=activities, record_shapes=True,
                                            profile_memory=self.profile_memory, with_stack=self.profile_memory)
        self._prof.__enter__()
        self._step = step

    def _stop(self) -> None:
        prof, step = self._prof, self._step
        self._prof, self._step = None, None
        prof.__exit__(None, None, None)
        log = get_logger()
        if self.profile_time:
            out = self.exp_dir / PROFILE_TIME_DIR / f"step-{step}"
            out.mkdir(parents=True, exist_ok=True)
            prof.export_chrome_trace(str(out / f"rank{self.rank}_trace.json"))
            log.info(f"profiler trace of step {step}: {out}")
        if self.profile_memory:
            out = self.exp_dir / PROFILE_MEMORY_DIR / f"step-{step}"
            out.mkdir(parents=True, exist_ok=True)
            if torch.cuda.is_available():
                with open(out / f"rank{self.rank}_memory_snapshot.pickle", "wb") as f:
                    pickle.dump(torch.cuda.memory._snapshot(), f)
                torch.cuda.memory._record_memory_history(enabled=None)
            else:
                prof.export_memory_timeline(str(out / f"rank{self.rank}_memory_timeline.json"))
            log.info(f"memory profile of step {step}: {out}")

