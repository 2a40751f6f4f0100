"""transformers' scheduler names on lrkit: ``get_scheduler(name, optimizer, ...)``.

Same signature, same argument handling and the same LRs as
``transformers.get_scheduler`` (to the last bit: the factor formulas in
:mod:`lrkit.schedules` keep transformers' order of operations), quirks included. What
comes back is an lrkit scheduler, so its state is plain data and it has a spec
(``{"type": "HFSchedule", "name": ..., ...}``) to rebuild it from.

The quirks, each documented on its ``HF*Factor`` class beside lrkit's quirk-free schedule:

=========================== ============================================== ===========================
name                        quirk                                          lrkit equivalent
=========================== ============================================== ===========================
linear                      LR 0 at step 0 and at ``T``                    :class:`~lrkit.WarmupLinear`
cosine                      rises again after ``T``                        :class:`~lrkit.WarmupCosine`
cosine_with_restarts        equal cycles, hard restarts to the full peak   :class:`~lrkit.CosineWithRestarts`
polynomial                  ``lr_end`` relative to ``optimizer.defaults``  :class:`~lrkit.WarmupPolynomial`
constant_with_warmup        none                                           :class:`~lrkit.WarmupConstant`
inverse_sqrt                timescale 10,000 when there is no warmup       :class:`~lrkit.InverseSqrt`
cosine_with_min_lr          rises after ``T``; ``min_lr`` via defaults      :class:`~lrkit.WarmupCosine`
cosine_warmup_with_min_lr   peak at ``W - 1``, floor at ``T - 1``, rises    :class:`~lrkit.WarmupCosine`
warmup_stable_decay         warmup starts at ``min_lr_ratio``              :class:`~lrkit.WSD`
reduce_lr_on_plateau        (returns :class:`lrkit.ReduceLROnPlateau`)
greedy                      (returns :class:`lrkit.GreedyLR`)
constant                    none
=========================== ============================================== ===========================

Differences from transformers, all deliberate: step counts must be ints ``>= 0``;
every argument is checked when the schedule is built (transformers fails on a bad one in
``LambdaLR``'s first step, and its ``float()`` takes a ``num_cycles`` of ``"0.5"``, which lrkit
refuses); unknown ``scheduler_specific_kwargs`` raise ``TypeError`` naming the accepted ones; polynomial
with ``num_warmup_steps == num_training_steps`` is rejected up front (transformers divides by zero at that
step). The metric-driven names build lrkit's classes, whose own differences their docstrings list.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from lrkit import schedules as S
from lrkit.schedulers.base import LRScheduler, check_optimizer
from lrkit.schedulers.greedy import get_greedy_schedule
from lrkit.schedulers.llm import ScheduleLR, group_peaks
from lrkit.schedulers.torch_compat import ReduceLROnPlateau
from lrkit.schedules._checks import check_int

__all__ = ["HFSchedule", "DefaultLRError", "get_scheduler", "hf_factor", "HF_SCHEDULER_NAMES"]

HF_SCHEDULER_NAMES = S.HF_SCHEDULER_NAMES

#: scheduler_specific_kwargs each name passes on to its transformers function.
_ACCEPTED: dict[str, tuple[str, ...]] = {
    "linear": (),
    "cosine": ("num_cycles",),
    "cosine_with_restarts": ("num_cycles",),
    "polynomial": ("lr_end", "power"),
    "inverse_sqrt": ("timescale",),
    "cosine_with_min_lr": ("num_cycles", "min_lr", "min_lr_rate"),
    "cosine_warmup_with_min_lr": ("num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate"),
    "warmup_stable_decay": (
        "num_decay_steps",
        "num_stable_steps",
        "warmup_type",
        "decay_type",
        "min_lr_ratio",
        "num_cycles",
    ),
}


#: The names whose scheduler steps on a metric, and the lrkit class they build.
_METRIC_DRIVEN = {"reduce_lr_on_plateau": "ReduceLROnPlateau", "greedy": "GreedyLR"}


def canonical_name(name: Any) -> str:
    """The ``SchedulerType`` value of ``name`` (a str or the enum member); ValueError listing the valid ones."""
    value = getattr(name, "value", name)
    if value not in HF_SCHEDULER_NAMES:
        raise ValueError(f"{value!r} is not a valid SchedulerType, please select one of {list(HF_SCHEDULER_NAMES)}")
    return str(value)


class DefaultLRError(ValueError):
    """A schedule that reads the optimizer's default LR (``lr_init``) was bound to peaks alone that do not give it."""


def _default_lr(optimizer: Any) -> float:
    """transformers reads ``optimizer.defaults["lr"]``; a bare param_groups object falls back to group 0."""
    defaults = getattr(optimizer, "defaults", None)
    if isinstance(defaults, Mapping) and "lr" in defaults:
        return float(defaults["lr"])
    return group_peaks(optimizer)[0]


def _check_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    accepted = _ACCEPTED[name]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"get_scheduler({name!r}) got unexpected scheduler_specific_kwargs {unknown}; "
            f"accepted: {list(accepted) or 'none'}"
        )
    return dict(kwargs)


def _known(name: str, lr_init: float | None) -> float:
    """``lr_init`` where ``name``'s factor reads it; :class:`DefaultLRError` if it is not known."""
    if lr_init is None:
        raise DefaultLRError(
            f"{name} reads the optimizer's default LR (transformers' optimizer.defaults['lr']), which is not known "
            "here: the param groups' peaks differ and no lr_init was given"
        )
    return lr_init


def _min_lr_rate(name: str, kwargs: dict[str, Any], lr_init: float | None) -> float:
    min_lr, min_lr_rate = kwargs.get("min_lr"), kwargs.get("min_lr_rate")
    if min_lr is not None and min_lr_rate is not None:
        raise ValueError("Only one of min_lr or min_lr_rate should be set")
    if min_lr is not None:
        return float(min_lr / _known(f"{name} with min_lr", lr_init))
    if min_lr_rate is None:
        raise ValueError("One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`")
    return float(min_lr_rate)


def hf_factor(
    name: Any,
    num_warmup_steps: int | None,
    num_training_steps: int | None,
    scheduler_specific_kwargs: Mapping[str, Any] | None,
    lr_init: float | None,
) -> S.Schedule:
    """The factor schedule (``lr = base_lr * factor(t)``) transformers' ``get_scheduler`` would build.

    Validates in transformers' order and with its messages. ``lr_init`` is
    ``optimizer.defaults["lr"]`` (used by ``polynomial`` and by ``min_lr`` conversions); None when it is
    not known, which :class:`DefaultLRError` reports if the factor reads it.
    """
    name = canonical_name(name)
    if name == "constant":
        return S.HFConstantFactor()
    if name in _METRIC_DRIVEN:
        raise ValueError(
            f"{name} is metric-driven (its step() takes the metric), so it has no factor of the step: "
            f"use get_scheduler() or lrkit.{_METRIC_DRIVEN[name]}"
        )
    if scheduler_specific_kwargs is not None and not isinstance(scheduler_specific_kwargs, Mapping):
        raise TypeError(f"scheduler_specific_kwargs must be a dict or None, got {scheduler_specific_kwargs!r}")
    if num_warmup_steps is None:
        raise ValueError(f"{name} requires `num_warmup_steps`, please provide that argument.")
    warmup = check_int("num_warmup_steps", num_warmup_steps, minimum=0)
    if name == "constant_with_warmup":  # transformers passes no scheduler_specific_kwargs here
        return S.HFConstantWithWarmupFactor(warmup)
    kwargs = _check_kwargs(name, scheduler_specific_kwargs or {})
    if name == "inverse_sqrt":
        timescale = kwargs.get("timescale")
        if timescale is None:
            timescale = warmup or 10_000
        return S.HFInverseSqrtFactor(warmup, check_int("timescale", timescale, minimum=1))
    if name == "warmup_stable_decay":
        return _wsd_factor(warmup, num_training_steps, kwargs)
    if num_training_steps is None:
        raise ValueError(f"{name} requires `num_training_steps`, please provide that argument.")
    total = check_int("num_training_steps", num_training_steps, minimum=0)
    if name == "linear":
        return S.HFLinearFactor(warmup, total)
    if name == "cosine":
        return S.HFCosineFactor(warmup, total, kwargs.get("num_cycles", 0.5))
    if name == "cosine_with_restarts":
        return S.HFCosineWithHardRestartsFactor(warmup, total, kwargs.get("num_cycles", 1))
    if name == "polynomial":
        lr_end, power = kwargs.get("lr_end", 1e-7), kwargs.get("power", 1.0)
        lr_init = _known(name, lr_init)
        if not (lr_init > lr_end):
            raise ValueError(f"lr_end ({lr_end}) must be smaller than initial lr ({lr_init})")
        return S.HFPolynomialFactor(warmup, total, lr_end, power, lr_init)
    rate = _min_lr_rate(name, kwargs, lr_init)
    if name == "cosine_with_min_lr":
        return S.HFCosineWithMinLRFactor(warmup, total, kwargs.get("num_cycles", 0.5), rate)
    return S.HFCosineWarmupWithMinLRFactor(
        warmup, total, kwargs.get("num_cycles", 0.5), rate, kwargs.get("warmup_lr_rate")
    )


def _wsd_factor(warmup: int, num_training_steps: int | None, kwargs: dict[str, Any]) -> S.Schedule:
    if "num_decay_steps" not in kwargs:
        raise TypeError("warmup_stable_decay requires scheduler_specific_kwargs['num_decay_steps']")
    decay = check_int("num_decay_steps", kwargs["num_decay_steps"], minimum=0)
    stable = kwargs.get("num_stable_steps")
    if num_training_steps is None and stable is None:
        raise ValueError("Either num_training_steps or num_stable_steps must be specified.")
    if num_training_steps is not None and stable is not None:
        warnings.warn(
            "Both num_training_steps and num_stable_steps are specified. num_stable_steps will be used.", stacklevel=4
        )
    if stable is None:
        stable = check_int("num_training_steps", num_training_steps, minimum=0) - warmup - decay
    return S.HFWSDFactor(
        warmup,
        check_int("num_stable_steps", stable),
        decay,
        kwargs.get("warmup_type", "linear"),
        kwargs.get("decay_type", "cosine"),
        kwargs.get("min_lr_ratio", 0),
        kwargs.get("num_cycles", 0.5),
    )


class HFSchedule(ScheduleLR):
    """A transformers-named schedule: each group's LR is ``base_lr * factor(t)``, as transformers' ``LambdaLR``.

    Built by :func:`get_scheduler` (which you normally call instead); its spec is
    ``{"type": "HFSchedule", "name": ..., "num_warmup_steps": ..., "num_training_steps": ...,
    "scheduler_specific_kwargs": {...}}``. ``schedules[g]`` is ``Product(Constant(base_lr_g), factor)``.
    """

    def __init__(
        self,
        optimizer: Any,
        name: str,
        num_warmup_steps: int | None = None,
        num_training_steps: int | None = None,
        scheduler_specific_kwargs: dict[str, Any] | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        check_int("last_epoch", last_epoch, minimum=-1)
        name = canonical_name(name)
        self.schedules = self.schedules_for(
            group_peaks(optimizer),
            name,
            num_warmup_steps,
            num_training_steps,
            scheduler_specific_kwargs,
            lr_init=_default_lr(optimizer),
        )
        kwargs = None if scheduler_specific_kwargs is None else dict(scheduler_specific_kwargs)
        self._record_spec(
            name=name,
            num_warmup_steps=num_warmup_steps,
            num_training_steps=num_training_steps,
            scheduler_specific_kwargs=kwargs,
        )
        LRScheduler.__init__(self, optimizer, last_epoch)

    @classmethod
    def schedules_for(  # type: ignore[override]
        cls,
        peaks: list[float],
        name: str,
        num_warmup_steps: int | None = None,
        num_training_steps: int | None = None,
        scheduler_specific_kwargs: Mapping[str, Any] | None = None,
        lr_init: float | None = None,
    ) -> list[S.Schedule]:
        """Each group's schedule, ``Product(Constant(peak), factor)``, for groups peaking at ``peaks``.

        ``lr_init`` is the optimizer's ``defaults["lr"]``, which transformers' ``polynomial`` and a
        ``min_lr`` read. Bound to peaks alone (:meth:`spec_schedules`: a resume's ``extend``) it is the
        groups' common peak, as for an optimizer whose groups take its
        default LR; if the peaks differ, a factor that reads it raises :class:`DefaultLRError`.
        """
        if lr_init is None and len(set(peaks)) == 1:
            lr_init = peaks[0]
        factor = hf_factor(name, num_warmup_steps, num_training_steps, scheduler_specific_kwargs, lr_init)
        return [S.Product(S.Constant(peak), factor) for peak in peaks]

    def get_lr(self) -> list[Any]:
        """Each group's ``base_lr * factor(step)``. A Tensor LR is multiplied in the tensor's dtype, as
        transformers' ``LambdaLR`` does (``base_lr`` is then a Tensor copy of ``initial_lr``)."""
        step = self.last_epoch
        out: list[Any] = []
        for schedule, base in zip(self.schedules, self.base_lrs):
            product = schedule
            if base.__class__ is float or not isinstance(product, S.Product) or product.a(step) != float(base):
                out.append(schedule(step))
            else:
                out.append(base * product.b(step))
        return out

    @property
    def factor(self) -> S.Schedule:
        """The transformers factor schedule shared by every group."""
        product = self.schedules[0]
        assert isinstance(product, S.Product)
        return product.b

    @classmethod
    def torch_builder(cls, optimizer: Any, **args: Any) -> Any:
        """PyTorch's ``LambdaLR`` with the factor as its ``lr_lambda``: exactly what transformers builds."""
        from torch.optim.lr_scheduler import LambdaLR as TorchLambdaLR

        factor = hf_factor(
            args["name"],
            args.get("num_warmup_steps"),
            args.get("num_training_steps"),
            args.get("scheduler_specific_kwargs"),
            _default_lr(optimizer),
        )
        return TorchLambdaLR(optimizer, factor)  # type: ignore[arg-type]


def get_scheduler(
    name: Any,
    optimizer: Any,
    num_warmup_steps: int | None = None,
    num_training_steps: int | None = None,
    scheduler_specific_kwargs: dict[str, Any] | None = None,
) -> LRScheduler:
    """Any transformers scheduler by name, as an lrkit scheduler with the same LRs.

    Args:
        name: a ``transformers.SchedulerType`` value (or member): linear, cosine, cosine_with_restarts,
            polynomial, constant, constant_with_warmup, inverse_sqrt, reduce_lr_on_plateau,
            cosine_with_min_lr, cosine_warmup_with_min_lr, warmup_stable_decay, greedy.
        optimizer: the optimizer; its groups' LRs are the base LRs.
        num_warmup_steps: warmup steps; required by every name except constant, reduce_lr_on_plateau and greedy.
        num_training_steps: total steps; required by linear, cosine*, polynomial (and by
            warmup_stable_decay unless ``num_stable_steps`` is given).
        scheduler_specific_kwargs: the extra arguments of the transformers function (``num_cycles``,
            ``lr_end``, ``power``, ``timescale``, ``min_lr``, ``min_lr_rate``, ``warmup_lr_rate``,
            ``num_decay_steps``, ``num_stable_steps``, ``warmup_type``, ``decay_type``, ``min_lr_ratio``;
            for reduce_lr_on_plateau, ReduceLROnPlateau's arguments; for greedy, GreedyLR's).

    Returns:
        :class:`HFSchedule`, or :class:`lrkit.ReduceLROnPlateau` for ``reduce_lr_on_plateau`` and
        :class:`lrkit.GreedyLR` for ``greedy`` (both step on a metric: ``step(metrics)``).

    Raises:
        ValueError: an unknown name or a missing required argument (transformers' messages).
        TypeError: a ``scheduler_specific_kwargs`` key the scheduler does not take.
    """
    name = canonical_name(name)
    if name == "reduce_lr_on_plateau":
        return ReduceLROnPlateau(optimizer, **(scheduler_specific_kwargs or {}))
    if name == "greedy":
        return get_greedy_schedule(optimizer, **(scheduler_specific_kwargs or {}))
    return HFSchedule(optimizer, name, num_warmup_steps, num_training_steps, scheduler_specific_kwargs)
