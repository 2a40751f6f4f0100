"""The LR range test: ``lrkit find-lr``.

Train the trainer's model on the trainer's data for ``N`` optimizer updates while the LR
grows geometrically from ``--start-lr`` to ``--end-lr`` (:class:`lrkit.schedules.ExponentialRamp`,
bound to the optimizer by an lrkit ``LambdaLR``), one update per LR, and watch the loss
(Smith, "Cyclical Learning Rates for Training Neural Networks", 2015; fastai's ``lr_find``):

* ``loss_i`` is the loss of batch ``i``, computed before update ``i``, which uses ``lr_i``;
* the smoothed loss is an exponential moving average with bias correction (:class:`BiasCorrectedEMA`),
  ``smoothed_i = avg_i / (1 - beta ** (i + 1))`` with ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i``;
* the test stops early when ``smoothed_i > divergence_factor * min_{j <= i} smoothed_j`` (diverged)
  or when ``loss_i`` is not finite.

Three points are reported: the *steepest descent* (``argmin d smoothed / d ln lr``, the first
10% of the scan and the points past the minimum left out), the *minimum* of the smoothed loss,
and the *divergence* point (the LR at which the test stopped). The suggested peak LR is the
steepest point, with ``min_loss_lr / 10`` printed beside it: see :attr:`RangeTest.suggested_lr` for why.

    lrkit find-lr --preset tiny -o find_lr.png --csv find_lr.csv
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrkit.schedulers.torch_compat import LambdaLR
from lrkit.schedules import ExponentialRamp
from lrkit.train.arguments import add_train_arguments
from lrkit.train.components import build_optimizer, build_train_model
from lrkit.train.config import TrainConfig
from lrkit.train.data import TokenLoader, load_corpus, train_val_split
from lrkit.train.errors import USER_ERRORS, TrainError
from lrkit.train.parallel import DistContext, clip_grad_norm, wrap_model

__all__ = [
    "BiasCorrectedEMA",
    "FindLRError",
    "RangeTest",
    "RangeTestConfig",
    "add_find_lr_arguments",
    "find_lr",
    "plot_range_test",
    "run_find_lr",
    "smooth_losses",
    "steepest_index",
]

#: Trainer flags that ``find-lr`` shares (by ``dest``), per help group: one definition, in arguments.py.
_TRAINER_FLAGS: dict[str, tuple[str, ...]] = {
    "model": ("model", "preset"),
    "data": ("data",),
    "batch": ("batch_size", "sequence_length"),
    "optimizer": ("optimizer", "weight_decay", "beta1", "beta2", "momentum", "grad_clip", "optimizer_impl"),
    "run": ("seed", "threads", "device"),
}
#: Fraction of the scan at its start left out of the steepest-descent search: there the EMA has seen
#: only a few batches and the LR is too small to move the loss, so its slope is noise.
_SKIP_START_FRACTION = 0.1


class FindLRError(TrainError):
    """Bad ``find-lr`` input (the message names the flag and its value), or a test with no usable point."""


@dataclass(frozen=True)
class RangeTestConfig:
    """The range test's own settings (the model, data, batch and optimizer are a :class:`TrainConfig`'s).

    Attributes:
        start_lr: the first LR of the geometric ramp, > 0.
        end_lr: the last LR of the ramp, > ``start_lr``.
        num_steps: optimizer updates, one per LR, >= 2.
        smoothing: the EMA beta of the smoothed loss, in [0, 1).
        divergence_factor: stop when the smoothed loss exceeds this times its minimum so far, > 1.
    """

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_steps: int = 100
    smoothing: float = 0.98
    divergence_factor: float = 4.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RangeTestConfig:
        """The settings of ``lrkit find-lr``'s flags (:func:`add_find_lr_arguments`)."""
        return cls(args.start_lr, args.end_lr, args.num_steps, args.smoothing, args.divergence_factor)


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, RangeTestConfig]:
    """``lrkit find-lr``'s flags as the trainer's config (the flags it shares; the rest default) and the test's."""
    return TrainConfig.from_args(args), RangeTestConfig.from_args(args)


# ----------------------------------------------------------------------------- flags


def add_find_lr_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``find-lr`` flags: the trainer's model/data/batch/optimizer flags (copied from
    :func:`lrkit.train.arguments.add_train_arguments`, so names, defaults and choices stay one definition)
    and the range test's own."""
    template = argparse.ArgumentParser(add_help=False)
    add_train_arguments(template)
    # argparse has no public way to list a parser's arguments; _actions is stable since Python 3.2.
    by_dest = {action.dest: action for action in template._actions}
    for title, dests in _TRAINER_FLAGS.items():
        group = parser.add_argument_group(title)
        for dest in dests:
            action = by_dest[dest]  # every shared flag is a plain "store" flag: these fields define it
            fields = ("dest", "type", "default", "choices", "help", "metavar")
            kwargs: dict[str, Any] = {k: getattr(action, k) for k in fields if getattr(action, k) is not None}
            group.add_argument(*action.option_strings, **kwargs)
    g = parser.add_argument_group("range test")
    d = RangeTestConfig()
    g.add_argument("--start-lr", type=float, default=d.start_lr, help="first LR of the ramp (default: 1e-7)")
    g.add_argument("--end-lr", type=float, default=d.end_lr, help="last LR of the ramp (default: 10)")
    g.add_argument("--num-steps", type=int, default=d.num_steps, help="optimizer updates, one per LR (default: 100)")
    g.add_argument("--smoothing", type=float, default=d.smoothing, help="EMA beta of the smoothed loss (default: 0.98)")
    g.add_argument(
        "--divergence-factor",
        type=float,
        default=d.divergence_factor,
        help="stop when the smoothed loss exceeds this times its minimum so far (default: 4)",
    )
    g = parser.add_argument_group("output")
    g.add_argument("-o", "--output", default="find_lr.png", metavar="PNG", help="plot to write (default: find_lr.png)")
    g.add_argument("--csv", metavar="FILE", help="also write lr,loss,smoothed_loss for every update")


def _validate(config: TrainConfig, test: RangeTestConfig) -> None:
    """Values the range test cannot run with; errors name the flag and the value."""
    if not (math.isfinite(test.start_lr) and test.start_lr > 0):
        raise FindLRError(f"--start-lr must be a finite number > 0, got --start-lr={test.start_lr!r}")
    if not math.isfinite(test.end_lr):
        raise FindLRError(f"--end-lr must be finite, got --end-lr={test.end_lr!r}")
    if test.start_lr >= test.end_lr:
        raise FindLRError(
            f"--start-lr must be < --end-lr, got --start-lr={test.start_lr!r} >= --end-lr={test.end_lr!r}"
        )
    if test.num_steps < 2:
        raise FindLRError(f"--num-steps must be >= 2, got --num-steps={test.num_steps}")
    if not 0.0 <= test.smoothing < 1.0:
        raise FindLRError(f"--smoothing must be in [0, 1), got --smoothing={test.smoothing!r}")
    if not (math.isfinite(test.divergence_factor) and test.divergence_factor > 1.0):
        raise FindLRError(
            f"--divergence-factor must be a finite number > 1, got --divergence-factor={test.divergence_factor!r}"
        )
    for dest in ("batch_size", "sequence_length"):
        flag, value = "--" + dest.replace("_", "-"), getattr(config.batch, dest)
        if value < 1:
            raise FindLRError(f"{flag} must be >= 1, got {flag}={value}")
    threads = config.parallel.threads
    if threads is not None and threads < 1:
        raise FindLRError(f"--threads must be >= 1, got --threads={threads}")
    if config.optimizer.grad_clip < 0:
        raise FindLRError(f"--grad-clip must be >= 0 (0 disables), got --grad-clip={config.optimizer.grad_clip!r}")


# ----------------------------------------------------------------------------- analysis (pure numpy)


class BiasCorrectedEMA:
    """The smoothed loss, one value at a time (Adam's bias-corrected first moment, on the loss):

    ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i`` with ``avg_{-1} = 0``, and
    ``smoothed_i = avg_i / (1 - beta ** (i + 1))``. Equivalently
    ``smoothed_i = sum_j beta^(i-j) loss_j / sum_j beta^(i-j)`` (``j = 0..i``): a weighted mean of the
    losses so far, so ``smoothed_0 = loss_0`` and ``beta = 0`` gives the raw losses.
    """

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self.avg = 0.0
        self.count = 0

    def update(self, loss: float) -> float:
        """Take ``loss_i``; return ``smoothed_i``."""
        self.avg = self.beta * self.avg + (1.0 - self.beta) * loss
        self.count += 1
        return self.avg / (1.0 - self.beta**self.count)


def smooth_losses(losses: np.ndarray | list[float], beta: float) -> np.ndarray:
    """:class:`BiasCorrectedEMA` over a whole sequence of losses."""
    ema = BiasCorrectedEMA(beta)
    return np.array([ema.update(float(loss)) for loss in losses], dtype=np.float64)


def steepest_index(lrs: np.ndarray, smoothed: np.ndarray) -> int:
    """Index of the steepest descent: ``argmin_i d smoothed / d ln lr`` (``np.gradient``, second order inside).

    Searched over ``i`` from ``max(1, 10% of the points)`` up to the minimum of ``smoothed`` and before the
    last point: the start is EMA warm-up noise, past the minimum the loss rises, and the two end points
    have only one-sided differences. A scan too short for that window searches every interior point.
    """
    n = len(smoothed)
    if n < 3:
        return int(np.argmin(smoothed))
    slope = np.gradient(smoothed, np.log(lrs))
    low = max(1, int(round(_SKIP_START_FRACTION * n)))
    high = min(int(np.argmin(smoothed)), n - 2)
    if low > high:
        low, high = 1, n - 2
    return low + int(np.argmin(slope[low : high + 1]))


@dataclass
class RangeTest:
    """One LR range test. ``lrs``, ``losses``, ``smoothed`` hold every recorded update (finite losses).

    Attributes:
        num_steps: updates planned (the ramp's length); ``len(lrs) < num_steps`` when it stopped early.
        stop_reason: ``"completed"``, ``"diverged"`` or ``"non-finite loss"``.
        stop_lr: the LR of the update at which it stopped (the last LR when it completed).
        steepest: index of the steepest descent (:func:`steepest_index`).
        minimum: index of the minimum smoothed loss.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    start_lr: float
    end_lr: float
    num_steps: int
    stop_reason: str
    stop_lr: float
    steepest: int
    minimum: int
    seconds: float = 0.0

    @property
    def steepest_lr(self) -> float:
        return float(self.lrs[self.steepest])

    @property
    def min_loss_lr(self) -> float:
        return float(self.lrs[self.minimum])

    @property
    def min_loss_lr_over_10(self) -> float:
        """The other common heuristic, ``min_loss_lr / 10`` (printed for comparison, not suggested)."""
        return self.min_loss_lr / 10.0

    @property
    def suggested_lr(self) -> float:
        """The suggested peak LR: the steepest-descent LR, where the loss falls fastest per ``ln lr``.

        Not ``min_loss_lr / 10``: the smoothed loss is an EMA whose memory is ``1 / (1 - beta)`` updates
        (50 at the default ``beta = 0.98``, half of a 100-step scan), so its minimum comes well after the
        raw loss has stopped improving: on the tiny GPT-2 with AdamW the raw loss turns unstable near
        ``4e-2`` while the smoothed minimum is near ``6e-1``, and a tenth of it is already past the edge.
        The steepest point lies inside the falling part by construction (it is searched only before the
        minimum) and, on that run, a decade below the instability.
        """
        return self.steepest_lr


# ----------------------------------------------------------------------------- the test


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def find_lr(
    config: TrainConfig | argparse.Namespace, test: RangeTestConfig | None = None, progress: bool = False
) -> RangeTest:
    """Run the range test ``test`` on the model, data, batch and optimizer of ``config``; nothing is written.

    ``config`` may also be ``lrkit find-lr``'s parsed flags (:func:`add_find_lr_arguments`), which give both.

    The optimizer is the trainer's (:func:`lrkit.train.components.build_optimizer`, two param groups) with base
    LR 1, so ``LambdaLR``'s factor ``base_lr * ramp(t)`` is exactly the ramp's LR.

    Raises:
        FindLRError: a bad value, or a loss that is not finite at the very first LR.
    """
    if not isinstance(config, TrainConfig):  # find-lr's parsed flags
        config, test = configs_from_args(config)
    test = test if test is not None else RangeTestConfig()
    _validate(config, test)
    batch = config.batch
    if config.parallel.threads:
        torch.set_num_threads(config.parallel.threads)
    device = _device(config.parallel.device)
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as the trainer: denormals in Adam's state are ~10x slower on CPU
    tokens, _ = train_val_split(load_corpus(config.data.path))
    seed = config.model.seed
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    model: Any = build_train_model(config.model)
    block_size = model.config.block_size
    if batch.sequence_length > block_size:
        raise FindLRError(
            f"--sequence-length must be <= the model's block_size={block_size} "
            f"({config.model.name}/{config.model.preset}), got --sequence-length={batch.sequence_length}"
        )
    if int(tokens.max()) >= model.config.vocab_size:
        raise FindLRError(
            f"--data has token id {int(tokens.max())} >= the model's vocab_size={model.config.vocab_size}"
        )
    pm = wrap_model(model, DistContext(device=device))
    # Base LR 1: the ramp's factor is the LR (a real config, not the trainer's flags).
    at_one = replace(config, schedule=replace(config.schedule, lr=1.0))
    optimizer = build_optimizer(at_one, pm)
    ramp = ExponentialRamp(test.start_lr, test.end_lr, test.num_steps)
    scheduler = LambdaLR(optimizer, ramp)
    loader = TokenLoader(tokens, batch.batch_size, batch.sequence_length)
    params = [p for p in model.parameters() if p.requires_grad]

    bar: Any = None
    if progress and sys.stdout.isatty():
        from tqdm import tqdm

        bar = tqdm(total=test.num_steps, unit="lr", dynamic_ncols=True, leave=False)
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    ema, best = BiasCorrectedEMA(test.smoothing), math.inf
    stop_reason, stop_lr = "completed", float(ramp(test.num_steps - 1))
    t0 = time.perf_counter()
    pm.module.train()
    try:
        for _ in range(test.num_steps):
            lr = float(optimizer.param_groups[0]["lr"])
            x, y = loader.next_batch()
            _, loss_tensor = pm.module(x.to(device), y.to(device))
            assert loss_tensor is not None
            loss = float(loss_tensor.detach())
            if not math.isfinite(loss):
                stop_reason, stop_lr = "non-finite loss", lr
                break
            smooth = ema.update(loss)
            lrs.append(lr)
            losses.append(loss)
            smoothed.append(smooth)
            best = min(best, smooth)
            if bar is not None:
                bar.set_postfix_str(f"lr {lr:.2e} loss {smooth:.4f}", refresh=False)
                bar.update(1)
            if smooth > test.divergence_factor * best:
                stop_reason, stop_lr = "diverged", lr
                break
            optimizer.zero_grad(set_to_none=True)
            loss_tensor.backward()
            clip_grad_norm(params, config.optimizer.grad_clip)
            optimizer.step()
            scheduler.step()
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    if not lrs:
        raise FindLRError(f"the loss is not finite at the first LR, --start-lr={test.start_lr!r}: check the model")
    lr_array, smooth_array = np.asarray(lrs), np.asarray(smoothed)
    return RangeTest(
        lrs=lr_array,
        losses=np.asarray(losses),
        smoothed=smooth_array,
        start_lr=test.start_lr,
        end_lr=test.end_lr,
        num_steps=test.num_steps,
        stop_reason=stop_reason,
        stop_lr=stop_lr,
        steepest=steepest_index(lr_array, smooth_array),
        minimum=int(np.argmin(smooth_array)),
        seconds=seconds,
    )


# ----------------------------------------------------------------------------- output


def _decade_rows(result: RangeTest) -> list[int]:
    """The recorded index nearest (in log LR) to each power of ten in the scan, plus the first and last."""
    logs = np.log10(result.lrs)
    rows = {0, len(logs) - 1}
    for decade in range(math.ceil(logs[0]), math.floor(logs[-1]) + 1):
        rows.add(int(np.argmin(np.abs(logs - decade))))
    return sorted(rows)


def format_summary(result: RangeTest, config: TrainConfig, test: RangeTestConfig) -> str:
    """The table and the three points printed by ``lrkit find-lr``."""
    done = len(result.lrs)
    model, batch = config.model, config.batch
    lines = [
        f"lrkit find-lr: {model.name}/{model.preset}, {config.optimizer.name}, batch {batch.batch_size} x "
        f"{batch.sequence_length} tokens, LR {result.start_lr:.0e} -> {result.end_lr:.0e} "
        f"over {result.num_steps} steps",
    ]
    if result.stop_reason == "diverged":
        lines.append(
            f"diverged at step {done}/{result.num_steps} ({result.seconds:.1f} s): smoothed loss "
            f"{result.smoothed[-1]:.4f} > {test.divergence_factor:g} x best {result.smoothed[result.minimum]:.4f}"
        )
    elif result.stop_reason == "non-finite loss":
        lines.append(f"stopped at step {done + 1}/{result.num_steps} ({result.seconds:.1f} s): the loss is not finite")
    else:
        lines.append(f"completed {done} steps ({result.seconds:.1f} s) without diverging: try a larger --end-lr")
    lines += ["", f"  {'step':>5}  {'lr':>9}  {'loss':>8}  {'smoothed':>8}"]
    marks = {result.steepest: "steepest", result.minimum: "minimum"}
    rows = sorted(set(_decade_rows(result)) | set(marks))
    for i in rows:
        note = marks.get(i, "")
        lines.append(
            f"  {i:>5}  {result.lrs[i]:>9.2e}  {result.losses[i]:>8.4f}  {result.smoothed[i]:>8.4f}  {note}".rstrip()
        )
    stop_note = {"diverged": "diverged", "non-finite loss": "loss not finite", "completed": "end of the ramp"}
    lines += [
        "",
        f"  steepest descent  lr {result.steepest_lr:.2e}  (smoothed loss falls fastest per ln lr)",
        f"  minimum loss      lr {result.min_loss_lr:.2e}  (smoothed loss {result.smoothed[result.minimum]:.4f})",
        f"  divergence        lr {result.stop_lr:.2e}  ({stop_note[result.stop_reason]})",
        "",
        f"suggested peak LR: {result.suggested_lr:.2e}  (the steepest-descent point)",
        f"  min-loss LR / 10 = {result.min_loss_lr_over_10:.2e} is not suggested: the smoothed loss lags the raw loss "
        f"by ~{1.0 / (1.0 - test.smoothing):.0f} steps",
        "  (EMA), so its minimum sits past where the raw loss stops improving",
    ]
    return "\n".join(lines)


def write_csv(result: RangeTest, path: str | Path) -> None:
    """``lr,loss,smoothed_loss``, one row per recorded update, floats at full precision."""
    with open(path, "w") as f:
        f.write("lr,loss,smoothed_loss\n")
        for lr, loss, smooth in zip(result.lrs.tolist(), result.losses.tolist(), result.smoothed.tolist()):
            f.write(f"{lr!r},{loss!r},{smooth!r}\n")


def plot_range_test(result: RangeTest, path: str | Path) -> Path:
    """Loss against LR (log x): raw and smoothed loss, steepest, minimum and divergence marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    ax.plot(result.lrs, result.losses, color="0.7", linewidth=0.8, label="loss")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=1.8, label="smoothed loss")
    s, m = result.steepest, result.minimum
    ax.plot(
        [result.lrs[s]],
        [result.smoothed[s]],
        "o",
        color="C2",
        label=f"steepest descent, suggested ({result.lrs[s]:.2e})",
    )
    ax.plot([result.lrs[m]], [result.smoothed[m]], "s", color="C1", label=f"minimum loss ({result.lrs[m]:.2e})")
    ax.axvline(
        result.stop_lr, color="C3", linestyle="--", linewidth=1, label=f"{result.stop_reason} ({result.stop_lr:.2e})"
    )
    # Keep the falling part readable: the diverging tail may be many times higher.
    head = np.concatenate([result.smoothed[: m + 1], result.losses[: m + 1]])
    low, high = float(head.min()), float(head.max())
    span = max(high - low, 1e-6 * max(abs(high), 1.0))
    ax.set_ylim(low - 0.05 * span, high + 0.3 * span)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"LR range test: {len(result.lrs)} of {result.num_steps} steps, {result.stop_reason}", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def run_find_lr(args: argparse.Namespace) -> int:
    """Entry point behind ``lrkit find-lr``: run, print the summary, write the plot (and CSV); exit code."""
    try:
        config, test = configs_from_args(args)
        result = find_lr(config, test, progress=True)
    except USER_ERRORS as err:
        print(f"lrkit find-lr: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(result, config, test))
    plot_range_test(result, args.output)
    print(f"wrote {args.output}")
    if args.csv:
        write_csv(result, args.csv)
        print(f"wrote {args.csv}")
    return 0
