"""``lrkit preview`` and ``lrkit plot``: look at a schedule before training on it.

``lrkit preview ...`` prints the key points of the curve (step 0, warmup end, peak, every
phase boundary, the last step and the first step past the end), a sparkline, and checks
(the peak is reached, the final LR equals the floor and stays there, no LR is negative,
phase joins are continuous); it exits 1 when a check fails. ``lrkit plot ... -o lr.png``
draws the curve with its phases; ``--csv FILE`` (both) writes ``step,lr``.

Bounded at any length: a curve of up to :data:`GRID_POINTS` steps is evaluated at every step; a longer
one on :data:`GRID_POINTS` evenly spaced steps *plus* every key point and its neighbours (step 0, warmup
end, peak, phase starts, jumps, floor, last step, first step past the end), so the checks at the key points
stay exact and 10^9 steps take a fraction of a second. Schedules with a closed form (every lrkit schedule)
are evaluated there directly, up to ``2**53`` steps (where float64 stops counting steps exactly);
torch-style classes (StepLR, OneCycleLR, ...) are stepped one step at a time, up to :data:`MAX_STEPPED`
steps. ``--csv`` streams the steps it writes: the evaluated grid, or every ``--every N``-th step.
Output paths are checked before anything is evaluated.

Schedules come from the shared flags of :mod:`lrkit.tools.flags`. The ``lrkit`` command itself
(:mod:`lrkit.cli`) adds these two subcommands beside ``train``, ``demo``, ``align`` and ``find-lr``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lrkit.schedules import Phase
from lrkit.schedules.clock import Quantity, RateError, Rates, StepView, steps_to_reach
from lrkit.spec.clocked import spec_clock_unit
from lrkit.tools.flags import add_clock_arguments, add_schedule_arguments, spec_from_args, total_length

__all__ = [
    "GRID_POINTS",
    "MAX_STEPPED",
    "MAX_STEPS",
    "MAX_PHASES",
    "Curve",
    "add_plot_arguments",
    "add_preview_arguments",
    "curve_from_spec",
    "run_checks",
    "run_plot",
    "run_preview",
]

_REL_TOL = 1e-12
#: A curve of more steps than this is evaluated on this many evenly spaced steps plus its key points.
GRID_POINTS = 100_001
#: Torch-style schedulers (no closed form) are stepped one step at a time, up to this many steps (a few seconds).
MAX_STEPPED = 1_000_000
#: The longest curve: float64 (the schedules' step type) counts every step exactly up to 2**53.
MAX_STEPS = 2**53
#: Steps evaluated and written per chunk by ``--csv`` (bounded memory at any length).
_CSV_CHUNK = 1 << 16
#: Phase starts and jumps looked at (key points, join checks): the first this many (a schedule may have millions).
MAX_PHASES = 1000
#: Phase boundaries drawn by ``lrkit plot``.
_MAX_PHASE_MARKS = 50
#: Rows of ``lrkit preview``'s table: beyond it, the first and last rows and a count of the rest.
_MAX_ROWS = 60
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
    dropped: int = 0  # phase starts and jumps left out (beyond MAX_PHASES each)


@dataclass
class Curve:
    """A schedule evaluated at ``steps`` (all of ``0..horizon``, or a sampled grid) with what it declares.

    Attributes:
        steps: the steps evaluated, sorted, unique, int64: every step ``0..horizon`` up to
            :data:`GRID_POINTS` steps, else an even grid plus every key point and its neighbours.
        lrs: the LR at each of ``steps`` (NaN where the scheduler refused to step).
        run_end: the last step of the run (``--total-steps``, else the schedule's end).
        expected_peak: the LR the schedule should peak at (declared, else the optimizer's LR).
        horizon: the last step looked at (one past the run's end or the schedule's, whichever is later).
        evaluate: the LR at any int64 array of steps ``<= horizon`` (for ``--csv --every``).
    """

    label: str
    spec: dict[str, Any]
    steps: np.ndarray
    lrs: np.ndarray
    run_end: int
    expected_peak: float
    declared: _Declared
    horizon: int
    evaluate: Callable[[np.ndarray], np.ndarray]
    stopped_at: int | None = None  # the step at which stepping raised, if it did
    note: str = ""

    @property
    def sampled(self) -> bool:
        """True when ``steps`` is a grid, not every step of ``0..horizon``."""
        return len(self.steps) < self.horizon + 1

    def lr(self, step: int) -> float:
        """The LR at ``step``, which must be one of :attr:`steps` (every key point is).

        Raises:
            KeyError: ``step`` was not evaluated.
        """
        i = int(np.searchsorted(self.steps, step))
        if i == len(self.steps) or int(self.steps[i]) != step:
            raise KeyError(f"step {step} is not on the evaluated grid of {len(self.steps)} steps")
        return float(self.lrs[i])

    def within(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        """The evaluated steps in ``first..last`` and their LRs."""
        lo = int(np.searchsorted(self.steps, first, side="left"))
        hi = int(np.searchsorted(self.steps, last, side="right"))
        return self.steps[lo:hi], self.lrs[lo:hi]

    def described(self) -> str:
        """``steps 0..H``, or ``N sampled steps of 0..H``: what the checks looked at."""
        if self.sampled:
            return f"{len(self.steps)} sampled steps of 0..{self.horizon}, key points exact"
        return f"steps 0..{self.horizon}"


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


def _key_steps(declared: _Declared, run_end: int, horizon: int) -> list[int]:
    """The steps a check or the table reads: step 0, each phase start and jump with the two steps before
    and the one after (the join check), the peak (both neighbours of one between steps), the floor, the
    last step, the first step past it, and the horizon."""
    keys = {0, 1, 2, run_end, run_end + 1, horizon}
    for b in [*(p.start for p in declared.phases), *declared.jumps]:
        keys.update((b - 2, b - 1, b, b + 1))
    for point in (declared.peak, declared.end):
        if point is not None and math.isfinite(point[0]):
            keys.update((math.floor(point[0]), math.ceil(point[0])))
    return [k for k in keys if 0 <= k <= horizon]


def _grid(horizon: int, keys: Iterable[int]) -> np.ndarray:
    """Every step ``0..horizon`` up to :data:`GRID_POINTS` steps; else that many even steps and ``keys``."""
    if horizon + 1 <= GRID_POINTS:
        return np.arange(horizon + 1, dtype=np.int64)
    even = np.linspace(0, horizon, GRID_POINTS).round().astype(np.int64)
    return np.unique(np.concatenate([even, np.fromiter(keys, dtype=np.int64)]))


def curve_from_spec(
    spec: dict[str, Any], lr: float, total_steps: int | None = None, flag: str = "--total-steps"
) -> Curve:
    """Evaluate ``spec`` on a one-group optimizer with LR ``lr`` over the run and one step past it.

    Schedules backed by :mod:`lrkit.schedules` are evaluated in one vectorised call on
    :func:`_grid` (every step, or a sampled grid plus the key points): any length up to
    :data:`MAX_STEPS` takes about the same time and memory. The torch-style classes are stepped,
    up to :data:`MAX_STEPPED` steps. ``flag`` names the run length in messages.

    Raises:
        ValueError/TypeError: a spec that does not build, a curve without an end and no
            ``total_steps``, or a curve longer than the bounds above (naming ``flag``, the
            value and the bound).
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
        raise ValueError(f"{flag} must be >= 1, got {run_end}")
    horizon = max(run_end, int(declared.end[0]) if declared.end else 0) + 1
    what = f"{flag} {run_end}" if horizon - 1 == run_end else f"the schedule's end at step {horizon - 1}"
    if horizon > MAX_STEPS:
        raise ValueError(
            f"{what} is too long to preview: steps are float64, exact only up to 2**53 = {MAX_STEPS}; "
            f"give at most {MAX_STEPS - 1} steps"
        )
    pure = schedule_of(scheduler)
    stopped_at, note = None, ""
    phases = [p for p in declared.phases if p.start <= horizon]
    jumps = [j for j in declared.jumps if j <= horizon]
    declared.dropped = max(len(phases) - MAX_PHASES, 0) + max(len(jumps) - MAX_PHASES, 0)
    declared.phases, declared.jumps = phases[:MAX_PHASES], jumps[:MAX_PHASES]
    if pure is not None:
        steps = _grid(horizon, _key_steps(declared, run_end, horizon))
        lrs = pure(steps)
        evaluate: Callable[[np.ndarray], np.ndarray] = pure
    else:
        if horizon - 1 > MAX_STEPPED:  # the run (or the schedule) ends by step MAX_STEPPED
            raise ValueError(
                f"{what} is too long to preview {_label(spec)}: a torch-style scheduler is stepped one step "
                f"at a time, at most {MAX_STEPPED} steps; give a shorter run, or use an lrkit schedule "
                "(cosine, wsd, linear, ...), which is evaluated in closed form at any length"
            )
        every, stopped_at, note = _step_curve(scheduler, horizon)
        steps = _grid(horizon, _key_steps(declared, run_end, horizon))
        lrs = every[steps]

        def evaluate(at: np.ndarray) -> np.ndarray:
            return every[at]

    expected = declared.peak[1] if declared.peak is not None else lr
    return Curve(_label(spec), spec, steps, lrs, run_end, expected, declared, horizon, evaluate, stopped_at, note)


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
    """Peak reached, final LR equals the floor and stays there, no negative LR, continuous joins.

    On a sampled curve (:attr:`Curve.sampled`) the checks at the key points (peak, final LR, joins)
    stay exact; "held after the end" and "no negative LR" look at the sampled steps, and say so.
    """
    end, peak = curve.run_end, curve.expected_peak
    checks = []
    run_steps, run = curve.within(0, end)
    top = float(np.nanmax(run))
    at = int(run_steps[int(np.nanargmax(run))])
    declared = curve.declared.peak
    if not _close(top, peak, peak):
        checks.append(Check("FAIL", f"peak {peak:.6e} not reached: the highest LR is {top:.6e} (step {at})"))
    elif declared is not None and float(declared[0]).is_integer() and 0 <= declared[0] <= end:
        step = int(declared[0])
        value = curve.lr(step)
        ok = _close(value, peak, peak)
        status = "ok" if ok else "FAIL"
        what = "reached" if ok else f"declared but not reached (LR {value:.6e})"
        checks.append(Check(status, f"peak {peak:.6e} {what} at step {step}"))
    else:
        checks.append(Check("ok", f"peak {peak:.6e} reached at step {at}"))
    floor = curve.declared.end
    if floor is None:
        checks.append(Check("skip", "final LR: the schedule declares no floor"))
        checks.append(Check("skip", "held after the end: the schedule declares no end"))
    else:
        floor_step, floor_lr = int(floor[0]), float(floor[1])
        final = curve.lr(end)
        if _close(final, floor_lr, peak):
            checks.append(Check("ok", f"final LR at step {end} equals the floor {floor_lr:.6e}"))
        else:
            where = f" (the floor is only reached at step {floor_step})" if floor_step > end else ""
            checks.append(Check("FAIL", f"final LR at step {end} is {final:.6e}, not the floor {floor_lr:.6e}{where}"))
        after_steps, after = curve.within(floor_step, curve.horizon)
        bad = [i for i, v in enumerate(after.tolist()) if not math.isnan(v) and not _close(v, floor_lr, peak)]
        if not curve.declared.holds:
            checks.append(Check("skip", f"held after the end: {curve.label} is not defined past step {floor_step}"))
        elif bad:
            step, value = int(after_steps[bad[0]]), float(after[bad[0]])
            rise = "rises above" if value > floor_lr else "leaves"
            checks.append(Check("FAIL", f"LR {rise} the floor after its end: step {step} has {value:.6e}"))
        else:
            sampled = f" ({len(after_steps)} sampled steps)" if curve.sampled else ""
            checks.append(Check("ok", f"floor held from step {floor_step} through step {curve.horizon}{sampled}"))
    negative = np.flatnonzero(curve.lrs < 0)  # NaN < 0 is False
    if negative.size:
        i = int(negative[0])
        checks.append(Check("FAIL", f"negative LR at step {int(curve.steps[i])}: {curve.lrs[i]:.6e}"))
    else:
        checks.append(Check("ok", f"no negative LR ({curve.described()})"))
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
    jumps = set(curve.declared.jumps)
    joins = sorted({p.start for p in curve.declared.phases if 2 <= p.start < curve.horizon} - jumps)
    tol = 1e-9 * curve.expected_peak
    for b in joins:
        before, left, here, after = (curve.lr(s) for s in (b - 2, b - 1, b, b + 1))
        if np.isnan([left, before, here, after]).any():
            continue
        step_change = max(abs(left - before), abs(after - here))
        if abs(here - (2 * left - before)) > step_change + tol:
            return Check("FAIL", f"discontinuous join at step {b}: LR {left:.6e} at {b - 1}, then {here:.6e}")
    extra = f"; intended jumps at {sorted(jumps)[:6]}" if jumps else ""
    if curve.declared.dropped:
        extra += f"; the first {MAX_PHASES} phase starts and jumps only ({curve.declared.dropped} more not checked)"
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
    run_steps, run = curve.within(0, curve.run_end)
    top = int(run_steps[int(np.nanargmax(run))])
    if "peak" not in notes.get(top, []):
        add(top, "highest LR")
    if curve.declared.end is not None:
        add(int(curve.declared.end[0]), "floor")
    add(curve.run_end, "last step")
    add(curve.run_end + 1, "first step past the end")
    return sorted((step, list(dict.fromkeys(n))) for step, n in notes.items())


def _sparkline(curve: Curve, width: int = 64) -> str:
    """``width`` characters, one per evenly spaced step of ``0..horizon`` (the nearest evaluated step)."""
    chars = _SPARK
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        chars.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        chars = _SPARK_ASCII
    wanted = np.unique(np.linspace(0, curve.horizon, min(width, curve.horizon + 1)).round().astype(np.int64))
    index = np.minimum(np.searchsorted(curve.steps, wanted), len(curve.steps) - 1)
    values = curve.lrs[index]
    top = np.nanmax(values)
    levels = np.zeros(len(values), dtype=int) if not top > 0 else np.round(values / top * (len(chars) - 1))
    return "".join(" " if np.isnan(v) else chars[int(level)] for v, level in zip(values, levels))


def _print_preview(curve: Curve, checks: list[Check]) -> None:
    print(f"lrkit preview: {curve.label}")
    print(f"  spec: {json.dumps(curve.spec, separators=(', ', ': '))}")
    if curve.sampled:
        print(f"  evaluated: {curve.described()} (GRID_POINTS={GRID_POINTS})")
    print()
    print(f"  {'step':>8}  {'lr':>13}  point")
    rows = _key_points(curve)
    if len(rows) > _MAX_ROWS:
        head, tail = _MAX_ROWS - 10, 10
        rows = [*rows[:head], (-1, [f"... {len(rows) - head - tail} more key points"]), *rows[-tail:]]
    for step, notes in rows:
        if step < 0:
            print(f"  {'':>8}  {'':>13}  {notes[0]}")
        else:
            print(f"  {step:>8}  {curve.lr(step):>13.6e}  {', '.join(notes)}")
    print()
    line = _sparkline(curve)
    print(f"  {line}")
    print(f"  0{str(curve.horizon).rjust(len(line) - 1)}   (max {np.nanmax(curve.lrs):.2e})")
    print()
    print("  checks:")
    for check in checks:
        print(f"    {check.status:<4}  {check.message}")


def _csv_chunks(curve: Curve, every: int | None) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """(steps, lrs) to write, :data:`_CSV_CHUNK` at a time: the evaluated steps, or ``0, N, 2N, ...``."""
    if every is None:
        for i in range(0, len(curve.steps), _CSV_CHUNK):
            yield curve.steps[i : i + _CSV_CHUNK], curve.lrs[i : i + _CSV_CHUNK]
        return
    for first in range(0, curve.horizon + 1, every * _CSV_CHUNK):
        steps = np.arange(first, min(first + every * _CSV_CHUNK, curve.horizon + 1), every, dtype=np.int64)
        yield steps, np.asarray(curve.evaluate(steps), dtype=np.float64)


def _write_csv(curve: Curve, path: str, every: int | None = None) -> int:
    """Stream ``step,lr`` rows to ``path``; the number of rows.

    The rows go to a temporary file beside ``path`` that replaces it once complete, so an interrupted
    or failed write never leaves a truncated CSV under the name. Memory is bounded at any length.

    Raises:
        OSError: the file cannot be written (the caller names the path).
    """
    temp = f"{path}.tmp-{os.getpid()}"
    rows = 0
    try:
        with open(temp, "w") as f:
            f.write("step,lr\n")
            for steps, lrs in _csv_chunks(curve, every):
                f.write("".join(f"{step},{lr!r}\n" for step, lr in zip(steps.tolist(), lrs.tolist())))
                rows += len(steps)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return rows


def _plot(curve: Curve, path: str, log_y: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    ax.plot(curve.steps, curve.lrs, color="C0", linewidth=1.6, label="learning rate")
    top = float(np.nanmax(curve.lrs))
    for phase in curve.declared.phases[:_MAX_PHASE_MARKS]:
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
    sampled = f", {len(curve.steps)} sampled steps" if curve.sampled else ""
    ax.set_xlabel(f"step (optimizer updates{sampled})")
    ax.set_ylabel("learning rate")
    ax.set_title(curve.label, fontsize=10)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, format=_image_format(path))
    finally:
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
        flag = "--total" if getattr(args, "total", None) is not None else "--total-steps"
        if spec_clock_unit(spec) is not None:
            return _clocked_curve(spec, float(args.lr), rates, length, flag)
        run_end = None if length is None else steps_to_reach(int(length.amount), 0, rates.per_step(length.unit))
        return curve_from_spec(spec, float(args.lr), run_end, flag)
    except (ValueError, TypeError, KeyError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return None


def _clocked_curve(
    spec: dict[str, Any], lr: float, rates: Rates, length: Quantity | None, flag: str = "--total-steps"
) -> Curve:
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
    curve = curve_from_spec({"type": "PureSchedule", "schedules": view.to_dict()}, lr, run_end, flag)
    label = f"Clocked {spec['schedule'].get('type')} ({unit}: {per_step} per optimizer step)"
    peak = view.peak()
    expected = curve.expected_peak
    if peak is not None and not float(peak[0]).is_integer():  # the peak falls between two steps
        expected = max(curve.lr(math.floor(peak[0])), curve.lr(math.ceil(peak[0])))
    return replace(curve, label=label, spec=spec, expected_peak=expected)


def _image_format(path: str) -> str:
    """The image format of ``-o PATH``: its suffix (``lr.svg``), or png without one."""
    suffix = os.path.splitext(path)[1]
    return suffix[1:].lower() if suffix else "png"


def _output_error(flag: str, path: str) -> str | None:
    """Why ``path`` (given to ``flag``) cannot be written, or None: checked before anything is evaluated."""
    if not path:
        return f"{flag}: expected a file name, got {path!r}"
    if os.path.isdir(path):
        return f"{flag} {path!r} is a directory; expected a file name"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        return f"{flag} {path!r}: the directory {parent!r} does not exist (create it first)"
    if not os.path.isdir(parent):
        return f"{flag} {path!r}: {parent!r} is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{flag} {path!r}: the directory {parent!r} is not writable"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{flag} {path!r}: the file is not writable"
    return None


def _outputs_error(args: argparse.Namespace, parser: argparse.ArgumentParser, plot: bool) -> bool:
    """Print the error of the first output path that cannot be written (and of ``--every``); True if any."""
    errors = []
    if plot:
        errors.append(_output_error("-o/--output", args.output))
        from matplotlib.backend_bases import FigureCanvasBase

        formats = FigureCanvasBase.get_supported_filetypes()
        if errors[-1] is None and _image_format(args.output) not in formats:
            errors.append(
                f"-o/--output {args.output!r}: matplotlib cannot write {_image_format(args.output)!r} images; "
                f"use one of: {', '.join(sorted(formats))}"
            )
    if args.csv is not None:
        errors.append(_output_error("--csv", args.csv))
    if args.every is not None and args.csv is None:
        errors.append(f"--every {args.every} applies to --csv; add --csv FILE")
    if args.every is not None and args.every < 1:
        errors.append(f"--every must be >= 1, got {args.every}")
    found = [e for e in errors if e is not None]
    if found:
        print(f"{parser.prog}: error: {found[0]}", file=sys.stderr)
    return bool(found)


def _csv_out(curve: Curve, args: argparse.Namespace, parser: argparse.ArgumentParser) -> str | None:
    """Write ``--csv``; the line to print, or None after printing the write error."""
    try:
        rows = _write_csv(curve, args.csv, args.every)
    except OSError as err:
        print(f"{parser.prog}: error: cannot write --csv {args.csv!r}: {err.strerror or err}", file=sys.stderr)
        return None
    which = f"every {args.every} steps" if args.every else ("sampled steps" if curve.sampled else "every step")
    return f"wrote {args.csv} ({rows} rows, {which})"


def _cmd_preview(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if _outputs_error(args, parser, plot=False):
        return 2
    curve = _curve_from_args(args, parser)
    if curve is None:
        return 2
    checks = run_checks(curve)
    if getattr(args, "law", None):
        law_check = _law_check(curve, args.law)
        if law_check is None:
            return 2
        checks.append(law_check)
    _print_preview(curve, checks)
    if args.csv:
        wrote = _csv_out(curve, args, parser)
        if wrote is None:
            return 2
        print(f"\n  {wrote}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def _law_check(curve: Curve, path: str) -> Check | None:
    """``--law``: the loss the law predicts after the run's updates (update ``s`` uses the LR of step ``s - 1``);
    None after printing why the law cannot be read."""
    from lrkit.schedules import laws

    try:
        law = laws.load_law(path)
    except laws.LawError as err:
        print(f"lrkit preview: error: {err}", file=sys.stderr)
        return None
    if curve.run_end > 10_000_000:
        return Check("skip", f"predicted final loss: {curve.run_end} updates is too long to predict (10^7 at most)")
    lrs = np.asarray(curve.evaluate(np.arange(curve.run_end, dtype=np.int64)), dtype=np.float64)
    try:
        final = float(laws.predict_final(law, lrs))
    except laws.LawError as err:
        return Check("skip", f"predicted final loss: {err}")
    return Check("ok", f"predicted final loss {final:.4f} after {curve.run_end} updates ({law.form} law, {path})")


def _cmd_plot(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if _outputs_error(args, parser, plot=True):
        return 2
    curve = _curve_from_args(args, parser)
    if curve is None:
        return 2
    try:
        _plot(curve, args.output, args.log_y)
    except OSError as err:
        print(f"{parser.prog}: error: cannot write -o/--output {args.output!r}: {err.strerror or err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    if args.csv:
        wrote = _csv_out(curve, args, parser)
        if wrote is None:
            return 2
        print(wrote)
    return 0


def _add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    add_schedule_arguments(parser.add_argument_group("schedule"))
    add_clock_arguments(parser.add_argument_group("time in tokens or samples"))
    parser.add_argument(
        "--csv",
        metavar="FILE",
        help=f"also write step,lr: every step up to {GRID_POINTS} steps, else the sampled steps "
        "(key points included); streamed",
    )
    parser.add_argument(
        "--every",
        type=int,
        metavar="N",
        help="with --csv: write steps 0, N, 2N, ... instead (every step: --every 1; streamed, any length)",
    )


def add_preview_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``lrkit preview``: the schedule flags, ``--tokens-per-step``, ``--csv``."""
    parser.description = "Print the key points of a schedule, a sparkline and checks; exit 1 if a check fails."
    _add_schedule_flags(parser)
    parser.add_argument(
        "--law",
        metavar="JSON",
        help="a law file (lrkit fit-law): add the loss it predicts after the run's last update to the checks",
    )
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
