"""The trainer's flags, and the one place that turns them (and ``--config run.toml``) into a :class:`TrainConfig`.

``add_train_arguments(parser)`` adds every flag; its defaults are :class:`TrainConfig`'s (the schedule flags
come from :mod:`lrkit.tools.flags`, their one definition). Each flag records, when typed, that it was
(:data:`TYPED_FLAGS` on the namespace), so :func:`config_from_args` lets only the flags the user typed
override ``--config``'s file: a typed flag wins even when its value is the default.
"""

from __future__ import annotations

import argparse
from typing import Any

from lrkit.runtime import resume as resume_policy
from lrkit.schedules.batch import LR_SCALING_RULES
from lrkit.tools.flags import add_schedule_arguments
from lrkit.train import optim as train_optim
from lrkit.train.config import TrainConfig
from lrkit.train.data import DATA_ORDERS
from lrkit.train.models import MODEL_NAMES

__all__ = ["TYPED_FLAGS", "add_train_arguments", "config_from_args"]

#: Namespace attribute: the argparse names of the trainer flags typed on the command line.
TYPED_FLAGS = "typed_flags"


class _Typed(argparse.Action):
    """argparse's ``store``, ``store_true`` (``nargs=0``) and ``append``, recording that the flag was typed."""

    def __init__(self, option_strings: list[str], dest: str, append: bool = False, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.append = append

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: Any = None
    ) -> None:
        if self.nargs == 0:
            values = self.const
        elif self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)
        setattr(namespace, TYPED_FLAGS, getattr(namespace, TYPED_FLAGS, frozenset()) | {self.dest})


class _Recording:
    """An argument group whose flags record that they were typed (:class:`_Typed`)."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def add_argument(self, *names: str, **kwargs: Any) -> Any:
        action = kwargs.pop("action", "store")
        if action == "store_true":
            kwargs.update(nargs=0, const=True, default=kwargs.get("default", False))
        elif action == "append":
            kwargs["append"] = True
        elif action != "store":
            raise TypeError(f"{names[0]}: action={action!r} does not record that it was typed")
        return self.group.add_argument(*names, action=_Typed, **kwargs)


#: The end of ``lrkit train --help``: what the signals do (lrkit.train.shutdown).
SIGNALS_EPILOG = (
    "Signals: SIGTERM and SIGUSR1 (a cluster's preemption or time limit) finish the step, save it and exit 0; "
    "SIGINT (Ctrl-C) does the same and exits 130. With --save-interval 0 nothing is saved and SIGTERM/SIGUSR1 "
    "exit 128 + signal. Continue with --resume auto. Under torchrun, give the agent --signals-to-handle "
    "SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1, or SIGUSR1 kills it (docs/cluster.md)."
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """All trainer flags; the schedule flags come from :mod:`lrkit.tools.flags` (one definition)."""
    d = TrainConfig()  # the defaults
    parser.set_defaults(**{TYPED_FLAGS: frozenset()})
    if parser.epilog is None:
        parser.epilog = SIGNALS_EPILOG
    g = _Recording(parser.add_argument_group("config file"))
    g.add_argument(
        "--config",
        default=None,
        metavar="TOML",
        help="read the run's config from this TOML file (sections model, data, batch, optimizer, schedule, "
        "parallel, checkpoint, logging, averaging; see --print-config); the flags typed beside it override it",
    )
    g.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as TOML (what --config reads) and exit",
    )
    g = _Recording(parser.add_argument_group("model"))
    g.add_argument("--model", choices=MODEL_NAMES, default=d.model.name, help="architecture (default: gpt2)")
    g.add_argument("--preset", default=d.model.preset, help="model size preset: tiny, small, 124M / 1B (default: tiny)")
    g.add_argument("--dropout", type=float, default=d.model.dropout, help="dropout probability (GPT-2 only; default 0)")
    g.add_argument("--n-layer", type=int, default=None, help="override the preset's number of blocks")
    g.add_argument("--n-head", type=int, default=None, help="override the preset's attention heads")
    g.add_argument("--n-kv-head", type=int, default=None, help="override the preset's key/value heads (LLaMA-3 only)")
    g = _Recording(parser.add_argument_group("data"))
    g.add_argument(
        "--data",
        default=d.data.path,
        help="'stdlib' (the Python standard library's .py files, the default), a text file or directory, "
        "or llm.c .bin token shards (file, directory or glob)",
    )
    g.add_argument(
        "--val-fraction", type=float, default=d.data.val_fraction, help="tail fraction held out for validation"
    )
    g.add_argument(
        "--data-order",
        choices=DATA_ORDERS,
        default=d.data.order,
        help="'sequential' reads the training split in order, as llm.c (the default); 'random' reads its sequences "
        "shuffled, a new permutation per epoch, so consecutive batches come from different files",
    )
    g.add_argument("--data-seed", type=int, default=d.data.seed, help="seed of the random data order (default 0)")
    g = _Recording(parser.add_argument_group("batch"))
    g.add_argument("--batch-size", type=int, default=d.batch.batch_size, help="micro-batch size per rank (sequences)")
    g.add_argument("--sequence-length", type=int, default=d.batch.sequence_length, help="tokens per sequence")
    g.add_argument(
        "--total-batch-size",
        type=int,
        default=None,
        help="tokens per optimizer update; gradient accumulation = total / (batch * seq * dp). "
        "Default: batch * seq * dp (no accumulation)",
    )
    g.add_argument(
        "--num-iterations",
        type=int,
        default=None,
        help="optimizer updates to run (steps). Default: 100, or with a --total in tokens or samples, "
        "as many as reach it: ceil(total / tokens (samples) per step)",
    )
    g.add_argument(
        "--batch-size-schedule",
        default=None,
        metavar="linear:START:END:LENGTH[:INCREMENT]",
        help="ramp the global batch on the token clock: sequences per update from START to END over the first "
        "LENGTH tokens or samples (e.g. linear:256:2048:10Btok), on a grid of INCREMENT sequences (default: "
        "batch * dp), as Megatron's --rampup-batch-size; gradient accumulation = batch / (batch-size * dp) per "
        "update. Not with --total-batch-size",
    )
    g.add_argument(
        "--batch-lr-scaling",
        choices=list(LR_SCALING_RULES),
        default=d.batch.lr_scaling,
        help="with --batch-size-schedule: multiply the LR by (batch / START)^p, p = 0 (none, the default), "
        "1 (linear) or 1/2 (sqrt, OLMo-core's rule); --lr is the LR of the START batch",
    )
    g = _Recording(parser.add_argument_group("optimizer"))
    g.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], default=d.optimizer.name)
    g.add_argument(
        "--weight-decay",
        type=float,
        default=d.optimizer.weight_decay,
        help="decoupled weight decay (AdamW) / L2 (others)",
    )
    g.add_argument("--beta1", type=float, default=d.optimizer.beta1)
    g.add_argument("--beta2", type=float, default=d.optimizer.beta2)
    g.add_argument("--momentum", type=float, default=d.optimizer.momentum, help="SGD momentum")
    g.add_argument(
        "--grad-clip", type=float, default=d.optimizer.grad_clip, help="clip the global grad norm to this; 0 disables"
    )
    g.add_argument(
        "--zero-stage",
        type=int,
        choices=[0, 1],
        default=d.optimizer.zero_stage,
        help="1: shard the optimizer state over the data-parallel ranks (ZeRO-1)",
    )
    g.add_argument(
        "--optimizer-impl",
        choices=["auto", "fused", "foreach", "for-loop"],
        default=d.optimizer.implementation,
        help="torch's implementation of the update. auto (default): fused for adamw/adam (one kernel over "
        "all parameters, on CPU too: 4-5x faster than the for-loop torch picks there, see "
        "benchmarks/optimizer_update.py), torch's own choice for sgd, for DTensor parameters (TP, FSDP2) and "
        "under --compile (which builds its own kernels). The same math; the bits of the update may differ "
        "between implementations",
    )
    g = _Recording(parser.add_argument_group("param groups and hyperparameter schedules (lrkit.train.optim)"))
    train_optim.add_group_arguments(g)
    group = parser.add_argument_group("learning-rate schedule")
    g = _Recording(group)
    add_schedule_arguments(parser_or_group=g)
    g.add_argument(
        "--scheduler-backend",
        choices=["lrkit", "torch"],
        default=d.schedule.backend,
        help="build the schedule with lrkit (default) or with PyTorch's own classes from the same spec",
    )
    g.add_argument(
        "--lr-resume-policy",
        type=resume_policy.policy_argument,
        default=resume_policy.parse_policy(d.schedule.resume_policy),
        metavar="POLICY",
        help="on --resume with a schedule that differs from the checkpoint's: strict (error with the diff, "
        "the default), checkpoint (keep the checkpoint's), override (apply the new one now; warns with the "
        "LR jump), extend (only the run length changed: refit the rest of the decay from the current LR), "
        "cooldown:N[:SHAPE] (decay from the current LR to --min-lr over N steps, then hold). A changed "
        "--wd-schedule, --beta2-schedule, --momentum-schedule or --grad-clip-schedule: checkpoint keeps the "
        "checkpoint's, override applies the new one from the current step, the others error",
    )
    g = _Recording(parser.add_argument_group("precision and speed"))
    g.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=d.model.dtype, help="autocast dtype")
    g.add_argument("--compile", action="store_true", help="torch.compile the model and optimizer step")
    g.add_argument("--device", default=d.parallel.device, help="auto, cpu or cuda")
    g.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    g = _Recording(parser.add_argument_group("parallelism"))
    g.add_argument(
        "--tensor-parallel", type=int, default=d.parallel.tensor_parallel, help="tensor-parallel degree (DTensor)"
    )
    g.add_argument(
        "--collective-timeout",
        type=float,
        default=d.parallel.collective_timeout,
        metavar="SECONDS",
        help="under torchrun: how long a collective waits for the other ranks before the run fails with an "
        "error naming the rank that did not answer (a stopped or hung rank), instead of hanging "
        f"(default: {d.parallel.collective_timeout:g}, NCCL's own default)",
    )
    g.add_argument(
        "--sequence-parallel",
        action="store_true",
        help="with --tensor-parallel: shard the norm/residual regions along the sequence (DTensor SequenceParallel)",
    )
    g.add_argument("--fsdp", action="store_true", help="shard parameters with FSDP2 (fully_shard)")
    g.add_argument(
        "--pipeline-parallel",
        type=int,
        default=d.parallel.pipeline_parallel,
        help="pipeline-parallel degree (torch.distributed.pipelining); the micro-batches of an update "
        "(gradient accumulation) are the pipeline's microbatches, at least this many",
    )
    g.add_argument(
        "--virtual-pipeline-parallel",
        type=int,
        default=d.parallel.virtual_pipeline_parallel,
        help="stages per pipeline rank (Interleaved1F1B when > 1)",
    )
    g.add_argument(
        "--pipeline-schedule",
        choices=["1f1b", "gpipe", "interleaved1f1b"],
        default=None,
        help="default: 1f1b, or interleaved1f1b with --virtual-pipeline-parallel > 1",
    )
    g = _Recording(parser.add_argument_group("evaluation, output and checkpoints"))
    g.add_argument(
        "--eval-interval",
        type=int,
        default=d.logging.eval_interval,
        help="evaluate every N steps and at the end; 0: never",
    )
    g.add_argument(
        "--eval-iters", type=int, default=d.logging.eval_iters, help="validation micro-batches per evaluation"
    )
    g.add_argument("--seed", type=int, default=d.model.seed)
    g.add_argument("--run-dir", default=d.logging.run_dir, help="metrics.jsonl, lr_loss.png and checkpoints go here")
    g.add_argument(
        "--save-interval",
        type=int,
        default=d.checkpoint.save_interval,
        help="checkpoint every N steps (and at the end); 0: never",
    )
    g.add_argument("--keep-last", type=int, default=d.checkpoint.keep_last, help="checkpoints to keep")
    g.add_argument(
        "--resume",
        default=None,
        help="'auto' (the newest usable checkpoint in --run-dir; fresh only if it holds none, an error if none "
        "is usable), a checkpoint file, or a run directory (its newest usable checkpoint)",
    )
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in a --run-dir that holds a run: its old contents move to RUN/previous-<time>/ "
        "(nothing is deleted). Without it (or --resume) such a run dir is refused",
    )
    g.add_argument(
        "--checkpoint-format",
        default=d.checkpoint.format,
        choices=("auto", "full", "sharded"),
        help="full: one step_N.pt gathered on rank 0; sharded: a step_N/ directory where each rank writes its "
        "own shards (torch.distributed.checkpoint); auto: sharded under torchrun with more than one rank. "
        "Either resumes on another layout or world size",
    )
    g.add_argument(
        "--async-checkpoint",
        action="store_true",
        help="write sharded checkpoints in the background while training continues (one save in flight at most)",
    )
    g.add_argument("--check-lr-sync", action="store_true", help="all-gather the LR each step and assert equality")
    g.add_argument("--no-plot", action="store_true", help="skip lr_loss.png")
    g.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write each step's scalars (lr/<group>, loss/train, grad_norm/..., update_ratio/...) to "
        "TensorBoard event files; needs the tensorboard package",
    )
    g.add_argument(
        "--tensorboard-dir",
        default=d.logging.tensorboard_dir,
        metavar="DIR",
        help="where --tensorboard writes its event files (default: <run-dir>/tensorboard)",
    )
    g.add_argument(
        "--update-ratio-interval",
        type=int,
        default=d.logging.update_ratio_interval,
        metavar="N",
        help="log update_ratio (||Δθ||/||θ|| per group) on every Nth step (default: %(default)s, every step); it "
        "costs one copy of this rank's parameters during the step. 0: never",
    )
    g.add_argument("--quiet", action="store_true", help="no per-step lines")
    g.add_argument("--inject-inf-grad-at", type=int, default=None, help=argparse.SUPPRESS)
    g = _Recording(parser.add_argument_group("weight averaging (lrkit.train.averaging)"))
    g.add_argument(
        "--ema",
        type=float,
        default=d.averaging.ema,
        metavar="DECAY",
        help="keep an exponential moving average of the weights, ema = DECAY * ema + (1 - DECAY) * weights after "
        "every update (from the weights at the start, no bias correction), saved in the checkpoints and "
        "evaluated beside the weights (val_loss_ema); DECAY in (0, 1), e.g. 0.99",
    )
    g.add_argument(
        "--average-last",
        type=int,
        default=d.averaging.average_last,
        metavar="N",
        help="keep the uniform average of the weights after each of the run's last N steps (of --num-iterations), "
        "saved in the checkpoints and evaluated beside the weights (val_loss_avg); N >= 1",
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's config (not yet resolved): ``--config``'s file with the typed flags on top, or the flags.

    Raises:
        ConfigError: the file cannot be read, or holds an unknown section or key or a value of the wrong type.
    """
    path = getattr(args, "config", None)
    if path is None:
        return TrainConfig.from_args(args)
    return TrainConfig.from_file(path).override(args, getattr(args, TYPED_FLAGS, frozenset()))
