"""Checkpoints: atomic, verified, prunable, and loadable with ``torch.load(weights_only=True)``.

A checkpoint is ``run_dir/checkpoints/step_{step:08d}.pt`` holding
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

from lrkit.train.errors import TrainError

CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR = "checkpoints"
#: The temporary file of a save in progress is ``.step_XXXXXXXX.pt.tmp-<pid of the writer>``.
TMP_MARK = ".tmp-"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")
_TMP_NAME = re.compile(r"^\.step_(\d{8,})\.pt\.tmp-(\d+)$")


class CheckpointError(TrainError):
    """A checkpoint that cannot be used: unreadable, corrupted, incomplete or incompatible with the run."""


def checkpoint_path(run_dir: str | os.PathLike[str], step: int) -> Path:
    """``run_dir/checkpoints/step_{step:08d}.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Checkpoint files of ``run_dir``, oldest step first (temporary files of interrupted saves excluded)."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


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
    if keep_last is not None:
        existing = list_checkpoints(run_dir)
        keep = set(existing[-keep_last:]) | {path}
        for old in existing:
            if old not in keep:
                old.unlink(missing_ok=True)
    return path


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

    Raises ``CheckpointError`` naming ``path`` when the file is missing, truncated, corrupted (CRC), not a
    checkpoint of this format, or lacks any of ``required_keys`` in its payload.
    """
    path = Path(path)
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


def checkpoint_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``step_*.pt`` files directly in ``directory`` (a ``checkpoints/`` folder), oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | os.PathLike[str]) -> int | None:
    """The step in a checkpoint's file name (``step_00000040.pt`` -> 40), or None for another name."""
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
    """Temporary files of saves (``.step_*.pt.tmp-PID``) in ``run_dir/checkpoints`` whose writer process is gone
    (a save cut short by a kill): nothing reads them, they only hold disk space."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    stale = []
    for p in directory.iterdir():
        m = _TMP_NAME.match(p.name)
        if m and not _process_alive(int(m.group(2))):
            stale.append(p)
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
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint{where}: its model state must be a dict, got {type(saved).__name__}")
    problems = []
    for key, shape in expected.items():
        if key not in saved:
            continue
        value = saved[key]
        got = tuple(value.shape) if isinstance(value, torch.Tensor) else None
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
