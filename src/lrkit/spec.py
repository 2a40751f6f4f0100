"""Schedules as data: build any scheduler from a plain dict, and get the dict back.

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
from collections.abc import Callable, Mapping
from typing import Any, Literal

from lrkit import torch_compat

Backend = Literal["lrkit", "torch"]

#: type name -> (lrkit class, torch builder or None). A torch builder takes
#: ``(optimizer, **arguments)`` and returns a torch scheduler.
_REGISTRY: dict[str, tuple[type, Callable[..., Any] | None]] = {}
_COMPOSITES = ("SequentialLR", "ChainedScheduler")


def register_spec_type(name: str, cls: type, torch_builder: Callable[..., Any] | None = None) -> None:
    """Make ``{"type": name, ...}`` buildable. ``torch_builder`` backs ``backend="torch"``."""
    _REGISTRY[name] = (cls, torch_builder)


for _name in torch_compat.__all__:
    register_spec_type(_name, getattr(torch_compat, _name))


def _load_builtin_types() -> None:
    """The LLM, clocked and Hugging Face schedule types register themselves on import (they import this module)."""
    import lrkit.clocked  # noqa: F401
    import lrkit.groups  # noqa: F401
    import lrkit.hf  # noqa: F401
    import lrkit.llm  # noqa: F401


def spec_types() -> list[str]:
    """Every ``"type"`` a spec may name."""
    _load_builtin_types()
    return sorted(_REGISTRY)


def spec_class(kind: str) -> type:
    """The lrkit class that ``{"type": kind}`` builds."""
    _load_builtin_types()
    if kind not in _REGISTRY:
        raise ValueError(f"{kind!r} is not a known scheduler; expected one of {spec_types()}")
    return _REGISTRY[kind][0]


def _argument_names(cls: type) -> list[str]:
    params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    return [p for p in params if p not in ("self", "optimizer", "last_epoch", "schedulers")]


def _check_spec(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise TypeError(f"{where} must be a dict with a 'type' key, got {spec!r}")
    kind = spec.get("type")
    if kind not in _REGISTRY:
        _load_builtin_types()
    if kind not in _REGISTRY:
        raise ValueError(f"{where}['type']={kind!r} is not a known scheduler; expected one of {spec_types()}")
    args = {k: v for k, v in spec.items() if k != "type"}
    allowed = _argument_names(_REGISTRY[kind][0])
    if "schedulers" in inspect.signature(_REGISTRY[kind][0]).parameters:  # composites, PerGroup
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
        ValueError / TypeError naming the offending key and value.
    """
    if backend not in ("lrkit", "torch"):
        raise ValueError(f"backend must be 'lrkit' or 'torch', got backend={backend!r}")
    kind, args = _check_spec(spec, _where)
    cls, torch_builder = _REGISTRY[kind]
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


def spec_fingerprint(spec: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON spec (sorted keys), to tell two schedules apart."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
