"""A batch-size ramp on the token clock, and the LR scaling rule that goes with it. Pure Python, no torch.

The global batch (sequences per optimizer update, over every data-parallel rank and micro-batch) grows from
``start`` to ``end`` over the first ``ramp_tokens`` tokens of the successful updates (the token clock of
:mod:`lrkit.schedules.clock`), on a grid of ``increment`` sequences::

    B(c) = start + increment * floor((end - start) * c / (increment * ramp_tokens))   for c < ramp_tokens
    B(c) = end                                                                         for c >= ramp_tokens

``c`` is the clock: the tokens of the successful updates before this one (an update the fp16 GradScaler skips
does not move it, so the update after it reads the same batch size). This is Megatron-LM's
``--rampup-batch-size START INCREMENT RAMP_SAMPLES`` counted in tokens instead of samples: Megatron moves up one
``increment`` every ``ramp / ((end - start) / increment)`` samples, which is the floor above; with every update a
whole number of sequences the two agree exactly (``ramp_tokens = RAMP_SAMPLES * sequence_length``). With
``increment = 1`` it is the linear ramp rounded down to whole sequences. The arithmetic is in integers: no
rounding error at any clock.

The LR scaling rule multiplies every param group's LR by ``(B(c) / start) ** p``, with ``p`` = 0 (``none``),
1 (``linear``, Goyal et al. 2017) or 1/2 (``sqrt``, the rule OLMo-core's batch-size scheduler applies to Adam:
each change of batch multiplies the base LR by ``sqrt(new / old)``). The LR a schedule is given (``--lr``) is
the LR of the ``start`` batch; at the end of the ramp it is ``lr * (end / start) ** p``.

The ramp as text (the trainer's ``--batch-size-schedule``, :func:`parse_batch_ramp`)::

    linear:START:END:LENGTH[:INCREMENT]      e.g. linear:256:2048:10Btok, linear:256:2048:5Msamples:64

``LENGTH`` is a quantity in tokens or samples (:func:`~lrkit.schedules.clock.parse_quantity`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lrkit.schedules._checks import check_choice, check_int
from lrkit.schedules.clock import QuantityError, parse_quantity

__all__ = ["LR_SCALING_RULES", "BATCH_RAMP_SYNTAX", "BatchRampError", "BatchRamp", "parse_batch_ramp"]

#: The LR scaling rules and their exponent ``p``: the LR is multiplied by ``(B / start) ** p``.
LR_SCALING_RULES: Mapping[str, float] = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}
#: The shapes of a ramp.
RAMP_SHAPES = ("linear",)
BATCH_RAMP_SYNTAX = (
    "linear:START:END:LENGTH[:INCREMENT]: sequences per update from START to END over the first LENGTH "
    "(tokens or samples, e.g. 10Btok, 5Msamples), moving on a grid of INCREMENT sequences; "
    "e.g. linear:256:2048:10Btok"
)


class BatchRampError(ValueError):
    """A ramp that does not parse or does not fit; the message names the argument, the value and what was
    expected."""


@dataclass(frozen=True)
class BatchRamp:
    """The global batch in sequences as a function of the token clock (formula in the module docstring).

    Attributes:
        start: sequences per update at clock 0, >= 1.
        end: sequences per update from ``ramp_tokens`` on, >= ``start``; ``end - start`` a multiple of
            ``increment``.
        ramp_tokens: the ramp's length on the token clock, >= 1.
        increment: the grid the batch moves on, in sequences, >= 1.
        lr_scaling: ``none``, ``linear`` or ``sqrt`` (:data:`LR_SCALING_RULES`).
    """

    start: int
    end: int
    ramp_tokens: int
    increment: int = 1
    lr_scaling: str = "none"

    def __post_init__(self) -> None:
        try:
            check_int("start", self.start, minimum=1)
            check_int("end", self.end, minimum=1)
            check_int("ramp_tokens", self.ramp_tokens, minimum=1)
            check_int("increment", self.increment, minimum=1)
            check_choice("lr_scaling", self.lr_scaling, LR_SCALING_RULES)
        except (TypeError, ValueError) as err:
            raise BatchRampError(str(err)) from None
        if self.start > self.end:
            raise BatchRampError(f"a batch ramp grows: start must be <= end, got start={self.start}, end={self.end}")
        if (self.end - self.start) % self.increment:
            raise BatchRampError(
                f"end - start must be a multiple of increment, got end - start = {self.end} - {self.start} = "
                f"{self.end - self.start}, increment={self.increment}"
            )

    def sequences(self, clock: int) -> int:
        """Sequences of the update that starts at ``clock`` tokens (the global batch ``B(c)``)."""
        check_int("clock", clock, minimum=0)
        if clock >= self.ramp_tokens:
            return self.end
        increments = (self.end - self.start) * clock // (self.increment * self.ramp_tokens)
        return self.start + self.increment * increments

    def lr_factor(self, clock: int) -> float:
        """The LR multiplier of the update at ``clock`` tokens: ``(B(c) / start) ** p`` (1 with ``none``)."""
        if self.lr_scaling == "none":
            return 1.0
        ratio = self.sequences(clock) / self.start
        return math.sqrt(ratio) if self.lr_scaling == "sqrt" else ratio

    def steps_to_reach(self, total: int, clock: int, sequence_length: int) -> int:
        """Updates still needed from ``clock`` tokens until the clock reaches ``total`` tokens (the last may
        pass it), each reading ``B(c) * sequence_length`` tokens; 0 when ``clock >= total``."""
        check_int("total", total, minimum=0)
        check_int("sequence_length", sequence_length, minimum=1)
        steps = 0
        while clock < total and clock < self.ramp_tokens:
            clock += self.sequences(clock) * sequence_length
            steps += 1
        if clock < total:  # past the ramp every update reads the end batch
            per_step = self.end * sequence_length
            steps += -((clock - total) // per_step)
        return steps

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a checkpoint records); :meth:`from_dict` reads it back."""
        return {"type": "BatchRamp", **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "batch_ramp") -> BatchRamp:
        """The ramp of :meth:`to_dict`'s data; :class:`BatchRampError` names ``where`` and the bad key."""
        if not isinstance(data, Mapping) or data.get("type") != "BatchRamp":
            raise BatchRampError(f"{where} must be a BatchRamp's to_dict() (type 'BatchRamp'), got {data!r}")
        args = {k: v for k, v in data.items() if k != "type"}
        allowed = ("start", "end", "ramp_tokens", "increment", "lr_scaling")
        unknown = sorted(set(args) - set(allowed))
        if unknown:
            raise BatchRampError(f"{where} has unknown keys {unknown}; expected keys among {list(allowed)}")
        try:
            return cls(**args)
        except (TypeError, BatchRampError) as err:
            raise BatchRampError(f"{where}: {err}") from None

    def __str__(self) -> str:
        return f"linear:{self.start}:{self.end}:{self.ramp_tokens}tok:{self.increment}" + (
            "" if self.lr_scaling == "none" else f" with {self.lr_scaling} LR scaling"
        )


def parse_batch_ramp(
    text: str,
    sequence_length: int,
    increment: int = 1,
    lr_scaling: str = "none",
    name: str = "--batch-size-schedule",
) -> BatchRamp:
    """The ramp that ``text`` (:data:`BATCH_RAMP_SYNTAX`) describes.

    Args:
        text: ``linear:START:END:LENGTH[:INCREMENT]``.
        sequence_length: tokens per sequence: a ``LENGTH`` in samples is ``samples * sequence_length`` tokens.
        increment: the grid when ``text`` gives none.
        lr_scaling: the LR scaling rule.
        name: the flag or argument, for messages.

    Raises:
        BatchRampError: not the syntax, a ``LENGTH`` in steps or ``dur`` (the ramp is on the token clock), or a
            ramp :class:`BatchRamp` refuses; the message names ``name``, the value and what was expected.
    """
    shown = f"{name} {text!r}"
    parts = str(text).split(":")
    if len(parts) not in (4, 5) or parts[0] not in RAMP_SHAPES:
        raise BatchRampError(f"{shown} is not a batch ramp; expected {BATCH_RAMP_SYNTAX}")
    numbers: dict[str, int] = {}
    for key, value in zip(("START", "END", "INCREMENT"), [parts[1], parts[2], *parts[4:]]):
        if not value.isdigit() or int(value) < 1:
            raise BatchRampError(f"{shown}: {key} must be a whole number of sequences >= 1, got {value!r}")
        numbers[key] = int(value)
    try:
        length = parse_quantity(parts[3], f"{name} LENGTH")
    except QuantityError as err:
        raise BatchRampError(f"{shown}: {err}") from None
    if length.unit not in ("tokens", "samples"):
        raise BatchRampError(
            f"{shown}: LENGTH {parts[3]!r} is in {length.unit}; expected tokens or samples (e.g. 10Btok, "
            "5Msamples): the batch ramps on the token clock"
        )
    ramp_tokens = int(length.amount) * (sequence_length if length.unit == "samples" else 1)
    try:
        return BatchRamp(
            start=numbers["START"],
            end=numbers["END"],
            ramp_tokens=ramp_tokens,
            increment=numbers.get("INCREMENT", increment),
            lr_scaling=lr_scaling,
        )
    except BatchRampError as err:
        raise BatchRampError(f"{shown}: {err}") from None
