"""Time for schedules: optimizer steps, tokens, samples, or a fraction of the run. Pure Python, no torch.

A schedule's step arguments (``warmup_steps``, ``total_steps``, ``decay_steps``, ...) count ticks of
a *clock*. The step clock is the usual one: ``t`` = optimizer updates made. The token clock is
``t`` = tokens of the successful updates made (an update the fp16 GradScaler skips does not count),
the sample clock the same in sequences. A schedule on the token clock keeps its shape in tokens
whatever the batch size: ``lr = schedule(tokens)``, so two runs with different batch sizes have the
same LR after the same number of tokens, and a resume with another batch size has no LR jump.

Quantities (``--warmup 50Mtok``, ``--total 10Btok``, ``--decay 0.2dur``) are parsed by
:func:`parse_quantity`: a number, an optional multiplier ``K M B T`` (1e3, 1e6, 1e9, 1e12; ``k`` is
also ``K``) and an optional unit:

=================  =====================================================================
unit               meaning
=================  =====================================================================
(none), ``steps``  optimizer steps
``tok``, ``tokens``  tokens
``samples``        samples (sequences of the run's sequence length)
``dur``            a fraction in ``[0, 1]`` of the run: of ``--total`` in its unit, or of the
                   run length in steps when there is no ``--total``
=================  =====================================================================

Steps, tokens and samples are whole numbers (``1.5Ktok`` = 1500 tokens; ``0.5tok`` is an error).

Mixed units (:func:`clock_unit`, :meth:`Rates.convert`): the schedule runs on the token clock if any
of its quantities is in tokens, else on the sample clock if any is in samples, else on the step
clock. Every quantity is converted to that clock when the spec is made:

* ``steps -> tokens``: ``n * tokens_per_step``; ``steps -> samples``: ``n * tokens_per_step / sequence_length``;
* ``samples -> tokens``: ``n * sequence_length``;
* ``dur -> clock``: ``round(fraction * total)`` with ``total`` in the clock's unit.

So a step quantity beside a token one needs the tokens per step (the trainer knows it: batch x
sequence x data-parallel x gradient accumulation = ``--total-batch-size``; ``lrkit preview/plot``
take ``--tokens-per-step``), and the converted spec depends on the batch size: write every length
in tokens (or ``dur``) for a schedule that a resume with another batch size continues unchanged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from lrkit.schedules._checks import check_int
from lrkit.schedules.shapes import Phase, Schedule, _Ops

__all__ = [
    "UNITS",
    "CLOCK_UNITS",
    "QUANTITY_SYNTAX",
    "QuantityError",
    "RateError",
    "Quantity",
    "parse_quantity",
    "Rates",
    "clock_unit",
    "steps_to_reach",
    "StepView",
]

#: Every unit a quantity may have; ``dur`` is a fraction of the run.
UNITS: tuple[str, ...] = ("steps", "tokens", "samples", "dur")
#: The units a schedule can run on (``dur`` is converted before).
CLOCK_UNITS: tuple[str, ...] = ("steps", "tokens", "samples")
QUANTITY_SYNTAX = (
    "a number with an optional multiplier K, M, B or T (1e3, 1e6, 1e9, 1e12) and an optional unit: "
    "steps (optimizer steps, the default), tok or tokens, samples (sequences), or dur (a fraction of "
    "--total, or of the run); e.g. 2000, 50Mtok, 10Btok, 1.5Msamples, 0.01dur"
)

_MULTIPLIERS = {"": 0, "k": 3, "K": 3, "M": 6, "B": 9, "T": 12}
_UNIT_NAMES = {
    "": "steps",
    "step": "steps",
    "steps": "steps",
    "tok": "tokens",
    "token": "tokens",
    "tokens": "tokens",
    "sample": "samples",
    "samples": "samples",
    "dur": "dur",
}
_QUANTITY = re.compile(
    r"(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(?P<multiplier>[kKMBT]?)\s*(?P<unit>[A-Za-z]*)"
)


class QuantityError(ValueError):
    """A quantity that does not parse or cannot be converted; the message names the flag and the value."""


class RateError(QuantityError):
    """A conversion that needs a rate (tokens per step, sequence length) that was not given."""


@dataclass(frozen=True)
class Quantity:
    """A length of time: ``amount`` (an int for steps, tokens and samples; a float in [0, 1] for ``dur``)
    in ``unit`` (one of :data:`UNITS`). ``text`` is what was typed, for messages."""

    amount: int | float
    unit: str
    text: str = ""

    def __str__(self) -> str:
        return self.text or f"{self.amount}{'' if self.unit == 'steps' else self.unit}"


def parse_quantity(text: str | int, name: str = "quantity") -> Quantity:
    """Parse ``2000``, ``50Mtok``, ``10Btok``, ``1.5Msamples`` or ``0.01dur`` (see the module docstring).

    Args:
        text: the quantity; an int means that many steps.
        name: the flag or argument, for messages (``--warmup``).

    Raises:
        QuantityError: not the syntax, a negative amount, steps/tokens/samples that are not whole,
            or a ``dur`` fraction outside ``[0, 1]``. The message names ``name``, the value and the syntax.
    """
    shown = f"{name} {str(text)!r}" if name else repr(str(text))
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise QuantityError(f"{shown} is not a quantity; expected {QUANTITY_SYNTAX}")
    raw = str(text).strip()
    match = _QUANTITY.fullmatch(raw)
    unit = _UNIT_NAMES.get(match.group("unit").lower()) if match else None
    if match is None or unit is None:
        raise QuantityError(f"{shown} is not a quantity; expected {QUANTITY_SYNTAX}")
    try:
        value = Decimal(match.group("number")).scaleb(_MULTIPLIERS[match.group("multiplier")])
    except InvalidOperation as err:  # pragma: no cover - the regex admits only valid decimals
        raise QuantityError(f"{shown} is not a quantity; expected {QUANTITY_SYNTAX}") from err
    if unit == "dur":
        if not 0 <= value <= 1:
            raise QuantityError(f"{shown}: a dur fraction of the run must be in [0, 1], got {value:f}")
        return Quantity(float(value), unit, raw)
    if value != value.to_integral_value():
        raise QuantityError(f"{shown} must be a whole number of {unit}, got {value:f}")
    return Quantity(int(value), unit, raw)


def clock_unit(units: Iterable[str]) -> str:
    """The clock a schedule with quantities in ``units`` runs on: tokens if any is in tokens,
    else samples if any is in samples, else steps (``dur`` is neutral)."""
    given = set(units)
    for unit in ("tokens", "samples"):
        if unit in given:
            return unit
    return "steps"


@dataclass(frozen=True)
class Rates:
    """How the clocks of a run relate: ``tokens_per_step`` (tokens of one optimizer update,
    the trainer's ``--total-batch-size``) and ``sequence_length`` (tokens of one sample).
    Either may be None (unknown); a conversion that needs it then raises :class:`QuantityError`."""

    tokens_per_step: int | None = None
    sequence_length: int | None = None

    def __post_init__(self) -> None:
        for name in ("tokens_per_step", "sequence_length"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)

    def per_step(self, unit: str, why: str = "") -> int:
        """Ticks of the ``unit`` clock in one optimizer update (1 for steps)."""
        if unit == "steps":
            return 1
        if self.tokens_per_step is None:
            raise RateError(f"{why}converting steps to {unit} needs the tokens per optimizer step")
        if unit == "tokens":
            return self.tokens_per_step
        length = self._sequence_length(why)
        if self.tokens_per_step % length:
            raise QuantityError(
                f"{why}tokens_per_step must be a multiple of sequence_length to count samples, "
                f"got tokens_per_step={self.tokens_per_step}, sequence_length={length}"
            )
        return self.tokens_per_step // length

    def _sequence_length(self, why: str) -> int:
        if self.sequence_length is None:
            raise RateError(f"{why}converting between samples and tokens needs the sequence length")
        return self.sequence_length

    def convert(self, quantity: Quantity, unit: str, total: int | None = None, name: str = "quantity") -> int:
        """``quantity`` in ticks of the ``unit`` clock (rules in the module docstring).

        ``total`` is the run length in the same clock, needed for a ``dur`` quantity.
        """
        if unit not in CLOCK_UNITS:
            raise ValueError(f"unit must be one of {', '.join(CLOCK_UNITS)}, got unit={unit!r}")
        why = f"{name} {quantity} is in {quantity.unit} but the schedule counts {unit}: "
        if quantity.unit == "dur":
            if total is None:
                raise QuantityError(f"{name} {quantity} is a fraction of the run: it needs --total (or --total-steps)")
            return round(quantity.amount * total)
        amount = int(quantity.amount)
        if quantity.unit == unit:
            return amount
        if quantity.unit == "steps":
            return amount * self.per_step(unit, why)
        if (quantity.unit, unit) == ("samples", "tokens"):
            return amount * self._sequence_length(why)
        raise QuantityError(f"{why}a schedule on the {unit} clock cannot take a length in {quantity.unit}")


def steps_to_reach(total: int, done: int, per_step: int) -> int:
    """Optimizer steps still needed to reach ``total`` ticks from ``done`` at ``per_step`` ticks a step:
    ``ceil((total - done) / per_step)``, at least 0 (the last step may overshoot ``total``)."""
    return max(0, -((done - total) // per_step))


@dataclass(frozen=True)
class StepView(Schedule):
    """A schedule of a clock seen per optimizer step at a constant rate (what a preview plots).

    ``lr(t) = schedule(t * per_step)``: ``t`` in optimizer steps, ``per_step`` clock ticks (tokens or
    samples) per step. Phase starts, jumps and the end are mapped to the first step at or after them
    (``ceil(tick / per_step)``); the peak keeps its exact, possibly fractional, step.
    """

    schedule: Schedule
    per_step: int

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got schedule={self.schedule!r}")
        check_int("per_step", self.per_step, minimum=1)

    def _value(self, t: Any, xp: _Ops) -> Any:
        return self.schedule._value(t * self.per_step, xp)

    def _step(self, tick: float) -> int:
        return math.ceil(tick / self.per_step)

    def phases(self, until: float | None = None) -> list[Phase]:
        limit = None if until is None else until * self.per_step
        return [Phase(p.name, self._step(p.start)) for p in self.schedule.phases(limit)]

    def jumps(self, until: float | None = None) -> list[int]:
        limit = None if until is None else until * self.per_step
        return sorted({self._step(j) for j in self.schedule.jumps(limit)})

    def peak(self) -> tuple[float, float] | None:
        found = self.schedule.peak()
        return None if found is None else (found[0] / self.per_step, found[1])

    def end(self) -> tuple[float, float] | None:
        found = self.schedule.end()
        return None if found is None else (self._step(found[0]), found[1])
