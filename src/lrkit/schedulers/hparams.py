"""Schedules for the hyperparameters beside the LR: weight decay, Adam's betas, SGD momentum, the clip threshold.

:class:`HyperparamScheduler` reaches the optimizer the way lrkit's LR schedulers do: it writes
``schedule(t)`` into a key of every param group it schedules, at construction (``t = 0``) and after
every :meth:`~HyperparamScheduler.step` (a Python float replaced, a ``torch.Tensor`` filled in place),
and it keeps the clock ``t`` (``last_epoch``) as they do: step it once per successful optimizer update,
beside the LR scheduler, and both see the same ``t``::

    >>> wd = HyperparamScheduler(opt, "weight_decay", {"type": "WarmupCosine", "peak_lr": 0.1,
    ...                          "warmup_steps": 0, "total_steps": 1000, "min_lr": 0.01})
    >>> beta2 = HyperparamScheduler(opt, "beta2", {"type": "Decay", "start_lr": 0.95,
    ...                             "decay_steps": 1000, "min_lr": 0.99, "decay_shape": "cosine"})
    >>> for batch in data:
    ...     loss(batch).backward(); opt.step(); opt.zero_grad()
    ...     lr_scheduler.step(); wd.step(); beta2.step()

Schedules are the pure ones of :mod:`lrkit.schedules` with *absolute* values (their fields are named for
LRs: ``peak_lr``, ``min_lr``, ``start_lr`` are the hyperparameter's values). A rise such as beta2
0.95 -> 0.99 is :class:`~lrkit.schedules.Decay` from 0.95 to 0.99 (it runs either way), or
``WarmupConstant(peak_lr=0.99, warmup_steps=N, warmup_start_lr=0.95)``.

Keys (what is written, and the values allowed):

===============  ===========================================  =================
key              written to                                   allowed values
===============  ===========================================  =================
``weight_decay`` ``group["weight_decay"]``                    ``>= 0``
``beta1``        ``group["betas"][0]`` (the tuple is rebuilt) ``[0, 1)``
``beta2``        ``group["betas"][1]``                        ``[0, 1)``
``momentum``     ``group["momentum"]`` (SGD, RMSprop)         ``[0, 1)``
``grad_clip``    nothing: ``optimizer=None``; read            ``> 0``
                 :meth:`~HyperparamScheduler.get_last_value`
other keys       ``group[key]`` (a number already there)      finite, ``>= 0``
===============  ===========================================  =================

State (``state_dict()``) is plain JSON data: the key, the clock and each group's schedule as a dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrkit import schedules as S
from lrkit.schedulers.base import StateError, _Tensor, check_optimizer, set_group_value
from lrkit.schedules._checks import check_int, check_real
from lrkit.schedules.source import SourceError, loads_json, read_text_file

__all__ = ["HyperparamScheduler", "GRAD_CLIP", "KEY_RANGES", "check_value", "schedule_from_text"]

#: The key of the clip threshold, which no param group holds.
GRAD_CLIP = "grad_clip"
#: Allowed values per key, as :func:`lrkit.schedules._checks.check_real` bounds; other keys: ``>= 0``.
KEY_RANGES: dict[str, dict[str, Any]] = {
    "weight_decay": {"low": 0.0},
    "beta1": {"low": 0.0, "high": 1.0, "high_open": True},
    "beta2": {"low": 0.0, "high": 1.0, "high_open": True},
    "momentum": {"low": 0.0, "high": 1.0, "high_open": True},
    GRAD_CLIP: {"low": 0.0, "low_open": True},
}
_BETAS = {"beta1": 0, "beta2": 1}


def check_value(key: str, value: float, where: str = "") -> float:
    """``value`` if allowed for ``key`` (see :data:`KEY_RANGES`); else ValueError naming key, value and range."""
    try:
        return check_real(key, value, **KEY_RANGES.get(key, {"low": 0.0}))
    except (TypeError, ValueError) as err:
        raise type(err)(f"{err}{where}") from err


def _as_schedule(value: Any, where: str) -> S.Schedule | None:
    if value is None or isinstance(value, S.Schedule):
        return value
    if isinstance(value, Mapping):
        return S.schedule_from_dict(value, where)
    raise TypeError(f"{where} must be a Schedule, a schedule dict or None, got {value!r}")


class HyperparamScheduler:
    """Writes ``schedule_g(t)`` into param group ``g``'s ``key``; ``t`` = steps (or ``advance`` amounts) so far.

    Args:
        optimizer: the optimizer whose param groups hold ``key``; ``None`` for a value no group holds
            (``grad_clip``), read with :meth:`get_last_value`.
        key: ``"weight_decay"``, ``"beta1"``, ``"beta2"``, ``"momentum"``, ``"grad_clip"`` or another
            numeric param-group key.
        schedule: one :class:`lrkit.schedules.Schedule` (or its dict) for every group, or a list with
            one per group where ``None`` leaves that group as it is (e.g. the no-decay groups).

    Attributes:
        last_epoch: the clock ``t``: 0 after construction, +1 per :meth:`step`.
        schedules: one :class:`~lrkit.schedules.Schedule` or ``None`` per param group.

    Raises:
        ValueError / TypeError: a group without ``key`` (or without ``betas`` for ``beta1``/``beta2``),
            or a schedule whose value at step 0, at its peak or at its end is outside the key's range.
            A value out of range later (a schedule with no declared peak) is an error at that step.
    """

    def __init__(self, optimizer: Any, key: str, schedule: Any) -> None:  # noqa: D107
        if not isinstance(key, str) or not key:
            raise TypeError(f"key must be a param-group key such as 'weight_decay', got key={key!r}")
        if optimizer is not None:
            check_optimizer(optimizer)
            if key == GRAD_CLIP:
                raise ValueError(
                    "key='grad_clip' is not a param-group key: pass optimizer=None and give "
                    "get_last_value()[0] to your clip_grad_norm_ call"
                )
        self.optimizer = optimizer
        self.key = key
        self.schedules = self._parse_schedules(schedule, "schedule")
        self._check_targets()
        self.last_epoch = 0
        self._last_value: list[float | None] = []
        self._apply()

    # ------------------------------------------------------------------ helpers

    @property
    def num_groups(self) -> int:
        return 1 if self.optimizer is None else len(self.optimizer.param_groups)

    def _parse_schedules(self, schedule: Any, name: str) -> list[S.Schedule | None]:
        n = self.num_groups
        if isinstance(schedule, (list, tuple)):
            if len(schedule) != n:
                raise ValueError(
                    f"{name} for {self.key} must be one schedule or a list with one per param group ({n}), "
                    f"got {len(schedule)}"
                )
            out = [_as_schedule(s, f"{name}[{i}]") for i, s in enumerate(schedule)]
        else:
            one = _as_schedule(schedule, name)
            if one is None:
                raise TypeError(f"{name} for {self.key} must be a Schedule or a schedule dict, got None")
            out = [one] * n
        if all(s is None for s in out):
            raise ValueError(f"{name} for {self.key} leaves every param group unscheduled (all None)")
        for i, s in enumerate(out):
            if s is None:
                continue
            where = f" (the {self.key} schedule of param_groups[{i}] at step {{step}})"
            points = [(0.0, s(0))] + [p for p in (s.peak(), s.end()) if p is not None]
            for step, value in points:
                check_value(self.key, value, where.format(step=step))
        return out

    def _check_targets(self) -> None:
        if self.optimizer is None:
            return
        for i, (group, schedule) in enumerate(zip(self.optimizer.param_groups, self.schedules)):
            if schedule is None:
                continue
            if self.key in _BETAS:
                betas = group.get("betas")
                if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                    raise ValueError(
                        f"{self.key} is betas[{_BETAS[self.key]}], but param_groups[{i}] has no 'betas' pair "
                        f"(got {betas!r}): use an Adam-style optimizer"
                    )
            elif self.key not in group or isinstance(group[self.key], bool):
                raise ValueError(
                    f"param_groups[{i}] has no numeric {self.key!r} key for the schedule to write "
                    f"(its keys: {sorted(k for k in group if k != 'params')})"
                )

    def _apply(self) -> None:
        t = self.last_epoch
        values: list[float | None] = []
        for i, schedule in enumerate(self.schedules):
            if schedule is None:
                values.append(None)
                continue
            value = check_value(self.key, schedule(t), f" (the {self.key} schedule of param_groups[{i}] at step {t})")
            values.append(value)
            if self.optimizer is not None:
                self._write(self.optimizer.param_groups[i], value)
        self._last_value = values

    def _write(self, group: dict[str, Any], value: float) -> None:
        if self.key not in _BETAS:
            set_group_value(group, self.key, value)
            return
        index = _BETAS[self.key]
        betas = group["betas"]
        if isinstance(betas[index], _Tensor):
            betas[index].fill_(value)
        else:
            group["betas"] = (value, betas[1]) if index == 0 else (betas[0], value)

    # ----------------------------------------------------------------- stepping

    def step(self, epoch: int | None = None) -> None:
        """One optimizer update done (or jump to step ``epoch``): write the values for the new step."""
        self.last_epoch = self.last_epoch + 1 if epoch is None else check_int("epoch", epoch, minimum=0)
        self._apply()

    def advance(self, amount: int) -> None:
        """Move the clock by ``amount`` ticks (e.g. the tokens of an update, for a schedule in tokens)."""
        self.last_epoch += check_int("amount", amount, minimum=0)
        self._apply()

    def get_last_value(self) -> list[float | None]:
        """The value written to every group by the last step (``None`` for an unscheduled group)."""
        return list(self._last_value)

    def current(self) -> list[float]:
        """The value every param group holds now (read from the optimizer), as floats; ``grad_clip``: ``[value]``."""
        if self.optimizer is None:
            return [float(v) for v in self._last_value if v is not None]
        if self.key in _BETAS:
            return [float(g["betas"][_BETAS[self.key]]) for g in self.optimizer.param_groups]
        return [float(g[self.key]) for g in self.optimizer.param_groups]

    # -------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``{"type", "key", "last_epoch", "schedules": [dict or None per group]}``."""
        return {
            "type": type(self).__name__,
            "key": self.key,
            "last_epoch": self.last_epoch,
            "schedules": [None if s is None else s.to_dict() for s in self.schedules],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the stored schedules win, as in torch) and write that step's values.

        Validated completely first: on any error nothing changes.
        """
        if not isinstance(state, Mapping):
            raise StateError(f"state_dict must be a dict, got {type(state).__name__}")
        if state.get("type", type(self).__name__) != type(self).__name__:
            raise StateError(f"cannot load a {state.get('type')} state into a {type(self).__name__}")
        if state.get("key") != self.key:
            raise StateError(f"state['key'] must be {self.key!r} for this scheduler, got {state.get('key')!r}")
        epoch = state.get("last_epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise StateError(f"state['last_epoch'] must be an int >= 0, got {epoch!r}")
        try:
            schedules = self._parse_schedules(state.get("schedules"), "state['schedules']")
        except (TypeError, ValueError) as err:
            raise StateError(str(err)) from err
        self.schedules, self.last_epoch = schedules, epoch
        self._apply()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, last_epoch={self.last_epoch})"


_SHAPES = ("constant", *S.DECAY_SHAPES)
SHORT_FORMS = "constant:V, or SHAPE:START:END[:STEPS] with SHAPE one of " + ", ".join(S.DECAY_SHAPES)


def schedule_from_text(text: str, total_steps: int | None = None, name: str = "schedule") -> S.Schedule:
    """A pure schedule from a command-line value: a JSON schedule dict, ``@file.json``, or a short form.

    Short forms: ``constant:V`` is ``Constant(V)``; ``SHAPE:START:END[:STEPS]`` goes from ``START`` at
    step 0 to ``END`` at step ``STEPS`` (default ``total_steps``) along ``SHAPE`` (linear, cosine, 1-sqrt,
    exponential) and holds ``END`` after: ``Decay(START, STEPS, END, SHAPE)``, which may rise
    (``cosine:0.95:0.99`` for beta2).

    Raises:
        ValueError naming ``name``, the text and the forms expected.
    """
    source = str(text).strip()
    if source.startswith("@"):
        try:
            source = read_text_file(source[1:], "schedule file").strip()
        except SourceError as err:
            raise ValueError(f"{name}: {err}") from err
    if source.startswith("{"):
        try:
            data = loads_json(source, "the JSON schedule")
        except SourceError as err:
            raise ValueError(f"{name}: {err}") from err
        except ValueError as err:  # json.JSONDecodeError, NaN/Infinity
            raise ValueError(f"{name}: invalid JSON schedule {text[:200]!r}: {err}") from err
        try:
            return S.schedule_from_dict(data, name)
        except (TypeError, ValueError) as err:
            raise ValueError(str(err)) from err
    parts = source.split(":")
    expected = f"{name} must be a JSON schedule ('{{\"type\": ...}}'), @file.json or {SHORT_FORMS}; got {text!r}"
    if parts[0] not in _SHAPES:
        raise ValueError(expected)
    try:
        numbers = [float(p) for p in parts[1:3]]
        if parts[0] == "constant":
            if len(parts) != 2:
                raise ValueError(expected)
            return S.Constant(numbers[0])
        if len(parts) not in (3, 4):
            raise ValueError(expected)
        steps = int(parts[3]) if len(parts) == 4 else total_steps
        if steps is None:
            raise ValueError(f"{name} {text!r} needs its length: SHAPE:START:END:STEPS")
        return S.Decay(numbers[0], steps, numbers[1], parts[0])
    except ValueError as err:
        message = str(err)
        raise ValueError(message if message.startswith(name) else f"{name} {text!r}: {message}") from err
