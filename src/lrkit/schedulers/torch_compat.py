"""The 15 schedulers of ``torch.optim.lr_scheduler`` and ``torch.optim.swa_utils.SWALR``,
bit-identical to torch 2.13.

Same class names, arguments and defaults as torch. Each class only says how its
LR is computed; the formulas themselves live in :mod:`lrkit.schedules.torch_formulas`.
Where torch silently accepts a value that produces wrong LRs (a zero factor that
is later divided by, a non-positive period) lrkit raises a ``ValueError`` instead.

Functions cannot be saved as data: for :class:`LambdaLR`, :class:`MultiplicativeLR`
and a custom ``scale_fn`` of :class:`CyclicLR`, rebuild the scheduler with the same
function, then call ``load_state_dict`` (the state holds the step and the LRs).
"""

from __future__ import annotations

import copy
import math
import types
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from numbers import Real
from operator import itemgetter
from typing import Any, ClassVar, Literal, SupportsFloat

from lrkit.schedulers.base import (
    TORCH_ONLY_KEYS,
    LRScheduler,
    StateError,
    _plain,
    _Tensor,
    _TorchReduceLROnPlateau,
    check_count,
    check_each,
    check_optimizer,
    check_same_optimizer,
    copy_value,
    decode_float,
    group_values,
    initial_lrs,
    set_group_value,
    warn_epoch_deprecated,
)
from lrkit.schedules import torch_formulas as F
from lrkit.schedules._checks import check_choice, check_int, check_per_group, check_real

__all__ = [
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "SWALR",
]


#: ``group -> group["lr"]`` at C speed, for the hot paths that feed LRs to a formula.
_GROUP_LR = itemgetter("lr")


def _lambdas(name: str, lr_lambda: Any, num_groups: int) -> list[Callable[[int], float]]:
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != num_groups:
            raise ValueError(
                f"Expected {num_groups} lr_lambdas, but got {len(lr_lambda)}: {name} must have one function "
                f"per param group, got {name}={lr_lambda!r}"
            )
        fns = list(lr_lambda)
    else:
        fns = [lr_lambda] * num_groups
    for i, fn in enumerate(fns):
        if not callable(fn):
            raise TypeError(f"{name} should be a function, got {name}[{i}]={fn!r} ({type(fn).__name__})")
    return fns


class _FunctionLR(LRScheduler):
    """Shared constructor of the function-driven schedulers: one ``lr_lambda`` or one per param group.

    State, as in torch: a plain function (or lambda) is not saved (``None``); a callable
    *object* is saved as its attributes (``vars(fn)``), which :meth:`load_state_dict` puts back
    into the rebuilt scheduler's object. lrkit saves them only where they are plain data
    (numbers, strings, lists, dicts); an object holding anything else is saved as ``None``.
    Rebuild with the same ``lr_lambda``, then load.
    """

    _state_fields = ("lr_lambdas",)

    def __init__(
        self,
        optimizer: Any,
        lr_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        self.lr_lambdas = _lambdas("lr_lambda", lr_lambda, len(optimizer.param_groups))
        self._record_spec()  # the functions are read from lr_lambdas: see to_spec
        super().__init__(optimizer, last_epoch)

    def _encode_field(self, name: str, value: Any) -> Any:
        if name == "lr_lambdas":
            return [_callable_state(fn) for fn in value]
        return super()._encode_field(name, value)

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(state, Mapping) and "lr_lambdas" not in state:  # saved before lrkit kept them
            state = {**state, "lr_lambdas": [None] * len(self.lr_lambdas)}
        return super()._parse_state(state)

    def _decode_field(self, name: str, value: Any) -> Any:
        if name != "lr_lambdas":
            return super()._decode_field(name, value)
        if not isinstance(value, (list, tuple)) or len(value) != len(self.lr_lambdas):
            raise StateError(
                f"state['lr_lambdas'] must be a list with one entry per param group ({len(self.lr_lambdas)}), "
                f"got {value!r}"
            )
        for i, (fn, entry) in enumerate(zip(self.lr_lambdas, value)):
            if entry is None:
                continue
            if not isinstance(entry, Mapping) or not all(isinstance(k, str) for k in entry):
                raise StateError(f"state['lr_lambdas'][{i}] must be None or a dict of attributes, got {entry!r}")
            if isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
                raise StateError(
                    f"state['lr_lambdas'][{i}] holds the attributes of a callable object, but this scheduler's "
                    f"lr_lambda[{i}] is {fn!r}: rebuild it with the same kind of lr_lambda"
                )
        return [None if entry is None else copy.deepcopy(dict(entry)) for entry in value]

    def _apply_state(self, updates: dict[str, Any]) -> None:
        entries = updates.pop("lr_lambdas")
        super()._apply_state(updates)
        for fn, entry in zip(self.lr_lambdas, entries):
            if entry is not None:
                fn.__dict__.update(entry)

    def to_spec(self) -> dict[str, Any]:
        fns = self.lr_lambdas
        one = all(fn is fns[0] for fn in fns)
        return {"type": type(self).__name__, "lr_lambda": fns[0] if one else list(fns)}


def _factor(fn: Callable[[int], Any], step: int, group: int) -> Any:
    """``fn(step)``, which must be a finite real number (or a Tensor, as torch allows): a string or None would
    fail later in a multiplication that does not name the function, and NaN or inf would set that LR silently."""
    value = fn(step)
    kind = value.__class__
    if kind is float or kind is int:  # the hot path
        if math.isfinite(value):
            return value
    elif isinstance(value, _Tensor) or (
        not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(float(value))
    ):
        return value
    raise TypeError(
        f"lr_lambda must return a finite number, got lr_lambda[{group}]({step})={value!r} ({kind.__name__})"
    )


def _per_group(recorded: Any, values: list[Any]) -> Any:
    """A per-group spec argument as it is now: the recorded argument while the groups still have it,
    else one value if all groups agree, else the list."""
    plain = [_plain(v) for v in values]
    if not isinstance(recorded, (list, tuple)) and all(v == _plain(recorded) for v in plain):
        return recorded
    if isinstance(recorded, (list, tuple)) and plain == [_plain(v) for v in recorded]:
        return recorded
    return plain[0] if all(v == plain[0] for v in plain) else plain


def _callable_state(fn: Any) -> dict[str, Any] | None:
    """torch saves a callable object's ``__dict__``; lrkit does where it is plain data."""
    if isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__"):
        return None
    try:
        return _plain(dict(vars(fn)))
    except (TypeError, ValueError):  # not plain data (an object, a tensor of several values)
        return None


class LambdaLR(_FunctionLR):
    """``lr = base_lr * lr_lambda(last_epoch)``; one function, or one per param group.

    Functions are not data: rebuild with the same ``lr_lambda`` and load (see :class:`_FunctionLR`).
    """

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        return [base_lr * _factor(fn, e, i) for i, (fn, base_lr) in enumerate(zip(self.lr_lambdas, self.base_lrs))]


class MultiplicativeLR(_FunctionLR):
    """``lr = lr * lr_lambda(last_epoch)`` each step (unchanged at construction).

    Functions are not data: rebuild with the same ``lr_lambda`` and load (see :class:`_FunctionLR`).
    """

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return group_values(self.optimizer)
        e = self.last_epoch
        groups = self.optimizer.param_groups
        return [g["lr"] * _factor(fn, e, i) for i, (fn, g) in enumerate(zip(self.lr_lambdas, groups))]


class StepLR(LRScheduler):
    """Multiply the LR by ``gamma`` every ``step_size`` steps: ``base_lr * gamma ** (e // step_size)``."""

    _state_fields = ("step_size", "gamma")

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True, tensor_ok=True)
        self._record_spec(step_size=step_size, gamma=gamma)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "step_size": lambda v: check_int("step_size", v, minimum=1),
            "gamma": _gamma,
        }

    def get_lr(self) -> list[float]:
        e, step_size, gamma = self.last_epoch, self.step_size, self.gamma
        return [F.step_lr_recursive(g["lr"], e, step_size, gamma) for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [F.step_lr_closed(b, self.last_epoch, self.step_size, self.gamma) for b in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the LR by ``gamma`` at each milestone: ``base_lr * gamma ** #{m <= e}``.

    As in torch, the milestones are a multiset: their order does not matter, and a repeated
    milestone decays once per repetition (``[49, 105, 49]`` applies ``gamma**2`` at 49).
    """

    _state_fields = ("milestones", "gamma")

    def __init__(self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones = _milestone_counter(milestones)
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True, tensor_ok=True)
        self._record_spec(milestones=sorted(self.milestones.elements()), gamma=gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        e, counts, gamma = self.last_epoch, self.milestones, self.gamma
        return [F.multistep_lr_recursive(g["lr"], e, counts, gamma) for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        milestones = sorted(self.milestones.elements())
        return [F.multistep_lr_closed(b, self.last_epoch, milestones, self.gamma) for b in self.base_lrs]

    def _encode_field(self, name: str, value: Any) -> Any:
        if name == "milestones":
            return sorted(value.elements())
        return super()._encode_field(name, value)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {**super()._state_checks(), "gamma": _gamma}

    def _decode_field(self, name: str, value: Any) -> Any:
        if name == "milestones":
            try:
                return _milestone_counter(value.elements() if isinstance(value, Counter) else value)
            except (TypeError, ValueError) as err:
                raise StateError(f"state['milestones'] is malformed: {err}") from err
        return super()._decode_field(name, value)


def _milestone_counter(milestones: Iterable[int]) -> Counter[int]:
    if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
        raise TypeError(f"milestones must be a list of ints, got milestones={milestones!r}")
    values = list(milestones)
    for i, m in enumerate(values):
        check_int(f"milestones[{i}]", m, minimum=0)
    return Counter(int(m) for m in values)


class ConstantLR(LRScheduler):
    """``base_lr * factor`` for the first ``total_iters`` steps, then ``base_lr``.

    ``factor`` must be in (0, 1]: torch accepts 0 and then divides by it at ``total_iters``.
    """

    _state_fields = ("factor", "total_iters")

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1) -> None:
        self.factor = check_real("factor", factor, low=0.0, high=1.0, low_open=True, tensor_ok=True)
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        self._record_spec(factor=factor, total_iters=total_iters)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "factor": lambda v: check_real("factor", v, low=0.0, high=1.0, low_open=True, tensor_ok=True),
            "total_iters": lambda v: check_int("total_iters", v, minimum=1),
        }

    def get_lr(self) -> list[float]:
        e, factor, total = self.last_epoch, self.factor, self.total_iters
        return [F.constant_lr_recursive(g["lr"], e, factor, total) for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [F.constant_lr_closed(b, self.last_epoch, self.factor, self.total_iters) for b in self.base_lrs]


class LinearLR(LRScheduler):
    """Linear ramp of the factor from ``start_factor`` to ``end_factor`` over ``total_iters`` steps.

    ``lr = base_lr * (start + (end - start) * min(e, total_iters) / total_iters)``;
    ``start_factor`` must be in (0, 1], ``end_factor`` in [0, 1], ``total_iters >= 1``.
    """

    _state_fields = ("start_factor", "end_factor", "total_iters")

    def __init__(
        self,
        optimizer: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        self.start_factor = check_real("start_factor", start_factor, low=0.0, high=1.0, low_open=True, tensor_ok=True)
        self.end_factor = check_real("end_factor", end_factor, low=0.0, high=1.0, tensor_ok=True)
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        self._record_spec(start_factor=start_factor, end_factor=end_factor, total_iters=total_iters)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "start_factor": lambda v: check_real("start_factor", v, low=0.0, high=1.0, low_open=True, tensor_ok=True),
            "end_factor": lambda v: check_real("end_factor", v, low=0.0, high=1.0, tensor_ok=True),
            "total_iters": lambda v: check_int("total_iters", v, minimum=1),
        }

    def get_lr(self) -> list[float]:
        e, s, t, n, init = self.last_epoch, self.start_factor, self.end_factor, self.total_iters, self._is_initial
        return [F.linear_lr_recursive(g["lr"], e, s, t, n, init) for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        e, s, t, n = self.last_epoch, self.start_factor, self.end_factor, self.total_iters
        return [F.linear_lr_closed(b, e, s, t, n) for b in self.base_lrs]


class ExponentialLR(LRScheduler):
    """``lr = base_lr * gamma ** last_epoch``."""

    _state_fields = ("gamma",)

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True, tensor_ok=True)
        self._record_spec(gamma=gamma)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {**super()._state_checks(), "gamma": _gamma}

    def get_lr(self) -> list[float]:
        gamma, init = self.gamma, self._is_initial
        return [F.exponential_lr_recursive(g["lr"], gamma, init) for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [F.exponential_lr_closed(b, self.last_epoch, self.gamma) for b in self.base_lrs]


class PolynomialLR(LRScheduler):
    """``lr = base_lr * (1 - min(e, total_iters) / total_iters) ** power``; reaches 0 at ``total_iters``."""

    _state_fields = ("total_iters", "power")

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        self.power = check_real("power", power, low=0.0, tensor_ok=True)
        self._record_spec(total_iters=total_iters, power=power)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "total_iters": lambda v: check_int("total_iters", v, minimum=1),
            "power": lambda v: check_real("power", v, low=0.0, tensor_ok=True),
        }

    def get_lr(self) -> list[float]:
        e, n, p, init = self.last_epoch, self.total_iters, self.power, self._is_initial
        return [F.polynomial_lr_recursive(g["lr"], e, n, p, init) for g in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [F.polynomial_lr_closed(b, self.last_epoch, self.total_iters, self.power) for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * e / T_max)) / 2``, computed recursively.

    As in torch it is not clamped: past ``T_max`` the LR rises again (period ``2 T_max``).
    """

    _state_fields = ("T_max", "eta_min")

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = check_real("T_max", T_max, low=0.0, low_open=True)
        if isinstance(T_max, int):
            self.T_max = T_max
        self.eta_min = check_real("eta_min", eta_min, low=0.0, tensor_ok=True)
        self._record_spec(T_max=T_max, eta_min=eta_min)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "T_max": lambda v: check_real("T_max", v, low=0.0, low_open=True),
            "eta_min": lambda v: check_real("eta_min", v, low=0.0, tensor_ok=True),
        }

    def get_lr(self) -> list[float]:
        lrs = map(_GROUP_LR, self.optimizer.param_groups)  # no list: this is the hot path
        return F.cosine_annealing_recursive(
            lrs, self.base_lrs, self.last_epoch, self.T_max, self.eta_min, self._is_initial, self._step_count
        )

    def _get_closed_form_lr(self) -> list[float]:
        return [F.cosine_annealing_closed(b, self.last_epoch, self.T_max, self.eta_min) for b in self.base_lrs]


def _not_nan(name: str) -> Callable[[Any], Any]:
    """A float that may be infinite (a ``best`` before any metric) but not NaN (every comparison false)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"{name} must be a number or +-inf, got {name}={value!r}")
        return value

    return check


def _gamma(value: Any) -> Any:
    """The constructors' check of a decay factor ``gamma``: a real number > 0."""
    return check_real("gamma", value, low=0.0, low_open=True, tensor_ok=True)


def _check_children(owner: str, optimizer: Any, schedulers: Any) -> list[LRScheduler]:
    if not isinstance(schedulers, (list, tuple)) or len(schedulers) < 1:
        raise ValueError(f"{owner} expects a non-empty list of schedulers, got schedulers={schedulers!r}")
    for i, scheduler in enumerate(schedulers):
        if isinstance(scheduler, _TorchReduceLROnPlateau):  # lrkit's, torch's, GreedyLR: metric-driven
            raise ValueError(
                f"{owner} does not support {type(scheduler).__name__} (its step() needs a metric), got one at "
                f"schedulers[{i}]"
            )
    check_same_optimizer(owner, optimizer, schedulers)
    return list(schedulers)


class _Composite(LRScheduler):
    """Shared state handling of SequentialLR and ChainedScheduler: children nest under ``_schedulers``."""

    _schedulers: list[LRScheduler]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        updates = super()._parse_state(state)
        children = state.get("_schedulers")
        if not isinstance(children, (list, tuple)) or len(children) != len(self._schedulers):
            raise StateError(
                f"{type(self).__name__} state must hold {len(self._schedulers)} child states under "
                f"'_schedulers', got {children!r}"
            )
        # Parse every child first so that a bad child leaves everything untouched.
        parsed = []
        for i, (scheduler, child) in enumerate(zip(self._schedulers, children)):
            try:
                parsed.append(scheduler._parse_state(child))
            except StateError as err:
                raise StateError(f"{type(self).__name__} state['_schedulers'][{i}]: {err}") from err
        updates["_schedulers"] = parsed
        return updates

    def _state_keys(self) -> set[str]:
        return {*super()._state_keys(), "_schedulers"}

    def _apply_state(self, updates: dict[str, Any]) -> None:
        children = updates.pop("_schedulers")
        super()._apply_state(updates)
        for scheduler, child in zip(self._schedulers, children):
            scheduler._apply_state(child)

    def to_spec(self) -> dict[str, Any]:
        spec = super().to_spec()
        spec["schedulers"] = [s.to_spec() for s in self._schedulers]
        return spec


class SequentialLR(_Composite):
    """Run ``schedulers[i]`` between ``milestones[i-1]`` and ``milestones[i]``.

    As in torch: construction resets every group to ``initial_lr`` and starts the
    first scheduler; a leaf scheduler entered at a milestone starts from its closed
    form at step 0.

    Nesting. torch raises ``NotImplementedError`` when a milestone enters a
    ChainedScheduler or SequentialLR, and gives a composite in first position a
    non-initial step. lrkit defines the sensible behaviour instead: a composite
    child starts *as if constructed at that moment* on the groups' ``initial_lr``,
    so ``SequentialLR([A, ChainedScheduler([B, C])], [m])`` equals A for ``m`` steps
    followed by a freshly built ``ChainedScheduler([B, C])``. One difference from
    building torch's classes at that moment: a restarted CyclicLR starts at its
    ``base_lr``, where torch's constructor would take step 0 from the ``initial_lr``
    already in the groups.
    """

    _base_fields = ("last_epoch", "_last_lr")
    _state_fields = ("_milestones",)

    def __init__(
        self, optimizer: Any, schedulers: list[LRScheduler], milestones: list[int], last_epoch: int = -1
    ) -> None:
        check_optimizer(optimizer)
        self._schedulers = _check_children(type(self).__name__, optimizer, schedulers)
        self._milestones = _sequential_milestones(milestones, len(self._schedulers))
        check_int("last_epoch", last_epoch, minimum=-1)
        self.optimizer = optimizer
        self.base_lrs = initial_lrs(optimizer)
        self._record_spec()  # the milestones are read from the running state: see _live_spec_args
        self.last_epoch = last_epoch + 1
        self._start()

    def _start(self, restart: bool = False) -> None:
        for group in self.optimizer.param_groups:
            set_group_value(group, "lr", group["initial_lr"])
        first = self._schedulers[bisect_right(self._milestones, 0)]
        if not restart:
            self._undo(self)
        # A restart starts the first child afresh: undoing then initial-stepping would
        # count from wherever the children's last_epoch was left, not from -1.
        if restart or isinstance(first, _Composite):
            first._restart()
        else:
            first._initial_step()
        self._last_lr = first.get_last_lr()

    @staticmethod
    def _undo(scheduler: LRScheduler) -> None:
        """torch's ``recursive_undo``: take back the construction step of every leaf."""
        if isinstance(scheduler, _Composite):
            for child in scheduler._schedulers:
                SequentialLR._undo(child)
        else:
            scheduler.last_epoch -= 1
            scheduler._min_last_epoch -= 1  # its state may now hold this last_epoch

    def _restart(self) -> None:
        self.last_epoch = 0
        self._start(restart=True)

    def step(self, epoch: int | None = None) -> None:
        if epoch is not None:
            raise TypeError("SequentialLR.step() takes no epoch argument")
        e = self.last_epoch = self.last_epoch + 1
        milestones = self._milestones
        idx = bisect_right(milestones, e)
        scheduler = self._schedulers[idx]
        if idx > 0 and milestones[idx - 1] == e:
            if isinstance(scheduler, _Composite):
                for group in self.optimizer.param_groups:
                    set_group_value(group, "lr", group["initial_lr"])
                scheduler._restart()
            else:
                scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler._last_lr

    def _live_spec_args(self) -> dict[str, Any]:
        return {**super()._live_spec_args(), "milestones": list(self._milestones)}

    def _decode_field(self, name: str, value: Any) -> Any:
        if name == "_milestones":
            try:
                return _sequential_milestones(value, len(self._schedulers))
            except (TypeError, ValueError) as err:  # the constructor's own checks, on stored data
                raise StateError(f"state['_milestones'] is malformed: {err}") from err
        return super()._decode_field(name, value)


def _sequential_milestones(milestones: Any, num_schedulers: int) -> list[int]:
    """SequentialLR's milestones: a list of ``num_schedulers - 1`` strictly increasing ints ``>= 1``."""
    if not isinstance(milestones, (list, tuple)) or len(milestones) != num_schedulers - 1:
        raise ValueError(
            f"SequentialLR expects one milestone fewer than schedulers ({num_schedulers - 1}), "
            f"got milestones={milestones!r}"
        )
    values = [check_int(f"milestones[{i}]", m, minimum=1) for i, m in enumerate(milestones)]
    if values != sorted(set(values)):
        raise ValueError(f"milestones must be strictly increasing, got milestones={values!r}")
    return values


class ChainedScheduler(_Composite):
    """Step every scheduler in order on each step; their effects multiply.

    Same signature as torch: ``ChainedScheduler(schedulers, optimizer=None)``.
    ``last_epoch`` counts the chain's own steps (torch's chain has none).
    """

    _base_fields = ("last_epoch", "_last_lr")

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Any | None = None) -> None:
        if not isinstance(schedulers, (list, tuple)) or not schedulers:
            raise ValueError(f"ChainedScheduler expects a non-empty list of schedulers, got {schedulers!r}")
        for i, scheduler in enumerate(schedulers):  # before the optimizer is read from schedulers[0]
            if not isinstance(scheduler, LRScheduler):
                raise TypeError(
                    f"ChainedScheduler schedulers[{i}] must be an lrkit scheduler, got "
                    f"{type(scheduler).__module__}.{type(scheduler).__name__} (schedulers[{i}]={scheduler!r})"
                )
        if optimizer is None:
            optimizer = schedulers[0].optimizer  # an lrkit scheduler always has one
        check_optimizer(optimizer)
        assert optimizer is not None
        self._schedulers = _check_children("ChainedScheduler", optimizer, schedulers)
        self.optimizer = optimizer
        self.base_lrs = [copy_value(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
        self._record_spec()
        self.last_epoch = 0
        self._last_lr = group_values(optimizer)

    def step(self, epoch: int | None = None) -> None:
        if epoch is not None:
            raise TypeError("ChainedScheduler.step() takes no epoch argument")
        for scheduler in self._schedulers:
            scheduler.step()
        self.last_epoch += 1
        self._last_lr = group_values(self.optimizer)

    def _restart(self) -> None:
        for scheduler in self._schedulers:
            scheduler._restart()
        self.last_epoch = 0
        self._last_lr = group_values(self.optimizer)


class ReduceLROnPlateau(LRScheduler, _TorchReduceLROnPlateau):
    """Reduce the LR by ``factor`` once the metric has not improved for ``patience`` steps.

    New LR: ``max(lr * factor, min_lr)``, applied only if it lowers the LR by more than ``eps``.
    ``step(metrics)`` takes the metric; it is an instance of torch's ReduceLROnPlateau.
    """

    _base_fields = ("last_epoch", "_last_lr")
    _state_fields = (
        "mode",
        "factor",
        "patience",
        "threshold",
        "threshold_mode",
        "cooldown",
        "eps",
        "min_lrs",
        "default_min_lr",
        "best",
        "num_bad_epochs",
        "cooldown_counter",
    )

    def __init__(
        self,
        optimizer: Any,
        mode: Literal["min", "max"] = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: Literal["rel", "abs"] = "rel",
        cooldown: int = 0,
        min_lr: list[float] | float = 0,
        eps: float = 1e-8,
    ) -> None:
        check_optimizer(optimizer)
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.factor = check_real("factor", factor, low=0.0, high=1.0, low_open=True, high_open=True, tensor_ok=True)
        self.patience = check_int("patience", patience, minimum=0)
        self.threshold = check_real("threshold", threshold, low=0.0, tensor_ok=True)
        self.threshold_mode = check_choice("threshold_mode", threshold_mode, ("rel", "abs"))
        self.cooldown = check_int("cooldown", cooldown, minimum=0)
        self.eps = check_real("eps", eps, low=0.0, tensor_ok=True)
        num_groups = len(optimizer.param_groups)
        min_lrs = check_per_group("min_lr", min_lr, num_groups)
        for i, value in enumerate(min_lrs):
            check_real(f"min_lr[{i}]", value, low=0.0, tensor_ok=True)
        self.default_min_lr: float | None = None if isinstance(min_lr, (list, tuple)) else min_lr
        self.min_lrs = list(min_lrs)
        self.optimizer = optimizer  # no base_lrs: as in torch, it starts from the LRs as they are
        self._record_spec(
            mode=mode,
            factor=factor,
            patience=patience,
            threshold=threshold,
            threshold_mode=threshold_mode,
            cooldown=cooldown,
            min_lr=min_lr,
            eps=eps,
        )
        self.last_epoch = 0
        self._last_lr = group_values(optimizer)
        self._reset()

    def _reset(self) -> None:
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        """Whether metric ``a`` improves on ``best`` by more than ``threshold`` (rel or abs)."""
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    _is_better = is_better

    def step(self, metrics: SupportsFloat, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record ``metrics`` for the step just taken, reducing the LR if it has plateaued."""
        current = float(metrics)
        self._stored_last_lr = None  # read from the groups from now on
        if epoch is None:
            self.last_epoch += 1
        else:
            warn_epoch_deprecated()
            self.last_epoch = epoch
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:  # self.in_cooldown, without the property call on the hot path
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    _stored_last_lr: list[float] | None = None

    @property  # type: ignore[override]
    def _last_lr(self) -> list[float]:
        """The LRs as of the last ``step``, as torch keeps them, without copying them on the hot path:
        after a step they are read from the groups when asked (only ``step`` changes them); after
        construction or ``load_state_dict`` they are the stored values."""
        stored = self._stored_last_lr
        return group_values(self.optimizer) if stored is None else stored

    @_last_lr.setter
    def _last_lr(self, value: list[float]) -> None:
        self._stored_last_lr = list(value)

    def _reduce_lr(self, epoch: int | None = None) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise RuntimeError(
                    f"The number of param groups in the optimizer ({len(groups)}) differs from the number of "
                    f"min_lr values ({len(self.min_lrs)}): a group was added after construction; set "
                    "scheduler.min_lrs to one value per group"
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        for i, group in enumerate(groups):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, self.min_lrs[i])
            if old_lr - new_lr > self.eps:
                set_group_value(group, "lr", new_lr)

    def _apply_state(self, updates: dict[str, Any]) -> None:
        super()._apply_state(updates)
        if self._stored_last_lr == group_values(self.optimizer):  # nothing to remember: read the groups
            self._stored_last_lr = None
        self.mode_worse = math.inf if self.mode == "min" else -math.inf

    def _live_spec_args(self) -> dict[str, Any]:
        args = super()._live_spec_args()
        live = self.default_min_lr if self.default_min_lr is not None else list(self.min_lrs)
        return {**args, "min_lr": args["min_lr"] if _plain(args["min_lr"]) == _plain(live) else _plain(live)}

    _torch_only_keys = TORCH_ONLY_KEYS | {"mode_worse"}  # torch keeps it; lrkit derives it from mode
    #: what the metrics it saw made of it: not given by its spec (a resume cannot check them against it)
    _history_fields: ClassVar[tuple[str, ...]] = ("best", "num_bad_epochs", "cooldown_counter", "_last_lr")

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "mode": lambda v: check_choice("mode", v, ("min", "max")),
            "factor": lambda v: check_real(
                "factor", v, low=0.0, high=1.0, low_open=True, high_open=True, tensor_ok=True
            ),
            "patience": lambda v: check_int("patience", v, minimum=0),
            "threshold": lambda v: check_real("threshold", v, low=0.0, tensor_ok=True),
            "threshold_mode": lambda v: check_choice("threshold_mode", v, ("rel", "abs")),
            "cooldown": lambda v: check_int("cooldown", v, minimum=0),
            "eps": lambda v: check_real("eps", v, low=0.0, tensor_ok=True),
            "min_lrs": lambda v: check_each("min_lrs", v, low=0.0),
            "default_min_lr": lambda v: v if v is None else check_real("default_min_lr", v, low=0.0, tensor_ok=True),
            "best": _not_nan("best"),
            "num_bad_epochs": lambda v: check_count("num_bad_epochs", v),
            "cooldown_counter": lambda v: check_count("cooldown_counter", v),
        }

    def _check_state(self, updates: Mapping[str, Any]) -> None:
        super()._check_state(updates)
        for counter, limit in (("num_bad_epochs", "patience"), ("cooldown_counter", "cooldown")):
            if updates[counter] > updates[limit]:
                raise StateError(
                    f"state[{counter!r}]={updates[counter]!r} is refused: it must be <= {limit}="
                    f"{updates[limit]!r} (a step that passes {limit} resets it)"
                )

    def _decode_field(self, name: str, value: Any) -> Any:
        if name == "best":
            return decode_float(name, value)
        if name == "default_min_lr":
            return None if value is None else decode_float(name, value)
        return super()._decode_field(name, value)

    def _restart(self) -> None:  # pragma: no cover - never nested (rejected by the composites)
        raise TypeError("ReduceLROnPlateau cannot be restarted inside a composite")


class CyclicLR(LRScheduler):
    """Cyclical LR (Smith 2017) between ``base_lr`` and ``max_lr``, cycling momentum (or beta1) inversely.

    ``x`` is the position in the current cycle of ``step_size_up + step_size_down`` steps;
    ``lr = base_lr + (max_lr - base_lr) * height(x) * scale(cycle or step)``.
    A custom ``scale_fn`` is not saved in the state: rebuild with it, then load.
    """

    _state_fields = (
        "max_lrs",
        "total_size",
        "step_ratio",
        "mode",
        "gamma",
        "scale_mode",
        "cycle_momentum",
        "base_momentums",
        "max_momentums",
        "use_beta1",
    )

    def __init__(
        self,
        optimizer: Any,
        base_lr: float | list[float],
        max_lr: float | list[float],
        step_size_up: int = 2000,
        step_size_down: int | None = None,
        mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: Literal["cycle", "iterations"] = "cycle",
        cycle_momentum: bool = True,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        check_int("last_epoch", last_epoch, minimum=-1)
        groups = optimizer.param_groups
        base_lrs = [
            copy_value(check_real(f"base_lr[{i}]", v, low=0.0, tensor_ok=True))
            for i, v in enumerate(check_per_group("base_lr", base_lr, len(groups)))
        ]
        self.max_lrs = [
            copy_value(check_real(f"max_lr[{i}]", v, low=0.0, tensor_ok=True))
            for i, v in enumerate(check_per_group("max_lr", max_lr, len(groups)))
        ]
        up = check_real("step_size_up", step_size_up, low=0.0, low_open=True)
        down = up if step_size_down is None else check_real("step_size_down", step_size_down, low=0.0, low_open=True)
        self.total_size = float(up) + float(down)
        self.step_ratio = float(up) / self.total_size
        if scale_fn is None:
            self.mode = check_choice("mode", mode, ("triangular", "triangular2", "exp_range"))
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"
        else:
            if not callable(scale_fn):
                raise TypeError(f"scale_fn must be callable or None, got scale_fn={scale_fn!r}")
            self.mode = str(mode)
            self.scale_mode = check_choice("scale_mode", scale_mode, ("cycle", "iterations"))
        self.gamma = check_real("gamma", gamma, low=0.0, low_open=True, tensor_ok=True)
        self.scale_fn_custom = scale_fn
        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = False
        self.base_momentums: list[float] = []
        self.max_momentums: list[float] = []
        defaults = getattr(optimizer, "defaults", {})
        if self.cycle_momentum:
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(
                    "cycle_momentum=True needs an optimizer with 'momentum' or 'betas' "
                    f"({type(optimizer).__name__} has neither); pass cycle_momentum=False"
                )
            self.use_beta1 = "betas" in defaults
            self.base_momentums = [
                copy_value(check_real(f"base_momentum[{i}]", v, low=0.0, tensor_ok=True))
                for i, v in enumerate(check_per_group("base_momentum", base_momentum, len(groups)))
            ]
            self.max_momentums = [
                copy_value(check_real(f"max_momentum[{i}]", v, low=0.0, tensor_ok=True))
                for i, v in enumerate(check_per_group("max_momentum", max_momentum, len(groups)))
            ]
        if last_epoch == -1:
            for lr, group in zip(base_lrs, groups):
                set_group_value(group, "lr", lr)
            if self.cycle_momentum:
                for m_momentum, b_momentum, group in zip(self.max_momentums, self.base_momentums, groups):
                    _set_momentum(group, m_momentum, self.use_beta1)
                    group["max_momentum"] = m_momentum
                    group["base_momentum"] = b_momentum
        self._record_spec(
            base_lr=base_lr,
            max_lr=max_lr,
            step_size_up=step_size_up,
            step_size_down=step_size_down,
            mode=mode,
            gamma=gamma,
            scale_mode=scale_mode,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            **({"scale_fn": scale_fn} if scale_fn is not None else {}),
        )
        super().__init__(optimizer, last_epoch)
        self.base_lrs = base_lrs

    def _live_spec_args(self) -> dict[str, Any]:
        args = super()._live_spec_args()
        args["base_lr"] = _per_group(args["base_lr"], self.base_lrs)
        args["max_lr"] = _per_group(args["max_lr"], self.max_lrs)
        up = args["step_size_up"]
        down = up if args["step_size_down"] is None else args["step_size_down"]
        if (float(up) + float(down), float(up) / (float(up) + float(down))) != (self.total_size, self.step_ratio):
            live_up = self.total_size * self.step_ratio
            live_up = round(live_up) if abs(live_up - round(live_up)) < 1e-9 else live_up
            live_down = self.total_size - live_up
            args["step_size_up"] = live_up
            live_down = round(live_down) if abs(live_down - round(live_down)) < 1e-9 else live_down
            args["step_size_down"] = None if live_down == live_up else live_down
        if self.cycle_momentum:
            args["base_momentum"] = _per_group(args["base_momentum"], self.base_momentums)
            args["max_momentum"] = _per_group(args["max_momentum"], self.max_momentums)
        return args

    _torch_only_keys = TORCH_ONLY_KEYS | {"_scale_fn_custom", "_scale_fn_ref"}  # the function is not data

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        groups = len(self.optimizer.param_groups)

        def per_group(name: str) -> Callable[[Any], Any]:
            def check(value: Any) -> Any:
                if isinstance(value, (list, tuple)) and len(value) != groups:
                    raise ValueError(f"{name} must hold one value per param group ({groups}), got {len(value)}")
                return check_each(name, value, low=0.0)

            return check

        modes = ("triangular", "triangular2", "exp_range")
        return {
            **super()._state_checks(),
            "max_lrs": per_group("max_lrs"),
            "total_size": lambda v: check_real("total_size", v, low=0.0, low_open=True),
            "step_ratio": lambda v: check_real("step_ratio", v, low=0.0, high=1.0, low_open=True),
            "mode": (lambda v: v) if self.scale_fn_custom is not None else (lambda v: check_choice("mode", v, modes)),
            "gamma": _gamma,
            "scale_mode": lambda v: check_choice("scale_mode", v, ("cycle", "iterations")),
            "base_momentums": lambda v: check_each("base_momentums", v, low=0.0),
            "max_momentums": lambda v: check_each("max_momentums", v, low=0.0),
        }

    def _check_state(self, updates: Mapping[str, Any]) -> None:
        super()._check_state(updates)
        groups = len(self.optimizer.param_groups)
        if updates["cycle_momentum"]:
            for key in ("base_momentums", "max_momentums"):
                if len(updates[key]) != groups:
                    raise StateError(
                        f"state[{key!r}]={_plain(updates[key])!r} is refused: with cycle_momentum it must hold one "
                        f"momentum per param group ({groups})"
                    )

    def scale_fn(self, x: float) -> float:
        """The amplitude scale at cycle (or iteration) ``x``."""
        if self.scale_fn_custom is not None:
            return self.scale_fn_custom(x)
        return F.cyclic_scale(self.mode, self.gamma, x)

    def get_lr(self) -> list[float]:
        e = self.last_epoch
        cycle, scale_factor = F.cyclic_position(e, self.total_size, self.step_ratio)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else e)
        lrs = [
            base_lr + (max_lr - base_lr) * scale_factor * scale for base_lr, max_lr in zip(self.base_lrs, self.max_lrs)
        ]
        if self.cycle_momentum:
            for group, base_m, max_m in zip(self.optimizer.param_groups, self.base_momentums, self.max_momentums):
                _set_momentum(group, max_m - (max_m - base_m) * scale_factor * scale, self.use_beta1)
        return lrs


def _set_momentum(group: dict[str, Any], momentum: float, use_beta1: bool) -> None:
    if use_beta1:
        group["betas"] = (momentum, *group["betas"][1:])
    else:
        group["momentum"] = momentum


class CosineAnnealingWarmRestarts(LRScheduler):
    """SGDR: cosine from ``base_lr`` to ``eta_min`` over ``T_i`` steps, restarting; ``T_i`` grows by ``T_mult``.

    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``. ``step(epoch)`` accepts
    fractional epochs.
    """

    _state_fields = ("T_0", "T_i", "T_mult", "eta_min", "T_cur")

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_0 = check_int("T_0", T_0, minimum=1)
        self.T_i = self.T_0
        self.T_mult = check_int("T_mult", T_mult, minimum=1)
        self.eta_min = check_real("eta_min", eta_min, low=0.0)  # torch refuses a Tensor here too
        if isinstance(eta_min, int):
            self.eta_min = eta_min
        check_int("last_epoch", last_epoch, minimum=-1)
        self.T_cur: float = last_epoch
        self._record_spec(T_0=T_0, T_mult=T_mult, eta_min=eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [F.cosine_annealing_closed(b, self.T_cur, self.T_i, self.eta_min) for b in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:  # type: ignore[override]
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur, self.T_i = F.warm_restarts_advance(self.T_cur, self.T_i, self.T_mult)
        else:
            check_real("epoch", epoch, low=0.0)
            self.T_cur, self.T_i = F.warm_restarts_at(epoch, self.T_0, self.T_mult)
        self.last_epoch = math.floor(epoch)
        self._apply_lrs(self.get_lr())

    def _initial_step(self) -> None:
        self._step_count = 0
        self.step()

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "T_0": lambda v: check_count("T_0", v, minimum=1),
            "T_i": lambda v: check_count("T_i", v, minimum=1),
            "T_mult": lambda v: check_count("T_mult", v, minimum=1),
            "eta_min": lambda v: check_real("eta_min", v, low=0.0),
            "T_cur": lambda v: check_real("T_cur", v, low=-1.0),
        }

    def _check_state(self, updates: Mapping[str, Any]) -> None:
        super()._check_state(updates)
        if updates["T_i"] < updates["T_0"]:
            raise StateError(
                f"state['T_i']={updates['T_i']!r} is refused: the period never falls below T_0={updates['T_0']!r}"
            )
        if updates["T_cur"] > updates["T_i"]:
            raise StateError(
                f"state['T_cur']={updates['T_cur']!r} is refused: the position in the period must be <= "
                f"T_i={updates['T_i']!r}"
            )

    def _decode_field(self, name: str, value: Any) -> Any:
        if name in ("T_cur", "eta_min"):
            return value if isinstance(value, int) and not isinstance(value, bool) else decode_float(name, value)
        return super()._decode_field(name, value)


_ONE_CYCLE_KEYS = {
    False: [
        ("initial_lr", "max_lr", "max_momentum", "base_momentum"),
        ("max_lr", "min_lr", "base_momentum", "max_momentum"),
    ],
    True: [
        ("initial_lr", "max_lr", "max_momentum", "base_momentum"),
        ("max_lr", "initial_lr", "base_momentum", "max_momentum"),
        ("initial_lr", "min_lr", "max_momentum", "max_momentum"),
    ],
}


class OneCycleLR(LRScheduler):
    """1cycle policy: ``max_lr / div_factor`` up to ``max_lr``, then down to ``initial_lr / final_div_factor``.

    Phase ends are steps ``pct_start*T - 1`` and ``T - 1`` (three-phase: ``pct_start*T - 1``,
    ``2*pct_start*T - 2``, ``T - 1``); ``cos`` annealing is ``end + (start-end)/2 * (cos(pi*pct)+1)``.
    Momentum (or beta1) cycles inversely. Stepping past ``total_steps`` raises ``ValueError``.
    """

    _state_fields = ("total_steps", "phase_ends", "anneal_strategy", "three_phase", "cycle_momentum", "use_beta1")

    def __init__(
        self,
        optimizer: Any,
        max_lr: float | list[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | list[float] = 0.85,
        max_momentum: float | list[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        check_int("last_epoch", last_epoch, minimum=-1)
        if total_steps is not None:
            self.total_steps = check_int("total_steps", total_steps, minimum=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = check_int("epochs", epochs, minimum=1) * check_int(
                "steps_per_epoch", steps_per_epoch, minimum=1
            )
        else:
            raise ValueError(
                "OneCycleLR needs total_steps, or both epochs and steps_per_epoch; got "
                f"total_steps={total_steps!r}, epochs={epochs!r}, steps_per_epoch={steps_per_epoch!r}"
            )
        if not isinstance(pct_start, float):
            raise TypeError(f"pct_start must be a float in [0, 1], got pct_start={pct_start!r}")
        check_real("pct_start", pct_start, low=0.0, high=1.0)
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        check_real("div_factor", div_factor, low=0.0, low_open=True)
        check_real("final_div_factor", final_div_factor, low=0.0, low_open=True)
        self.three_phase = bool(three_phase)
        self.phase_ends = F.one_cycle_phase_ends(self.total_steps, pct_start, self.three_phase)
        groups = optimizer.param_groups
        max_lrs = [
            copy_value(check_real(f"max_lr[{i}]", v, low=0.0, tensor_ok=True))
            for i, v in enumerate(check_per_group("max_lr", max_lr, len(groups)))
        ]
        if last_epoch == -1:
            for group, lr in zip(groups, max_lrs):
                group["initial_lr"] = lr / div_factor
                group["max_lr"] = lr
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        self.use_beta1 = False
        if self.cycle_momentum:
            defaults = getattr(optimizer, "defaults", {})
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError(
                    "cycle_momentum=True needs an optimizer with 'momentum' or 'betas' "
                    f"({type(optimizer).__name__} has neither); pass cycle_momentum=False"
                )
            self.use_beta1 = "betas" in defaults
            max_ms = [
                copy_value(check_real(f"max_momentum[{i}]", v, low=0.0, tensor_ok=True))
                for i, v in enumerate(check_per_group("max_momentum", max_momentum, len(groups)))
            ]
            base_ms = [
                copy_value(check_real(f"base_momentum[{i}]", v, low=0.0, tensor_ok=True))
                for i, v in enumerate(check_per_group("base_momentum", base_momentum, len(groups)))
            ]
            if last_epoch == -1:
                for m_momentum, b_momentum, group in zip(max_ms, base_ms, groups):
                    _set_momentum(group, m_momentum, self.use_beta1)
                    group["max_momentum"] = m_momentum
                    group["base_momentum"] = b_momentum
        self._record_spec(
            max_lr=max_lr,
            total_steps=self.total_steps,
            pct_start=pct_start,
            anneal_strategy=anneal_strategy,
            cycle_momentum=cycle_momentum,
            base_momentum=base_momentum,
            max_momentum=max_momentum,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
        )
        super().__init__(optimizer, last_epoch)

    def _live_spec_args(self) -> dict[str, Any]:
        """What runs now: the step counts from the state, the LRs and momenta from the param groups
        (where torch keeps them, so the optimizer's state carries them)."""
        args = super()._live_spec_args()
        groups = self.optimizer.param_groups
        if F.one_cycle_phase_ends(self.total_steps, args["pct_start"], self.three_phase) != self.phase_ends:
            args["pct_start"] = (self.phase_ends[0] + 1) / self.total_steps
        if not all("max_lr" in g and "initial_lr" in g and "min_lr" in g for g in groups):
            return args
        args["max_lr"] = _per_group(args["max_lr"], [g["max_lr"] for g in groups])
        if any(_plain(g["max_lr"] / args["div_factor"]) != _plain(g["initial_lr"]) for g in groups):
            args["div_factor"] = _plain(groups[0]["max_lr"] / groups[0]["initial_lr"])
        if any(_plain(g["initial_lr"] / args["final_div_factor"]) != _plain(g["min_lr"]) for g in groups):
            args["final_div_factor"] = _plain(groups[0]["initial_lr"] / groups[0]["min_lr"])
        if self.cycle_momentum and all("max_momentum" in g and "base_momentum" in g for g in groups):
            args["max_momentum"] = _per_group(args["max_momentum"], [g["max_momentum"] for g in groups])
            args["base_momentum"] = _per_group(args["base_momentum"], [g["base_momentum"] for g in groups])
        return args

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "total_steps": lambda v: check_count("total_steps", v, minimum=1),
            "phase_ends": lambda v: check_each("phase_ends", v, low=-2.0),  # 2*pct_start*T - 2 at pct_start 0
            "anneal_strategy": lambda v: check_choice("anneal_strategy", v, ("cos", "linear")),
        }

    def _check_state(self, updates: Mapping[str, Any]) -> None:
        super()._check_state(updates)
        ends, total, three_phase = updates["phase_ends"], updates["total_steps"], updates["three_phase"]
        # What the constructor makes for a pct_start in [0, 1] (F.one_cycle_phase_ends): pct_start*T - 1, in
        # [-1, T - 1]; in three phases then twice that (exactly: scaling by 2 rounds alike), which is below the
        # first end when pct_start*T < 1 and past the last one when pct_start > 1/2 + 1/(2T), as in torch; T - 1.
        if (
            len(ends) != (3 if three_phase else 2)
            or not -1 <= ends[0] <= total - 1
            or (three_phase and ends[1] != 2 * ends[0])
            or ends[-1] != total - 1
        ):
            middle = "2*pct_start*T - 2, " if three_phase else ""
            raise StateError(
                f"state['phase_ends']={_plain(ends)!r} is refused: expected [pct_start*T - 1, {middle}T - 1] for a "
                f"pct_start in [0, 1] and T = total_steps = {total} (three_phase={three_phase!r})"
            )

    def get_lr(self) -> list[float]:
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(
                f"Tried to step {step_num} times. The specified number of total steps is {self.total_steps}"
            )
        phase, pct = F.one_cycle_locate(step_num, self.phase_ends)
        start_lr, end_lr, start_m, end_m = _ONE_CYCLE_KEYS[self.three_phase][phase]
        anneal = F.anneal_cos if self.anneal_strategy == "cos" else F.anneal_linear
        lrs = []
        for group in self.optimizer.param_groups:
            lrs.append(anneal(group[start_lr], group[end_lr], pct))
            if self.cycle_momentum:
                _set_momentum(group, anneal(group[start_m], group[end_m], pct), self.use_beta1)
        return lrs


class SWALR(LRScheduler):
    """torch's ``torch.optim.swa_utils.SWALR``: anneal each group's LR to ``swa_lr`` over ``anneal_epochs``.

    ``lr_t = swa_lr * a(t) + lr_0 * (1 - a(t))``, ``t = min(1, step / anneal_epochs)``, where
    ``a(t) = (1 - cos(pi t)) / 2`` (``"cos"``) or ``t`` (``"linear"``) and ``lr_0`` is the LR when
    the annealing started; then held at ``swa_lr``. Computed recursively from the current LR, as
    torch does (:func:`lrkit.schedules.torch_formulas.swa_lr_recursive`). ``swa_lr`` is stored in
    every param group (``group["swa_lr"]``), so the optimizer's state carries it.
    """

    _state_fields = ("anneal_epochs", "anneal_strategy")

    def __init__(
        self,
        optimizer: Any,
        swa_lr: float | list[float],
        anneal_epochs: int = 10,
        anneal_strategy: Literal["cos", "linear"] = "cos",
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        groups = optimizer.param_groups
        swa_lrs = [
            copy_value(check_real(f"swa_lr[{i}]", v, low=0.0, tensor_ok=True))
            for i, v in enumerate(check_per_group("swa_lr", swa_lr, len(groups)))
        ]
        self.anneal_strategy = check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
        if isinstance(anneal_epochs, bool) or not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(
                f"anneal_epochs must be an int equal or greater than 0, got anneal_epochs={anneal_epochs!r}"
            )
        self.anneal_epochs = anneal_epochs
        for value, group in zip(swa_lrs, groups):
            group["swa_lr"] = value
        self._record_spec(anneal_epochs=anneal_epochs, anneal_strategy=anneal_strategy)
        super().__init__(optimizer, last_epoch)

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        return {
            **super()._state_checks(),
            "anneal_epochs": lambda v: check_count("anneal_epochs", v, minimum=0),
            "anneal_strategy": lambda v: check_choice("anneal_strategy", v, ("cos", "linear")),
        }

    def get_lr(self) -> list[float]:
        count, epochs, strategy = self._step_count, self.anneal_epochs, self.anneal_strategy
        return [F.swa_lr_recursive(g["lr"], g["swa_lr"], count, epochs, strategy) for g in self.optimizer.param_groups]

    def to_spec(self) -> dict[str, Any]:
        # swa_lr lives in the param groups (as in torch), so the spec reads it from there.
        swa_lrs = [_plain(g["swa_lr"]) for g in self.optimizer.param_groups]
        swa_lr = swa_lrs[0] if all(v == swa_lrs[0] for v in swa_lrs) else swa_lrs
        spec = super().to_spec()
        return {"type": spec.pop("type"), "swa_lr": swa_lr, **spec}
