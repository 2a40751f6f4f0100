"""A clean stop on SIGINT and SIGTERM: finish the step, save, say so in one line, exit ``128 + signal``.

:class:`Shutdown` replaces the two signals' handlers while a run trains. The first signal only sets a flag;
the training loop reads it at the end of every step (all ranks agree on it with one all-reduce, so they
stop after the same step and none waits alone in a collective), saves a checkpoint through the run's normal,
atomic save path and raises :class:`TrainingStopped`. ``lrkit train`` prints that exception's one line, for
example ``lrkit train: SIGTERM at step 37: saved runs/r/checkpoints/step_00000037.pt; exit 143``, without a
traceback, and exits with :func:`exit_code`.

A second signal is ignored: under ``torchrun`` each rank gets a terminal's Ctrl-C twice, once from the
terminal and once forwarded by the agent. A third abandons the stop at once (:class:`ShutdownAbandoned`, a
``BaseException`` like ``KeyboardInterrupt``): a save cut short leaves the last good checkpoint intact,
since a checkpoint is published by an atomic rename only once complete.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = ["SIGNALS", "Shutdown", "ShutdownAbandoned", "TrainingStopped", "exit_code"]

#: The signals that stop a run cleanly.
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
#: The signal that abandons a clean stop: the third one received.
_ABANDON_AT = 3


def exit_code(signum: int) -> int:
    """The exit status of a run stopped by signal ``signum``: ``128 + signum`` (130 for SIGINT, 143 for
    SIGTERM), what a shell reports for a process that the signal killed. The one place that decides it."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; the number for a value that names no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class TrainingStopped(Exception):
    """The run stopped cleanly after a signal, at ``step`` (optimizer updates done).

    Attributes:
        signum: the signal (the highest number any rank received, when ranks got different ones).
        step: the last step done; the run resumes after it.
        checkpoint: the checkpoint that holds ``step``, or None when none was written (see ``reason``).
        reason: why none was written, when ``checkpoint`` is None.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None, reason: str = "") -> None:
        self.signum, self.step, self.checkpoint, self.reason = signum, step, checkpoint, reason
        super().__init__(self.line())

    @property
    def exit_code(self) -> int:
        """``128 + signum`` (:func:`exit_code`)."""
        return exit_code(self.signum)

    def line(self) -> str:
        """The one line ``lrkit train`` prints, e.g. ``SIGTERM at step 37: saved .../step_00000037.pt; exit 143``."""
        outcome = f"saved {self.checkpoint}" if self.checkpoint is not None else self.reason
        return f"{signal_name(self.signum)} at step {self.step}: {outcome}; exit {self.exit_code}"


class ShutdownAbandoned(BaseException):
    """A third signal: the clean stop is abandoned where it stands (a save cut short publishes nothing)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"{signal_name(signum)} received 3 times: stopped at once; exit {exit_code(signum)}")

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)


class Shutdown:
    """Records SIGINT and SIGTERM while in its ``with`` block, and restores the previous handlers after it.

    ``requested`` is the first signal's number (0: none yet). A signal the process ignores (``SIG_IGN``: a shell
    starts a background job with SIGINT ignored, so a terminal's Ctrl-C does not reach it) stays ignored.
    Outside the main thread Python cannot install handlers: the object is then inert (``active`` is False)
    and the signals keep their handlers.
    """

    def __init__(self) -> None:
        self.requested = 0
        self.count = 0
        self.active = False
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> Shutdown:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:  # an ignored signal stays ignored (`cmd &`)
                    self._previous[sig] = signal.signal(sig, self._handle)
            self.active = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for sig, previous in self._previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default is the nearest.
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
        self.active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.requested == 0:
            self.requested = signum
        if self.count >= _ABANDON_AT:
            raise ShutdownAbandoned(signum)
