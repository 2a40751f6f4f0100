"""Param groups that differ: a schedule per group (:class:`PerGroup`) and layer-wise LR decay.

Two halves, both on the optimizer-binding layer (they read models and optimizers, never the trainer):

* :class:`PerGroup` binds one schedule spec to each param group, e.g. the embeddings and the head on
  a schedule of their own beside the body, or a Muon-style group beside an AdamW group::

      {"type": "PerGroup", "schedulers": {"embed": {"type": "WarmupConstant", "warmup_steps": 0},
                                          "body": {"type": "WarmupCosine", "warmup_steps": 100,
                                                   "total_steps": 10_000, "min_lr": 3e-5}}}

* :func:`layerwise_lr_decay` and :func:`part_groups` split a GPT-2 or LLaMA-3 style model into
  named param groups by depth (embeddings, blocks, final norm and head), keeping no weight decay
  for biases and norm gains (nanoGPT's rule: a parameter decays if it has >= 2 dims).

The LR of a group is in absolute units throughout (the optimizer's ``lr``); a group's *LR factor*
(``"lr_factor"`` in the group dict) is its peak LR divided by the base LR it was built from. lrkit's
LLM schedules take absolute floors (``min_lr``), which must not exceed a group's peak: with scaled
groups, scale the floors too (:func:`scale_absolute_lrs`), so ``floor_g = min_lr * lr_factor_g``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from lrkit import schedules as S
from lrkit._checks import check_int, check_real
from lrkit.llm import ScheduleLR, _Ratio, group_peaks
from lrkit.scheduler import LRScheduler, check_optimizer
from lrkit.spec import build_scheduler, register_spec_type, spec_class, spec_types

__all__ = [
    "PerGroup",
    "layer_depths",
    "layerwise_lr_decay",
    "part_groups",
    "scale_groups",
    "scale_absolute_lrs",
    "pure_types",
    "NO_DECAY_SUFFIX",
]

#: The name of a group's twin holding its 1-D parameters (biases, norm gains): ``"body" -> "body_no_decay"``.
NO_DECAY_SUFFIX = "_no_decay"


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

    Children must be pure-schedule types (lrkit's LLM schedules, :class:`~lrkit.llm.PureSchedule`,
    :class:`~lrkit.hf.HFSchedule`): their LR is a function of the step alone. torch's chainable classes
    (``StepLR``, ...) are refused with an error naming the child. State, ``to_spec()`` and the torch
    backend (``LambdaLR`` with ``lambda_g(t) = child_g(t) / base_lr_g``) are :class:`~lrkit.llm.ScheduleLR`'s.

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


register_spec_type("PerGroup", PerGroup, PerGroup.torch_builder)


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


# --------------------------------------------------------------------------- grouping by depth


def _blocks_prefix(model: Any, blocks: str | None) -> tuple[str, int]:
    """The dotted name of the model's list of blocks and its length ``L``."""
    from torch import nn

    if blocks is not None:
        module = model.get_submodule(blocks)
        if not isinstance(module, (nn.ModuleList, nn.Sequential)):
            raise TypeError(f"blocks must name a ModuleList of blocks, got blocks={blocks!r} ({type(module).__name__})")
        return blocks, len(module)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return name, len(module)
    raise ValueError(
        f"cannot find the blocks of {type(model).__name__}: no nn.ModuleList in it; pass blocks='<dotted name>'"
    )


def layer_depths(model: Any, blocks: str | None = None) -> tuple[dict[str, int], int]:
    """The depth of every trainable parameter by name, and the number of blocks ``L``.

    Depth 0: embeddings (parameters of ``nn.Embedding`` modules outside the blocks); depth ``i + 1``:
    block ``i`` (``i = 0 .. L-1``); depth ``L + 1``: everything else (the final norm and the head).
    ``blocks`` is the dotted name of the ``nn.ModuleList`` of blocks; by default the model's first
    non-empty ``ModuleList`` (``transformer.h`` for GPT-2, ``layers`` for LLaMA-3). A parameter shared
    by two modules has the depth of the first name ``named_parameters`` gives it: GPT-2's ``lm_head`` is
    tied to ``transformer.wte``, so that one matrix is an embedding (depth 0).
    """
    from torch import nn

    prefix, num_layers = _blocks_prefix(model, blocks)
    embedding_params = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)
    }
    depths: dict[str, int] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith(prefix + "."):
            depths[name] = int(name[len(prefix) + 1 :].split(".", 1)[0]) + 1
        elif id(param) in embedding_params:
            depths[name] = 0
        else:
            depths[name] = num_layers + 1
    return depths, num_layers


def _grouped(
    model: Any, label: Any, factor: Any, weight_decay: float, lr: float, blocks: str | None
) -> list[dict[str, Any]]:
    """One group per (depth label, decays?), by depth; ``label(depth)`` names it, ``factor(depth)`` scales its LR."""
    check_real("lr", lr, low=0.0)
    check_real("weight_decay", weight_decay, low=0.0)
    depths, _ = layer_depths(model, blocks)
    params = dict(model.named_parameters())
    groups: dict[str, dict[str, Any]] = {}
    order: dict[str, tuple[int, bool]] = {}
    for name, depth in depths.items():
        param = params[name]
        decays = param.dim() >= 2
        key = label(depth) + ("" if decays else NO_DECAY_SUFFIX)
        if key not in groups:
            f = float(factor(depth))
            order[key] = (depth, not decays)
            groups[key] = {
                "params": [],
                "name": key,
                "lr": lr * f,
                "lr_factor": f,
                "weight_decay": weight_decay if decays else 0.0,
            }
        groups[key]["params"].append(param)
    return [groups[key] for key in sorted(groups, key=lambda k: order[k])]  # by depth, decaying group first


def layerwise_lr_decay(
    model: Any, lr: float, decay: float, weight_decay: float = 0.0, blocks: str | None = None
) -> list[dict[str, Any]]:
    """Param groups for layer-wise LR decay (LLRD), BEiT's convention.

    With ``L`` blocks and the depths of :func:`layer_depths` (0 embeddings, ``i + 1`` block ``i``,
    ``L + 1`` final norm and head), a parameter at depth ``d`` trains with peak LR

        ``lr_d = lr * decay ** (L + 1 - d)``

    so the head has ``lr``, each block ``decay`` times the LR of the block above it, and the embeddings
    ``lr * decay ** (L + 1)``. This is BEiT's ``LayerDecayValueAssigner`` (``decay ** (num_layers + 1 - i)``),
    also used by MAE and timm; ELECTRA counts one more depth for its task head.

    Groups are named ``embed``, ``block0`` .. ``block{L-1}``, ``head``; each 1-D parameter (bias, norm gain)
    goes to the ``<name>_no_decay`` twin with ``weight_decay = 0``, matrices get ``weight_decay``. Every group
    dict holds ``"params"``, ``"name"``, ``"lr"`` (the peak, absolute) and ``"lr_factor"``
    (``decay ** (L + 1 - d)``); empty groups are left out. Give the LLM schedules per-group floors
    ``min_lr * lr_factor`` (:func:`scale_absolute_lrs`).

    Args:
        model: an ``nn.Module`` with a ``ModuleList`` of blocks (GPT-2, LLaMA-3, ...).
        lr: the head's LR (absolute), ``>= 0``.
        decay: the per-block factor, in ``(0, 1]`` (1: every group at ``lr``).
        weight_decay: for matrices (dim >= 2), ``>= 0``.
        blocks: dotted name of the blocks' ``ModuleList`` (default: found, see :func:`layer_depths`).
    """
    check_real("decay", decay, low=0.0, high=1.0, low_open=True)
    _, num_layers = _blocks_prefix(model, blocks)

    def label(depth: int) -> str:
        return "embed" if depth == 0 else "head" if depth == num_layers + 1 else f"block{depth - 1}"

    return _grouped(model, label, lambda d: decay ** (num_layers + 1 - d), weight_decay, lr, blocks)


def part_groups(model: Any, lr: float, weight_decay: float = 0.0, blocks: str | None = None) -> list[dict[str, Any]]:
    """Param groups by part: ``embed`` (depth 0), ``body`` (the blocks), ``head`` (final norm and head).

    Each with its ``_no_decay`` twin for 1-D parameters (``weight_decay = 0``); all at ``lr``
    (``"lr_factor"`` 1). Depths as in :func:`layer_depths`; GPT-2 has no ``head`` matrix of its own (its
    ``lm_head`` is the tied embedding), so its head is ``head_no_decay`` (the final LayerNorm) alone.
    Scale parts with :func:`scale_groups`.
    """
    _, num_layers = _blocks_prefix(model, blocks)

    def label(depth: int) -> str:
        return "embed" if depth == 0 else "head" if depth == num_layers + 1 else "body"

    return _grouped(model, label, lambda d: 1.0, weight_decay, lr, blocks)


def scale_groups(groups: list[dict[str, Any]], factors: Mapping[str, float]) -> list[dict[str, Any]]:
    """Multiply the peak LR (``"lr"`` and ``"lr_factor"``) of the named groups, in place; returns ``groups``.

    A name selects the group of that name and its ``_no_decay`` twin (``body`` selects ``body`` and
    ``body_no_decay``; ``body_no_decay`` selects only itself).

    Raises:
        ValueError: a name that selects no group (the message lists the names), or a factor that is
            not a finite number ``>= 0``.
    """
    names = [str(g.get("name")) for g in groups]
    for key, factor in factors.items():
        f = check_real(f"lr factor of {key!r}", factor, low=0.0)
        selected = [g for g in groups if g.get("name") in (key, key + NO_DECAY_SUFFIX)]
        if not selected:
            raise ValueError(f"no param group is named {key!r}; the groups are {names}")
        for group in selected:
            group["lr"] = float(group["lr"]) * f
            group["lr_factor"] = float(group.get("lr_factor", 1.0)) * f
            if not math.isfinite(group["lr"]):
                raise ValueError(f"the LR of group {group['name']!r} is not finite: {group['lr']!r}")
    return groups
