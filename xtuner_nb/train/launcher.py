"""`launch(config, nproc_per_node=N)`: train on N processes (all the GPUs of the machine) from a notebook cell.

The workers are real torchrun processes running the command line's code path (`python -m torch.distributed.run
--standalone ... -m xtuner_nb.train.cli sft --config <launch>/config.yaml`); the config travels as validated YAML,
never as pickled code. The kernel tails the workers' events (`launch_events.py`) and replays them as the hook events
of a single-process fit, so the same dashboard draws the run live, with every rank's tokens/s and memory.

Stopping: the Stop button (under `await alaunch(...)`, as under `await trainer.afit()`) or the kernel's ■ interrupt
writes the launch folder's `stop` file; every rank finishes its step, they save one checkpoint together and exit, and
the call returns. A second ■ kills the workers at once.

No process outlives the kernel: torchrun is started in its own session (the kernel's ■ must not reach it directly)
with Linux's parent-death signal set to SIGKILL, and each worker sets the same on itself, so a kernel that exits, is
shut down, restarted or killed takes torchrun and then the workers with it. A worker that fails makes torchrun stop
the others; the call raises `LaunchError` naming the rank, with its traceback.

Layout: `<work_dir>/launches/<stamp>/` holds config.yaml, events/, torchrun.log, ranks/ (each rank's stdout/stderr).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .config import TrainerConfig
from .hooks.builtin import load_hook_factories, plot_history_function
from .hooks.events import Control, Hook, call_every_hook, call_hooks
from .launch_config import config_yaml
from .launch_events import LAUNCH_DIR_ENV, STOP_FILE, EventTail, RankFigures, state_from_dict
from .launch_failure import LaunchError, describe_failure
from .logs import in_notebook_kernel
from .metrics import history_frame

__all__ = ["launch", "alaunch", "Launch", "LaunchError", "config_yaml", "default_nproc"]

POLL_S = 0.2  # how often the kernel reads the workers' events and checks the processes
PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Linux: this process gets `sig` when its parent exits (however it ends). Elsewhere: nothing."""
    if sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)


def default_nproc() -> int:
    """The number of visible GPUs; on a machine without one, 2 CPU processes (gloo)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 2


def launch(config: TrainerConfig, nproc_per_node: int | None = None, *, show_dashboard: bool = True,
           hooks: list[Hook] | None = None) -> "Launch":
    """Train `config` on `nproc_per_node` processes (default: every visible GPU; on CPU 2 gloo processes) and wait
    for the run, drawing it live in a notebook cell. ■ (interrupt) stops it after the current step with a
    checkpoint. Returns the finished `Launch`: `.history`, `.exp_dir`, `.plot()`, `.load_trainer()`.

    `hooks` run here, in the kernel, on the workers' events replayed (as the dashboard does): they observe the run
    and may request a stop, nothing more. A failed run raises `LaunchError` (the rank, its traceback)."""
    run = Launch(config, nproc_per_node, show_dashboard=show_dashboard, hooks=hooks)
    return run.wait()


async def alaunch(config: TrainerConfig, nproc_per_node: int | None = None, *, show_dashboard: bool = True,
                  hooks: list[Hook] | None = None) -> "Launch":
    """`launch()` that yields to the event loop while it waits, so the dashboard's Stop button works
    (`run = await alaunch(config, 2)`, as `await trainer.afit()`)."""
    run = Launch(config, nproc_per_node, show_dashboard=show_dashboard, hooks=hooks)
    return await run.wait_async()


class Launch:
    """One launched run: its processes, the events replayed so far, and what it ended with."""

    def __init__(self, config: TrainerConfig, nproc_per_node: int | None = None, *, show_dashboard: bool = True,
                 hooks: list[Hook] | None = None):
        self.config, self.nproc = config, nproc_per_node or default_nproc()
        if self.nproc < 1:
            raise ValueError(f"nproc_per_node must be at least 1 (got {nproc_per_node})")
        text = config_yaml(config)  # before anything starts: a config that cannot travel is refused here
        self.show_dashboard, self.running_async = show_dashboard, False
        work_dir = Path(config.work_dir or Path.cwd() / "work_dir").resolve()
        stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        self.launch_dir = work_dir / "launches" / f"{stamp}-{os.getpid()}-{id(self) % 10000}"
        self.launch_dir.mkdir(parents=True)
        (self.launch_dir / "config.yaml").write_text(text)
        self.hooks = list(hooks or []) + self._default_hooks()
        self.control, self.figures = Control(), RankFigures(self.nproc)
        self.rows: list[dict[str, Any]] = []
        self.state = None  # the latest TrainState of rank 0
        self.exp_dir: Path | None = None
        self.end_reason: str | None = None
        self.returncode: int | None = None
        self.pids: set[int] = set()  # torchrun's and every worker's, as seen while the run went (tests check them)
        self._tail, self._stop_sent, self._interrupts = EventTail(self.launch_dir), None, 0
        self._procs: dict[int, Any] = {}  # psutil.Process of each pid in `pids`
        self.process = self._start()
        self._note_pids()

    def _default_hooks(self) -> list[Hook]:
        if not (self.show_dashboard and in_notebook_kernel()):
            return []
        return [h for h in (f(self) for f in load_hook_factories(["dashboard"], explicit=False)) if h is not None]

    def _start(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={self.nproc}",
               "--log-dir", str(self.launch_dir / "ranks"), "--redirects", "3",
               "-m", "xtuner_nb.train.cli", "sft", "--config", str(self.launch_dir / "config.yaml")]
        env = {**os.environ, LAUNCH_DIR_ENV: str(self.launch_dir), "PYTHONUNBUFFERED": "1",
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "TOKENIZERS_PARALLELISM": "false"}
        env.pop("JPY_PARENT_PID", None)  # the workers are not kernels
        log = open(self.launch_dir / "torchrun.log", "wb")
        # its own session: the kernel's ■ (SIGINT to the kernel's process group) must not reach torchrun
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=Path.cwd(), start_new_session=True, preexec_fn=die_with_parent)
        log.close()
        self.pids.add(proc.pid)
        return proc

    # ---- stopping ------------------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "Stop button") -> None:
        """Every rank finishes its current step, they save one checkpoint, and the run ends."""
        if self._stop_sent is None:
            self._stop_sent = reason
            (self.launch_dir / STOP_FILE).write_text(reason)

    def kill(self) -> None:
        """End the run at once (no checkpoint): torchrun gets SIGKILL, and its workers die with it."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._wait_gone(10.0)

    def _wait_gone(self, timeout: float) -> None:
        """Wait for every process of the run to end; after `timeout` the ones left get SIGKILL."""
        import psutil

        left = [p for p in self._procs.values() if p.is_running()]
        _, alive = psutil.wait_procs(left, timeout=timeout)
        for proc in alive:
            try:
                proc.kill()  # psutil checks the pid was not reused by another process
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)

    # ---- waiting -------------------------------------------------------------------------------------------------
    def wait(self) -> "Launch":
        """Until the run ends; the first KeyboardInterrupt (■) asks for a graceful stop, a second one kills it."""
        while True:
            try:
                while not self.poll():
                    time.sleep(POLL_S)
                return self._finish()
            except KeyboardInterrupt:
                self._on_interrupt()

    async def wait_async(self) -> "Launch":
        """`wait()` that lets the event loop run between polls (the Stop button's clicks arrive). The kernel's ■
        would cancel the cell's task: while this waits, SIGINT is trapped instead, to the same effect as in
        `wait()`."""
        self.running_async = True
        restore = self._trap_sigint()
        try:
            while not self.poll():
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            self.kill()
            raise
        finally:
            restore()
            self.running_async = False
        return self._finish()

    def _trap_sigint(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            self._interrupts += 1
            if self._interrupts == 1:
                self._graceful_stop()
            else:  # no exception from a signal handler inside the event loop: kill, and _finish raises
                self.process.kill()

        signal.signal(signal.SIGINT, on_sigint)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _on_interrupt(self) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            self.kill()
            raise KeyboardInterrupt
        self._graceful_stop()

    def _graceful_stop(self) -> None:
        print(f"Interrupt received: every rank finishes its step, then they save a checkpoint "
              f"(interrupt again to kill them without saving). Logs: {self.launch_dir}", file=sys.stderr)
        self.request_stop("kernel interrupt")

    def poll(self) -> bool:
        """Replay the workers' new events (to the dashboard); True once torchrun has exited (every event replayed).
        `wait()` calls it in a loop; call it yourself to follow a run without waiting for it."""
        self._note_pids()
        exited = self.process.poll() is not None
        for event in self._tail.read():
            self._replay(event)
        if self.control.should_stop and not exited:  # the dashboard's Stop button (or another hook) asked
            self.request_stop(self.control.stop_reason or "Stop button")
        return exited

    def _note_pids(self) -> None:
        import psutil

        try:
            found = [self._procs.get(self.process.pid) or psutil.Process(self.process.pid)]
            found += found[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for proc in found:
            self._procs.setdefault(proc.pid, proc)
        self.pids.update(p.pid for p in found)

    def _replay(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "step_end":
            self.figures.update(event)
        if event["rank"] != 0:
            return
        state = self.state = state_from_dict(event["state"], self.rows)
        if kind == "fit_begin":
            self.exp_dir = state.exp_dir
            self.rows[:] = event["state"].get("history", [])
            call_hooks(self.hooks, "on_fit_begin", state, self.control)
        elif kind == "step_end":
            row = self.figures.join(event["metrics"])
            self.rows.append(row)
            call_hooks(self.hooks, "on_step_end", state, row, self.control)
        elif kind == "eval_end":
            self.rows.append(event["metrics"])
            call_hooks(self.hooks, "on_eval_end", state, event["metrics"], self.control)
        elif kind == "save":
            call_hooks(self.hooks, "on_save", state, Path(event["path"]), event["kind"], self.control)
        elif kind == "fit_end":
            self.end_reason = event["reason"]
            self.control.stop_reason = event.get("stop_reason")
            call_every_hook(self.hooks, "on_fit_end", state, event["reason"], self.control)

    def _finish(self) -> "Launch":
        self.returncode = self.process.returncode
        self._wait_gone(30.0)
        if self._interrupts > 1:
            raise KeyboardInterrupt(f"the launched run was killed (interrupted twice): no checkpoint of its last "
                                    f"steps; logs: {self.launch_dir}")
        if self.returncode == 0:
            return self
        error = describe_failure(self.launch_dir, self.returncode, self.exp_dir)
        error.pids = sorted(self.pids)
        if self.state is not None and self.end_reason is None:  # the dashboard says how it ended
            self.end_reason = "error"
            call_every_hook(self.hooks, "on_fit_end", self.state, "error", self.control)
        raise error

    # ---- afterwards ----------------------------------------------------------------------------------------------
    @property
    def history(self):
        """Rank 0's rows, one per step (an eval row joined to its step's), with `ranks/...` lists per rank."""
        return history_frame(self.rows)

    def plot(self):
        return plot_history_function()(self.history)

    def load_trainer(self, **overrides: Any):
        """A Trainer in this kernel, resumed from the run's latest checkpoint (one process: the checkpoint is
        resharded), for `evaluate()`, `chat`, `export_hf()`, `export_gguf()` or more training with `fit()`."""
        from .trainer import Trainer

        return Trainer.from_config(self.config, **{"auto_resume": True, **overrides})

    def __repr__(self) -> str:
        step = f"step {self.state.step}/{self.state.total_step}" if self.state else "not started"
        return (f"Launch({self.nproc} processes, {step}, {self.end_reason or 'running'}, "
                f"exp_dir={str(self.exp_dir)!r})")
