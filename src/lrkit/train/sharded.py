"""Sharded checkpoints: every rank writes its own shards with torch.distributed.checkpoint (DCP).

A sharded checkpoint is the directory ``run_dir/checkpoints/step_{step:08d}/``:

* DCP's files: ``__<rank>_0.distcp`` (the shards each rank wrote) and ``.metadata`` (the global index of every
  tensor: its full shape, dtype and where each piece lies);
* ``trainer.pt``: the rest of the state as plain data, loadable with ``torch.load(weights_only=True)``: the
  step, the tokens read, the configs, the schedule's state (its spec and clocks), the scaler, the data
  position, every rank's RNG, the optimizer's hyperparameters and the layout it was saved from.

The tensors are keyed by the names of the single-process model, the same in every layout:

* ``model/<name>``: a parameter (a DTensor under FSDP2 or TP, of which each rank writes its shard);
* ``optim/<name>/<key>``: its optimizer state (``exp_avg``, ``exp_avg_sq``, ``step``, ``momentum_buffer``).

No rank gathers the model: each writes what it holds, one copy of a replicated tensor is written (DCP
deduplicates data-parallel replicas), a pipeline stage writes its own layers and a ZeRO-1 rank the optimizer
state it owns. Loading reshards into whatever layout runs now: each rank reads the part of each tensor it
holds, so a checkpoint of FSDP2 over 4 ranks resumes under DDP over 2, TP, a pipeline or one process.

**Commit.** Everything is written into ``.step_{step:08d}.partial/``. Rank 0 renames it to ``step_{step:08d}/``
only once DCP has written its metadata, which it does last, after every rank's data is written, and once
``trainer.pt`` is written and read back. A directory with the final name is therefore complete; a save cut
short (a crash, ``kill -9``) leaves a ``.partial`` directory that resuming ignores and the next run removes,
and the last good checkpoint untouched.

**Asynchronous saves** (:class:`ShardedSaver` with ``async_save=True``): the state is copied to host memory
(DCP's staging), then written by a background thread while training goes on, over a gloo process group of
its own. At most one save is in flight: the next save, the end of the run and a clean stop wait for it. A
failed save raises :class:`~lrkit.train.checkpoint.CheckpointError` there, on every rank; nothing is
published and the previous checkpoint stays the newest.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.staging import AsyncStager
from torch.distributed.tensor import DTensor

from lrkit.train import checkpoint as ckpt
from lrkit.train.parallel import DistContext, ParallelModel

__all__ = [
    "ShardedSaver",
    "load_model",
    "load_optimizer",
    "model_tensors_of",
    "optimizer_groups",
    "tensor_state",
]

MODEL, OPTIM = ckpt.MODEL_PREFIX, ckpt.OPTIM_PREFIX


# ----------------------------------------------------------------------------- what each rank writes


def _names(pm: ParallelModel) -> dict[int, tuple[str, bool]]:
    return {id(p): (name, written) for name, p, written in pm.checkpoint_parameters()}


def tensor_state(pm: ParallelModel, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """This rank's tensors for a sharded checkpoint: its parameters and their optimizer state, by the
    single-process names (``model/<name>``, ``optim/<name>/<key>``).

    Raises ``CheckpointError`` for optimizer state that is neither a tensor nor None (it would not reshard).
    """
    names = _names(pm)
    out: dict[str, torch.Tensor] = {}
    for name, p, written in pm.checkpoint_parameters():
        if written:
            out[MODEL + name] = p.detach()
    for group in optimizer.param_groups:
        for p in group["params"]:
            name, written = names[id(p)]
            state = optimizer.state.get(p)  # a ZeRO-1 rank holds the state of the parameters it owns only
            if not written or not state:
                continue
            for key, value in state.items():
                if value is None:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise ckpt.CheckpointError(
                        f"optimizer state {name}[{key!r}] is a {type(value).__name__}, expected a tensor: "
                        "a sharded checkpoint holds tensors only (use --checkpoint-format full)"
                    )
                out[f"{OPTIM}{name}/{key}"] = value.detach()
    return out


def optimizer_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The optimizer's param groups without their parameters: the hyperparameters (plain data and tensors)."""
    return [{k: v for k, v in group.items() if k != "params"} for group in optimizer.state_dict()["param_groups"]]


# ----------------------------------------------------------------------------- reading into a layout


def load_model(pm: ParallelModel, state: ckpt.ShardedState, process_group: Any = None) -> None:
    """Load the parameters of ``state`` into this layout's, in place (resharded as this layout holds them).

    Raises ``CheckpointError`` naming every parameter the checkpoint lacks or holds with another shape.
    """
    saved = state.shapes(MODEL)
    problems = []
    target: dict[str, torch.Tensor] = {}
    for name, p, _ in pm.checkpoint_parameters():
        if name not in saved:
            problems.append(f"{name}: missing")
        elif saved[name] != tuple(p.shape):
            problems.append(f"{name}: checkpoint {list(saved[name])}, model {list(p.shape)}")
        else:
            target[MODEL + name] = p.detach()
    if problems:
        raise ckpt.CheckpointError(
            f"checkpoint {state.path} does not fit this model (tensor: checkpoint vs model): " + "; ".join(problems)
        )
    state.load(target, process_group)


def load_optimizer(
    pm: ParallelModel, optimizer: torch.optim.Optimizer, state: ckpt.ShardedState, process_group: Any = None
) -> None:
    """Load the optimizer state of ``state`` for this rank's parameters (the ones it owns under ZeRO-1) and the
    saved hyperparameters, through ``optimizer.load_state_dict`` (which places each value as the optimizer
    keeps it: the step on the CPU or the device, the moments like their parameter)."""
    by_param: dict[str, list[str]] = {}
    for key in state.metadata.state_dict_metadata:
        if key.startswith(OPTIM):
            name, _, entry = key[len(OPTIM) :].rpartition("/")
            by_param.setdefault(name, []).append(entry)
    names = _names(pm)
    owns: Callable[[torch.Tensor], bool] = getattr(optimizer, "owns", lambda p: True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    target: dict[str, torch.Tensor] = {}
    wanted: list[tuple[int, str, list[str]]] = []
    for index, p in enumerate(params):
        name = names[id(p)][0]
        if not owns(p) or name not in by_param:
            continue
        for entry in by_param[name]:
            meta = state.tensor_meta(f"{OPTIM}{name}/{entry}")
            dtype = meta.properties.dtype
            if tuple(meta.size) == tuple(p.shape):  # a moment: resharded like its parameter
                target[f"{OPTIM}{name}/{entry}"] = torch.empty_like(p.detach(), dtype=dtype)
            else:  # a scalar (the step count)
                target[f"{OPTIM}{name}/{entry}"] = torch.empty(tuple(meta.size), dtype=dtype)
        wanted.append((index, name, by_param[name]))
    state.load(target, process_group)
    saved = state.groups  # a pipeline stage may hold fewer groups: the hyperparameters are the run's
    groups = []
    for g, (now, packed) in enumerate(zip(optimizer.param_groups, optimizer.state_dict()["param_groups"])):
        hyper = dict(saved[min(g, len(saved) - 1)]) if saved else {k: v for k, v in now.items() if k != "params"}
        for key, value in now.items():  # a tensor hyperparameter (--compile's LR) keeps its tensor
            if isinstance(value, torch.Tensor) and key in hyper:
                value.copy_(torch.as_tensor(hyper[key], dtype=value.dtype))
                hyper[key] = value
        groups.append({**hyper, "params": packed["params"]})
    loaded = {index: {e: target[f"{OPTIM}{name}/{e}"] for e in entries} for index, name, entries in wanted}
    optimizer.load_state_dict({"state": loaded, "param_groups": groups})


def model_tensors_of(state: ckpt.ShardedState) -> dict[str, torch.Tensor]:
    """The whole model of a sharded checkpoint as plain CPU tensors, by parameter name, read by this process
    alone (no process group): for export and inspection."""
    target = {
        MODEL + name: torch.empty(shape, dtype=state.tensor_meta(MODEL + name).properties.dtype)
        for name, shape in state.shapes(MODEL).items()
    }
    state.load(target, no_dist=True)
    return {key[len(MODEL) :]: value for key, value in target.items()}


# ----------------------------------------------------------------------------- writing and committing


class _CloneStager(AsyncStager):
    """Stages CPU tensors for a background save with one copy each (a DTensor: a copy of its local shard).

    DCP's own staging of a CPU DTensor deep-copies it and then copies it again into its staging buffer, so a
    background save held about twice the shard on top of the model (measured by benchmarks/checkpoint.py).
    """

    _synchronize_after_execute = False

    def stage(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        return {key: _clone(value) for key, value in state_dict.items()}

    def synchronize_staging(self) -> None:  # stage() returns a finished copy: nothing to wait for
        pass

    def close(self) -> None:
        pass


def _clone(value: Any) -> Any:
    if isinstance(value, DTensor):
        local = value.to_local().detach().clone()
        return DTensor.from_local(local, value.device_mesh, value.placements, shape=value.shape, stride=value.stride())
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return value


@dataclass
class _InFlight:
    step: int
    partial: Path
    final: Path
    future: Future[Any] | None


class ShardedSaver:
    """Writes sharded checkpoints of one run, synchronously or in the background, and commits them.

    Built on every rank (collective: under ``torchrun`` it creates a gloo process group for the saves).
    :meth:`save` is collective; :meth:`poll` (rank 0 publishes a finished background save) is not;
    :meth:`wait` is collective and surfaces a failed save.
    """

    def __init__(self, run_dir: str | os.PathLike[str], ctx: DistContext, keep_last: int | None, async_save: bool):
        self.directory = Path(run_dir) / ckpt.CHECKPOINT_DIR
        self.ctx, self.keep_last, self.async_save = ctx, keep_last, async_save
        self.group = dist.new_group(backend="gloo") if ctx.distributed else None
        self.in_flight: _InFlight | None = None

    def save(self, step: int, tensors: dict[str, torch.Tensor], plain: dict[str, Any] | None) -> Path:
        """Write checkpoint ``step``: every rank its ``tensors``, rank 0 the ``plain`` state (``None`` elsewhere).

        Waits for the save in flight first. Synchronous: returns once the checkpoint is committed. Asynchronous:
        returns once the state is copied, and the checkpoint is committed later (:meth:`poll`, :meth:`wait`).
        Returns the path the checkpoint has once committed.
        """
        self.wait()
        final = ckpt.checkpoint_dir(self.directory.parent, step)
        partial = self.directory / f".{final.name}{ckpt.PARTIAL_MARK}"
        if self.ctx.is_main:
            self._prepare(partial, plain)
        if self.group is not None:
            dist.barrier(group=self.group)  # the directory exists and holds trainer.pt before any rank writes
        writer = dcp.FileSystemWriter(str(partial))
        alone = self.group is None  # one process: no collectives
        try:
            if self.async_save:
                stager = _CloneStager() if all(t.device.type == "cpu" for t in tensors.values()) else None
                future = dcp.async_save(
                    tensors, storage_writer=writer, process_group=self.group, no_dist=alone, async_stager=stager
                )
                self.in_flight = _InFlight(step, partial, final, future)  # type: ignore[arg-type]
                return final
            dcp.save(tensors, storage_writer=writer, process_group=self.group, no_dist=alone)
        except ckpt.DCP_ERRORS as e:
            raise self._failed(partial, e) from e
        self.in_flight = _InFlight(step, partial, final, None)
        self._commit()
        return final

    def _prepare(self, partial: Path, plain: dict[str, Any] | None) -> None:
        assert plain is not None, "rank 0 writes the plain state"
        try:
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
            ckpt.write_plain_state(partial / ckpt.TRAINER_FILE, plain)
        except OSError as e:
            raise ckpt.CheckpointError(
                f"cannot save checkpoint {partial}: {os.strerror(e.errno) if e.errno else e} "
                "(the earlier checkpoints are untouched)"
            ) from e

    def _failed(self, partial: Path, error: BaseException) -> ckpt.CheckpointError:
        if self.ctx.is_main:
            shutil.rmtree(partial, ignore_errors=True)
        return ckpt.CheckpointError(
            f"saving checkpoint {partial.name.removesuffix(ckpt.PARTIAL_MARK).lstrip('.')} failed: "
            f"{ckpt.dcp_failure(error)}; nothing was published (the earlier checkpoints are untouched)"
        )

    def poll(self) -> None:
        """Not collective: if the save in flight has finished, rank 0 publishes it (a failure waits for
        :meth:`wait`, where every rank raises it together)."""
        flight = self.in_flight
        if flight is None or flight.future is None or not flight.future.done():
            return
        if flight.future.exception() is None:
            self._commit()

    def wait(self) -> Path | None:
        """Collective: block until the save in flight is written, publish it, and return its path (None: no
        save was in flight). Raises ``CheckpointError`` on every rank when that save failed."""
        flight = self.in_flight
        if flight is None:
            return None
        if flight.future is not None:
            try:
                flight.future.result()
            except ckpt.DCP_ERRORS as e:
                self.in_flight = None
                raise self._failed(flight.partial, e) from e
        return self._commit()

    def _commit(self) -> Path | None:
        flight, self.in_flight = self.in_flight, None
        if flight is None:
            return None
        if self.ctx.is_main:
            ckpt.publish_dir(flight.partial, flight.final)
            ckpt.prune(self.directory.parent, self.keep_last, flight.final)
        return flight.final

    def close(self) -> None:
        """Wait for the save in flight, if any (collective)."""
        self.wait()
