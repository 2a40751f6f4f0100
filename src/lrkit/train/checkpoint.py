"""Checkpoints: atomic, verified, prunable, and loadable with ``torch.load(weights_only=True)``.

Two formats, and either resumes on any layout:

* **full**: ``run_dir/checkpoints/step_{step:08d}.pt``, one file that rank 0 writes with the whole state;
* **sharded**: the directory ``run_dir/checkpoints/step_{step:08d}/``, where every rank writes its own shards
  with torch.distributed.checkpoint (:mod:`lrkit.train.sharded` writes it; this module finds, verifies,
  publishes and prunes it, and reads its index, :class:`ShardedState`).

A full checkpoint is ``run_dir/checkpoints/step_{step:08d}.pt`` holding
``{"format": CHECKPOINT_FORMAT, "meta": {"step", "payload_keys", "torch_version"}, "payload": {...}}``.
The payload is whatever the trainer saves (model and optimizer state dicts, scheduler state, RNG states,
data position, config...) as long as it is tensors and plain Python data. A torch checkpoint is a zip
archive with a CRC-32 per record; ``torch.load`` does not check those CRCs, so loading here does
(``zipfile.testzip``), which catches flipped bits as well as truncation.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata

from lrkit.train.errors import TrainError

CHECKPOINT_FORMAT = 1
#: The format of a sharded checkpoint's ``trainer.pt``.
SHARDED_FORMAT = 2
CHECKPOINT_DIR = "checkpoints"
#: The temporary file of a save in progress is ``.step_XXXXXXXX.pt.tmp-<pid of the writer>``.
TMP_MARK = ".tmp-"
#: A sharded save in progress writes into ``.step_XXXXXXXX.partial/``, renamed to ``step_XXXXXXXX/`` once complete.
PARTIAL_MARK = ".partial"
#: The plain (non-tensor) state of a sharded checkpoint, beside DCP's files.
TRAINER_FILE = "trainer.pt"
#: A sharded checkpoint's tensor keys: ``model/<parameter name>`` and ``optim/<parameter name>/<state key>``.
MODEL_PREFIX, OPTIM_PREFIX = "model/", "optim/"
_NAME = re.compile(r"^step_(\d{8,})(\.pt)?$")
_TMP_NAME = re.compile(r"^\.step_(\d{8,})\.pt\.tmp-(\d+)$")
_PARTIAL_NAME = re.compile(r"^\.step_(\d{8,})\.partial$")
#: What DCP raises: its CheckpointException (a BaseException, which gathers every rank's failure) and the rest.
DCP_ERRORS: tuple[type[BaseException], ...] = (Exception, CheckpointException)
# DCP warns on every save and load in one process that it assumes one process: lrkit passes no_dist on purpose.
warnings.filterwarnings("ignore", message=r"torch\.distributed is (disabled, )?unavailable or uninitialized")


class CheckpointError(TrainError):
    """A checkpoint that cannot be used: unreadable, corrupted, incomplete or incompatible with the run."""


def checkpoint_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    """``run_dir/checkpoints/step_{step:08d}.pt``: a full checkpoint."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def checkpoint_dir(run_dir: str | os.PathLike[str], step: int) -> Path:
    """``run_dir/checkpoints/step_{step:08d}``: a sharded checkpoint."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}"


def find_checkpoint(run_dir: str | os.PathLike[str], step: int) -> Path | None:
    """The checkpoint of ``step`` in ``run_dir``, in either format (None: there is none)."""
    for path in (checkpoint_dir(run_dir, step), checkpoint_path(run_dir, step)):
        if is_checkpoint(path):
            return path
    return None


def is_checkpoint(path: Path) -> bool:
    """A full checkpoint's file (``step_N.pt``) or a sharded one's directory (``step_N``), by its name and kind."""
    m = _NAME.match(path.name)
    return bool(m) and (path.is_file() if m.group(2) else path.is_dir())  # type: ignore[union-attr]


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Checkpoints of ``run_dir`` (files and sharded directories), oldest step first; saves in progress or cut
    short (temporary files, ``.partial`` directories) excluded."""
    return checkpoint_files(Path(run_dir) / CHECKPOINT_DIR)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Not every platform can open a directory (Windows cannot).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | os.PathLike[str], step: int, payload: dict[str, Any], keep_last: int | None = None
) -> Path:
    """Atomically write ``payload`` as the checkpoint of ``step``, then keep only the newest ``keep_last``.

    The file is written to a temporary name in the same directory, flushed and fsynced, renamed over the
    final name with ``os.replace`` and the directory fsynced, so a crash leaves either the old state or the
    complete new file, never a partial one. The temporary file is read back (CRC-checked and loaded with
    ``weights_only=True``, memory-mapped) before it is published, so a payload holding anything but tensors
    and plain data fails here with ``CheckpointError`` rather than at resume time.

    Pruning keeps the ``keep_last`` highest steps plus the file just written (which is not the highest step
    after resuming past a corrupted checkpoint), so the newest valid checkpoint always survives.
    ``keep_last=None`` keeps everything. Returns the checkpoint's path.
    """
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got step={step!r}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got keep_last={keep_last!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    path = checkpoint_path(run_dir, step)
    write_checkpoint_file(path, step, payload)
    prune(run_dir, keep_last, path)
    return path


def write_checkpoint_file(path: Path, step: int, payload: dict[str, Any]) -> None:
    """Atomically write ``payload`` as a full checkpoint of ``step`` at ``path`` (any name), as
    :func:`save_checkpoint` does: a temporary file beside it, fsynced, read back, renamed over ``path``."""
    record = {
        "format": CHECKPOINT_FORMAT,
        "meta": {"step": step, "payload_keys": sorted(payload), "torch_version": str(torch.__version__)},
        "payload": payload,
    }
    needed = payload_bytes(record)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _disk_error(path, needed, e) from e
    free = free_bytes(path.parent)
    if free is not None and free < needed:
        raise CheckpointError(
            f"cannot save checkpoint {path}: it needs about {needed} bytes and its file system has {free} bytes "
            f"free; nothing was written (the earlier checkpoints are untouched). Free space, or lower --keep-last"
        )
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        try:
            with open(tmp, "wb") as f:
                torch.save(record, f)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _disk_error(path, needed, e) from e
        except RuntimeError as e:  # torch's zip writer reports a failed write as RuntimeError (inline_container)
            if _os_error_of(e) is None and "inline_container" not in str(e):
                raise
            raise _disk_error(path, needed, e) from e
        # Read back before publishing: catches a bad write and a payload that weights_only cannot load.
        _verify_archive(tmp)
        try:
            torch.load(tmp, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:
            raise CheckpointError(
                f"checkpoint payload for {path} must hold only tensors and plain Python data "
                f"(loadable with torch.load(weights_only=True)): {type(e).__name__}: {str(e).splitlines()[-1]}"
            ) from e
        try:
            os.replace(tmp, path)
        except OSError as e:
            raise _disk_error(path, needed, e) from e
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only file system: the temporary file may not even exist
            pass
        raise
    _fsync_dir(path.parent)


def prune(run_dir: str | os.PathLike[str], keep_last: int | None, written: Path) -> None:
    """Keep the ``keep_last`` newest checkpoints of ``run_dir`` (either format) and ``written``, the one just
    saved (which is not the newest after resuming past an unusable checkpoint); ``None`` keeps all."""
    if keep_last is None:
        return
    existing = list_checkpoints(run_dir)
    keep = set(existing[-keep_last:]) | {written}
    for old in existing:
        if old not in keep:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def write_plain_state(path: Path, plain: dict[str, Any]) -> None:
    """Write a sharded checkpoint's plain state to ``path`` (fsynced) and read it back with
    ``weights_only=True``: a value that is not plain data fails here, not at resume time."""
    with open(path, "wb") as f:
        torch.save({"format": SHARDED_FORMAT, "payload": plain}, f)
        f.flush()
        os.fsync(f.fileno())
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"checkpoint state {path} must hold only tensors and plain Python data "
            f"(loadable with torch.load(weights_only=True)): {type(e).__name__}: {str(e).splitlines()[-1]}"
        ) from e


def publish_dir(partial: Path, final: Path) -> None:
    """Publish a sharded checkpoint: rename its ``.partial`` directory to its final name (atomic), after
    fsyncing its files. An older checkpoint of the same step (resumed past as unusable) is replaced."""
    for file in partial.iterdir():
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(partial)
    if final.exists():
        replaced = final.with_name(f".{final.name}.replaced-{os.getpid()}")
        os.rename(final, replaced)
        os.rename(partial, final)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.rename(partial, final)
    _fsync_dir(final.parent)


def payload_bytes(obj: Any) -> int:
    """About the bytes ``torch.save`` writes for ``obj``: its tensors' storages (each counted once) plus 64 KiB
    for the archive's records and the pickled plain data."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            key = (storage.data_ptr(), storage.nbytes())
            if key not in seen:
                seen.add(key)
                total += storage.nbytes()
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return total + 64 * 1024


def free_bytes(directory: str | os.PathLike[str]) -> int | None:
    """Bytes free to this user on the file system of ``directory`` (or of its nearest existing parent);
    None when the platform cannot tell."""
    path = Path(directory)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _os_error_of(error: BaseException) -> OSError | None:
    """The OSError in ``error``'s chain (itself, its cause or context), if any."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _disk_error(path: Path, needed: int, error: BaseException) -> CheckpointError:
    """A failed write as a ``CheckpointError`` naming the path, the bytes needed and the bytes free."""
    os_error = _os_error_of(error)
    reason = os.strerror(os_error.errno) if os_error is not None and os_error.errno else str(error).splitlines()[0]
    free = free_bytes(path.parent)
    return CheckpointError(
        f"cannot save checkpoint {path}: {reason}; it needs about {needed} bytes and its file system has "
        f"{'an unknown number of' if free is None else free} bytes free (the earlier checkpoints are untouched)"
    )


def _verify_archive(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupted or truncated: {e}") from e
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupted: CRC mismatch in record {bad!r}")


def load_checkpoint(
    path: str | os.PathLike[str],
    required_keys: Iterable[str] = (),
    map_location: str | torch.device = "cpu",
    mmap: bool = False,
) -> dict[str, Any]:
    """Verify and load a checkpoint written by ``save_checkpoint``; returns its payload.

    ``mmap=True`` maps tensor storages from the file instead of reading them (see ``torch.load``).

    A sharded checkpoint (a directory) gives its plain state, with ``"model"`` and ``"optimizer"`` as one
    :class:`ShardedState`: the index of its tensors, which the trainer reads into its layout.

    Raises ``CheckpointError`` naming ``path`` when the file is missing, truncated, corrupted (CRC), not a
    checkpoint of this format, or lacks any of ``required_keys`` in its payload.
    """
    path = Path(path)
    if path.is_dir():
        return _load_sharded(path, required_keys)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    _verify_archive(path)
    try:
        record = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError... for damaged files
        raise CheckpointError(f"checkpoint {path} could not be loaded: {type(e).__name__}: {e}") from e
    if not isinstance(record, dict) or not {"format", "meta", "payload"} <= set(record):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(
            f"checkpoint {path} is not an lrkit checkpoint: expected format/meta/payload, got {found}"
        )
    if record["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format={record['format']!r}, this version reads format={CHECKPOINT_FORMAT}"
        )
    payload = record["payload"]
    missing = [key for key in required_keys if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing key(s) {missing}; it has {sorted(payload)}")
    return payload


def _load_sharded(path: Path, required_keys: Iterable[str]) -> dict[str, Any]:
    plain_file = path / TRAINER_FILE
    if not plain_file.is_file():
        raise CheckpointError(f"checkpoint {path} is incomplete: it has no {TRAINER_FILE}")
    try:
        record = torch.load(plain_file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {plain_file} could not be loaded: {type(e).__name__}: {e}") from e
    if not isinstance(record, dict) or record.get("format") != SHARDED_FORMAT or "payload" not in record:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(f"checkpoint {plain_file} is not an lrkit sharded checkpoint (format {found!r})")
    payload = dict(record["payload"])
    tensors = ShardedState.open(path, payload.get("optimizer_groups"))
    payload["model"] = payload["optimizer"] = tensors
    missing = [key for key in required_keys if key not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing key(s) {missing}; it has {sorted(payload)}")
    return payload


class ShardedState:
    """The tensors of a sharded checkpoint as resuming sees them before reading them: the directory, DCP's
    index of its tensors (full shapes and dtypes) and the optimizer's saved hyperparameters
    (:mod:`lrkit.train.sharded` reads them into a layout)."""

    def __init__(self, path: Path, metadata: Metadata, groups: list[dict[str, Any]] | None = None) -> None:
        self.path, self.metadata, self.groups = path, metadata, list(groups or [])

    @classmethod
    def open(cls, path: str | os.PathLike[str], groups: list[dict[str, Any]] | None = None) -> ShardedState:
        """Read the index of checkpoint ``path``; ``CheckpointError`` when it is missing or unreadable, or when a
        shard file it names is missing or shorter than the data the index places in it."""
        path = Path(path)
        try:
            metadata = dcp.FileSystemReader(str(path)).read_metadata()
        except Exception as e:  # a missing or damaged .metadata: FileNotFoundError, UnpicklingError, EOFError...
            raise CheckpointError(
                f"checkpoint {path} has no readable DCP index (.metadata): {type(e).__name__}: {e}"
            ) from e
        ends: dict[str, int] = {}
        for info in (metadata.storage_data or {}).values():
            relative = str(info.relative_path)
            ends[relative] = max(ends.get(relative, 0), int(info.offset) + int(info.length))
        for relative, end in sorted(ends.items()):
            file = path / relative
            size = file.stat().st_size if file.is_file() else -1
            if size < end:
                found = "missing" if size < 0 else f"{size} bytes"
                raise CheckpointError(
                    f"checkpoint {path} is incomplete: its shard file {relative} is {found}, the index needs {end}"
                )
        return cls(path, metadata, groups)

    def tensor_meta(self, key: str) -> TensorStorageMetadata:
        """The index entry (full shape, dtype) of tensor ``key``; ``CheckpointError`` when there is none."""
        meta = self.metadata.state_dict_metadata.get(key)
        if not isinstance(meta, TensorStorageMetadata):
            raise CheckpointError(f"checkpoint {self.path} has no tensor {key!r}")
        return meta

    def shapes(self, prefix: str) -> dict[str, tuple[int, ...]]:
        """Full shape of every tensor whose key starts with ``prefix``, keyed without it."""
        return {
            key[len(prefix) :]: tuple(meta.size)
            for key, meta in self.metadata.state_dict_metadata.items()
            if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)
        }

    def nbytes(self) -> int:
        """Bytes of the checkpoint's files on disk."""
        return sum(f.stat().st_size for f in self.path.iterdir() if f.is_file())

    def load(self, target: dict[str, torch.Tensor], process_group: Any = None, no_dist: bool = False) -> None:
        """Fill ``target``'s tensors in place (under a process group each rank reads the parts it holds)."""
        no_dist = no_dist or not (torch.distributed.is_available() and torch.distributed.is_initialized())
        try:
            reader = dcp.FileSystemReader(str(self.path))
            dcp.load(target, storage_reader=reader, process_group=process_group, no_dist=no_dist)
        except DCP_ERRORS as e:  # DCP wraps every rank's failure in a CheckpointException
            raise CheckpointError(f"checkpoint {self.path} could not be read: {dcp_failure(e)}") from e


def dcp_failure(error: BaseException) -> str:
    """A DCP failure in one line per rank (``rank 1: OSError: ...``), without DCP's gathered tracebacks."""
    failures = getattr(error, "failures", None)
    if isinstance(error, CheckpointException) and isinstance(failures, dict) and failures:
        parts = []
        for rank, failure in sorted(failures.items()):
            cause = failure[0] if isinstance(failure, tuple) else failure
            parts.append(f"rank {rank}: {type(cause).__name__}: {cause}")
        return "; ".join(parts)
    return f"{type(error).__name__}: {error}"


def checkpoint_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The checkpoints (``step_*.pt`` files, ``step_*`` sharded directories) directly in ``directory`` (a
    ``checkpoints/`` folder), oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)) and is_checkpoint(p)]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """The step in a checkpoint's name (``step_00000040.pt`` or ``step_00000040`` -> 40), or None."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def select_checkpoint(
    candidates: Sequence[Path], required_keys: Iterable[str] = ()
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest of ``candidates`` (oldest first) that loads and holds ``required_keys``, and the newer ones
    rejected on the way, each with why. ``(None, every rejection)`` when none is usable."""
    required = tuple(required_keys)
    rejected: list[tuple[Path, str]] = []
    for path in reversed(list(candidates)):
        try:
            load_checkpoint(path, required_keys=required, mmap=True)
        except CheckpointError as e:
            rejected.append((path, str(e)))
            continue
        return path, rejected
    return None, rejected


def newest_usable(
    directory: str | os.PathLike[str], required_keys: Iterable[str] = (), argument: str = "--resume auto"
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest usable checkpoint of a run directory (or of a ``checkpoints/`` folder), and the newer ones
    skipped with why. ``(None, [])`` when it holds no checkpoint at all.

    Raises ``CheckpointError`` listing every checkpoint and why it was rejected when there are checkpoints and
    none is usable: resuming must never fall back to a fresh start over a run that exists.
    """
    directory = Path(directory)
    folder = directory / CHECKPOINT_DIR if (directory / CHECKPOINT_DIR).is_dir() else directory
    candidates = checkpoint_files(folder)
    if not candidates:
        return None, []
    path, rejected = select_checkpoint(candidates, required_keys)
    if path is None:
        reasons = "\n".join(f"  {p.name}: {why}" for p, why in rejected)
        raise CheckpointError(
            f"{argument}: none of the {len(rejected)} checkpoint(s) in {folder} is usable, so nothing was resumed "
            f"and nothing was changed (a fresh start would replace this run: use --overwrite for that, or "
            f"--resume PATH for a checkpoint elsewhere):\n{reasons}"
        )
    return path, rejected


def stale_temp_files(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Temporary files of saves (``.step_*.pt.tmp-PID``) in ``run_dir/checkpoints`` whose writer process is gone,
    and ``.step_*.partial`` directories of sharded saves (a save cut short by a kill): nothing reads them, they
    only hold disk space. Call it only while holding the run directory (no save of this run is in flight)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    stale = []
    for p in directory.iterdir():
        m = _TMP_NAME.match(p.name)
        if m and not _process_alive(int(m.group(2))):
            stale.append(p)
        elif _PARTIAL_NAME.match(p.name) and p.is_dir():
            stale.append(p)  # a sharded save cut short: the run directory's lock says no save runs now
    return sorted(stale)


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (another user's counts as running)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def check_model_shapes(
    saved: Any, expected: dict[str, tuple[int, ...]], source: str | os.PathLike[str] | None = None
) -> None:
    """Raise ``CheckpointError`` naming every tensor of the saved model state whose shape differs from the
    model's (``expected``: key -> shape), instead of ``load_state_dict``'s traceback. Keys on one side only are
    left to the layout's loader (some layouts name or tie tensors differently)."""
    where = f" {source}" if source is not None else ""
    if isinstance(saved, ShardedState):
        saved_shapes: dict[str, tuple[int, ...] | None] = dict(saved.shapes(MODEL_PREFIX))
    elif isinstance(saved, dict):
        saved_shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in saved.items()}
    else:
        raise CheckpointError(f"checkpoint{where}: its model state must be a dict, got {type(saved).__name__}")
    problems = []
    for key, shape in expected.items():
        if key not in saved_shapes:
            continue
        value = saved[key] if isinstance(saved, dict) else None
        got = saved_shapes[key]
        if got != tuple(shape):
            got_text = list(got) if got is not None else type(value).__name__
            problems.append(f"{key}: checkpoint {got_text}, model {list(shape)}")
    if problems:
        raise CheckpointError(
            f"checkpoint{where} does not fit this model (tensor: shape in the checkpoint vs in the model): "
            + "; ".join(problems)
        )


def find_latest_valid(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest checkpoint of ``run_dir`` that loads, or ``None``. Corrupted ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            load_checkpoint(path, mmap=True)
        except CheckpointError as e:
            warnings.warn(f"skipping unusable checkpoint {path}: {e}", stacklevel=2)
            continue
        return path
    return None


_MISSING = "<missing>"


def _plain(value: Any) -> Any:
    # Tuples come back from torch.load as tuples but configs may hold lists: compare them alike.
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_compatible(
    ckpt_config: dict[str, Any],
    run_config: dict[str, Any],
    keys: Sequence[str],
    source: str | os.PathLike[str] | None = None,
) -> None:
    """Raise ``CheckpointError`` listing every key of ``keys`` whose value differs between the checkpoint's
    config and this run's (a key absent on one side counts as different). ``source`` names the checkpoint."""
    differences = []
    for key in keys:
        saved, current = ckpt_config.get(key, _MISSING), run_config.get(key, _MISSING)
        if _plain(saved) != _plain(current):
            differences.append(f"{key}: checkpoint={saved!r}, run={current!r}")
    if differences:
        where = f" {source}" if source is not None else ""
        raise CheckpointError(f"checkpoint{where} is incompatible with this run: " + "; ".join(differences))


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """The torch (CPU and, when available, CUDA), numpy and Python ``random`` generator states as tensors and
    plain ints/floats/lists, so they survive ``torch.load(weights_only=True)``."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``; the next random numbers drawn are those that followed the capture."""
    missing = sorted({"torch", "python", "numpy"} - set(state))
    if missing:
        raise ValueError(f"rng state is missing {missing}, got keys {sorted(state)}")
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"].numpy() if isinstance(npy["keys"], torch.Tensor) else npy["keys"], dtype=np.uint32)
    np.random.set_state((npy["bit_generator"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        states = list(state["cuda"])
        n_devices = torch.cuda.device_count()
        if len(states) != n_devices:
            warnings.warn(
                f"rng state holds {len(states)} CUDA generator(s), this process sees {n_devices} device(s); "
                f"restoring the first {min(len(states), n_devices)}",
                stacklevel=2,
            )
        for index, cuda_state in enumerate(states[:n_devices]):
            torch.cuda.set_rng_state(cuda_state, index)
