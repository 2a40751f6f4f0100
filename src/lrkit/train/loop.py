"""The training loop: ``lrkit train ...`` or ``torchrun --nproc_per_node N -m lrkit.train ...``.

One optimizer update per step. The scheduler steps once per *successful*
update: gradient-accumulation micro-steps do not advance it, and an update that
the fp16 GradScaler skips for overflow does not either.

Per step the last rank prints (InfiniTrain's format)::

    step    1/200 | train loss 5.545177 | lr 3.00e-06 | (95.12 ms | 21531 tok/s | DP=1)

and the main rank appends one JSON object to ``<run-dir>/metrics.jsonl``:
``{"step", "lr": [per group], "loss", "tokens", "samples", "batch_sequences", "grad_accum", "ms", "tok_per_s",
"grad_norm", "skipped"}``;
eval records add ``"val_loss"``, its standard error ``"val_loss_se"`` and ``"val_ppl"``. ``"lr"`` is the LR this
step used, ``"tokens"`` and ``"samples"`` count what was read up to the end of this step. The update's norms
(:mod:`lrkit.train.telemetry`): ``"grad_norm_groups"`` and ``"update_ratio"`` (``||Δθ||/||θ||``), one per
group in the order of ``"lr"``, and ``"update_ratio_total"``; with fp16, ``"loss_scale"`` (the GradScaler's
scale of this update's backward).

Time in tokens (:mod:`lrkit.schedules.clock`): with a schedule on the token (or sample) clock, the scheduler
advances by the tokens (samples) of each *successful* update, and the record adds ``"clock"``: the
schedule's time at which ``"lr"`` was set (tokens or samples of the successful updates before this
step), so ``lr == schedule(clock)``. A ``--total`` in tokens or samples without ``--num-iterations``
sets the run length to ``ceil((total - clock) / per step)`` more steps. Checkpoints hold the clocks and the
tokens per step, so a resume may change ``--total-batch-size``: a schedule in tokens stays continuous in
tokens; one in steps stays continuous in steps (a note says the batch changed). ``"batch_sequences"`` and
``"grad_accum"`` are the update's global batch (sequences) and micro-batches per rank.

A batch-size ramp (``--batch-size-schedule``, :mod:`lrkit.schedules.batch`) sizes each update from the token
clock: ``B(clock)`` sequences, ``B / (batch_size x dp)`` micro-batches; the scheduler advances by that update's
tokens and the ``--batch-lr-scaling`` factor multiplies its LRs (:class:`~lrkit.runtime.TrainingSchedule`).
Checkpoints hold the clock and the ramp, so a resume continues both exactly.

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
import random
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit.runtime import TrainingSchedule, scaler_step
from lrkit.runtime.resume import parse_policy
from lrkit.runtime.schedule import saved_clock
from lrkit.train import checkpoint as ckpt
from lrkit.train import optim as train_optim
from lrkit.train.arguments import config_from_args
from lrkit.train.averaging import Averages, build_averages
from lrkit.train.components import (
    ModelState,
    OptimizerState,
    RNGState,
    build_optimizer,
    build_train_model,
    check_fits,
    evaluate,
    optimizer_step,
    parallelize,
)
from lrkit.train.config import COMPATIBLE_KEYS, TrainConfig, compatible_values
from lrkit.train.data import TokenLoader, check_split_fits, load_corpus, train_val_split
from lrkit.train.errors import TrainError
from lrkit.train.metrics import MetricsLog, Printer, plot_run, step_line
from lrkit.train.parallel import (
    DistContext,
    ParallelModel,
    all_gather_floats,
    all_reduce_max,
    all_reduce_mean,
    clip_grad_norm,
    collective_timeouts,
    leave_distributed,
)
from lrkit.train.pipeline import PipelineModel
from lrkit.train.rundir import open_run_dir, supersede_after
from lrkit.train.sharded import ShardedSaver, optimizer_groups, tensor_state
from lrkit.train.shutdown import Shutdown, ShutdownAbandoned, TrainingStopped
from lrkit.train.telemetry import StepNorms
from lrkit.train.tensorboard import TensorBoardLog

__all__ = ["Trainer", "save", "setup", "train", "train_step"]


@dataclass
class Trainer:
    """A run's components, built once by :func:`setup`; ``step`` and ``tokens`` count what is done."""

    config: TrainConfig
    ctx: DistContext
    pm: ParallelModel
    optimizer: torch.optim.Optimizer
    schedule: TrainingSchedule  #: the LR and hyperparameter schedules, their clocks and resume policy
    scaler: torch.amp.GradScaler
    loader: TokenLoader
    val_tokens: Any
    step_optimizer: Callable[[], Any]
    autocast_dtype: torch.dtype | None
    grad_accum: int
    tokens_per_step: int
    flags: dict[str, Any]  #: the flat run config every checkpoint holds (resume compatibility)
    lr_groups: list[str] | None = None
    step: int = 0  #: optimizer updates done (skipped ones included)
    tokens: int = 0  #: tokens read
    saver: ShardedSaver | None = None  #: writes the sharded checkpoints (None: the full format)
    averages: Averages | None = None  #: --ema / --average-last (None: neither)

    def parts(self) -> dict[str, Any]:
        """Every stateful part, by its key in a checkpoint: each has ``state_dict()`` / ``load_state_dict()``.
        The optimizer comes before the schedule (torch's order: the schedule's LRs win)."""
        group = self.saver.group if self.saver is not None else None
        return {
            "model": ModelState(self.pm, group),
            "optimizer": OptimizerState(self.pm, self.optimizer, group),
            "schedule": self.schedule,
            "scaler": self.scaler,
            "data": self.loader,
            "rng": RNGState(self.ctx),
            **({"averages": self.averages} if self.averages is not None else {}),
        }

    def checkpoint_path(self, step: int) -> Path:
        """Where this run's checkpoint of ``step`` is (or will be, once published)."""
        run_dir = Path(self.config.logging.run_dir)
        return ckpt.checkpoint_dir(run_dir, step) if self.saver is not None else ckpt.checkpoint_path(run_dir, step)

    def layout(self) -> dict[str, Any]:
        """The parallel layout, as a checkpoint records it."""
        ctx = self.ctx
        return {"name": self.pm.layout, "world_size": ctx.world_size, "dp": ctx.dp_size, "tp": ctx.tp_size,
                "pp": ctx.pp_size, "grad_accum": self.grad_accum}  # fmt: skip

    def autocast(self) -> Any:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.ctx.device.type, dtype=self.autocast_dtype)


# --------------------------------------------------------------------------- setup


def setup(config: TrainConfig, ctx: DistContext) -> Trainer:
    """Build the run's components from ``config`` and resume from its checkpoint, if any.

    Bad input fails before any expensive work: the data path, then the model's shape.
    """
    if config.parallel.threads:
        torch.set_num_threads(config.parallel.threads)
    if ctx.device.type == "cpu":
        torch.set_flush_denormal(True)  # small losses fill Adam's state with denormals, ~10x slower on CPU
    run_dir = Path(config.logging.run_dir)
    resume_path, payload = None, None
    if config.checkpoint.resume:
        resume_path = find_resume_checkpoint(config.checkpoint.resume, run_dir, ctx)
        payload = ckpt.load_checkpoint(resume_path, RESUME_KEYS) if resume_path is not None else None
    saved_schedule = None if payload is None else payload.get("schedule", payload)  # flat before 0.2
    sequence_length = config.batch.sequence_length
    step0 = int(payload["step"]) if payload is not None else 0
    clock = saved_clock(saved_schedule, sequence_length) if saved_schedule else {"tokens": 0, "samples": 0}
    length = config.run_length_from_total()  # the run length comes from --total (noted below)
    config = config.resolve(ctx.dp_size, start_step=step0, start_clock=clock)  # nothing changes it from here
    batch = config.batch
    flags = config.flag_values()
    if payload is not None and batch.num_iterations is not None and batch.num_iterations < step0:
        raise TrainError(  # else the run would end at once, "resumed", having done none of what was asked
            f"--num-iterations {batch.num_iterations} is below step {step0} of the checkpoint {resume_path}; "
            f"expected at least {step0} (the run length counts from step 0, not from the resume)"
        )
    if payload is not None:
        saved, current = compatible_values(payload["config"]), compatible_values(flags)  # the resolved values
        ckpt.check_compatible(saved, current, COMPATIBLE_KEYS, source=resume_path)

    tokens = load_corpus(config.data.path)
    train_tokens, val_tokens = train_val_split(tokens, config.data.val_fraction)
    evaluates = config.logging.eval_interval > 0
    check_split_fits(train_tokens, val_tokens, batch.batch_size, sequence_length, ctx.dp_size, evaluates,
                     config.data.path, config.data.val_fraction)  # fmt: skip
    for seed in (torch.manual_seed, random.seed, np.random.seed):
        seed(config.model.seed)
    model = build_train_model(config.model)
    check_fits(model, config.model, sequence_length, tokens)
    if payload is not None:  # a tensor of another shape: named here, not by load_state_dict's traceback
        shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        ckpt.check_model_shapes(payload["model"], shapes, resume_path)
    sharded, async_save = checkpoint_format(config, ctx)
    named = train_optim.named_groups(config, model)  # --param-groups: names and LR factors bind the schedule
    assert config.schedule.spec is not None
    spec = train_optim.group_spec(config, config.schedule.spec, named)

    ramp = batch.batch_ramp(ctx.dp_size)
    if ramp is None:
        grad_accum = batch.gradient_accumulation_steps(ctx.dp_size)
        tokens_per_step = batch.tokens_per_step(ctx.dp_size)
    else:  # the first update's; every update sets its own (_ramp_batch)
        tokens_per_step = ramp.sequences(clock["tokens"]) * sequence_length
        grad_accum = tokens_per_step // batch.tokens_per_micro_batch(ctx.dp_size)
    pm = parallelize(model, config, ctx, grad_accum)
    optimizer = build_optimizer(config, pm)
    hparams = train_optim.build_hparam_schedulers(config, optimizer)  # weight decay, betas, momentum, clip
    try:
        schedule = TrainingSchedule(
            spec,
            optimizer,
            backend=config.schedule.backend,  # type: ignore[arg-type]
            tokens_per_step=tokens_per_step if ramp is None else None,
            sequence_length=sequence_length,
            hparams=hparams,
            hparam_labels=train_optim.HPARAM_FLAGS,
            policy_argument="--lr-resume-policy",
            batch_ramp=ramp,
        )
    except (TypeError, ValueError) as err:  # the schedule's own argument checks (build_scheduler's documented errors)
        raise TrainError(f"--lr-scheduler {json.dumps(spec)}: {err}") from err
    use_scaler = config.model.dtype == "float16"
    t = Trainer(
        config=config,
        ctx=ctx,
        pm=pm,
        optimizer=optimizer,
        schedule=schedule,
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=use_scaler),
        loader=TokenLoader(
            train_tokens,
            batch.batch_size,
            sequence_length,
            rank=ctx.dp_rank,
            world_size=ctx.dp_size,
            accumulation=grad_accum,
            order=config.data.order,
            seed=config.data.seed,
        ),  # fmt: skip
        val_tokens=val_tokens,
        step_optimizer=optimizer_step(config, pm, optimizer, schedule.hparams),
        autocast_dtype={"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.model.dtype],
        grad_accum=grad_accum,
        tokens_per_step=tokens_per_step,
        flags=flags,
        lr_groups=[str(g["name"]) for g in named] if named is not None else None,
    )
    if sharded:  # collective: its process group
        t.saver = ShardedSaver(config.logging.run_dir, ctx, config.checkpoint.keep_last, async_save)
    t.averages = build_averages(config, pm)  # from the weights at the start (a resume loads its own below)
    if t.averages is not None and t.saver is not None:
        t.averages.process_group = t.saver.group
    if payload is not None:
        _resume(t, payload, resume_path)
    if length is not None:
        per_step = f"the batch ramp {ramp}" if ramp else f"{schedule.ticks()[length.unit]} {length.unit} per step"
        _note(
            ctx,
            f"--total {length} without --num-iterations: running to step {batch.num_iterations} "
            f"({per_step}; the last step reaches or passes the total)",
        )
    return t


def checkpoint_format(config: TrainConfig, ctx: DistContext) -> tuple[bool, bool]:
    """``(sharded, async)`` from ``--checkpoint-format`` and ``--async-checkpoint``: ``auto`` is sharded when
    more than one process trains. Raises ``TrainError`` for an asynchronous full checkpoint."""
    chosen = config.checkpoint.format
    sharded = chosen == "sharded" or (chosen == "auto" and ctx.world_size > 1)
    if config.checkpoint.async_save and not sharded:
        raise TrainError(
            f"--async-checkpoint needs sharded checkpoints, got --checkpoint-format {chosen}"
            + (" with one process (auto is full there)" if chosen == "auto" else "")
            + ": add --checkpoint-format sharded"
        )
    return sharded, config.checkpoint.async_save


#: What a checkpoint must hold to be resumed from (``"schedule"`` may sit flat at the top level, before 0.2);
#: ``--resume auto`` falls back past one that lacks any of them.
RESUME_KEYS = ("step", "tokens", "config", "model", "optimizer", "data", "rng")


def find_resume_checkpoint(resume: str, run_dir: Path, ctx: DistContext) -> Path | None:
    """The checkpoint ``--resume`` names: ``auto``, the newest usable one of ``run_dir`` (None if it holds none);
    a run directory (or its ``checkpoints/``), its newest usable one; else a checkpoint file.

    A newer checkpoint that is unusable (truncated, corrupted, lacking :data:`RESUME_KEYS`) is skipped with a
    note naming it and why. Raises ``CheckpointError`` listing each checkpoint and why it was rejected when there
    are checkpoints and none is usable, and when the path does not exist.
    """
    if resume == "auto":
        path, rejected = ckpt.newest_usable(run_dir, RESUME_KEYS, argument="--resume auto")
        if path is None:
            _note(ctx, f"--resume auto: {run_dir} holds no checkpoint yet; starting at step 0")
    else:
        given = Path(resume)
        if ckpt.is_checkpoint(given):  # a checkpoint file, or a sharded checkpoint's directory
            return given
        if given.is_dir():
            path, rejected = ckpt.newest_usable(given, RESUME_KEYS, argument=f"--resume {resume}")
            if path is None:
                raise ckpt.CheckpointError(
                    f"--resume {resume} is a directory without checkpoints (no step_*.pt in it or in its "
                    f"{ckpt.CHECKPOINT_DIR}/); expected 'auto', a checkpoint file or a run directory"
                )
            _note(ctx, f"--resume {resume} is a directory: resuming from its newest usable checkpoint, {path}")
        elif given.exists():
            return given
        else:
            raise ckpt.CheckpointError(
                f"--resume {resume} does not exist; expected 'auto', a checkpoint file or a run directory"
            )
    for skipped, why in rejected:
        _note(ctx, f"skipping unusable checkpoint {skipped}: {why}")
    return path


def _resume(t: Trainer, payload: dict[str, Any], path: Path | None) -> None:
    """Load every part from ``payload``; the schedule applies ``--lr-resume-policy`` (its notes are printed)."""
    t.step, t.tokens = int(payload["step"]), int(payload["tokens"])
    saved_layout, now = payload.get("layout"), t.layout()
    moved = isinstance(saved_layout, dict) and any(saved_layout.get(k) != now[k] for k in now if k != "grad_accum")
    if moved and isinstance(saved_layout, dict):  # (a new --total-batch-size alone is the clocks' note)
        described = ", ".join(f"{k} {saved_layout.get(k)} -> {v}" for k, v in now.items() if saved_layout.get(k) != v)
        _note(t.ctx, f"resuming {path} on another layout ({described}): the model and optimizer are resharded; "
                     "the schedule, its clocks and the data position continue exactly")  # fmt: skip
    rng = payload.get("rng")
    if isinstance(rng, list) and rng and len(rng) != t.ctx.world_size:
        _note(t.ctx, f"{path} holds the random generators of {len(rng)} rank(s) and this run has "
                     f"{t.ctx.world_size}: rank r takes saved rank r mod {len(rng)}'s")  # fmt: skip
    for name, part in t.parts().items():
        if name == "schedule":  # after the optimizer: the schedule's LRs win
            policy = parse_policy(t.config.schedule.resume_policy)
            for note in t.schedule.load_state_dict(payload.get(name, payload), policy, f"the checkpoint {path}"):
                _note(t.ctx, note)
        elif name == "averages":  # a checkpoint saved without averages has none: they start from its weights
            tensors = payload["model"] if isinstance(payload["model"], ckpt.ShardedState) else None
            for note in part.load_state_dict(payload.get(name), tensors):
                _note(t.ctx, note)
        elif name != "scaler" or payload.get(name):  # a run without fp16 saved no scaler state
            part.load_state_dict(payload[name])
    if t.ctx.is_last_rank and not t.config.logging.quiet:
        print(f"resumed from {path} at step {t.step}", flush=True)


def _note(ctx: DistContext, message: str) -> None:
    """A resume note or warning: on stderr, once, even with --quiet (an LR change is never silent)."""
    if ctx.is_main:
        print(f"lrkit train: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- one step


def train_step(t: Trainer) -> dict[str, Any]:
    """One optimizer update over ``grad_accum`` micro-batches; returns its metrics record.

    The schedule steps only if the update happened (the fp16 scaler skips an update with inf/NaN gradients).
    """
    t0 = time.perf_counter()
    t.step += 1
    ctx, pm, optimizer, schedule = t.ctx, t.pm, t.optimizer, t.schedule
    _ramp_batch(t)
    record: dict[str, Any] = {"step": t.step, "lr": schedule.lrs()}  # the LRs (and values) this update uses
    hparam_values = train_optim.hparam_record(schedule.hparams)
    if schedule.unit is not None:
        record["clock"] = schedule.clock[schedule.unit]  # the schedule's time of "lr"
    loss_sum = torch.zeros((), device=ctx.device)
    if isinstance(pm, PipelineModel):  # the update's micro-batches are the pipeline's microbatches
        batches = [t.loader.next_batch() for _ in range(t.grad_accum)]
        x = torch.cat([b[0] for b in batches]).to(ctx.device)
        y = torch.cat([b[1] for b in batches]).to(ctx.device)
        with t.autocast():
            loss_sum = pm.pipeline_step(x, y)  # the last stage's loss, broadcast to every stage
    else:
        for micro in range(t.grad_accum):
            x, y = (b.to(ctx.device, non_blocking=True) for b in t.loader.next_batch())
            with pm.no_sync(micro == t.grad_accum - 1), t.autocast():
                _, micro_loss = pm.module(x, y)
                assert micro_loss is not None
                micro_loss = micro_loss / t.grad_accum
            loss_sum += micro_loss.detach()
            t.scaler.scale(micro_loss).backward()
    pm.sync_grads()
    if t.config.optimizer.inject_inf_grad_at == t.step:
        [p for p in pm.raw.parameters() if p.requires_grad][0].grad.fill_(float("inf"))  # type: ignore[union-attr]
    t.scaler.unscale_(optimizer)
    every = t.config.logging.update_ratio_interval
    # the groups' gradients before clipping and, on the steps that take the update ratio, the parameters before
    norms = StepNorms(optimizer, pm, update_ratio=every > 0 and t.step % every == 0)
    max_norm = train_optim.grad_clip(schedule.hparams, t.config.optimizer.grad_clip)
    if isinstance(pm, PipelineModel):
        grad_norm = pm.clip_grad_norm(max_norm)  # global over all stages
    else:
        grad_norm = clip_grad_norm([p for p in pm.raw.parameters() if p.requires_grad], max_norm)
    skipped = False
    loss_scale = t.scaler.get_scale() if t.scaler.is_enabled() else None  # the scale of this update's backward
    if t.scaler.is_enabled():
        skipped = scaler_step(t.scaler, optimizer)
    else:
        t.step_optimizer()
    update_norms = norms.after_step()
    optimizer.zero_grad(set_to_none=True)
    loss = all_reduce_mean(float(loss_sum), ctx)
    schedule.step(skipped=skipped, metric=loss, tokens=t.tokens_per_step)
    t.tokens += t.tokens_per_step
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    ms = (time.perf_counter() - t0) * 1000.0
    record.update(
        loss=loss,
        tokens=t.tokens,
        samples=t.tokens // t.config.batch.sequence_length,
        batch_sequences=t.tokens_per_step // t.config.batch.sequence_length,
        grad_accum=t.grad_accum,
        ms=ms,
        tok_per_s=t.tokens_per_step / (ms / 1000.0),
        grad_norm=grad_norm,
        skipped=skipped,
        scheduler_steps=schedule.steps,
    )
    record.update(update_norms)
    if loss_scale is not None:
        record["loss_scale"] = loss_scale
    if t.lr_groups is not None:
        record["lr_groups"] = t.lr_groups
    record.update(hparam_values)
    if t.config.logging.check_lr_sync:
        ranks = all_gather_floats([float(g["lr"]) for g in optimizer.param_groups], ctx)
        record["lr_ranks_equal"] = all(r == ranks[0] for r in ranks)
        if not record["lr_ranks_equal"]:
            raise RuntimeError(f"ranks disagree on the LR at step {t.step}: {ranks}")
    return record


def _ramp_batch(t: Trainer) -> None:
    """With a batch-size ramp, size the next update: ``B(clock)`` sequences (the schedule's token clock of the
    successful updates, so a resume, which restores the clock, sizes it as the straight run did), read as
    ``B / (batch_size x dp)`` micro-batches per rank."""
    sequences = t.schedule.batch_sequences()
    if sequences is None:
        return
    t.tokens_per_step = sequences * t.config.batch.sequence_length
    t.grad_accum = t.tokens_per_step // t.config.batch.tokens_per_micro_batch(t.ctx.dp_size)
    t.loader.accumulation = t.grad_accum  # between updates: the loader wraps at the update's size


def save(t: Trainer) -> None:
    """Collective: every part gives its state on every rank; the main rank writes the checkpoint atomically.

    The checkpoint is a dict of the parts' states (:meth:`Trainer.parts`) with the step, the tokens read,
    the flat run config (``"config"``, checked on resume against :data:`~lrkit.train.config.COMPATIBLE_KEYS`),
    the resolved config (``"train_config"``) and the layout. In the sharded format (:mod:`lrkit.train.sharded`)
    each rank writes its own model and optimizer tensors and the main rank the rest; with
    ``--async-checkpoint`` this returns once the state is copied, and the save completes in the background.
    """
    head = {"step": t.step, "tokens": t.tokens, "config": t.flags, "train_config": t.config.to_dict()}
    if t.saver is not None:  # sharded: every rank writes its own tensors, rank 0 the plain state beside them
        tensors = tensor_state(t.pm, t.optimizer)
        plain = {name: part.state_dict() for name, part in t.parts().items()
                 if name not in ("model", "optimizer", "averages")}  # fmt: skip
        if t.averages is not None:  # the counters beside the plain state, the tensors as ema/<name>, avg/<name>
            plain["averages"], averaged = t.averages.sharded_state()
            tensors.update(averaged)
        extra = {"optimizer_groups": optimizer_groups(t.optimizer), "layout": t.layout()}
        t.saver.save(t.step, tensors, {**head, **plain, **extra} if t.ctx.is_main else None)
        return
    states = {name: part.state_dict() for name, part in t.parts().items()}
    if not t.ctx.is_main:
        return
    payload = {**head, **states, "layout": t.layout()}
    ckpt.save_checkpoint(Path(t.config.logging.run_dir), t.step, payload, keep_last=t.config.checkpoint.keep_last)


# --------------------------------------------------------------------------- the run


def train(
    config: TrainConfig | argparse.Namespace, ctx: DistContext, shutdown: Shutdown | None = None
) -> dict[str, Any]:
    """Train as ``config`` says; returns a summary (run dir, final step, last loss).

    ``config`` is resolved here (:meth:`TrainConfig.resolve`, at the resume point); a namespace of
    :func:`add_train_arguments` is turned into its config first. The run directory is locked for the run
    (:mod:`lrkit.train.rundir`): a second trainer on it, and a fresh start over a run it holds, are refused.

    SIGINT, SIGTERM and SIGUSR1 stop the run cleanly (:mod:`lrkit.train.shutdown`): the step in progress
    finishes, every rank agrees to stop after it, a checkpoint is saved (with ``--save-interval`` > 0) and
    :class:`~lrkit.train.shutdown.TrainingStopped` is raised. ``shutdown`` is the handler ``lrkit train``
    installed before the process group existed; without it one is installed here, for this call.

    Raises:
        TrainingStopped: after a signal, once the run stopped cleanly.
        CollectiveTimeoutError: a collective found no answer within ``--collective-timeout`` (a rank stopped).
    """
    config = config_from_args(config) if isinstance(config, argparse.Namespace) else config
    resume, overwrite = config.checkpoint.resume, config.checkpoint.overwrite
    with nullcontext(shutdown) if shutdown is not None else Shutdown() as stop:
        try:
            with (
                TensorBoardLog(config.logging, enabled=ctx.is_main) as board,  # a missing package fails first
                collective_timeouts(ctx, config.parallel.collective_timeout) as where,
                open_run_dir(config.logging.run_dir, resume, overwrite, ctx) as opened,
            ):
                for note in opened.notes:
                    _note(ctx, note)
                return _train(config, ctx, stop, where, board)
        except ShutdownAbandoned:
            leave_distributed()  # peers may be anywhere: no barrier
            raise


def _train(
    config: TrainConfig, ctx: DistContext, stop: Shutdown, where: list[str], board: TensorBoardLog
) -> dict[str, Any]:
    """:func:`train` in its locked run directory: set up, then the steps to the end or to a clean stop
    (:func:`_stop_if_asked`); ``board`` gets every record (``--tensorboard``)."""
    t = setup(config, ctx)
    config, logging = t.config, t.config.logging
    num_iterations = config.batch.num_iterations
    assert num_iterations is not None
    run_dir = Path(logging.run_dir)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=ctx.is_main)
    if ctx.is_main:  # what a killed or earlier run wrote past the resume point moves aside, never lost
        superseded = supersede_after(run_dir, t.step, config.checkpoint.resume)
        if superseded is not None:
            _note(ctx, superseded)
    start_step = t.step
    saved_step: int | None = None  # the step of this run's newest checkpoint
    _stop_if_asked(t, stop, start_step, saved_step)  # a signal during setup: no step is started
    printer = Printer(ctx.is_last_rank and not logging.quiet, total=num_iterations, initial=t.step)
    loss = float("nan")
    while t.step < num_iterations:
        where[0] = f"step {t.step + 1}"
        record = train_step(t)
        loss = record["loss"]
        if t.averages is not None:
            t.averages.update(t.step, skipped=record["skipped"])
        if logging.eval_interval and (t.step % logging.eval_interval == 0 or t.step == num_iterations):
            record["val_loss"], record["val_loss_se"] = evaluate(t.pm, t.val_tokens, config, ctx, t.autocast_dtype)
            record["val_ppl"] = math.exp(min(record["val_loss"], 700.0))
            if t.averages is not None:  # the same evaluation of the averaged weights
                record.update(t.averages.evaluate(lambda: evaluate(t.pm, t.val_tokens, config, ctx, t.autocast_dtype)))
        metrics.write(record)
        board.write(record)
        printer.step(step_line(record, num_iterations, ctx.dp_size, ctx.tp_size, ctx.pp_size))
        save_interval = config.checkpoint.save_interval
        if save_interval and (t.step % save_interval == 0 or t.step == num_iterations):
            save(t)
            saved_step = t.step
        where[0] = f"the end of step {t.step}"
        if t.saver is not None:
            t.saver.poll()  # rank 0 publishes a background save that has finished
        _stop_if_asked(t, stop, start_step, saved_step, printer)
    printer.close()
    if t.saver is not None:
        where[0] = "the last checkpoint's save"
        t.saver.wait()
    if ctx.is_main and logging.plot:
        try:
            plot_run(run_dir / "metrics.jsonl", run_dir / "lr_loss.png")
        except Exception as err:  # a plot must never fail a finished run
            print(f"lrkit train: could not write lr_loss.png: {err}", file=sys.stderr)
    return {"run_dir": str(run_dir), "step": num_iterations, "loss": loss}


def _stop_if_asked(
    t: Trainer, stop: Shutdown, start_step: int, saved_step: int | None, printer: Printer | None = None
) -> None:
    """Between steps: if any rank got SIGINT, SIGTERM or SIGUSR1, every rank stops here together (one
    all-reduce of the signal's number per step), after saving the step unless it is saved already, and raises
    :class:`TrainingStopped`. Nothing is saved when no step ran since the start (the checkpoint resumed from,
    if any, holds this state) or when checkpoints are off (``--save-interval 0``: the steps since the start
    are ``lost``, which decides the exit code, :func:`lrkit.train.shutdown.exit_code`)."""
    signum = all_reduce_max(stop.requested, t.ctx)
    if not signum:
        return
    if printer is not None:
        printer.close()
    path: Path | None = t.checkpoint_path(t.step)
    reason, lost = "", False
    if t.step == start_step:
        since = f"since it resumed at step {start_step}" if start_step else "yet"
        path, reason = None, f"no step ran {since}, nothing new to save"
    elif not t.config.checkpoint.save_interval:
        path, reason, lost = None, "not saved (--save-interval 0 turns checkpoints off)", True
    elif saved_step != t.step:
        save(t)
    if t.saver is not None:
        t.saver.wait()  # the checkpoint is published before the run says it is saved
    raise TrainingStopped(signum, t.step, path, reason, lost)
