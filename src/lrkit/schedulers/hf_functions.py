"""transformers' ``get_*_schedule*`` functions on lrkit: same names, signatures and LRs.

``from lrkit import get_cosine_schedule_with_warmup`` replaces
``from transformers import get_cosine_schedule_with_warmup``. Each function builds the
:class:`~lrkit.schedulers.hf.HFSchedule` that ``get_scheduler(name, ...)`` builds for its name
(transformers' ``TYPE_TO_SCHEDULER_FUNCTION``), so the LRs, the quirks and the checks are those
of :mod:`lrkit.schedulers.hf`, and the result has plain-data state and a spec.
"""

from __future__ import annotations

from typing import Any

from lrkit.schedulers.greedy import get_greedy_schedule
from lrkit.schedulers.hf import HFSchedule
from lrkit.schedulers.torch_compat import ReduceLROnPlateau

__all__ = [
    "get_constant_schedule",
    "get_constant_schedule_with_warmup",
    "get_linear_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_cosine_with_hard_restarts_schedule_with_warmup",
    "get_polynomial_decay_schedule_with_warmup",
    "get_inverse_sqrt_schedule",
    "get_cosine_with_min_lr_schedule_with_warmup",
    "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
    "get_wsd_schedule",
    "get_reduce_on_plateau_schedule",
    "get_greedy_schedule",
]


def _given(**kwargs: Any) -> dict[str, Any]:
    """The optional arguments that were given (transformers treats ``None`` as "not given")."""
    return {k: v for k, v in kwargs.items() if v is not None}


def get_constant_schedule(optimizer: Any, last_epoch: int = -1) -> HFSchedule:
    """``lr = base_lr`` (transformers' ``constant``)."""
    return HFSchedule(optimizer, "constant", last_epoch=last_epoch)


def get_constant_schedule_with_warmup(optimizer: Any, num_warmup_steps: int, last_epoch: int = -1) -> HFSchedule:
    """``base_lr * t / W`` for ``t < W``, then ``base_lr`` (``constant_with_warmup``)."""
    return HFSchedule(optimizer, "constant_with_warmup", num_warmup_steps, last_epoch=last_epoch)


def get_linear_schedule_with_warmup(
    optimizer: Any, num_warmup_steps: int, num_training_steps: int, last_epoch: int = -1
) -> HFSchedule:
    """Linear warmup from 0 to ``base_lr`` over ``W`` steps, then linear decay to 0 at ``T`` (``linear``)."""
    return HFSchedule(optimizer, "linear", num_warmup_steps, num_training_steps, last_epoch=last_epoch)


def get_cosine_schedule_with_warmup(
    optimizer: Any, num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5, last_epoch: int = -1
) -> HFSchedule:
    """Linear warmup, then ``base_lr * (1 + cos(2 pi num_cycles p)) / 2`` with ``p = (t - W) / (T - W)``."""
    kwargs = {"num_cycles": num_cycles}
    return HFSchedule(optimizer, "cosine", num_warmup_steps, num_training_steps, kwargs, last_epoch)


def get_cosine_with_hard_restarts_schedule_with_warmup(
    optimizer: Any, num_warmup_steps: int, num_training_steps: int, num_cycles: int = 1, last_epoch: int = -1
) -> HFSchedule:
    """Linear warmup, then ``num_cycles`` cosine decays to 0, each restarting at ``base_lr``."""
    kwargs = {"num_cycles": num_cycles}
    return HFSchedule(optimizer, "cosine_with_restarts", num_warmup_steps, num_training_steps, kwargs, last_epoch)


def get_polynomial_decay_schedule_with_warmup(
    optimizer: Any,
    num_warmup_steps: int,
    num_training_steps: int,
    lr_end: float = 1e-7,
    power: float = 1.0,
    last_epoch: int = -1,
) -> HFSchedule:
    """Linear warmup, then ``(lr_init - lr_end) * (1 - p) ** power + lr_end`` (absolute ``lr_end``;
    ``lr_init`` is ``optimizer.defaults["lr"]``), as a factor of each group's base LR."""
    kwargs = {"lr_end": lr_end, "power": power}
    return HFSchedule(optimizer, "polynomial", num_warmup_steps, num_training_steps, kwargs, last_epoch)


def get_inverse_sqrt_schedule(
    optimizer: Any, num_warmup_steps: int, timescale: int | None = None, last_epoch: int = -1
) -> HFSchedule:
    """Linear warmup, then ``base_lr / sqrt((t + shift) / timescale)`` (``timescale`` defaults to
    ``W``, or 10,000 without warmup)."""
    return HFSchedule(optimizer, "inverse_sqrt", num_warmup_steps, None, _given(timescale=timescale), last_epoch)


def get_cosine_with_min_lr_schedule_with_warmup(
    optimizer: Any,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
) -> HFSchedule:
    """``cosine`` decaying to a floor: ``min_lr`` (absolute) or ``min_lr_rate`` (a fraction of the peak)."""
    kwargs = {"num_cycles": num_cycles, **_given(min_lr=min_lr, min_lr_rate=min_lr_rate)}
    return HFSchedule(optimizer, "cosine_with_min_lr", num_warmup_steps, num_training_steps, kwargs, last_epoch)


def get_cosine_with_min_lr_schedule_with_warmup_lr_rate(
    optimizer: Any,
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
    warmup_lr_rate: float | None = None,
) -> HFSchedule:
    """``cosine_warmup_with_min_lr``: the warmup starts at ``warmup_lr_rate`` and peaks at ``W - 1``."""
    kwargs = {"num_cycles": num_cycles, **_given(min_lr=min_lr, min_lr_rate=min_lr_rate, warmup_lr_rate=warmup_lr_rate)}
    return HFSchedule(optimizer, "cosine_warmup_with_min_lr", num_warmup_steps, num_training_steps, kwargs, last_epoch)


def get_wsd_schedule(
    optimizer: Any,
    num_warmup_steps: int,
    num_decay_steps: int,
    num_training_steps: int | None = None,
    num_stable_steps: int | None = None,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0,
    num_cycles: float = 0.5,
    last_epoch: int = -1,
) -> HFSchedule:
    """Warmup, stable at ``base_lr``, then decay to ``min_lr_ratio * base_lr`` over ``num_decay_steps``."""
    kwargs = {
        "num_decay_steps": num_decay_steps,
        "warmup_type": warmup_type,
        "decay_type": decay_type,
        "min_lr_ratio": min_lr_ratio,
        "num_cycles": num_cycles,
        **_given(num_stable_steps=num_stable_steps),
    }
    return HFSchedule(optimizer, "warmup_stable_decay", num_warmup_steps, num_training_steps, kwargs, last_epoch)


def get_reduce_on_plateau_schedule(optimizer: Any, **kwargs: Any) -> ReduceLROnPlateau:
    """:class:`lrkit.ReduceLROnPlateau` with ``kwargs`` (``reduce_lr_on_plateau``)."""
    return ReduceLROnPlateau(optimizer, **kwargs)
