"""The channel between the workers of `launch()` and the notebook kernel that started them: files in the launch folder.

Each rank appends its hook events to `events/rank<r>.jsonl` (one JSON object a line, flushed at once); rank 0 sends
every event with its TrainState and metrics row, the other ranks their own tokens/s and memory at each step. The
kernel tails the files (`EventTail`) and replays rank 0's events, joined with every rank's figures, as the same hook
calls a single-process fit makes, so the same dashboard draws them.

The other way, a Stop request is a file, `stop`, written by the kernel: every rank looks for it after each step and
asks the Trainer to stop; the Trainer's all-reduce makes every rank stop after the same step, and the run saves one
checkpoint and exits.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from .hooks.events import Control, EndReason, Hook, SaveKind, TrainState
from .logs import _jsonable

LAUNCH_DIR_ENV = "XTUNER_NB_LAUNCH_DIR"  # set by launch(): the worker adds a LaunchEventWriter
STOP_FILE = "stop"
RANK_KEYS = ("ranks/tokens_per_s", "ranks/memory_GB")  # per-rank figures, joined into rank 0's rows (by rank)


def _plain(v: Any) -> Any:
    return str(v) if isinstance(v, Path) else _jsonable(v)


def state_to_dict(state: TrainState, with_history: bool = False) -> dict[str, Any]:
    out = {f.name: _plain(getattr(state, f.name)) for f in fields(state) if f.name != "history"}
    if with_history:
        out["history"] = [{k: _jsonable(v) for k, v in row.items()} for row in state.history]
    return out


def state_from_dict(data: dict[str, Any], history: list[dict[str, Any]]) -> TrainState:
    known = {f.name for f in fields(TrainState)}
    kw = {k: v for k, v in data.items() if k in known and k != "history"}
    if kw.get("exp_dir") is not None:
        kw["exp_dir"] = Path(kw["exp_dir"])
    return TrainState(**kw, history=history)


class LaunchEventWriter(Hook):
    """In each worker: writes this rank's events for the kernel and honours the kernel's Stop file."""

    main_process_only = False

    def __init__(self, launch_dir: Path, rank: int):
        self.launch_dir = Path(launch_dir)
        (self.launch_dir / "events").mkdir(parents=True, exist_ok=True)
        self.rank = rank
        self._file = open(self.launch_dir / "events" / f"rank{rank}.jsonl", "a", encoding="utf-8")

    def _write(self, event: str, **data: Any) -> None:
        self._file.write(json.dumps({"event": event, "rank": self.rank, **data}, default=str) + "\n")
        self._file.flush()

    def _main(self, state: TrainState) -> bool:
        return state.rank == 0

    def on_fit_begin(self, state: TrainState, control: Control) -> None:
        self._write("fit_begin", pid=os.getpid(), state=state_to_dict(state, with_history=self._main(state)))

    def on_step_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        step_time = metrics.get("time/step_time") or 0.0
        mine = {"tokens_per_s": metrics.get("runtime_info/text_tokens", 0) / step_time if step_time else None,
                "memory_GB": metrics.get("memory/max_memory_GB")}
        row = {k: _plain(v) for k, v in metrics.items()} if self._main(state) else None
        self._write("step_end", step=state.step, mine=mine, state=state_to_dict(state), metrics=row)
        stop = self.launch_dir / STOP_FILE
        if stop.exists():  # its text says who asked: "Stop button" or "kernel interrupt"
            control.request_stop(stop.read_text().strip() or "Stop button")

    def on_eval_end(self, state: TrainState, metrics: dict[str, Any], control: Control) -> None:
        if self._main(state):
            self._write("eval_end", state=state_to_dict(state), metrics={k: _plain(v) for k, v in metrics.items()})

    def on_save(self, state: TrainState, path: Path, kind: SaveKind, control: Control) -> None:
        if self._main(state):
            self._write("save", state=state_to_dict(state), path=str(path), kind=kind)

    def on_fit_end(self, state: TrainState, reason: EndReason, control: Control) -> None:
        self._write("fit_end", state=state_to_dict(state), reason=reason, stop_reason=control.stop_reason)
        self._file.close()


class EventTail:
    """In the kernel: the new complete lines of every rank's event file since the last `read()`."""

    def __init__(self, launch_dir: Path):
        self.folder = Path(launch_dir) / "events"
        self._offsets: dict[Path, int] = {}

    def read(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.folder.glob("rank*.jsonl")):
            with open(path, "rb") as f:
                f.seek(self._offsets.get(path, 0))
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]  # a line being written stays for the next read
            self._offsets[path] = self._offsets.get(path, 0) + len(complete)
            out += [json.loads(line) for line in complete.splitlines() if line.strip()]
        return out


class RankFigures:
    """The latest tokens/s and memory of every rank, added to rank 0's rows as `ranks/...` lists (by rank)."""

    def __init__(self, world_size: int):
        self.tokens_per_s: list[float | None] = [None] * world_size
        self.memory_gb: list[float | None] = [None] * world_size

    def update(self, event: dict[str, Any]) -> None:
        r = event["rank"]
        if r < len(self.tokens_per_s):
            self.tokens_per_s[r] = event["mine"].get("tokens_per_s")
            self.memory_gb[r] = event["mine"].get("memory_GB")

    def join(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**row, RANK_KEYS[0]: list(self.tokens_per_s), RANK_KEYS[1]: list(self.memory_gb)}
