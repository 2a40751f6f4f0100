"""A run directory belongs to one run: the lock, the reuse rules, ``--overwrite`` and superseded records.

``lrkit train --run-dir RUN`` holds an exclusive lock on ``RUN/.lrkit.lock`` (``fcntl.flock``; rank 0 holds it
under torchrun) for as long as it runs; the file names the holder's PID, host and start time, so a second
trainer on ``RUN`` is refused with them. The kernel drops the lock when its process ends, however it ends: the
file a killed trainer leaves behind blocks nothing.

``RUN`` holds a run when it has a ``metrics.jsonl`` with records or a ``checkpoints/step_*.pt``. Such a
directory is never reused silently:

* ``--resume auto`` (or a path) continues it. Records of ``metrics.jsonl`` and checkpoints past the step resumed
  from belong to a timeline the resume replaces: they move to ``RUN/superseded/`` (records appended to
  ``superseded/metrics.jsonl``, each tagged; checkpoints into ``superseded/checkpoints-<time>/``), never deleted.
* ``--overwrite`` starts over: the old contents move to ``RUN/previous-<time>/``, never deleted.
* otherwise the trainer stops with an error that says what the directory holds and those two choices.

Temporary files of saves whose process is gone (``checkpoints/.step_*.pt.tmp-PID``, left by a kill during a
save) are removed when the lock is taken.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lrkit.train import checkpoint as ckpt
from lrkit.train.errors import TrainError
from lrkit.train.metrics import MetricsLog

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, no lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "METRICS_NAME",
    "PREVIOUS_PREFIX",
    "SUPERSEDED_DIR",
    "RunDir",
    "RunDirError",
    "RunDirLock",
    "describe_run",
    "move_aside",
    "open_run_dir",
    "supersede_after",
]

LOCK_NAME = ".lrkit.lock"
METRICS_NAME = "metrics.jsonl"
SUPERSEDED_DIR = "superseded"
PREVIOUS_PREFIX = "previous-"


class RunDirError(TrainError):
    """A run directory that cannot be used as asked: locked by another trainer, holding another run, a file, or
    not writable. The message names ``--run-dir``, the path and what to do."""


def _now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _unique(path: Path) -> Path:
    """``path``, or ``path-2``, ``path-3``... the first that does not exist (two starts in the same second)."""
    if not path.exists():
        return path
    n = 2
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


# ----------------------------------------------------------------------------- the lock


class RunDirLock:
    """The exclusive lock of a run directory: ``flock`` on ``RUN/.lrkit.lock``, which names its holder."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunDirError` naming the holder's PID, host and start time."""
        if fcntl is None or self._file is not None:
            return
        try:
            f = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the run: that is the lock
        except OSError as e:
            raise RunDirError(
                f"--run-dir {self.path.parent}: cannot create its lock file {self.path}: "
                f"{os.strerror(e.errno) if e.errno else e} (is the directory writable?)"
            ) from e
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = self._holder(f)
            f.close()
            raise RunDirError(
                f"--run-dir {self.path.parent} is in use by another trainer: {holder} holds its lock "
                f"{self.path}. Wait for that run to end, stop it, or pick another --run-dir"
            ) from e
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "argv": sys.argv}
        try:
            f.seek(0)
            f.truncate()
            f.write(json.dumps(info) + "\n")
            f.flush()
        except OSError as e:
            f.close()
            raise RunDirError(
                f"--run-dir {self.path.parent}: cannot write its lock file {self.path}: "
                f"{os.strerror(e.errno) if e.errno else e}"
            ) from e
        self._file = f

    @staticmethod
    def _holder(f: IO[str]) -> str:
        # The holder writes its name right after taking the lock: give it a moment if the file is still empty.
        for _ in range(20):
            f.seek(0)
            text = f.read()
            if text.strip():
                try:
                    info = json.loads(text)
                    return f"pid {info.get('pid')} on host {info.get('host')} (since {info.get('started')})"
                except (json.JSONDecodeError, AttributeError):
                    return f"a process whose lock file reads {text.strip()[:200]!r}"
            time.sleep(0.05)
        return "a process that has not written its name (pid and host unknown)"

    def release(self) -> None:
        """Drop the lock (the file stays: it blocks nothing once unlocked)."""
        if self._file is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        finally:
            self._file.close()
            self._file = None


# ----------------------------------------------------------------------------- what a run dir holds


def _metrics_steps(path: Path) -> list[int]:
    steps = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            steps.append(record["step"])
    return steps


def _span(steps: list[int]) -> str:
    if not steps:
        return ""
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {min(steps)}-{max(steps)}"


def describe_run(run_dir: Path) -> str | None:
    """What ``run_dir`` holds of a run (``metrics.jsonl`` with records, checkpoints), in words; None if nothing."""
    parts = []
    metrics = run_dir / METRICS_NAME
    if metrics.is_file() and metrics.stat().st_size > 0:
        steps = _metrics_steps(metrics)
        parts.append(f"{METRICS_NAME} with {len(steps)} record(s)" + (f" ({_span(steps)})" if steps else ""))
    files = ckpt.list_checkpoints(run_dir)
    if files:
        steps = [s for s in (ckpt.checkpoint_step(p) for p in files) if s is not None]
        parts.append(f"{len(files)} checkpoint(s) ({_span(steps)})")
    return " and ".join(parts) if parts else None


def move_aside(run_dir: Path) -> Path | None:
    """Move everything in ``run_dir`` but its lock and earlier ``previous-*`` folders into a new
    ``run_dir/previous-<UTC time>/``; returns it, or None when there was nothing to move. Nothing is deleted."""
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME and not p.name.startswith(PREVIOUS_PREFIX)]
    if not entries:
        return None
    target = _unique(run_dir / f"{PREVIOUS_PREFIX}{_now()}")
    try:
        target.mkdir()
        for p in sorted(entries):
            os.replace(p, target / p.name)
    except OSError as e:
        raise RunDirError(
            f"--overwrite: cannot move the old contents of {run_dir} to {target}: "
            f"{os.strerror(e.errno) if e.errno else e} (what was moved is there, the rest is in place)"
        ) from e
    return target


def supersede_after(run_dir: Path, step: int, source: str | None) -> str | None:
    """A resume at ``step``: move the ``metrics.jsonl`` records and the checkpoints past it to
    ``run_dir/superseded/``; returns a note saying what moved where, or None when nothing did."""
    archive = run_dir / SUPERSEDED_DIR
    tag = {"resumed_at_step": step, "from": source, "time": _now()}
    moved_steps = MetricsLog(run_dir / METRICS_NAME, enabled=True).supersede_after(step, archive / METRICS_NAME, tag)
    later = [p for p in ckpt.list_checkpoints(run_dir) if (ckpt.checkpoint_step(p) or 0) > step]
    moved_files: list[Path] = []
    if later:
        folder = _unique(archive / f"{ckpt.CHECKPOINT_DIR}-{_now()}")
        try:
            folder.mkdir(parents=True)
            for p in later:
                os.replace(p, folder / p.name)
                moved_files.append(p)
        except OSError as e:
            raise RunDirError(
                f"cannot move the checkpoints past step {step} of {run_dir} to {folder}: "
                f"{os.strerror(e.errno) if e.errno else e}"
            ) from e
    if not moved_steps and not moved_files:
        return None
    what = []
    if moved_steps:
        what.append(f"{len(moved_steps)} {METRICS_NAME} record(s) ({_span(moved_steps)})")
    if moved_files:
        steps = [s for s in (ckpt.checkpoint_step(p) for p in moved_files) if s is not None]
        what.append(f"{len(moved_files)} checkpoint(s) ({_span(steps)})")
    return f"resuming at step {step}: moved {' and '.join(what)} past it to {archive} (superseded, not deleted)"


# ----------------------------------------------------------------------------- opening a run dir


@dataclass
class RunDir:
    """An opened run directory: its path, its lock (held on the main rank) and what opening it noted."""

    path: Path
    lock: RunDirLock
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.lock.release()


def _make(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunDirError(f"--run-dir {run_dir} is a file; expected a directory (existing, or one to create)")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(
            f"--run-dir {run_dir} cannot be created: {os.strerror(e.errno) if e.errno else e} "
            f"(a part of the path is a file, or the parent is not writable)"
        ) from e


def _prepare(run_dir: Path, resume: str | None, overwrite: bool) -> RunDir:
    """The main rank's part: create, lock, clean stale temp files, apply the reuse rules."""
    if overwrite and resume:
        raise RunDirError(
            f"--overwrite starts the run over and --resume {resume} continues it: give one of them, not both"
        )
    _make(run_dir)
    lock = RunDirLock(run_dir)
    lock.acquire()
    opened = RunDir(run_dir, lock)
    try:
        for p in ckpt.stale_temp_files(run_dir):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
                opened.notes.append(f"removed {p}, the directory of a sharded save cut short (never published)")
            else:
                p.unlink(missing_ok=True)
                opened.notes.append(f"removed {p}, the temporary file of a save cut short (its process is gone)")
        held = describe_run(run_dir)
        if overwrite:
            target = move_aside(run_dir)
            if target is not None:
                opened.notes.append(f"--overwrite: moved the old contents of {run_dir} to {target}")
        elif held is not None and not resume:
            raise RunDirError(
                f"--run-dir {run_dir} already holds a run ({held}). Continue it with --resume auto, start over "
                f"with --overwrite (moves its contents to {run_dir}/{PREVIOUS_PREFIX}<time>/, deletes nothing), "
                f"or pick another --run-dir"
            )
    except BaseException:
        lock.release()
        raise
    return opened


@contextmanager
def open_run_dir(run_dir: str | os.PathLike[str], resume: str | None, overwrite: bool, ctx: Any) -> Iterator[RunDir]:
    """Open ``run_dir`` for one run (see the module's doc): the main rank creates and locks it, removes stale
    temporary files and applies the reuse rules; every rank learns the outcome (a :class:`RunDirError` on the
    main rank is raised on every rank). The lock is released when the block ends, however it ends."""
    path = Path(run_dir)
    error: TrainError | None = None
    opened: RunDir | None = None
    if ctx.is_main:
        try:
            opened = _prepare(path, resume, overwrite)
        except TrainError as e:
            error = e
    if ctx.distributed:
        import torch.distributed as dist

        box: list[Any] = [None if error is None else str(error)]
        dist.broadcast_object_list(box, src=0)
        if error is None and box[0] is not None:
            raise RunDirError(f"rank 0 could not open the run directory: {box[0]}")
    if error is not None:
        raise error
    if opened is None:
        opened = RunDir(path, RunDirLock(path))
    try:
        yield opened
    finally:
        opened.close()
