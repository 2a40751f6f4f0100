"""A schedule on the token or sample clock, bound to an optimizer: :class:`Clocked`.

The spec wraps any of lrkit's LLM schedules; the inner schedule's step arguments are read in
``unit`` (tokens or samples, see :mod:`lrkit.schedules.clock`)::

    {"type": "Clocked", "unit": "tokens",
     "schedule": {"type": "WarmupCosine", "warmup_steps": 50_000_000, "total_steps": 10_000_000_000,
                  "min_lr": 3e-5}}

After updates that consumed ``c`` tokens (the *clock*), param group ``g`` has
``lr_g = schedule_g(c)``, where ``schedule_g`` is the inner schedule peaking at that group's base LR.
The trainer calls :meth:`Clocked.advance` once per successful optimizer update with that update's
tokens (or samples); ``step()`` would not know how far to move the clock, so it raises.

With ``backend="torch"`` the spec builds PyTorch's ``LambdaLR`` over the same math
(``lambda_g(c) = schedule_g(c) / base_lr_g``), driven by the clock through torch's ``step(epoch)``
(its ``last_epoch`` *is* the clock); :func:`advance` and :func:`move_to` drive either backend.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

from lrkit import schedules as S
from lrkit.schedulers import llm
from lrkit.schedulers.base import LRScheduler, StateError
from lrkit.schedulers.hf import HFSchedule
from lrkit.schedulers.llm import ScheduleLR, group_peaks
from lrkit.schedules._checks import check_choice, check_int
from lrkit.spec.registry import spec_class

__all__ = ["Clocked", "advance", "clock_schedules_for", "move_to", "spec_clock_unit"]

_UNITS = ("tokens", "samples")


def spec_clock_unit(spec: Mapping[str, Any]) -> str | None:
    """``"tokens"`` or ``"samples"`` for a ``Clocked`` spec, else None (the schedule counts steps)."""
    if spec.get("type") == "Clocked":
        return str(spec.get("unit"))
    return None


def _inner(schedule: Any) -> tuple[type[ScheduleLR], dict[str, Any]]:
    """The LLM schedule class a ``Clocked`` spec wraps and its arguments; errors name the key."""
    if not isinstance(schedule, Mapping) or "type" not in schedule:
        raise TypeError(f"Clocked: schedule must be a spec dict with a 'type' key, got schedule={schedule!r}")
    kind = str(schedule["type"])
    cls = spec_class(kind)
    if not isinstance(cls, type) or not issubclass(cls, ScheduleLR) or issubclass(cls, HFSchedule):
        choices = ", ".join(name for name in llm.__all__ if name != "ScheduleLR")
        raise ValueError(
            f"Clocked: schedule['type'] must be one of lrkit's LLM schedules ({choices}), got {kind!r}: "
            "the torch-style and Hugging Face schedules count optimizer steps"
        )
    return cls, {k: v for k, v in schedule.items() if k != "type"}


def _clock_schedules(optimizer: Any, unit: str, schedule: Any) -> list[S.Schedule]:
    return clock_schedules_for(group_peaks(optimizer), unit, schedule)


def clock_schedules_for(peaks: list[float], unit: str, schedule: Any) -> list[S.Schedule]:
    """Each param group's schedule of the clock, for groups peaking at ``peaks`` (a ``Clocked`` spec's parts)."""
    check_choice("unit", unit, _UNITS)
    cls, args = _inner(schedule)
    try:
        return cls.spec_schedules(peaks, **args)
    except (TypeError, ValueError) as err:
        raise type(err)(f"Clocked ({unit}): schedule: {err}") from err


class Clocked(LRScheduler):
    """Each param group follows a pure schedule of the clock (tokens or samples), not of the step.

    ``lr_g = schedule_g(clock)``, ``clock`` = the ``amount`` summed over every :meth:`advance` call.

    Args:
        optimizer: its groups' LRs are the peaks of the inner schedule.
        unit: ``"tokens"`` or ``"samples"``: what the clock, and the inner schedule's step arguments, count.
        schedule: the spec of one of lrkit's LLM schedules (``WarmupCosine``, ``WSD``, ..., ``PureSchedule``).

    Attributes:
        clock: ticks of ``unit`` consumed so far (0 after construction).
        last_epoch: optimizer updates so far (:meth:`advance` calls), as in torch.
        clock_schedules: one :class:`lrkit.schedules.Schedule` per param group, a function of the clock.

    State (``state_dict()``) is plain data holding ``unit``, ``clock`` and ``clock_schedules``.
    """

    _state_fields = ("unit", "clock", "clock_schedules")
    resume_policy = "strict"  # as lrkit's schedules: a state of another schedule is refused unless told
    unit: str
    clock: int
    clock_schedules: list[S.Schedule]

    def __init__(self, optimizer: Any, unit: str, schedule: dict[str, Any]) -> None:
        self.clock_schedules = _clock_schedules(optimizer, unit, schedule)
        self.unit, self.clock = unit, 0
        self._record_spec(unit=unit, schedule=copy.deepcopy(dict(schedule)))
        LRScheduler.__init__(self, optimizer, -1)

    @classmethod
    def torch_builder(cls, optimizer: Any, unit: str, schedule: dict[str, Any]) -> Any:
        """PyTorch's ``LambdaLR`` over the same schedules, ``lambda_g(clock) = schedule_g(clock) / base_lr_g``.

        Drive it with ``scheduler.step(clock)`` (torch's ``epoch`` argument), e.g. through :func:`advance`.
        """
        check_choice("unit", unit, _UNITS)
        inner, args = _inner(schedule)
        return inner.torch_builder(optimizer, **args)

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Only the constructor's initial step: a clocked schedule moves with :meth:`advance`."""
        if not self._is_initial:
            raise RuntimeError(
                f"Clocked counts {self.unit}: call advance({self.unit}) once per successful optimizer update "
                f"with the {self.unit} it consumed, not step() (a step does not say how far the clock moves; "
                "nor can a Clocked schedule sit inside SequentialLR or ChainedScheduler)"
            )
        super().step(epoch)

    def advance(self, amount: int) -> None:
        """One optimizer update that consumed ``amount`` tokens (or samples): ``clock += amount``, set the LRs."""
        check_int("amount", amount, minimum=0)
        self._step_count += 1
        self.last_epoch += 1
        self.clock += int(amount)
        self._apply_lrs(self.get_lr())

    def move_to(self, clock: int, steps: int) -> None:
        """Jump to ``clock`` ticks after ``steps`` updates and set the LRs (a schedule put in force mid-run)."""
        check_int("clock", clock, minimum=0)
        check_int("steps", steps, minimum=0)
        self._step_count = steps + 1
        self.last_epoch, self.clock = steps, clock
        self._apply_lrs(self.get_lr())

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """Each group's schedule at the clock."""
        clock = self.clock
        return [s(clock) for s in self.clock_schedules]

    def _encode_field(self, name: str, value: Any) -> Any:
        if name == "clock_schedules":
            return [s.to_dict() for s in value]
        return super()._encode_field(name, value)

    #: set when ``load_state_dict`` brought clock schedules other than the constructor's
    _loaded_other_schedules: bool = False

    def _apply_state(self, updates: dict[str, Any]) -> None:
        before = (self.unit, [s.to_dict() for s in self.clock_schedules])
        super()._apply_state(updates)
        if (self.unit, [s.to_dict() for s in self.clock_schedules]) != before:
            self._loaded_other_schedules = True

    def to_spec(self) -> dict[str, Any]:
        """The spec of the schedule that runs: the constructor's, or, after ``load_state_dict`` brought other
        schedules, ``{"type": "Clocked", "unit": ..., "schedule": {"type": "PureSchedule", ...}}`` holding them."""
        if self._loaded_other_schedules:
            pure = {"type": "PureSchedule", "schedules": [s.to_dict() for s in self.clock_schedules]}
            return {"type": "Clocked", "unit": self.unit, "schedule": pure}
        return super().to_spec()

    def _decode_field(self, name: str, value: Any) -> Any:
        if name == "unit":
            if value not in _UNITS:
                raise StateError(f"state['unit'] must be one of {', '.join(_UNITS)}, got {value!r}")
            return value
        if name == "clock":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise StateError(f"state['clock'] must be an int >= 0, got {value!r}")
            return value
        if name == "clock_schedules":
            groups = len(self.optimizer.param_groups)
            if not isinstance(value, (list, tuple)) or len(value) != groups:
                raise StateError(
                    f"state['clock_schedules'] must hold one schedule per param group ({groups}), got {value!r}"
                )
            try:
                return [S.schedule_from_dict(v, f"state['clock_schedules'][{i}]") for i, v in enumerate(value)]
            except (TypeError, ValueError) as err:
                raise StateError(str(err)) from err
        return super()._decode_field(name, value)


def advance(scheduler: Any, amount: int) -> None:
    """Move a clocked scheduler on by one update of ``amount`` ticks: lrkit's :class:`Clocked`, or the
    torch ``LambdaLR`` that a ``Clocked`` spec builds with ``backend="torch"`` (``step(last_epoch + amount)``)."""
    if isinstance(scheduler, Clocked):
        scheduler.advance(amount)
        return
    with warnings.catch_warnings():  # torch deprecates step(epoch); here the epoch is the clock
        warnings.simplefilter("ignore")
        scheduler.step(scheduler.last_epoch + amount)


def move_to(scheduler: Any, clock: int, steps: int) -> None:
    """Put a clocked scheduler (either backend) at ``clock`` ticks after ``steps`` updates."""
    if isinstance(scheduler, Clocked):
        scheduler.move_to(clock, steps)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler.step(clock)
