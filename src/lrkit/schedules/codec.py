"""Schedules as plain JSON data and back: :func:`schedule_from_dict`, the inverse of :meth:`Schedule.to_dict`.

The types it rebuilds are one table, :data:`SCHEDULE_TYPES`: the public schedules of
:mod:`lrkit.schedules.shapes` and :mod:`lrkit.schedules.clock` (their ``__all__``). So
``import lrkit.schedules`` alone knows every type, whichever modules were imported before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields
from types import ModuleType
from typing import Any

from lrkit.schedules import clock, shapes
from lrkit.schedules.shapes import Schedule

__all__ = ["SCHEDULE_TYPES", "schedule_from_dict", "schedule_types", "spec_diff"]


def _public_schedules(*modules: ModuleType) -> dict[str, type[Schedule]]:
    found: dict[str, type[Schedule]] = {}
    for module in modules:
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, Schedule) and value is not Schedule:
                found[name] = value
    return found


#: Every schedule type :func:`schedule_from_dict` rebuilds, by its ``"type"`` (the class name).
SCHEDULE_TYPES: Mapping[str, type[Schedule]] = _public_schedules(shapes, clock)


def schedule_types() -> list[str]:
    """Every ``"type"`` that :func:`schedule_from_dict` accepts."""
    return sorted(SCHEDULE_TYPES)


def schedule_from_dict(data: Mapping[str, Any], where: str = "schedule") -> Schedule:
    """Rebuild a schedule from :meth:`Schedule.to_dict` data (validated like the constructor).

    Raises:
        ValueError: a bad value, or an unknown type or key; the message names the key and the value.
        TypeError: ``data`` (or a value in it) of the wrong type; the message names it.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{where} must be a dict with a 'type' key, got {data!r}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in SCHEDULE_TYPES:
        raise ValueError(f"{where}['type']={kind!r} is not a schedule; expected one of {schedule_types()}")
    cls = SCHEDULE_TYPES[kind]
    allowed = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    args = {k: v for k, v in data.items() if k != "type"}
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise ValueError(f"{where} ({kind}) has unknown keys {unknown}; expected keys among {allowed}")
    return cls(**{k: _from_plain(v, f"{where}[{k!r}]") for k, v in args.items()})


def _from_plain(value: Any, where: str) -> Any:
    if isinstance(value, Mapping) and "type" in value:
        return schedule_from_dict(value, where)
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        return tuple(schedule_from_dict(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, list):
        return tuple(value)
    return value


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def spec_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Every difference between two specs, one line each: ``schedulers[1].gamma: 0.5 -> 0.3``.

    Dicts are compared key by key, lists of equal length item by item; a key present on one
    side only shows ``(absent)`` on the other. ``1`` and ``1.0`` differ (they hash differently).
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"{where}: {_show(old[key])} -> (absent)")
            elif key not in old:
                out.append(f"{where}: (absent) -> {_show(new[key])}")
            else:
                out += spec_diff(old[key], new[key], where)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new)) for line in spec_diff(a, b, f"{path}[{i}]")]
    if old != new or type(old) is not type(new):
        return [f"{path or '(spec)'}: {_show(old)} -> {_show(new)}"]
    return []
