"""A notebook executed in a real kernel (nbclient, as nbmake and `make demo` run notebooks), with the timeline of what
each cell sent: when it started and ended, and when each image (a dashboard frame) was sent and arrived.

Used by `tests/notebook/test_live_frames.py` (the quickstart's training cell must send live frames) and by
`bench/dashboard_overhead.py --notebook` (frames and the dashboard's share of a tutorial's fits). Two clocks: the
kernel's own message timestamps (when a frame was sent; the client's polling does not blur them), and this process's
clock when nbclient handed the message over (when it arrived here, which a live view needs: before the cell ended).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

IMAGE_MESSAGES = ("display_data", "update_display_data", "execute_result")


def _when(msg: dict[str, Any]) -> datetime:
    date = msg["header"]["date"]
    return date if isinstance(date, datetime) else datetime.fromisoformat(str(date))


@dataclass
class CellTimeline:
    """What one cell sent while it ran: its start (execute_input), its end (the kernel idle again), its frames."""

    index: int
    started: datetime | None = None
    ended: datetime | None = None
    frames: list[datetime] = field(default_factory=list)  # every image/png output or update, in order
    frames_received: list[datetime] = field(default_factory=list)  # when each of them arrived here
    ended_received: datetime | None = None  # when the kernel's idle status for this cell arrived here

    @property
    def seconds(self) -> float:
        return (self.ended - self.started).total_seconds()

    def frame_offsets(self) -> list[float]:
        """Seconds from the cell's start to each frame (kernel time)."""
        return [(t - self.started).total_seconds() for t in self.frames]

    def seconds_before_end_received(self) -> list[float]:
        """For each frame, how many seconds before the message saying the cell had ended it arrived here (this
        process's clock: what a viewer of the running cell saw, and when)."""
        return [(self.ended_received - t).total_seconds() for t in self.frames_received]


def recording_client(nb, cwd: Path, timeout: int = 900):
    """An nbclient `NotebookClient` for `nb` (run in `cwd`) whose `timelines` maps a cell index to its CellTimeline."""
    from nbclient import NotebookClient

    class FrameRecordingClient(NotebookClient):
        def process_message(self, msg, cell, cell_index):
            line = self.timelines.setdefault(cell_index, CellTimeline(cell_index))
            kind, content, now = msg["msg_type"], msg["content"], datetime.now(timezone.utc)
            if kind == "execute_input":
                line.started = _when(msg)
            elif kind == "status" and content.get("execution_state") == "idle":
                line.ended, line.ended_received = _when(msg), now
            elif kind in IMAGE_MESSAGES and "image/png" in (content.get("data") or {}):
                line.frames.append(_when(msg))
                line.frames_received.append(now)
            return super().process_message(msg, cell, cell_index)

    # this environment's kernelspec first, so "python3" is this interpreter (as xtuner_nb.demo does)
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(Path(sys.prefix) / "share" / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = FrameRecordingClient(nb, kernel_name="python3", timeout=timeout,
                                  resources={"metadata": {"path": str(cwd)}})
    client.timelines = {}
    return client


def run_cells(nb, cwd: Path, last: int | None = None, timeout: int = 900) -> dict[int, CellTimeline]:
    """Execute the cells of `nb` in order, up to and including cell index `last` (all by default), in one fresh
    kernel; returns the timelines. The outputs stay in `nb`."""
    client = recording_client(nb, cwd, timeout)
    with client.setup_kernel():
        count = 0
        for index, cell in enumerate(nb.cells[: None if last is None else last + 1]):
            if cell.cell_type == "code":
                count += 1
            client.execute_cell(cell, index, execution_count=count if cell.cell_type == "code" else None)
    return client.timelines


def cell_index(nb, text: str) -> int:
    """The index of the first code cell whose source contains `text`."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and text in cell.source:
            return index
    raise LookupError(f"no code cell contains {text!r}")
