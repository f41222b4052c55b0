"""Logs as XTuner writes them: `logs/rank{r}.log` and `logs/exp_tracking/rank{r}/tracker.jsonl`; the console; and
`in_notebook_kernel()`, the one answer to "are we running inside a Jupyter kernel".

The tracker writes one JSON object per step and flushes every row (XTuner flushes every 30 s from a thread; a
notebook user who interrupts wants the rows that were printed to be on disk).
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

LOGGER_NAME = "xtuner_nb"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


class _Format(logging.Formatter):
    def __init__(self, rank: int):
        super().__init__()
        self.rank = rank

    def format(self, record: logging.LogRecord) -> str:
        t = datetime.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        return f"[XTuner][RANK {self.rank}][{t}][{record.levelname}] {record.getMessage()}"


def in_notebook_kernel() -> bool:
    """True inside a running Jupyter kernel; read from sys.modules, so nothing is imported here."""
    app = sys.modules.get("ipykernel.kernelapp")
    return app is not None and app.IPKernelApp.initialized()


def _console(stream, name: str, keep) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.INFO)
    handler.setFormatter(_Format(0))
    handler.addFilter(lambda record: keep(record.levelno))
    handler.set_name(name)
    return handler


def setup_logging(log_dir: Path, rank: int, console: bool = True) -> logging.Logger:
    """File handler at DEBUG for every rank; console at INFO on rank 0 only. Re-running replaces handlers.

    The console is stderr, as XTuner's, in scripts and under torchrun. In a Jupyter kernel, which paints stderr red,
    INFO goes to stdout and only warnings and errors to stderr, so a healthy run does not look like a failure."""
    logger = get_logger()
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    log_dir.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(log_dir / f"rank{rank}.log", encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(_Format(rank))
    logger.addHandler(fh)
    if console and rank == 0 and in_notebook_kernel():
        logger.addHandler(_console(sys.stdout, "console", lambda level: level < logging.WARNING))
        logger.addHandler(_console(sys.stderr, "console-warnings", lambda level: level >= logging.WARNING))
    elif console and rank == 0:
        logger.addHandler(_console(sys.stderr, "console", lambda level: True))
    return logger


def set_console_level(level: int) -> None:
    """The least level the console shows (a dashboard raises it to WARNING while it draws the steps)."""
    for h in get_logger().handlers:
        if h.get_name() in ("console", "console-warnings"):
            h.setLevel(level)


class JsonlTracker:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._f.write(json.dumps({k: _jsonable(v) for k, v in row.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def read_tracker(path: Path, upto_step: int | None = None) -> list[dict[str, Any]]:
    """Rows of a tracker.jsonl (a torn last line from a kill is skipped); after a resume, rows past the checkpoint
    belong to the abandoned future and are dropped."""
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if upto_step is None or row.get("step", 0) <= upto_step:
            rows.append(row)
    return rows


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v


def format_step_line(row: dict[str, Any], total_step: int, epoch: int) -> str:
    """The concise per-step line, in XTuner's order and names."""
    mem = row.get("memory/max_memory_GB")
    mfu = row.get("runtime_info/mfu")
    parts = [
        f"Epoch {epoch} Step {row['step']}/{total_step}",
        f"data_time: {row['time/data_time']:.4f}",
        f"lr: {row['lr']:.6e}",
        f"time: {row['time/step_time']:.4f}",
        f"text_tokens: {row['runtime_info/text_tokens']}",
        f"reduced_llm_loss: {row['loss/reduced_llm_loss']:.8f},",
        f"local_loss: {row['loss/local_loss']:.8f}",
        f"grad_norm: {row['grad_norm']:.8f}",
        f"max_memory: {mem:.2f} GB" if mem is not None else "",
        f"tgs: {row['runtime_info/tgs']:.1f}",
        f"exp_tgs: {row['runtime_info/exp_tgs']:.1f}",
        f"mfu: {100 * mfu:.1f}%" if mfu is not None else "",
        f"eta: {datetime.timedelta(seconds=int(row['time/eta_seconds']))}",
    ]
    if row.get("skipped_update"):
        parts.append("(update skipped: non-finite grad norm)")
    return " ".join(p for p in parts if p)
