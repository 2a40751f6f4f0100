"""The optimizer binding: lrkit's scheduler base class.

It follows PyTorch's ``LRScheduler`` contract (``step()``, ``get_last_lr()``,
``state_dict()``, ``load_state_dict()``, ``last_epoch``, ``base_lrs``,
``optimizer``) and, when torch is installed, *is* a
``torch.optim.lr_scheduler.LRScheduler``, so the HF Trainer, Lightning and
accelerate treat it as their own. Differences from torch, all deliberate:

* ``optimizer.step`` is never wrapped or patched, and no warnings are emitted on
  the hot path.
* State is plain data: ``state_dict()`` holds only JSON-serialisable primitives
  and names its class under ``"type"``. ``load_state_dict`` validates everything
  before it changes anything, so a failed load leaves the scheduler as it was.
* A ``torch.Tensor`` LR in a param group is computed as torch computes it, in the
  tensor's dtype (the formulas are plain arithmetic, so the same expression runs on
  the tensor), and updated in place with ``fill_`` so a compiled optimizer does not
  recompile. ``base_lrs``, ``initial_lr`` and ``get_last_lr()`` hold tensor copies for
  such a group, as torch's do; the state stores them as floats.

The only contact with the optimizer is reading and writing ``param_groups``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from lrkit.schedules._checks import check_int, check_real
from lrkit.schedules.codec import spec_diff

try:  # torch is optional for the math layer, required for binding to a real optimizer.
    from torch import Tensor as _Tensor
    from torch.optim.lr_scheduler import EPOCH_DEPRECATION_WARNING
    from torch.optim.lr_scheduler import LRScheduler as _TorchLRScheduler
    from torch.optim.lr_scheduler import ReduceLROnPlateau as _TorchReduceLROnPlateau

    HAS_TORCH = True
except ImportError:  # pragma: no cover - exercised only without torch
    HAS_TORCH = False
    EPOCH_DEPRECATION_WARNING = "The epoch parameter in `scheduler.step()` is deprecated: use `scheduler.step()`."

    class _TorchLRScheduler:  # type: ignore[no-redef]
        """Stand-in base when torch is not installed."""

    class _TorchReduceLROnPlateau(_TorchLRScheduler):  # type: ignore[no-redef]
        """Stand-in base when torch is not installed."""

    class _Tensor:  # type: ignore[no-redef]
        """Never instantiated: makes ``isinstance(x, _Tensor)`` false without torch."""


__all__ = [
    "EPOCH_DEPRECATION_WARNING",
    "MAX_COUNT",
    "LRScheduler",
    "StateError",
    "check_optimizer",
    "set_group_value",
    "group_lrs",
    "group_values",
]


class StateError(ValueError):
    """A state dict that does not fit this scheduler (wrong class, missing, unknown or malformed keys, or a
    value its constructor would refuse)."""


#: The largest step count (or clock) a scheduler takes, in its constructor or from a state: ``2**53``, the
#: largest integer a float holds exactly (the schedules compute with the step as a float, so past it two steps
#: would share one LR, and a step such as ``10**400`` overflows the float conversion).
MAX_COUNT = 2**53

#: Keys of torch's own state dicts that lrkit keeps no attribute for (torch saves every attribute): a torch
#: state of the same class loads with them, and they are ignored.
TORCH_ONLY_KEYS = frozenset({"_get_lr_called_within_step", "_is_initial", "verbose"})


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    """A step count (or clock): an ``int`` (not a bool) in ``[minimum, MAX_COUNT]``."""
    check_int(name, value, minimum=minimum)
    if value > MAX_COUNT:
        raise ValueError(f"{name} must be an int in [{minimum}, 2**53], got {name}={_short(value)}")
    return int(value)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a stored ``10**400`` has 401 digits)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def check_each(name: str, values: Any, **bounds: Any) -> list[Any]:
    """:func:`check_real` on every entry of the list ``values`` (named ``name[i]``); ``bounds`` as there."""
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a list of numbers, got {name}={_short(values)}")
    return [check_real(f"{name}[{i}]", v, tensor_ok=True, **bounds) for i, v in enumerate(values)]


def state_value(name: str, value: Any, check: Callable[[Any], Any]) -> Any:
    """``check(value)``: a check of the constructor's; its ``TypeError``/``ValueError`` becomes a
    :class:`StateError` naming the state key ``name`` and the stored value."""
    try:
        return check(value)
    except StateError:
        raise
    except (TypeError, ValueError) as err:
        raise StateError(f"state[{name!r}]={_short(_plain_or(value))} is refused: {err}") from err


def _plain_or(value: Any) -> Any:
    try:
        return _plain(value)
    except (TypeError, ValueError):
        return value


def check_optimizer(optimizer: Any, name: str = "optimizer") -> None:
    """An object with a non-empty ``param_groups`` list of dicts, each holding an ``"lr"``."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list) or not groups or not all(isinstance(g, dict) for g in groups):
        raise TypeError(
            f"{name} must be a torch.optim.Optimizer (an object with a non-empty param_groups list), "
            f"got {name}={type(optimizer).__name__}"
        )
    for i, group in enumerate(groups):
        if "lr" not in group:
            raise ValueError(f"{name}.param_groups[{i}] has no 'lr' key")


def set_group_value(group: dict[str, Any], key: str, value: float) -> None:
    """Write a hyperparameter into a param group; a Tensor is filled in place (no recompiles)."""
    current = group.get(key)
    if isinstance(current, _Tensor):
        current.fill_(value)
    else:
        group[key] = value


def group_lrs(optimizer: Any) -> list[float]:
    """The current LR of every param group, as Python floats."""
    return [float(group["lr"]) for group in optimizer.param_groups]


def copy_value(value: Any) -> Any:
    """``value`` itself, or a copy if it is a Tensor (so it never aliases a param group's tensor)."""
    return value.clone() if isinstance(value, _Tensor) else value


def group_values(optimizer: Any, key: str = "lr") -> list[Any]:
    """``group[key]`` of every param group as it is typed (torch's ``_param_groups_val_list``):
    floats stay floats, Tensors are copied."""
    values = [group[key] for group in optimizer.param_groups]
    for value in values:  # a loop, not all(...): this is on the hot path of ChainedScheduler
        if value.__class__ is not float:
            return [copy_value(v) for v in values]
    return values


def like(template: Any, value: float) -> Any:
    """``value`` as a tensor of ``template``'s dtype and device if ``template`` is a Tensor, else a float."""
    if isinstance(template, _Tensor):
        return template.new_tensor(value)
    return float(value)


def warn_epoch_deprecated() -> None:
    """torch's warning for ``step(epoch)``: same text (``EPOCH_DEPRECATION_WARNING``) and category."""
    # Not mutated: mutmut's trampolines add stack frames, so no test can measure a stacklevel under it.
    warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=3)  # pragma: no mutate


def python_scalars(value: Any) -> Any:
    """``value`` with every numpy scalar (``np.int64(3)``, ``np.float32(0.5)``, ``np.bool_``) made the Python
    number it stands for, in lists, tuples and dicts too; anything else (a Tensor, a function) as it is.

    Spec arguments pass through it: a ``step_size`` read from a numpy array is the int 3, so :meth:`to_spec`
    and the state stay JSON."""
    if isinstance(value, Mapping):
        return {k: python_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [python_scalars(v) for v in value]
    if isinstance(value, tuple):
        return tuple(python_scalars(v) for v in value)
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return value.item()
    return value


def _plain(value: Any) -> Any:
    """Recursively convert to JSON primitives: Tensors to floats, tuples to lists, inf/nan to strings."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, _Tensor):
        return _plain(float(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "__float__"):
        return _plain(float(value))
    raise TypeError(f"cannot store {type(value).__name__} in a plain-data state: {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same_kind(current: Any, value: Any) -> bool:
    """Whether a stored (plain) value has the shape of the attribute it would replace.

    Numbers stand for numbers, strings for strings, bools for bools, and a list of
    numbers for a list of numbers; anything else is left to the owning class.
    """
    if isinstance(current, bool) or isinstance(value, bool):
        return isinstance(current, bool) and isinstance(value, bool)
    if _is_number(current):
        return _is_number(value)
    if isinstance(current, str):
        return isinstance(value, str)
    if isinstance(current, (list, tuple)):
        if not isinstance(value, list):
            return False
        return not (current and all(map(_is_number, current))) or all(map(_is_number, value))
    return True


def decode_float(name: str, value: Any) -> float:
    """Inverse of :func:`_plain` for one float (accepts ``"inf"``, ``"-inf"``, ``"nan"``)."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise StateError(f"state[{name!r}] must be a number, got {value!r}")
    return float(value)


class LRScheduler(_TorchLRScheduler):
    """Base class: owns the stepping protocol; each policy only says how its LR is computed.

    Subclasses implement :meth:`get_lr` (torch's recursive form, reading the current
    ``group["lr"]``) and, where torch has one, :meth:`_get_closed_form_lr`. They list
    the attributes that make up their state in ``_state_fields``, and record their
    constructor arguments with :meth:`_record_spec` so :meth:`to_spec` can rebuild them.

    Attributes:
        optimizer: the wrapped optimizer.
        base_lrs: ``initial_lr`` of every param group (floats).
        last_epoch: number of completed ``step()`` calls; 0 right after construction.
    """

    _state_fields: ClassVar[tuple[str, ...]] = ()
    _base_fields: ClassVar[tuple[str, ...]] = ("last_epoch", "_step_count", "base_lrs", "_last_lr")
    #: The fields that the metrics a scheduler saw made (ReduceLROnPlateau's ``best``, its LRs): its spec and
    #: step count do not determine them, so a resume checks only the other fields against the spec.
    _history_fields: ClassVar[tuple[str, ...]] = ()
    #: The lowest ``last_epoch`` it can hold: -1, less one for each SequentialLR that took back its construction
    #: step (torch's ``recursive_undo``: a leaf nested in two SequentialLRs waits at -2).
    _min_last_epoch: int = -1

    optimizer: Any
    base_lrs: list[float]
    last_epoch: int
    _step_count: int
    _last_lr: list[float]
    _is_initial: bool = False
    _spec_args: dict[str, Any]

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:  # noqa: D107
        check_optimizer(optimizer)
        check_count("last_epoch", last_epoch, minimum=-1)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", copy_value(group["lr"]))
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming scheduler with "
                        f"last_epoch >= 0 (last_epoch={last_epoch}): load the optimizer state first, or use "
                        "last_epoch=-1"
                    )
        self.base_lrs = initial_lrs(optimizer)
        self.last_epoch = last_epoch
        self._initial_step()

    # ----------------------------------------------------------------- stepping

    def _initial_step(self) -> None:
        """The step performed by the constructor (torch semantics: ``last_epoch`` becomes 0)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self, epoch: int | None = None) -> None:  # type: ignore[override]
        """Advance one optimizer step (or jump to ``epoch`` using the closed form) and set the LRs.

        ``step(epoch)`` is deprecated in torch and warns as torch does (``EPOCH_DEPRECATION_WARNING``).
        """
        self._step_count += 1
        if epoch is None:  # the hot path, inlined from _update_lr
            self.last_epoch += 1
            self._apply_lrs(self.get_lr())
        else:
            warn_epoch_deprecated()
            self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            values = self._get_closed_form_lr()
        self._apply_lrs(values)

    def _apply_lrs(self, values: list[Any]) -> None:
        # Hot path: an index loop is cheaper than zip(), and isinstance(lr, Tensor) costs more
        # than the rest of the loop, so plain floats are recognised first. As in torch, a Tensor
        # LR is filled in place, and a float LR is replaced by whatever was computed (a Tensor
        # too, when an argument such as eta_min was one); the last LRs are copies of the groups'.
        groups = self.optimizer.param_groups
        i = 0
        typed = False
        for value in values:
            group = groups[i]
            lr = group["lr"]
            if lr.__class__ is not float and isinstance(lr, _Tensor):
                lr.fill_(value)
                typed = True
            else:
                group["lr"] = value
                if value.__class__ is not float:
                    typed = True
            i += 1
        self._last_lr = group_values(self.optimizer) if typed else values

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """The LRs for the current ``last_epoch`` (torch's recursive form)."""
        raise NotImplementedError

    def _get_closed_form_lr(self) -> list[float]:
        """The LRs for ``last_epoch`` from ``base_lrs`` alone; defaults to :meth:`get_lr`."""
        return self.get_lr()

    def get_last_lr(self) -> list[float]:  # type: ignore[override]
        """The LR of every param group as set by the last step (a Tensor copy for a Tensor LR)."""
        return self._last_lr

    def _restart(self) -> None:
        """Start over from step 0, as if constructed now on the optimizer's ``initial_lr``.

        Used when a composite (ChainedScheduler / SequentialLR) is entered at a
        SequentialLR milestone; see :class:`lrkit.SequentialLR`.
        """
        self.last_epoch = -1
        self._initial_step()

    # ------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state: JSON-serialisable, loadable with ``torch.load(weights_only=True)``.

        Besides the fields, ``"spec"`` holds :meth:`to_spec` (when it is data: a ``LambdaLR``'s functions are
        not), so :meth:`load_state_dict` can tell a state of another schedule."""
        state: dict[str, Any] = {"type": type(self).__name__}
        for name in self._base_fields + self._state_fields:
            state[name] = self._encode_field(name, getattr(self, name))
        spec = self.to_spec()
        if _is_data(spec):
            state["spec"] = spec
        return state

    def _encode_field(self, name: str, value: Any) -> Any:
        return _plain(value)

    def _decode_field(self, name: str, value: Any) -> Any:
        """Turn one stored field back into an attribute value; raise :class:`StateError` if malformed."""
        if name in ("base_lrs", "_last_lr"):
            if not isinstance(value, (list, tuple)) or len(value) != len(self.optimizer.param_groups):
                raise StateError(
                    f"state[{name!r}] must be a list with one float per param group "
                    f"({len(self.optimizer.param_groups)}), got {value!r}"
                )
            # Typed as now: a Tensor where this scheduler computes with one (a Tensor LR), else a float.
            current = getattr(self, name, None) or [None] * len(value)
            return [like(c, decode_float(name, v)) for c, v in zip(current, value)]
        if name in ("last_epoch", "_step_count"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise StateError(f"state[{name!r}] must be an int, got {value!r}")
            return value
        value = _plain(value)
        current = getattr(self, name, None)
        if isinstance(current, _Tensor):  # a Tensor argument (e.g. eta_min): keep its dtype
            return like(current, decode_float(name, value))
        if not _same_kind(current, value):
            raise StateError(
                f"state[{name!r}] must be a {type(current).__name__} like {_plain(current)!r}, got {value!r}"
            )
        return copy.deepcopy(value)

    def _parse_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``state`` completely and return the attribute updates; changes nothing."""
        if not isinstance(state, Mapping):
            raise StateError(f"state_dict must be a dict, got {type(state).__name__}")
        name = type(self).__name__
        kind = state.get("type", name)
        if kind != name:
            shown = kind if isinstance(kind, str) else f"{_short(kind)} (a 'type' that is no class name)"
            raise StateError(f"cannot load a {shown} state into a {name}")
        fields = self._base_fields + self._state_fields
        missing = [key for key in fields if key not in state]
        if missing:
            raise StateError(f"{name} state is missing keys {missing}")
        allowed = self._state_keys()
        unknown = sorted(
            key if isinstance(key, str) else _short(key)
            for key in state
            if key not in allowed and key not in self._torch_only_keys
        )
        if unknown:
            raise StateError(
                f"cannot load this state into {name}: it has keys {unknown} that no {name} state has (a state of "
                f"another class?); a {name} state holds the keys {sorted(allowed)}"
            )
        updates = {key: self._decode_field(key, state[key]) for key in fields}
        self._check_state(updates)
        return updates

    #: Keys of torch's state of the same class that lrkit ignores on load (:data:`TORCH_ONLY_KEYS`).
    _torch_only_keys: ClassVar[frozenset[str]] = TORCH_ONLY_KEYS

    def _state_keys(self) -> set[str]:
        """Every key a state of this class may hold: ``"type"``, ``"spec"`` and the fields."""
        return {"type", "spec", *self._base_fields, *self._state_fields}

    def _state_checks(self) -> dict[str, Callable[[Any], Any]]:
        """Each decoded field's check: the constructor's check of the argument the field comes from, and a
        bound on the counters. A subclass adds its own fields' checks to these."""
        return {
            "last_epoch": lambda v: check_count("last_epoch", v, minimum=self._min_last_epoch),
            "_step_count": lambda v: check_count("_step_count", v, minimum=0),
            "base_lrs": lambda v: check_each("base_lrs", v, low=0.0),
            "_last_lr": lambda v: check_each("_last_lr", v),
        }

    def _check_state(self, updates: Mapping[str, Any]) -> None:
        """Refuse decoded ``updates`` that the constructor would refuse (:class:`StateError` naming the key,
        the value and what was expected); a subclass extends it with checks across fields."""
        checks = self._state_checks()
        for key, value in updates.items():
            check = checks.get(key)
            if check is not None:
                state_value(key, value, check)

    def _apply_state(self, updates: dict[str, Any]) -> None:
        for name, value in updates.items():
            setattr(self, name, value)
        if hasattr(self, "_spec_args"):  # the spec now describes the loaded schedule, its arguments as stored
            # (a stored gamma=1.0 stays a float over the constructor's gamma=1: they fingerprint differently)
            live = self._live_spec_args()
            self._spec_args = {
                name: self._encode_field(name, updates[name]) if name in updates else value
                for name, value in live.items()
            }

    #: What :meth:`load_state_dict` does with a state saved by another schedule (its ``"spec"`` differs from
    #: this scheduler's :meth:`to_spec`): ``"checkpoint"`` loads it, the stored arguments winning, as torch's
    #: classes do (the drop-in classes keep that); ``"strict"`` refuses, listing the differences (lrkit's own
    #: schedules: a changed schedule is never ignored silently).
    resume_policy: ClassVar[str] = "checkpoint"

    def load_state_dict(self, state_dict: Mapping[str, Any], policy: str | None = None) -> None:  # type: ignore[override]
        """Restore a state from :meth:`state_dict` (also after a JSON round trip).

        Protocol: build optimizer and scheduler, ``optimizer.load_state_dict(...)``, then
        ``scheduler.load_state_dict(...)``; the next ``step()`` continues exactly. On any error nothing
        is changed.

        Args:
            state_dict: a :meth:`state_dict`.
            policy: for a state of another schedule (its ``"spec"`` differs from :meth:`to_spec`):
                ``"strict"`` raises :class:`StateError` listing what changed; ``"checkpoint"`` loads it, the
                stored arguments winning over the constructor's (torch's behaviour), and :meth:`to_spec` then
                describes the loaded schedule. Default: the class's :attr:`resume_policy`. The policies that put
                a new schedule in force at the resume step (``override``, ``extend``, ``cooldown:N``) need a
                schedule built there: resume through :class:`lrkit.TrainingSchedule` for those.
        """
        self._check_same_schedule(state_dict, self.resume_policy if policy is None else policy)
        self._apply_state(self._parse_state(state_dict))

    def _check_same_schedule(self, state: Any, policy: str) -> None:
        if policy not in ("strict", "checkpoint"):
            raise StateError(
                f"{type(self).__name__}.load_state_dict(policy={policy!r}): a scheduler loads its state under "
                "'strict' or 'checkpoint'; override, extend and cooldown:N put a new schedule in force at the resume "
                "step, which lrkit.TrainingSchedule(spec, optimizer, resume_policy=...) does"
            )
        saved = state.get("spec") if isinstance(state, Mapping) else None
        if policy == "checkpoint" or saved is None:  # a state from before specs were saved: nothing to compare
            return
        diff = spec_diff(saved, self.to_spec())
        if diff:
            listing = "\n".join(f"  {line}" for line in diff)
            raise StateError(
                f"the state was saved by another schedule than this {type(self).__name__}'s; it differs in:\n"
                f"{listing}\nload_state_dict(state, policy='checkpoint') keeps the saved schedule; "
                "lrkit.TrainingSchedule(spec, optimizer, resume_policy='extend' | 'override' | 'cooldown:N')"
                ".load_state_dict(state) puts this one in force from the saved step"
            )

    # -------------------------------------------------------------------- spec

    def _record_spec(self, **args: Any) -> None:
        self._spec_args = python_scalars(args)

    def _live_spec_args(self) -> dict[str, Any]:
        """The spec arguments as they are now: a recorded argument that is also a state field
        is read from the running attribute, so a loaded state is described, not the constructor."""
        fields = self._base_fields + self._state_fields
        args = {}
        for name, recorded in self._spec_args.items():
            live = self._encode_field(name, getattr(self, name)) if name in fields else recorded
            args[name] = recorded if _same_data(live, recorded) else live
        return args

    def to_spec(self) -> dict[str, Any]:
        """The plain-dict spec that :func:`lrkit.build_scheduler` turns back into the running schedule
        (also after :meth:`load_state_dict`: it is read from the state, not from the constructor)."""
        args = {name: _spec_value(value) for name, value in self._live_spec_args().items()}
        return {"type": type(self).__name__, **args}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_spec().items() if k != "type")
        return f"{type(self).__name__}({args})"


def _is_data(value: Any) -> bool:
    """JSON data only: dicts with str keys, lists, str, numbers, bools and None (no functions, no Tensors)."""
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_data(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_is_data(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _same_data(live: Any, recorded: Any) -> bool:
    """Whether a live value says the same as the recorded argument (``0`` and ``0.0`` do; so does a Tensor)."""
    try:
        return bool(_plain(recorded) == live)
    except (TypeError, ValueError):  # a function, or something else that is not data
        return False


def _spec_value(value: Any) -> Any:
    """A spec holds data: Tensors become floats; functions (a ``lr_lambda``) stay as they are."""
    if isinstance(value, _Tensor):
        return float(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, _Tensor) for v in value):
        return [float(v) if isinstance(v, _Tensor) else v for v in value]
    return copy.deepcopy(value)


def initial_lrs(optimizer: Any) -> list[Any]:
    """Every group's ``initial_lr``: a float, or a Tensor copy where the group holds a Tensor (as torch)."""
    return [
        copy_value(lr) if isinstance(lr := group["initial_lr"], _Tensor) else float(lr)
        for group in optimizer.param_groups
    ]


def check_same_optimizer(owner: str, optimizer: Any, schedulers: Sequence[Any]) -> None:
    """Every child must be an lrkit scheduler bound to ``optimizer``."""
    for i, scheduler in enumerate(schedulers):
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(
                f"{owner} schedulers[{i}] must be an lrkit scheduler, got {type(scheduler).__module__}."
                f"{type(scheduler).__name__}"
            )
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                f"{owner} expects all schedulers to belong to the same optimizer, but schedulers[{i}] "
                f"({type(scheduler).__name__}) is bound to a different one"
            )
