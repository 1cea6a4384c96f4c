"""Stopping a run cleanly: Ctrl-C (SIGINT) and SIGTERM ask the loop to save and stop between two steps.

The signal handler only records the request; the training loop reads it after each optimizer step,
saves ``checkpoint.pt`` and raises :class:`TrainingInterrupted`, so a stop never lands mid-step.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .errors import EXIT_SIGINT, EXIT_SIGTERM


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run between two steps, after saving ``checkpoint.pt``."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM (128 + the signal's number, as shells report it)."""
        return EXIT_SIGTERM if self.signum == signal.SIGTERM else EXIT_SIGINT


class StopRequest:
    """Set by the signal handler; the loop reads it between steps (never mid-step)."""

    def __init__(self) -> None:
        self.signum: int | None = None


@contextmanager
def stop_on_signals(announce: bool = True) -> Iterator[StopRequest]:
    """While training, SIGINT and SIGTERM ask the loop to save and stop after the current step.

    A second signal acts at once (the handler in place before). Outside the main thread, where
    handlers cannot be installed, signals keep their usual effect.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        request.signum = signum
        signal.signal(signum, previous[signum])
        if announce:
            print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step, then stopping "
                  f"(send it again to stop at once, without saving)", file=sys.stderr, flush=True)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield request
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
