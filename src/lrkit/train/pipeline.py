"""Pipeline parallelism on ``torch.distributed.pipelining``: ``--pipeline-parallel N --virtual-pipeline-parallel V``.

The model's blocks are split evenly into ``N * V`` stage modules. Stage 0 also holds the
embeddings, the last stage the final norm and the output head and computes the loss.
Stage ``s`` lives on pipeline rank ``s % N`` (looped placement), so with ``V > 1`` every
rank holds ``V`` stages and runs ``ScheduleInterleaved1F1B``; with ``V == 1`` it runs
``Schedule1F1B`` (default) or ``ScheduleGPipe``.

The micro-batches of one optimizer update are the pipeline's micro-batches:
``n_microbatches`` = the gradient-accumulation steps, which must be ``>= N`` (raise
``--total-batch-size``). The schedule averages the gradients over them (``scale_grads``),
as the plain loop does by dividing each micro-loss.

Ranks form the ``(dp, pp, tp)`` mesh, rank = ``(dp_rank * N + pp_rank) * T + tp_rank``, so
TP x PP x DP all compose (world = DP * N * T):

* **Tensor parallel** (``--tensor-parallel T``, ``--sequence-parallel``): every stage's
  blocks get the same per-block plan as the unpipelined model (:func:`block_tp_plan`); the
  embeddings, the final norm and the head stay replicated. Activations cross stage
  boundaries as plain full tensors (what ``PipelineStage`` sends), over the pipeline group
  of this tensor-parallel rank; under sequence parallelism a stage shards the residual
  stream along the sequence on entering its first block and gathers it on leaving its last.
* **Data parallel**: gradients are averaged over the replicas by hand (DTensor gradients
  through their local shards); ``--zero-stage 1`` shards the optimizer state over them
  (:class:`~lrkit.train.zero.ZeroOptimizer`).

GPT-2's tied embedding: the first stage holds ``wte`` and the last stage ``lm_head``,
on different ranks, so the last stage keeps a *copy* of the shared weight (Megatron's
approach). After backward the two ranks (same data- and tensor-parallel rank) all-reduce
(sum) the copy's and the original's gradients, so both hold the tied gradient of the
single-process model and take the same optimizer update: the copies stay identical. The
grad norm counts the weight once.

Every rank builds the full model from the same seed and keeps only its stages'
parameters in its optimizer. The global grad norm sums squared norms over the pipeline
group (a DTensor's norm is already global over its tensor-parallel group). Checkpoints
gather every stage's parameters and optimizer state, as whole tensors, to rank 0 into the
same full-model payload as the unsharded layouts, whatever ``N``, ``V``, ``T`` and ``DP`` (a PP
checkpoint without TP resumes in one process), and cut them back into shards on load.

Refused, with an error naming the flag: FSDP, ``--compile``, float16 (the GradScaler
cannot scale the schedule's internal backward; bfloat16 works) and ``--eval-interval``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lrkit.train.config import TrainConfig
from lrkit.train.errors import TrainError
from lrkit.train.models.layout import ParallelPlan
from lrkit.train.parallel import (
    DistContext,
    ParallelModel,
    block_tp_plan,
    check_tp_divisibility,
    full_tensor,
    local_tensor,
    optimizer_state_like,
    parallel_plan_of,
    shard_like,
    squared_grad_norm,
)
from lrkit.train.zero import ZeroOptimizer

SCHEDULES = ("1f1b", "gpipe", "interleaved1f1b")


def stage_layers(n_layer: int, pp: int, vpp: int = 1) -> list[tuple[int, int]]:
    """Block ranges ``[lo, hi)`` of the ``pp * vpp`` stages; the blocks must split evenly."""
    if pp < 1 or vpp < 1:
        raise TrainError(f"--pipeline-parallel and --virtual-pipeline-parallel must be >= 1, got {pp} and {vpp}")
    stages = pp * vpp
    if n_layer % stages != 0:
        raise TrainError(
            f"--pipeline-parallel {pp} x --virtual-pipeline-parallel {vpp} = {stages} stages must divide the "
            f"model's n_layer={n_layer}"
        )
    per = n_layer // stages
    return [(s * per, (s + 1) * per) for s in range(stages)]


def check_pipeline_args(config: TrainConfig, ctx: DistContext, grad_accum: int, n_layer: int) -> None:
    """Refuse what PP does not support (yet) before any step."""
    config = TrainConfig.of(config)
    parallel, batch = config.parallel, config.batch
    pp, vpp = parallel.pipeline_parallel, parallel.virtual_pipeline_parallel
    stage_layers(n_layer, pp, vpp)
    if parallel.sequence_parallel and parallel.tensor_parallel < 2:
        raise TrainError("--sequence-parallel needs --tensor-parallel > 1")
    refused = [
        (parallel.fsdp, "--fsdp"),
        (config.model.compile, "--compile"),
        (config.model.dtype == "float16", "--dtype float16"),
        (bool(config.logging.eval_interval), "--eval-interval"),
    ]
    for bad, flag in refused:
        if bad:
            raise TrainError(f"--pipeline-parallel {pp} cannot be combined with {flag} yet")
    if grad_accum < pp:
        raise TrainError(
            f"--pipeline-parallel {pp} needs at least {pp} micro-batches per update (the pipeline's "
            f"microbatches are the gradient-accumulation steps), got {grad_accum}: raise --total-batch-size to "
            f">= {pp} x batch-size x sequence-length x data-parallel size "
            f"= {pp * batch.batch_size * batch.sequence_length * ctx.dp_size}"
        )
    schedule = parallel.pipeline_schedule or ("interleaved1f1b" if vpp > 1 else "1f1b")
    if (vpp > 1) != (schedule == "interleaved1f1b"):
        raise TrainError(
            f"--pipeline-schedule {schedule} does not fit --virtual-pipeline-parallel {vpp}: use interleaved1f1b "
            "for V > 1, 1f1b or gpipe for V = 1"
        )
    if vpp > 1:
        rounds = max(1, grad_accum // pp)
        if grad_accum % rounds:
            raise TrainError(
                f"Interleaved1F1B needs the micro-batches per update ({grad_accum}) to be a multiple of "
                f"{rounds} = max(1, micro-batches // --pipeline-parallel {pp})"
            )


def _stage_tp_plan(
    stage: nn.Module, parts: ParallelPlan, sequence_parallel: bool
) -> list[tuple[nn.Module, dict[str, Any]]]:
    """The blocks' tensor-parallel plans; under sequence parallelism also the stage's entry and exit.

    A stage takes and returns plain full tensors (``PipelineStage`` sends plain tensors), so with
    ``sequence_parallel`` the residual stream is sharded along the sequence entering the first block
    and gathered leaving the last one; the final norm and head then run on the gathered stream.
    """
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import PrepareModuleInput, PrepareModuleInputOutput, PrepareModuleOutput

    plan = block_tp_plan(parts, sequence_parallel)
    blocks: Any = stage.blocks
    plans: list[tuple[nn.Module, dict[str, Any]]] = [(block, dict(plan)) for block in blocks]
    if sequence_parallel:
        extra = (None,) * parts.block_extra_inputs
        enter: dict[str, Any] = {
            "input_layouts": (Replicate(), *extra),
            "desired_input_layouts": (Shard(1), *extra),
        }
        leave: dict[str, Any] = {"output_layouts": Shard(1), "desired_output_layouts": Replicate()}
        last = len(blocks) - 1
        root: dict[str, Any]
        if last == 0:
            both = PrepareModuleInputOutput(**enter, use_local_input=False, **leave, use_local_output=True)
            root = {"blocks.0": both}
        else:
            root = {
                "blocks.0": PrepareModuleInput(**enter, use_local_output=False),
                f"blocks.{last}": PrepareModuleOutput(**leave, use_local_output=True),
            }
        plans.append((stage, root))
    return plans


def _loss_fn(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


class PipelineModel(ParallelModel):
    """This rank's stages, its schedule, and the hooks the loop needs (step, grad sync, clip, checkpoint)."""

    full: nn.Module
    schedule: Any
    n_microbatches: int
    _tied_copy: nn.Parameter | None
    _tied_group: Any
    _canon: dict[int, str]  # id(local param) -> name in the single-process model
    _full_order: list[list[str]]  # the single-process optimizer groups (decay, no_decay), by name
    _state_keys: list[tuple[str, str]]  # full state-dict key -> the parameter name that holds it

    def pipeline_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward and backward of one update's micro-batches (stacked along dim 0); the mean loss on every rank."""
        ctx = self.ctx
        losses: list[torch.Tensor] = []
        first = ctx.pp_rank == 0
        last = ctx.pp_rank == ctx.pp_size - 1
        args = (x,) if first else ()
        self.schedule.step(*args, target=y if last else None, losses=losses if last else None)
        loss_sum = torch.zeros((), device=ctx.device)
        for loss in losses:
            loss_sum += loss.detach().float() / self.n_microbatches
        dist.broadcast(loss_sum, group=ctx.mesh["pp"].get_group(), group_src=ctx.pp_size - 1)
        return loss_sum

    def clip_grad_norm(self, max_norm: float) -> float:
        """Global grad norm over all stages (squared norms summed over the pipeline group), clipped as torch does."""
        grads = [p.grad for p in self.raw.parameters() if p.grad is not None]
        counted = [p.grad for p in self.raw.parameters() if p.grad is not None and p is not self._tied_copy]
        squared = squared_grad_norm(counted, self.ctx.device).reshape(1)
        dist.all_reduce(squared, op=dist.ReduceOp.SUM, group=self.ctx.mesh["pp"].get_group())
        total = squared.sqrt().float().reshape(())
        if max_norm > 0:
            coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
            for g in grads:
                local_tensor(g).mul_(coef)
        return float(total)

    # ------------------------------------------------------------------ checkpoint: full-model payloads

    def checkpoint_parameters(self) -> list[tuple[str, nn.Parameter, bool]]:
        """This rank's stage parameters by their single-process names; the tied head's copy on the last stage is
        loaded from the embedding's entry and not written (stage 0 writes it)."""
        return [(self._canon[id(p)], p, p is not self._tied_copy) for p in self.raw.parameters()]

    def _sends(self, sharded_over_dp: bool = False) -> bool:
        """Whether this rank's part goes into the gathered payload: one copy per stage, not per replica or shard."""
        return self.ctx.tp_rank == 0 and (sharded_over_dp or self.ctx.dp_rank == 0)

    def model_state_dict(self) -> dict[str, Any]:
        """Collective: the full model's state dict on rank 0 (``{}`` elsewhere)."""
        local: dict[str, torch.Tensor] = {}
        if self.ctx.dp_rank == 0:  # DTensors are gathered over the tensor-parallel group of this replica
            for p in self.raw.parameters():
                if p is not self._tied_copy:  # stage 0 reports the tied weight
                    local[self._canon[id(p)]] = full_tensor(p.detach()).cpu().clone()
        gathered = _gather(local if self._sends() else {}, self.ctx)
        if not self.ctx.is_main:
            return {}
        merged: dict[str, torch.Tensor] = {}
        for part in gathered:
            merged.update(part)
        return {key: merged[name] for key, name in self._state_keys}

    def optimizer_state_dict(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """Collective: the single-process optimizer's state dict on rank 0 (``{}`` elsewhere).

        Under ZeRO-1 every data-parallel rank holds the state of its own parameters: all of them send.
        """
        local = optimizer.state_dict()
        by_name: dict[str, Any] = {}
        for group, saved in zip(optimizer.param_groups, local["param_groups"]):
            for p, index in zip(group["params"], saved["params"]):
                if p is not self._tied_copy and index in local["state"]:
                    by_name[self._canon[id(p)]] = _to_cpu(local["state"][index])
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in local["param_groups"]]
        sends = self._sends(sharded_over_dp=isinstance(optimizer, ZeroOptimizer))
        gathered = _gather((by_name, hyper) if sends else ({}, hyper), self.ctx)
        if not self.ctx.is_main:
            return {}
        states: dict[str, Any] = {}
        for part, _ in gathered:
            states.update(part)
        groups, state, index = [], {}, 0
        for g, names in enumerate(self._full_order):
            params = []
            for name in names:
                if name in states:
                    state[index] = states[name]
                params.append(index)
                index += 1
            groups.append({**hyper[min(g, len(hyper) - 1)], "params": params})
        return {"state": state, "param_groups": groups}

    def load_model_state_dict(self, state: dict[str, Any]) -> None:
        """Load a full model state dict (any layout's) into this rank's stages (cut into shards)."""
        with torch.no_grad():
            for p in self.raw.parameters():
                local_tensor(p).copy_(local_tensor(shard_like(state[self._canon[id(p)]], p)))

    def load_optimizer_state_dict(self, optimizer: torch.optim.Optimizer, full: dict[str, Any]) -> None:
        """Load a full optimizer state dict (any layout's) into this rank's optimizer (cut into shards)."""
        index_of = {name: i for i, name in enumerate(n for names in self._full_order for n in names)}
        local = optimizer.state_dict()
        new_state = {}
        for g, (group, saved) in enumerate(zip(optimizer.param_groups, local["param_groups"])):
            for p, index in zip(group["params"], saved["params"]):
                i = index_of[self._canon[id(p)]]
                if i in full["state"]:
                    new_state[index] = optimizer_state_like(full["state"][i], p)
            hyper = {k: v for k, v in full["param_groups"][g].items() if k != "params"}
            saved.update(hyper)
        local["state"] = new_state
        optimizer.load_state_dict(local)


def _to_cpu(value: Any) -> Any:
    """Whole tensors on the CPU (a DTensor is gathered: collective over its tensor-parallel group)."""
    if isinstance(value, torch.Tensor):
        return full_tensor(value.detach()).cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


def _gather(obj: Any, ctx: DistContext) -> list[Any]:
    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out if out is not None else []


def build_pipeline(model: nn.Module, ctx: DistContext, config: TrainConfig, n_microbatches: int) -> PipelineModel:
    """This rank's stage modules, ``PipelineStage`` objects and schedule; collective (creates process groups)."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe, ScheduleInterleaved1F1B

    parallel = config.parallel
    pp, vpp = ctx.pp_size, parallel.virtual_pipeline_parallel
    cfg: Any = model.config
    ranges = stage_layers(cfg.n_layer, pp, vpp)
    model.to(ctx.device)
    parts = parallel_plan_of(model)
    tied = parts.tied_head
    # The single-process names, optimizer groups and state-dict keys, taken before any untying.
    named = list(model.named_parameters())
    full_order = [[n for n, p in named if p.dim() >= 2], [n for n, p in named if p.dim() < 2]]
    name_of = {id(p): n for n, p in named}
    state_keys = [(k, name_of[id(v)]) for k, v in model.state_dict(keep_vars=True).items()]
    n_stages = pp * vpp
    my_stages = [s for s in range(n_stages) if s % pp == ctx.pp_rank]
    tied_copy: nn.Parameter | None = None
    canon: dict[int, str] = {}
    head: Any = model.get_submodule(parts.head)
    if tied and (n_stages - 1) in my_stages and 0 not in my_stages:
        tied_copy = nn.Parameter(head.weight.detach().clone())
        head.weight = tied_copy
        canon[id(tied_copy)] = name_of[id(model.get_submodule(parts.embedding).weight)]
    build_stage: Any = model.pipeline_stage
    modules = [build_stage(*ranges[s], first=s == 0, last=s == n_stages - 1) for s in my_stages]
    if ctx.tp_size > 1:
        from torch.distributed.tensor.parallel import parallelize_module

        check_tp_divisibility(model, ctx.tp_size)
        for module in modules:
            for target, plan in _stage_tp_plan(module, parts, parallel.sequence_parallel):
                parallelize_module(target, ctx.mesh["tp"], plan)
    raw = nn.ModuleList(modules)
    # Tensor parallelism replaced the blocks' parameters (DTensors) under the same names.
    name_now = {id(p): n for n, p in model.named_parameters()}
    for p in raw.parameters():
        canon.setdefault(id(p), name_now[id(p)])
    pp_group = ctx.mesh["pp"].get_group()
    stages: list[Any] = [
        PipelineStage(mod, s, n_stages, ctx.device, group=pp_group) for mod, s in zip(modules, my_stages)
    ]
    schedule_name = parallel.pipeline_schedule or ("interleaved1f1b" if vpp > 1 else "1f1b")
    schedule: Any
    if schedule_name == "interleaved1f1b":
        schedule = ScheduleInterleaved1F1B(stages, n_microbatches=n_microbatches, loss_fn=_loss_fn)
    elif schedule_name == "gpipe":
        schedule = ScheduleGPipe(stages[0], n_microbatches=n_microbatches, loss_fn=_loss_fn)
    else:
        schedule = Schedule1F1B(stages[0], n_microbatches=n_microbatches, loss_fn=_loss_fn)

    # The tied pair (stage 0 on pp rank 0, the last stage on pp rank pp-1) of every data-parallel replica
    # and tensor-parallel rank. The embedding and head are not tensor-parallel: the tied weight is plain.
    tied_group = None
    if tied:
        tp = ctx.tp_size
        for d in range(ctx.dp_size):
            for t in range(tp):
                first_rank = d * pp * tp + t
                group = dist.new_group([first_rank, first_rank + (pp - 1) * tp])
                if (d, t) == (ctx.dp_rank, ctx.tp_rank):
                    tied_group = group
    owns_tied = tied and (ctx.pp_rank == 0 or ctx.pp_rank == pp - 1)
    tied_param: nn.Parameter | None = None
    if owns_tied:
        embedding: Any = model.get_submodule(parts.embedding)
        tied_param = tied_copy if tied_copy is not None else embedding.weight
    dp_group = ctx.mesh["dp"].get_group() if ctx.dp_size > 1 else None
    params = list(raw.parameters())

    def _sync() -> None:
        if tied_param is not None and tied_param.grad is not None:
            dist.all_reduce(tied_param.grad, op=dist.ReduceOp.SUM, group=tied_group)
        if dp_group is not None:
            for p in params:
                if p.grad is not None:
                    grad = local_tensor(p.grad)
                    dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=dp_group)
                    grad.div_(ctx.dp_size)

    layout = (
        f"PP{pp}"
        + (f"+VPP{vpp}" if vpp > 1 else "")
        + (f"+TP{ctx.tp_size}" if ctx.tp_size > 1 else "")
        + ("+SP" if parallel.sequence_parallel else "")
        + (f"+DP{ctx.dp_size}" if ctx.dp_size > 1 else "")
    )
    pm = PipelineModel(module=raw, raw=raw, ctx=ctx, layout=layout, sharded_state=False, _sync_grads=_sync)
    pm.full = model
    pm.schedule = schedule
    pm.n_microbatches = n_microbatches
    pm._tied_copy = tied_copy
    pm._tied_group = tied_group
    pm._canon = canon
    pm._full_order = full_order
    pm._state_keys = state_keys
    return pm
