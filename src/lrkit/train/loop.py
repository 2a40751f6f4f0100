"""The training loop: ``lrkit train ...`` or ``torchrun --nproc_per_node N -m lrkit.train ...``.

One optimizer update per step. The scheduler steps once per *successful*
update: gradient-accumulation micro-steps do not advance it, and an update that
the fp16 GradScaler skips for overflow does not either.

Per step the last rank prints (InfiniTrain's format)::

    step    1/200 | train loss 5.545177 | lr 3.00e-06 | (95.12 ms | 21531 tok/s | DP=1)

and the main rank appends one JSON object to ``<run-dir>/metrics.jsonl``:
``{"step", "lr": [per group], "loss", "tokens", "samples", "ms", "tok_per_s", "grad_norm", "skipped"}``;
eval records add ``"val_loss"`` and ``"val_ppl"``. ``"lr"`` is the LR this step used, ``"tokens"`` and
``"samples"`` count what was read up to the end of this step.

Time in tokens (:mod:`lrkit.schedules.clock`): with a schedule on the token (or sample) clock, the scheduler
advances by the tokens (samples) of each *successful* update, and the record adds ``"clock"``: the
schedule's time at which ``"lr"`` was set (tokens or samples of the successful updates before this
step), so ``lr == schedule(clock)``. A ``--total`` in tokens or samples without ``--num-iterations``
sets the run length to ``ceil((total - clock) / per step)`` more steps. Checkpoints hold the clocks
and the tokens per step, so a resume may change ``--total-batch-size``: a schedule in tokens stays
continuous in tokens; one in steps stays continuous in steps (a note says the batch changed).

Param groups and the other hyperparameters (:mod:`lrkit.train.optim`): with named groups
(``--param-groups parts|layers``, ``--layer-decay``) the record adds ``"lr_groups"``, the groups' names in
the order of ``"lr"``; each hyperparameter schedule adds its values in force for the step:
``"weight_decay"``, ``"beta2"``, ``"momentum"`` (one per group) and ``"grad_clip"`` (one float). They step
on the step clock (once per successful update); checkpoints hold their states under ``"hparams"``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit.runtime import resume as resume_policy
from lrkit.schedulers.base import group_lrs, set_group_value
from lrkit.spec import build_scheduler, spec_fingerprint
from lrkit.spec.clocked import advance as advance_clock
from lrkit.spec.clocked import move_to as move_clock
from lrkit.spec.clocked import spec_clock_unit
from lrkit.train import checkpoint as ckpt
from lrkit.train import optim as train_optim
from lrkit.train.arguments import add_train_arguments, config_from_args
from lrkit.train.config import ModelConfig, TrainConfig
from lrkit.train.data import TokenLoader, load_corpus, train_val_split
from lrkit.train.errors import USER_ERRORS, TrainError
from lrkit.train.models import build_model
from lrkit.train.parallel import (
    DistContext,
    ParallelModel,
    all_gather_floats,
    all_reduce_mean,
    clip_grad_norm,
    is_dtensor,
    setup_distributed,
    teardown_distributed,
    wrap_model,
)
from lrkit.train.pipeline import PipelineModel, build_pipeline, check_pipeline_args
from lrkit.train.zero import ZeroOptimizer

__all__ = [
    "COMPATIBLE_KEYS",
    "MetricsLog",
    "TrainError",
    "add_train_arguments",
    "build_optimizer",
    "build_train_model",
    "evaluate",
    "main",
    "model_overrides",
    "optimizer_impl_kwargs",
    "param_groups",
    "plot_run",
    "read_metrics",
    "run_train",
    "save",
    "train",
]

#: Run-config keys a checkpoint must agree on to be resumed (argparse names: :meth:`TrainConfig.flag_values`).
COMPATIBLE_KEYS = [
    "model",
    "preset",
    "n_layer",
    "n_head",
    "n_kv_head",
    "sequence_length",
    "optimizer",
    "dtype",
    "tensor_parallel",
    "sequence_parallel",
    "fsdp",
    "zero_stage",
    # The groups' peaks come from the checkpoint's optimizer state: a change here would be ignored silently.
    "lr",
    "param_groups",
    "layer_decay",
    "group_lr",
]


# --------------------------------------------------------------------------- setup


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups, as in nanoGPT: matrices decay; biases, norms and gains do not."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(config: TrainConfig, pm: ParallelModel) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD over two param groups (or the named ones); ZeRO-1 shards its state."""
    opt, lr_value, compile_ = config.optimizer, float(config.schedule.lr), config.model.compile
    lr: float | torch.Tensor = lr_value
    if compile_:
        lr = torch.tensor(lr_value)  # a tensor LR changes without recompiling the step
    groups = train_optim.named_groups(config, pm.raw) or param_groups(pm.raw, opt.weight_decay)
    cls: type[torch.optim.Optimizer]
    kwargs: dict[str, Any] = {"lr": lr}
    if opt.name in ("adamw", "adam"):
        cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        kwargs["betas"] = (opt.beta1, opt.beta2)
    else:
        cls = torch.optim.SGD
        kwargs["momentum"] = opt.momentum
    dtensor_params = any(is_dtensor(p) for p in pm.raw.parameters())
    kwargs.update(optimizer_impl_kwargs(config, dtensor_params=dtensor_params))
    if opt.zero_stage == 1:
        if not pm.ctx.distributed:
            raise TrainError("--zero-stage 1 needs more than one rank (launch with torchrun)")
        if config.parallel.fsdp:
            raise TrainError("--zero-stage 1 cannot be combined with --fsdp (FSDP2 already shards the optimizer state)")
        return ZeroOptimizer(groups, optimizer_class=cls, group=pm.ctx.mesh["dp"].get_group(), **kwargs)
    if compile_:
        for group in groups:
            group["lr"] = torch.tensor(float(group.get("lr", lr_value)))
    return cls(groups, **kwargs)


def optimizer_impl_kwargs(config: TrainConfig, dtensor_params: bool = False) -> dict[str, bool]:
    """``--optimizer-impl`` as the optimizer's ``fused`` / ``foreach`` arguments (``{}``: torch's default).

    ``auto`` picks the fused kernel for AdamW and Adam over plain tensors. It leaves torch's default
    under ``--compile`` (the compiled step is traced from it) and for DTensor parameters
    (``dtensor_params``: tensor parallel, FSDP2), which torch's fused kernels do not take.
    """
    config = TrainConfig.of(config)
    opt, compile_ = config.optimizer, config.model.compile
    impl = opt.implementation
    if impl == "auto":
        fused = opt.name in ("adamw", "adam") and not compile_ and not dtensor_params
        return {"fused": True} if fused else {}
    if impl == "fused":
        if dtensor_params:
            raise TrainError(
                "--optimizer-impl fused does not work with DTensor parameters (--tensor-parallel > 1 or --fsdp): "
                "torch's fused kernels take plain tensors only; use auto or foreach"
            )
        return {"fused": True}
    return {"foreach": impl == "foreach"}


def model_overrides(model: ModelConfig) -> dict[str, Any]:
    """The model-config fields the config replaces in the preset (``--dropout``, ``--n-layer``, ...)."""
    overrides: dict[str, Any] = {}
    if model.name == "gpt2" and model.dropout:
        overrides["dropout"] = model.dropout
    for name in ("n_layer", "n_head", "n_kv_head"):
        value = getattr(model, name)
        if value is None:
            continue
        if name == "n_kv_head" and model.name != "llama3":
            raise TrainError(f"--n-kv-head applies to --model llama3 only, got --model {model.name}")
        overrides[name] = value
    return overrides


def build_train_model(model: ModelConfig) -> Any:
    """The model the config describes; a preset or shape the model refuses is a :class:`TrainError`."""
    overrides = model_overrides(model)
    try:
        return build_model(model.name, model.preset, **overrides)
    except ValueError as err:  # the model's own argument checks: the flags chose those arguments
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in overrides.items())
        raise TrainError(f"--model {model.name} --preset {model.preset} {flags}".rstrip() + f": {err}") from err


# ---------------------------------------------------------------------- metrics


class MetricsLog:
    """``metrics.jsonl``: one JSON object per optimizer step, at full float precision."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites them), atomically; skip torn lines."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("step", 0) <= step:
                kept.append(line)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All parseable records of a ``metrics.jsonl``."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# --------------------------------------------------------------------- checkpoint


def _model_state(pm: ParallelModel) -> dict[str, Any]:
    if isinstance(pm, PipelineModel):
        return pm.model_state()
    if pm.sharded_state:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(pm.raw, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in pm.raw.state_dict().items()}


def _optimizer_state(pm: ParallelModel, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    if isinstance(pm, PipelineModel):
        return pm.optimizer_state(optimizer)
    if isinstance(optimizer, ZeroOptimizer):  # ZeRO-1: gather the shards on rank 0
        full = optimizer.full_state_dict()
        return full if pm.ctx.is_main else {}
    if pm.sharded_state:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            pm.raw, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
    return optimizer.state_dict()


def _load_model_and_optimizer(pm: ParallelModel, optimizer: torch.optim.Optimizer, payload: dict[str, Any]) -> None:
    if isinstance(pm, PipelineModel):
        pm.load(optimizer, payload)
        return
    if pm.sharded_state:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True)
        set_model_state_dict(pm.raw, payload["model"], options=options)
        if isinstance(optimizer, ZeroOptimizer):  # a full state dict: it keeps its own shard
            optimizer.load_state_dict(payload["optimizer"])
        else:
            set_optimizer_state_dict(pm.raw, optimizer, payload["optimizer"], options=options)
        return
    pm.raw.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])


def _gather_rng(ctx: DistContext) -> list[Any]:
    state = ckpt.capture_rng_state()
    if not ctx.distributed:
        return [state]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, state)
    return out


# ------------------------------------------------------------------------ loop


def run_train(args: argparse.Namespace) -> int:
    """Entry point behind ``lrkit train`` and ``python -m lrkit.train``; returns the exit code.

    ``args`` are the parsed flags (:func:`add_train_arguments`): they become the run's config once
    (``--config``'s file, with the flags typed on top). A user's mistake (:data:`USER_ERRORS`) prints
    ``lrkit train: error: ...`` and returns 2; anything else is a bug and raises with its traceback.
    """
    try:
        config = config_from_args(args)
        if getattr(args, "print_config", False):
            world_size = int(os.environ.get("WORLD_SIZE", "1"))
            replica = config.parallel.tensor_parallel * config.parallel.pipeline_parallel
            print(config.resolve(max(1, world_size // replica)).to_toml(), end="")
            return 0
        parallel = config.parallel
        ctx = setup_distributed(parallel.tensor_parallel, parallel.device, parallel.pipeline_parallel)
    except USER_ERRORS as err:
        print(f"lrkit train: error: {err}", file=sys.stderr)
        return 2
    try:
        train(config, ctx)
    except USER_ERRORS as err:
        print(f"lrkit train: error: {err}", file=sys.stderr)
        return 2
    finally:
        teardown_distributed()
    return 0


def train(config: TrainConfig | argparse.Namespace, ctx: DistContext) -> dict[str, Any]:
    """Train as ``config`` says; returns a summary (run dir, final step, last loss).

    ``config`` is resolved here (:meth:`TrainConfig.resolve`, at the resume point); a namespace of
    :func:`add_train_arguments` is turned into its config first.
    """
    config = config_from_args(config) if isinstance(config, argparse.Namespace) else config
    if config.parallel.threads:
        torch.set_num_threads(config.parallel.threads)
    if ctx.device.type == "cpu":
        # Small losses fill Adam's state with denormals, which are ~10x slower on CPU.
        torch.set_flush_denormal(True)
    run_dir = Path(config.logging.run_dir)
    payload: dict[str, Any] | None = None
    resume_path: Path | None = None
    resume = config.checkpoint.resume
    if resume:
        resume_path = ckpt.find_latest_valid(run_dir) if resume == "auto" else Path(resume)
        if resume_path is not None:
            payload = ckpt.load_checkpoint(resume_path)
    sequence_length = config.batch.sequence_length
    step0 = int(payload["step"]) if payload is not None else 0
    clock = _saved_clock(payload, sequence_length) if payload is not None else {"tokens": 0, "samples": 0}
    length = config.run_length_from_total()  # the run length comes from --total (noted below)
    config = config.resolve(ctx.dp_size, start_step=step0, start_clock=clock)  # nothing changes it from here
    batch, schedule, opt = config.batch, config.schedule, config.optimizer
    assert batch.num_iterations is not None and schedule.spec is not None
    num_iterations = batch.num_iterations
    grad_accum = batch.gradient_accumulation_steps(ctx.dp_size)
    tokens_per_step = batch.tokens_per_step(ctx.dp_size)
    #: clock ticks per optimizer update (tokens and samples; a sample is one sequence)
    per_step = {"tokens": tokens_per_step, "samples": tokens_per_step // sequence_length}
    flags = config.flag_values()  # the flat run config every checkpoint holds (resume compatibility)
    spec = schedule.spec

    # Fail on bad input before any expensive work: data path, then model shape.
    tokens = load_corpus(config.data.path)
    train_tokens, val_tokens = train_val_split(tokens, config.data.val_fraction)
    seed = config.model.seed
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    model = build_train_model(config.model)
    block_size = model.config.block_size
    if sequence_length > block_size:
        raise TrainError(
            f"--sequence-length {sequence_length} is longer than the model's context "
            f"(block_size={block_size} for {config.model.name}/{config.model.preset})"
        )
    vocab = model.config.vocab_size
    if int(tokens.max()) >= vocab:
        raise TrainError(f"data has token id {int(tokens.max())} >= the model's vocab_size={vocab}")
    named = train_optim.named_groups(config, model)  # --param-groups: names and LR factors bind the schedule
    spec = train_optim.group_spec(config, spec, named)
    lr_groups = [str(g["name"]) for g in named] if named is not None else None

    decision: resume_policy.Decision | None = None
    if payload is not None:
        ckpt.check_compatible(payload["config"], flags, COMPATIBLE_KEYS, source=resume_path)
        policy = resume_policy.parse_policy(schedule.resume_policy)
        decision = resume_policy.decide(
            policy, resume_policy.Saved.from_payload(payload), spec, where=f"the checkpoint {resume_path}"
        )

    parallel = config.parallel
    if parallel.sequence_parallel and sequence_length % ctx.tp_size:
        raise TrainError(
            f"--sequence-length {sequence_length} must be divisible by --tensor-parallel {ctx.tp_size} "
            "under --sequence-parallel"
        )
    pm: ParallelModel
    if ctx.pp_size > 1:
        check_pipeline_args(config, ctx, grad_accum, model.config.n_layer)
        pm = build_pipeline(model, ctx, config, n_microbatches=grad_accum)
    else:
        if parallel.virtual_pipeline_parallel != 1 or parallel.pipeline_schedule is not None:
            raise TrainError("--virtual-pipeline-parallel and --pipeline-schedule need --pipeline-parallel > 1")
        pm = wrap_model(model, ctx, fsdp=parallel.fsdp, sequence_parallel=parallel.sequence_parallel)
    if config.model.compile:
        pm.module = torch.compile(pm.module)  # type: ignore[assignment]
    optimizer = build_optimizer(config, pm)
    request, applied_policy = spec, None  # the flags' schedule and the policy that changed it, for checkpoints
    if decision is not None:  # restore the schedule in force at the checkpoint first
        spec, request, applied_policy = decision.saved.spec, decision.request, decision.record
    backend = schedule.backend
    scheduler = build_scheduler(spec, optimizer, backend=backend)  # type: ignore[arg-type]
    hparams = train_optim.build_hparam_schedulers(config, optimizer)  # weight decay, betas, momentum, clip
    unit = spec_clock_unit(spec)  # "tokens" / "samples": the scheduler advances by clock ticks, not steps
    use_scaler = config.model.dtype == "float16"
    step_optimizer: Any = optimizer.step
    if config.model.compile and not use_scaler and opt.zero_stage == 0 and not pm.sharded_state and not hparams:
        # The update is compiled too (PyTorch's "compiling the optimizer" recipe). Its LRs are tensors
        # that the scheduler, outside the compiled region, fills in place: a new LR is a new input
        # value, not a new graph. The scaler's, ZeRO-1's and DTensor steps stay eager, and so does a step
        # with scheduled hyperparameters (Python floats in the groups, which would recompile it).
        step_optimizer = torch.compile(optimizer.step)
    scaler = torch.amp.GradScaler(ctx.device.type, enabled=use_scaler)
    autocast_dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.model.dtype]
    loader = TokenLoader(train_tokens, batch.batch_size, sequence_length, rank=ctx.dp_rank, world_size=ctx.dp_size)
    tokens_seen = 0
    if payload is not None:
        tokens_seen = int(payload["tokens"])
        if payload.get("scheduler_backend") == "lrkit" and backend == "lrkit":
            _load_model_and_optimizer(pm, optimizer, payload)
            scheduler.load_state_dict(payload["scheduler"])
        elif _steps_on_the_loss(scheduler):  # its state follows the losses: it cannot be replayed
            _load_model_and_optimizer(pm, optimizer, payload)  # the LRs in force
            if payload.get("scheduler_backend") == backend and payload.get("scheduler"):
                scheduler.load_state_dict(payload["scheduler"])  # torch's plateau state is plain data
            else:
                scheduler.last_epoch = int(payload["scheduler_steps"])
                _note(ctx, f"the checkpoint holds no {backend} ReduceLROnPlateau state: its patience count restarts")
        else:  # torch's own state is not plain data: replay its steps (deterministic), then load
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if unit is not None:  # a clocked schedule is a closed form of its clock: jump there
                    move_clock(scheduler, clock[unit], int(payload["scheduler_steps"]))
                else:
                    for _ in range(int(payload["scheduler_steps"])):
                        scheduler.step()
            _load_model_and_optimizer(pm, optimizer, payload)
        if payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        loader.load_state_dict(payload["data"])
        ckpt.restore_rng_state(payload["rng"][ctx.rank])
    scheduler_steps = int(payload["scheduler_steps"]) if payload is not None else 0
    if payload is not None:  # the hyperparameter schedules continue, or change as --lr-resume-policy says
        kind = resume_policy.parse_policy(schedule.resume_policy).kind
        hparams, notes = train_optim.resume_hparams(hparams, payload.get("hparams"), kind, scheduler_steps, optimizer)
        for note in notes:
            _note(ctx, note)
    if decision is not None:
        for note in decision.notes:
            _note(ctx, note)
        if decision.change:
            spec, scheduler = _change_schedule(
                decision, scheduler_steps, optimizer, backend, ctx, clock=clock, per_step=per_step
            )
            unit = spec_clock_unit(spec)
    if payload is not None:
        saved_per_step = int(payload.get("tokens_per_step") or (tokens_seen // step0 if step0 else tokens_per_step))
        if saved_per_step != tokens_per_step:
            _note(ctx, _batch_change_note(saved_per_step, tokens_per_step, unit, clock, step0))
    if length is not None:
        _note(
            ctx,
            f"--total {length} without --num-iterations: running to step {num_iterations} "
            f"({per_step[length.unit]} {length.unit} per step; the last step reaches or passes the total)",
        )

    is_main = ctx.is_main
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=is_main)
    if payload is None and is_main and metrics.path.exists():
        metrics.path.unlink()
    metrics.truncate_after(step0)
    logging = config.logging
    printer = _Printer(ctx.is_last_rank and not logging.quiet, total=num_iterations, initial=step0)
    if ctx.is_last_rank and not logging.quiet and resume_path is not None:
        printer.write(f"resumed from {resume_path} at step {step0}")
    params = [p for p in pm.raw.parameters() if p.requires_grad]
    plateau = _steps_on_the_loss(scheduler)
    loss = float("nan")
    for step in range(step0 + 1, num_iterations + 1):
        t0 = time.perf_counter()
        lrs = [float(g["lr"]) for g in optimizer.param_groups]
        hparam_values = train_optim.hparam_record(hparams)  # the scheduled values this update uses
        lr_clock = clock[unit] if unit is not None else None  # the schedule's time of ``lrs``
        loss_sum = torch.zeros((), device=ctx.device)
        if isinstance(pm, PipelineModel):  # the update's micro-batches are the pipeline's microbatches
            batches = [loader.next_batch() for _ in range(grad_accum)]
            x = torch.cat([b[0] for b in batches]).to(ctx.device)
            y = torch.cat([b[1] for b in batches]).to(ctx.device)
            amp = torch.autocast(ctx.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
            with amp:
                loss_sum = pm.pipeline_step(x, y)  # the last stage's loss, broadcast to every stage
        for micro in range(grad_accum if not isinstance(pm, PipelineModel) else 0):
            x, y = loader.next_batch()
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            amp = torch.autocast(ctx.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
            with pm.no_sync(micro == grad_accum - 1), amp:
                _, micro_loss = pm.module(x, y)
                assert micro_loss is not None
                micro_loss = micro_loss / grad_accum
            loss_sum += micro_loss.detach()
            scaler.scale(micro_loss).backward()
        pm.sync_grads()
        if opt.inject_inf_grad_at == step:
            params[0].grad.fill_(float("inf"))  # type: ignore[union-attr]
        scaler.unscale_(optimizer)
        max_norm = train_optim.grad_clip(hparams, opt.grad_clip)
        if isinstance(pm, PipelineModel):
            grad_norm = pm.clip_grad_norm(max_norm)  # global over all stages
        else:
            grad_norm = clip_grad_norm(params, max_norm)
        if use_scaler:
            scale_before = scaler.get_scale()
            scaler.step(optimizer)
            scaler.update()
            skipped = scaler.get_scale() < scale_before
        else:
            step_optimizer()
            skipped = False
        optimizer.zero_grad(set_to_none=True)
        loss = all_reduce_mean(float(loss_sum), ctx)
        if not skipped:
            clock = {name: ticks + per_step[name] for name, ticks in clock.items()}
            if unit is not None:
                advance_clock(scheduler, per_step[unit])
            else:
                scheduler.step(loss) if plateau else scheduler.step()
            scheduler_steps += 1
            for h in hparams:  # the LR's step clock: once per successful update
                h.step()
        tokens_seen += tokens_per_step
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1000.0
        record: dict[str, Any] = {
            "step": step,
            "lr": lrs,
            "loss": loss,
            "tokens": tokens_seen,
            "samples": tokens_seen // sequence_length,
            "ms": ms,
            "tok_per_s": tokens_per_step / (ms / 1000.0),
            "grad_norm": grad_norm,
            "skipped": skipped,
            "scheduler_steps": scheduler_steps,
        }
        if lr_clock is not None:
            record["clock"] = lr_clock
        if lr_groups is not None:
            record["lr_groups"] = lr_groups
        record.update(hparam_values)
        if logging.check_lr_sync:
            ranks = all_gather_floats([float(g["lr"]) for g in optimizer.param_groups], ctx)
            record["lr_ranks_equal"] = all(r == ranks[0] for r in ranks)
            if not record["lr_ranks_equal"]:
                raise RuntimeError(f"ranks disagree on the LR at step {step}: {ranks}")
        if logging.eval_interval and (step % logging.eval_interval == 0 or step == num_iterations):
            val_loss = evaluate(pm, val_tokens, config, ctx, autocast_dtype)
            record["val_loss"] = val_loss
            record["val_ppl"] = math.exp(min(val_loss, 700.0))
        metrics.write(record)
        printer.step(
            f"step {step:4d}/{num_iterations} | train loss {loss:.6f} | lr {lrs[0]:.2e} | "
            f"({ms:.2f} ms | {record['tok_per_s']:.0f} tok/s | DP={ctx.dp_size}"
            + (f" TP={ctx.tp_size}" if ctx.tp_size > 1 else "")
            + (f" PP={ctx.pp_size}" if ctx.pp_size > 1 else "")
            + ")"
            + (
                f" | val loss {record['val_loss']:.6f} | val ppl {record['val_ppl']:.2f}"
                if "val_loss" in record
                else ""
            )
            + (" | skipped (overflow)" if skipped else "")
        )
        save_interval = config.checkpoint.save_interval
        if save_interval and (step % save_interval == 0 or step == num_iterations):
            save(
                run_dir,
                step,
                tokens_seen,
                scheduler_steps,
                pm,
                optimizer,
                scheduler,
                spec,
                scaler,
                loader,
                config,
                flags,
                request=request,
                applied_policy=applied_policy,
                clock=clock,
                tokens_per_step=tokens_per_step,
                hparams=hparams,
            )
    printer.close()
    if is_main and logging.plot:
        try:
            plot_run(run_dir / "metrics.jsonl", run_dir / "lr_loss.png")
        except Exception as err:  # a plot must never fail a finished run
            print(f"lrkit train: could not write lr_loss.png: {err}", file=sys.stderr)
    return {"run_dir": str(run_dir), "step": num_iterations, "loss": loss}


def save(
    run_dir: Path,
    step: int,
    tokens_seen: int,
    scheduler_steps: int,
    pm: ParallelModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    spec: dict[str, Any],
    scaler: torch.amp.GradScaler,
    loader: TokenLoader,
    config: TrainConfig,
    flags: dict[str, Any],
    request: dict[str, Any] | None = None,
    applied_policy: str | None = None,
    clock: dict[str, int] | None = None,
    tokens_per_step: int | None = None,
    hparams: list[Any] | None = None,
) -> None:
    """Collective: every rank takes part (state gathering); rank 0 writes atomically.

    ``spec`` is the schedule in force, ``request`` the one the flags asked for (they differ after a
    ``--lr-resume-policy`` change) and ``applied_policy`` the policy that last changed it. ``clock``
    holds the tokens and samples of the successful updates, ``tokens_per_step`` the batch in tokens.
    ``hparams`` are the hyperparameter schedulers, saved under ``"hparams"`` by key. ``config`` is the
    resolved config, saved as plain data under ``"train_config"``; ``flags`` its flat form (``"config"``),
    which a resume checks against :data:`COMPATIBLE_KEYS`.
    """
    model_state = _model_state(pm)
    optimizer_state = _optimizer_state(pm, optimizer)
    rng = _gather_rng(pm.ctx)
    if not pm.ctx.is_main:
        return
    backend = config.schedule.backend
    payload = {
        "step": step,
        "tokens": tokens_seen,
        "scheduler_steps": scheduler_steps,
        "model": model_state,
        "optimizer": optimizer_state,
        # torch's own scheduler states are replayed on resume, but a plateau's follows the losses: saved
        "scheduler": scheduler.state_dict() if backend == "lrkit" or _steps_on_the_loss(scheduler) else {},
        "hparams": {h.key: h.state_dict() for h in hparams or []},  # the hyperparameter schedules' states
        "scheduler_backend": backend,
        "scheduler_spec": spec,
        "scheduler_fingerprint": spec_fingerprint(spec),
        "scheduler_request": request if request is not None else spec,
        "scheduler_resume_policy": applied_policy,
        "clock": dict(clock) if clock is not None else None,
        "tokens_per_step": tokens_per_step,
        "scaler": scaler.state_dict() if scaler.is_enabled() else {},
        "rng": rng,
        "data": loader.state_dict(),
        "config": flags,
        "train_config": config.to_dict(),
    }
    ckpt.save_checkpoint(run_dir, step, payload, keep_last=config.checkpoint.keep_last)


def _steps_on_the_loss(scheduler: Any) -> bool:
    """Whether ``scheduler`` steps on the loss (a ReduceLROnPlateau, lrkit's or torch's): its steps cannot be
    replayed without the losses, so its state is saved with either backend."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _saved_clock(payload: dict[str, Any], sequence_length: int) -> dict[str, int]:
    """The clocks of a checkpoint; one saved before they existed counts every token it read."""
    saved = payload.get("clock")
    if isinstance(saved, dict) and {"tokens", "samples"} <= set(saved):
        return {"tokens": int(saved["tokens"]), "samples": int(saved["samples"])}
    tokens = int(payload["tokens"])
    return {"tokens": tokens, "samples": tokens // sequence_length}


def _batch_change_note(before: int, after: int, unit: str | None, clock: dict[str, int], step: int) -> str:
    """What a resume with another batch size does to the schedule (no LR jump either way)."""
    head = f"the batch changed from {before} to {after} tokens per step at step {step}"
    if unit is not None:
        return f"{head}; the schedule counts {unit} and continues at {clock[unit]} {unit}, with no LR jump"
    return (
        f"{head}; the schedule counts optimizer steps, so its LR is continuous in steps but the rest of it now "
        f"spans {after / before:.3g}x the tokens. Give its lengths in tokens (--warmup 50Mtok --total 10Btok) "
        "to keep it in token time"
    )


def _note(ctx: DistContext, message: str) -> None:
    """A resume note or warning: on stderr, once, even with --quiet (an LR change is never silent)."""
    if ctx.is_main:
        print(f"lrkit train: {message}", file=sys.stderr, flush=True)


def _change_schedule(
    decision: resume_policy.Decision,
    steps: int,
    optimizer: torch.optim.Optimizer,
    backend: str,
    ctx: DistContext,
    clock: dict[str, int] | None = None,
    per_step: dict[str, int] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Put the schedule that ``decision`` asks for in force at scheduler step ``steps`` (and, for a schedule
    in tokens or samples, at ``clock``, moving ``per_step`` ticks per update); return it and its spec."""
    before = group_lrs(optimizer)
    peaks = [float(g["initial_lr"]) for g in optimizer.param_groups]
    names = [g.get("name") for g in optimizer.param_groups]
    spec, notes = resume_policy.in_force(
        decision, steps, before, peaks, group_names=names, clock=clock, per_step=per_step
    )
    # Built as if from step 0 (chainable classes start from initial_lr), then fast-forwarded.
    for group in optimizer.param_groups:
        set_group_value(group, "lr", float(group["initial_lr"]))
    scheduler = build_scheduler(spec, optimizer, backend=backend)  # type: ignore[arg-type]
    unit = spec_clock_unit(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if unit is not None:
            move_clock(scheduler, (clock or {}).get(unit, 0), steps)
        elif _steps_on_the_loss(scheduler):  # no losses to replay: it starts at its peak and watches from here
            scheduler.last_epoch = steps
            notes.append(
                f"the ReduceLROnPlateau starts at step {steps} from its peak LR and watches the loss from there"
            )
        else:
            for _ in range(steps):
                scheduler.step()
    if decision.policy.kind == "override":
        notes.append(resume_policy.jump_report(steps, before, group_lrs(optimizer)))
    for note in notes:
        _note(ctx, note)
    return spec, scheduler


@torch.no_grad()
def evaluate(pm: ParallelModel, val_tokens: Any, config: TrainConfig, ctx: DistContext, autocast_dtype: Any) -> float:
    """Mean validation loss over ``--eval-iters`` micro-batches from the start of the split (deterministic)."""
    batch, eval_iters = config.batch, config.logging.eval_iters
    loader = TokenLoader(val_tokens, batch.batch_size, batch.sequence_length, rank=ctx.dp_rank, world_size=ctx.dp_size)
    pm.module.eval()
    total = 0.0
    for _ in range(eval_iters):
        x, y = loader.next_batch()
        amp = torch.autocast(ctx.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
        with amp:
            _, loss = pm.module(x.to(ctx.device), y.to(ctx.device))
        assert loss is not None
        total += float(loss)
    pm.module.train()
    return all_reduce_mean(total / eval_iters, ctx)


class _Printer:
    """Per-step lines on the printing rank; a tqdm bar on top when stdout is a terminal."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if enabled and sys.stdout.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def step(self, line: str) -> None:
        self.write(line)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_run(metrics_path: Path, out: Path) -> Path:
    """``lr_loss.png``: LR (per group), train loss and val loss against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    steps = [r["step"] for r in records]
    fig, (ax_lr, ax_loss) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    n_groups = len(records[0]["lr"]) if records else 0
    names = records[0].get("lr_groups") if records else None
    for i in range(n_groups):
        ax_lr.plot(steps, [r["lr"][i] for r in records], label=names[i] if names else f"group {i}")
    ax_lr.set_ylabel("learning rate")
    ax_lr.legend(loc="best")
    ax_lr.grid(alpha=0.3)
    ax_loss.plot(steps, [r["loss"] for r in records], label="train loss", lw=1)
    evals = [r for r in records if "val_loss" in r]
    if evals:
        ax_loss.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val loss")
    ax_loss.set_xlabel("step (optimizer updates)")
    ax_loss.set_ylabel("loss (nats/token)")
    ax_loss.legend(loc="best")
    ax_loss.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lrkit.train", description="Train GPT-2 / LLaMA-3 with an lrkit schedule."
    )
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))
