"""``lrkit fit-law``, ``lrkit predict`` and ``lrkit tune``: predict the loss of a schedule before training on it.

* ``lrkit fit-law RUN_DIR [RUN_DIR ...] -o law.json [--form mpl|annealing] [--loss train|val]`` reads each run's
  ``metrics.jsonl``, fits the law's constants jointly (:func:`lrkit.schedules.laws.fit_law`) and writes the law file.
* ``lrkit predict --law law.json --lr-scheduler A ... [--lr-scheduler B ...] [-o curves.png]`` predicts the loss
  curve of each schedule; the flags after a ``--lr-scheduler`` belong to it, the ones before the first are shared.
* ``lrkit tune --law law.json --family wsd|cosine --budget 10000|10Btok`` searches the family's parameters for the
  lowest predicted final loss and prints the best schedule's flags.

The run's LR is its param group 0 (``"lr"[0]`` of each record: the group whose peak is ``--lr``). A record of step
``s`` holds the LR of update ``s`` and its train loss, measured before that update (so after ``s - 1`` updates);
a ``val_loss`` is measured after update ``s``. Updates the fp16 scaler skipped (``"skipped": true``) are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lrkit import schedules as S
from lrkit.schedules import laws
from lrkit.schedules.clock import QuantityError, RateError, Rates, parse_quantity, steps_to_reach
from lrkit.tools.flags import _FLAG_TABLE, add_clock_arguments, add_schedule_arguments
from lrkit.tools.preview import _curve_from_args, _output_error

__all__ = [
    "add_fit_law_arguments",
    "add_predict_arguments",
    "add_tune_arguments",
    "read_run",
    "run_fit_law",
    "run_predict",
    "run_tune",
    "tune_candidates",
]

#: the longest schedule ``lrkit predict`` / ``lrkit tune`` evaluates at every update
MAX_STEPS = 10_000_000
#: points of a predicted curve (evenly spaced, plus the last update)
CURVE_POINTS = 400


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------- fit-law


def read_run(run: str | Path, loss: str = "train") -> laws.RunCurve:
    """The LRs and losses of a run directory (or a ``metrics.jsonl`` path) for :func:`laws.fit_law`.

    Raises:
        LawError: no ``metrics.jsonl``, a record without an LR, a gap in the steps, a non-finite loss (naming the
            step), no loss of the kind asked for.
    """
    path = Path(run)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise laws.LawError(f"{run}: no metrics file {str(path)!r} (expected a run directory with metrics.jsonl)")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise laws.LawError(f"{path}: line {number} is not a metrics record with an integer 'step'")
        records.append(record)
    if not records:
        raise laws.LawError(f"{path}: no records")
    records.sort(key=lambda r: r["step"])
    lrs, points, losses = [], [], []
    key = "loss" if loss == "train" else "val_loss"
    done = 0  # updates done before this record
    for record in records:
        step = record["step"]
        lr = record.get("lr")
        if isinstance(lr, list) and lr:
            lr = lr[0]
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise laws.LawError(f"{path}: the record of step {step} has no LR ('lr': {record.get('lr')!r})")
        if record.get("skipped"):
            continue
        value = record.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise laws.LawError(f"{path}: the {key} at step {step} is {value!r}; losses must be finite numbers")
            t = done if loss == "train" else done + 1  # train loss: before this update; val loss: after it
            if t >= 1:
                points.append(t)
                losses.append(float(value))
        lrs.append(float(lr))
        done += 1
    if not points:
        raise laws.LawError(f"{path}: no {key!r} in any record" + (" (try --loss train)" if loss == "val" else ""))
    return laws.RunCurve(str(run), np.array(lrs), np.array(points), np.array(losses))


def decay_arg(text: str) -> float | None:
    """``--decay`` (of ``lrkit fit-law`` and ``make law-check``): ``fit`` (None) or a float in [0, 1)."""
    if text.strip().lower() == "fit":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'fit' or a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected 'fit' or a number in [0, 1), got {text!r}")
    return value


def add_fit_law_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Fit a loss law (loss as a function of the LR schedule) to one or more runs' metrics.jsonl, jointly, "
        "and write it as JSON for lrkit predict / tune / preview --law. Needs scipy (pip install 'lrkit[law]')."
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or metrics.jsonl files)")
    parser.add_argument("-o", "--output", default="law.json", metavar="JSON", help="law file (default: law.json)")
    parser.add_argument(
        "--form",
        choices=laws.FORMS,
        default="mpl",
        help="mpl: multi-power law (Luo et al. 2025); annealing: Tissue et al. 2024 (default: mpl)",
    )
    parser.add_argument(
        "--loss",
        choices=("train", "val"),
        default="train",
        help="fit the train loss of every step or the val loss of the eval steps (default: train)",
    )
    parser.add_argument(
        "--fit-from",
        type=int,
        default=1,
        metavar="UPDATES",
        help="leave out the losses measured after fewer updates than this, e.g. the warmup (default: 1, all)",
    )
    parser.add_argument("--restarts", type=int, default=8, help="random starts of the fit (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starts (default: 0)")
    parser.add_argument(
        "--decay",
        type=decay_arg,
        default=None,
        metavar="LAMBDA|fit",
        help="annealing form: the momentum decay factor lambda, in [0, 1), fixed (the paper used "
        f"{laws.DEFAULT_DECAY} on runs of tens of thousands of updates), or 'fit': fitted with the other constants "
        "(default: fit)",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=128,
        help="loss points per run used by the fit, evenly spaced (default: 128)",
    )
    parser.set_defaults(parser=parser)


def run_fit_law(args: argparse.Namespace) -> int:
    """``lrkit fit-law``: fit, print the constants and the per-run error, write the law file; 2 on bad input."""
    prog = args.parser.prog
    error = _output_error("-o/--output", args.output)
    if error:
        return _fail(prog, error)
    try:
        runs = [read_run(run, args.loss) for run in args.runs]
        started = time.perf_counter()
        law = laws.fit_law(
            runs,
            args.form,
            restarts=args.restarts,
            seed=args.seed,
            decay=args.decay,
            max_points=args.max_points,
            fit_from=args.fit_from,
        )
    except laws.LawError as err:
        return _fail(prog, str(err))
    except ImportError as err:
        return _fail(prog, str(err))
    seconds = time.perf_counter() - started
    import lrkit

    law.lrkit_version = lrkit.__version__
    law.fitted_on = [
        {
            "run": run.name,
            "loss": args.loss,
            "updates": int(run.lrs.size),
            "points": int(run.points.size),
            "peak_lr": float(run.lrs.max()),
            "fit_from": args.fit_from,
        }
        for run in runs
    ]
    try:
        Path(args.output).write_text(law.to_json())
    except OSError as err:
        return _fail(prog, f"cannot write -o/--output {args.output!r}: {err.strerror or err}")
    print(f"lrkit fit-law: {args.form} law on {len(runs)} run(s), {args.loss} loss ({seconds:.1f} s)")
    print("  constants:")
    for name, value in law.constants.items():
        note = ""
        if name == "decay":
            scale = f"a time scale of {1 / (1 - value):.4g} updates"
            note = f"  (fixed: {scale})" if args.decay is not None else f"  (fitted: {scale})"
        print(f"    {name:<6} {value:.6g}{note}")
    late = f"from update {args.fit_from}"  # the fitted points apart, when some were left out
    head = f"  {'run':<40} {'points':>6} {'rms rel err':>12} {'final rel err':>14}"
    print(head + (f"  {'points ' + late:>24} {'rms rel err ' + late:>29}" if args.fit_from > 1 else ""))
    for name, fit in law.fit_error.items():
        line = f"  {name:<40} {fit['points']:>6} {fit['rms_rel']:>12.3%} {fit['final_rel']:>+14.3%}"
        if args.fit_from > 1:
            line += f"  {fit['points_fitted']:>24} {fit['rms_rel_fitted']:>29.3%}"
        print(line)
    print(f"wrote {args.output}")
    return 0


# ----------------------------------------------------------------------------- predict


class _Grouped(argparse.Action):
    """A schedule flag of ``lrkit predict``: each ``--lr-scheduler`` starts a schedule; the flags after it are its
    own, the flags before the first are shared by all."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        if getattr(namespace, "law_groups", None) is None:
            namespace.law_groups = []
            namespace.law_shared = {}
        if self.dest == "lr_scheduler":
            namespace.law_groups.append({"lr_scheduler": values})
        elif namespace.law_groups:
            namespace.law_groups[-1][self.dest] = values
        else:
            namespace.law_shared[self.dest] = values


class _GroupedAdder:
    def __init__(self, group: Any) -> None:
        self.group = group

    def add_argument(self, *names: str, **kwargs: Any) -> None:
        self.group.add_argument(*names, **{**kwargs, "action": _Grouped})


def _schedule_namespaces(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One namespace of schedule flags per ``--lr-scheduler`` (shared flags, then its own)."""
    dests = [names[0][2:].replace("-", "_") for names, _ in _FLAG_TABLE]
    base: dict[str, Any] = dict.fromkeys(dests)
    base["lr"] = 1e-3
    base["tokens_per_step"] = getattr(args, "tokens_per_step", None)
    base["sequence_length"] = getattr(args, "sequence_length", None)
    shared = getattr(args, "law_shared", None) or {}
    return [argparse.Namespace(**{**base, **shared, **group}) for group in getattr(args, "law_groups", None) or []]


def _schedule_lrs(ns: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str, np.ndarray] | None:
    """(label, the LR of every update) of one schedule's flags; None after printing an error."""
    curve = _curve_from_args(ns, parser)
    if curve is None:
        return None
    if curve.run_end > MAX_STEPS:
        print(f"{parser.prog}: error: {curve.run_end} steps is too long to predict (at most {MAX_STEPS})")
        return None
    choice = ns.lr_scheduler
    name = choice if isinstance(choice, str) else str(choice.get("type"))
    own = [f"{k}={v}" for k, v in vars(ns).items() if v is not None and k not in ("lr_scheduler", "parser")]
    label = f"{name} ({', '.join(own)})" if own else name
    lrs = np.asarray(curve.evaluate(np.arange(curve.run_end, dtype=np.int64)), dtype=np.float64)
    return label, lrs  # update s uses the schedule's LR at step s - 1


def _curve_points(total: int) -> np.ndarray:
    return np.unique(np.concatenate([np.linspace(1, total, min(total, CURVE_POINTS)).round(), [total]])).astype(
        np.int64
    )


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Predict the loss curve of one or more schedules with a fitted law (lrkit fit-law). Each --lr-scheduler "
        "starts a schedule: the schedule flags after it are its own, those before the first are shared. Example: "
        "lrkit predict --law law.json --lr 3e-3 --total-steps 10000 --lr-scheduler cosine --min-lr 3e-4 "
        "--lr-scheduler wsd --decay-fraction 0.2 -o predicted.png"
    )
    parser.add_argument("--law", required=True, metavar="JSON", help="law file written by lrkit fit-law")
    parser.add_argument("-o", "--output", metavar="PNG", help="also draw the curves (top) and the LRs (beneath)")
    parser.add_argument("--csv", metavar="FILE", help="also write schedule,update,lr,predicted_loss")
    add_schedule_arguments(_GroupedAdder(parser.add_argument_group("schedules (repeat --lr-scheduler)")))
    add_clock_arguments(parser.add_argument_group("time in tokens or samples"))
    parser.set_defaults(parser=parser)


def run_predict(args: argparse.Namespace) -> int:
    """``lrkit predict``: the table of predicted final losses, and the curves to ``-o`` / ``--csv``; 2 on misuse."""
    parser = args.parser
    prog = parser.prog
    for flag, path in (("-o/--output", args.output), ("--csv", args.csv)):
        error = None if path is None else _output_error(flag, path)
        if error:
            return _fail(prog, error)
    try:
        law = laws.load_law(args.law)
    except laws.LawError as err:
        return _fail(prog, str(err))
    spaces = _schedule_namespaces(args)
    if not spaces:
        return _fail(prog, "give at least one --lr-scheduler (each one starts a schedule)")
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    for ns in spaces:
        got = _schedule_lrs(ns, parser)
        if got is None:
            return 2
        label, lrs = got
        points = _curve_points(lrs.size)
        rows.append((label, lrs, points, laws.predict(law, lrs, points)))
    best = min(float(r[3][-1]) for r in rows)
    print(f"lrkit predict: {law.form} law from {args.law}")
    print(f"  {'#':>2}  {'updates':>9}  {'final loss':>10}  {'vs best':>8}  schedule")
    for i, (label, lrs, _, loss) in enumerate(rows, 1):
        final = float(loss[-1])
        print(f"  {i:>2}  {lrs.size:>9}  {final:>10.4f}  {final - best:>+8.4f}  {label}")
    if args.csv:
        try:
            with open(args.csv, "w") as f:
                f.write("schedule,update,lr,predicted_loss\n")
                for i, (_, lrs, points, loss) in enumerate(rows, 1):
                    at = lrs[points - 1].tolist()
                    f.writelines(f"{i},{t},{lr!r},{v!r}\n" for t, lr, v in zip(points.tolist(), at, loss.tolist()))
        except OSError as err:
            return _fail(prog, f"cannot write --csv {args.csv!r}: {err.strerror or err}")
        print(f"wrote {args.csv}")
    if args.output:
        try:
            _plot_predictions(rows, args.output, f"{law.form} law ({os.path.basename(args.law)})")
        except OSError as err:
            return _fail(prog, f"cannot write -o/--output {args.output!r}: {err.strerror or err}")
        print(f"wrote {args.output}")
    return 0


def _plot_predictions(rows: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for i, (label, lrs, points, loss) in enumerate(rows):
        ok = np.isfinite(loss)
        short = label if len(label) <= 100 else label[:97] + "..."
        top.plot(points[ok], loss[ok], color=f"C{i}", lw=1.5, label=f"{short}: {float(loss[-1]):.4f}")
        step = max(1, lrs.size // 4000)
        updates = np.arange(1, lrs.size + 1)[::step]
        bottom.plot(updates, lrs[::step], color=f"C{i}", lw=1.2)
    # the y range of the last 90% of each run: the first updates (a steep fall from a tiny LR area) would flatten it
    late = [r[3][(r[2] >= 0.1 * r[1].size) & np.isfinite(r[3])] for r in rows]
    finite = np.concatenate(late)
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        top.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
    top.set_ylabel("predicted loss")
    top.set_title(title, fontsize=10)
    top.legend(loc="best", fontsize=7)
    top.grid(alpha=0.3)
    bottom.set_xlabel("update")
    bottom.set_ylabel("learning rate")
    bottom.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path)
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- tune


@dataclass(frozen=True)
class Candidate:
    """One schedule of a family: its flags (``--lr-scheduler ...``) and its pure schedule."""

    flags: tuple[str, ...]
    schedule: S.Schedule


def _floats(text: str) -> list[float]:
    try:
        return [float(part) for part in text.replace(",", " ").split()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.1,0.2, got {text!r}") from err


def tune_candidates(
    family: str,
    peak_lr: float,
    total: int,
    warmups: Sequence[float],
    decay_fractions: Sequence[float] = (),
    shapes: Sequence[str] = (),
    floors: Sequence[float] = (),
    min_lr: float = 0.0,
) -> list[Candidate]:
    """Every schedule of ``family`` on the grid: warmup fractions of ``total`` x (WSD) decay fractions x shapes,
    or (cosine) floors as fractions of ``peak_lr``. Combinations a schedule refuses are left out."""
    out: list[Candidate] = []
    for warm in warmups:
        w = int(round(warm * total))
        head = ("--lr", f"{peak_lr:g}", "--total-steps", str(total), "--warmup-steps", str(w))
        if family == "wsd":
            for fraction in decay_fractions:
                d = max(1, int(round(fraction * total)))
                for shape in shapes:
                    floor = min_lr if shape != "exponential" or min_lr > 0 else peak_lr * 1e-2
                    try:
                        sched: S.Schedule = S.WSD(peak_lr, w, total, decay_steps=d, decay_shape=shape, min_lr=floor)
                    except ValueError:
                        continue
                    flags = ("--lr-scheduler", "wsd", *head, "--decay-steps", str(d), "--decay-shape", shape)
                    out.append(Candidate((*flags, "--min-lr", f"{floor:g}"), sched))
        else:
            for fraction in floors:
                floor = fraction * peak_lr
                try:
                    sched = S.WarmupCosine(peak_lr, w, total, min_lr=floor)
                except ValueError:
                    continue
                out.append(Candidate(("--lr-scheduler", "cosine", *head, "--min-lr", f"{floor:g}"), sched))
    return out


def _chunks(candidates: Sequence[Candidate], total: int, rows: int) -> Iterator[np.ndarray]:
    steps = np.arange(total, dtype=np.float64)
    for first in range(0, len(candidates), rows):
        yield np.stack([np.asarray(c.schedule(steps), dtype=np.float64) for c in candidates[first : first + rows]])


def predicted_finals(law: laws.Law, candidates: Sequence[Candidate], total: int) -> np.ndarray:
    """The predicted final loss of every candidate (``total`` updates), evaluated a block of rows at a time."""
    rows = max(1, min(64, (1 << 23) // max(total, 1)))
    return np.concatenate([laws.predict_final(law, block) for block in _chunks(candidates, total, rows)])


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Search a schedule family's parameters for the lowest final loss predicted by a fitted law (lrkit fit-law) "
        "and print the best schedule's flags, ready for --lr-scheduler. The law prefers the shortest warmup it is "
        "offered (a shorter warmup only adds LR area): choose --warmups as the range you would accept."
    )
    parser.add_argument("--law", required=True, metavar="JSON", help="law file written by lrkit fit-law")
    parser.add_argument("--family", choices=("wsd", "cosine"), required=True, help="the schedule family to search")
    parser.add_argument(
        "--budget",
        required=True,
        metavar="Q",
        help="run length: 10000 (steps), 10Btok (with --tokens-per-step), 5Msamples (and --sequence-length)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        help="peak LR, fixed (default: the highest peak of the runs the law was fitted on)",
    )
    parser.add_argument(
        "--warmups",
        type=_floats,
        default=[0.01, 0.02, 0.05],
        help="warmup lengths to try, as fractions of the budget (default: 0.01,0.02,0.05)",
    )
    parser.add_argument(
        "--decay-fractions",
        type=_floats,
        default=[round(0.05 * i, 2) for i in range(1, 20)],
        help="wsd: decay lengths to try, as fractions of the budget (default: 0.05,0.10,...,0.95)",
    )
    parser.add_argument(
        "--shapes",
        type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
        default=["linear", "cosine", "1-sqrt"],
        help=f"wsd: decay shapes to try, of {', '.join(S.DECAY_SHAPES)} (default: linear,cosine,1-sqrt)",
    )
    parser.add_argument("--min-lr", type=float, default=0.0, help="wsd: the floor (default: 0)")
    parser.add_argument(
        "--floors",
        type=_floats,
        default=[0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5],
        help="cosine: floors to try, as fractions of the peak (default: 0,0.01,0.02,0.05,0.1,...,0.5)",
    )
    parser.add_argument("--top", type=int, default=5, help="rows of the ranking to print (default: 5)")
    add_clock_arguments(parser.add_argument_group("time in tokens or samples"))
    parser.set_defaults(parser=parser)


def _budget_steps(args: argparse.Namespace) -> int:
    quantity = parse_quantity(args.budget, "--budget")
    if quantity.unit == "dur":
        raise QuantityError(f"--budget {args.budget} is the run's length: give it in steps, tokens or samples")
    try:
        per_step = Rates(args.tokens_per_step, args.sequence_length).per_step(quantity.unit, "--budget: ")
    except RateError as err:
        raise QuantityError(f"{err}: pass --tokens-per-step N (and --sequence-length N for samples)") from err
    return steps_to_reach(int(quantity.amount), 0, per_step)


def run_tune(args: argparse.Namespace) -> int:
    """``lrkit tune``: rank the family's candidates by predicted final loss, print the best; 2 on misuse."""
    prog = args.parser.prog
    try:
        law = laws.load_law(args.law)
        total = _budget_steps(args)
    except (laws.LawError, QuantityError, ValueError) as err:
        return _fail(prog, str(err))
    if not 2 <= total <= MAX_STEPS:
        return _fail(prog, f"--budget {args.budget} is {total} steps; expected 2..{MAX_STEPS}")
    peak = args.lr
    if peak is None:
        given = [r.get("peak_lr") for r in law.fitted_on if isinstance(r, dict)]
        peaks = [float(p) for p in given if isinstance(p, (int, float)) and p > 0]
        if not peaks:
            return _fail(prog, f"{args.law} does not say the peak LR it was fitted on: pass --lr")
        peak = max(peaks)
    bad = [s for s in args.shapes if s not in S.DECAY_SHAPES]
    if bad:
        return _fail(prog, f"--shapes: unknown shape {bad[0]!r}; choose from {', '.join(S.DECAY_SHAPES)}")
    for flag, values, high in (("--warmups", args.warmups, 1.0), ("--decay-fractions", args.decay_fractions, 1.0)):
        if any(not 0 <= v <= high for v in values):
            return _fail(prog, f"{flag}: fractions must be in [0, {high:g}], got {values}")
    if any(not 0 <= v <= 1 for v in args.floors):
        return _fail(prog, f"--floors: fractions of the peak must be in [0, 1], got {args.floors}")
    candidates = tune_candidates(
        args.family, peak, total, args.warmups, args.decay_fractions, args.shapes, args.floors, args.min_lr
    )
    if not candidates:
        return _fail(prog, "no valid candidate on this grid (warmup + decay longer than the budget?)")
    started = time.perf_counter()
    finals = predicted_finals(law, candidates, total)
    seconds = time.perf_counter() - started
    order = np.argsort(finals)
    print(
        f"lrkit tune: {args.family}, {total} updates, peak LR {peak:g}, {len(candidates)} candidates "
        f"({seconds:.2f} s), {law.form} law from {args.law}"
    )
    print(f"  {'rank':>4}  {'final loss':>10}  flags")
    for rank, i in enumerate(order[: max(1, args.top)], 1):
        print(f"  {rank:>4}  {finals[i]:>10.4f}  {' '.join(candidates[i].flags)}")
    best = candidates[int(order[0])]
    print()
    print("best:")
    print(f"  {' '.join(best.flags)}")
    return 0
