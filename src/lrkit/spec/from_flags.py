"""How a ``--lr-scheduler`` short name makes its spec from the schedule flags.

A :class:`CliName` belongs to the catalog record of the type it builds (:mod:`lrkit.spec.catalog`): its
name, the flags it reads and the function that reads them. The flags themselves (argparse, quantities,
the token clock) are :mod:`lrkit.tools.flags`'s, which hands each builder a :class:`FlagReader`: the
parsed values, with every length already in ticks of the schedule's clock.

``W`` = ``--warmup-steps``, ``T`` = ``--total-steps``. The warmup of the torch-class names (step,
multistep, exponential) is lrkit's ``WarmupConstant`` (from ``--warmup-start-lr``, default 0, to the peak
at step W) in a ``SequentialLR`` because torch's ``LinearLR`` cannot start at 0; the main schedule starts
at step W, and ``--milestones`` stay absolute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from lrkit import schedules as S

__all__ = ["CliName", "FlagReader", "WARMUP_FLAGS"]

#: The flags of a linear warmup (``--warmup-steps``, ``--warmup-start-lr``).
WARMUP_FLAGS = frozenset({"warmup_steps", "warmup_start_lr"})


class FlagReader(Protocol):
    """The parsed schedule flags, as a builder reads them (by argparse ``dest``, e.g. ``"warmup_steps"``)."""

    name: str  #: the short name being built, for messages

    def fail(self, message: str) -> Any:
        """Report misuse (never returns)."""

    def get(self, dest: str, default: Any = None) -> Any:
        """The flag's value, or ``default`` when it was not given."""

    def given(self, dest: str) -> bool:
        """Whether the flag was given."""

    def need(self, dest: str) -> Any:
        """The flag's value; misuse when it was not given."""

    def whole(self, dest: str) -> int | None:
        """The flag's value as an int (None when not given); misuse when it is not a whole number."""


@dataclass(frozen=True)
class CliName:
    """A ``--lr-scheduler`` short name.

    Attributes:
        name: what the user types (``"cosine"``, ``"hf:cosine"``).
        build: the spec from the flags.
        flags: the flags (argparse dests) it reads besides ``--lr`` and the run length; any other flag given
            with it is an error naming the names that take it.
        needs_total: it needs the run length (``--total-steps`` or ``--total``).
        clockable: its lengths may be in tokens or samples (the spec is then wrapped in ``Clocked``).
        aliases: other names for it (``steplr`` for ``step``).
    """

    name: str
    build: Callable[[FlagReader], dict[str, Any]]
    flags: frozenset[str] = frozenset()
    needs_total: bool = False
    clockable: bool = False
    aliases: tuple[str, ...] = ()


def _warmup_args(f: FlagReader) -> dict[str, Any]:
    return {"warmup_steps": f.get("warmup_steps", 0), "warmup_start_lr": f.get("warmup_start_lr", 0.0)}


def decay(kind: str) -> Any:
    """The builder of ``linear`` / ``cosine``: ``kind(W, T, --min-lr, --warmup-start-lr)``."""

    def build(f: FlagReader) -> dict[str, Any]:
        return {
            "type": kind,
            "warmup_steps": f.get("warmup_steps", 0),
            "total_steps": f.get("total_steps"),
            "min_lr": f.get("min_lr", 0.0),
            "warmup_start_lr": f.get("warmup_start_lr", 0.0),
        }

    return build


def polynomial(f: FlagReader) -> dict[str, Any]:
    """``polynomial``: ``WarmupPolynomial(W, T, --power, --min-lr)``."""
    return {**decay("WarmupPolynomial")(f), "power": f.get("power", 1.0)}


def wsd(f: FlagReader) -> dict[str, Any]:
    """``wsd``: ``WSD(W, T, --decay-steps | --decay-fraction, --decay-shape, --min-lr)``."""
    if not f.given("decay_steps") and not f.given("decay_fraction"):
        f.fail("--lr-scheduler wsd needs --decay-steps or --decay-fraction")
    return {
        "type": "WSD",
        "total_steps": f.get("total_steps"),
        "decay_steps": f.get("decay_steps"),
        "decay_fraction": f.get("decay_fraction"),
        "decay_shape": f.get("decay_shape", "linear"),
        "min_lr": f.get("min_lr", 0.0),
        **_warmup_args(f),
    }


def _decay_length_args(f: FlagReader) -> dict[str, Any]:
    """``--decay-steps`` or ``--decay-fraction`` (exactly one), ``--decay-shape``, ``--min-lr``."""
    if f.given("decay_steps") == f.given("decay_fraction"):
        f.fail(f"--lr-scheduler {f.name} needs --decay-steps or --decay-fraction (one of them)")
    return {
        "decay_steps": f.get("decay_steps"),
        "decay_fraction": f.get("decay_fraction"),
        "decay_shape": f.get("decay_shape", "linear"),
        "min_lr": f.get("min_lr", 0.0),
    }


def wsd_s(f: FlagReader) -> dict[str, Any]:
    """``wsd-s``: ``WSDS`` with ``N = --num-cycles`` equal cycles over ``T`` (branch points ``round(k T / N)``) or
    cycles of ``--cycle-steps`` ending at ``T``; ``--decay-steps | --decay-fraction`` (of each cycle),
    ``--decay-shape``, ``--min-lr``, ``rewarmup_steps = --cycle-warmup-steps``."""
    total = f.get("total_steps")
    if f.given("num_cycles") == f.given("cycle_steps"):
        f.fail("--lr-scheduler wsd-s needs --num-cycles N (equal cycles over --total-steps) or --cycle-steps")
    if f.given("num_cycles"):
        count = f.whole("num_cycles") or 0
        if not 1 <= count <= total:
            f.fail(f"--num-cycles must be a whole number in [1, --total-steps {total}], got {f.get('num_cycles')}")
        ends = [round(total * (k + 1) / count) for k in range(count)]
    else:
        cycle = f.get("cycle_steps")
        if cycle < 1 or total % cycle:
            f.fail(f"--cycle-steps {cycle} must be >= 1 and divide --total-steps {total} (the last branch point)")
        ends = list(range(cycle, total + 1, cycle))
    return {
        "type": "WSDS",
        "cycle_ends": ends,
        **_decay_length_args(f),
        "rewarmup_steps": f.get("cycle_warmup_steps", 0),
        **_warmup_args(f),
    }


def power(f: FlagReader) -> dict[str, Any]:
    """``power``: ``PowerLR(--power-coefficient, --power-exponent, W)``; with ``--decay-steps | --decay-fraction``
    also a final decay to ``--min-lr`` at ``T`` (``--decay-shape``), else the power law runs on (no decay)."""
    spec: dict[str, Any] = {
        "type": "PowerLR",
        "coefficient": f.need("power_coefficient"),
        "exponent": f.need("power_exponent"),
        **_warmup_args(f),
    }
    if not (f.given("decay_steps") or f.given("decay_fraction")):
        for flag in ("decay_shape", "min_lr"):
            if f.given(flag):
                f.fail(f"--{flag.replace('_', '-')} applies to --lr-scheduler power only with --decay-steps or "
                       "--decay-fraction (a final decay)")  # fmt: skip
        return spec
    if f.get("total_steps") is None:
        f.fail("--lr-scheduler power with a final decay needs --total-steps (where the decay ends)")
    return {**spec, "total_steps": f.get("total_steps"), **_decay_length_args(f)}


def log_warmup(f: FlagReader) -> dict[str, Any]:
    """``log-warmup``: ``LogWarmup(W >= 1, --warmup-start-lr)``, then constant."""
    return {"type": "LogWarmup", **_warmup_args(f), "warmup_steps": f.need("warmup_steps")}


def inverse_sqrt(f: FlagReader) -> dict[str, Any]:
    """``inverse-sqrt``: ``InverseSqrt(W, --timescale)``."""
    if not f.get("warmup_steps", 0) and not f.given("timescale"):
        f.fail("--lr-scheduler inverse-sqrt without --warmup-steps needs --timescale")
    return {"type": "InverseSqrt", "timescale": f.get("timescale"), **_warmup_args(f)}


def cosine_restarts(f: FlagReader) -> dict[str, Any]:
    """``cosine-restarts``: ``CosineWithRestarts(--cycle-steps, --cycle-mult, --cycle-decay, --cycle-warmup-steps,
    --num-cycles (or derived from T), --min-lr, W)``."""
    spec = {
        "type": "CosineWithRestarts",
        "cycle_steps": f.need("cycle_steps"),
        "cycle_mult": f.get("cycle_mult", 1),
        "cycle_decay": f.get("cycle_decay", 1.0),
        "min_lr": f.get("min_lr", 0.0),
        "cycle_warmup_steps": f.get("cycle_warmup_steps", 0),
        "num_cycles": f.whole("num_cycles"),
        **_warmup_args(f),
    }
    total = f.get("total_steps")
    if total is None:
        return spec
    try:
        shape = S.CosineWithRestarts(1.0, **{k: v for k, v in spec.items() if k not in ("type", "min_lr")})
    except (TypeError, ValueError) as err:
        return f.fail(str(err))
    ends = [int(shape.cycle_start(k)) for k in range(1, 64) if shape.cycle_start(k - 1) <= total]
    if spec["num_cycles"] is None:
        if total not in ends:
            f.fail(
                f"--total-steps {total} does not end a cycle (cycles end at {', '.join(map(str, ends[:8]))}, ...): "
                "pass --num-cycles or a --total-steps at a cycle end"
            )
        spec["num_cycles"] = ends.index(total) + 1
    elif int(shape.cycle_start(spec["num_cycles"])) > total:
        f.fail(
            f"--num-cycles {spec['num_cycles']} ends at step {int(shape.cycle_start(spec['num_cycles']))}, "
            f"after --total-steps {total}"
        )
    return spec


def _with_warmup(f: FlagReader, main: dict[str, Any]) -> dict[str, Any]:
    warmup = f.get("warmup_steps", 0)
    if not warmup:
        return main
    first = {"type": "WarmupConstant", "warmup_steps": warmup, "warmup_start_lr": f.get("warmup_start_lr", 0.0)}
    return {"type": "SequentialLR", "milestones": [warmup], "schedulers": [first, main]}


def step(f: FlagReader) -> dict[str, Any]:
    """``step``: ``StepLR(--step-size, --gamma)``, after the warmup when W > 0."""
    return _with_warmup(f, {"type": "StepLR", "step_size": f.need("step_size"), "gamma": f.get("gamma", 0.1)})


def multistep(f: FlagReader) -> dict[str, Any]:
    """``multistep``: ``MultiStepLR(--milestones, --gamma)``, after the warmup when W > 0 (milestones absolute)."""
    milestones = list(f.need("milestones"))
    warmup = f.get("warmup_steps", 0)
    if warmup and any(m <= warmup for m in milestones):
        f.fail(f"--milestones are absolute steps and must all be > --warmup-steps {warmup}, got {milestones}")
    shifted = [m - warmup for m in milestones]
    return _with_warmup(f, {"type": "MultiStepLR", "milestones": shifted, "gamma": f.get("gamma", 0.1)})


def exponential(f: FlagReader) -> dict[str, Any]:
    """``exponential``: ``ExponentialLR(--gamma)``, after the warmup when W > 0."""
    return _with_warmup(f, {"type": "ExponentialLR", "gamma": f.need("gamma")})


def onecycle(f: FlagReader) -> dict[str, Any]:
    """``onecycle``: ``OneCycleLR(max_lr=--lr, total_steps=T + 1, pct_start=(P + 1)/(T + 1), ...)``.

    ``P = W`` or ``round(--pct-start * T)``; ``div_factor = lr / --warmup-start-lr`` and ``final_div_factor``
    from ``--min-lr``. torch peaks at ``pct_start * total_steps - 1`` and floors at ``total_steps - 1``, so
    this puts the peak at step P and the floor at step T like every other schedule.
    """
    lr, total = float(f.get("lr")), f.get("total_steps")
    if f.given("warmup_steps") and f.given("pct_start"):
        f.fail("give --warmup-steps or --pct-start for onecycle, not both")
    # lrkit's conventions on torch's class: the peak at step W (torch: pct_start * total_steps - 1),
    # the floor at step T (torch: total_steps - 1).
    peak_step = f.get("warmup_steps") if f.given("warmup_steps") else round(f.get("pct_start", 0.3) * total)
    if not 0 < peak_step < total:
        f.fail(f"onecycle needs its peak step (--warmup-steps, or --pct-start * T) in (0, {total}), got {peak_step}")
    pct_start = (peak_step + 1) / (total + 1)
    start, floor = f.get("warmup_start_lr"), f.get("min_lr")
    if (start is not None and not start > 0) or (floor is not None and not floor > 0):
        f.fail("onecycle needs --warmup-start-lr > 0 and --min-lr > 0 (they set torch's div factors)")
    div_factor = lr / start if start is not None else 25.0
    final_div_factor = (lr / div_factor) / floor if floor is not None else 1e4
    return {
        "type": "OneCycleLR",
        "max_lr": lr,
        "total_steps": total + 1,  # torch's floor is at total_steps - 1: put it at T like every schedule
        "pct_start": float(pct_start),
        "anneal_strategy": f.get("anneal_strategy", "cos"),
        "div_factor": div_factor,
        "final_div_factor": final_div_factor,
    }


def cyclic(f: FlagReader) -> dict[str, Any]:
    """``cyclic``: ``CyclicLR(base_lr=--min-lr, max_lr=--lr, step_size_up=--step-size, --cyclic-mode, --gamma)``."""
    return {
        "type": "CyclicLR",
        "base_lr": f.get("min_lr", 0.0),
        "max_lr": float(f.get("lr")),
        "step_size_up": f.get("step_size", 2000),
        "mode": f.get("cyclic_mode", "triangular"),
        "gamma": f.get("gamma", 1.0),
    }


def constant(f: FlagReader) -> dict[str, Any]:
    """``constant``: ``WarmupConstant(W, --warmup-start-lr)``."""
    return {"type": "WarmupConstant", **_warmup_args(f)}


#: transformers' metric-driven names and the spec type each gives.
_METRIC_DRIVEN = {"reduce_lr_on_plateau": "ReduceLROnPlateau", "greedy": "GreedyLR"}


def _hf(f: FlagReader, name: str) -> dict[str, Any]:
    if name in _METRIC_DRIVEN:
        args = {"factor": f.get("gamma"), "patience": f.get("patience"), "min_lr": f.get("min_lr")}
        return {"type": _METRIC_DRIVEN[name], **{k: v for k, v in args.items() if v is not None}}
    lr, total = float(f.get("lr")), f.get("total_steps")
    kwargs: dict[str, Any] = {}
    if f.given("num_cycles"):
        kwargs["num_cycles"] = f.whole("num_cycles") if name == "cosine_with_restarts" else f.get("num_cycles")
    if name == "polynomial":
        kwargs.update({k: v for k, v in (("lr_end", f.get("min_lr")), ("power", f.get("power"))) if v is not None})
    if name == "inverse_sqrt" and f.given("timescale"):
        kwargs["timescale"] = f.get("timescale")
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        kwargs["min_lr"] = f.need("min_lr")
    if name == "cosine_warmup_with_min_lr" and f.given("warmup_start_lr"):
        kwargs["warmup_lr_rate"] = f.get("warmup_start_lr") / lr
    if name == "warmup_stable_decay":
        if f.given("decay_steps"):
            kwargs["num_decay_steps"] = f.get("decay_steps")
        elif f.given("decay_fraction"):
            kwargs["num_decay_steps"] = round(f.get("decay_fraction") * f.need("total_steps"))
        else:
            f.fail(f"--lr-scheduler hf:{name} needs --decay-steps or --decay-fraction")
        if total is None:
            f.fail(f"--lr-scheduler hf:{name} needs --total-steps")
        shape = f.get("decay_shape", "cosine")
        if shape == "exponential":
            f.fail("--decay-shape for warmup_stable_decay must be one of linear, cosine, 1-sqrt (transformers' types)")
        kwargs.update(
            decay_type=shape, warmup_type=f.get("warmup_shape", "linear"), min_lr_ratio=f.get("min_lr", 0.0) / lr
        )
    spec: dict[str, Any] = {"type": "HFSchedule", "name": name}
    if name != "constant":
        spec["num_warmup_steps"] = f.get("warmup_steps", 0)
    if total is not None and name not in ("constant", "constant_with_warmup", "inverse_sqrt"):
        spec["num_training_steps"] = total
    if kwargs:
        spec["scheduler_specific_kwargs"] = kwargs
    return spec


def hf(name: str) -> Callable[[FlagReader], dict[str, Any]]:
    """The builder of ``hf:<name>``: ``HFSchedule(name, W, T, scheduler_specific_kwargs from the flags)``;
    ``reduce_lr_on_plateau`` gives ``ReduceLROnPlateau(factor=--gamma, --patience, --min-lr)`` and ``greedy``
    ``GreedyLR`` with the same three."""
    return partial(_hf, name=name)
