"""Graceful stop on a kernel interrupt (■), Ctrl-C, or torchrun's SIGTERM: finish the step, checkpoint, return."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable

from .tracker import get_logger


def in_kernel() -> bool:
    return "ipykernel" in sys.modules


def install_interrupt_handler(trainer) -> Callable[[], None]:
    """First SIGINT: ask `trainer` to stop after the current step. A second one aborts at once. Returns `restore`."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if trainer._stop_reason == "interrupt":
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        trainer._stop_reason = "interrupt"
        get_logger().warning(f"Interrupt received: finishing step {trainer.cur_step + 1}, then saving a checkpoint "
                             "(interrupt again to abort without saving).")

    signal.signal(signal.SIGINT, on_sigint)
    sigterm_prev = None
    if not in_kernel():  # torchrun forwards SIGTERM to its workers when it is stopped
        sigterm_prev = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, on_sigint)

    def restore():
        signal.signal(signal.SIGINT, previous)
        if sigterm_prev is not None:
            signal.signal(signal.SIGTERM, sigterm_prev)

    return restore
