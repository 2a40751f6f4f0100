"""The trainer's config as data: frozen, typed, one section per concern, built once.

:class:`TrainConfig` holds one section each: :class:`ModelConfig`, :class:`DataConfig`,
:class:`BatchConfig`, :class:`OptimizerConfig`, :class:`ScheduleConfig`, :class:`ParallelConfig`,
:class:`CheckpointConfig`, :class:`LoggingConfig` and :class:`AveragingConfig`. It is built once, from the
trainer's flags
(:meth:`TrainConfig.from_args`) or from a TOML file (:meth:`TrainConfig.from_toml`) with the flags the user
typed on top (:meth:`TrainConfig.override`); the components receive it (or their section) and nothing
changes it. :meth:`TrainConfig.resolve` computes the derived values (the run length, the schedule's length,
the spec) once, into a new config.

A TOML file has one table per section; a key is a field of that section, a missing key is the field's
default, and a field that is None (not given) is left out::

    [model]
    name = "gpt2"
    preset = "tiny"

    [schedule]
    lr_scheduler = "cosine"
    lr = 0.001
    warmup_steps = 10

Unknown sections or keys and values of the wrong type are :class:`ConfigError`\\ s naming the key, the value
and what was expected. A schedule spec (``lr_scheduler`` given as a spec, ``group_schedules``, the resolved
``spec``) is a TOML table or JSON text; it is written as JSON text (a spec may hold nulls, which TOML has not).
Each field's flag is its name with dashes (``--warmup-steps``) unless the field says otherwise
(``flag`` in its metadata: ``ModelConfig.name`` is ``--model``).
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from lrkit.runtime.resume import parse_policy
from lrkit.schedules.batch import LR_SCALING_RULES, BatchRamp, BatchRampError, parse_batch_ramp
from lrkit.schedules.clock import Quantity, Rates, steps_to_reach
from lrkit.tools.flags import add_schedule_arguments, spec_from_args, total_length
from lrkit.train.data import DATA_ORDERS
from lrkit.train.errors import ConfigError, TrainError
from lrkit.train.models import GPT2_PRESETS, LLAMA3_PRESETS, MODEL_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "COMPATIBLE_KEYS",
    "MODEL_CONFIG_KEYS",
    "compatible_values",
    "PARAM_GROUPS",
    "DEFAULT_NUM_ITERATIONS",
    "ModelConfig",
    "DataConfig",
    "BatchConfig",
    "OptimizerConfig",
    "ScheduleConfig",
    "ParallelConfig",
    "CheckpointConfig",
    "LoggingConfig",
    "AveragingConfig",
    "TrainConfig",
    "SECTIONS",
    "flag_of",
    "schedule_flag_names",
]

#: ``--param-groups`` choices (:mod:`lrkit.train.optim`).
PARAM_GROUPS = ("decay", "parts", "layers")
#: The run length without ``--num-iterations`` (and without a ``--total`` in tokens or samples), in steps.
DEFAULT_NUM_ITERATIONS = 100


def _field(default: Any, flag: str | None = None, choices: tuple[Any, ...] | None = None, **meta: Any) -> Any:
    """A config field: its default, its flag (default ``--<name-with-dashes>``) and its allowed values."""
    return field(default=default, metadata={"flag": flag, "choices": choices, **meta})


#: The model presets by ``--model``: what :func:`compatible_values` resolves ``--preset`` and its overrides with.
_PRESETS: dict[str, dict[str, Any]] = {"gpt2": GPT2_PRESETS, "llama3": LLAMA3_PRESETS}
#: The fields of the resolved model config (either architecture's) that a resume compares: the shape and the
#: numerics of the weights; not ``dropout``, which a resume may change.
MODEL_CONFIG_KEYS: list[str] = list(
    dict.fromkeys(f.name for tiny in (GPT2_PRESETS["tiny"], LLAMA3_PRESETS["tiny"]) for f in fields(tiny))
)
MODEL_CONFIG_KEYS.remove("dropout")

#: Keys a checkpoint must agree on to be resumed: the keys of :func:`compatible_values` (the flags'
#: argparse names of :meth:`TrainConfig.flag_values`, with the model's resolved config in place of its flags).
COMPATIBLE_KEYS = [
    "model",
    "preset",  # compared only when a preset cannot be resolved (an unknown one in an old checkpoint)
    *MODEL_CONFIG_KEYS,
    "sequence_length",
    "optimizer",
    "dtype",
    # The groups' peaks come from the checkpoint's optimizer state: a change here would be ignored silently.
    "lr",
    "param_groups",
    "layer_decay",
    "group_lr",
]


def compatible_values(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``flat`` (a run's :meth:`TrainConfig.flag_values`, or the ``"config"`` a checkpoint stores) with what its
    flags resolve to in place of the flags, for the resume check (:data:`COMPATIBLE_KEYS`).

    * ``preset``, ``n_layer``, ``n_head``, ``n_kv_head`` become the resolved model config
      (:data:`MODEL_CONFIG_KEYS`: ``n_layer``, ``n_embd``, ``vocab_size``, ...), so ``--n-layer 4`` on the tiny
      preset (whose ``n_layer`` is 4) is no change, and a preset with the same model is none either. A preset
      or override that does not resolve (an unknown preset in an old checkpoint) stays as given.
    * ``param_groups`` None becomes what the trainer builds: ``layers`` with a ``layer_decay``, else ``decay``.
    """
    out = dict(flat)
    presets = _PRESETS.get(str(out.get("model")), {})
    base = presets.get(str(out.get("preset")))
    if base is not None:
        names = {f.name for f in fields(base)}
        overrides = {k: out[k] for k in ("n_layer", "n_head", "n_kv_head") if out.get(k) is not None}
        if set(overrides) <= names:
            try:
                resolved = replace(base, **overrides)
            except ValueError:  # the model's own checks refuse the overrides: compare them as given
                resolved = None
            if resolved is not None:
                for key in ("preset", "n_layer", "n_head", "n_kv_head"):
                    out.pop(key, None)
                out.update({k: getattr(resolved, k) for k in MODEL_CONFIG_KEYS if k in names})
    if out.get("param_groups") is None:
        out["param_groups"] = "layers" if out.get("layer_decay") is not None else "decay"
    return out


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class ModelConfig:
    """The model and its numerics.

    Attributes:
        name: the architecture, ``gpt2`` or ``llama3`` (``--model``).
        preset: the size preset: ``tiny``, ``small``, ``124M`` (GPT-2) / ``1B`` (LLaMA-3).
        dropout: dropout probability in [0, 1) (GPT-2 only).
        n_layer: blocks; None keeps the preset's.
        n_head: attention heads; None keeps the preset's.
        n_kv_head: key/value heads (LLaMA-3 only); None keeps the preset's.
        dtype: the autocast dtype: ``float32`` (no autocast), ``bfloat16``, or ``float16`` (with a GradScaler).
        compile: ``torch.compile`` the model (and the optimizer step where it can).
        seed: seeds torch, numpy and ``random`` before the model is built (its init, and dropout).
    """

    name: str = _field("gpt2", flag="--model", choices=MODEL_NAMES)
    preset: str = _field("tiny")
    dropout: float = _field(0.0)
    n_layer: int | None = _field(None)
    n_head: int | None = _field(None)
    n_kv_head: int | None = _field(None)
    dtype: str = _field("float32", choices=("float32", "bfloat16", "float16"))
    compile: bool = _field(False)
    seed: int = _field(1337)


@dataclass(frozen=True)
class DataConfig:
    """The training text.

    Attributes:
        path: ``stdlib`` (the Python standard library's ``.py`` files), a text file or directory, or llm.c
            ``.bin`` token shards (a file, directory or glob) (``--data``).
        val_fraction: the tail fraction of the tokens held out for validation, in [0, 1).
        order: ``sequential`` reads the training split in order, as llm.c does; ``random`` reads its sequences
            in a shuffled order, a new permutation per epoch (:class:`~lrkit.train.data.TokenLoader`).
        seed: the seed of the random order's permutations (``--data-seed``).
    """

    path: str = _field("stdlib", flag="--data")
    val_fraction: float = _field(0.05)
    order: str = _field("sequential", flag="--data-order", choices=DATA_ORDERS)
    seed: int = _field(0, flag="--data-seed")


@dataclass(frozen=True)
class BatchConfig:
    """How many tokens an optimizer update reads, and how many updates the run makes.

    Attributes:
        batch_size: sequences per micro-batch, per data-parallel rank.
        sequence_length: tokens per sequence (a sample).
        total_batch_size: tokens per optimizer update; gradient accumulation is
            ``total / (batch_size * sequence_length * data-parallel size)``. None: one micro-batch per rank.
        num_iterations: optimizer updates of the run (steps). None until resolved: then 100, or with a
            ``--total`` in tokens or samples, as many as reach it.
        batch_size_schedule: a batch-size ramp on the token clock, ``linear:START:END:LENGTH[:INCREMENT]``
            (sequences per update from START to END over the first LENGTH tokens or samples;
            :mod:`lrkit.schedules.batch`); INCREMENT defaults to ``batch_size * data-parallel size``. Each
            update's gradient accumulation is its batch / (``batch_size`` x data-parallel size). None: a fixed
            batch (``total_batch_size``).
        lr_scaling: with ``batch_size_schedule``, multiply the LR by ``(B / START) ** p``: ``none`` (p = 0),
            ``linear`` (1) or ``sqrt`` (1/2) (``--batch-lr-scaling``).
    """

    batch_size: int = _field(8)
    sequence_length: int = _field(128)
    total_batch_size: int | None = _field(None)
    num_iterations: int | None = _field(None)
    batch_size_schedule: str | None = _field(None)
    lr_scaling: str = _field("none", flag="--batch-lr-scaling", choices=tuple(LR_SCALING_RULES))

    def tokens_per_micro_batch(self, data_parallel_size: int) -> int:
        """Tokens one micro-batch reads over all data-parallel ranks."""
        return self.batch_size * self.sequence_length * data_parallel_size

    def gradient_accumulation_steps(self, data_parallel_size: int) -> int:
        """Micro-batches per optimizer update; raises :class:`TrainError` if the sizes do not divide."""
        for name in ("batch_size", "sequence_length", "num_iterations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        per_update = self.tokens_per_micro_batch(data_parallel_size)
        total = self.total_batch_size if self.total_batch_size is not None else per_update
        if total % per_update != 0:
            raise TrainError(
                f"--total-batch-size must be a multiple of batch-size x sequence-length x data-parallel size "
                f"= {self.batch_size} x {self.sequence_length} x {data_parallel_size} = {per_update}, "
                f"got total_batch_size={total}"
            )
        return total // per_update

    def tokens_per_step(self, data_parallel_size: int) -> int:
        """Tokens per optimizer update, over all ranks (with a ``batch_size_schedule``, of the first update)."""
        ramp = self.batch_ramp(data_parallel_size)
        if ramp is not None:
            return ramp.start * self.sequence_length
        accumulation = self.gradient_accumulation_steps(data_parallel_size)
        return self.tokens_per_micro_batch(data_parallel_size) * accumulation

    def batch_ramp(self, data_parallel_size: int) -> BatchRamp | None:
        """The ramp of ``batch_size_schedule`` (None without one), its increment defaulting to and checked
        against the grid the trainer can run: ``batch_size * data_parallel_size`` sequences per micro-batch.

        Raises:
            TrainError: a ramp that does not parse or fit the micro-batches, beside ``total_batch_size``, or
                an ``lr_scaling`` without a ramp; the message names the flag, the value and what was expected.
        """
        text = self.batch_size_schedule
        if text is None:
            if self.lr_scaling != "none":
                raise TrainError(
                    f"--batch-lr-scaling {self.lr_scaling} scales the LR with a batch-size ramp, but there is "
                    "none: add --batch-size-schedule, or leave --batch-lr-scaling out"
                )
            return None
        self.gradient_accumulation_steps(data_parallel_size)  # the sizes' own checks
        if self.total_batch_size is not None:
            raise TrainError(
                f"--total-batch-size {self.total_batch_size} and --batch-size-schedule {text!r} both set the "
                "tokens per update; expected one of them"
            )
        grid = self.batch_size * data_parallel_size
        try:
            ramp = parse_batch_ramp(text, self.sequence_length, increment=grid, lr_scaling=self.lr_scaling)
        except BatchRampError as err:
            raise TrainError(str(err)) from None
        sizes = f"--batch-size x data-parallel size = {self.batch_size} x {data_parallel_size} = {grid}"
        for what, value in (("START", ramp.start), ("INCREMENT", ramp.increment)):
            if value % grid:
                raise TrainError(
                    f"--batch-size-schedule {text!r}: {what} {value} must be a multiple of {sizes} sequences "
                    "(each update is a whole number of micro-batches on every rank)"
                )
        return ramp


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimizer, its param groups and its update.

    Attributes:
        name: ``adamw``, ``adam`` or ``sgd`` (``--optimizer``).
        weight_decay: decoupled weight decay (AdamW) or L2 coefficient (the others) of the decaying groups.
        beta1: Adam's first-moment decay.
        beta2: Adam's second-moment decay.
        momentum: SGD momentum.
        grad_clip: the global gradient-norm clip threshold; 0 disables clipping.
        zero_stage: 1 shards the optimizer state over the data-parallel ranks (ZeRO-1); 0 does not.
        implementation: torch's implementation of the update: ``auto``, ``fused``, ``foreach`` or ``for-loop``
            (``--optimizer-impl``).
        param_groups: ``decay`` (nanoGPT's two groups), ``parts`` or ``layers``; None: ``layers`` with a
            ``layer_decay``, else ``decay``.
        layer_decay: layer-wise LR decay factor D in (0, 1]: the group at depth d peaks at ``lr * D**(L+1-d)``.
        group_lr: ``(name, scale)`` pairs: the named group's peak LR is ``lr * scale`` (``--group-lr NAME=SCALE``).
        inject_inf_grad_at: test hook: fill a gradient with inf at this step (a skipped fp16 update).
    """

    name: str = _field("adamw", flag="--optimizer", choices=("adamw", "adam", "sgd"))
    weight_decay: float = _field(0.1)
    beta1: float = _field(0.9)
    beta2: float = _field(0.95)
    momentum: float = _field(0.9)
    grad_clip: float = _field(1.0)
    zero_stage: int = _field(0, choices=(0, 1))
    implementation: str = _field("auto", flag="--optimizer-impl", choices=("auto", "fused", "foreach", "for-loop"))
    param_groups: str | None = _field(None, choices=PARAM_GROUPS)
    layer_decay: float | None = _field(None)
    group_lr: tuple[tuple[str, float], ...] = _field(())
    inject_inf_grad_at: int | None = _field(None)


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule and the schedules beside it.

    The fields from ``lr_scheduler`` to ``patience`` are the schedule flags of :mod:`lrkit.tools.flags` (their
    one definition: help, units, which schedule reads which), by their argparse names; None means not given.
    :meth:`TrainConfig.resolve` turns them into ``spec`` with :func:`lrkit.tools.flags.spec_from_args`.

    Attributes:
        lr_scheduler: a short name (``cosine``, ``wsd``, ``hf:linear``, ...) or a spec.
        lr: the peak learning rate (the optimizer's ``lr``).
        warmup_steps, total_steps, decay_steps, step_size, timescale, cycle_steps, cycle_warmup_steps:
            lengths in optimizer steps.
        warmup, total, decay: lengths as quantities (``2000``, ``50Mtok``, ``1.5Msamples``, ``0.01dur``).
        min_lr, warmup_start_lr: absolute LRs.
        power_coefficient, power_exponent: the power scheduler's ``a`` and ``b`` in ``min(lr, a * t ** b)``.
        backend: build the schedule with ``lrkit``'s classes or ``torch``'s own (``--scheduler-backend``).
        resume_policy: what ``--resume`` does with a schedule that differs from the checkpoint's: ``strict``,
            ``checkpoint``, ``override``, ``extend`` or ``cooldown:N[:SHAPE]`` (``--lr-resume-policy``).
        group_schedules: ``(group name, spec)`` pairs: that group's own schedule (``--group-schedule``).
        weight_decay_schedule, beta2_schedule, momentum_schedule, grad_clip_schedule: the hyperparameter
            schedules (``--wd-schedule`` and the like), as typed (:mod:`lrkit.train.optim`).
        spec: derived: the spec the schedule flags describe, lengths on its clock (None until resolved;
            :meth:`TrainConfig.resolve` recomputes it).
    """

    lr_scheduler: str | dict[str, Any] = _field("constant", spec=True)
    lr: float = _field(1e-3)
    warmup_steps: int | None = _field(None)
    warmup: str | None = _field(None)
    total_steps: int | None = _field(None)
    total: str | None = _field(None)
    min_lr: float | None = _field(None)
    warmup_start_lr: float | None = _field(None)
    step_size: int | None = _field(None)
    gamma: float | None = _field(None)
    milestones: tuple[int, ...] | None = _field(None)
    decay_steps: int | None = _field(None)
    decay: str | None = _field(None)
    decay_fraction: float | None = _field(None)
    decay_shape: str | None = _field(None)
    warmup_shape: str | None = _field(None)
    power: float | None = _field(None)
    power_coefficient: float | None = _field(None)
    power_exponent: float | None = _field(None)
    timescale: int | None = _field(None)
    cycle_steps: int | None = _field(None)
    cycle_mult: int | None = _field(None)
    cycle_decay: float | None = _field(None)
    cycle_warmup_steps: int | None = _field(None)
    num_cycles: float | None = _field(None)
    pct_start: float | None = _field(None)
    anneal_strategy: str | None = _field(None)
    cyclic_mode: str | None = _field(None)
    patience: int | None = _field(None)
    backend: str = _field("lrkit", flag="--scheduler-backend", choices=("lrkit", "torch"))
    resume_policy: str = _field("strict", flag="--lr-resume-policy")
    group_schedules: tuple[tuple[str, dict[str, Any]], ...] = _field((), flag="--group-schedule", spec=True)
    weight_decay_schedule: str | None = _field(None, flag="--wd-schedule")
    beta2_schedule: str | None = _field(None)
    momentum_schedule: str | None = _field(None)
    grad_clip_schedule: str | None = _field(None)
    spec: dict[str, Any] | None = _field(None, derived=True, spec=True)

    def flags(self) -> Any:
        """The schedule flags by their argparse names, as :func:`lrkit.tools.flags.spec_from_args` and
        :func:`~lrkit.tools.flags.total_length` read them (attributes of a namespace)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name in schedule_flag_names()}
        if values["milestones"] is not None:
            values["milestones"] = list(values["milestones"])
        return types.SimpleNamespace(**values)


@dataclass(frozen=True)
class ParallelConfig:
    """Where the run executes and how the model is split.

    Attributes:
        tensor_parallel: tensor-parallel degree (DTensor); ranks per model replica along the hidden size.
        sequence_parallel: with tensor parallel, shard the norm and residual regions along the sequence.
        fsdp: shard the parameters with FSDP2 (``fully_shard``).
        pipeline_parallel: pipeline-parallel degree (stages over ranks).
        virtual_pipeline_parallel: stages per pipeline rank (Interleaved1F1B when > 1).
        pipeline_schedule: ``1f1b``, ``gpipe`` or ``interleaved1f1b``; None: 1f1b, or interleaved1f1b with
            virtual stages.
        device: ``auto``, ``cpu`` or ``cuda``.
        threads: torch's intra-op threads (CPU); None keeps torch's.
        collective_timeout: seconds a collective waits for its peers before the run fails with an error naming
            the rank that did not answer (``init_process_group(timeout=...)``; 600, NCCL's default, unless
            given).
    """

    tensor_parallel: int = _field(1)
    sequence_parallel: bool = _field(False)
    fsdp: bool = _field(False)
    pipeline_parallel: int = _field(1)
    virtual_pipeline_parallel: int = _field(1)
    pipeline_schedule: str | None = _field(None, choices=("1f1b", "gpipe", "interleaved1f1b"))
    device: str = _field("auto")
    threads: int | None = _field(None)
    collective_timeout: float = _field(600.0)


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoints (in ``<run_dir>/checkpoints``) and resume.

    Attributes:
        save_interval: save every this many steps, and at the end; 0 never saves.
        keep_last: the checkpoints kept (the newest).
        resume: ``auto`` (the newest usable checkpoint of the run directory; a fresh start only when it holds
            no checkpoint, an error when it holds some and none is usable), a checkpoint file, or a run
            directory (its newest usable checkpoint); None starts fresh, in a run directory that holds no run.
        overwrite: start over in a run directory that holds a run: its old contents move to
            ``<run_dir>/previous-<UTC time>/`` (nothing is deleted). Not with ``resume``.
        format: ``full`` (one ``step_N.pt`` file holding the whole, gathered state, written by rank 0),
            ``sharded`` (a ``step_N/`` directory where every rank writes its own shards with
            torch.distributed.checkpoint) or ``auto``: sharded when more than one process trains, else full.
            Either format resumes on any layout and world size.
        async_save: write each sharded checkpoint in the background while training continues (DCP's
            ``async_save``; at most one save in flight). Needs the sharded format.
    """

    save_interval: int = _field(0)
    keep_last: int = _field(3)
    resume: str | None = _field(None)
    overwrite: bool = _field(False)
    format: str = _field("auto", flag="--checkpoint-format", choices=("auto", "full", "sharded"))
    async_save: bool = _field(False, flag="--async-checkpoint")


@dataclass(frozen=True)
class LoggingConfig:
    """What the run writes and prints.

    Attributes:
        run_dir: the directory of ``metrics.jsonl``, ``lr_loss.png`` and ``checkpoints/``.
        eval_interval: evaluate every this many steps, and at the end; 0 never evaluates.
        eval_iters: validation micro-batches per evaluation.
        plot: write ``lr_loss.png`` at the end (``--no-plot`` turns it off).
        quiet: no per-step lines.
        check_lr_sync: all-gather the LR each step and fail if the ranks disagree.
        tensorboard: also write each step's scalars to TensorBoard event files (:mod:`lrkit.train.tensorboard`).
        tensorboard_dir: where they go with ``tensorboard``; None: ``<run_dir>/tensorboard``.
        update_ratio_interval: take the update ratio ``||Δθ||/||θ||`` (:mod:`lrkit.train.telemetry`) on every
            this many steps; it costs one copy of this rank's parameters during the step. 0 never takes it.
    """

    run_dir: str = _field("runs/default")
    eval_interval: int = _field(0)
    eval_iters: int = _field(4)
    plot: bool = _field(True, flag="--no-plot", negated=True)
    quiet: bool = _field(False)
    check_lr_sync: bool = _field(False)
    tensorboard: bool = _field(False)
    tensorboard_dir: str | None = _field(None)
    update_ratio_interval: int = _field(1)


@dataclass(frozen=True)
class AveragingConfig:
    """Averages of the weights kept beside them, saved in the checkpoints and evaluated with them
    (:mod:`lrkit.train.averaging`).

    Attributes:
        ema: the decay ``d`` in (0, 1) of an exponential moving average of the weights,
            ``ema = d * ema + (1 - d) * theta`` after every update that was not skipped, from the weights at
            the start; None: none (``--ema``).
        average_last: ``N >= 1``: the uniform average of the weights after each of the run's last ``N`` steps;
            None: none (``--average-last``).
    """

    ema: float | None = _field(None)
    average_last: int | None = _field(None)


#: section name -> its class, in the order of the TOML file
SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "batch": BatchConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "parallel": ParallelConfig,
    "checkpoint": CheckpointConfig,
    "logging": LoggingConfig,
    "averaging": AveragingConfig,
}


def flag_of(section: type, name: str) -> str:
    """The command-line flag of field ``name`` of ``section`` (``--warmup-steps``)."""
    meta = {f.name: f.metadata for f in fields(section)}[name]
    return str(meta.get("flag") or "--" + name.replace("_", "-"))


def _dest(flag: str) -> str:
    return flag[2:].replace("-", "_")


@functools.cache
def _schedule_flag_definitions() -> dict[str, dict[str, Any]]:
    """The schedule flags' argparse keyword arguments by ``dest``, read from their one definition."""

    class Recorder:
        def __init__(self) -> None:
            self.flags: dict[str, dict[str, Any]] = {}

        def add_argument(self, *names: str, **kwargs: Any) -> None:
            self.flags[_dest(names[0])] = kwargs

    recorder = Recorder()
    add_schedule_arguments(recorder)
    return recorder.flags


@functools.cache
def schedule_flag_names() -> frozenset[str]:
    """The argparse names of the schedule flags (:mod:`lrkit.tools.flags`)."""
    return frozenset(_schedule_flag_definitions())


# ----------------------------------------------------------------------------- types


def _describe(hint: Any) -> str:
    """A type hint in TOML's words, for messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is dict:
        return "a table or JSON text (a spec)"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = args[0]
        if typing.get_origin(inner) is tuple:  # (name, value) pairs
            return f"a table of name = {_describe(typing.get_args(inner)[1])}"
        return f"an array of {_describe(inner)}"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, str(hint))


class _Mismatch(Exception):
    """A value that does not fit a type hint (turned into a ConfigError naming the key)."""


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` (from TOML, a checkpoint or the flags) as the config's type ``hint``; raises _Mismatch."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is dict:
        if isinstance(value, str) and value.strip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise _Mismatch from None
        if isinstance(value, Mapping):
            return dict(value)
        raise _Mismatch
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        inner = args[0]
        if typing.get_origin(inner) is tuple:  # (name, value) pairs: a table, or the pairs themselves
            items = value.items() if isinstance(value, Mapping) else value
            if not isinstance(items, (list, tuple)) and not isinstance(value, Mapping):
                raise _Mismatch
            pairs = []
            for item in items:
                if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                    raise _Mismatch
                pairs.append((item[0], _coerce(item[1], typing.get_args(inner)[1])))
            return tuple(dict(pairs).items())  # a name given twice: the last value, as the flags do
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, inner) for v in value)
        raise _Mismatch
    raise TypeError(f"config type {hint!r} has no reader")  # a field added with a type this module cannot read


def _hints(section: type) -> dict[str, Any]:
    return typing.get_type_hints(section)


def _section_from(section_name: str, values: Mapping[str, Any], source: str) -> Any:
    """Section ``section_name`` from ``values`` (a TOML table or plain data); errors name ``source``."""
    cls = SECTIONS[section_name]
    hints = _hints(cls)
    known = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(
                f"{source}: unknown key {key!r} in [{section_name}]; the keys of [{section_name}] are: "
                f"{', '.join(known)}"
            )
        kwargs[key] = _checked(cls, key, value, hints[key], f"{source}: [{section_name}] {key}")
    return cls(**kwargs)


def _checked(cls: type, key: str, value: Any, hint: Any, where: str) -> Any:
    """``value`` for field ``key`` of ``cls``: typed, its choice allowed, a schedule flag read as the flag is."""
    try:
        typed = _coerce(value, hint)
    except _Mismatch:
        raise ConfigError(f"{where} = {value!r} must be {_describe(hint)}") from None
    meta = {f.name: f.metadata for f in fields(cls)}[key]
    choices = meta.get("choices")
    if cls is ScheduleConfig and key in schedule_flag_names():
        choices = _schedule_flag_definitions()[key].get("choices", choices)
    if typed is not None and choices is not None and typed not in choices:
        raise ConfigError(f"{where} = {value!r} must be one of: {', '.join(map(str, choices))}")
    if cls is ScheduleConfig:
        typed = _schedule_value(key, typed, where)
    if (cls, key) == (BatchConfig, "batch_size_schedule") and typed is not None:
        try:  # the syntax now; the sizes it must fit once the data-parallel size is known (resolve)
            parse_batch_ramp(typed, sequence_length=1, name=where)
        except BatchRampError as err:
            raise ConfigError(str(err)) from None
    check = _RANGES.get((cls, key))
    if typed is not None and check is not None and not check.holds(typed):
        raise ConfigError(f"{where} = {value!r} must be {check.expected}")
    return typed


@dataclass(frozen=True)
class _Range:
    """What a field's value must be beyond its type: within bounds (NaN never is), or matching a pattern.

    ``low``/``high`` bound the value (``low_open``/``high_open``: the bound itself is excluded); ``pattern``
    is a regular expression the whole value must match; ``expected`` says it in words for the message.
    """

    expected: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    pattern: str | None = None

    def holds(self, value: Any) -> bool:
        if self.pattern is not None:
            return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None
        if isinstance(value, float) and not math.isfinite(value):  # NaN fails every comparison; inf is never meant
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))


def _at_least(low: int, why: str = "") -> _Range:
    return _Range(f"an integer >= {low}{why}", low=low)


_FRACTION = _Range("a number in [0, 1)", low=0.0, high=1.0, high_open=True)
_NON_NEGATIVE = _Range("a finite number >= 0", low=0.0)

#: (section, field) -> what its value must be, checked for the flags and a --config file alike,
#: so a value the run cannot use is refused before any work, with the flag (or key), the value and the range.
#: A value outside these would otherwise be taken silently as something else (``--threads 0`` as torch's
#: default, ``--grad-clip -1`` as no clipping, ``--eval-interval -1`` as every step) or fail late.
_RANGES: dict[tuple[type, str], _Range] = {
    (ModelConfig, "dropout"): _FRACTION,
    (ModelConfig, "n_layer"): _at_least(1),
    (ModelConfig, "n_head"): _at_least(1),
    (ModelConfig, "n_kv_head"): _at_least(1),
    (ModelConfig, "seed"): _Range("an integer in [0, 2**32 - 1] (numpy's seed range)", low=0, high=2**32 - 1),
    (DataConfig, "val_fraction"): _FRACTION,
    (BatchConfig, "batch_size"): _at_least(1),
    (BatchConfig, "sequence_length"): _at_least(1),
    (BatchConfig, "total_batch_size"): _at_least(1, " (tokens per optimizer update)"),
    (BatchConfig, "num_iterations"): _at_least(1),
    (OptimizerConfig, "weight_decay"): _NON_NEGATIVE,
    (OptimizerConfig, "beta1"): _FRACTION,
    (OptimizerConfig, "beta2"): _FRACTION,
    (OptimizerConfig, "momentum"): _FRACTION,
    (OptimizerConfig, "grad_clip"): _Range("a finite number >= 0 (0 disables clipping)", low=0.0),
    (ScheduleConfig, "lr"): _NON_NEGATIVE,
    (ParallelConfig, "tensor_parallel"): _at_least(1),
    (ParallelConfig, "pipeline_parallel"): _at_least(1),
    (ParallelConfig, "virtual_pipeline_parallel"): _at_least(1),
    (ParallelConfig, "device"): _Range("auto, cpu, cuda or cuda:N", pattern=r"auto|cpu|cuda(:[0-9]+)?"),
    (ParallelConfig, "threads"): _at_least(1, " (torch's intra-op threads; leave it out for torch's default)"),
    (CheckpointConfig, "save_interval"): _at_least(0, " (0: never)"),
    (CheckpointConfig, "keep_last"): _at_least(1),
    (LoggingConfig, "eval_interval"): _at_least(0, " (0: never)"),
    (LoggingConfig, "eval_iters"): _at_least(1, " (validation micro-batches per evaluation)"),
    (LoggingConfig, "update_ratio_interval"): _at_least(0, " (0: never)"),
    (AveragingConfig, "ema"): _Range(
        "a number in (0, 1) (the decay per update)", low=0.0, high=1.0, low_open=True, high_open=True
    ),
    (AveragingConfig, "average_last"): _at_least(1, " (the steps at the end of the run to average)"),
}


def _schedule_value(key: str, value: Any, where: str) -> Any:
    """A schedule field checked as its flag checks it (a known scheduler name, a quantity, a policy)."""
    import argparse

    if value is None:
        return None
    if key == "resume_policy":
        try:
            return str(parse_policy(value))
        except ValueError as err:
            raise ConfigError(f"{where} = {value!r}: {err}") from None
    definition = _schedule_flag_definitions().get(key, {})
    reader = definition.get("type")
    if isinstance(value, str) and reader not in (None, int, float, str):  # the flag's own reader
        try:
            return reader(value)
        except argparse.ArgumentTypeError as err:
            raise ConfigError(f"{where} = {value!r}: {err}") from None
    return value


# ----------------------------------------------------------------------------- the config


def _plain(value: Any, hint: Any, for_toml: bool) -> Any:
    """A field's value as plain data: pairs as a table, tuples as lists, specs as JSON text in TOML."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        arg = next(a for a in args if a is not type(None) and _fits(value, a))
        return _plain(value, arg, for_toml)
    if origin is dict:
        return json.dumps(value) if for_toml else json.loads(json.dumps(value))
    if origin is tuple:
        inner = args[0]
        if typing.get_origin(inner) is tuple:
            return {name: _plain(v, typing.get_args(inner)[1], for_toml) for name, v in value}
        return [_plain(v, inner, for_toml) for v in value]
    return value


def _fits(value: Any, hint: Any) -> bool:
    try:
        _coerce(value, hint)
    except _Mismatch:
        return False
    return True


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run is given, one section per concern; see the module docstring."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    averaging: AveragingConfig = field(default_factory=AveragingConfig)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_args(cls, args: Any) -> TrainConfig:
        """The config the trainer's flags give (a namespace from :func:`lrkit.train.arguments.add_train_arguments`)."""
        return cls().override(args, None)

    def override(self, args: Any, given: frozenset[str] | set[str] | None) -> TrainConfig:
        """This config with the flags of ``args`` whose argparse names are in ``given`` (all when None)."""
        sections: dict[str, Any] = {}
        for section_name, cls in SECTIONS.items():
            hints = _hints(cls)
            changes: dict[str, Any] = {}
            for f in fields(cls):
                if f.metadata.get("derived"):
                    continue
                dest = _dest(flag_of(cls, f.name))
                if (given is not None and dest not in given) or not hasattr(args, dest):
                    continue
                value = _flag_value(getattr(args, dest))
                if f.metadata.get("negated"):
                    value = not value
                where = f"{flag_of(cls, f.name)}"
                changes[f.name] = _checked(cls, f.name, value, hints[f.name], where)
            sections[section_name] = replace(getattr(self, section_name), **changes)
        return replace(self, **sections)

    @classmethod
    def of(cls, config: TrainConfig | Any) -> TrainConfig:
        """``config`` if it is a TrainConfig, else the config of a parsed namespace (:meth:`from_args`): the
        entry points that took the flags before the config existed (``train``, ``check_pipeline_args``,
        ``optimizer_impl_kwargs``, ``find_lr``) take either."""
        return config if isinstance(config, TrainConfig) else cls.from_args(config)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """The config of plain data (a TOML document, or :meth:`to_dict`'s); errors name ``source``."""
        unknown = [name for name in data if name not in SECTIONS]
        if unknown:
            raise ConfigError(
                f"{source}: unknown section [{unknown[0]}]; the sections are: {', '.join(f'[{s}]' for s in SECTIONS)}"
            )
        sections = {}
        for name, table in data.items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"{source}: [{name}] must be a table, got {name} = {table!r}")
            sections[name] = _section_from(name, table, source)
        return cls(**sections)

    @classmethod
    def from_toml(cls, text: str, source: str = "config") -> TrainConfig:
        """The config a TOML document describes; ``source`` (the file's name) prefixes errors."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{source}: not valid TOML: {err}") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_file(cls, path: str) -> TrainConfig:
        """:meth:`from_toml` of the file at ``path``."""
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise ConfigError(f"--config {path}: cannot read it: {err.strerror}") from None
        return cls.from_toml(text, source=path)

    # ------------------------------------------------------------------ writing

    def to_dict(self, for_toml: bool = False) -> dict[str, dict[str, Any]]:
        """The config as plain data, by section (what checkpoints store under ``"train_config"``).

        ``for_toml``: leave out the fields that are None (TOML has no null) or empty tables (their default, no
        pairs), and write specs as JSON text.
        """
        out: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            section = getattr(self, name)
            hints = _hints(type(section))
            table = {f.name: _plain(getattr(section, f.name), hints[f.name], for_toml) for f in fields(section)}
            out[name] = {k: v for k, v in table.items() if not (for_toml and (v is None or v == {}))}
        return out

    def to_toml(self) -> str:
        """The config as a TOML document that :meth:`from_toml` reads back to an equal config."""
        import tomli_w

        return tomli_w.dumps(self.to_dict(for_toml=True))

    def flag_values(self) -> dict[str, Any]:
        """The config flat, by the flags' argparse names, holding the plain values (``str``, numbers, bools,
        None) and ``group_lr`` as ``{name: scale}``: the ``"config"`` a checkpoint stores, which
        :data:`COMPATIBLE_KEYS` compare on resume."""
        flat: dict[str, Any] = {}
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            for f in fields(cls):
                if f.metadata.get("derived"):
                    continue
                value = getattr(section, f.name)
                if f.metadata.get("negated"):
                    value = not value
                if isinstance(value, (str, int, float, bool, type(None))):
                    flat[_dest(flag_of(cls, f.name))] = value
        flat["group_lr"] = dict(self.optimizer.group_lr)
        return flat

    # ------------------------------------------------------------------ derived values

    def run_length_from_total(self) -> Quantity | None:
        """The ``--total`` in tokens or samples that sets the run length (no ``--num-iterations``), or None."""
        length = total_length(self.schedule.flags())
        if self.batch.num_iterations is None and length is not None and length.unit != "steps":
            return length
        return None

    def resolve(
        self, data_parallel_size: int = 1, start_step: int = 0, start_clock: Mapping[str, int] | None = None
    ) -> TrainConfig:
        """A new config with the derived values filled in (this one is unchanged):

        * ``batch.num_iterations``: as given; else with a ``--total`` in tokens or samples,
          ``start_step + ceil((total - clock) / per step)`` (the last step reaches or passes the total);
          else 100.
        * ``schedule.total_steps``: as given; else, with no ``--total`` either, the run length (the schedule
          spans the run).
        * ``schedule.spec``: the spec of the schedule flags, lengths given in other units converted at
          ``tokens_per_step(data_parallel_size)`` tokens and ``sequence_length`` tokens per sample.

        With a ``batch_size_schedule`` the run length from a ``--total`` counts the updates along the ramp
        (:meth:`~lrkit.schedules.batch.BatchRamp.steps_to_reach`), and a schedule cannot mix lengths in steps
        with lengths in tokens or samples (the tokens per step vary).

        ``start_step`` and ``start_clock`` (``{"tokens", "samples"}`` of the successful updates) are where a
        resumed run starts. Resolving a resolved config gives it back.

        Raises:
            TrainError: the batch sizes do not divide (:meth:`BatchConfig.gradient_accumulation_steps`), a
                batch ramp that does not fit them (:meth:`BatchConfig.batch_ramp`), or one with pipeline
                parallelism.
            ScheduleFlagError, QuantityError: schedule flags that do not fit together.
        """
        ramp = self.batch.batch_ramp(data_parallel_size)
        if ramp is not None and self.parallel.pipeline_parallel > 1:
            raise TrainError(
                f"--batch-size-schedule {self.batch.batch_size_schedule!r} with --pipeline-parallel "
                f"{self.parallel.pipeline_parallel}: the pipeline's microbatches are fixed when it is built, so "
                "the batch cannot ramp; expected --pipeline-parallel 1 or a fixed --total-batch-size"
            )
        tokens_per_step = self.batch.tokens_per_step(data_parallel_size)
        per_step = {"tokens": tokens_per_step, "samples": tokens_per_step // self.batch.sequence_length}
        batch, schedule = self.batch, self.schedule
        length = self.run_length_from_total()
        if length is not None and ramp is not None:  # the updates grow: count them along the ramp
            tokens = int(length.amount) * (self.batch.sequence_length if length.unit == "samples" else 1)
            done = (start_clock or {}).get("tokens", 0)
            steps = start_step + ramp.steps_to_reach(tokens, done, self.batch.sequence_length)
            batch = replace(batch, num_iterations=steps)
        elif length is not None:
            clock = (start_clock or {}).get(length.unit, 0)
            steps = start_step + steps_to_reach(int(length.amount), clock, per_step[length.unit])
            batch = replace(batch, num_iterations=steps)
        elif batch.num_iterations is None:
            batch = replace(batch, num_iterations=DEFAULT_NUM_ITERATIONS)
        if schedule.total_steps is None and schedule.total is None:
            schedule = replace(schedule, total_steps=batch.num_iterations)
        rates = Rates(None if ramp is not None else tokens_per_step, self.batch.sequence_length)
        ramped = (
            "--batch-size-schedule makes the tokens per step vary: give the schedule's lengths all in tokens or "
            "samples (--warmup 50Mtok --total 10Btok), or all in steps"
        )
        if ramp is not None:
            spec = spec_from_args(schedule.flags(), rates=rates, missing_rate=ramped)
        else:
            spec = spec_from_args(schedule.flags(), rates=rates)
        return replace(self, batch=batch, schedule=replace(schedule, spec=spec))


def _flag_value(value: Any) -> Any:
    """A parsed flag as config data: a policy as its text, repeated ``NAME=VALUE`` flags as pairs."""
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, tuple) else v for v in value)
    if value is not None and not isinstance(value, (str, int, float, bool, dict, tuple)):
        return str(value)  # --lr-resume-policy's Policy
    return value
