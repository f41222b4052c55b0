"""What failed in a launched run: the rank torchrun names as the first failure, and that rank's traceback.

torchrun ends a failed run with a summary whose "Root Cause (first observed failure)" names the rank and its exit
code; a worker that raised wrote its traceback to its error file (torch's `@record`, around the CLI's fit), and its
stderr is in `ranks/.../<local_rank>/stderr.log` (torchrun's `--redirects`). A worker killed by a signal has no
traceback: the exit code says which signal.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path


class LaunchError(RuntimeError):
    """A launched run failed: `rank` (None when torchrun named none) and `returncode` of torchrun."""

    def __init__(self, message: str, rank: int | None, returncode: int | None):
        super().__init__(message)
        self.rank, self.returncode = rank, returncode
        self.pids: list[int] = []  # the run's processes (torchrun's and the workers'), all gone when this is raised


_ROOT = re.compile(r"Root Cause.*?rank\s*:\s*(\d+)\s*\(local_rank:\s*(\d+)\).*?exitcode\s*:\s*(-?\d+)", re.S)


def describe_failure(launch_dir: Path, returncode: int | None, exp_dir: Path | None = None) -> LaunchError:
    """The error to raise in the kernel for a run whose torchrun exited with `returncode` (`exp_dir`: the run's,
    once known: its logs/rank<r>.log are named)."""
    log = launch_dir / "torchrun.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    found = _ROOT.search(text)
    if found is None:
        tail = "\n".join(text.splitlines()[-30:])
        return LaunchError(f"the launched run failed (torchrun exit code {returncode}); torchrun's output ends "
                           f"with:\n{tail}\n(all of it: {log})", None, returncode)
    rank, local_rank, code = (int(g) for g in found.groups())
    how = f"was killed by signal {-code} ({_signal_name(-code)})" if code < 0 else f"exited with code {code}"
    traceback = _error_file_traceback(launch_dir, local_rank)
    if traceback:
        detail = f"\n{traceback}"
    else:
        tail = _stderr_tail(launch_dir, local_rank)
        detail = f"\nits last output:\n{tail}" if tail else ""
    rank_log = f"; this rank's log: {Path(exp_dir) / 'logs' / f'rank{rank}.log'}" if exp_dir else ""
    return LaunchError(f"rank {rank} {how}; torchrun stopped the other ranks.{detail}\n(torchrun's logs: "
                       f"{launch_dir}{rank_log})", rank, returncode)


def _rank_dir(launch_dir: Path, local_rank: int) -> Path | None:
    found = sorted((launch_dir / "ranks").glob(f"*/attempt_*/{local_rank}"))
    return found[-1] if found else None


def _error_file_traceback(launch_dir: Path, local_rank: int) -> str | None:
    folder = _rank_dir(launch_dir, local_rank)
    error = folder / "error.json" if folder else None
    if error is None or not error.exists():
        return None
    message = json.loads(error.read_text()).get("message", {})
    if isinstance(message, dict):
        return message.get("extraInfo", {}).get("py_callstack") or message.get("message")
    return str(message)


def _stderr_tail(launch_dir: Path, local_rank: int, lines: int = 40) -> str:
    folder = _rank_dir(launch_dir, local_rank)
    err = folder / "stderr.log" if folder else None
    if err is None or not err.exists():
        return ""
    return "\n".join(err.read_text(errors="replace").splitlines()[-lines:])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
