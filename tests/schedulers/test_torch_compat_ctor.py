"""The torch classes' constructors: their defaults, the arguments they refuse (each error names the argument),
a ``last_epoch`` to resume from, and the spec they record (what the user passed, types included) and its round
trip. torch.optim.lr_scheduler's own classes are the oracle for the defaults, the LRs and which arguments torch
refuses too.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as torch_lr
from torch.optim import swa_utils

import lrkit
from lrkit import StateError
from lrkit.spec.registry import build_scheduler
from tests.conftest import hyperparameters, lrs
from tests.conftest import sgd as shared_sgd


def sgd(*lrs: float, momentum: float = 0.9) -> torch.optim.SGD:
    """These tests' optimizer has momentum, so the momentum-cycling classes have something to cycle."""
    return shared_sgd(*lrs, momentum=momentum)


def torch_class(name: str) -> Any:
    return swa_utils.SWALR if name == "SWALR" else getattr(torch_lr, name)


def trace(scheduler: Any, optimizer: torch.optim.Optimizer, steps: int) -> list[list[dict[str, Any]]]:
    """The groups' hyperparameters after construction and after each of ``steps`` steps."""
    out = [hyperparameters(optimizer)]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append(hyperparameters(optimizer))
    return out


def as_json(spec: dict[str, Any]) -> str:
    """A spec as text: ``2`` and ``2.0`` differ here (they fingerprint differently), where ``==`` calls them equal."""
    return json.dumps(spec, sort_keys=True)


# --------------------------------------------------------------------------- defaults: torch's


DEFAULTS: list[tuple[str, dict[str, Any], int]] = [
    ("StepLR", {"step_size": 1}, 3),
    ("MultiStepLR", {"milestones": [1, 2]}, 3),
    ("ConstantLR", {}, 7),
    ("LinearLR", {}, 7),
    ("PolynomialLR", {}, 7),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0}, 2),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0, "step_size_up": 2, "mode": "exp_range"}, 5),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0, "step_size_up": 2, "scale_fn": lambda x: 0.5**x}, 9),
    ("SWALR", {"swa_lr": 0.05}, 12),
    ("CosineAnnealingWarmRestarts", {"T_0": 2}, 7),
]


@pytest.mark.parametrize(("name", "kwargs", "steps"), DEFAULTS, ids=[f"{c[0]}-{i}" for i, c in enumerate(DEFAULTS)])
def test_the_defaults_are_torchs(name: str, kwargs: dict[str, Any], steps: int) -> None:
    ours_opt, theirs_opt = sgd(), sgd()
    ours = getattr(lrkit, name)(ours_opt, **kwargs)
    theirs = torch_class(name)(theirs_opt, **kwargs)
    assert trace(ours, ours_opt, steps) == trace(theirs, theirs_opt, steps)


# --------------------------------------------------------------------------- the recorded spec


SPECS: list[tuple[str, dict[str, Any], int]] = [
    ("StepLR", {"step_size": 2, "gamma": 2}, 5),
    ("MultiStepLR", {"milestones": [3, 1, 3], "gamma": 2}, 5),
    ("ConstantLR", {"factor": 1, "total_iters": 2}, 4),
    ("LinearLR", {"start_factor": 1, "end_factor": 0, "total_iters": 2}, 4),
    ("ExponentialLR", {"gamma": 2}, 3),
    ("PolynomialLR", {"total_iters": 3, "power": 2}, 5),
    ("SWALR", {"swa_lr": 0.05, "anneal_epochs": 3, "anneal_strategy": "linear"}, 5),
    (
        "CyclicLR",
        {
            "base_lr": [0.01, 0.01],
            "max_lr": [1, 1],
            "step_size_up": 2,
            "base_momentum": [0.8, 0.8],
            "max_momentum": [0.9, 0.9],
        },
        6,
    ),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 1.0, "step_size_up": 0.1, "step_size_down": 0.2}, 4),
    ("CosineAnnealingLR", {"T_max": np.int64(4), "eta_min": 0}, 6),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0}, 8),
    ("CosineAnnealingWarmRestarts", {"T_0": np.int64(3), "T_mult": np.int64(2), "eta_min": np.int64(0)}, 8),
    (
        "CyclicLR",
        {
            "base_lr": 0.01,
            "max_lr": 1.0,
            "step_size_up": 2,
            "mode": "exp_range",
            "gamma": 2,
            "scale_mode": "iterations",
            "cycle_momentum": 1,
        },
        4,
    ),
    ("CyclicLR", {"base_lr": 0.01, "max_lr": 1.0, "step_size_up": 0.7, "step_size_down": 0.1}, 4),
]


def python(kwargs: dict[str, Any]) -> dict[str, Any]:
    """numpy's scalars as the Python numbers they stand for (torch refuses an ``np.int64`` T_0)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in kwargs.items()}


def expected_spec(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """What the user passed, with torch's defaults for the rest (not the optimizer, last_epoch, nor a scale_fn
    of None); milestones, a multiset, sorted."""
    skip = {"optimizer", "last_epoch", "scale_fn"}
    params = inspect.signature(torch_class(name)).parameters.values()
    spec = {p.name: p.default for p in params if p.name not in skip and p.default is not inspect.Parameter.empty}
    spec.update(python(kwargs))
    if "milestones" in spec:
        spec["milestones"] = sorted(spec["milestones"])
    return {"type": name, **spec}


@pytest.mark.parametrize(("name", "kwargs", "steps"), SPECS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SPECS)])
def test_the_spec_is_what_was_passed_and_rebuilds_the_schedule(name: str, kwargs: dict[str, Any], steps: int) -> None:
    groups = len(kwargs["base_lr"]) if isinstance(kwargs.get("base_lr"), list) else 1
    ours_opt, theirs_opt, rebuilt_opt = sgd(*[0.5] * groups), sgd(*[0.5] * groups), sgd(*[0.5] * groups)
    ours = getattr(lrkit, name)(ours_opt, **kwargs)
    spec = ours.to_spec()
    assert as_json(spec) == as_json(expected_spec(name, kwargs))
    rebuilt = build_scheduler(spec, rebuilt_opt)
    assert as_json(rebuilt.to_spec()) == as_json(spec)
    theirs = torch_class(name)(theirs_opt, **python(kwargs))
    ours_trace = trace(ours, ours_opt, steps)
    assert ours_trace == trace(theirs, theirs_opt, steps)
    assert trace(rebuilt, rebuilt_opt, steps) == ours_trace


def test_swalr_spec_reads_swa_lr_from_the_groups_one_value_where_they_agree() -> None:
    assert lrkit.SWALR(sgd(0.5, 0.5), swa_lr=[0.05, 0.05]).to_spec()["swa_lr"] == 0.05
    assert lrkit.SWALR(sgd(0.5, 0.5), swa_lr=[0.05, 0.1]).to_spec()["swa_lr"] == [0.05, 0.1]


# --------------------------------------------------------------------------- a CyclicLR's loaded step sizes

#: (step_size_up, step_size_down) of a saved CyclicLR: its spec after loading into another gives them back.
LOADED = [(3, 5), (2.5, 3.5), (1e-9, None), (1e-9, 1.0)]


@pytest.mark.parametrize(("up", "down"), LOADED)
def test_cyclic_spec_after_a_load_gives_the_saved_step_sizes_and_rebuilds_it(up: float, down: float | None) -> None:
    saved_opt, ours_opt, rebuilt_opt = sgd(), sgd(), sgd()
    saved = lrkit.CyclicLR(saved_opt, 0.01, 1.0, step_size_up=up, step_size_down=down)
    ours = lrkit.CyclicLR(ours_opt, 0.01, 1.0, step_size_up=2)
    ours.load_state_dict(json.loads(json.dumps(saved.state_dict())))
    spec = ours.to_spec()
    assert spec == saved.to_spec()
    rebuilt = build_scheduler(spec, rebuilt_opt)
    assert (rebuilt.total_size, rebuilt.step_ratio) == (saved.total_size, saved.step_ratio)
    assert trace(rebuilt, rebuilt_opt, 4) == trace(saved, saved_opt, 4)


def test_cyclic_spec_after_a_load_keeps_whole_step_sizes_ints() -> None:
    ours = lrkit.CyclicLR(sgd(), 0.01, 1.0, step_size_up=2)
    ours.load_state_dict(lrkit.CyclicLR(sgd(), 0.01, 1.0, step_size_up=3, step_size_down=5).state_dict())
    spec = ours.to_spec()
    assert (spec["step_size_up"], spec["step_size_down"]) == (3, 5)
    assert (type(spec["step_size_up"]), type(spec["step_size_down"])) == (int, int)


# --------------------------------------------------------------------------- last_epoch: resuming as torch


def halve(epoch: int) -> float:
    return 0.5 if epoch % 2 else 0.9


RESUMED: list[tuple[str, dict[str, Any]]] = [
    ("LambdaLR", {"lr_lambda": halve}),
    ("MultiplicativeLR", {"lr_lambda": halve}),
    ("MultiStepLR", {"milestones": [1, 3], "gamma": 0.5}),
    ("ConstantLR", {"factor": 0.5, "total_iters": 4}),
    ("LinearLR", {"start_factor": 0.5, "total_iters": 4}),
    ("ExponentialLR", {"gamma": 0.5}),
    ("PolynomialLR", {"total_iters": 6, "power": 2.0}),
    ("SWALR", {"swa_lr": 0.05, "anneal_epochs": 5}),
    ("CyclicLR", {"base_lr": 0.1, "max_lr": 1.0, "step_size_up": 3}),
    ("CosineAnnealingLR", {"T_max": 4, "eta_min": 0.1}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2, "eta_min": 0.1}),
]


@pytest.mark.parametrize(("name", "kwargs"), RESUMED, ids=[c[0] for c in RESUMED])
def test_a_scheduler_built_with_a_last_epoch_continues_from_it_as_torch(name: str, kwargs: dict[str, Any]) -> None:
    ours_opt, theirs_opt = sgd(0.3, 0.2), sgd(0.3, 0.2)
    for opt in (ours_opt, theirs_opt):
        for group in opt.param_groups:
            group["initial_lr"] = 1.0
    ours = getattr(lrkit, name)(ours_opt, last_epoch=2, **kwargs)
    theirs = torch_class(name)(theirs_opt, last_epoch=2, **kwargs)
    assert ours.last_epoch == theirs.last_epoch == 3
    assert trace(ours, ours_opt, 4) == trace(theirs, theirs_opt, 4)
    assert (ours.last_epoch, ours._step_count) == (theirs.last_epoch, theirs._step_count)


def test_warm_restarts_counts_its_steps_as_torch() -> None:
    ours_opt, theirs_opt = sgd(), sgd()
    ours = lrkit.CosineAnnealingWarmRestarts(ours_opt, T_0=2, T_mult=2)
    theirs = torch_lr.CosineAnnealingWarmRestarts(theirs_opt, T_0=2, T_mult=2)
    for _ in range(5):
        assert (ours.last_epoch, ours._step_count, ours.T_cur, ours.T_i) == (
            theirs.last_epoch,
            theirs._step_count,
            theirs.T_cur,
            theirs.T_i,
        )
        assert lrs(ours_opt) == lrs(theirs_opt)
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("key", ["T_cur", "eta_min"])
def test_warm_restarts_refuses_a_stored_bool_for_a_number_naming_the_key(key: str) -> None:
    state = lrkit.CosineAnnealingWarmRestarts(sgd(), T_0=3).state_dict()
    scheduler = lrkit.CosineAnnealingWarmRestarts(sgd(), T_0=3)
    with pytest.raises(StateError, match=rf"^state\['{key}'\] must be a number, got True$"):
        scheduler.load_state_dict({**state, key: True})


# --------------------------------------------------------------------------- refusals, naming the argument


@pytest.mark.parametrize("name", ["MultiStepLR", "ExponentialLR", "CyclicLR"])
@pytest.mark.parametrize("gamma", [0, 0.0, -0.5])
def test_a_gamma_not_above_zero_is_refused_naming_it(name: str, gamma: float) -> None:
    args = {"MultiStepLR": ([2],), "ExponentialLR": (), "CyclicLR": (0.1, 1.0)}[name]
    with pytest.raises(ValueError, match=rf"^gamma must be in \(0\.0, inf\), got gamma={float(gamma)!r}$"):
        getattr(lrkit, name)(sgd(), *args, gamma=gamma)


#: The arguments before gamma of the classes whose state checks gamma (the constructor's check).
GAMMA_ARGS: dict[str, tuple[Any, ...]] = {
    "StepLR": (2,),
    "MultiStepLR": ([2],),
    "ExponentialLR": (),
    "CyclicLR": (0.1, 1.0),
}


@pytest.mark.parametrize("name", list(GAMMA_ARGS))
def test_a_stored_gamma_not_above_zero_is_refused_naming_it(name: str) -> None:
    build = getattr(lrkit, name)
    state = build(sgd(), *GAMMA_ARGS[name], gamma=0.5).state_dict()
    scheduler = build(sgd(), *GAMMA_ARGS[name], gamma=0.5)
    for gamma in (0.0, -0.5):
        message = rf"^state\['gamma'\]={gamma!r} is refused: gamma must be in \(0\.0, inf\), got gamma={gamma!r}$"
        with pytest.raises(StateError, match=message):
            scheduler.load_state_dict({**state, "gamma": gamma})
    scheduler.load_state_dict({**state, "gamma": 1e-300})
    assert scheduler.gamma == 1e-300


@pytest.mark.parametrize("name", list(GAMMA_ARGS))
def test_a_tensor_gammas_state_loads_back_as_torchs(name: str) -> None:
    saved_opt, ours_opt, theirs_opt = sgd(), sgd(), sgd()
    saved = getattr(lrkit, name)(saved_opt, *GAMMA_ARGS[name], gamma=torch.tensor(0.5))
    ours = getattr(lrkit, name)(ours_opt, *GAMMA_ARGS[name], gamma=torch.tensor(0.8))
    theirs = getattr(torch_lr, name)(theirs_opt, *GAMMA_ARGS[name], gamma=torch.tensor(0.5))
    for scheduler, opt in ((saved, saved_opt), (theirs, theirs_opt)):
        trace(scheduler, opt, 2)
    ours.load_state_dict(json.loads(json.dumps(saved.state_dict())))
    ours_opt.load_state_dict(saved_opt.state_dict())
    assert isinstance(ours.gamma, torch.Tensor) and float(ours.gamma) == 0.5
    assert trace(ours, ours_opt, 3) == trace(theirs, theirs_opt, 3)


def test_a_gamma_just_above_zero_is_accepted_as_torch() -> None:
    ours_opt, theirs_opt = sgd(), sgd()
    ours = lrkit.MultiStepLR(ours_opt, [1], gamma=1e-300)
    theirs = torch_lr.MultiStepLR(theirs_opt, [1], gamma=1e-300)
    assert trace(ours, ours_opt, 2) == trace(theirs, theirs_opt, 2)


@pytest.mark.parametrize(
    "build",
    [
        lambda opt, **kw: lrkit.CyclicLR(opt, base_lr=-1.0, max_lr=1.0, **kw),
        lambda opt, **kw: lrkit.OneCycleLR(opt, max_lr=-1.0, **kw),
    ],
    ids=["CyclicLR", "OneCycleLR"],
)
def test_a_bad_last_epoch_is_named_before_any_other_argument(build: Callable[..., Any]) -> None:
    opt = sgd()
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match=r"^last_epoch must be an int >= -1, got last_epoch=-2$"):
        build(opt, last_epoch=-2)
    with pytest.raises(TypeError, match=r"^last_epoch must be an int, got last_epoch=-1\.0 \(float\)$"):
        build(opt, last_epoch=-1.0)
    assert [dict(g) for g in opt.param_groups] == before


def test_warm_restarts_names_a_bad_last_epoch_before_looking_at_the_optimizer() -> None:
    with pytest.raises(ValueError, match=r"^last_epoch must be an int >= -1, got last_epoch=-2$"):
        lrkit.CosineAnnealingWarmRestarts(object(), T_0=2, last_epoch=-2)
    with pytest.raises(TypeError, match=r"^last_epoch must be an int, got last_epoch=1\.5 \(float\)$"):
        lrkit.CosineAnnealingWarmRestarts(sgd(), T_0=2, last_epoch=1.5)


def test_cyclic_refuses_a_base_lr_list_of_another_length_as_torch() -> None:
    with pytest.raises(ValueError, match=r"^base_lr must have one value per param group \(1\), got 2 values: "):
        lrkit.CyclicLR(sgd(), base_lr=[0.1, 0.2], max_lr=1.0)
    with pytest.raises(ValueError):
        torch_lr.CyclicLR(sgd(), base_lr=[0.1, 0.2], max_lr=1.0)


@pytest.mark.parametrize("down", [0, -1.5])
def test_cyclic_refuses_a_step_size_down_not_above_zero_naming_it(down: float) -> None:
    with pytest.raises(
        ValueError, match=rf"^step_size_down must be in \(0\.0, inf\), got step_size_down={float(down)!r}$"
    ):
        lrkit.CyclicLR(sgd(), 0.1, 1.0, step_size_up=2, step_size_down=down)
    lrkit.CyclicLR(sgd(), 0.1, 1.0, step_size_up=2, step_size_down=1e-9)


@pytest.mark.parametrize("name", ["base_momentum", "max_momentum"])
def test_cyclic_refuses_a_bad_momentum_naming_it_and_its_group(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name}\[1\] must be in \[0\.0, inf\), got {name}\[1\]=-0\.1$"):
        lrkit.CyclicLR(sgd(0.5, 0.5), 0.1, 1.0, **{name: [0.85, -0.1]})
    lrkit.CyclicLR(sgd(0.5, 0.5), 0.1, 1.0, **{name: [0.85, 0.0]})  # zero is a valid momentum
    message = rf"^{name} must have one value per param group \(1\), got 2 values: {name}=\[0\.8, 0\.85\]$"
    with pytest.raises(ValueError, match=message):
        lrkit.CyclicLR(sgd(), 0.1, 1.0, **{name: [0.8, 0.85]})
    with pytest.raises(ValueError):
        torch_lr.CyclicLR(sgd(), 0.1, 1.0, **{name: [0.8, 0.85]})


def test_cyclic_refuses_a_scale_fn_that_is_not_callable_naming_it() -> None:
    with pytest.raises(TypeError, match=r"^scale_fn must be callable or None, got scale_fn=3$"):
        lrkit.CyclicLR(sgd(), 0.1, 1.0, scale_fn=3)


def test_cyclic_with_a_scale_fn_refuses_an_unknown_scale_mode_naming_it() -> None:
    with pytest.raises(ValueError, match=r"^scale_mode must be one of 'cycle', 'iterations'; got scale_mode='epoch'$"):
        lrkit.CyclicLR(sgd(), 0.1, 1.0, scale_fn=lambda x: 1.0, scale_mode="epoch")


def test_cyclic_with_a_scale_fn_keeps_mode_as_given_as_torch_and_its_spec_holds_the_function() -> None:
    def halve(x: float) -> float:
        return 0.5**x

    ours_opt, theirs_opt, rebuilt_opt = sgd(), sgd(), sgd()
    kwargs: dict[str, Any] = {"step_size_up": 2, "mode": "mine", "scale_fn": halve, "scale_mode": "iterations"}
    ours = lrkit.CyclicLR(ours_opt, 0.1, 1.0, **kwargs)
    theirs = torch_lr.CyclicLR(theirs_opt, 0.1, 1.0, **kwargs)
    assert ours.mode == ours.state_dict()["mode"] == theirs.state_dict()["mode"] == "mine"
    spec = ours.to_spec()
    assert spec["scale_fn"] is halve
    assert {k: spec[k] for k in ("mode", "scale_mode")} == {"mode": "mine", "scale_mode": "iterations"}
    rebuilt = build_scheduler(spec, rebuilt_opt)
    assert rebuilt.scale_fn_custom is halve
    ours_trace = trace(ours, ours_opt, 5)
    assert ours_trace == trace(theirs, theirs_opt, 5) == trace(rebuilt, rebuilt_opt, 5)


def test_cyclic_without_momentum_cycling_saves_use_beta1_false_and_loads_into_one_with_it() -> None:
    saved = lrkit.CyclicLR(sgd(), 0.1, 1.0, step_size_up=2, cycle_momentum=False)
    state = json.loads(json.dumps(saved.state_dict()))
    assert state["use_beta1"] is False
    ours_opt, plain_opt = sgd(), sgd()
    ours = lrkit.CyclicLR(ours_opt, 0.1, 1.0, step_size_up=2)
    ours.load_state_dict(state)
    assert (ours.cycle_momentum, ours.use_beta1) == (False, False)
    plain = lrkit.CyclicLR(plain_opt, 0.1, 1.0, step_size_up=2, cycle_momentum=False)
    assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in plain_opt.param_groups]
    for _ in range(3):
        ours.step()
        plain.step()
        assert lrs(ours_opt) == lrs(plain_opt)


class GroupsOnly:
    """An optimizer in all but name: param_groups, no ``defaults``."""

    def __init__(self) -> None:
        self.param_groups = [{"params": [], "lr": 0.1, "momentum": 0.9}]


def test_cyclic_reads_no_defaults_of_an_object_without_them() -> None:
    with pytest.raises(ValueError, match=r"\(GroupsOnly has neither\); pass cycle_momentum=False$"):
        lrkit.CyclicLR(GroupsOnly(), 0.1, 1.0)
    lrkit.CyclicLR(GroupsOnly(), 0.1, 1.0, cycle_momentum=False)


def test_cyclic_refuses_a_negative_max_lr_naming_its_group() -> None:
    with pytest.raises(ValueError, match=r"^max_lr\[1\] must be in \[0\.0, inf\), got max_lr\[1\]=-1\.0$"):
        lrkit.CyclicLR(sgd(0.5, 0.5), base_lr=0.1, max_lr=[1.0, -1.0])
    lrkit.CyclicLR(sgd(0.5, 0.5), base_lr=0.0, max_lr=[1.0, 0.0])  # zero is a valid bound


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"epochs": 2}, "total_steps=None, epochs=2, steps_per_epoch=None"),
        ({"steps_per_epoch": 3}, "total_steps=None, epochs=None, steps_per_epoch=3"),
        ({}, "total_steps=None, epochs=None, steps_per_epoch=None"),
    ],
)
def test_one_cycle_needs_total_steps_or_both_epochs_and_steps_per_epoch_as_torch(
    kwargs: dict[str, Any], shown: str
) -> None:
    expected = rf"^OneCycleLR needs total_steps, or both epochs and steps_per_epoch; got {shown}$"
    with pytest.raises(ValueError, match=expected):
        lrkit.OneCycleLR(sgd(), max_lr=1.0, **kwargs)
    with pytest.raises(ValueError):
        torch_lr.OneCycleLR(sgd(), max_lr=1.0, **kwargs)


@pytest.mark.parametrize("name", ["epochs", "steps_per_epoch"])
@pytest.mark.parametrize("value", [0, -1])
def test_one_cycle_refuses_epochs_or_steps_per_epoch_below_one_as_torch(name: str, value: int) -> None:
    kwargs = {"epochs": -1, "steps_per_epoch": -1} if value == -1 else {"epochs": 2, "steps_per_epoch": 3, name: 0}
    first = "epochs" if value == -1 else name  # -1 * -1 would be 1 step: each is checked on its own
    with pytest.raises(ValueError, match=rf"^{first} must be a positive int, got {first}={value}$"):
        lrkit.OneCycleLR(sgd(), max_lr=1.0, **kwargs)
    with pytest.raises(ValueError):
        torch_lr.OneCycleLR(sgd(), max_lr=1.0, **kwargs)
    other = {"epochs": 2, "steps_per_epoch": 3, name: 1.5}
    with pytest.raises(TypeError, match=rf"^{name} must be an int, got {name}=1\.5 \(float\)$"):
        lrkit.OneCycleLR(sgd(), max_lr=1.0, **other)


@pytest.mark.parametrize(("epochs", "steps_per_epoch"), [(1, 4), (4, 1)])
def test_one_cycle_takes_one_epoch_or_one_step_per_epoch_as_torch(epochs: int, steps_per_epoch: int) -> None:
    ours_opt, theirs_opt = sgd(), sgd()
    ours = lrkit.OneCycleLR(ours_opt, max_lr=1.0, epochs=epochs, steps_per_epoch=steps_per_epoch)
    theirs = torch_lr.OneCycleLR(theirs_opt, max_lr=1.0, epochs=epochs, steps_per_epoch=steps_per_epoch)
    assert ours.total_steps == theirs.total_steps == 4
    assert trace(ours, ours_opt, 3) == trace(theirs, theirs_opt, 3)


def test_swalr_refuses_a_swa_lr_list_of_another_length_as_torch() -> None:
    with pytest.raises(
        ValueError, match=r"^swa_lr must have one value per param group \(1\), got 2 values: swa_lr=\[0\.1, 0\.2\]$"
    ):
        lrkit.SWALR(sgd(), swa_lr=[0.1, 0.2])
    with pytest.raises(ValueError):
        swa_utils.SWALR(sgd(), swa_lr=[0.1, 0.2])


def test_swalr_refuses_a_negative_swa_lr_naming_its_group() -> None:
    with pytest.raises(ValueError, match=r"^swa_lr\[1\] must be in \[0\.0, inf\), got swa_lr\[1\]=-0\.1$"):
        lrkit.SWALR(sgd(0.5, 0.5), swa_lr=[0.1, -0.1])
    assert lrkit.SWALR(sgd(), swa_lr=0.0).to_spec()["swa_lr"] == 0.0  # zero is a valid target


def test_multiplicative_names_the_group_whose_lambda_returned_a_bad_factor() -> None:
    scheduler = lrkit.MultiplicativeLR(sgd(0.5, 0.5), lr_lambda=[lambda e: 0.9, lambda e: math.nan])
    message = r"^lr_lambda must return a finite number, got lr_lambda\[1\]\(1\)=nan \(float\)$"
    with pytest.raises(TypeError, match=message):
        scheduler.step()


def test_lambda_names_the_group_whose_lambda_returned_a_bad_factor() -> None:
    message = r"^lr_lambda must return a finite number, got lr_lambda\[1\]\(0\)=inf \(float\)$"
    with pytest.raises(TypeError, match=message):
        lrkit.LambdaLR(sgd(0.5, 0.5), lr_lambda=[lambda e: 0.9, lambda e: math.inf])


class Half(float):
    """A float of another class: not the hot path's exact float."""


@pytest.mark.parametrize(
    "factor",
    [torch.tensor(0.5), np.float64(0.5), np.float32(0.5), Half(0.5), np.int64(1), 1],
    ids=["tensor", "float64", "float32", "float-subclass", "int64", "int"],
)
def test_lambda_takes_any_finite_real_or_tensor_factor_as_torch(factor: Any) -> None:
    ours_opt, theirs_opt = sgd(0.5), sgd(0.5)
    ours = lrkit.LambdaLR(ours_opt, lambda e: factor)
    theirs = torch_lr.LambdaLR(theirs_opt, lambda e: factor)
    assert trace(ours, ours_opt, 2) == trace(theirs, theirs_opt, 2)


@pytest.mark.parametrize(
    ("factor", "shown"),
    [
        ("0.5", "'0.5' (str)"),
        (None, "None (NoneType)"),
        (True, "True (bool)"),
        (np.float64("nan"), "np.float64(nan) (float64)"),
        (Half("inf"), "inf (Half)"),
        (math.nan, "nan (float)"),
    ],
    ids=["str", "None", "bool", "float64-nan", "float-subclass-inf", "nan"],
)
def test_lambda_refuses_a_factor_that_is_no_finite_number_naming_it(factor: Any, shown: str) -> None:
    expected = f"lr_lambda must return a finite number, got lr_lambda[0](0)={shown}"
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}$"):
        lrkit.LambdaLR(sgd(0.5), lambda e: factor)


# --------------------------------------------------------------------------- a function's state and spec


class Scaled:
    """A callable object: its attributes are its state, as torch saves them."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.history: list[int] = []

    def __call__(self, epoch: int) -> float:
        return self.scale**epoch


def test_lambda_spec_holds_one_function_or_one_per_group_and_rebuilds() -> None:
    def f(e: int) -> float:
        return 0.5**e

    def g(e: int) -> float:
        return 0.9**e

    assert lrkit.LambdaLR(sgd(0.5, 0.5), [f, f]).to_spec() == {"type": "LambdaLR", "lr_lambda": f}
    ours_opt, rebuilt_opt = sgd(0.5, 0.3), sgd(0.5, 0.3)
    ours = lrkit.LambdaLR(ours_opt, [f, g])
    spec = ours.to_spec()
    assert spec == {"type": "LambdaLR", "lr_lambda": [f, g]}
    rebuilt = build_scheduler(spec, rebuilt_opt)
    assert trace(rebuilt, rebuilt_opt, 3) == trace(ours, ours_opt, 3)


def test_lambda_loads_a_state_saved_without_its_functions_entries() -> None:
    saved_opt, ours_opt = sgd(0.5), sgd(0.5)
    saved = lrkit.LambdaLR(saved_opt, lambda e: 0.5**e)
    for _ in range(3):
        saved.step()
    state = saved.state_dict()
    del state["lr_lambdas"]  # a state saved before lrkit kept them
    ours = lrkit.LambdaLR(ours_opt, lambda e: 0.5**e)
    ours.load_state_dict(state)
    assert ours.last_epoch == 3
    assert trace(ours, ours_opt, 2)[1:] == trace(saved, saved_opt, 2)[1:]


def test_lambda_refuses_stored_entries_that_are_not_one_per_group() -> None:
    scheduler = lrkit.LambdaLR(sgd(0.5), Scaled(0.5))
    state = scheduler.state_dict()
    expected = "state['lr_lambdas'] must be a list with one entry per param group (1), got [None, None]"
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**state, "lr_lambdas": [None, None]})


def test_lambda_refuses_attributes_with_keys_that_are_not_names() -> None:
    scheduler = lrkit.LambdaLR(sgd(0.5), Scaled(0.5))
    state = scheduler.state_dict()
    expected = "state['lr_lambdas'][0] must be None or a dict of attributes, got {1: 2}"
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**state, "lr_lambdas": [{1: 2}]})


@pytest.mark.parametrize("first", [None, {"scale": 0.5, "history": []}])
def test_lambda_refuses_attributes_for_a_plain_function_in_any_group(first: Any) -> None:
    def plain(e: int) -> float:
        return 1.0

    scheduler = lrkit.LambdaLR(sgd(0.5, 0.5), [Scaled(0.5), plain])
    state = scheduler.state_dict()
    expected = (
        f"state['lr_lambdas'][1] holds the attributes of a callable object, but this scheduler's lr_lambda[1] is "
        f"{plain!r}: rebuild it with the same kind of lr_lambda"
    )
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**state, "lr_lambdas": [first, {"scale": 0.9}]})
    assert not hasattr(plain, "scale")


def test_lambda_loads_a_callable_objects_attributes_as_copies() -> None:
    saved = lrkit.LambdaLR(sgd(0.5), Scaled(0.9))
    saved.lr_lambdas[0].history.extend([1, 2])
    state = saved.state_dict()
    fn = Scaled(0.5)
    lrkit.LambdaLR(sgd(0.5), fn).load_state_dict(state)
    assert (fn.scale, fn.history) == (0.9, [1, 2])
    state["lr_lambdas"][0]["history"].append(3)
    assert fn.history == [1, 2]


# --------------------------------------------------------------------------- state: torch's, composites


def test_multistep_loads_torchs_state_with_a_repeated_milestone() -> None:
    ours_opt, theirs_opt = sgd(), sgd()
    ours = lrkit.MultiStepLR(ours_opt, [5], gamma=0.5)
    theirs = torch_lr.MultiStepLR(theirs_opt, [1, 2, 2], gamma=0.5)
    state = theirs.state_dict()
    assert state["milestones"] == {1: 1, 2: 2}  # torch keeps a Counter
    ours.load_state_dict(state)
    assert ours.state_dict()["milestones"] == [1, 2, 2]
    assert trace(ours, ours_opt, 3) == trace(theirs, theirs_opt, 3)


def test_a_chain_entered_at_a_milestone_counts_its_steps_from_zero_as_a_new_chain() -> None:
    opt = sgd()
    chain = lrkit.ChainedScheduler([lrkit.StepLR(opt, 2, gamma=0.5), lrkit.ExponentialLR(opt, gamma=0.9)])
    seq = lrkit.SequentialLR(opt, [lrkit.ConstantLR(opt, factor=0.5, total_iters=5), chain], milestones=[3])
    fresh_opt = sgd()
    fresh = lrkit.ChainedScheduler([lrkit.StepLR(fresh_opt, 2, gamma=0.5), lrkit.ExponentialLR(fresh_opt, gamma=0.9)])
    for _ in range(3):
        seq.step()
    assert chain.last_epoch == fresh.last_epoch == 0
    assert chain.get_last_lr() == fresh.get_last_lr()
    for _ in range(2):
        seq.step()
        fresh.step()
    assert chain.last_epoch == fresh.last_epoch == 2
    assert chain.get_last_lr() == fresh.get_last_lr()


def test_plateau_cannot_be_restarted() -> None:
    scheduler = lrkit.ReduceLROnPlateau(sgd())
    with pytest.raises(TypeError, match=r"^ReduceLROnPlateau cannot be restarted inside a composite$"):
        scheduler._restart()


# --------------------------------------------------------------------------- the composites' constructors and steps


def two_children(optimizer: Any, module: Any = lrkit) -> list[Any]:
    return [module.ConstantLR(optimizer, factor=0.5, total_iters=4), module.ExponentialLR(optimizer, gamma=0.9)]


@pytest.mark.parametrize("milestone", [1, 2])
def test_sequential_starts_and_counts_its_children_as_torch(milestone: int) -> None:
    ours_opt, theirs_opt = sgd(), sgd()
    ours = lrkit.SequentialLR(ours_opt, two_children(ours_opt), milestones=[milestone])
    theirs = torch_lr.SequentialLR(theirs_opt, two_children(theirs_opt, torch_lr), milestones=[milestone])
    for _ in range(4):
        assert [c.last_epoch for c in ours._schedulers] == [c.last_epoch for c in theirs._schedulers]
        assert (ours.last_epoch, lrs(ours_opt)) == (theirs.last_epoch, lrs(theirs_opt))
        ours_opt.step()
        theirs_opt.step()
        ours.step()
        theirs.step()


def test_sequential_and_chain_base_lrs_are_the_groups_initial_lrs() -> None:
    opt = sgd(0.5, 0.3)
    seq = lrkit.SequentialLR(opt, two_children(opt), milestones=[2])
    chain = lrkit.ChainedScheduler(two_children(opt))
    assert seq.base_lrs == chain.base_lrs == [0.5, 0.3] == [g["initial_lr"] for g in opt.param_groups]
    assert lrs(opt) != [0.5, 0.3]  # the children moved the LRs: base_lrs are not the LRs


def test_chain_base_lr_of_a_group_added_after_its_children_is_its_lr() -> None:
    opt = sgd(0.5)
    children = two_children(opt)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.2})
    assert lrkit.ChainedScheduler(children).base_lrs == [0.5, 0.2]


@pytest.mark.parametrize(
    ("last_epoch", "error", "message"),
    [
        (-2, ValueError, r"^last_epoch must be an int >= -1, got last_epoch=-2$"),
        (1.5, TypeError, r"^last_epoch must be an int, got last_epoch=1\.5 \(float\)$"),
    ],
)
def test_sequential_refuses_a_bad_last_epoch_naming_it(last_epoch: Any, error: type[Exception], message: str) -> None:
    opt = sgd()
    with pytest.raises(error, match=message):
        lrkit.SequentialLR(opt, two_children(opt), milestones=[2], last_epoch=last_epoch)


@pytest.mark.parametrize("kind", ["SequentialLR", "ChainedScheduler"])
def test_a_composite_step_takes_no_epoch(kind: str) -> None:
    opt = sgd()
    composite = (
        lrkit.SequentialLR(opt, two_children(opt), milestones=[2])
        if kind == "SequentialLR"
        else lrkit.ChainedScheduler(two_children(opt))
    )
    with pytest.raises(TypeError, match=rf"^{kind}\.step\(\) takes no epoch argument$"):
        composite.step(1)


def test_chain_counts_its_own_steps_from_zero() -> None:
    opt = sgd()
    chain = lrkit.ChainedScheduler(two_children(opt))
    assert chain.last_epoch == 0
    for step in (1, 2, 3):
        chain.step()
        assert chain.last_epoch == step


def test_sequential_refuses_a_child_state_below_its_lowest_last_epoch_naming_the_child() -> None:
    def build() -> lrkit.SequentialLR:
        opt = sgd()
        return lrkit.SequentialLR(opt, two_children(opt), milestones=[2])

    state = json.loads(json.dumps(build().state_dict()))
    state["_schedulers"][1]["last_epoch"] = -3  # waiting at -1; a SequentialLR nested in another would make it -2
    expected = (
        "SequentialLR state['_schedulers'][1]: state['last_epoch']=-3 is refused: last_epoch must be an int >= -2, "
        "got last_epoch=-3"
    )
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        build().load_state_dict(state)
    state["_schedulers"][1]["last_epoch"] = -2
    build().load_state_dict(state)
