"""Param groups that differ: a schedule per group (:class:`PerGroup`), and scaling a spec's floors per group.

:class:`PerGroup` binds one schedule spec to each param group, e.g. the embeddings and the head on
a schedule of their own beside the body, or a Muon-style group beside an AdamW group::

    {"type": "PerGroup", "schedulers": {"embed": {"type": "WarmupConstant", "warmup_steps": 0},
                                        "body": {"type": "WarmupCosine", "warmup_steps": 100,
                                                 "total_steps": 10_000, "min_lr": 3e-5}}}

It lives in the spec layer because its arguments are specs: each child is built from the catalog.

The LR of a group is in absolute units throughout (the optimizer's ``lr``); a group's *LR factor*
(``"lr_factor"`` in the group dict) is its peak LR divided by the base LR it was built from. lrkit's
LLM schedules take absolute floors (``min_lr``), which must not exceed a group's peak: with scaled
groups, scale the floors too (:func:`scale_absolute_lrs`), so ``floor_g = min_lr * lr_factor_g``.
Splitting a model into groups by depth is the trainer's (:mod:`lrkit.train.param_groups`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from lrkit import schedules as S
from lrkit.schedulers.base import LRScheduler, check_optimizer
from lrkit.schedulers.llm import ScheduleLR, _Ratio, group_peaks
from lrkit.schedules._checks import check_int
from lrkit.spec.registry import build_scheduler, spec_class, spec_types

__all__ = [
    "PerGroup",
    "scale_absolute_lrs",
    "pure_types",
]


# --------------------------------------------------------------------------- PerGroup


class _OneGroup:
    """A one-group stand-in optimizer: what a child spec of :class:`PerGroup` is built on (its oracle)."""

    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr}]
        self.defaults = {"lr": lr}  # HFSchedule converts an absolute min_lr with the optimizer's default lr


def _group_names(optimizer: Any) -> list[str | None]:
    return [g.get("name") if isinstance(g.get("name"), str) else None for g in optimizer.param_groups]


def per_group_children(
    spec: Mapping[str, Any], group_names: Sequence[str | None] | None, num_groups: int
) -> list[dict[str, Any]]:
    """The child spec of every param group of a ``PerGroup`` ``spec``, in ``param_groups`` order."""
    return [child for _, child in _resolve(spec.get("schedulers"), spec.get("names"), group_names, num_groups)]


def pure_types() -> list[str]:
    """The spec types whose LR is a function of the step alone: what a :class:`PerGroup` child may be."""
    return [name for name in spec_types() if issubclass(spec_class(name), ScheduleLR)]


def _resolve(
    schedulers: Any, names: Any, group_names: Sequence[str | None] | None, num_groups: int
) -> list[tuple[str, Any]]:
    """``(label for messages, child spec)`` for every param group, in ``param_groups`` order."""
    known = list(group_names) if group_names is not None else [None] * num_groups
    if names is not None:
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"PerGroup: names must be a list of str, one per param group, got names={names!r}")
        if len(names) != num_groups:
            raise ValueError(
                f"PerGroup: names must have one entry per param group ({num_groups}), got {len(names)}: "
                f"names={list(names)!r}"
            )
        for i, (given, actual) in enumerate(zip(names, known)):
            if actual is not None and given != actual:
                raise ValueError(
                    f"PerGroup: names[{i}]={given!r} but param_groups[{i}] is named {actual!r}: the schedules "
                    "were written for another group layout"
                )
        known = [actual if actual is not None else given for given, actual in zip(names, known)]
    if isinstance(schedulers, Mapping):
        if any(n is None for n in known):
            raise ValueError(
                "PerGroup: schedulers keyed by group name need every param group to carry a 'name' key "
                f"(or a 'names' list), got group names {known!r}"
            )
        missing = [n for n in known if n not in schedulers]
        unknown = [k for k in schedulers if k not in known]
        if missing or unknown:
            raise ValueError(
                f"PerGroup: schedulers must have one spec per param group name {known}; "
                f"missing {missing}, unknown {unknown}"
            )
        return [(f"schedulers[{n!r}]", schedulers[n]) for n in known]  # type: ignore[index]
    if not isinstance(schedulers, (list, tuple)):
        raise TypeError(
            "PerGroup: schedulers must be a list with one spec per param group or a dict keyed by group name, "
            f"got schedulers={schedulers!r}"
        )
    if len(schedulers) != num_groups:
        raise ValueError(
            f"PerGroup: schedulers must have one spec per param group ({num_groups}), got {len(schedulers)}"
        )
    return [
        (f"schedulers[{i}]" + (f" ({n!r})" if n is not None else ""), spec)
        for i, (n, spec) in enumerate(zip(known, schedulers))
    ]


def _child_schedule(spec: Any, peak: float, where: str) -> S.Schedule:
    """The pure schedule that ``spec`` sets on a one-group optimizer whose LR is ``peak``."""
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind in spec_types() and not issubclass(spec_class(kind), ScheduleLR):
        raise TypeError(
            f"PerGroup {where} is a {kind}, whose LR is not a function of the step alone (it follows the "
            f"optimizer's LR or another clock); a PerGroup child must be one of {pure_types()} "
            "(PureSchedule takes any pure schedule)"
        )
    try:
        child = build_scheduler(spec, _OneGroup(peak), _where=f"PerGroup {where}")
    except (TypeError, ValueError) as err:
        message = str(err)
        raise type(err)(message if message.startswith("PerGroup") else f"PerGroup {where}: {message}") from err
    schedule = child.schedules[0]
    assert isinstance(schedule, S.Schedule)
    return schedule


class PerGroup(ScheduleLR):
    """Each param group follows its own schedule spec.

    ``lr_g(t) = child_g(t)``, where ``child_g`` is the schedule that spec ``schedulers[g]`` sets when built
    alone on a one-group optimizer whose LR is group ``g``'s LR (its peak, ``initial_lr``). So a child's
    ``min_lr`` and ``warmup_start_lr`` are absolute LRs of that group, and a ``PerGroup`` of ``n`` copies of
    one spec gives the same LRs as that spec on the whole optimizer.

    Spec::

        {"type": "PerGroup", "schedulers": [spec_0, spec_1, ...]}            # one per group, in order
        {"type": "PerGroup", "schedulers": {"embed": spec, "body": spec}}   # keyed by the groups' "name"
        {"type": "PerGroup", "names": ["embed", "body"], "schedulers": [...]}

    ``names`` labels a list's entries; where the param groups carry a ``"name"`` it must match, so a
    checkpoint's schedule cannot silently attach to another group layout.

    Children must be pure-schedule types (lrkit's LLM schedules, :class:`~lrkit.schedulers.llm.PureSchedule`,
    :class:`~lrkit.schedulers.hf.HFSchedule`): their LR is a function of the step alone. torch's chainable classes
    (``StepLR``, ...) are refused with an error naming the child. State, ``to_spec()`` and the torch
    backend (``LambdaLR`` with ``lambda_g(t) = child_g(t) / base_lr_g``) are those of
    :class:`~lrkit.schedulers.llm.ScheduleLR`.

    Args:
        optimizer: its groups' LRs are the children's peaks.
        schedulers: a list of specs, one per param group, or a dict of specs keyed by group name.
        names: optional group names for a list, checked against the groups' ``"name"`` keys.
        last_epoch: -1 to start, or the step to resume at.
    """

    def __init__(
        self,
        optimizer: Any,
        schedulers: list[dict[str, Any]] | dict[str, dict[str, Any]],
        names: list[str] | None = None,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        check_int("last_epoch", last_epoch, minimum=-1)
        self.schedules = self.schedules_for(
            group_peaks(optimizer), schedulers=schedulers, names=names, group_names=_group_names(optimizer)
        )
        recorded: dict[str, Any] = {"schedulers": copy.deepcopy(schedulers)}
        if names is not None:
            recorded["names"] = list(names)
        self._record_spec(**recorded)
        LRScheduler.__init__(self, optimizer, last_epoch)

    @classmethod
    def schedules_for(  # type: ignore[override]
        cls,
        peaks: list[float],
        schedulers: Any,
        names: Any = None,
        group_names: Sequence[str | None] | None = None,
    ) -> list[S.Schedule]:
        """Group ``g``'s schedule is child ``g``'s, built on a one-group optimizer with LR ``peaks[g]``."""
        children = _resolve(schedulers, names, group_names, len(peaks))
        return [_child_schedule(spec, peak, where) for (where, spec), peak in zip(children, peaks)]

    @classmethod
    def torch_builder(cls, optimizer: Any, last_epoch: int = -1, **args: Any) -> Any:
        """PyTorch's ``LambdaLR`` with ``lambda_g(t) = child_g(t) / base_lr_g`` (the groups' names resolve a dict)."""
        from torch.optim.lr_scheduler import LambdaLR as TorchLambdaLR

        peaks = group_peaks(optimizer)
        schedules = cls.schedules_for(peaks, group_names=_group_names(optimizer), **args)
        lambdas = [_Ratio(s, p) for s, p in zip(schedules, peaks)]
        return TorchLambdaLR(optimizer, lambdas, last_epoch=last_epoch)  # type: ignore[arg-type]


def scale_absolute_lrs(spec: Mapping[str, Any], factors: Sequence[float], alone: bool = False) -> dict[str, Any]:
    """``spec`` with its absolute per-group LRs multiplied by each group's LR factor.

    lrkit's LLM schedules take ``min_lr`` and ``warmup_start_lr`` as absolute LRs. When the groups' peaks
    are ``lr * factor_g`` (layer-wise decay, ``--group-lr``), the same spec written for the base LR ``lr``
    becomes ``min_lr = [min_lr * factor_g for each g]`` (likewise ``warmup_start_lr``), so every group
    follows the same shape relative to its own peak and no floor exceeds its group's peak. A
    :class:`PerGroup` child is scaled by its group's factor; composites' children (and ``Clocked``'s
    inner schedule) are scaled in turn; torch's multiplicative classes have no absolute LR and are left
    as they are, as is a value already given per group (a list). With every factor 1 the spec is
    returned unchanged.

    ``HFSchedule`` converts an absolute ``min_lr`` (in ``scheduler_specific_kwargs``) to a ratio of the
    optimizer's default LR, as transformers does, so on the whole optimizer it already scales with each
    group; ``alone=True`` (a spec for one group, built alone on it: a :class:`PerGroup` child) scales it.
    """
    out = copy.deepcopy(dict(spec))
    factors = [float(f) for f in factors]
    if all(f == 1.0 for f in factors):
        return out
    kind = out.get("type")
    if kind not in spec_types():
        return out
    cls = spec_class(str(kind))
    children = out.get("schedulers")
    if cls is PerGroup and isinstance(children, list) and len(children) == len(factors):
        out["schedulers"] = [scale_absolute_lrs(child, [f], alone=True) for child, f in zip(children, factors)]
    elif isinstance(children, list):
        out["schedulers"] = [scale_absolute_lrs(child, factors, alone) for child in children]
    elif kind == "Clocked" and isinstance(out.get("schedule"), Mapping):  # a wrapper of one LLM schedule spec
        out["schedule"] = scale_absolute_lrs(out["schedule"], factors, alone)
    elif kind == "HFSchedule":
        kwargs = out.get("scheduler_specific_kwargs")
        if alone and len(factors) == 1 and isinstance(kwargs, dict) and isinstance(kwargs.get("min_lr"), (int, float)):
            kwargs["min_lr"] = float(kwargs["min_lr"]) * factors[0]
    elif issubclass(cls, ScheduleLR):
        for name in cls._per_group:
            value = out.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0:
                scaled = [float(value) * f for f in factors]
                out[name] = scaled[0] if len(scaled) == 1 else scaled
    return out
