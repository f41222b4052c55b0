"""Graceful stop on a kernel interrupt (■), Ctrl-C, or torchrun's SIGTERM: finish the step, checkpoint, return."""

from __future__ import annotations

import signal
import threading
from typing import Callable

from .logs import get_logger, in_notebook_kernel


def install_interrupt_handler(request_stop: Callable[[str], None],
                              next_step: Callable[[], int]) -> Callable[[], None]:
    """First SIGINT: `request_stop("interrupt")`, the run stops after the current step. A second one aborts at once.
    Returns `restore`, which puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGINT)
    interrupted = False

    def on_sigint(signum, frame):
        nonlocal interrupted
        if interrupted:
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        interrupted = True
        request_stop("interrupt")
        get_logger().warning(f"Interrupt received: finishing step {next_step()}, then saving a checkpoint "
                             "(interrupt again to abort without saving).")

    signal.signal(signal.SIGINT, on_sigint)
    sigterm_prev = None
    if not in_notebook_kernel():  # torchrun forwards SIGTERM to its workers when it is stopped
        sigterm_prev = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, on_sigint)

    def restore():
        signal.signal(signal.SIGINT, previous)
        if sigterm_prev is not None:
            signal.signal(signal.SIGTERM, sigterm_prev)

    return restore
