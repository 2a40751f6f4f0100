"""The LLM schedules bound to an optimizer: warmup + cosine / linear / polynomial / constant, WSD,
WSD-S (cyclic WSD), the power scheduler, log warmup, inverse square root, cosine with restarts.

Each class is an lrkit :class:`~lrkit.schedulers.base.LRScheduler` (so a
``torch.optim.lr_scheduler.LRScheduler``). Every param group follows the pure schedule of
:mod:`lrkit.schedules` whose peak is that group's base LR (``initial_lr``); the LR set at
step ``t`` is that schedule's value at ``t``, exactly (so the floor is exactly ``min_lr``).
``min_lr`` and ``warmup_start_lr`` are absolute LRs, one float for every group or a list
with one per group; each must not exceed its group's peak.

    >>> opt = torch.optim.AdamW(model.parameters(), lr=3e-4)   # the peak LR
    >>> sched = WarmupCosine(opt, warmup_steps=100, total_steps=10_000, min_lr=3e-5)

State (``state_dict()``) is plain data: the step, the LRs and each group's schedule as a
dict (:meth:`lrkit.schedules.Schedule.to_dict`); loading it restores the schedule it holds.

Every class is also a spec type (``{"type": "WarmupCosine", "warmup_steps": 100, ...}``).
With ``backend="torch"`` the spec builds PyTorch's own ``LambdaLR`` with
``lambda_g(t) = schedule_g(t) / base_lr_g``: PyTorch driving the same math, LRs equal to
lrkit's up to the rounding of that division (about one ulp).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

from lrkit import schedules as S
from lrkit.schedulers.base import LRScheduler, StateError, check_count, check_optimizer, python_scalars
from lrkit.schedules._checks import check_int, check_per_group

__all__ = [
    "ScheduleLR",
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
    "PureSchedule",
]


def group_peaks(optimizer: Any) -> list[float]:
    """The base LR of every param group: ``initial_lr`` if set (resume), else the current ``lr``."""
    check_optimizer(optimizer)
    return [float(g["initial_lr"] if "initial_lr" in g else g["lr"]) for g in optimizer.param_groups]


class _Ratio:
    """``schedule(t) / base_lr``: the factor a ``LambdaLR`` multiplies ``base_lr`` by (0 when ``base_lr`` is 0).

    torch's ``LambdaLR.state_dict()`` saves a callable object's ``__dict__``, so that holds plain data only
    (the schedule as its dict, and ``base_lr``): the torch backend's state loads with ``weights_only=True``,
    and a loaded state's schedule is the one that runs (rebuilt when ``load_state_dict`` replaces the dict).
    """

    __slots__ = ("__dict__", "_compiled", "_source")

    def __init__(self, schedule: S.Schedule, base_lr: float) -> None:
        self.schedule: dict[str, Any] = schedule.to_dict()
        self.base_lr = base_lr
        self._compiled, self._source = schedule, self.schedule

    def __call__(self, step: int) -> float:
        if self._source is not self.schedule:  # LambdaLR.load_state_dict put another schedule in __dict__
            self._compiled, self._source = S.schedule_from_dict(self.schedule, "lr_lambda.schedule"), self.schedule
        if self.base_lr == 0.0:
            return 0.0
        return self._compiled(step) / self.base_lr


class ScheduleLR(LRScheduler):
    """Base of the schedulers that set each group's LR to a pure schedule's value.

    Subclasses list their per-group arguments in ``_per_group`` and build one group's
    schedule in :meth:`_schedule`. Attributes: ``schedules``, one
    :class:`lrkit.schedules.Schedule` per param group.
    """

    _state_fields = ("schedules",)
    _per_group: ClassVar[tuple[str, ...]] = ()
    resume_policy = "strict"  # lrkit's schedules refuse a state of another schedule unless told
    schedules: list[S.Schedule]

    def _bind(self, optimizer: Any, last_epoch: int, **args: Any) -> None:
        check_int("last_epoch", last_epoch, minimum=-1)
        args = python_scalars(args)  # numpy ints become ints: the schedules and the spec stay JSON
        self.schedules = self.schedules_for(group_peaks(optimizer), **args)
        self._record_spec(**args)
        LRScheduler.__init__(self, optimizer, last_epoch)

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        raise NotImplementedError

    @classmethod
    def schedules_for(cls, peaks: list[float], **args: Any) -> list[S.Schedule]:
        """One pure schedule per group, each peaking at that group's LR; errors name the group."""
        per_group = {name: check_per_group(name, args[name], len(peaks)) for name in cls._per_group}
        out = []
        for i, peak in enumerate(peaks):
            group_args = {**args, **{name: values[i] for name, values in per_group.items()}}
            try:
                out.append(cls._schedule(peak, **group_args))
            except (TypeError, ValueError) as err:
                where = f"param_groups[{i}] (peak LR {peak!r})" if len(peaks) > 1 else f"peak LR {peak!r}"
                raise type(err)(f"{cls.__name__}: {err} [{where}]") from err
        return out

    @classmethod
    def spec_schedules(cls, peaks: list[float], **args: Any) -> list[S.Schedule]:
        """The pure schedule of every group for spec arguments ``args`` (defaults filled in), peaking at ``peaks``."""
        bound = inspect.signature(cls.__init__).bind(None, None, **args)  # TypeError names a missing one
        bound.apply_defaults()
        full = {k: v for k, v in bound.arguments.items() if k not in ("self", "optimizer", "last_epoch")}
        return cls.schedules_for(peaks, **full)

    @classmethod
    def torch_builder(cls, optimizer: Any, last_epoch: int = -1, **args: Any) -> Any:
        """PyTorch's ``LambdaLR`` driving the same schedules: ``lambda_g(t) = schedule_g(t) / base_lr_g``."""
        from torch.optim.lr_scheduler import LambdaLR as TorchLambdaLR

        peaks = group_peaks(optimizer)
        lambdas = [_Ratio(s, p) for s, p in zip(cls.spec_schedules(peaks, **args), peaks)]
        return TorchLambdaLR(optimizer, lambdas, last_epoch=last_epoch)  # type: ignore[arg-type]

    def move_to_step(self, steps: int) -> None:
        """Put the scheduler where ``steps`` calls of :meth:`step` after construction put it, at once (its LR
        is a closed form of the step, so the LRs are the same floats), and set the LRs."""
        check_count("steps", steps)
        self._step_count, self.last_epoch = steps, steps - 1
        self.step()

    def get_lr(self) -> list[float]:
        """Each group's schedule at ``last_epoch`` (closed form: no dependence on the previous LR)."""
        step = self.last_epoch
        return [s(step) for s in self.schedules]

    def _encode_field(self, name: str, value: Any) -> Any:
        if name == "schedules":
            return [s.to_dict() for s in value]
        return super()._encode_field(name, value)

    #: set when ``load_state_dict`` brought schedules other than the constructor's
    _loaded_other_schedules: bool = False

    def _apply_state(self, updates: dict[str, Any]) -> None:
        before = [s.to_dict() for s in self.schedules]
        super()._apply_state(updates)
        if [s.to_dict() for s in self.schedules] != before:
            self._loaded_other_schedules = True

    def load_state_dict(self, state_dict: Mapping[str, Any], policy: str | None = None) -> None:
        """As :meth:`LRScheduler.load_state_dict`; a state of another schedule loaded under ``"checkpoint"``
        keeps its spec: :meth:`to_spec` gives the saved spec when it rebuilds the loaded schedules."""
        super().load_state_dict(state_dict, policy)
        saved = state_dict.get("spec")
        ours = isinstance(saved, Mapping) and saved.get("type") == type(self).__name__
        if not (self._loaded_other_schedules and ours):
            return
        assert isinstance(saved, Mapping)
        args = {k: v for k, v in saved.items() if k != "type"}
        try:
            rebuilt = type(self).spec_schedules(group_peaks(self.optimizer), **args)
        except (TypeError, ValueError):  # not this class's arguments: PureSchedule describes what runs
            return
        if [s.to_dict() for s in rebuilt] == [s.to_dict() for s in self.schedules]:
            self._spec_args, self._loaded_other_schedules = copy.deepcopy(args), False

    def to_spec(self) -> dict[str, Any]:
        """The spec of the schedule that runs: the constructor's; after ``load_state_dict`` brought other
        schedules, the saved spec when it rebuilds them, else ``{"type": "PureSchedule", "schedules": [...]}``
        holding them as data."""
        if self._loaded_other_schedules:
            return {"type": "PureSchedule", "schedules": [s.to_dict() for s in self.schedules]}
        return super().to_spec()

    def _decode_field(self, name: str, value: Any) -> Any:
        if name == "schedules":
            groups = len(self.optimizer.param_groups)
            if not isinstance(value, (list, tuple)) or len(value) != groups:
                raise StateError(f"state['schedules'] must hold one schedule per param group ({groups}), got {value!r}")
            try:
                return [S.schedule_from_dict(v, f"state['schedules'][{i}]") for i, v in enumerate(value)]
            except (TypeError, ValueError) as err:
                raise StateError(str(err)) from err
        return super()._decode_field(name, value)


class WarmupConstant(ScheduleLR):
    """Linear warmup from ``warmup_start_lr`` to the group's LR over ``warmup_steps``, then constant.

    ``lr(t) = warmup_start_lr + (base_lr - warmup_start_lr) * t / warmup_steps`` for ``t < warmup_steps``,
    else ``base_lr``. See :class:`lrkit.schedules.WarmupConstant`.
    """

    _per_group = ("warmup_start_lr",)

    def __init__(
        self, optimizer: Any, warmup_steps: int, warmup_start_lr: float | list[float] = 0.0, last_epoch: int = -1
    ) -> None:
        self._bind(optimizer, last_epoch, warmup_steps=warmup_steps, warmup_start_lr=warmup_start_lr)

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.WarmupConstant(peak_lr, **args)


class _WarmupDecayLR(ScheduleLR):
    _per_group = ("min_lr", "warmup_start_lr")
    _pure: ClassVar[type[S.Schedule]]

    def __init__(
        self,
        optimizer: Any,
        warmup_steps: int,
        total_steps: int,
        min_lr: float | list[float] = 0.0,
        warmup_start_lr: float | list[float] = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer,
            last_epoch,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            min_lr=min_lr,
            warmup_start_lr=warmup_start_lr,
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return cls._pure(peak_lr, **args)  # type: ignore[call-arg]


class WarmupLinear(_WarmupDecayLR):
    """Linear warmup to the group's LR at ``warmup_steps``, linear decay to ``min_lr`` at ``total_steps``, held.

    See :class:`lrkit.schedules.WarmupLinear` for the formula.
    """

    _pure = S.WarmupLinear


class WarmupCosine(_WarmupDecayLR):
    """Linear warmup to the group's LR at ``warmup_steps``, cosine decay to ``min_lr`` at ``total_steps``, held.

    ``lr(t) = min_lr + (base_lr - min_lr) * (1 + cos(pi p)) / 2`` with
    ``p = clamp((t - warmup_steps) / (total_steps - warmup_steps), 0, 1)``; ``lr(0) = warmup_start_lr``.
    See :class:`lrkit.schedules.WarmupCosine`.

    Args:
        optimizer: its groups' LRs are the peaks.
        warmup_steps: steps of linear warmup (0: none).
        total_steps: the step at which ``min_lr`` is reached (> ``warmup_steps``).
        min_lr: absolute floor, a float or one per group.
        warmup_start_lr: absolute LR at step 0, a float or one per group.
        last_epoch: -1 to start, or the step to resume at (needs ``initial_lr`` in every group).
    """

    _pure = S.WarmupCosine


class WarmupPolynomial(ScheduleLR):
    """Linear warmup, then ``(base_lr - min_lr) * (1 - p) ** power + min_lr``, ``min_lr`` held after ``total_steps``.

    ``min_lr`` is the end LR (transformers' ``lr_end``), absolute and per group.
    See :class:`lrkit.schedules.WarmupPolynomial`.
    """

    _per_group = ("min_lr", "warmup_start_lr")

    def __init__(
        self,
        optimizer: Any,
        warmup_steps: int,
        total_steps: int,
        power: float = 1.0,
        min_lr: float | list[float] = 0.0,
        warmup_start_lr: float | list[float] = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer,
            last_epoch,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            power=power,
            min_lr=min_lr,
            warmup_start_lr=warmup_start_lr,
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.WarmupPolynomial(peak_lr, **args)


class WSD(ScheduleLR):
    """Warmup-Stable-Decay: warmup to the group's LR, hold it, decay to ``min_lr`` over the last steps.

    The decay covers ``decay_steps`` (or ``round(decay_fraction * total_steps)``) steps ending at
    ``total_steps``, with ``decay_shape`` linear, cosine, 1-sqrt or exponential.
    See :class:`lrkit.schedules.WSD` for the formulas.
    """

    _per_group = ("min_lr", "warmup_start_lr")

    def __init__(
        self,
        optimizer: Any,
        warmup_steps: int,
        total_steps: int,
        decay_steps: int | None = None,
        decay_fraction: float | None = None,
        decay_shape: str = "linear",
        min_lr: float | list[float] = 0.0,
        warmup_start_lr: float | list[float] = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer,
            last_epoch,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            decay_steps=decay_steps,
            decay_fraction=decay_fraction,
            decay_shape=decay_shape,
            min_lr=min_lr,
            warmup_start_lr=warmup_start_lr,
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.WSD(peak_lr, **args)


class WSDS(ScheduleLR):
    """WSD-S, cyclic WSD: warmup, then cycles of stable (the group's LR) + decay to ``min_lr`` ending at each of
    ``cycle_ends`` (the branch points), each later cycle restarting at the peak (or re-warming up from ``min_lr``
    over ``rewarmup_steps``). See :class:`lrkit.schedules.WSDS` for the formulas.
    """

    _per_group = ("min_lr", "warmup_start_lr")

    def __init__(
        self,
        optimizer: Any,
        cycle_ends: list[int],
        warmup_steps: int = 0,
        decay_steps: int | None = None,
        decay_fraction: float | None = None,
        decay_shape: str = "linear",
        min_lr: float | list[float] = 0.0,
        rewarmup_steps: int = 0,
        warmup_start_lr: float | list[float] = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer,
            last_epoch,
            cycle_ends=list(cycle_ends) if isinstance(cycle_ends, tuple) else cycle_ends,
            warmup_steps=warmup_steps,
            decay_steps=decay_steps,
            decay_fraction=decay_fraction,
            decay_shape=decay_shape,
            min_lr=min_lr,
            rewarmup_steps=rewarmup_steps,
            warmup_start_lr=warmup_start_lr,
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.WSDS(peak_lr, **args)


class PowerLR(ScheduleLR):
    """The power scheduler: warmup, ``min(base_lr, coefficient * t ** exponent)``, then (with ``total_steps``) a
    decay to ``min_lr``. ``coefficient`` is an absolute LR (one, or one per group). See
    :class:`lrkit.schedules.PowerLR` for the formulas and the paper's notation.
    """

    _per_group = ("coefficient", "min_lr", "warmup_start_lr")

    def __init__(
        self,
        optimizer: Any,
        coefficient: float | list[float],
        exponent: float,
        warmup_steps: int = 0,
        total_steps: int | None = None,
        decay_steps: int | None = None,
        decay_fraction: float | None = None,
        decay_shape: str = "linear",
        min_lr: float | list[float] = 0.0,
        warmup_start_lr: float | list[float] = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer,
            last_epoch,
            coefficient=coefficient,
            exponent=exponent,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            decay_steps=decay_steps,
            decay_fraction=decay_fraction,
            decay_shape=decay_shape,
            min_lr=min_lr,
            warmup_start_lr=warmup_start_lr,
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.PowerLR(peak_lr, **args)


class LogWarmup(ScheduleLR):
    """Logarithmic warmup to the group's LR over ``warmup_steps`` (DeepSpeed ``WarmupLR``'s default), then constant:
    ``lr(t) = warmup_start_lr + (base_lr - warmup_start_lr) * log(t + 1) / log(warmup_steps + 1)``.
    See :class:`lrkit.schedules.LogWarmup` (and its DeepSpeed mapping).
    """

    _per_group = ("warmup_start_lr",)

    def __init__(
        self, optimizer: Any, warmup_steps: int, warmup_start_lr: float | list[float] = 0.0, last_epoch: int = -1
    ) -> None:
        self._bind(optimizer, last_epoch, warmup_steps=warmup_steps, warmup_start_lr=warmup_start_lr)

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.LogWarmup(peak_lr, **args)


class InverseSqrt(ScheduleLR):
    """Linear warmup, then ``base_lr * sqrt(timescale / (t - warmup_steps + timescale))``.

    ``timescale`` defaults to ``warmup_steps``. See :class:`lrkit.schedules.InverseSqrt`.
    """

    _per_group = ("warmup_start_lr",)

    def __init__(
        self,
        optimizer: Any,
        warmup_steps: int,
        timescale: int | None = None,
        warmup_start_lr: float | list[float] = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer, last_epoch, warmup_steps=warmup_steps, timescale=timescale, warmup_start_lr=warmup_start_lr
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.InverseSqrt(peak_lr, **args)


class CosineWithRestarts(ScheduleLR):
    """Warmup, then cosine cycles to ``min_lr``: cycle ``i`` lasts ``cycle_steps * cycle_mult**i`` steps
    and peaks at ``max(base_lr * cycle_decay**i, min_lr)``, optionally re-warming up over
    ``cycle_warmup_steps`` at each restart; ``num_cycles`` ends it at ``min_lr``.
    See :class:`lrkit.schedules.CosineWithRestarts`.
    """

    _per_group = ("min_lr", "warmup_start_lr")

    def __init__(
        self,
        optimizer: Any,
        cycle_steps: int,
        cycle_mult: int = 1,
        cycle_decay: float = 1.0,
        min_lr: float | list[float] = 0.0,
        warmup_steps: int = 0,
        cycle_warmup_steps: int = 0,
        warmup_start_lr: float | list[float] = 0.0,
        num_cycles: int | None = None,
        last_epoch: int = -1,
    ) -> None:
        self._bind(
            optimizer,
            last_epoch,
            cycle_steps=cycle_steps,
            cycle_mult=cycle_mult,
            cycle_decay=cycle_decay,
            min_lr=min_lr,
            warmup_steps=warmup_steps,
            cycle_warmup_steps=cycle_warmup_steps,
            warmup_start_lr=warmup_start_lr,
            num_cycles=num_cycles,
        )

    @classmethod
    def _schedule(cls, peak_lr: float, **args: Any) -> S.Schedule:
        return S.CosineWithRestarts(peak_lr, **args)


class PureSchedule(ScheduleLR):
    """Each param group follows a pure schedule given as data (:meth:`lrkit.schedules.Schedule.to_dict`).

    ``schedules`` is one dict for every group or a list with one per group, each with absolute LRs
    (the group's base LR plays no part). The trainer's resume policies write the schedule they put in
    force this way (a :class:`lrkit.schedules.Refit` or :class:`lrkit.schedules.Decay` per group), so
    that it is a spec like any other::

        {"type": "PureSchedule", "schedules": [{"type": "Decay", "start_lr": 3e-4, "decay_steps": 100}]}
    """

    def __init__(self, optimizer: Any, schedules: dict[str, Any] | list[dict[str, Any]], last_epoch: int = -1) -> None:
        self._bind(optimizer, last_epoch, schedules=schedules)

    @classmethod
    def schedules_for(cls, peaks: list[float], **args: Any) -> list[S.Schedule]:
        data = args["schedules"]
        per_group = data if isinstance(data, list) else [data] * len(peaks)
        if len(per_group) != len(peaks):
            raise ValueError(
                f"PureSchedule: schedules must be one dict or a list with one per param group ({len(peaks)}), "
                f"got {len(per_group)}"
            )
        return [S.schedule_from_dict(d, f"schedules[{i}]") for i, d in enumerate(per_group)]


def schedule_of(scheduler: Any, group: int = 0) -> S.Schedule | None:
    """The pure schedule behind param group ``group`` of an lrkit scheduler, or None (torch-style classes)."""
    found = getattr(scheduler, "schedules", None)
    if isinstance(found, list) and len(found) > group and isinstance(found[group], S.Schedule):
        return found[group]
    return None
