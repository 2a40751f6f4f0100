"""A clean stop on SIGINT, SIGTERM and SIGUSR1: finish the step, save, say so in one line, exit.

:class:`Shutdown` replaces the signals' handlers while a run trains. The first signal only sets a flag;
the training loop reads it at the end of every step (all ranks agree on it with one all-reduce, so they
stop after the same step and none waits alone in a collective), saves a checkpoint through the run's normal,
atomic save path and raises :class:`TrainingStopped`. ``lrkit train`` prints that exception's one line, for
example ``lrkit train: SIGTERM at step 37: saved runs/r/checkpoints/step_00000037.pt; exit 0``, without a
traceback, and exits with :func:`exit_code`.

The exit code (:func:`exit_code`, the one place that decides it):

- **SIGTERM and SIGUSR1 are preemption** (:data:`PREEMPTION`): a cluster's scheduler (SLURM, Kubernetes) asks
  the job to stop before it kills it, or warns of the time limit. The run exits **0** once nothing is lost:
  the stop saved the last step (or an interval save already had), or no step ran since the start or the
  resume (the checkpoint it started from, if any, holds the state). ``--resume auto`` then continues bit for
  bit. This is the convention of requeued jobs: the stop is part of the plan, not a failure.
- When steps ran that no checkpoint holds (``--save-interval 0`` turns checkpoints off), the work is lost:
  the run exits ``128 + signal`` (143 for SIGTERM, 138 for SIGUSR1), what a shell reports for a process the
  signal killed, so that a job script or a scheduler sees a failure.
- **SIGINT is a person's Ctrl-C**: always ``128 + 2`` = 130, saved or not; the person stopped the run and a
  shell's ``$?`` says so.
- When ranks got different signals, the highest number decides (SIGTERM 15 > SIGUSR1 10 > SIGINT 2): a
  preemption wins over a Ctrl-C.

A second signal is ignored: under ``torchrun`` each rank gets a terminal's Ctrl-C twice, once from the
terminal and once forwarded by the agent, and under SLURM a rank gets the scheduler's SIGTERM once directly
and once forwarded by the agent. A third abandons the stop at once (:class:`ShutdownAbandoned`, a
``BaseException`` like ``KeyboardInterrupt``; exit ``128 + signal`` whatever the signal): a save cut short
leaves the last good checkpoint intact, since a checkpoint is published atomically only once complete.

Ignored signals. A shell starts a background job (``cmd &``) with SIGINT ignored so that a terminal's Ctrl-C
spares it; an ignored SIGINT therefore stays ignored. SIGTERM and SIGUSR1 are handled even when the process
inherited them ignored: no shell ignores them for a job, they come from a scheduler or ``kill`` addressed to
this process, and the scheduler's SIGKILL follows them (after SLURM's ``KillWait``, Kubernetes' grace period),
so ignoring them would only lose the steps since the last checkpoint. A wrapper that shields a launcher with
``trap '' USR1`` passes that ``SIG_IGN`` on to the ranks it starts; they still save.

Under ``torchrun`` (measured with torch 2.13, see docs/cluster.md): the agent handles SIGTERM, SIGINT,
SIGHUP and SIGQUIT (``--signals-to-handle``): it forwards the signal to every rank, waits up to
``--shutdown-timeout`` (30 s) for them, SIGKILLs any left, and then exits 1 with its own ``SignalException``
traceback, whatever the ranks' exit codes. SIGUSR1 is not in that list: it kills the agent at once (the ranks,
in sessions of their own, keep running); ``--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1`` makes
the agent forward it like SIGTERM. A signal sent to the ranks only (not the agent) stops them with the codes
above, and the agent then exits 0 when every rank did.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = ["PREEMPTION", "SIGNALS", "Shutdown", "ShutdownAbandoned", "TrainingStopped", "exit_code"]

#: The signals that stop a run cleanly.
SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
#: The signals of a scheduler's preemption or time limit: a stop that lost nothing exits 0 (:func:`exit_code`).
PREEMPTION: frozenset[signal.Signals] = frozenset({signal.SIGTERM, signal.SIGUSR1})
#: The signals handled even when the process inherited them ignored (see the module's docstring).
_HANDLED_WHEN_IGNORED: frozenset[signal.Signals] = PREEMPTION
#: The signal that abandons a clean stop: the third one received.
_ABANDON_AT = 3


def exit_code(signum: int, lost: bool = True) -> int:
    """The exit status of a run stopped by signal ``signum``; the one place that decides it.

    0 for a preemption signal (SIGTERM, SIGUSR1: :data:`PREEMPTION`) when nothing was ``lost`` (the last step
    is in a checkpoint, or no step ran since the start or the resume), so that a requeued job continues with
    ``--resume auto``. Otherwise ``128 + signum`` (130 for SIGINT, 143 for SIGTERM, 138 for SIGUSR1), what a
    shell reports for a process that the signal killed: always for SIGINT (a person's Ctrl-C), and for a
    preemption that lost steps (checkpoints off) or was abandoned.
    """
    if not lost and signum in PREEMPTION:
        return 0
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
        lost: whether steps ran that no checkpoint holds (checkpoints off); False when ``step`` is saved or
            no step ran since the start or the resume.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path | None, reason: str = "", lost: bool = False) -> None:
        self.signum, self.step, self.checkpoint, self.reason, self.lost = signum, step, checkpoint, reason, lost
        super().__init__(self.line())

    @property
    def exit_code(self) -> int:
        """0 for SIGTERM or SIGUSR1 when nothing was lost, else ``128 + signum`` (:func:`exit_code`)."""
        return exit_code(self.signum, self.lost)

    def line(self) -> str:
        """The one line ``lrkit train`` prints, e.g. ``SIGTERM at step 37: saved .../step_00000037.pt; exit 0``."""
        outcome = f"saved {self.checkpoint}" if self.checkpoint is not None else self.reason
        return f"{signal_name(self.signum)} at step {self.step}: {outcome}; exit {self.exit_code}"


class ShutdownAbandoned(BaseException):
    """A third signal: the clean stop is abandoned where it stands (a save cut short publishes nothing)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"{signal_name(signum)} received 3 times: stopped at once; exit {self.exit_code}")

    @property
    def exit_code(self) -> int:
        """``128 + signum`` whatever the signal: the stop was cut short (:func:`exit_code` with ``lost``)."""
        return exit_code(self.signum, lost=True)


class Shutdown:
    """Records SIGINT, SIGTERM and SIGUSR1 while in its ``with`` block, and restores the previous handlers after it.

    ``requested`` is the first signal's number (0: none yet). An ignored SIGINT (``SIG_IGN``: a shell starts a
    background job with SIGINT ignored, so a terminal's Ctrl-C does not reach it) stays ignored; SIGTERM and
    SIGUSR1 are handled even when ignored (a scheduler's SIGKILL follows them). Outside the main thread
    Python cannot install handlers: the object is then inert (``active`` is False) and the signals keep
    their handlers.
    """

    def __init__(self) -> None:
        self.requested = 0
        self.count = 0
        self.active = False
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> Shutdown:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                # an ignored SIGINT stays ignored (`cmd &`); SIGTERM and SIGUSR1 are handled regardless
                if sig in _HANDLED_WHEN_IGNORED or signal.getsignal(sig) is not signal.SIG_IGN:
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
