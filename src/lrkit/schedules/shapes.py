"""Learning-rate schedules as pure functions of the step. No torch: numpy and the standard library only.

Every schedule is a small frozen dataclass. Its docstring states the formula, its
arguments are validated when it is built (errors name the argument, the value and
what was expected), and calling it gives the LR:

    >>> s = WarmupCosine(peak_lr=3e-4, warmup_steps=100, total_steps=10_000, min_lr=3e-5)
    >>> s(0), s(100), s(10_000)
    (0.0, 0.0003, 3e-05)
    >>> s(np.arange(10_001))          # one vectorised call over a numpy array of steps

Units and conventions, shared by every schedule here:

* A *step* ``t`` is the number of optimizer updates already made (``scheduler.last_epoch``);
  the LR at step ``t`` is the one used by update ``t + 1``. Steps are ``>= 0`` and may be
  fractional. LRs are absolute (same unit as the optimizer's ``lr``), except for the
  ``HF*Factor`` schedules, which are multipliers of the base LR as in transformers.
* Linear warmup: ``lr(t) = warmup_start_lr + (peak_lr - warmup_start_lr) * t / warmup_steps``
  for ``t < warmup_steps``. So ``lr(0) = warmup_start_lr`` (default 0) and the peak is
  reached exactly at ``t = warmup_steps`` (``warmup_steps = 0``: no warmup, ``lr(0) = peak_lr``).
* Decay ends at ``total_steps``: ``lr(total_steps) = min_lr`` exactly, and ``min_lr`` is held
  for every later step. No schedule here goes negative or rises again after its end.
* Peak and floor are *exact*, not approximately hit: interpolation is written as
  ``high * c + low * (1 - c)``, which is bit-exactly ``high`` at ``c = 1`` and ``low`` at ``c = 0``.

Composition follows optax: :class:`Sequence` joins schedules at boundaries, each piece
seeing ``step - boundary``; :class:`Product` multiplies two schedules.

Each schedule describes itself for previews and plots: :meth:`Schedule.phases` (named
phase starts), :meth:`Schedule.jumps` (steps where it is discontinuous by design),
:meth:`Schedule.peak` and :meth:`Schedule.end`. :meth:`Schedule.to_dict` and
:func:`lrkit.schedules.schedule_from_dict` turn a schedule into plain JSON data and back.

The ``HF*Factor`` classes are transformers' ``get_scheduler`` lambdas, quirks included,
with each quirk documented beside lrkit's quirk-free equivalent.

Scalar steps are evaluated with :mod:`math`, arrays with numpy, from the same formula.
``cos`` and ``sqrt`` agree bit for bit between the two; ``**`` (polynomial, exponential
shapes) may differ in the last bit, because numpy vectorises ``pow`` differently from libm.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, fields
from numbers import Real
from typing import Any, ClassVar, NamedTuple

import numpy as np

from lrkit.schedules._checks import check_choice, check_int, check_real

__all__ = [
    "Phase",
    "Schedule",
    "Constant",
    "WarmupConstant",
    "WarmupLinear",
    "WarmupCosine",
    "WarmupPolynomial",
    "WSD",
    "WSDS",
    "PowerLR",
    "LogWarmup",
    "InverseSqrt",
    "CosineWithRestarts",
    "ExponentialRamp",
    "Sequence",
    "Product",
    "Decay",
    "Refit",
    "HFConstantFactor",
    "HFConstantWithWarmupFactor",
    "HFLinearFactor",
    "HFCosineFactor",
    "HFCosineWithHardRestartsFactor",
    "HFPolynomialFactor",
    "HFInverseSqrtFactor",
    "HFCosineWithMinLRFactor",
    "HFCosineWarmupWithMinLRFactor",
    "HFWSDFactor",
    "HF_SCHEDULER_NAMES",
    "DECAY_SHAPES",
]

#: Every ``transformers.SchedulerType`` name that :func:`lrkit.get_scheduler` accepts.
HF_SCHEDULER_NAMES: tuple[str, ...] = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "reduce_lr_on_plateau",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
    "greedy",
)

#: Decay shapes of :class:`WSD`.
DECAY_SHAPES: tuple[str, ...] = ("linear", "cosine", "1-sqrt", "exponential")


class Phase(NamedTuple):
    """A named phase of a schedule and the step at which it starts."""

    name: str
    start: int


# ----------------------------------------------------------------------------- evaluation backends


def _pick(cond: Any, if_true: Any, if_false: Any) -> Any:
    return if_true if cond else if_false


@dataclass(frozen=True)
class _Ops:
    """The few operations a formula uses: :mod:`math` for a scalar step, numpy for an array.

    Both branches of ``where`` are evaluated, so every formula keeps its operands in
    the domain of ``sqrt``/``log``/``**`` for *all* steps (clamping the step first);
    the clamp never changes the value on the branch that is selected.
    """

    cos: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    log: Callable[[Any], Any]
    floor: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    minimum: Callable[[Any, Any], Any]
    clip: Callable[[Any, float, float], Any]


def _clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


_SCALAR = _Ops(math.cos, math.sqrt, math.log, math.floor, _pick, max, min, _clip)
_ARRAY = _Ops(np.cos, np.sqrt, np.log, np.floor, np.where, np.maximum, np.minimum, np.clip)


def _broadcast(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    out = np.asarray(value, dtype=np.float64)
    if out.shape != shape:
        out = np.broadcast_to(out, shape).copy()
    return out


# ----------------------------------------------------------------------------- shared formulas


def _interpolate(high: Any, low: Any, remaining: Any) -> Any:
    """``high * remaining + low * (1 - remaining)``: exactly ``high`` at 1, exactly ``low`` at 0."""
    if isinstance(low, float) and low == 0.0:  # the same value: adding 0.0 changes nothing
        return high * remaining
    return high * remaining + low * (1.0 - remaining)


def _progress(t: Any, begin: float, length: float, xp: _Ops) -> Any:
    """Fraction of a phase ``[begin, begin + length]`` done at step ``t``, clamped to ``[0, 1]``."""
    return xp.clip((t - begin) / length, 0.0, 1.0)


def _decay(shape: str, high: Any, low: Any, progress: Any, xp: _Ops, power: float = 1.0) -> Any:
    """LR after ``progress`` in ``[0, 1]`` of a decay from ``high`` to ``low``.

    With ``c`` the remaining fraction, ``lr = high * c + low * (1 - c)`` and

    * ``linear``:      ``c = 1 - p``
    * ``cosine``:      ``c = (1 + cos(pi p)) / 2``
    * ``1-sqrt``:      ``c = 1 - sqrt(p)``
    * ``polynomial``:  ``c = (1 - p) ** power``
    * ``exponential``: geometric instead of linear interpolation,
      ``lr = high ** (1 - p) * low ** p`` (needs ``low > 0``).

    Every shape gives exactly ``high`` at ``p = 0`` and exactly ``low`` at ``p = 1``.
    """
    if shape == "exponential":
        remaining = 1.0 - progress
        return high**remaining * low ** (1.0 - remaining)
    if shape == "linear":
        remaining = 1.0 - progress
    elif shape == "cosine":
        remaining = 0.5 * (1.0 + xp.cos(math.pi * progress))
    elif shape == "1-sqrt":
        remaining = 1.0 - xp.sqrt(progress)
    else:  # polynomial
        remaining = (1.0 - progress) ** power
    return _interpolate(high, low, remaining)


def _warmup(t: Any, xp: _Ops, start: float, peak: float, warmup_steps: int, after: Any) -> Any:
    """Linear warmup ``start + (peak - start) * t / warmup_steps`` before ``warmup_steps``, then ``after``.

    The ramp is computed only for the steps inside the warmup (it is usually a tiny part of the run).
    """
    if xp is _SCALAR:
        return _interpolate(peak, start, t / warmup_steps) if t < warmup_steps else after
    inside = t < warmup_steps
    if not inside.any():
        return after
    out = np.array(np.broadcast_to(after, t.shape), dtype=np.float64)
    out[inside] = _interpolate(peak, start, t[inside] / warmup_steps)
    return out


# ----------------------------------------------------------------------------- validation helpers


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _int_field(obj: Any, name: str, minimum: int) -> int:
    value = check_int(name, getattr(obj, name), minimum=minimum)
    _set(obj, name, value)
    return value


def _lr_field(obj: Any, name: str, high: float | None = None, high_name: str = "peak_lr") -> float:
    """A finite LR ``>= 0`` (and ``<= high`` when given)."""
    value = check_real(name, getattr(obj, name), low=0.0)
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high_name}, got {name}={value!r}, {high_name}={high!r}")
    _set(obj, name, value)
    return value


def _real_field(obj: Any, name: str, **bounds: Any) -> float:
    value = check_real(name, getattr(obj, name), **bounds)
    _set(obj, name, value)
    return value


# ----------------------------------------------------------------------------- base class

_CHUNK = 1 << 16


class Schedule:
    """Base of every schedule: a pure function of the step.

    Subclasses are frozen dataclasses that implement ``_value(t, xp)``, one formula for
    both a float ``t`` (``xp`` is :mod:`math`-based) and a float64 array (numpy-based).
    """

    def __call__(self, step: Any) -> Any:
        """The LR at ``step``: a float for an int/float step, a float64 array for an array of steps.

        Raises:
            ValueError: a negative or non-finite step.
        """
        if isinstance(step, (np.ndarray, list, tuple)):
            t = np.asarray(step, dtype=np.float64)
            if t.size and not (t.min() >= 0.0 and t.max() < math.inf):
                raise ValueError(f"steps must be finite and >= 0, got min={t.min()!r}, max={t.max()!r}")
            flat = t.reshape(-1)
            out = np.empty(flat.shape, dtype=np.float64)
            # Chunks small enough to stay in cache: about 2x faster than whole-array temporaries.
            for i in range(0, flat.size, _CHUNK):
                piece = flat[i : i + _CHUNK]
                out[i : i + _CHUNK] = _broadcast(self._value(piece, _ARRAY), piece.shape)
            return out.reshape(t.shape)
        if isinstance(step, bool) or not isinstance(step, Real):
            raise TypeError(f"step must be a number or a numpy array, got step={step!r} ({type(step).__name__})")
        scalar = float(step)
        if not 0.0 <= scalar < math.inf:
            raise ValueError(f"step must be finite and >= 0, got step={step!r}")
        return float(self._value(scalar, _SCALAR))

    def _value(self, t: Any, xp: _Ops) -> Any:
        raise NotImplementedError

    def phases(self, until: float | None = None) -> list[Phase]:
        """Named phases, each with the step where it starts (the last one runs on forever).

        ``until`` limits the list to phases starting before it (needed only by schedules
        with unboundedly many phases, such as endless restarts).
        """
        return [Phase(type(self).__name__, 0)]

    def jumps(self, until: float | None = None) -> list[int]:
        """Steps where the LR jumps by design (e.g. hard restarts); every other phase join is continuous."""
        return []

    def peak(self) -> tuple[float, float] | None:
        """``(step, lr)`` where the schedule first reaches its maximum, if it declares one."""
        return None

    def end(self) -> tuple[float, float] | None:
        """``(step, lr)`` from which the LR is held constant for ever, if the schedule ends."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``{"type": <class name>, <field>: <value>, ...}``; see
        :func:`lrkit.schedules.schedule_from_dict`."""
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_plain(getattr(self, f.name))
        return out


def _to_plain(value: Any) -> Any:
    if isinstance(value, Schedule):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- LLM schedules


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = value``."""

    value: float

    def __post_init__(self) -> None:
        _lr_field(self, "value")

    def _value(self, t: Any, xp: _Ops) -> Any:
        return self.value

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase("constant", 0)]

    def peak(self) -> tuple[float, float] | None:
        return (0, self.value)

    def end(self) -> tuple[float, float] | None:
        return (0, self.value)


@dataclass(frozen=True)
class WarmupConstant(Schedule):
    """Linear warmup, then constant.

    ``lr(t) = warmup_start_lr + (peak_lr - warmup_start_lr) * t / W`` for ``t < W``, then ``peak_lr``.

    Args:
        peak_lr: the LR after warmup.
        warmup_steps: ``W >= 0``; the peak is reached exactly at step ``W``.
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.
    """

    peak_lr: float
    warmup_steps: int
    warmup_start_lr: float = 0.0

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        _int_field(self, "warmup_steps", 0)
        _lr_field(self, "warmup_start_lr", peak)

    def _value(self, t: Any, xp: _Ops) -> Any:
        return _warmup(t, xp, self.warmup_start_lr, self.peak_lr, self.warmup_steps, self.peak_lr)

    def phases(self, until: float | None = None) -> list[Phase]:
        head = [Phase("warmup", 0)] if self.warmup_steps else []
        return [*head, Phase("constant", self.warmup_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)


@dataclass(frozen=True)
class _WarmupDecay(Schedule):
    """Linear warmup to ``peak_lr`` over ``W`` steps, then a decay shape to ``min_lr`` at ``T``, then held.

    ``lr(t) = peak_lr * c(p) + min_lr * (1 - c(p))`` with ``p = clamp((t - W) / (T - W), 0, 1)``.
    """

    peak_lr: float
    warmup_steps: int
    total_steps: int
    min_lr: float = 0.0
    warmup_start_lr: float = 0.0

    _shape: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        warmup = _int_field(self, "warmup_steps", 0)
        total = _int_field(self, "total_steps", 1)
        if total <= warmup:
            raise ValueError(
                f"total_steps must be > warmup_steps (the decay needs at least one step), "
                f"got warmup_steps={warmup}, total_steps={total}"
            )
        _lr_field(self, "min_lr", peak)
        _lr_field(self, "warmup_start_lr", peak)

    def _power(self) -> float:
        return 1.0

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total = self.warmup_steps, self.total_steps
        p = _progress(t, w, total - w, xp)
        after = _decay(self._shape, self.peak_lr, self.min_lr, p, xp, self._power())
        return _warmup(t, xp, self.warmup_start_lr, self.peak_lr, w, after)

    def phases(self, until: float | None = None) -> list[Phase]:
        head = [Phase("warmup", 0)] if self.warmup_steps else []
        return [*head, Phase(f"{self._shape} decay", self.warmup_steps), Phase("floor", self.total_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.total_steps, self.min_lr)


@dataclass(frozen=True)
class WarmupLinear(_WarmupDecay):
    """Linear warmup, linear decay to ``min_lr`` at ``total_steps``, then held.

    ``lr(t) = peak_lr * (1 - p) + min_lr * p``, ``p = clamp((t - W) / (T - W), 0, 1)``; warmup as
    in :class:`WarmupConstant`. ``lr(W) = peak_lr`` and ``lr(t >= T) = min_lr`` exactly.

    transformers' ``linear`` is this with ``min_lr = 0`` (see :class:`HFLinearFactor`).
    """

    _shape: ClassVar[str] = "linear"


@dataclass(frozen=True)
class WarmupCosine(_WarmupDecay):
    """Linear warmup, half-cosine decay to ``min_lr`` at ``total_steps``, then held.

    ``lr(t) = min_lr + (peak_lr - min_lr) * (1 + cos(pi p)) / 2``, ``p = clamp((t - W) / (T - W), 0, 1)``
    (evaluated as ``peak_lr * c + min_lr * (1 - c)``, exact at both ends); warmup as in
    :class:`WarmupConstant`.

    Args:
        peak_lr: LR reached exactly at step ``warmup_steps``.
        warmup_steps: ``W >= 0``.
        total_steps: ``T > W``: ``min_lr`` is reached exactly at step ``T`` and held after it.
        min_lr: the floor, in ``[0, peak_lr]``.
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.

    transformers' ``cosine`` equals this (``min_lr = 0``) up to ``T`` but rises again after it;
    nanoGPT warms up as ``(t + 1) / (W + 1)``. Here the conventions are the arguments.
    """

    _shape: ClassVar[str] = "cosine"


@dataclass(frozen=True)
class WarmupPolynomial(_WarmupDecay):
    """Linear warmup, polynomial decay to the end LR ``min_lr`` at ``total_steps``, then held.

    ``lr(t) = (peak_lr - min_lr) * (1 - p) ** power + min_lr``, ``p = clamp((t - W) / (T - W), 0, 1)``.
    ``power = 1`` is :class:`WarmupLinear`. transformers' ``polynomial`` calls ``min_lr`` ``lr_end``
    (see :class:`HFPolynomialFactor`).
    """

    power: float = 1.0

    _shape: ClassVar[str] = "polynomial"

    def __post_init__(self) -> None:
        super().__post_init__()
        _real_field(self, "power", low=0.0, low_open=True)

    def _power(self) -> float:
        return self.power


@dataclass(frozen=True)
class WSD(Schedule):
    """Warmup-Stable-Decay: linear warmup, ``peak_lr`` held, then a decay to ``min_lr`` at ``total_steps``.

    With ``D`` decay steps the decay runs over ``[T - D, T]``:
    ``lr(t) = peak_lr * c(p) + min_lr * (1 - c(p))``, ``p = clamp((t - (T - D)) / D, 0, 1)``, for the
    shapes of ``decay_shape``: ``linear`` ``c = 1 - p``; ``cosine`` ``c = (1 + cos(pi p)) / 2``;
    ``1-sqrt`` ``c = 1 - sqrt(p)``; ``exponential`` ``lr = peak_lr ** (1 - p) * min_lr ** p``
    (log-linear; needs ``min_lr > 0``).

    Args:
        peak_lr: LR reached exactly at ``warmup_steps`` and held until ``T - D``.
        warmup_steps: ``W >= 0``.
        total_steps: ``T``; ``min_lr`` is reached exactly at ``T`` and held after it.
        decay_steps: ``D >= 1``; give this or ``decay_fraction``, not both.
        decay_fraction: ``D = round(decay_fraction * T)``, ``decay_fraction`` in ``(0, 1]``.
        decay_shape: one of ``linear``, ``cosine``, ``1-sqrt``, ``exponential``.
        min_lr: the floor, in ``[0, peak_lr]``.
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.

    Needs ``W + D <= T``. transformers' ``warmup_stable_decay`` instead warms up from ``min_lr``
    (see :class:`HFWSDFactor`).
    """

    peak_lr: float
    warmup_steps: int
    total_steps: int
    decay_steps: int | None = None
    decay_fraction: float | None = None
    decay_shape: str = "linear"
    min_lr: float = 0.0
    warmup_start_lr: float = 0.0

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        warmup = _int_field(self, "warmup_steps", 0)
        total = _int_field(self, "total_steps", 1)
        _checked_decay_length(self, "WSD", warmup, total)
        check_choice("decay_shape", self.decay_shape, DECAY_SHAPES)
        min_lr = _lr_field(self, "min_lr", peak)
        if self.decay_shape == "exponential" and not min_lr > 0:
            raise ValueError(f"decay_shape='exponential' needs min_lr > 0, got min_lr={min_lr!r}")
        _lr_field(self, "warmup_start_lr", peak)

    @property
    def decay_length(self) -> int:
        """``D``: ``decay_steps``, or ``round(decay_fraction * total_steps)``."""
        if self.decay_steps is not None:
            return self.decay_steps
        return round(float(self.decay_fraction) * self.total_steps)  # type: ignore[arg-type]

    def _value(self, t: Any, xp: _Ops) -> Any:
        decay = self.decay_length
        p = _progress(t, self.total_steps - decay, decay, xp)
        after = _decay(self.decay_shape, self.peak_lr, self.min_lr, p, xp)
        return _warmup(t, xp, self.warmup_start_lr, self.peak_lr, self.warmup_steps, after)

    def phases(self, until: float | None = None) -> list[Phase]:
        decay_start = self.total_steps - self.decay_length
        out = [Phase("warmup", 0)] if self.warmup_steps else []
        if decay_start > self.warmup_steps:
            out.append(Phase("stable", self.warmup_steps))
        out += [Phase(f"{self.decay_shape} decay", decay_start), Phase("floor", self.total_steps)]
        return out

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.total_steps, self.min_lr)


@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """Linear warmup, then inverse-square-root decay (no end, no floor).

    ``lr(t) = peak_lr * sqrt(timescale / (t - W + timescale))`` for ``t >= W``; with
    ``timescale = W`` this is the Transformer's ``peak_lr * sqrt(W / t)``.

    Args:
        peak_lr: LR reached exactly at step ``warmup_steps``.
        warmup_steps: ``W >= 0``.
        timescale: steps over which the LR falls to ``peak_lr / sqrt(2)``; default ``W``
            (then ``W`` must be ``>= 1``).
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.

    transformers' ``inverse_sqrt`` is the same curve but defaults the timescale to 10,000 when
    there is no warmup (see :class:`HFInverseSqrtFactor`).
    """

    peak_lr: float
    warmup_steps: int
    timescale: int | None = None
    warmup_start_lr: float = 0.0

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        warmup = _int_field(self, "warmup_steps", 0)
        if self.timescale is None and warmup == 0:
            raise ValueError("InverseSqrt needs timescale >= 1 when warmup_steps=0, got timescale=None")
        if self.timescale is not None:
            _int_field(self, "timescale", 1)
        _lr_field(self, "warmup_start_lr", peak)

    def _value(self, t: Any, xp: _Ops) -> Any:
        w = self.warmup_steps
        tau = self.timescale if self.timescale is not None else w
        after = self.peak_lr * xp.sqrt(tau / (xp.maximum(t, w) - w + tau))
        return _warmup(t, xp, self.warmup_start_lr, self.peak_lr, w, after)

    def phases(self, until: float | None = None) -> list[Phase]:
        head = [Phase("warmup", 0)] if self.warmup_steps else []
        return [*head, Phase("inverse-sqrt decay", self.warmup_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)


@dataclass(frozen=True)
class CosineWithRestarts(Schedule):
    """Linear warmup, then cosine cycles (SGDR) with growing length, decaying peaks and optional re-warmup.

    Cycle ``i = 0, 1, ...`` starts at ``s_i = W + L * (1 + m + ... + m**(i-1))`` and lasts
    ``L_i = L * m**i`` steps; its peak is ``peak_i = max(peak_lr * cycle_decay**i, min_lr)``.
    Within a cycle, at local step ``u = t - s_i``:

    * restarts (``i >= 1``) with ``cycle_warmup_steps = Wc > 0`` first ramp linearly from ``min_lr``
      to ``peak_i`` over ``Wc`` steps (no jump); with ``Wc = 0`` the LR jumps back to ``peak_i``;
    * then ``lr = min_lr + (peak_i - min_lr) * (1 + cos(pi p)) / 2`` with ``p = (u - u0) / (L_i - u0)``
      (``u0 = Wc`` for restarts, 0 for the first cycle), reaching ``min_lr`` as the cycle ends.

    With ``num_cycles = N`` the schedule ends at ``s_N`` and holds ``min_lr``; without, it cycles for ever.

    Args:
        peak_lr: LR reached exactly at step ``warmup_steps`` (first cycle's peak).
        cycle_steps: ``L >= 1``, length of the first cycle.
        cycle_mult: ``m >= 1`` (int), each cycle is ``m`` times longer than the previous one.
        cycle_decay: in ``(0, 1]``, each cycle's peak is this times the previous one's.
        min_lr: the floor at the end of every cycle, in ``[0, peak_lr]``.
        warmup_steps: ``W >= 0``, initial warmup from ``warmup_start_lr``.
        cycle_warmup_steps: ``Wc`` in ``[0, L)``, re-warmup at each restart.
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.
        num_cycles: ``N >= 1`` or None (endless).

    transformers' ``cosine_with_restarts`` has equal cycles, hard restarts to the full peak and
    ends at 0 (see :class:`HFCosineWithHardRestartsFactor`); torch's ``CosineAnnealingWarmRestarts``
    has no warmup and no peak decay.
    """

    peak_lr: float
    cycle_steps: int
    cycle_mult: int = 1
    cycle_decay: float = 1.0
    min_lr: float = 0.0
    warmup_steps: int = 0
    cycle_warmup_steps: int = 0
    warmup_start_lr: float = 0.0
    num_cycles: int | None = None

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        cycle = _int_field(self, "cycle_steps", 1)
        _int_field(self, "cycle_mult", 1)
        _real_field(self, "cycle_decay", low=0.0, high=1.0, low_open=True)
        _lr_field(self, "min_lr", peak)
        _int_field(self, "warmup_steps", 0)
        cycle_warmup = _int_field(self, "cycle_warmup_steps", 0)
        if cycle_warmup >= cycle:
            raise ValueError(
                f"cycle_warmup_steps must be < cycle_steps, got cycle_warmup_steps={cycle_warmup}, cycle_steps={cycle}"
            )
        _lr_field(self, "warmup_start_lr", peak)
        if self.num_cycles is not None:
            _int_field(self, "num_cycles", 1)

    def cycle_start(self, i: Any) -> Any:
        """``s_i``, the step where cycle ``i`` (0-based) starts (``i`` may be an array)."""
        m = self.cycle_mult
        if m == 1:
            return self.warmup_steps + self.cycle_steps * i
        return self.warmup_steps + self.cycle_steps * (m**i - 1) / (m - 1)

    def _cycle_index(self, t: Any, xp: _Ops) -> Any:
        u = t - self.warmup_steps
        m, length = self.cycle_mult, self.cycle_steps
        if m == 1:
            i = xp.floor(u / length)
        else:
            i = xp.floor(xp.log(1.0 + u * (m - 1) / length) / math.log(m))
        # The division/log can land one cycle off at a boundary: correct it exactly.
        i = xp.where(t < self.cycle_start(i), i - 1, i)
        i = xp.where(t >= self.cycle_start(i + 1), i + 1, i)
        if self.num_cycles is not None:
            i = xp.minimum(i, self.num_cycles - 1)
        return i

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, wc, floor = self.warmup_steps, self.cycle_warmup_steps, self.min_lr
        tc = xp.maximum(t, w)
        i = self._cycle_index(tc, xp)
        local = tc - self.cycle_start(i)
        cycle_length = self.cycle_steps * self.cycle_mult**i
        cycle_peak = xp.maximum(self.peak_lr * self.cycle_decay**i, floor)
        restart = i >= 1
        decay_start = xp.where(restart, wc, 0)
        p = _progress(local, decay_start, cycle_length - decay_start, xp)
        lr = _decay("cosine", cycle_peak, floor, p, xp)
        if wc:
            ramp = _interpolate(cycle_peak, floor, local / wc)
            lr = xp.where(restart & (local < wc), ramp, lr)
        end = self.end()
        if end is not None:
            lr = xp.where(t >= end[0], floor, lr)
        return _warmup(t, xp, self.warmup_start_lr, self.peak_lr, w, lr)

    def _cycle_starts(self, until: float | None) -> list[int]:
        count = self.num_cycles if self.num_cycles is not None else (None if until is not None else 10)
        starts: list[int] = []
        i = 0
        while count is None or i < count:
            start = int(self.cycle_start(i))
            if until is not None and start >= until:
                break
            starts.append(start)
            i += 1
        return starts

    def phases(self, until: float | None = None) -> list[Phase]:
        out = [Phase("warmup", 0)] if self.warmup_steps else []
        for i, start in enumerate(self._cycle_starts(until)):
            out.append(Phase("cycle 1" if i == 0 else f"cycle {i + 1} (restart)", start))
        end = self.end()
        if end is not None and (until is None or end[0] < until):
            out.append(Phase("floor", int(end[0])))
        return out

    def jumps(self, until: float | None = None) -> list[int]:
        if self.cycle_warmup_steps:
            return []
        return self._cycle_starts(until)[1:]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)

    def end(self) -> tuple[float, float] | None:
        if self.num_cycles is None:
            return None
        return (int(self.cycle_start(self.num_cycles)), self.min_lr)


def _one_of_decay_lengths(name: str, decay_steps: Any, decay_fraction: Any) -> None:
    if (decay_steps is None) == (decay_fraction is None):
        raise ValueError(
            f"{name} needs exactly one of decay_steps or decay_fraction, got "
            f"decay_steps={decay_steps!r}, decay_fraction={decay_fraction!r}"
        )


def _checked_decay_length(schedule: Any, name: str, warmup: int, total: int) -> int:
    """The final decay's length of ``schedule`` (its ``decay_steps``, or ``decay_fraction`` of ``total``), checked:
    exactly one of the two given, at least 1 step, and ``warmup + decay <= total``."""
    _one_of_decay_lengths(name, schedule.decay_steps, schedule.decay_fraction)
    if schedule.decay_fraction is not None:
        _real_field(schedule, "decay_fraction", low=0.0, high=1.0, low_open=True)
    else:
        _int_field(schedule, "decay_steps", 1)
    decay = int(schedule.decay_length)
    if decay < 1:
        raise ValueError(
            f"decay_fraction * total_steps must round to at least 1 step, "
            f"got decay_fraction={schedule.decay_fraction!r}, total_steps={total}"
        )
    if warmup + decay > total:
        raise ValueError(
            f"warmup_steps + decay steps must be <= total_steps, got warmup_steps={warmup}, "
            f"decay steps={decay}, total_steps={total}"
        )
    return decay


@dataclass(frozen=True)
class WSDS(Schedule):
    """WSD-S, cyclic Warmup-Stable-Decay: a warmup, then cycles of stable + decay, each ending at a branch point.

    Cycle ``k = 0 .. N-1`` runs over ``[s_k, E_k)`` with ``E_k = cycle_ends[k]``, ``s_0 = 0``, ``s_k = E_(k-1)``,
    length ``L_k = E_k - s_k``. Its decay takes the last ``D_k`` steps, ``D_k = decay_steps`` or
    ``round(decay_fraction * L_k)``:

    * ``lr(t) = peak_lr * c(p) + min_lr * (1 - c(p))``, ``p = clamp((t - (E_k - D_k)) / D_k, 0, 1)``, with the
      decay shapes of :class:`WSD` (``linear``, ``cosine``, ``1-sqrt``, ``exponential``): ``peak_lr`` through the
      stable phase, exactly ``min_lr`` at the branch point ``E_k``;
    * cycle 0 starts with the linear warmup ``warmup_start_lr -> peak_lr`` over ``[0, W)``;
    * a later cycle starts at ``s_k = E_(k-1)`` with a linear re-warmup ``min_lr -> peak_lr`` over
      ``R = rewarmup_steps`` steps (``lr(s_k) = min_lr``: no jump); with ``R = 0`` (the default, OLMo-core's
      ``WSDS`` and the paper's WSD-S) the LR jumps back to ``peak_lr`` at ``s_k``;
    * ``min_lr`` is held from the last branch point ``E_(N-1)`` on.

    So a run stopped at ``E_k`` has used the LRs of ``WSD`` with ``total_steps = E_k`` in its last cycle: each
    ``E_k`` is a decayed checkpoint, and training continues from it (not from the pre-decay weights).
    ``N = 1`` is :class:`WSD`. Sources: Wen et al., "Understanding Warmup-Stable-Decay Learning Rates: A River
    Valley Loss Landscape Perspective" (arXiv 2410.05192), OLMo-core's ``WSDS`` (a decay fraction of each period,
    hard reset), levanter's ``cycles`` with ``rewarmup``.

    Args:
        peak_lr: the LR of every stable phase, reached exactly at ``warmup_steps``.
        cycle_ends: ``E_0 < E_1 < ... < E_(N-1)``, the branch points (absolute steps, ints ``>= 1``).
        warmup_steps: ``W >= 0``, the first cycle's warmup; ``W + D_0 <= E_0``.
        decay_steps: ``D >= 1`` for every cycle; give this or ``decay_fraction``, not both.
        decay_fraction: ``D_k = round(decay_fraction * L_k)``, in ``(0, 1]``.
        decay_shape: one of :data:`DECAY_SHAPES`.
        min_lr: the LR at every branch point, in ``[0, peak_lr]`` (``> 0`` for ``exponential``).
        rewarmup_steps: ``R >= 0``; ``R + D_k <= L_k`` for ``k >= 1``.
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.
    """

    peak_lr: float
    cycle_ends: tuple[int, ...]
    warmup_steps: int = 0
    decay_steps: int | None = None
    decay_fraction: float | None = None
    decay_shape: str = "linear"
    min_lr: float = 0.0
    rewarmup_steps: int = 0
    warmup_start_lr: float = 0.0

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        if not isinstance(self.cycle_ends, (list, tuple)) or not self.cycle_ends:
            raise TypeError(f"cycle_ends must be a non-empty list of ints, got cycle_ends={self.cycle_ends!r}")
        ends = tuple(check_int(f"cycle_ends[{i}]", e, minimum=1) for i, e in enumerate(self.cycle_ends))
        if list(ends) != sorted(set(ends)):
            raise ValueError(f"cycle_ends must be strictly increasing, got cycle_ends={list(ends)!r}")
        _set(self, "cycle_ends", ends)
        warmup = _int_field(self, "warmup_steps", 0)
        rewarmup = _int_field(self, "rewarmup_steps", 0)
        _one_of_decay_lengths("WSDS", self.decay_steps, self.decay_fraction)
        if self.decay_fraction is not None:
            _real_field(self, "decay_fraction", low=0.0, high=1.0, low_open=True)
        else:
            _int_field(self, "decay_steps", 1)
        for k, (length, decay) in enumerate(zip(self.cycle_lengths, self.decay_lengths)):
            ramp, ramp_name = (warmup, "warmup_steps") if k == 0 else (rewarmup, "rewarmup_steps")
            if decay < 1:
                raise ValueError(
                    f"decay_fraction * cycle length must round to at least 1 step, got decay_fraction="
                    f"{self.decay_fraction!r}, cycle {k} of {length} steps"
                )
            if ramp + decay > length:
                raise ValueError(
                    f"{ramp_name} + decay steps must be <= the cycle's length, got {ramp_name}={ramp}, "
                    f"decay steps={decay}, cycle {k} = [{self.cycle_starts[k]}, {ends[k]}) of {length} steps"
                )
        check_choice("decay_shape", self.decay_shape, DECAY_SHAPES)
        min_lr = _lr_field(self, "min_lr", peak)
        if self.decay_shape == "exponential" and not min_lr > 0:
            raise ValueError(f"decay_shape='exponential' needs min_lr > 0, got min_lr={min_lr!r}")
        _lr_field(self, "warmup_start_lr", peak)

    @property
    def cycle_starts(self) -> tuple[int, ...]:
        """``s_k``: 0, then each previous branch point."""
        return (0, *self.cycle_ends[:-1])

    @property
    def cycle_lengths(self) -> tuple[int, ...]:
        """``L_k = E_k - s_k``."""
        return tuple(e - s for s, e in zip(self.cycle_starts, self.cycle_ends))

    @property
    def decay_lengths(self) -> tuple[int, ...]:
        """``D_k``: ``decay_steps``, or ``round(decay_fraction * L_k)``."""
        if self.decay_steps is not None:
            return (self.decay_steps,) * len(self.cycle_ends)
        return tuple(round(float(self.decay_fraction) * length) for length in self.cycle_lengths)  # type: ignore[arg-type]

    def _value(self, t: Any, xp: _Ops) -> Any:
        last = len(self.cycle_ends) - 1
        starts = self.cycle_starts
        decay_starts = [e - d for e, d in zip(self.cycle_ends, self.decay_lengths)]
        if xp is _SCALAR:
            k = min(bisect_right(self.cycle_ends, t), last)
            start, decay_start, decay = starts[k], decay_starts[k], self.decay_lengths[k]
        else:
            k = np.minimum(np.searchsorted(np.asarray(self.cycle_ends, dtype=np.float64), t, side="right"), last)
            start = np.asarray(starts, dtype=np.float64)[k]
            decay_start = np.asarray(decay_starts, dtype=np.float64)[k]
            decay = np.asarray(self.decay_lengths, dtype=np.float64)[k]
        lr = _decay(self.decay_shape, self.peak_lr, self.min_lr, _progress(t, decay_start, decay, xp), xp)
        if self.rewarmup_steps:
            ramp = _interpolate(self.peak_lr, self.min_lr, xp.clip((t - start) / self.rewarmup_steps, 0.0, 1.0))
            lr = xp.where((k >= 1) & (t - start < self.rewarmup_steps), ramp, lr)
        return _warmup(t, xp, self.warmup_start_lr, self.peak_lr, self.warmup_steps, lr)

    def phases(self, until: float | None = None) -> list[Phase]:
        out = [Phase("warmup", 0)] if self.warmup_steps else []
        for k, (start, end, decay) in enumerate(zip(self.cycle_starts, self.cycle_ends, self.decay_lengths)):
            stable = start + (self.warmup_steps if k == 0 else self.rewarmup_steps)
            if k and self.rewarmup_steps:
                out.append(Phase(f"re-warmup {k + 1}", start))
            if end - decay > stable:
                out.append(Phase(f"stable {k + 1}", stable))
            out.append(Phase(f"{self.decay_shape} decay {k + 1}", end - decay))
        out.append(Phase("floor", self.cycle_ends[-1]))
        return [p for p in out if until is None or p.start < until]

    def jumps(self, until: float | None = None) -> list[int]:
        if self.rewarmup_steps:
            return []
        return [e for e in self.cycle_ends[:-1] if until is None or e < until]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.cycle_ends[-1], self.min_lr)


@dataclass(frozen=True)
class PowerLR(Schedule):
    """Power scheduler: warmup, a power-law stable phase ``min(peak_lr, a * t ** b)``, an optional final decay.

    With ``P = peak_lr``, ``a = coefficient``, ``b = exponent`` and ``power(t) = min(P, a * t ** b)``
    (``power(0) = P``):

    * warmup, ``t < W``: ``lr = warmup_start_lr + (power(W) - warmup_start_lr) * t / W``;
    * stable, ``W <= t < T - D``: ``lr = power(t)``, which falls as ``t ** b`` once ``a * t ** b < P``;
    * decay, ``T - D <= t``: from ``power(T - D)`` to ``min_lr`` at ``T`` with a shape of
      :data:`DECAY_SHAPES`, as :class:`WSD`'s (``p = clamp((t - (T - D)) / D, 0, 1)``); ``min_lr`` held after ``T``.
      Without ``total_steps`` there is no decay: the power law runs on for ever.

    This is Shen et al., "Power Scheduler: A Batch Size and Token Number Agnostic Learning Rate Scheduler"
    (arXiv 2408.13359): ``eta(n) = n / N_warmup * eta_power(N_warmup)`` in the warmup,
    ``eta_power(n) = min(eta_max, beta * a * n ** b)`` in the stable phase and
    ``f(n, N, N_decay) * eta_power(N - N_decay)`` in the decay, with ``n`` in tokens and ``beta`` the batch size
    (the paper's ``a = 4``, ``b = -0.51``): here ``coefficient`` is ``beta * a``, ``peak_lr`` is ``eta_max`` and
    ``t`` counts steps, or tokens when the schedule runs on the token clock (``Clocked``). MiniCPM and OLMo-core
    name it ``PowerLR``; timm's rsqrt stable phase is ``b = -1/2``.

    Args:
        peak_lr: ``P``, the cap; the LR while ``a * t ** b >= P``.
        coefficient: ``a > 0`` (an LR at ``t = 1``).
        exponent: ``b`` in ``[-1, 0)``.
        warmup_steps: ``W >= 0``.
        total_steps: ``T``, the end of the decay (``min_lr`` from ``T`` on), or None for no decay.
        decay_steps: ``D >= 1`` with ``W + D <= T``; give this or ``decay_fraction`` (with ``total_steps`` only).
        decay_fraction: ``D = round(decay_fraction * T)``, in ``(0, 1]``.
        decay_shape: one of :data:`DECAY_SHAPES`.
        min_lr: the floor, in ``[0, power(T - D)]`` (``> 0`` for ``exponential``).
        warmup_start_lr: the LR at step 0, in ``[0, power(W)]``.
    """

    peak_lr: float
    coefficient: float
    exponent: float
    warmup_steps: int = 0
    total_steps: int | None = None
    decay_steps: int | None = None
    decay_fraction: float | None = None
    decay_shape: str = "linear"
    min_lr: float = 0.0
    warmup_start_lr: float = 0.0

    def __post_init__(self) -> None:
        _lr_field(self, "peak_lr")
        _real_field(self, "coefficient", low=0.0, low_open=True)
        _real_field(self, "exponent", low=-1.0, high=0.0, high_open=True)
        warmup = _int_field(self, "warmup_steps", 0)
        if self.total_steps is None:
            if self.decay_steps is not None or self.decay_fraction is not None:
                raise ValueError(
                    "PowerLR decays only with total_steps, got total_steps=None with "
                    f"decay_steps={self.decay_steps!r}, decay_fraction={self.decay_fraction!r}"
                )
        else:
            total = _int_field(self, "total_steps", 1)
            _checked_decay_length(self, "PowerLR", warmup, total)
        check_choice("decay_shape", self.decay_shape, DECAY_SHAPES)
        top = self.power_law(self.total_steps - self.decay_length) if self.total_steps is not None else math.inf
        min_lr = _lr_field(self, "min_lr", top, "power(total_steps - decay steps)")
        if self.decay_shape == "exponential" and not min_lr > 0:
            raise ValueError(f"decay_shape='exponential' needs min_lr > 0, got min_lr={min_lr!r}")
        _lr_field(self, "warmup_start_lr", self.power_law(warmup), "power(warmup_steps)")

    @property
    def decay_length(self) -> int:
        """``D``: ``decay_steps``, or ``round(decay_fraction * total_steps)``; 0 without ``total_steps``."""
        if self.total_steps is None:
            return 0
        if self.decay_steps is not None:
            return self.decay_steps
        return round(float(self.decay_fraction) * self.total_steps)  # type: ignore[arg-type]

    def _capped_below(self) -> float:
        """A step ``t_c > 0`` with ``a * t ** b >= 2 P`` for every ``t <= t_c`` (so the cap ``P`` holds there).

        Clamping the step to ``t_c`` keeps ``t ** b`` finite near ``t = 0`` without changing any value: below
        ``t_c`` the minimum is ``P`` either way, and above it the step is not clamped. (``t_c`` is kept in
        ``[e**-690, e**690]``, so ``t_c ** b`` stays finite for ``b >= -1``; only steps below ``1e-299`` could see it.)
        """
        if self.peak_lr == 0.0:
            return 1.0
        log_step = math.log(2.0 * self.peak_lr / self.coefficient) / self.exponent
        return math.exp(min(max(log_step, -690.0), 690.0))

    def _power(self, t: Any, xp: _Ops) -> Any:
        capped = xp.minimum(self.peak_lr, self.coefficient * xp.maximum(t, self._capped_below()) ** self.exponent)
        return xp.where(t > 0, capped, self.peak_lr)  # 0 ** b is infinite: the cap (also where t_c was clamped)

    def power_law(self, step: float) -> float:
        """``power(step) = min(peak_lr, coefficient * step ** exponent)``: the stable phase's LR."""
        return float(self._power(float(step), _SCALAR))

    def _value(self, t: Any, xp: _Ops) -> Any:
        w = self.warmup_steps
        lr = self._power(xp.maximum(t, w), xp)
        if self.total_steps is not None:
            decay = self.decay_length
            begin = self.total_steps - decay
            decayed = _decay(self.decay_shape, self.power_law(begin), self.min_lr, _progress(t, begin, decay, xp), xp)
            lr = xp.where(t >= begin, decayed, lr)
        return _warmup(t, xp, self.warmup_start_lr, self.power_law(w), w, lr)

    def phases(self, until: float | None = None) -> list[Phase]:
        out = [Phase("warmup", 0)] if self.warmup_steps else []
        if self.total_steps is None:
            return [*out, Phase("power-law stable", self.warmup_steps)]
        begin = self.total_steps - self.decay_length
        if begin > self.warmup_steps:
            out.append(Phase("power-law stable", self.warmup_steps))
        return [*out, Phase(f"{self.decay_shape} decay", begin), Phase("floor", self.total_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.power_law(self.warmup_steps))

    def end(self) -> tuple[float, float] | None:
        return None if self.total_steps is None else (self.total_steps, self.min_lr)


@dataclass(frozen=True)
class LogWarmup(Schedule):
    """Logarithmic warmup (DeepSpeed ``WarmupLR``'s default shape), then constant.

    ``lr(t) = warmup_start_lr + (peak_lr - warmup_start_lr) * log(t + 1) / log(W + 1)`` for ``t < W``, then
    ``peak_lr``: ``lr(0) = warmup_start_lr`` and ``lr(W) = peak_lr`` exactly, as lrkit's linear warmups. The
    log rises fast at first: half of the way up by step ``sqrt(W + 1) - 1``.

    DeepSpeed's ``WarmupLR(warmup_min_lr=m, warmup_max_lr=M, warmup_num_steps=N, warmup_type="log")`` computes
    ``m + (M - m) * log(i + 1) / log(N)`` at its ``last_batch_iteration`` ``i < N``, and ``M`` after; it sets ``m``
    before the first update and ``i`` is 0 after the first ``step()``, so the LR after ``t >= 1`` updates is
    ``m + (M - m) * log(t) / log(N)``, reaching ``M`` at ``t = N``. That is this schedule with ``W = N - 1``, one
    step later: ``lr_deepspeed(t) = LogWarmup(W=N-1)(t - 1)`` for ``t >= 1`` (its first two updates use ``m``).

    Compose it with a decay in a spec: ``{"type": "SequentialLR", "milestones": [W], "schedulers":
    [{"type": "LogWarmup", "warmup_steps": W}, {"type": "WarmupCosine", "warmup_steps": 0, "total_steps": T - W}]}``.

    Args:
        peak_lr: the LR from step ``W`` on.
        warmup_steps: ``W >= 1``.
        warmup_start_lr: the LR at step 0, in ``[0, peak_lr]``.
    """

    peak_lr: float
    warmup_steps: int
    warmup_start_lr: float = 0.0

    def __post_init__(self) -> None:
        peak = _lr_field(self, "peak_lr")
        _int_field(self, "warmup_steps", 1)
        _lr_field(self, "warmup_start_lr", peak)

    def _value(self, t: Any, xp: _Ops) -> Any:
        w = self.warmup_steps
        ramp = _interpolate(self.peak_lr, self.warmup_start_lr, xp.log(xp.minimum(t, w) + 1.0) / math.log(w + 1.0))
        return xp.where(t < w, ramp, self.peak_lr)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase("log warmup", 0), Phase("constant", self.warmup_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.warmup_steps, self.peak_lr)


@dataclass(frozen=True)
class ExponentialRamp(Schedule):
    """Geometric ramp from ``start_lr`` to ``end_lr`` over ``num_steps`` LRs (the LR range test's sweep).

    ``lr(t) = start_lr ** (1 - p) * end_lr ** p`` with ``p = min(t / (N - 1), 1)``, which is
    ``start_lr * (end_lr / start_lr) ** (t / (N - 1))``: equal steps in ``log lr``. Step 0 is exactly
    ``start_lr``, step ``N - 1`` exactly ``end_lr``, held after that.

    Args:
        start_lr: the LR at step 0, ``> 0``.
        end_lr: the LR at step ``N - 1``, ``> 0`` (below ``start_lr`` ramps down).
        num_steps: ``N >= 2``, the number of LRs in the ramp (steps ``0 .. N - 1``).
    """

    start_lr: float
    end_lr: float
    num_steps: int

    def __post_init__(self) -> None:
        _real_field(self, "start_lr", low=0.0, low_open=True)
        _real_field(self, "end_lr", low=0.0, low_open=True)
        _int_field(self, "num_steps", 2)

    def _value(self, t: Any, xp: _Ops) -> Any:
        return _decay("exponential", self.start_lr, self.end_lr, _progress(t, 0.0, self.num_steps - 1, xp), xp)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase("exponential ramp", 0), Phase("constant", self.num_steps - 1)]

    def peak(self) -> tuple[float, float] | None:
        return (self.num_steps - 1, self.end_lr) if self.end_lr >= self.start_lr else (0, self.start_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.num_steps - 1, self.end_lr)


# ----------------------------------------------------------------------------- composition


@dataclass(frozen=True)
class Sequence(Schedule):
    """Join schedules at boundaries (optax ``join_schedules``): piece ``i`` sees ``step - boundaries[i-1]``.

    ``lr(t) = schedules[i](t - b_i)`` where ``i`` is the number of boundaries ``<= t`` and
    ``b_0 = 0``. Boundaries are strictly increasing ints ``>= 1``, one fewer than schedules.
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[int, ...]

    def __post_init__(self) -> None:
        pieces = tuple(self.schedules) if isinstance(self.schedules, (list, tuple)) else None
        if not pieces or not all(isinstance(s, Schedule) for s in pieces):
            raise TypeError(f"schedules must be a non-empty list of Schedule, got schedules={self.schedules!r}")
        if not isinstance(self.boundaries, (list, tuple)) or len(self.boundaries) != len(pieces) - 1:
            raise ValueError(
                f"boundaries must have one entry fewer than schedules ({len(pieces) - 1}), "
                f"got boundaries={self.boundaries!r}"
            )
        bounds = tuple(check_int(f"boundaries[{i}]", b, minimum=1) for i, b in enumerate(self.boundaries))
        if list(bounds) != sorted(set(bounds)):
            raise ValueError(f"boundaries must be strictly increasing, got boundaries={list(bounds)!r}")
        _set(self, "schedules", pieces)
        _set(self, "boundaries", bounds)

    def _starts(self) -> list[int]:
        return [0, *self.boundaries]

    def _value(self, t: Any, xp: _Ops) -> Any:
        starts = self._starts()
        if xp is _SCALAR:
            i = bisect_right(self.boundaries, t)
            return self.schedules[i]._value(t - starts[i], xp)
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), t, side="right")
        out = np.empty_like(t)
        for i, (piece, start) in enumerate(zip(self.schedules, starts)):
            mask = index == i
            if mask.any():
                local = t[mask] - start
                out[mask] = _broadcast(piece._value(local, xp), local.shape)
        return out

    def _pieces(self) -> list[tuple[Schedule, int, float]]:
        starts = self._starts()
        ends: list[float] = [*self.boundaries, math.inf]
        return [(s, a, b) for s, a, b in zip(self.schedules, starts, ends)]

    @staticmethod
    def _until(limit: float) -> float | None:
        """A piece's ``until``: None for the last piece when the caller gave none (an endless piece then lists
        what it lists on its own, instead of counting its cycles up to infinity)."""
        return None if math.isinf(limit) else limit

    def phases(self, until: float | None = None) -> list[Phase]:
        out: list[Phase] = []
        for piece, start, stop in self._pieces():
            if until is not None and start >= until:
                break
            limit = stop - start if until is None else min(stop, until) - start
            out += [Phase(p.name, start + p.start) for p in piece.phases(self._until(limit)) if p.start < limit]
        return out

    def jumps(self, until: float | None = None) -> list[int]:
        out: list[int] = []
        for piece, start, stop in self._pieces():
            limit = stop - start if until is None else min(stop, until) - start
            out += [start + j for j in piece.jumps(self._until(limit)) if j < limit]
        return out

    def peak(self) -> tuple[float, float] | None:
        candidates = []
        for piece, start, stop in self._pieces():
            p = piece.peak()
            if p is not None and p[0] < stop - start:
                candidates.append((start + p[0], p[1]))
        return max(candidates, key=lambda c: (c[1], -c[0])) if candidates else None

    def end(self) -> tuple[float, float] | None:
        last = self.schedules[-1].end()
        if last is None:
            return None
        return (self._starts()[-1] + last[0], last[1])


@dataclass(frozen=True)
class Product(Schedule):
    """``lr(t) = a(t) * b(t)``: e.g. a base LR times a factor schedule."""

    a: Schedule
    b: Schedule

    def __post_init__(self) -> None:
        for name in ("a", "b"):
            if not isinstance(getattr(self, name), Schedule):
                raise TypeError(f"{name} must be a Schedule, got {name}={getattr(self, name)!r}")

    def _value(self, t: Any, xp: _Ops) -> Any:
        return self.a._value(t, xp) * self.b._value(t, xp)

    def phases(self, until: float | None = None) -> list[Phase]:
        if isinstance(self.a, Constant):  # a scale: the other side names the phases
            return self.b.phases(until)
        if isinstance(self.b, Constant):
            return self.a.phases(until)
        merged: dict[int, str] = {}
        for p in [*self.a.phases(until), *self.b.phases(until)]:
            merged.setdefault(p.start, p.name)
        return [Phase(name, start) for start, name in sorted(merged.items())]

    def jumps(self, until: float | None = None) -> list[int]:
        return sorted(set(self.a.jumps(until)) | set(self.b.jumps(until)))

    def _scaled(self, point_of: Callable[[Schedule], tuple[float, float] | None]) -> tuple[float, float] | None:
        """``point_of`` (:meth:`peak` or :meth:`end`) of the side a :class:`Constant` scales, its LR scaled."""
        for scale, other in ((self.a, self.b), (self.b, self.a)):
            if isinstance(scale, Constant):
                point = point_of(other)
                return None if point is None else (point[0], scale.value * point[1])
        return None

    def peak(self) -> tuple[float, float] | None:
        return self._scaled(lambda s: s.peak())

    def end(self) -> tuple[float, float] | None:
        return self._scaled(lambda s: s.end())


# ----------------------------------------------------------------------------- schedule changes on resume


@dataclass(frozen=True)
class Decay(Schedule):
    """A cooldown: from ``start_lr`` to ``min_lr`` over ``decay_steps``, then ``min_lr`` held.

    ``lr(t) = start_lr * c(p) + min_lr * (1 - c(p))`` with ``p = clamp(t / decay_steps, 0, 1)`` and the
    shapes of :class:`WSD` (``linear``, ``cosine``, ``1-sqrt``, ``exponential``). ``lr(0) = start_lr`` and
    ``lr(decay_steps) = min_lr`` exactly. Used by ``--lr-resume-policy cooldown:N``, with ``start_lr`` the
    LR in force at the checkpoint.

    Args:
        start_lr: the LR at step 0 (absolute), ``>= 0``.
        decay_steps: ``N >= 1``.
        min_lr: the LR from step ``N`` on (absolute), ``>= 0``.
        decay_shape: one of :data:`DECAY_SHAPES`.
    """

    start_lr: float
    decay_steps: int
    min_lr: float = 0.0
    decay_shape: str = "linear"

    def __post_init__(self) -> None:
        start = _lr_field(self, "start_lr")
        _int_field(self, "decay_steps", 1)
        floor = _lr_field(self, "min_lr")
        check_choice("decay_shape", self.decay_shape, DECAY_SHAPES)
        if self.decay_shape == "exponential" and not (start > 0 and floor > 0):
            raise ValueError(
                f"decay_shape='exponential' needs start_lr > 0 and min_lr > 0, got start_lr={start!r}, min_lr={floor!r}"
            )

    def _value(self, t: Any, xp: _Ops) -> Any:
        return _decay(self.decay_shape, self.start_lr, self.min_lr, _progress(t, 0.0, self.decay_steps, xp), xp)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase(f"{self.decay_shape} decay", 0), Phase("floor", self.decay_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (0, self.start_lr) if self.start_lr >= self.min_lr else (self.decay_steps, self.min_lr)

    def end(self) -> tuple[float, float] | None:
        return (self.decay_steps, self.min_lr)


@dataclass(frozen=True)
class Refit(Schedule):
    """The rest of ``schedule`` from step ``offset`` on, rescaled to start at ``start_lr``.

    With ``s = schedule``, ``floor`` its final LR (``s.end()``) and ``t`` counted from ``offset``:
    ``lr(t) = start_lr * c + floor * (1 - c)``, ``c = (s(offset + t) - floor) / (s(offset) - floor)``.
    So ``lr(0) = start_lr`` exactly (no jump where the refit begins), ``lr`` reaches ``floor`` exactly
    where ``s`` does (step ``s.end()[0] - offset``) and holds it, and in between it keeps ``s``'s shape:
    a phase where ``s`` is flat (WSD's stable phase) stays flat at ``start_lr``. Used by
    ``--lr-resume-policy extend``: ``s`` is the lengthened schedule, ``start_lr`` the LR in force.

    Args:
        schedule: a schedule with an end (``end()`` is not None) and ``s(offset) > floor``.
        offset: the step of ``schedule`` where the refit begins, ``>= 0``.
        start_lr: the LR at the refit's step 0 (absolute), ``>= 0``.
    """

    schedule: Schedule
    offset: int
    start_lr: float

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise TypeError(f"schedule must be a Schedule, got schedule={self.schedule!r}")
        offset = _int_field(self, "offset", 0)
        _lr_field(self, "start_lr")
        end = self.schedule.end()
        if end is None:
            raise ValueError(f"schedule must end at a final LR to be refitted, got {type(self.schedule).__name__}")
        begin = self.schedule(offset)
        if not begin > end[1]:
            raise ValueError(
                f"schedule must still be above its final LR at offset to be refitted, got offset={offset} "
                f"(LR {begin!r}), final LR {end[1]!r} from step {end[0]}"
            )

    def _value(self, t: Any, xp: _Ops) -> Any:
        floor = self.schedule.end()[1]  # type: ignore[index]
        begin = self.schedule._value(float(self.offset), _SCALAR)
        remaining = (self.schedule._value(t + self.offset, xp) - floor) / (begin - floor)
        return _interpolate(self.start_lr, floor, remaining)

    def phases(self, until: float | None = None) -> list[Phase]:
        end = self.schedule.end()
        return [Phase("refit", 0), Phase("floor", int(end[0]) - self.offset)]  # type: ignore[index]

    def end(self) -> tuple[float, float] | None:
        end = self.schedule.end()
        return (max(end[0] - self.offset, 0), end[1])  # type: ignore[index]


# ----------------------------------------------------------------------------- transformers' factors
#
# Each class below is one lambda of transformers/optimization.py, written in the same order
# of operations so that ``base_lr * factor(t)`` equals transformers' LR (LambdaLR computes
# ``base_lr * lr_lambda(t)``). Arguments keep transformers' names. Steps clamped inside a
# ``where`` only keep the unused branch in its domain.
#
# Each argument means the same in every factor, so one table checks them all when a factor is built
# (transformers fails on a bad one only inside LambdaLR's first step). Step counts are ints >= 0, as
# lrkit's get_scheduler requires; the rest is what transformers' formulas compute, quirks included
# (a negative num_stable_steps, any num_cycles), refusing only what they cannot (power < 0 and
# timescale 0 divide by zero, lr_init is a divisor).

#: argument -> the minimum of an int argument (None: any int)
_HF_INTS: dict[str, int | None] = {
    "num_warmup_steps": 0,
    "num_training_steps": 0,
    "num_decay_steps": 0,
    "num_stable_steps": None,
    "timescale": 1,
}
#: argument -> the bounds of a real argument (:func:`check_real`'s keywords)
_HF_REALS: dict[str, dict[str, Any]] = {
    "num_cycles": {},
    "lr_end": {},
    "power": {"low": 0.0},
    "lr_init": {"low": 0.0, "low_open": True},
    "min_lr_rate": {},
    "min_lr_ratio": {},
    "warmup_lr_rate": {},
}


@dataclass(frozen=True)
class _HFFactor(Schedule):
    """A transformers ``get_scheduler`` multiplier of the base LR."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:  # an optional argument left out (warmup_lr_rate)
                continue
            if f.name in _HF_INTS:
                _set(self, f.name, check_int(f.name, value, minimum=_HF_INTS[f.name]))
            elif f.name in _HF_REALS:
                _real_field(self, f.name, **_HF_REALS[f.name])

    def _warmup_factor(self, t: Any, w: int) -> Any:
        return t / float(max(1, w))


@dataclass(frozen=True)
class HFConstantFactor(_HFFactor):
    """transformers ``constant``: ``1``. lrkit: :class:`Constant`."""

    def _value(self, t: Any, xp: _Ops) -> Any:
        return 1.0

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase("constant", 0)]

    def peak(self) -> tuple[float, float] | None:
        return (0, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (0, 1.0)


@dataclass(frozen=True)
class HFConstantWithWarmupFactor(_HFFactor):
    """transformers ``constant_with_warmup``: ``t / max(1, W)`` for ``t < W``, then ``1``.

    Same as lrkit's :class:`WarmupConstant` with ``warmup_start_lr = 0``.
    """

    num_warmup_steps: int

    def _value(self, t: Any, xp: _Ops) -> Any:
        w = self.num_warmup_steps
        return xp.where(t < w, t / float(max(1.0, w)), 1.0)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase("warmup", 0), Phase("constant", max(self.num_warmup_steps, 0))]

    def peak(self) -> tuple[float, float] | None:
        return (max(self.num_warmup_steps, 0), 1.0)

    def end(self) -> tuple[float, float] | None:
        return self.peak()


@dataclass(frozen=True)
class HFLinearFactor(_HFFactor):
    """transformers ``linear``: warmup ``t / max(1, W)``, then ``max(0, (T - t) / max(1, T - W))``.

    Reaches 0 at ``T`` and stays there. Quirk: with the default ``min_lr = 0`` the update after
    step ``T - 1`` is the last with a nonzero LR. lrkit: :class:`WarmupLinear` (any ``min_lr``).
    """

    num_warmup_steps: int
    num_training_steps: int

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total = self.num_warmup_steps, self.num_training_steps
        decay = xp.maximum(0.0, (total - t) / float(max(1, total - w)))
        return xp.where(t < w, self._warmup_factor(t, w), decay)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [
            Phase("warmup", 0),
            Phase("linear decay", self.num_warmup_steps),
            Phase("floor", self.num_training_steps),
        ]

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (self.num_training_steps, 0.0)


@dataclass(frozen=True)
class HFCosineFactor(_HFFactor):
    """transformers ``cosine``: warmup, then ``max(0, (1 + cos(2 pi c p)) / 2)``, ``p = (t - W) / max(1, T - W)``.

    Quirk: ``p`` is not clamped, so after ``T`` the factor rises again (with the default
    ``num_cycles = 0.5`` it climbs back towards 1 over the next ``T - W`` steps).
    lrkit: :class:`WarmupCosine`, which holds ``min_lr`` after ``T``.
    """

    num_warmup_steps: int
    num_training_steps: int
    num_cycles: float = 0.5

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total = self.num_warmup_steps, self.num_training_steps
        progress = (t - w) / float(max(1, total - w))
        decay = xp.maximum(0.0, 0.5 * (1.0 + xp.cos(math.pi * float(self.num_cycles) * 2.0 * progress)))
        return xp.where(t < w, self._warmup_factor(t, w), decay)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [
            Phase("warmup", 0),
            Phase("cosine decay", self.num_warmup_steps),
            Phase("past the end (rises)", self.num_training_steps),
        ]

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (self.num_training_steps, float(self(self.num_training_steps)))


@dataclass(frozen=True)
class HFCosineWithHardRestartsFactor(_HFFactor):
    """transformers ``cosine_with_restarts``: ``num_cycles`` equal cosine cycles with hard restarts, 0 after ``T``.

    ``max(0, (1 + cos(pi * ((c p) mod 1))) / 2)`` with ``p = (t - W) / max(1, T - W)``; 0 once ``p >= 1``.
    Quirk: every cycle restarts at the full peak and decays to 0, no floor, no decay of the peaks.
    lrkit: :class:`CosineWithRestarts` (``cycle_mult``, ``cycle_decay``, ``min_lr``, re-warmup).
    """

    num_warmup_steps: int
    num_training_steps: int
    num_cycles: float = 1

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total = self.num_warmup_steps, self.num_training_steps
        progress = (t - w) / float(max(1, total - w))
        cycle = xp.maximum(0.0, 0.5 * (1.0 + xp.cos(math.pi * ((float(self.num_cycles) * progress) % 1.0))))
        return xp.where(t < w, self._warmup_factor(t, w), xp.where(progress >= 1.0, 0.0, cycle))

    def _restarts(self) -> list[int]:
        # Where the factor jumps up: found by evaluating, since the float ``% 1.0`` decides the exact step.
        steps = np.arange(max(self.num_warmup_steps, 0) + 1, max(self.num_training_steps, 0))
        if not steps.size:
            return []
        return [int(t) for t in steps[self(steps) > self(steps - 1)]]

    def phases(self, until: float | None = None) -> list[Phase]:
        cycles = [Phase(f"cycle {k + 2} (restart)", s) for k, s in enumerate(self._restarts())]
        return [
            Phase("warmup", 0),
            Phase("cycle 1", self.num_warmup_steps),
            *cycles,
            Phase("floor", self.num_training_steps),
        ]

    def jumps(self, until: float | None = None) -> list[int]:
        return self._restarts()

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (self.num_training_steps, 0.0)


@dataclass(frozen=True)
class HFPolynomialFactor(_HFFactor):
    """transformers ``polynomial``: warmup, then ``((lr_init - lr_end) * pct ** power + lr_end) / lr_init``.

    ``pct = 1 - (t - W) / (T - W)``; ``lr_end / lr_init`` after ``T``.
    Quirk: ``lr_init`` is the optimizer's *default* LR, not each group's, so a group with another
    LR ends at ``lr_end * group_lr / lr_init`` rather than ``lr_end``; and ``W == T`` divides by
    zero at step ``T`` in transformers (lrkit rejects it up front).
    lrkit: :class:`WarmupPolynomial`, whose ``min_lr`` is absolute per group.
    """

    num_warmup_steps: int
    num_training_steps: int
    lr_end: float
    power: float
    lr_init: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_warmup_steps == self.num_training_steps:
            raise ValueError(
                "polynomial needs num_warmup_steps != num_training_steps (transformers divides by "
                f"num_training_steps - num_warmup_steps = 0 at step {self.num_training_steps}), got "
                f"num_warmup_steps={self.num_warmup_steps}, num_training_steps={self.num_training_steps}"
            )

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total = self.num_warmup_steps, self.num_training_steps
        lr_range = self.lr_init - self.lr_end
        decay_steps = total - w
        pct_remaining = xp.maximum(1 - (xp.minimum(t, total) - w) / decay_steps, 0.0)
        decay = lr_range * pct_remaining**self.power + self.lr_end
        after = xp.where(t > total, self.lr_end / self.lr_init, decay / self.lr_init)
        return xp.where(t < w, self._warmup_factor(t, w), after)

    def _floor_start(self) -> int:
        """Where the floor ``lr_end / lr_init`` starts: ``T``, or ``T + 1`` with ``power == 0``, where transformers'
        ``pct ** 0`` is 1 at ``T`` itself (a constant 1 until ``T``, then a jump)."""
        return self.num_training_steps + (1 if self.power == 0 else 0)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [
            Phase("warmup", 0),
            Phase("polynomial decay", self.num_warmup_steps),
            Phase("floor", self._floor_start()),
        ]

    def jumps(self, until: float | None = None) -> list[int]:
        step = self._floor_start()
        jumped = self.power == 0 and self.lr_end != self.lr_init
        return [step] if jumped and (until is None or step < until) else []

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (self._floor_start(), self.lr_end / self.lr_init)


@dataclass(frozen=True)
class HFInverseSqrtFactor(_HFFactor):
    """transformers ``inverse_sqrt``: warmup, then ``1 / sqrt((t + timescale - W) / timescale)``.

    Quirk: transformers defaults ``timescale`` to ``num_warmup_steps or 10_000``, so without
    warmup the decay timescale silently becomes 10,000 steps. lrkit: :class:`InverseSqrt`,
    which asks for an explicit ``timescale`` when there is no warmup.
    """

    num_warmup_steps: int
    timescale: int

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, tau = self.num_warmup_steps, self.timescale
        shift = tau - w
        decay = 1.0 / xp.sqrt((xp.maximum(t, w) + shift) / tau)
        return xp.where(t < w, self._warmup_factor(t, w), decay)

    def phases(self, until: float | None = None) -> list[Phase]:
        return [Phase("warmup", 0), Phase("inverse-sqrt decay", self.num_warmup_steps)]

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)


@dataclass(frozen=True)
class HFCosineWithMinLRFactor(_HFFactor):
    """transformers ``cosine_with_min_lr``: warmup, then ``max(0, c * (1 - r) + r)``, ``c`` as in ``cosine``.

    ``r = min_lr_rate`` (or ``min_lr / optimizer.defaults["lr"]``). Quirks: as ``cosine`` it rises
    after ``T``; a ``min_lr`` is converted with the optimizer's default LR, not each group's.
    lrkit: :class:`WarmupCosine` with an absolute per-group ``min_lr``.
    """

    num_warmup_steps: int
    num_training_steps: int
    num_cycles: float
    min_lr_rate: float

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total, rate = self.num_warmup_steps, self.num_training_steps, self.min_lr_rate
        progress = (t - w) / float(max(1, total - w))
        factor = 0.5 * (1.0 + xp.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
        factor = factor * (1 - rate) + rate
        return xp.where(t < w, self._warmup_factor(t, w), xp.maximum(0, factor))

    def phases(self, until: float | None = None) -> list[Phase]:
        return [
            Phase("warmup", 0),
            Phase("cosine decay", self.num_warmup_steps),
            Phase("past the end (rises)", self.num_training_steps),
        ]

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (self.num_training_steps, float(self(self.num_training_steps)))


@dataclass(frozen=True)
class HFCosineWarmupWithMinLRFactor(_HFFactor):
    """transformers ``cosine_warmup_with_min_lr``: an off-by-one warmup, then cosine to ``min_lr_rate``.

    Warmup ``(t + 1) / max(1, W)`` (or ``rate + (1 - rate) * t / max(1, W - 1)`` with
    ``warmup_lr_rate``); decay ``max(0, c * (1 - r) + r)`` with ``c = (1 + cos(2 pi n p)) / 2`` and
    ``p = (t - W + 1) / max(1, T - W)``.
    Quirks: step 0 is already ``1 / W`` of the peak, the peak is reached at ``W - 1`` and the floor at
    ``T - 1``; after ``T`` the factor rises again. lrkit: :class:`WarmupCosine` (``warmup_start_lr``,
    peak at ``W``, floor at ``T``, held).
    """

    num_warmup_steps: int
    num_training_steps: int
    num_cycles: float
    min_lr_rate: float
    warmup_lr_rate: float | None = None

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, total, rate = float(self.num_warmup_steps), float(self.num_training_steps), self.min_lr_rate
        if self.warmup_lr_rate is None:
            warm = (t + 1.0) / max(1.0, w)
        else:
            start = float(self.warmup_lr_rate)
            warm = start + (1.0 - start) * t / max(1, w - 1)
        progress = (t - w + 1.0) / max(1.0, total - w)
        factor = 0.5 * (1.0 + xp.cos(math.pi * self.num_cycles * 2.0 * progress))
        factor = factor * (1 - rate) + rate
        return xp.where(t < w, warm, xp.maximum(0, factor))

    def phases(self, until: float | None = None) -> list[Phase]:
        w, total = self.num_warmup_steps, self.num_training_steps
        return [
            Phase("warmup", 0),
            Phase("cosine decay", max(w - 1, 0)),
            Phase("past the end (rises)", max(total - 1, 0)),
        ]

    def peak(self) -> tuple[float, float] | None:
        return (max(self.num_warmup_steps - 1, 0), 1.0)

    def end(self) -> tuple[float, float] | None:
        step = max(self.num_training_steps - 1, 0)
        return (step, float(self(step)))


@dataclass(frozen=True)
class HFWSDFactor(_HFFactor):
    """transformers ``warmup_stable_decay``: warmup from ``min_lr_ratio`` to 1, stable at 1, decay to ``min_lr_ratio``.

    Warmup ``f(p) * (1 - r) + r`` with ``p = t / max(1, W)``; ``f`` is ``p`` (linear),
    ``(1 - cos(pi p)) / 2`` (cosine) or ``1 - sqrt(1 - p)`` (1-sqrt). Stable: 1 until ``W + S``.
    Decay over ``D`` steps: ``g(p) * (1 - r) + r`` with ``g`` ``1 - p``, ``(1 + cos(2 pi n p)) / 2`` or
    ``1 - sqrt(p)``; ``r`` after ``W + S + D``.
    Quirks: the warmup starts at ``min_lr_ratio``, not 0; a negative ``num_stable_steps`` (when
    ``num_training_steps < W + D``) is accepted silently. lrkit: :class:`WSD`.
    """

    num_warmup_steps: int
    num_stable_steps: int
    num_decay_steps: int
    warmup_type: str = "linear"
    decay_type: str = "cosine"
    min_lr_ratio: float = 0.0
    num_cycles: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warmup_type not in ("linear", "cosine", "1-sqrt"):
            raise ValueError(f"Unknown warmup type: {self.warmup_type}, expected 'linear', 'cosine' or '1-sqrt'")
        if self.decay_type not in ("linear", "cosine", "1-sqrt"):
            raise ValueError(f"Unknown decay type: {self.decay_type}, expected 'linear', 'cosine' or '1-sqrt'")

    def _value(self, t: Any, xp: _Ops) -> Any:
        w, s, d, r = self.num_warmup_steps, self.num_stable_steps, self.num_decay_steps, self.min_lr_ratio
        progress = xp.minimum(t, w) / float(max(1, w))
        if self.warmup_type == "linear":
            factor = progress
        elif self.warmup_type == "cosine":
            factor = 0.5 * (1.0 - xp.cos(math.pi * progress))
        else:
            factor = 1.0 - xp.sqrt(1.0 - progress)
        warm = xp.maximum(0.0, factor * (1.0 - r) + r)
        progress = (xp.maximum(t, w + s) - w - s) / float(max(1, d))
        if self.decay_type == "linear":
            factor = 1.0 - progress
        elif self.decay_type == "cosine":
            factor = 0.5 * (1.0 + xp.cos(math.pi * float(self.num_cycles) * 2.0 * progress))
        else:
            factor = 1.0 - xp.sqrt(progress)
        decay = xp.maximum(0.0, factor * (1.0 - r) + r)
        after = xp.where(t < w + s, 1.0, xp.where(t < w + s + d, decay, r))
        return xp.where(t < w, warm, after)

    def phases(self, until: float | None = None) -> list[Phase]:
        w, s, d = self.num_warmup_steps, self.num_stable_steps, self.num_decay_steps
        return [
            Phase("warmup", 0),
            Phase("stable", w),
            Phase(f"{self.decay_type} decay", w + s),
            Phase("floor", w + s + d),
        ]

    def peak(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps, 1.0)

    def end(self) -> tuple[float, float] | None:
        return (self.num_warmup_steps + self.num_stable_steps + self.num_decay_steps, self.min_lr_ratio)
