"""``lrkit preview`` and ``lrkit plot``: look at a schedule before training on it.

``lrkit preview ...`` prints the key points of the curve (step 0, warmup end, peak, every
phase boundary, the last step and the first step past the end), a sparkline, and checks
(the peak is reached, the final LR equals the floor and stays there, no LR is negative,
phase joins are continuous); it exits 1 when a check fails. ``lrkit plot ... -o lr.png``
draws the curve with its phases; ``--csv FILE`` (both) writes ``step,lr``.

Schedules come from the shared flags of :mod:`lrkit.tools.flags`. The ``lrkit`` command itself
(:mod:`lrkit.cli`) adds these two subcommands beside ``train``, ``demo``, ``align`` and ``find-lr``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lrkit.schedules import Phase
from lrkit.schedules.clock import Quantity, RateError, Rates, StepView, steps_to_reach
from lrkit.spec.clocked import spec_clock_unit
from lrkit.tools.flags import add_clock_arguments, add_schedule_arguments, spec_from_args, total_length

__all__ = [
    "Curve",
    "add_plot_arguments",
    "add_preview_arguments",
    "curve_from_spec",
    "run_checks",
    "run_plot",
    "run_preview",
]

_REL_TOL = 1e-12
_SPARK = "▁▂▃▄▅▆▇█"
_SPARK_ASCII = "_.-~=*#@"


# ----------------------------------------------------------------------------- the curve


class _PreviewOptimizer:
    """Just enough optimizer to step a scheduler: one param group, no parameters, no torch."""

    def __init__(self, lr: float) -> None:
        self.defaults: dict[str, Any] = {"lr": lr, "betas": (0.9, 0.999)}
        self.param_groups: list[dict[str, Any]] = [{"lr": lr, "betas": (0.9, 0.999)}]


@dataclass
class _Declared:
    """What a schedule says about itself: peak, end (floor), phases and intended jumps."""

    peak: tuple[float, float] | None
    end: tuple[float, float] | None
    phases: list[Phase]
    jumps: list[int]
    holds: bool = True  # False: the schedule is not defined past its end (OneCycleLR raises)


@dataclass
class Curve:
    """A schedule evaluated at steps ``0..horizon`` with what it declares about itself.

    Attributes:
        lrs: LR at every step ``0..horizon`` (NaN where the scheduler refused to step).
        run_end: the last step of the run (``--total-steps``, else the schedule's end).
        expected_peak: the LR the schedule should peak at (declared, else the optimizer's LR).
    """

    label: str
    spec: dict[str, Any]
    lrs: np.ndarray
    run_end: int
    expected_peak: float
    declared: _Declared
    stopped_at: int | None = None  # the step at which stepping raised, if it did
    note: str = ""

    @property
    def horizon(self) -> int:
        return len(self.lrs) - 1


def _build(spec: dict[str, Any], lr: float) -> Any:
    import lrkit  # the torch binding: imported only here

    return lrkit.build_scheduler(spec, _PreviewOptimizer(lr))


def _declared(spec: dict[str, Any], lr: float) -> _Declared:
    """Declared peak / end / phases of a spec, recursively through SequentialLR."""
    from lrkit.schedulers.llm import schedule_of

    kind = spec.get("type")
    if kind == "SequentialLR":
        return _declared_sequence(spec, lr)
    pure = schedule_of(_build(spec, lr))
    if pure is not None:
        return _Declared(pure.peak(), pure.end(), pure.phases(), pure.jumps())
    a = {k: v for k, v in spec.items() if k != "type"}
    phases = [Phase(str(kind), 0)]
    if kind == "CosineAnnealingLR":
        return _Declared(None, (a["T_max"], a.get("eta_min", 0.0)), phases, [])
    if kind == "LinearLR":
        return _Declared(None, (a.get("total_iters", 5), lr * a.get("end_factor", 1.0)), phases, [])
    if kind == "PolynomialLR":
        return _Declared(None, (a.get("total_iters", 5), 0.0), phases, [])
    if kind == "ConstantLR":
        return _Declared(None, (a.get("total_iters", 5), lr), phases, [])
    if kind == "OneCycleLR":
        max_lr = _first(a["max_lr"])
        total = a["total_steps"] if a.get("total_steps") else a["epochs"] * a["steps_per_epoch"]
        floor = max_lr / a.get("div_factor", 25.0) / a.get("final_div_factor", 1e4)
        peak_step = float(a.get("pct_start", 0.3) * total) - 1
        peak_step = round(peak_step) if abs(peak_step - round(peak_step)) < 1e-9 else peak_step
        return _Declared((peak_step, max_lr), (total - 1, floor), phases, [], holds=False)
    if kind == "CyclicLR":
        return _Declared((a.get("step_size_up", 2000), _first(a["max_lr"])), None, phases, [])
    return _Declared(None, None, phases, [])


def _first(value: Any) -> float:
    return float(value[0] if isinstance(value, (list, tuple)) else value)


def _declared_sequence(spec: dict[str, Any], lr: float) -> _Declared:
    starts = [0, *spec["milestones"]]
    stops = [*spec["milestones"], math.inf]
    phases: list[Phase] = []
    jumps: list[int] = []
    peaks: list[tuple[float, float]] = []
    end = None
    for child, start, stop in zip(spec["schedulers"], starts, stops):
        d = _declared(child, lr)
        phases += [Phase(p.name, start + p.start) for p in d.phases if start + p.start < stop]
        jumps += [start + j for j in d.jumps if start + j < stop]
        if d.peak is not None and start + d.peak[0] < stop:
            peaks.append((start + d.peak[0], d.peak[1]))
        end = None if d.end is None else (start + d.end[0], d.end[1])
    peak = max(peaks, key=lambda p: (p[1], -p[0])) if peaks else None
    return _Declared(peak, end, phases, jumps, d.holds)


def _step_curve(scheduler: Any, horizon: int) -> tuple[np.ndarray, int | None, str]:
    """Step ``scheduler`` to ``horizon``; also the step where it raised (OneCycleLR past its end) and why."""
    lrs = np.full(horizon + 1, np.nan)
    lrs[0] = scheduler.get_last_lr()[0]
    for step in range(1, horizon + 1):
        try:
            scheduler.step()
        except ValueError as err:
            return lrs, step, str(err)
        lrs[step] = scheduler.get_last_lr()[0]
    return lrs, None, ""


def curve_from_spec(spec: dict[str, Any], lr: float, total_steps: int | None = None) -> Curve:
    """Evaluate ``spec`` on a one-group optimizer with LR ``lr`` over the run and one step past it.

    Schedules backed by :mod:`lrkit.schedules` are evaluated in one vectorised call; the
    torch-style classes are stepped. Raises ValueError/TypeError for a spec that does not build.
    """
    from lrkit.schedulers.greedy import GreedyLR
    from lrkit.schedulers.llm import schedule_of
    from lrkit.schedulers.torch_compat import ReduceLROnPlateau

    scheduler = _build(spec, lr)
    if isinstance(scheduler, (ReduceLROnPlateau, GreedyLR)):
        raise ValueError(f"{type(scheduler).__name__} follows a metric: there is no curve to preview")
    declared = _declared(spec, lr)
    run_end = total_steps if total_steps is not None else (None if declared.end is None else int(declared.end[0]))
    if run_end is None or (total_steps is None and run_end < 1):
        raise ValueError(f"{spec.get('type')} does not end: pass --total-steps to say how far to look")
    if run_end < 1:
        raise ValueError(f"--total-steps must be >= 1, got {run_end}")
    horizon = max(run_end, int(declared.end[0]) if declared.end else 0) + 1
    pure = schedule_of(scheduler)
    stopped_at, note = None, ""
    if pure is not None:
        lrs = pure(np.arange(horizon + 1))
    else:
        lrs, stopped_at, note = _step_curve(scheduler, horizon)
    expected = declared.peak[1] if declared.peak is not None else lr
    declared.phases = [p for p in declared.phases if p.start <= horizon]
    return Curve(_label(spec), spec, lrs, run_end, expected, declared, stopped_at, note)


def _label(spec: dict[str, Any]) -> str:
    if spec.get("type") == "HFSchedule":
        return f"HFSchedule {spec.get('name')!r} (transformers)"
    if spec.get("type") == "SequentialLR":
        return "SequentialLR(" + ", ".join(str(c.get("type")) for c in spec["schedulers"]) + ")"
    return str(spec.get("type"))


# ----------------------------------------------------------------------------- checks


@dataclass
class Check:
    """One preview check: ``status`` is ``ok``, ``FAIL`` or ``skip``."""

    status: str
    message: str


def _close(a: float, b: float, scale: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_REL_TOL * scale)


def run_checks(curve: Curve) -> list[Check]:
    """Peak reached, final LR equals the floor and stays there, no negative LR, continuous joins."""
    lrs, end, peak = curve.lrs, curve.run_end, curve.expected_peak
    valid = lrs[~np.isnan(lrs)]
    checks = []
    run = lrs[: end + 1]
    top = float(np.nanmax(run))
    at = int(np.nanargmax(run))
    declared = curve.declared.peak
    if not _close(top, peak, peak):
        checks.append(Check("FAIL", f"peak {peak:.6e} not reached: the highest LR is {top:.6e} (step {at})"))
    elif declared is not None and float(declared[0]).is_integer() and 0 <= declared[0] <= end:
        step = int(declared[0])
        ok = _close(float(lrs[step]), peak, peak)
        status = "ok" if ok else "FAIL"
        what = "reached" if ok else f"declared but not reached (LR {lrs[step]:.6e})"
        checks.append(Check(status, f"peak {peak:.6e} {what} at step {step}"))
    else:
        checks.append(Check("ok", f"peak {peak:.6e} reached at step {at}"))
    floor = curve.declared.end
    if floor is None:
        checks.append(Check("skip", "final LR: the schedule declares no floor"))
        checks.append(Check("skip", "held after the end: the schedule declares no end"))
    else:
        floor_step, floor_lr = int(floor[0]), float(floor[1])
        final = float(lrs[end])
        if _close(final, floor_lr, peak):
            checks.append(Check("ok", f"final LR at step {end} equals the floor {floor_lr:.6e}"))
        else:
            where = f" (the floor is only reached at step {floor_step})" if floor_step > end else ""
            checks.append(Check("FAIL", f"final LR at step {end} is {final:.6e}, not the floor {floor_lr:.6e}{where}"))
        after = lrs[floor_step:]
        bad = [i for i, v in enumerate(after) if not np.isnan(v) and not _close(float(v), floor_lr, peak)]
        if not curve.declared.holds:
            checks.append(Check("skip", f"held after the end: {curve.label} is not defined past step {floor_step}"))
        elif bad:
            step = floor_step + bad[0]
            rise = "rises above" if lrs[step] > floor_lr else "leaves"
            checks.append(Check("FAIL", f"LR {rise} the floor after its end: step {step} has {lrs[step]:.6e}"))
        else:
            checks.append(Check("ok", f"floor held from step {floor_step} through step {curve.horizon}"))
    negative = np.flatnonzero(valid < 0)
    if negative.size:
        checks.append(Check("FAIL", f"negative LR at step {int(negative[0])}: {valid[negative[0]]:.6e}"))
    else:
        checks.append(Check("ok", f"no negative LR (steps 0..{curve.horizon})"))
    checks.append(_check_joins(curve))
    if curve.stopped_at is not None and curve.stopped_at <= end:
        checks.append(
            Check("FAIL", f"the scheduler raises at step {curve.stopped_at}, before the run ends: {curve.note}")
        )
    return checks


def _check_joins(curve: Curve) -> Check:
    """Each phase join ``b`` continues the left phase's trend: ``lr(b)`` is within one step's change
    of the straight-line extrapolation ``2 lr(b-1) - lr(b-2)`` (joins declared as jumps are skipped).
    """
    lrs, jumps = curve.lrs, set(curve.declared.jumps)
    joins = sorted({p.start for p in curve.declared.phases if 2 <= p.start < curve.horizon} - jumps)
    tol = 1e-9 * curve.expected_peak
    for b in joins:
        left, before, here, after = lrs[b - 1], lrs[b - 2], lrs[b], lrs[b + 1]
        if np.isnan([left, before, here, after]).any():
            continue
        step_change = max(abs(left - before), abs(after - here))
        if abs(here - (2 * left - before)) > step_change + tol:
            return Check("FAIL", f"discontinuous join at step {b}: LR {left:.6e} at {b - 1}, then {here:.6e}")
    extra = f"; intended jumps at {sorted(jumps)[:6]}" if jumps else ""
    return Check("ok", f"phase joins continuous ({len(joins)} joins){extra}")


# ----------------------------------------------------------------------------- output


def _key_points(curve: Curve) -> list[tuple[int, list[str]]]:
    notes: dict[int, list[str]] = {}

    def add(step: int, note: str) -> None:
        if 0 <= step <= curve.horizon:
            notes.setdefault(step, []).append(note)

    add(0, "step 0")
    phases = curve.declared.phases
    for i, phase in enumerate(phases):
        if i and phases[i - 1].name == "warmup":
            add(phase.start, "warmup end")
        add(phase.start, phase.name)
    if curve.declared.peak is not None and float(curve.declared.peak[0]).is_integer():
        add(int(curve.declared.peak[0]), "peak")
    top = int(np.nanargmax(curve.lrs[: curve.run_end + 1]))
    if "peak" not in notes.get(top, []):
        add(top, "highest LR")
    if curve.declared.end is not None:
        add(int(curve.declared.end[0]), "floor")
    add(curve.run_end, "last step")
    add(curve.run_end + 1, "first step past the end")
    return sorted((step, list(dict.fromkeys(n))) for step, n in notes.items())


def _sparkline(lrs: np.ndarray, width: int = 64) -> str:
    chars = _SPARK
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        chars.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        chars = _SPARK_ASCII
    steps = np.unique(np.linspace(0, len(lrs) - 1, min(width, len(lrs))).round().astype(int))
    values = lrs[steps]
    top = np.nanmax(values)
    levels = np.zeros(len(values), dtype=int) if not top > 0 else np.round(values / top * (len(chars) - 1))
    return "".join(" " if np.isnan(v) else chars[int(level)] for v, level in zip(values, levels))


def _print_preview(curve: Curve, checks: list[Check]) -> None:
    print(f"lrkit preview: {curve.label}")
    print(f"  spec: {json.dumps(curve.spec, separators=(', ', ': '))}")
    print()
    print(f"  {'step':>8}  {'lr':>13}  point")
    for step, notes in _key_points(curve):
        print(f"  {step:>8}  {curve.lrs[step]:>13.6e}  {', '.join(notes)}")
    print()
    line = _sparkline(curve.lrs)
    print(f"  {line}")
    print(f"  0{str(curve.horizon).rjust(len(line) - 1)}   (max {np.nanmax(curve.lrs):.2e})")
    print()
    print("  checks:")
    for check in checks:
        print(f"    {check.status:<4}  {check.message}")


def _write_csv(curve: Curve, path: str) -> None:
    with open(path, "w") as f:
        f.write("step,lr\n")
        for step, lr in enumerate(curve.lrs.tolist()):
            f.write(f"{step},{lr!r}\n")


def _plot(curve: Curve, path: str, log_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(curve.horizon + 1)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(steps, curve.lrs, color="C0", linewidth=1.6, label="learning rate")
    top = float(np.nanmax(curve.lrs))
    for phase in curve.declared.phases:
        if phase.start > 0:
            ax.axvline(phase.start, color="0.6", linestyle=":", linewidth=1)
        # vertical label just right of the phase start, at the bottom of the axes
        ax.text(
            phase.start,
            0.03,
            f" {phase.name}",
            rotation=90,
            fontsize=8,
            va="bottom",
            ha="left",
            color="0.3",
            transform=ax.get_xaxis_transform(),
        )
    if curve.declared.peak is not None:
        ax.plot([curve.declared.peak[0]], [curve.declared.peak[1]], "o", color="C1", label="peak")
    if curve.declared.end is not None:
        ax.plot([curve.declared.end[0]], [curve.declared.end[1]], "s", color="C2", label="floor")
    ax.axvline(curve.run_end, color="C3", linestyle="--", linewidth=1, label=f"last step ({curve.run_end})")
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(top=top * 1.08)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    ax.set_xlabel("step (optimizer updates)")
    ax.set_ylabel("learning rate")
    ax.set_title(curve.label, fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- commands


def _curve_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Curve | None:
    try:
        rates = Rates(getattr(args, "tokens_per_step", None), getattr(args, "sequence_length", None))
    except (TypeError, ValueError) as err:
        parser.error(str(err))
    spec = spec_from_args(args, parser, rates)
    try:
        length = total_length(args)
        if spec_clock_unit(spec) is not None:
            return _clocked_curve(spec, float(args.lr), rates, length)
        run_end = None if length is None else steps_to_reach(int(length.amount), 0, rates.per_step(length.unit))
        return curve_from_spec(spec, float(args.lr), run_end)
    except (ValueError, TypeError, KeyError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return None


def _clocked_curve(spec: dict[str, Any], lr: float, rates: Rates, length: Quantity | None) -> Curve:
    """A schedule on the token (sample) clock seen per optimizer step: step ``s`` is at ``s * per_step`` ticks."""
    unit = str(spec["unit"])
    try:
        per_step = rates.per_step(unit)
        run_end = None if length is None else steps_to_reach(int(length.amount), 0, rates.per_step(length.unit))
    except RateError as err:
        raise ValueError(
            f"the schedule counts {unit}: pass --tokens-per-step N (the trainer's --total-batch-size)"
            + (" and --sequence-length N" if unit == "samples" else "")
            + " to show it per optimizer step"
        ) from err
    clocked = _build(spec, lr)
    view = StepView(clocked.clock_schedules[0], per_step)
    curve = curve_from_spec({"type": "PureSchedule", "schedules": view.to_dict()}, lr, run_end)
    label = f"Clocked {spec['schedule'].get('type')} ({unit}: {per_step} per optimizer step)"
    peak = view.peak()
    expected = curve.expected_peak
    if peak is not None and not float(peak[0]).is_integer():  # the peak falls between two steps
        expected = float(max(curve.lrs[math.floor(peak[0])], curve.lrs[math.ceil(peak[0])]))
    return replace(curve, label=label, spec=spec, expected_peak=expected)


def _cmd_preview(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    curve = _curve_from_args(args, parser)
    if curve is None:
        return 2
    checks = run_checks(curve)
    _print_preview(curve, checks)
    if args.csv:
        _write_csv(curve, args.csv)
        print(f"\n  wrote {args.csv}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def _cmd_plot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    curve = _curve_from_args(args, parser)
    if curve is None:
        return 2
    _plot(curve, args.output, args.log_y)
    print(f"wrote {args.output}")
    if args.csv:
        _write_csv(curve, args.csv)
        print(f"wrote {args.csv}")
    return 0


def _add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    add_schedule_arguments(parser.add_argument_group("schedule"))
    add_clock_arguments(parser.add_argument_group("time in tokens or samples"))
    parser.add_argument("--csv", metavar="FILE", help="also write step,lr for every step")


def add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lrkit preview``: the schedule flags, ``--tokens-per-step``, ``--csv``."""
    parser.description = "Print the key points of a schedule, a sparkline and checks; exit 1 if a check fails."
    _add_schedule_flags(parser)
    parser.set_defaults(parser=parser)


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lrkit plot``: those of preview, ``-o``, ``--log-y``."""
    parser.description = "Draw a schedule with matplotlib (phases, peak and floor marked)."
    _add_schedule_flags(parser)
    parser.add_argument("-o", "--output", default="lr.png", metavar="PNG", help="image to write (default: lr.png)")
    parser.add_argument("--log-y", action="store_true", help="logarithmic LR axis")
    parser.set_defaults(parser=parser)


def run_preview(args: argparse.Namespace) -> int:
    """``lrkit preview``: print the key points, a sparkline and the checks; 1 when a check fails, 2 on misuse."""
    return _cmd_preview(args, args.parser)


def run_plot(args: argparse.Namespace) -> int:
    """``lrkit plot``: draw the schedule to ``args.output``; 2 on misuse."""
    return _cmd_plot(args, args.parser)
