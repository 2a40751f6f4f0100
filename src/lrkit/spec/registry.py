"""The spec registry: build any scheduler from a plain dict, and get the dict back.

A spec is ``{"type": <class name>, <constructor argument>: <value>, ...}``; the
composites take their children as specs under ``"schedulers"``::

    {"type": "SequentialLR", "milestones": [100],
     "schedulers": [{"type": "LinearLR", "start_factor": 0.01, "total_iters": 100},
                    {"type": "CosineAnnealingLR", "T_max": 900}]}

``build_scheduler(spec, optimizer)`` builds lrkit's classes;
``backend="torch"`` builds PyTorch's own classes from the same spec (the oracle for
tests and the alignment suite). Every lrkit scheduler returns its spec with
``to_spec()``, so a checkpoint can record which schedule produced its state.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lrkit.schedulers.base import python_scalars
from lrkit.spec.from_flags import CliName

Backend = Literal["lrkit", "torch"]
_COMPOSITES = ("SequentialLR", "ChainedScheduler")


@dataclass(frozen=True)
class SpecType:
    """One schedule type, declared once: what ``{"type": name, ...}`` builds, and how every tool finds it.

    The built-in records are :data:`lrkit.spec.catalog.CATALOG`; :func:`register` adds yours (a record
    with only ``name`` and ``cls`` is a plain spec type, as :func:`register_spec_type` makes).

    Attributes:
        name: the spec's ``"type"`` tag.
        cls: the lrkit scheduler class: ``cls(optimizer, **arguments)``.
        torch_builder: the PyTorch oracle, ``(optimizer, **arguments) -> torch scheduler``, for
            ``backend="torch"``; None means ``torch.optim.lr_scheduler.<name>`` itself.
        cli: its ``--lr-scheduler`` short names, with the flags each reads (:mod:`lrkit.spec.from_flags`).
        align_case: the spec of its case in ``lrkit align`` (10 updates of 4 x 64 tokens); None: no case.
        random_args: random arguments for ``lrkit align --random`` (black-box cases); None: not drawn.
    """

    name: str
    cls: type
    torch_builder: Callable[..., Any] | None = None
    cli: tuple[CliName, ...] = ()
    align_case: Mapping[str, Any] | None = None
    random_args: Callable[[random.Random], dict[str, Any]] | None = None


#: type name -> its record; filled by :mod:`lrkit.spec.catalog` (built-ins) and :func:`register_spec_type`.
_REGISTRY: dict[str, SpecType] = {}


def register(record: SpecType) -> None:
    """Make ``{"type": record.name, ...}`` buildable, and its short names known to the flags.

    A later record of the same name replaces it. A short name already taken by another type is an error.
    """
    if not isinstance(record, SpecType):
        raise TypeError(f"register: expected a SpecType record, got {record!r}")
    taken = {cli.name: other.name for other in _REGISTRY.values() if other.name != record.name for cli in other.cli}
    for cli in record.cli:
        if cli.name in taken:
            raise ValueError(f"register: {record.name}'s short name {cli.name!r} is already {taken[cli.name]}'s")
    _REGISTRY[record.name] = record


def spec_records() -> list[SpecType]:
    """Every registered record, in registration order (the catalog's, then the user's)."""
    return list(_REGISTRY.values())


def register_spec_type(name: str, cls: type, torch_builder: Callable[..., Any] | None = None) -> None:
    """Make ``{"type": name, ...}`` buildable with ``cls(optimizer, **arguments)``.

    ``torch_builder(optimizer, **arguments)`` backs ``backend="torch"`` (default: the class of the same
    name in ``torch.optim.lr_scheduler``).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_spec_type: name must be a non-empty str, got name={name!r}")
    if not isinstance(cls, type):
        raise TypeError(f"register_spec_type: cls must be a class, got cls={cls!r}")
    register(SpecType(name, cls, torch_builder))


def spec_record(kind: str) -> SpecType:
    """The record of ``{"type": kind}``."""
    if not _known(kind):
        raise ValueError(f"{kind!r} is not a known scheduler; expected one of {spec_types()}")
    return _REGISTRY[kind]


def _known(kind: Any) -> bool:
    """Whether ``kind`` names a registered spec type (a list or dict names none: it is not even hashable)."""
    return isinstance(kind, str) and kind in _REGISTRY


def spec_types() -> list[str]:
    """Every ``"type"`` a spec may name."""
    return sorted(_REGISTRY)


def spec_class(kind: str) -> type:
    """The lrkit class that ``{"type": kind}`` builds."""
    return spec_record(kind).cls


def _argument_names(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return [p for p in params if p not in ("self", "optimizer", "last_epoch", "schedulers")]


def _check_spec(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a dict with a 'type' key, got {spec!r}")
    kind = spec.get("type")
    if kind is not None and not isinstance(kind, str):  # None: no "type" at all, the ValueError below
        raise TypeError(
            f"{where}['type'] must be the name of a scheduler (a str), got {where}['type']={kind!r} "
            f"({type(kind).__name__}); expected one of {spec_types()}"
        )
    if kind not in _REGISTRY:
        raise ValueError(f"{where}['type']={kind!r} is not a known scheduler; expected one of {spec_types()}")
    args = {k: v for k, v in spec.items() if k != "type"}
    allowed = _argument_names(_REGISTRY[kind].cls)
    if "schedulers" in inspect.signature(_REGISTRY[kind].cls).parameters:  # composites, PerGroup
        allowed = [*allowed, "schedulers"]
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"{where} ({kind}) has unknown keys {unknown}; expected keys among {sorted(allowed)}")
    return kind, args


def build_scheduler(spec: Mapping[str, Any], optimizer: Any, backend: Backend = "lrkit", _where: str = "spec") -> Any:
    """Build the scheduler that ``spec`` describes, bound to ``optimizer``.

    Args:
        spec: ``{"type": ..., **arguments}``; composites carry child specs in ``"schedulers"``.
        optimizer: the optimizer to bind to.
        backend: ``"lrkit"`` (default) or ``"torch"`` for ``torch.optim.lr_scheduler``'s own classes.

    Raises:
        ValueError: an unknown type or key, or a bad value; the message names the key and the value.
        TypeError: a spec (or a value in it) of the wrong type; the message names it.
    """
    if backend not in ("lrkit", "torch"):
        raise ValueError(f"backend must be 'lrkit' or 'torch', got backend={backend!r}")
    kind, args = _check_spec(spec, _where)
    args = python_scalars(args)  # np.int64(3) is the int 3: the scheduler's spec and state stay JSON
    cls, torch_builder = _REGISTRY[kind].cls, _REGISTRY[kind].torch_builder
    if kind in _COMPOSITES:
        children_specs = args.pop("schedulers", None)
        if not isinstance(children_specs, list) or not children_specs:
            raise ValueError(f"{_where} ({kind}) needs a non-empty list under 'schedulers', got {children_specs!r}")
        children = [
            build_scheduler(child, optimizer, backend, f"{_where}['schedulers'][{i}]")
            for i, child in enumerate(children_specs)
        ]
        if backend == "torch":
            from torch.optim import lr_scheduler as torch_lr

            cls = getattr(torch_lr, kind)
        if kind == "ChainedScheduler":
            return cls(children, optimizer)
        return cls(optimizer, children, **args)
    if backend == "lrkit":
        return cls(optimizer, **args)
    if torch_builder is not None:
        return torch_builder(optimizer, **args)
    from torch.optim import lr_scheduler as torch_lr

    return getattr(torch_lr, kind)(optimizer, **args)


def complete_spec(spec: Any) -> Any:
    """``spec`` with every argument its class defaults filled in, in nested specs too (``schedulers``,
    ``schedule``), so two specs of the same schedule compare equal whether or not they spell a default out
    (``{"type": "WarmupCosine", ...}`` and the same with ``"warmup_start_lr": 0.0``). Anything that is not a
    known spec is returned as it is."""
    if isinstance(spec, list):
        return [complete_spec(item) for item in spec]
    if not isinstance(spec, Mapping) or not _known(spec.get("type")):
        return spec
    params = inspect.signature(_REGISTRY[spec["type"]].cls.__init__).parameters  # type: ignore[misc]
    out = {key: complete_spec(value) for key, value in spec.items()}
    for name in _argument_names(_REGISTRY[spec["type"]].cls):
        default = params[name].default
        if name not in out and default is not inspect.Parameter.empty and _is_plain(default):
            out[name] = default
    return out


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON spec (sorted keys), to tell two schedules apart."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
