"""Parallel layouts on torch.distributed: DDP, ZeRO-1, FSDP2, tensor and sequence parallel.

Under ``torchrun`` the process group uses gloo on CPU and NCCL on CUDA. Ranks form
a ``(dp, tp)`` device mesh, rank = ``dp_rank * tp + tp_rank``; with pipeline
parallelism (:mod:`lrkit.train.pipeline`) a ``(dp, pp, tp)`` mesh, rank =
``(dp_rank * pp + pp_rank) * tp + tp_rank``. The scheduler never sees any of this:
every rank builds the same scheduler from the same spec and steps it once per
optimizer update, so every rank holds the same LR.

What composes (world = DP x PP x TP):

* DDP (``DistributedDataParallel``) when DP > 1 and TP = 1; with TP > 1 the
  DTensor gradients are averaged over the ``dp`` group by hand (their local shards).
* Tensor parallel: :func:`block_tp_plan` per block (column-parallel in, row-parallel
  out), embeddings and head replicated; ``--sequence-parallel`` keeps the residual
  stream sharded along the sequence between the block's sublayers and blocks.
* FSDP2 over the ``dp`` mesh, alone or on top of TP.
* ZeRO-1 (:class:`~lrkit.train.zero.ZeroOptimizer`) over the ``dp`` group in every
  layout with DP, TP and PP included (FSDP2 already shards the state: refused there).
* Pipeline parallel with any of TP, SP, DP and ZeRO-1 (not FSDP2): see
  :mod:`lrkit.train.pipeline`.

Checkpoints hold whole tensors in every layout: DTensors are gathered on save
(:func:`full_tensor`) and cut back into this rank's shard on load (:func:`shard_like`).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from lrkit.train.errors import TrainError
from lrkit.train.models.layout import ParallelPlan


@dataclass
class DistContext:
    """Where this process sits: its rank, the data- and tensor-parallel sizes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    dp_size: int = 1
    dp_rank: int = 0
    tp_size: int = 1
    device: torch.device = torch.device("cpu")
    mesh: Any = None  # DeviceMesh with dims ("dp", "tp") when distributed; ("dp", "pp", "tp") under PP
    pp_size: int = 1
    pp_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def tp_rank(self) -> int:
        return self.rank % self.tp_size

    @property
    def is_last_rank(self) -> bool:
        """The rank that prints (InfiniTrain convention: the last one)."""
        return self.rank == self.world_size - 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


#: ``--collective-timeout``'s default, in seconds: NCCL's own default (10 minutes), a third of gloo's (30).
DEFAULT_COLLECTIVE_TIMEOUT = 600.0


class CollectiveTimeoutError(TrainError):
    """A collective found no answer within ``--collective-timeout``: a rank stopped, hung or died.

    The message names the ranks that did not answer a roll call after the timeout (when the rendezvous store
    could tell), the timeout, where the run was (setup or the step) and the backend's own message.
    """


def check_collective_timeout(seconds: float) -> float:
    """``seconds`` if it is a usable ``--collective-timeout`` (finite, > 0); else a :class:`TrainError`."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise TrainError(f"--collective-timeout must be a finite number of seconds > 0, got {seconds!r}")
    return float(seconds)


def _mesh_options(backend: str, seconds: float, dim_names: tuple[str, ...]) -> dict[str | int, Any] | None:
    """``init_device_mesh``'s ``backend_override`` giving every mesh dimension's group the timeout (a new
    group takes torch's default timeout, not the default group's), or None where the backend has no options."""
    group_class = getattr(dist, "ProcessGroupGloo" if backend == "gloo" else "ProcessGroupNCCL", None)
    options_class = getattr(group_class, "_Options" if backend == "gloo" else "Options", None)
    if options_class is None:
        return None
    override: dict[str | int, Any] = {}
    for name in dim_names:
        options = options_class()
        options._timeout = timedelta(seconds=seconds)
        override[name] = (backend, options)
    return override


def setup_distributed(
    tensor_parallel: int = 1,
    device: str = "auto",
    pipeline_parallel: int = 1,
    collective_timeout: float = DEFAULT_COLLECTIVE_TIMEOUT,
) -> DistContext:
    """Initialise torch.distributed when launched by torchrun (``WORLD_SIZE`` set); else a 1-process context.

    With ``pipeline_parallel > 1`` the mesh is ``(dp, pp, tp)``, rank = ``(dp_rank * pp + pp_rank) * tp + tp_rank``;
    otherwise it is the ``(dp, tp)`` mesh as before. ``collective_timeout`` (seconds, ``--collective-timeout``)
    bounds every collective of the default process group and of the mesh's groups: a rank that waits longer
    for its peers fails (gloo raises, NCCL's watchdog aborts) instead of hanging.
    """
    check_collective_timeout(collective_timeout)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda:
        _check_cuda(device, world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if tensor_parallel < 1 or world_size % tensor_parallel != 0:
        raise TrainError(
            f"--tensor-parallel must divide the number of ranks, got tensor_parallel={tensor_parallel}, "
            f"world_size={world_size}"
        )
    if pipeline_parallel < 1 or world_size % (pipeline_parallel * tensor_parallel) != 0:
        raise TrainError(
            f"--pipeline-parallel x --tensor-parallel must divide the number of ranks, got "
            f"pipeline_parallel={pipeline_parallel}, tensor_parallel={tensor_parallel}, world_size={world_size}"
        )
    if world_size == 1:
        dev = torch.device((device if device.startswith("cuda:") else "cuda") if use_cuda else "cpu")
        if dev.index is not None:
            torch.cuda.set_device(dev)  # --device cuda:N: synchronize() and new tensors go there too
        return DistContext(device=dev)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, device_id=dev if use_cuda else None, timeout=timedelta(seconds=collective_timeout)
        )
    from torch.distributed.device_mesh import init_device_mesh

    if pipeline_parallel > 1:
        dp_size = world_size // (pipeline_parallel * tensor_parallel)
        names = ("dp", "pp", "tp")
        mesh = init_device_mesh(
            dev.type,
            (dp_size, pipeline_parallel, tensor_parallel),
            mesh_dim_names=names,
            backend_override=_mesh_options(backend, collective_timeout, names),
        )
        return DistContext(
            rank=rank,
            world_size=world_size,
            local_rank=local_rank,
            dp_size=dp_size,
            dp_rank=rank // (pipeline_parallel * tensor_parallel),
            tp_size=tensor_parallel,
            device=dev,
            mesh=mesh,
            pp_size=pipeline_parallel,
            pp_rank=(rank // tensor_parallel) % pipeline_parallel,
        )
    dp_size = world_size // tensor_parallel
    mesh = init_device_mesh(
        dev.type,
        (dp_size, tensor_parallel),
        mesh_dim_names=("dp", "tp"),
        backend_override=_mesh_options(backend, collective_timeout, ("dp", "tp")),
    )
    return DistContext(
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        dp_size=dp_size,
        dp_rank=rank // tensor_parallel,
        tp_size=tensor_parallel,
        device=dev,
        mesh=mesh,
    )


def _check_cuda(device: str, world_size: int, local_rank: int) -> None:
    """``--device`` (``cuda``, ``cuda:N`` or ``auto`` that found CUDA) names a GPU this process can use.

    Raises :class:`TrainError` naming ``--device``, its value and what this machine offers, instead of torch's
    AssertionError ("Torch not compiled with CUDA enabled") or an invalid-device error deep in the setup.
    """
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
        raise TrainError(f"--device {device}: {why} (torch {torch.__version__}); expected cpu or auto on this machine")
    count = torch.cuda.device_count()
    _, _, index = device.partition(":")
    if index and world_size > 1:
        raise TrainError(f"--device {device}: under torchrun each rank uses cuda:LOCAL_RANK; expected --device cuda")
    wanted = int(index) if index else local_rank
    if wanted >= count:
        which = f"--device {device}" if index else f"--device {device} on LOCAL_RANK={local_rank}"
        raise TrainError(f"{which}: expected a CUDA device index below {count} (the visible devices)")


#: How a backend words a collective's timeout (gloo: "Timed out waiting 3000ms for recv operation to complete").
_TIMEOUT_TEXT = re.compile(r"timed out|timeout", re.IGNORECASE)
#: The store keys of the roll call after a timeout: one per rank that answers.
_ROLL_CALL = "lrkit/collective-timeout/alive/"


def unanswered_ranks(store: Any, rank: int, world_size: int, wait_s: float, poll_s: float = 0.05) -> list[int]:
    """The roll call after a timeout: this rank answers in ``store``, then waits up to ``wait_s`` seconds for
    every rank to answer; returns the ranks that did not (stopped, hung, dead, or still in a longer wait).

    ``store`` is the rendezvous store (``set`` and ``check`` of keys), which outlives a broken collective."""
    store.set(f"{_ROLL_CALL}{rank}", "1")
    deadline = time.monotonic() + wait_s
    while True:
        missing = [r for r in range(world_size) if not store.check([f"{_ROLL_CALL}{r}"])]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(poll_s)


def as_collective_timeout(
    err: BaseException, ctx: DistContext, timeout_s: float, where: str, store: Any = None
) -> CollectiveTimeoutError | None:
    """``err`` as a :class:`CollectiveTimeoutError` when it is a collective's timeout in a distributed run, else
    None (the caller re-raises ``err`` with its traceback: anything else is not a timeout).

    Before it returns, the ranks that time out hold a roll call (:func:`unanswered_ranks`, for up to
    ``min(timeout_s, 60)`` seconds) to name the rank that did not answer, then leave the broken process group
    (no barrier: a barrier would wait on the missing rank again). ``store`` defaults to the process group's."""
    if not ctx.distributed or not isinstance(err, RuntimeError) or not _TIMEOUT_TEXT.search(str(err)):
        return None
    try:
        if store is None:
            store = dist.distributed_c10d._get_default_store()
        missing = unanswered_ranks(store, ctx.rank, ctx.world_size, min(timeout_s, 60.0))
        who = (
            f"rank {', '.join(map(str, missing))} did not answer (stopped, hung or dead)"
            if missing
            else "every rank answered the roll call after it (a rank was slower than the timeout)"
        )
    except (RuntimeError, OSError) as store_err:  # the store's host (rank 0 without torchrun) may be the one gone
        who = f"the rendezvous store did not answer either ({store_err}), so which rank is unknown"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    backend_message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return CollectiveTimeoutError(
        f"rank {ctx.rank} of {ctx.world_size}: a collective at {where} found no answer within "
        f"--collective-timeout {timeout_s:g} s: {who}; the backend said: {backend_message}"
    )


@contextmanager
def collective_timeouts(ctx: DistContext, timeout_s: float) -> Iterator[list[str]]:
    """Turns a collective's timeout inside the block into a :class:`CollectiveTimeoutError`
    (:func:`as_collective_timeout`); any other error passes unchanged. Yields a one-item list, where the
    block says where it is (``"setup"``, ``"step 37"``) for the message."""
    where = ["setup"]
    try:
        yield where
    except RuntimeError as err:
        timeout = as_collective_timeout(err, ctx, timeout_s, where[0])
        if timeout is None:
            raise
        raise timeout from err


def leave_distributed() -> None:
    """Leave the process group at once, without a barrier (after an abandoned stop: peers may be anywhere)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def teardown_distributed() -> None:
    """Leave together: a rank that tears gloo down while a peer is still in a collective aborts it."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def block_tp_plan(parts: ParallelPlan, sequence_parallel: bool = False) -> dict[str, Any]:
    """One transformer block's plan (Megatron-style): column-parallel into attention/MLP, row-parallel out.

    ``parts`` names the block's submodules (the model's :class:`~lrkit.train.models.layout.ParallelPlan`).
    With ``sequence_parallel`` the block takes and returns the residual stream sharded along the
    sequence (``Shard(1)`` DTensors): its norms run on their sequence shard (``SequenceParallel``),
    attention and MLP all-gather their input and reduce-scatter their output. Without it the block
    takes and returns plain (replicated) tensors.
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        PrepareModuleInput,
        RowwiseParallel,
        SequenceParallel,
    )

    extra_inputs = (None,) * parts.block_extra_inputs
    out = Shard(1) if sequence_parallel else None
    plan: dict[str, Any] = {}
    for layer in (*parts.attention_in, *parts.mlp_in):
        plan[layer] = ColwiseParallel()
    for layer in (parts.attention_out, parts.mlp_out):
        plan[layer] = RowwiseParallel(output_layouts=out, use_local_output=not sequence_parallel)
    if sequence_parallel:
        for norm in parts.norms:
            plan[norm] = SequenceParallel()
        plan[parts.attention] = PrepareModuleInput(
            input_layouts=(Shard(1), *extra_inputs),
            desired_input_layouts=(Replicate(), *extra_inputs),
            use_local_output=True,
        )
        plan[parts.mlp] = PrepareModuleInput(
            input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
        )
    return plan


def _tp_plan(model: nn.Module, sequence_parallel: bool = False) -> list[tuple[nn.Module, dict[str, Any]]]:
    """Every block's :func:`block_tp_plan`; with ``sequence_parallel`` also the model-level entry and exit.

    Under sequence parallelism the residual stream enters the first block sharded along the
    sequence, the final norm runs on its shard, and the stream is gathered again before the head.
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import PrepareModuleInput, SequenceParallel

    parts = parallel_plan_of(model)
    plan = block_tp_plan(parts, sequence_parallel)
    blocks: Any = model.get_submodule(parts.blocks)
    plans: list[tuple[nn.Module, dict[str, Any]]] = [(block, dict(plan)) for block in blocks]
    if sequence_parallel:
        extra_inputs = (None,) * parts.block_extra_inputs
        root = {
            # Enter the residual stream sharded along the sequence; leave it gathered for the head.
            parts.first_block: PrepareModuleInput(
                input_layouts=(Replicate(), *extra_inputs),
                desired_input_layouts=(Shard(1), *extra_inputs),
                use_local_output=False,
            ),
            parts.final_norm: SequenceParallel(),
            parts.head: PrepareModuleInput(
                input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
            ),
        }
        plans.append((model, root))
    return plans


def parallel_plan_of(model: nn.Module) -> ParallelPlan:
    """The model's own :class:`~lrkit.train.models.layout.ParallelPlan`; an error names a model without one."""
    parts = getattr(model, "parallel_plan", None)
    if not isinstance(parts, ParallelPlan):
        raise ValueError(
            f"{type(model).__name__} declares no parallel_plan: tensor and pipeline parallelism need one "
            "(see lrkit.train.models.layout)"
        )
    return parts


def check_tp_divisibility(model: nn.Module, tp: int) -> None:
    cfg: Any = model.config
    heads = [("n_head", cfg.n_head)]
    if hasattr(cfg, "n_kv_head"):
        heads.append(("n_kv_head", cfg.n_kv_head))
    for field, value in heads:
        if value % tp != 0:
            raise TrainError(f"--tensor-parallel {tp} must divide the model's {field}={value}")


@dataclass
class ParallelModel:
    """The model as wrapped for the layout, plus the hooks the training loop needs."""

    module: nn.Module  # what forward() is called on (DDP/FSDP wrapper or the model)
    raw: nn.Module  # the underlying model (state dict, config)
    ctx: DistContext
    layout: str
    sharded_state: bool  # FSDP/TP: parameters are DTensors, use the DCP state-dict API
    _sync_grads: Callable[[], None] | None = None

    def no_sync(self, last_micro_step: bool) -> AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce on all but the last micro-step of an accumulation."""
        if not last_micro_step and isinstance(self.module, nn.parallel.DistributedDataParallel):
            return self.module.no_sync()
        return nullcontext()

    def sync_grads(self) -> None:
        """Average gradients over data-parallel ranks where no wrapper does it (TP with DP > 1)."""
        if self._sync_grads is not None:
            self._sync_grads()

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.raw.parameters()

    def checkpoint_parameters(self) -> list[tuple[str, nn.Parameter, bool]]:
        """This rank's parameters as ``(name, parameter, written)``: the name of each in the single-process model
        (the same in every layout, so a sharded checkpoint loads on another one), the parameter as this layout
        holds it (a DTensor under FSDP2 or TP), and whether this rank writes it. A parameter held twice (a tied
        weight's copy on another pipeline stage) is written once and loaded into both."""
        return [(name, p, True) for name, p in self.raw.named_parameters()]

    # The state protocol of the model and its optimizer under this layout, as full (unsharded) state dicts
    # (CPU tensors), for the full checkpoint format. The sharded format (lrkit.train.sharded) reads
    # checkpoint_parameters() instead. Either loads into any layout.

    def model_state_dict(self) -> dict[str, Any]:
        """Collective: the full model's state dict (CPU tensors)."""
        if self.sharded_state:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.raw, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu() for k, v in self.raw.state_dict().items()}

    def load_model_state_dict(self, state: dict[str, Any]) -> None:
        """Load a full model state dict (any layout's) into this layout's parameters."""
        if self.sharded_state:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.raw, state, options=StateDictOptions(full_state_dict=True))
        else:
            self.raw.load_state_dict(state)

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Collective: the full optimizer state dict on the main rank. A ZeRO-1 optimizer gathers its own
        shards (``full_state_dict``); sharded parameters use the DCP state-dict API."""
        gather = getattr(optimizer, "full_state_dict", None)
        if gather is not None:
            full = gather()
            return full if self.ctx.is_main else {}
        if self.sharded_state:
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_optimizer_state_dict(self.raw, optimizer, options=options)
        return optimizer.state_dict()

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a full optimizer state dict; a ZeRO-1 optimizer keeps its own shard of it."""
        if self.sharded_state and not hasattr(optimizer, "full_state_dict"):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.raw, optimizer, state, options=StateDictOptions(full_state_dict=True))
        else:
            optimizer.load_state_dict(state)


def wrap_model(
    model: nn.Module, ctx: DistContext, fsdp: bool = False, sequence_parallel: bool = False
) -> ParallelModel:
    """Apply TP (``ctx.tp_size > 1``, with ``sequence_parallel``), then FSDP2 (``fsdp``) or DDP (``dp_size > 1``)."""
    model.to(ctx.device)
    layout = "single"
    sync: Callable[[], None] | None = None
    module: nn.Module = model
    if ctx.tp_size > 1:
        from torch.distributed.tensor.parallel import parallelize_module

        check_tp_divisibility(model, ctx.tp_size)
        for target, plan in _tp_plan(model, sequence_parallel):
            parallelize_module(target, ctx.mesh["tp"], plan)
        layout = f"TP{ctx.tp_size}" + ("+SP" if sequence_parallel else "")
    elif sequence_parallel:
        raise TrainError("--sequence-parallel needs --tensor-parallel > 1")
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        if not ctx.distributed:
            raise TrainError("--fsdp needs more than one rank (launch with torchrun)")
        dp_mesh = ctx.mesh["dp"]
        blocks = model.transformer.h if hasattr(model, "transformer") else model.layers  # type: ignore[union-attr]
        for block in blocks:  # type: ignore[union-attr]
            fully_shard(block, mesh=dp_mesh)
        fully_shard(model, mesh=dp_mesh)
        layout = "FSDP2" if ctx.tp_size == 1 else f"FSDP2+{layout}"
    elif ctx.dp_size > 1 and ctx.tp_size == 1:
        module = nn.parallel.DistributedDataParallel(model)
        layout = "DDP"
    elif ctx.dp_size > 1:
        dp_group = ctx.mesh["dp"].get_group()
        params = [p for p in model.parameters() if p.requires_grad]

        def _average() -> None:
            for p in params:
                if p.grad is None:
                    continue
                local = local_tensor(p.grad)
                dist.all_reduce(local, op=dist.ReduceOp.SUM, group=dp_group)
                local.div_(ctx.dp_size)

        sync = _average
        layout = f"DP{ctx.dp_size}+{layout}"
    sharded = ctx.tp_size > 1 or fsdp
    return ParallelModel(module=module, raw=model, ctx=ctx, layout=layout, sharded_state=sharded, _sync_grads=sync)


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Average a Python float over all ranks (float64 so the sum is exact enough to log)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / ctx.world_size


def all_reduce_max(value: int, ctx: DistContext) -> int:
    """The largest of every rank's ``value`` (the ranks agree on whether, and by which signal, to stop)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_gather_floats(values: list[float], ctx: DistContext) -> list[list[float]]:
    """Every rank's ``values`` (used to check that all ranks hold the same LR)."""
    if not ctx.distributed:
        return [values]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, values)
    return out


def is_dtensor(tensor: torch.Tensor) -> bool:
    """A DTensor (tensor parallel / FSDP2 parameter, gradient or optimizer state), not a plain tensor."""
    return hasattr(tensor, "full_tensor")


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (a view: writing it writes the DTensor), or the plain tensor itself."""
    return tensor.to_local() if is_dtensor(tensor) else tensor  # type: ignore[attr-defined, no-any-return]


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor: a DTensor's shards gathered (collective over its mesh), a plain tensor as is."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor  # type: ignore[attr-defined, no-any-return]


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` laid out as ``like``: this rank's shard as a DTensor when ``like`` is one (no communication:
    every rank holds ``full``), else ``full`` on ``like``'s device."""
    full = full.to(like.device)
    if not is_dtensor(like):
        return full
    from torch.distributed.tensor import distribute_tensor

    dt: Any = like
    return distribute_tensor(full, dt.device_mesh, dt.placements, src_data_rank=None)


def optimizer_state_like(state: dict[str, Any], param: torch.Tensor) -> dict[str, Any]:
    """One parameter's optimizer state (a full checkpoint's: whole plain tensors) laid out as ``param``:
    state shaped like a DTensor parameter becomes this rank's shard; scalars (Adam's ``step``) stay."""
    if not is_dtensor(param):
        return state
    return {
        key: shard_like(value, param)
        if isinstance(value, torch.Tensor) and not is_dtensor(value) and key != "step" and value.shape == param.shape
        else value
        for key, value in state.items()
    }


def squared_grad_norm(grads: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``|plain|^2 + |dtensor|^2`` as a float64 scalar: the squared L2 norm of the gradients of this rank's model
    part, each element counted once (a DTensor's norm is taken over its mesh, so a replicated DTensor counts
    once and a sharded one whole; plain gradients are this rank's own or replicated copies)."""
    squared = torch.zeros((), dtype=torch.float64, device=device)
    plain = [g for g in grads if not is_dtensor(g)]
    distributed = [g for g in grads if is_dtensor(g)]
    if plain:
        squared += torch.nn.utils.get_total_norm(plain).double() ** 2
    if distributed:
        norm = torch.nn.utils.get_total_norm(distributed)
        squared += full_tensor(norm).double() ** 2
    return squared


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """Global L2 grad norm over all ranks' shards, clipped to ``max_norm`` when ``max_norm > 0``.

    With plain tensors only this is ``torch.nn.utils.clip_grad_norm_``. Under tensor
    parallelism some grads are DTensors (sharded) and some plain (replicated layers),
    which torch's foreach kernels refuse to mix, so the two norms are combined here:
    ``total = sqrt(|plain|^2 + |dtensor|^2)``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not any(is_dtensor(g) for g in grads):
        if max_norm > 0:
            return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        return float(torch.nn.utils.get_total_norm(grads))
    total = float(squared_grad_norm(grads, grads[0].device)) ** 0.5
    if max_norm > 0:
        coef = max_norm / (total + 1e-6)
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
    return total
