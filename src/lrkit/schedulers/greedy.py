"""transformers' ``GreedyLR``: a metric-driven schedule that lowers the LR on a plateau and raises it on
steady improvement.

Bit-identical to ``transformers.optimization.GreedyLR`` (transformers 5.24; Subramanian et al., *GreedyLR:
A Novel Adaptive Learning Rate Scheduler*, arXiv:2512.14527) for the same metric stream: same arguments,
defaults, attribute names and order of operations. ``lrkit.get_scheduler("greedy", optimizer,
scheduler_specific_kwargs={...})`` builds it, as transformers' ``get_scheduler`` does.

Like :class:`lrkit.ReduceLROnPlateau` it is an lrkit scheduler and an instance of torch's
``ReduceLROnPlateau``, so the HF Trainer, Lightning and :class:`lrkit.TrainingSchedule` step it with a
metric (``step(metrics)``) instead of once per update.

Differences from transformers, all deliberate:

* State is plain data: ``state_dict()`` holds JSON primitives (``best`` of +-inf as the string ``"inf"``)
  and names its class under ``"type"``. ``load_state_dict`` validates every key before it changes
  anything; like transformers it takes a partial state (and transformers' own state dicts), leaving the
  missing keys as they are.
* Arguments are checked when it is built: ``0 < factor < 1`` (transformers takes ``factor <= 0``, then
  divides by zero or sets negative LRs), ints ``>= 0`` for ``patience``, ``cooldown``, ``warmup`` and
  ``reset_start``, ``window_size >= 1`` (transformers divides by zero), ``threshold``, ``eps`` and the LR
  bounds finite and ``>= 0``, ``min_lr <= max_lr`` in every group, bools for ``verbose`` and ``smooth``.
  The optimizer is anything with ``param_groups``, as for every lrkit scheduler.
* A ``torch.Tensor`` LR is filled in place, as every lrkit scheduler does (a compiled optimizer does
  not recompile); transformers replaces it with a Python float. With a float64 tensor the LRs are
  transformers'; with a float32 tensor each LR is rounded to float32 where transformers keeps float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, SupportsFloat

from lrkit.schedulers.base import (
    LRScheduler,
    StateError,
    _plain,
    _TorchReduceLROnPlateau,
    check_count,
    check_optimizer,
    decode_float,
    group_lrs,
    set_group_value,
)
from lrkit.schedules._checks import check_choice, check_int, check_per_group, check_real

__all__ = ["GreedyLR", "StreamingAverage", "get_greedy_schedule"]

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {name}={value!r} ({type(value).__name__})")
    return value


def _check_factor(factor: Any) -> float:
    return check_real("factor", factor, low=0.0, high=1.0, low_open=True, high_open=True)


def _check_lr_bounds(name: str, value: Any, num_groups: int) -> list[float]:
    """``min_lr`` / ``max_lr``: one finite LR >= 0, or one per param group."""
    values = check_per_group(name, value, num_groups)
    return [check_real(f"{name}[{i}]", v, low=0.0) for i, v in enumerate(values)]


def _check_bounds_order(min_lrs: list[float], max_lrs: list[float], where: str = "") -> None:
    for i, (low, high) in enumerate(zip(min_lrs, max_lrs)):
        if low > high:
            raise ValueError(
                f"{where}min_lr must be <= max_lr in every param group, got min_lr[{i}]={low!r} > max_lr[{i}]={high!r}"
            )


def _worst(mode: str) -> float:
    """The ``best`` before any metric: +inf when minimising, -inf when maximising."""
    return math.inf if mode == "min" else -math.inf


def _state_value(key: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)`` (an argument check of this module); its error becomes a :class:`StateError` naming ``key``."""
    try:
        return check(value)
    except StateError:
        raise
    except (TypeError, ValueError) as err:
        raise StateError(f"state[{key!r}]={value!r} is not valid: {err}") from err


class StreamingAverage:
    """The mean of the last ``window_size`` values: GreedyLR's metric smoothing (``smooth=True``).

    ``streamavg(v)`` appends ``v`` and returns ``sum / len(values)`` over the window; the sum is kept
    running (``sum += v``, then ``sum -= values.pop(0)`` once the window is full), in transformers' order
    of operations, so the averages are bit-identical to transformers'.

    Attributes:
        window_size: the most values kept (an int >= 1).
        values: the values in the window, oldest first.
        sum: their running sum.
    """

    def __init__(self, window_size: int) -> None:  # noqa: D107
        self.window_size: int = check_int("window_size", window_size, minimum=1)
        self.values: list[float] = []
        self.sum: float = 0.0

    def streamavg(self, value: float) -> float:
        """Add ``value`` to the window and return the window's mean."""
        values = self.values
        values.append(value)
        self.sum += value
        if len(values) > self.window_size:
            self.sum -= values.pop(0)
        return self.sum / len(values)

    def state_dict(self) -> dict[str, Any]:
        """Plain data: ``{"window_size": ..., "values": [...], "sum": ...}`` (+-inf and nan as strings)."""
        return {"window_size": self.window_size, "values": _plain(self.values), "sum": _plain(self.sum)}

    @staticmethod
    def parse_state(state: Any, window_size: int, where: str = "state") -> tuple[int, list[float], float]:
        """Validate a :meth:`state_dict` and return ``(window_size, values, sum)``; changes nothing.

        As in transformers, a missing ``window_size`` keeps ``window_size`` and a state without
        ``values`` and ``sum`` is an empty window; one of the two without the other is an error.
        """
        if not isinstance(state, Mapping):
            raise StateError(f"{where} must be a dict like StreamingAverage.state_dict(), got {state!r}")
        unknown = sorted(set(state) - {"window_size", "values", "sum"})
        if unknown:
            raise StateError(
                f"{where} has unknown keys {unknown}; expected keys among ['sum', 'values', 'window_size']"
            )
        if "window_size" in state:
            size = state["window_size"]
            window_size = _state_value(
                f"{where}['window_size']", size, lambda v: check_int("window_size", v, minimum=1)
            )
        if ("values" in state) != ("sum" in state):
            raise StateError(f"{where} must hold both 'values' and 'sum' or neither, got keys {sorted(state)}")
        values, total = state.get("values", []), state.get("sum", 0.0)
        if not isinstance(values, (list, tuple)) or len(values) > window_size:
            raise StateError(
                f"{where}['values'] must be a list of at most window_size={window_size} numbers, got {values!r}"
            )
        decoded = [decode_float(f"{where}['values'][{i}]", v) for i, v in enumerate(values)]
        return window_size, decoded, decode_float(f"{where}['sum']", total)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also transformers'); on any error nothing is changed."""
        self.window_size, self.values, self.sum = self.parse_state(state_dict, self.window_size)


class GreedyLR(LRScheduler, _TorchReduceLROnPlateau):
    """Lower the LR by ``factor`` on a plateau, raise it by ``1 / factor`` after steady improvement.

    ``step(metrics)`` takes the metric (e.g. the validation loss) and, in this order:

    1. ``m = metrics``, or with ``smooth`` the mean of the last ``window_size`` metrics.
    2. During a cooldown (after a decrease) or a warmup (after an increase) it counts that down, resets the
       good/bad counts and changes nothing else.
    3. Otherwise ``m`` improves on ``best`` if ``m < best * (1 - threshold)`` (``threshold_mode="rel"``) or
       ``m < best - threshold`` (``"abs"``); ``>`` and ``1 + threshold`` / ``+ threshold`` for
       ``mode="max"``. An improvement sets ``best = m`` and counts a good step (the bad count restarts);
       anything else counts a bad step (the good count restarts).
    4. More than ``patience`` good steps in a row: in every group ``lr = min(lr / factor, max_lr)``, applied
       only if it raises the LR by more than ``eps``; then a warmup of ``warmup`` steps.
       More than ``patience`` bad steps in a row: ``lr = max(lr * factor, min_lr)``, applied only if it lowers
       the LR by more than ``eps``; then a cooldown of ``cooldown`` steps.
    5. Each decrease that leaves every group at its ``min_lr`` counts ``reset_start`` down (an increase
       restores it); at 0 the schedule resets: the LRs it was built with, ``best``, the counts and the
       smoothing window all start over.

    Units: ``patience``, ``cooldown``, ``warmup`` and ``reset_start`` count ``step()`` calls (metric reports),
    ``min_lr``, ``max_lr`` and ``eps`` are LRs, an ``"abs"`` ``threshold`` is in the metric's units and a
    ``"rel"`` one a fraction of ``best``. At construction the LRs are the optimizer's, unchanged, and
    ``last_epoch`` is 0; it counts the ``step()`` calls (or is the ``epoch`` given to ``step``).

    Args:
        optimizer: the optimizer; its groups' LRs at construction are the LRs a reset returns to.
        mode: ``"min"`` (the metric should fall) or ``"max"``.
        factor: the multiplier on a plateau, ``0 < factor < 1``; its inverse on improvement.
        patience: good or bad steps in a row tolerated before the LR changes (the change is on the next).
        threshold: the margin an improvement must beat ``best`` by.
        threshold_mode: ``"rel"`` or ``"abs"``.
        cooldown: steps without any change after a decrease.
        warmup: steps without any change after an increase.
        min_lr: the floor, one LR or one per param group.
        max_lr: the ceiling, one LR or one per param group.
        eps: the smallest change of an LR that is applied.
        verbose: print each change (transformers' messages).
        smooth: follow the running mean of the last ``window_size`` metrics instead of the metric.
        window_size: the smoothing window, in metrics.
        reset_start: decreases at the floor before the reset (0 acts as 1).

    Attributes (transformers' names): ``best``, ``num_bad_epochs``, ``num_good_epochs``, ``cooldown_counter``,
    ``warmup_counter``, ``reset_start`` (the count-down; ``reset_start_original`` is the argument),
    ``min_lrs``, ``max_lrs``, ``_init_lrs`` (the LRs a reset restores), ``_streaming_avg`` (a
    :class:`StreamingAverage` with ``smooth``, else None), ``last_epoch``.
    """

    #: The state, in transformers' order (``_streaming_avg`` follows when smoothing).
    _STATE_KEYS: ClassVar[tuple[str, ...]] = (
        "factor",
        "min_lrs",
        "max_lrs",
        "patience",
        "verbose",
        "cooldown",
        "warmup",
        "cooldown_counter",
        "warmup_counter",
        "mode",
        "threshold",
        "threshold_mode",
        "best",
        "num_bad_epochs",
        "num_good_epochs",
        "eps",
        "last_epoch",
        "smooth",
        "window_size",
        "reset_start",
        "reset_start_original",
        "_last_lr",
        "_init_lrs",
    )
    _base_fields: ClassVar[tuple[str, ...]] = ()
    _state_fields: ClassVar[tuple[str, ...]] = _STATE_KEYS
    _history_fields: ClassVar[tuple[str, ...]] = (
        "best",
        "num_bad_epochs",
        "num_good_epochs",
        "cooldown_counter",
        "warmup_counter",
        "reset_start",
        "_last_lr",
        "_init_lrs",  # the LRs at construction, which a reset restores: the optimizer's then, not the spec's
        "_streaming_avg",
    )

    def __init__(
        self,
        optimizer: Any,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.95,
        patience: int = 10,
        threshold: float = 1e-6,
        threshold_mode: Literal["rel", "abs"] = "abs",
        cooldown: int = 0,
        warmup: int = 0,
        min_lr: float | list[float] = 1e-3,
        max_lr: float | list[float] = 1.0,
        eps: float = 1e-8,
        verbose: bool = False,
        smooth: bool = False,
        window_size: int = 50,
        reset_start: int = 500,
    ) -> None:
        self.factor = _check_factor(factor)  # before the optimizer, as transformers checks them
        check_optimizer(optimizer)
        num_groups = len(optimizer.param_groups)
        self.optimizer = optimizer
        self.mode = check_choice("mode", mode, _MODES)
        self.patience = check_int("patience", patience, minimum=0)
        self.threshold = check_real("threshold", threshold, low=0.0)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, _THRESHOLD_MODES)
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.warmup = check_int("warmup", warmup, minimum=0)
        self.min_lrs = _check_lr_bounds("min_lr", min_lr, num_groups)
        self.max_lrs = _check_lr_bounds("max_lr", max_lr, num_groups)
        _check_bounds_order(self.min_lrs, self.max_lrs)
        self.eps = check_real("eps", eps, low=0.0)
        self.verbose = _check_bool("verbose", verbose)
        self.smooth = _check_bool("smooth", smooth)
        self.window_size = check_int("window_size", window_size, minimum=1)
        self.reset_start = self.reset_start_original = check_int("reset_start", reset_start, minimum=0)
        self.last_epoch = 0
        self.cooldown_counter = 0
        self.warmup_counter = 0
        self._init_lrs = group_lrs(optimizer)
        self._last_lr = list(self._init_lrs)
        self.best = _worst(self.mode)
        self.num_bad_epochs = 0
        self.num_good_epochs = 0
        self._streaming_avg: StreamingAverage | None = StreamingAverage(self.window_size) if self.smooth else None

    # ----------------------------------------------------------------- stepping

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, current: float, best: float) -> bool:  # type: ignore[override]
        """Whether metric ``current`` improves on ``best`` by more than ``threshold`` (rel or abs)."""
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return current < best * (1.0 - self.threshold)
            return current < best - self.threshold
        if self.threshold_mode == "rel":
            return current > best * (1.0 + self.threshold)
        return current > best + self.threshold

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record ``metrics`` for the step just taken; lower or raise the LRs as the rule says."""
        current = float(metrics)
        average = self._streaming_avg
        if self.smooth and average is not None:
            current = average.streamavg(current)
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
            self.num_good_epochs = 0
        elif self.warmup_counter > 0:
            self.warmup_counter -= 1
            self.num_bad_epochs = 0
            self.num_good_epochs = 0
        else:
            if self.is_better(current, self.best):
                self.best = current
                self.num_bad_epochs = 0
                self.num_good_epochs += 1
            else:
                self.num_bad_epochs += 1
                self.num_good_epochs = 0
            if self.num_good_epochs > self.patience:
                self._increase_lr(self.last_epoch)
                self.warmup_counter = self.warmup
                self.num_good_epochs = 0
            elif self.num_bad_epochs > self.patience:
                self._reduce_lr(self.last_epoch)
                self.cooldown_counter = self.cooldown
                self.num_bad_epochs = 0
        self._last_lr = group_lrs(self.optimizer)

    def _groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs) or len(groups) != len(self.max_lrs):
            raise RuntimeError(
                f"the optimizer has {len(groups)} param groups but GreedyLR has {len(self.min_lrs)} min_lrs and "
                f"{len(self.max_lrs)} max_lrs (a group was added after construction): set scheduler.min_lrs, "
                "max_lrs and _init_lrs to match"
            )
        return groups

    def _reduce_lr(self, epoch: int) -> None:  # type: ignore[override]
        """``lr = max(lr * factor, min_lr)`` where that lowers it by more than ``eps``; count down to the reset."""
        all_at_min = True
        for i, group in enumerate(self._groups()):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                set_group_value(group, "lr", new_lr)
                if self.verbose:
                    print(f"Epoch {epoch}: reducing learning rate of group {i} to {new_lr:.4e}.")
            if float(group["lr"]) > self.min_lrs[i]:
                all_at_min = False
        if all_at_min:
            self.reset_start -= 1
            if self.reset_start <= 0:
                self._reset()

    def _increase_lr(self, epoch: int) -> None:
        """``lr = min(lr / factor, max_lr)`` where that raises it by more than ``eps``; restart the reset count."""
        for i, group in enumerate(self._groups()):
            old_lr = float(group["lr"])
            new_lr = min(old_lr / self.factor, self.max_lrs[i])
            if new_lr - old_lr > self.eps:
                set_group_value(group, "lr", new_lr)
                if self.verbose:
                    print(f"Epoch {epoch}: increasing learning rate of group {i} to {new_lr:.4e}.")
        self.reset_start = self.reset_start_original

    def _reset(self) -> None:
        """Start over: the LRs it was built with, no ``best``, no counts, an empty smoothing window."""
        for group, lr in zip(self.optimizer.param_groups, self._init_lrs):
            set_group_value(group, "lr", lr)
        self.best = _worst(self.mode)
        self.num_bad_epochs = 0
        self.num_good_epochs = 0
        self.cooldown_counter = 0
        self.warmup_counter = 0
        self.reset_start = self.reset_start_original
        if self.smooth and self._streaming_avg is not None:
            self._streaming_avg = StreamingAverage(self.window_size)
        if self.verbose:
            print("Scheduler reset to initial state.")

    def _restart(self) -> None:  # pragma: no cover - never nested (its step() needs a metric)
        raise TypeError("GreedyLR cannot be restarted inside a composite: its step() needs a metric")

    # ------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Plain data: ``"type"``, transformers' keys, and ``_streaming_avg`` when smoothing."""
        state = super().state_dict()
        del state["spec"]  # transformers' keys exactly; its arguments are in them, and they win on load
        if self.smooth and self._streaming_avg is not None:
            state["_streaming_avg"] = self._streaming_avg.state_dict()
        return state

    def _checks(self) -> dict[str, Callable[[Any], Any]]:
        """Each state key's check: the constructor's, for its argument."""
        groups = len(self.optimizer.param_groups)

        def lrs(key: str) -> Callable[[Any], list[float]]:
            def check(value: Any) -> list[float]:
                if not isinstance(value, (list, tuple)) or len(value) != groups:
                    raise ValueError(f"{key} must be a list with one LR per param group ({groups})")
                return [check_real(f"{key}[{i}]", v, low=0.0) for i, v in enumerate(value)]

            return check

        def count(key: str, minimum: int = 0) -> Callable[[Any], int]:
            return lambda v: check_count(key, v, minimum=minimum)

        return {
            "factor": _check_factor,
            "min_lrs": lrs("min_lrs"),
            "max_lrs": lrs("max_lrs"),
            "patience": count("patience"),
            "verbose": lambda v: _check_bool("verbose", v),
            "cooldown": count("cooldown"),
            "warmup": count("warmup"),
            "cooldown_counter": count("cooldown_counter"),
            "warmup_counter": count("warmup_counter"),
            "mode": lambda v: check_choice("mode", v, _MODES),
            "threshold": lambda v: check_real("threshold", v, low=0.0),
            "threshold_mode": lambda v: check_choice("threshold_mode", v, _THRESHOLD_MODES),
            "best": lambda v: decode_float("best", v),
            "num_bad_epochs": count("num_bad_epochs"),
            "num_good_epochs": count("num_good_epochs"),
            "eps": lambda v: check_real("eps", v, low=0.0),
            "last_epoch": lambda v: check_count("last_epoch", v, minimum=-1),
            "smooth": lambda v: _check_bool("smooth", v),
            "window_size": count("window_size", 1),
            "reset_start": count("reset_start"),
            "reset_start_original": count("reset_start_original"),
            "_last_lr": lrs("_last_lr"),
            "_init_lrs": lrs("_init_lrs"),
        }

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``state`` (complete or partial) and return the attribute updates; changes nothing."""
        if not isinstance(state, Mapping):
            raise StateError(f"state_dict must be a dict, got {type(state).__name__}")
        kind = state.get("type", "GreedyLR")
        if kind != "GreedyLR":
            raise StateError(f"cannot load a {kind} state into a GreedyLR")
        allowed = {"type", "spec", "_streaming_avg", *self._STATE_KEYS}  # the arguments win, as in transformers
        unknown = sorted(set(state) - allowed)
        if unknown:
            raise StateError(f"GreedyLR state has unknown keys {unknown}; expected keys among {sorted(allowed)}")
        checks = self._checks()
        updates = {key: _state_value(key, state[key], checks[key]) for key in self._STATE_KEYS if key in state}
        after = {key: updates.get(key, getattr(self, key)) for key in self._STATE_KEYS}
        _state_value("min_lrs", after["min_lrs"], lambda lows: _check_bounds_order(lows, after["max_lrs"], "state: "))
        if after["reset_start"] > after["reset_start_original"]:
            raise StateError(
                f"state['reset_start']={after['reset_start']!r} must be <= reset_start_original="
                f"{after['reset_start_original']!r} (it counts down from there)"
            )
        if "_streaming_avg" in state:
            if not after["smooth"]:
                raise StateError("state['_streaming_avg'] is given but smooth is False: there is no smoothing window")
            updates["_streaming_avg"] = StreamingAverage.parse_state(
                state["_streaming_avg"], after["window_size"], where="state['_streaming_avg']"
            )
        return updates

    def _apply_state(self, updates: dict[str, Any]) -> None:
        window = updates.pop("_streaming_avg", None)
        for key, value in updates.items():
            setattr(self, key, value)
        if not self.smooth:
            self._streaming_avg = None
        elif window is not None or self._streaming_avg is None:
            average = StreamingAverage(self.window_size)
            if window is not None:
                average.window_size, average.values, average.sum = window
            self._streaming_avg = average
        if "_last_lr" in updates:  # as transformers: the saved LRs are the ones in force
            for group, lr in zip(self.optimizer.param_groups, self._last_lr):
                set_group_value(group, "lr", lr)

    # -------------------------------------------------------------------- spec

    def to_spec(self) -> dict[str, Any]:
        """The plain-dict spec of the schedule now running (read from its attributes, so also after a load).

        ``min_lr`` / ``max_lr`` are one LR when every group has the same one, else one per group (the state
        does not say how they were given, and a resumed run must describe itself as the original did);
        ``reset_start`` is the argument (``reset_start_original``), not the count-down.
        """

        def bound(values: list[float]) -> float | list[float]:
            return values[0] if len(set(values)) == 1 else list(values)

        args = {
            "mode": self.mode,
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "threshold_mode": self.threshold_mode,
            "cooldown": self.cooldown,
            "warmup": self.warmup,
            "min_lr": bound(self.min_lrs),
            "max_lr": bound(self.max_lrs),
            "eps": self.eps,
            "verbose": self.verbose,
            "smooth": self.smooth,
            "window_size": self.window_size,
            "reset_start": self.reset_start_original,
        }
        return {"type": type(self).__name__, **args}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_spec().items() if k != "type")
        return f"{type(self).__name__}({args})"

    @classmethod
    def torch_builder(cls, optimizer: Any, **args: Any) -> Any:
        """The oracle for ``backend="torch"``: transformers' own ``GreedyLR`` (torch has none)."""
        try:
            from transformers.optimization import GreedyLR as TransformersGreedyLR
        except ImportError as err:
            raise ImportError(
                "GreedyLR's reference (backend='torch') is transformers' GreedyLR: install transformers >= 5.24"
            ) from err
        return TransformersGreedyLR(optimizer, **args)


def get_greedy_schedule(optimizer: Any, **kwargs: Any) -> GreedyLR:
    """transformers' ``get_greedy_schedule``: ``GreedyLR(optimizer, **kwargs)``."""
    return GreedyLR(optimizer, **kwargs)
