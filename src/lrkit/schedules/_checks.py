"""Argument validation shared by every layer. Pure Python, no torch.

Every error names the argument, the value it got and what was expected, e.g.
``ValueError("step_size must be a positive int, got step_size=0")``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_scalar_tensor(value: Any) -> bool:
    """A 0-dim tensor (torch or numpy), recognised without importing torch."""
    return getattr(value, "ndim", None) == 0 and hasattr(value, "__float__") and hasattr(value, "dtype")


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """An ``int`` (not a bool) that is ``>= minimum``."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {name}={value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {name}={value!r}")
    return int(value)


def check_real(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    tensor_ok: bool = False,
) -> Any:
    """A finite real number in the interval given by ``low``/``high`` (closed unless ``*_open``).

    Returns it as a float; with ``tensor_ok`` a 0-dim tensor is accepted and returned as it is
    (torch's schedulers compute with a Tensor argument in its dtype, and so must a drop-in).
    """
    if tensor_ok and _is_scalar_tensor(value):
        check_real(name, float(value), low, high, low_open, high_open)
        return value
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {name}={value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {name}={value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        lo = "-inf" if low is None else repr(low)
        hi = "inf" if high is None else repr(high)
        interval = (
            ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + (")" if high_open or high is None else "]")
        )
        raise ValueError(f"{name} must be in {interval}, got {name}={value!r}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """One of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {name}={value!r}")
    return str(value)


def check_per_group(name: str, value: Any, num_groups: int) -> list[Any]:
    """A scalar broadcast to every param group, or a list/tuple with one entry per group."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_groups:
            raise ValueError(
                f"{name} must have one value per param group ({num_groups}), got {len(value)} values: "
                f"{name}={list(value)!r}"
            )
        return list(value)
    return [value] * num_groups
