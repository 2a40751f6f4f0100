"""Every check ``load_state_dict`` applies to a decoded field of a torch-compatible scheduler, at its bound.

For each class and each field its ``_state_checks`` (and ``_check_state``) covers: a value just outside the bound
is refused with a :class:`StateError` naming the key, the value and the reason, the reason being the constructor's
own refusal of that value where the field is an argument; and the values just inside, made by a constructor that
torch 2.13 accepts too, load and then step exactly as torch's scheduler built with them.
(ReduceLROnPlateau's, OneCycleLR's and SWALR's checks are in test_torch_compat_edges.py.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

import lrkit
from lrkit import StateError
from tests.conftest import round_trip

pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")

BELOW_ZERO = math.nextafter(0.0, -1.0)
ABOVE_ONE = math.nextafter(1.0, 2.0)
BELOW_MINUS_ONE = math.nextafter(-1.0, -2.0)


def sgd(groups: int = 1) -> torch.optim.SGD:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5 / (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=0.5, momentum=0.9)


def hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Every group's entries but its parameters: the LRs and momenta a scheduler set there."""
    return [
        {k: float(v) if isinstance(v, torch.Tensor) else v for k, v in g.items() if k != "params"}
        for g in optimizer.param_groups
    ]


def scale(x: float) -> float:
    return 1.0 / (1.0 + x)


#: class name -> (torch's class, the arguments a scheduler of the table is built with unless a row says otherwise)
CLASSES: dict[str, tuple[Any, dict[str, Any]]] = {
    "StepLR": (torch_lr.StepLR, {"step_size": 3}),
    "MultiStepLR": (torch_lr.MultiStepLR, {"milestones": [2, 4]}),
    "ConstantLR": (torch_lr.ConstantLR, {}),
    "LinearLR": (torch_lr.LinearLR, {}),
    "ExponentialLR": (torch_lr.ExponentialLR, {"gamma": 0.9}),
    "PolynomialLR": (torch_lr.PolynomialLR, {}),
    "CosineAnnealingLR": (torch_lr.CosineAnnealingLR, {"T_max": 10}),
    "CyclicLR": (torch_lr.CyclicLR, {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4}),
    "CosineAnnealingWarmRestarts": (torch_lr.CosineAnnealingWarmRestarts, {"T_0": 3, "T_mult": 2}),
}


def build(name: str, optimizer: Any, module: Any = lrkit, **kwargs: Any) -> Any:
    torch_cls, defaults = CLASSES[name]
    cls = getattr(lrkit, name) if module is lrkit else torch_cls
    return cls(optimizer, **{**defaults, **kwargs})


def refused(
    name: str, kwargs: dict[str, Any], renamed: tuple[str, str] = ("", ""), groups: int = 1
) -> Callable[[], str]:
    """The constructor's refusal of ``kwargs``, with ``renamed[0]`` read as ``renamed[1]`` (the state's key)."""

    def reason() -> str:
        with pytest.raises((TypeError, ValueError)) as error:
            build(name, sgd(groups), **kwargs)
        old, new = renamed
        return str(error.value).replace(old, new) if old else str(error.value)

    return reason


def said(text: str) -> Callable[[], str]:
    return lambda: text


# (class, state key, stored value, the reason it is refused, arguments of the scheduler it is loaded into, groups)
REFUSALS: list[tuple[str, str, Any, Callable[[], str], dict[str, Any], int]] = [
    ("StepLR", "step_size", 0, refused("StepLR", {"step_size": 0}), {}, 1),
    ("StepLR", "gamma", 0.0, refused("StepLR", {"gamma": 0.0}), {}, 1),
    ("MultiStepLR", "gamma", 0.0, refused("MultiStepLR", {"gamma": 0.0}), {}, 1),
    ("ExponentialLR", "gamma", 0.0, refused("ExponentialLR", {"gamma": 0.0}), {}, 1),
    ("ConstantLR", "factor", 0.0, refused("ConstantLR", {"factor": 0.0}), {}, 1),
    ("ConstantLR", "factor", ABOVE_ONE, refused("ConstantLR", {"factor": ABOVE_ONE}), {}, 1),
    ("ConstantLR", "total_iters", 0, refused("ConstantLR", {"total_iters": 0}), {}, 1),
    ("LinearLR", "start_factor", 0.0, refused("LinearLR", {"start_factor": 0.0}), {}, 1),
    ("LinearLR", "start_factor", ABOVE_ONE, refused("LinearLR", {"start_factor": ABOVE_ONE}), {}, 1),
    ("LinearLR", "end_factor", BELOW_ZERO, refused("LinearLR", {"end_factor": BELOW_ZERO}), {}, 1),
    ("LinearLR", "end_factor", ABOVE_ONE, refused("LinearLR", {"end_factor": ABOVE_ONE}), {}, 1),
    ("LinearLR", "total_iters", 0, refused("LinearLR", {"total_iters": 0}), {}, 1),
    ("PolynomialLR", "total_iters", 0, refused("PolynomialLR", {"total_iters": 0}), {}, 1),
    ("PolynomialLR", "power", BELOW_ZERO, refused("PolynomialLR", {"power": BELOW_ZERO}), {}, 1),
    ("CosineAnnealingLR", "T_max", 0, refused("CosineAnnealingLR", {"T_max": 0}), {}, 1),
    ("CosineAnnealingLR", "eta_min", BELOW_ZERO, refused("CosineAnnealingLR", {"eta_min": BELOW_ZERO}), {}, 1),
    # CyclicLR, with two groups: the per-group lists must hold two values
    (
        "CyclicLR",
        "max_lrs",
        [BELOW_ZERO, 0.1],
        refused("CyclicLR", {"max_lr": [BELOW_ZERO, 0.1]}, ("max_lr[", "max_lrs["), groups=2),
        {},
        2,
    ),
    ("CyclicLR", "max_lrs", [0.1], said("max_lrs must hold one value per param group (2), got 1"), {}, 2),
    ("CyclicLR", "total_size", 0.0, said("total_size must be in (0.0, inf), got total_size=0.0"), {}, 2),
    ("CyclicLR", "step_ratio", 0.0, said("step_ratio must be in (0.0, 1.0], got step_ratio=0.0"), {}, 2),
    (
        "CyclicLR",
        "step_ratio",
        ABOVE_ONE,
        said(f"step_ratio must be in (0.0, 1.0], got step_ratio={ABOVE_ONE!r}"),
        {},
        2,
    ),
    ("CyclicLR", "mode", "sine", refused("CyclicLR", {"mode": "sine"}, groups=2), {}, 2),
    ("CyclicLR", "gamma", 0.0, refused("CyclicLR", {"gamma": 0.0}, groups=2), {}, 2),
    (
        "CyclicLR",
        "scale_mode",
        "epoch",
        refused("CyclicLR", {"scale_fn": scale, "scale_mode": "epoch"}, groups=2),
        {"scale_fn": scale},
        2,
    ),
    (
        "CyclicLR",
        "base_momentums",
        [0.8, BELOW_ZERO],
        refused("CyclicLR", {"base_momentum": [0.8, BELOW_ZERO]}, ("base_momentum[", "base_momentums["), groups=2),
        {},
        2,
    ),
    (
        "CyclicLR",
        "max_momentums",
        [BELOW_ZERO, 0.9],
        refused("CyclicLR", {"max_momentum": [BELOW_ZERO, 0.9]}, ("max_momentum[", "max_momentums["), groups=2),
        {},
        2,
    ),
    (
        "CyclicLR",
        "base_momentums",
        [0.8],
        said("with cycle_momentum it must hold one momentum per param group (2)"),
        {},
        2,
    ),
    (
        "CyclicLR",
        "max_momentums",
        [0.9, 0.9, 0.9],
        said("with cycle_momentum it must hold one momentum per param group (2)"),
        {},
        2,
    ),
    # CosineAnnealingWarmRestarts: the counts also have an upper bound, 2**53
    ("CosineAnnealingWarmRestarts", "T_0", 0, refused("CosineAnnealingWarmRestarts", {"T_0": 0}), {}, 1),
    (
        "CosineAnnealingWarmRestarts",
        "T_i",
        0,
        refused("CosineAnnealingWarmRestarts", {"T_0": 0}, ("T_0", "T_i")),
        {},
        1,
    ),
    ("CosineAnnealingWarmRestarts", "T_mult", 0, refused("CosineAnnealingWarmRestarts", {"T_mult": 0}), {}, 1),
    (
        "CosineAnnealingWarmRestarts",
        "T_0",
        2**53 + 1,
        said(f"T_0 must be an int in [1, 2**53], got T_0={2**53 + 1}"),
        {},
        1,
    ),
    (
        "CosineAnnealingWarmRestarts",
        "eta_min",
        BELOW_ZERO,
        refused("CosineAnnealingWarmRestarts", {"eta_min": BELOW_ZERO}),
        {},
        1,
    ),
    (
        "CosineAnnealingWarmRestarts",
        "T_cur",
        BELOW_MINUS_ONE,
        said(f"T_cur must be in [-1.0, inf), got T_cur={BELOW_MINUS_ONE!r}"),
        {},
        1,
    ),
]


def refusal_id(row: tuple[Any, ...]) -> str:
    name, key, value = row[:3]
    return f"{name}-{key}-{value!r}"


@pytest.mark.parametrize(
    ("name", "key", "value", "reason", "kwargs", "groups"), REFUSALS, ids=map(refusal_id, REFUSALS)
)
def test_a_state_field_just_outside_its_bound_is_refused_naming_it(
    name: str, key: str, value: Any, reason: Callable[[], str], kwargs: dict[str, Any], groups: int
) -> None:
    scheduler = build(name, sgd(groups), **kwargs)
    before = round_trip(scheduler)
    assert key in before
    expected = f"state[{key!r}]={value!r} is refused: {reason()}"
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**before, key: value})
    assert round_trip(scheduler) == before


# (class, the arguments: each makes a state with a field at (or next to) its bound, groups)
INSIDE: list[tuple[str, dict[str, Any], int]] = [
    ("StepLR", {"step_size": 1}, 1),
    ("StepLR", {"gamma": 1e-3}, 1),
    ("MultiStepLR", {"gamma": 1e-3}, 1),
    ("ExponentialLR", {"gamma": 1e-3}, 1),
    ("ConstantLR", {"factor": 1.0}, 1),
    ("ConstantLR", {"factor": 1e-3}, 1),
    ("ConstantLR", {"total_iters": 1}, 1),
    ("ConstantLR", {"factor": torch.tensor(0.5)}, 1),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.0}, 1),
    ("LinearLR", {"start_factor": 1e-3, "end_factor": 1.0}, 1),
    ("LinearLR", {"total_iters": 1}, 1),
    ("LinearLR", {"start_factor": torch.tensor(0.25), "end_factor": torch.tensor(0.75)}, 1),
    ("PolynomialLR", {"total_iters": 1}, 1),
    ("PolynomialLR", {"power": 0.0}, 1),
    ("PolynomialLR", {"power": torch.tensor(2.0)}, 1),
    ("CosineAnnealingLR", {"T_max": 1}, 1),
    ("CosineAnnealingLR", {"eta_min": 0.0}, 1),
    ("CosineAnnealingLR", {"eta_min": torch.tensor(0.01)}, 1),
    ("CyclicLR", {"step_size_up": 0.5}, 2),  # total_size 1.0
    ("CyclicLR", {"step_size_up": 1e20, "step_size_down": 1}, 2),  # step_ratio 1.0 (1e20 / (1e20 + 1))
    ("CyclicLR", {"step_size_up": 1, "step_size_down": 1e20}, 2),  # step_ratio 1e-20
    ("CyclicLR", {"mode": "triangular2"}, 2),
    ("CyclicLR", {"mode": "exp_range", "gamma": 1e-3}, 2),  # scale_mode "iterations"
    ("CyclicLR", {"base_lr": 0.0, "max_lr": [0.0, 0.1]}, 2),
    ("CyclicLR", {"base_momentum": [0.0, 0.8], "max_momentum": [0.9, 0.0]}, 2),
    ("CyclicLR", {"cycle_momentum": False}, 2),  # no momenta
    ("CyclicLR", {"scale_fn": scale, "mode": "any name", "scale_mode": "iterations"}, 2),
    ("CosineAnnealingWarmRestarts", {"T_0": 1, "T_mult": 1, "eta_min": 0.0}, 1),
]


def inside_id(row: tuple[Any, ...]) -> str:
    """The same on every xdist worker: a Tensor by its value, a function by its name (its repr holds an address)."""
    name, kwargs, _ = row

    def shown(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return repr(float(v))
        return v.__name__ if callable(v) else repr(v)

    return f"{name}-" + ",".join(f"{k}={shown(v)}" for k, v in kwargs.items())


def fields(scheduler: Any) -> dict[str, Any]:
    """The stored fields, without the spec (which says the arguments back as the loaded fields give them)."""
    return {k: v for k, v in round_trip(scheduler).items() if k != "spec"}


@pytest.mark.parametrize(("name", "kwargs", "groups"), INSIDE, ids=map(inside_id, INSIDE))
def test_a_state_at_the_bound_of_its_fields_loads_and_steps_as_torch(
    name: str, kwargs: dict[str, Any], groups: int
) -> None:
    theirs_opt, source_opt, ours_opt = sgd(groups), sgd(groups), sgd(groups)
    theirs = build(name, theirs_opt, torch, **kwargs)
    source = build(name, source_opt, **kwargs)
    # loaded into a scheduler of other arguments (a Tensor argument where the source has one: kept a Tensor)
    target = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor) or k == "scale_fn"}
    ours = build(name, ours_opt, **target)
    ours_opt.load_state_dict(source_opt.state_dict())
    ours.load_state_dict(round_trip(source))
    assert fields(ours) == fields(source)
    for _ in range(4):
        theirs.step()
        ours.step()
        assert hyperparameters(ours_opt) == hyperparameters(theirs_opt)


def test_a_warm_restarts_state_before_its_first_step_loads() -> None:
    """``T_cur`` is ``last_epoch`` before the first step: -1 is the lowest value it takes."""
    scheduler = build("CosineAnnealingWarmRestarts", sgd())
    state = {**round_trip(scheduler), "T_cur": -1.0, "last_epoch": -1, "_step_count": 0}
    scheduler.load_state_dict(state)
    assert scheduler.T_cur == -1.0


# --------------------------------------------------------------------------- checks across fields


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"T_i": 2}, "state['T_i']=2 is refused: the period never falls below T_0=3"),
        ({"T_cur": 6.5}, "state['T_cur']=6.5 is refused: the position in the period must be <= T_i=6"),
        ({"T_i": 12, "T_cur": 12.5}, "state['T_cur']=12.5 is refused: the position in the period must be <= T_i=12"),
    ],
    ids=["T_i-below-T_0", "T_cur-past-T_i", "T_cur-past-a-later-T_i"],
)
def test_warm_restarts_refuses_a_period_or_position_no_step_makes(changes: dict[str, Any], expected: str) -> None:
    scheduler = build("CosineAnnealingWarmRestarts", sgd())
    for _ in range(4):  # into the second period: T_i = 6
        scheduler.step()
    before = round_trip(scheduler)
    assert (before["T_0"], before["T_i"]) == (3, 6)
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**before, **changes})
    assert round_trip(scheduler) == before


@pytest.mark.parametrize("position", [6, 6.0])
def test_warm_restarts_loads_a_position_at_the_end_of_its_period_and_steps_as_torch(position: float) -> None:
    theirs_opt, ours_opt = sgd(), sgd()
    theirs = build("CosineAnnealingWarmRestarts", theirs_opt, torch)
    ours = build("CosineAnnealingWarmRestarts", ours_opt)
    for _ in range(4):
        theirs.step()
        ours.step()
    assert ours.T_i == theirs.T_i == 6
    theirs.load_state_dict({**theirs.state_dict(), "T_cur": position})
    ours.load_state_dict({**round_trip(ours), "T_cur": position})
    assert ours.T_cur == position
    for _ in range(3):
        theirs.step()
        ours.step()
        assert hyperparameters(ours_opt) == hyperparameters(theirs_opt)
        assert (ours.T_cur, ours.T_i) == (theirs.T_cur, theirs.T_i)
