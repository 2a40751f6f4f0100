"""State is plain data: JSON primitives only, loadable with ``weights_only=True``, and all-or-nothing loads."""

from __future__ import annotations

import ast
import copy
import io
import json
import math
import re
import warnings
from typing import Any

import pytest
import torch

import lrkit
from lrkit import StateError, build_scheduler


def halve_every_10(epoch: int) -> float:
    return 0.5 ** (epoch // 10)


def shrink(epoch: int) -> float:
    return 0.97


LEAF_SPECS: dict[str, dict[str, Any]] = {
    "LambdaLR": {"type": "LambdaLR", "lr_lambda": halve_every_10},
    "MultiplicativeLR": {"type": "MultiplicativeLR", "lr_lambda": shrink},
    "StepLR": {"type": "StepLR", "step_size": 4, "gamma": 0.7},
    "MultiStepLR": {"type": "MultiStepLR", "milestones": [3, 3, 9], "gamma": 0.6},
    "ConstantLR": {"type": "ConstantLR", "factor": 0.4, "total_iters": 6},
    "LinearLR": {"type": "LinearLR", "start_factor": 0.05, "total_iters": 12},
    "ExponentialLR": {"type": "ExponentialLR", "gamma": 0.93},
    "PolynomialLR": {"type": "PolynomialLR", "total_iters": 20, "power": 1.7},
    "CosineAnnealingLR": {"type": "CosineAnnealingLR", "T_max": 7, "eta_min": 1e-4},
    "ReduceLROnPlateau": {"type": "ReduceLROnPlateau", "patience": 1, "factor": 0.5, "min_lr": [1e-3, 0.0]},
    "CyclicLR": {
        "type": "CyclicLR",
        "base_lr": 0.01,
        "max_lr": [0.3, 0.2],
        "step_size_up": 5,
        "mode": "exp_range",
        "gamma": 0.99,
    },
    "CosineAnnealingWarmRestarts": {"type": "CosineAnnealingWarmRestarts", "T_0": 3, "T_mult": 2, "eta_min": 1e-5},
    "OneCycleLR": {"type": "OneCycleLR", "max_lr": 0.4, "total_steps": 60, "three_phase": True},
    "SWALR": {"type": "SWALR", "swa_lr": 0.02, "anneal_epochs": 5},
}
SPECS: dict[str, dict[str, Any]] = {
    **LEAF_SPECS,
    "SequentialLR": {
        "type": "SequentialLR",
        "schedulers": [LEAF_SPECS["LinearLR"], LEAF_SPECS["CosineAnnealingLR"]],
        "milestones": [12],
    },
    "ChainedScheduler": {
        "type": "ChainedScheduler",
        "schedulers": [LEAF_SPECS["MultiStepLR"], LEAF_SPECS["ConstantLR"]],
    },
    "Chained(Sequential(Chained))": {
        "type": "ChainedScheduler",
        "schedulers": [
            {
                "type": "SequentialLR",
                "schedulers": [
                    LEAF_SPECS["StepLR"],
                    {"type": "ChainedScheduler", "schedulers": [LEAF_SPECS["ExponentialLR"], LEAF_SPECS["LambdaLR"]]},
                ],
                "milestones": [8],
            },
            LEAF_SPECS["CyclicLR"],
        ],
    },
    "Sequential(Chained, Sequential)": {
        "type": "SequentialLR",
        "schedulers": [
            {"type": "ChainedScheduler", "schedulers": [LEAF_SPECS["PolynomialLR"], LEAF_SPECS["MultiplicativeLR"]]},
            {"type": "SequentialLR", "schedulers": [LEAF_SPECS["OneCycleLR"], LEAF_SPECS["StepLR"]], "milestones": [5]},
        ],
        "milestones": [6],
    },
}
# The tests step every scheduler this many times before looking at the state.
STEPS = 14


def make_optimizer() -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in (0.2, 0.05)]
    return torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def step(scheduler: Any, t: int) -> None:
    if isinstance(scheduler, lrkit.ReduceLROnPlateau):
        scheduler.step([1.0, 0.9, 0.9, 0.9, 0.8][t % 5])
    else:
        scheduler.step()


def built(name: str, steps: int = STEPS) -> tuple[Any, torch.optim.Optimizer]:
    optimizer = make_optimizer()
    scheduler = build_scheduler(SPECS[name], optimizer)
    for t in range(steps):
        step(scheduler, t)
    return scheduler, optimizer


# A differently built scheduler of each class: the state of SPECS[name] is loaded into it.
OTHER_SPECS: dict[str, dict[str, Any]] = {
    "StepLR": {"type": "StepLR", "step_size": 1, "gamma": 0.005},
    "MultiStepLR": {"type": "MultiStepLR", "milestones": [20, 2], "gamma": 0.1},
    "ConstantLR": {"type": "ConstantLR", "factor": 0.9, "total_iters": 2},
    "LinearLR": {"type": "LinearLR", "start_factor": 0.5, "end_factor": 0.8, "total_iters": 3},
    "ExponentialLR": {"type": "ExponentialLR", "gamma": 0.5},
    "PolynomialLR": {"type": "PolynomialLR", "total_iters": 9, "power": 1.0},
    "CosineAnnealingLR": {"type": "CosineAnnealingLR", "T_max": 70, "eta_min": 0.0},
    "ReduceLROnPlateau": {"type": "ReduceLROnPlateau", "mode": "max", "patience": 9, "factor": 0.1, "min_lr": 0.0},
    "CyclicLR": {"type": "CyclicLR", "base_lr": [0.02, 0.03], "max_lr": 0.5, "step_size_up": 2, "step_size_down": 9},
    "CosineAnnealingWarmRestarts": {"type": "CosineAnnealingWarmRestarts", "T_0": 11, "eta_min": 0.0},
    "OneCycleLR": {"type": "OneCycleLR", "max_lr": [0.1, 0.2], "total_steps": 90, "pct_start": 0.5},
    "SWALR": {"type": "SWALR", "swa_lr": [0.5, 0.4], "anneal_epochs": 1, "anneal_strategy": "linear"},
    "SequentialLR": {
        "type": "SequentialLR",
        "schedulers": [{"type": "LinearLR", "total_iters": 2}, {"type": "CosineAnnealingLR", "T_max": 3}],
        "milestones": [2],
    },
    "ChainedScheduler": {
        "type": "ChainedScheduler",
        "schedulers": [{"type": "MultiStepLR", "milestones": [1]}, {"type": "ConstantLR", "factor": 0.9}],
    },
}


@pytest.mark.parametrize("name", list(OTHER_SPECS))
def test_to_spec_describes_the_loaded_schedule(name: str) -> None:
    """After torch's resume protocol into a differently built scheduler, ``to_spec()`` and ``repr()``
    describe the schedule that runs (the loaded one), and building that spec gives the same LRs."""
    original, optimizer = built(name)
    resumed_optimizer = make_optimizer()
    resumed = build_scheduler(OTHER_SPECS[name], resumed_optimizer)
    assert resumed.to_spec() != original.to_spec()
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert json.dumps(resumed.to_spec()) == json.dumps(original.to_spec())
    assert repr(resumed) == repr(original)
    expected = lrs_after(original, optimizer, STEPS, 20)
    assert lrs_after(resumed, resumed_optimizer, STEPS, 20) == expected

    fresh_optimizer = make_optimizer()
    rebuilt = build_scheduler(json.loads(json.dumps(resumed.to_spec())), fresh_optimizer)
    reference, reference_optimizer = built(name, steps=0)
    expected_from_scratch = lrs_after(reference, reference_optimizer, 0, STEPS + 20)
    assert lrs_after(rebuilt, fresh_optimizer, 0, STEPS + 20) == expected_from_scratch


def lrs_after(scheduler: Any, optimizer: Any, start: int, count: int) -> list[tuple[Any, ...]]:
    out = []
    for t in range(start, start + count):
        step(scheduler, t)
        groups = optimizer.param_groups
        lrs, momenta = tuple(g["lr"] for g in groups), tuple(g["momentum"] for g in groups)
        out.append((tuple(scheduler.get_last_lr()), lrs, momenta))
    return out


def assert_plain(value: Any, path: str = "state") -> None:
    """Only dict / list / str / int / float / bool / None, recursively, with str keys."""
    if type(value) is dict:
        for key, item in value.items():
            assert isinstance(key, str), f"{path} has a non-str key {key!r}"
            assert_plain(item, f"{path}[{key!r}]")
    elif type(value) is list:
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")
    else:
        assert value is None or type(value) in (str, int, float, bool), f"{path} is a {type(value).__name__}: {value!r}"


# --------------------------------------------------------------------------- plain data


def test_assert_plain_rejects_what_torch_stores() -> None:
    """Control: torch's own MultiStepLR state holds a Counter, which the walk must reject."""
    optimizer = make_optimizer()
    state = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3]).state_dict()
    with pytest.raises(AssertionError, match="Counter"):
        assert_plain(state)


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("steps", [0, STEPS])
def test_state_is_plain_json(name: str, steps: int) -> None:
    scheduler, _ = built(name, steps)
    state = scheduler.state_dict()
    assert_plain(state)
    text = json.dumps(state, allow_nan=False)
    assert json.loads(text) == state
    assert state["type"] == SPECS[name]["type"]


@pytest.mark.parametrize("name", list(SPECS))
def test_json_round_trip_continues_bit_identically(name: str) -> None:
    scheduler, optimizer = built(name)
    state = json.loads(json.dumps(scheduler.state_dict(), allow_nan=False))
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    expected = lrs_after(scheduler, optimizer, STEPS, 40)

    resumed_optimizer = make_optimizer()
    resumed = build_scheduler(SPECS[name], resumed_optimizer)
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed.load_state_dict(state)
    assert lrs_after(resumed, resumed_optimizer, STEPS, 40) == expected


@pytest.mark.parametrize("name", list(SPECS))
def test_torch_save_loads_with_weights_only(name: str) -> None:
    scheduler, optimizer = built(name)
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict(), "step": STEPS}, buffer)
    expected = lrs_after(scheduler, optimizer, STEPS, 40)

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed_optimizer = make_optimizer()
    resumed = build_scheduler(SPECS[name], resumed_optimizer)
    resumed_optimizer.load_state_dict(checkpoint["optimizer"])
    resumed.load_state_dict(checkpoint["scheduler"])
    assert lrs_after(resumed, resumed_optimizer, checkpoint["step"], 40) == expected


def test_non_finite_values_survive_json() -> None:
    """ReduceLROnPlateau's ``best`` starts at inf; JSON has no inf, so it is stored as a string."""
    optimizer = make_optimizer()
    scheduler = lrkit.ReduceLROnPlateau(optimizer, mode="max")
    state = json.loads(json.dumps(scheduler.state_dict(), allow_nan=False))
    other = lrkit.ReduceLROnPlateau(make_optimizer(), mode="max")
    other.step(5.0)
    other.load_state_dict(state)
    assert other.best == -math.inf
    assert other.is_better(-1e308, other.best)


def test_stored_arguments_win_over_constructor_arguments() -> None:
    """As in torch: the state holds the schedule's arguments, and loading restores them."""
    optimizer = make_optimizer()
    source = lrkit.StepLR(optimizer, step_size=4, gamma=0.5)
    target = lrkit.StepLR(make_optimizer(), step_size=9, gamma=0.9)
    target.load_state_dict(json.loads(json.dumps(source.state_dict())))
    assert (target.step_size, target.gamma) == (4, 0.5)


# --------------------------------------------------------------------------- failed loads change nothing


def _broken_states(name: str, good: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """``(what, broken state, the message it is refused with as a regex)``."""
    cases: list[tuple[str, dict[str, Any], str]] = []
    other = "LinearLR" if good["type"] != "LinearLR" else "StepLR"
    cases.append(("another class", {**good, "type": other}, f"^cannot load a {other} state into a {good['type']}$"))
    for key in good:
        if key not in ("type", "lr_lambdas", "spec"):  # optional: states saved before lrkit kept them
            refused = r"under '_schedulers', got None$" if key == "_schedulers" else rf"is missing keys \['{key}'\]$"
            cases.append((f"missing {key}", {k: v for k, v in good.items() if k != key}, refused))
    cases.append(
        ("last_epoch not an int", {**good, "last_epoch": "3"}, r"^state\['last_epoch'\] must be an int, got '3'$")
    )
    cases.append(
        (
            "one LR too few",
            {**good, "_last_lr": good["_last_lr"][:1]},
            r"^state\['_last_lr'\] must be a list with one float per param group \(2\), got \[",
        )
    )
    cases.append(("not a dict", [good], "^state_dict must be a dict, got list$"))  # type: ignore[list-item]
    return cases


def _deepest_last_child(state: dict[str, Any]) -> dict[str, Any]:
    while "_schedulers" in state:
        state = state["_schedulers"][-1]
    return state


@pytest.mark.parametrize("name", list(SPECS))
def test_failed_load_changes_nothing(name: str) -> None:
    scheduler, optimizer = built(name)
    before = json.dumps(scheduler.state_dict())
    lrs_before = [g["lr"] for g in optimizer.param_groups]
    other, _ = built(name, steps=3)
    good = json.loads(json.dumps(other.state_dict()))
    cases = _broken_states(name, good)
    if "_schedulers" in good:
        child = r"state\['_schedulers'\]\[1\]: "  # the deepest last child is named by its path
        deep = copy.deepcopy(good)
        _deepest_last_child(deep)["last_epoch"] = None  # malformed, deep inside, after good siblings
        cases.append(("malformed deep child", deep, child + r"state\['last_epoch'\] must be an int, got None$"))
        deep_missing = copy.deepcopy(good)
        del _deepest_last_child(deep_missing)["_last_lr"]
        cases.append(("deep child missing a key", deep_missing, child + r"\w+ state is missing keys \['_last_lr'\]$"))
        wrong_kind = copy.deepcopy(good)
        _deepest_last_child(wrong_kind)["type"] = "OneCycleLR"
        cases.append(("deep child of another class", wrong_kind, child + r"cannot load a OneCycleLR state into a \w+$"))
        too_few = copy.deepcopy(good)
        too_few["_schedulers"] = too_few["_schedulers"][:-1]
        n = len(good["_schedulers"])
        cases.append(
            ("a child missing", too_few, rf"^{good['type']} state must hold {n} child states under '_schedulers'")
        )
    for what, broken, refused in cases:
        with pytest.raises(StateError, match=refused):
            scheduler.load_state_dict(broken)
        assert json.dumps(scheduler.state_dict()) == before, what
        assert [g["lr"] for g in optimizer.param_groups] == lrs_before, what
    scheduler.load_state_dict(good)  # control: the unbroken state does load
    assert json.dumps(scheduler.state_dict()) == json.dumps(good)


@pytest.mark.parametrize(
    "name,key,value",
    [
        ("StepLR", "gamma", "0.5"),
        ("StepLR", "step_size", None),
        ("MultiStepLR", "milestones", [9, -3]),
        ("LambdaLR", "lr_lambdas", [{"value": 1}]),
        ("CyclicLR", "max_lrs", ["0.1", 0.2]),
        ("CyclicLR", "cycle_momentum", 1),
        ("OneCycleLR", "anneal_strategy", 0),
        ("ReduceLROnPlateau", "best", "worst"),
        ("ReduceLROnPlateau", "mode", None),
        ("SequentialLR", "_milestones", [1, 2]),
        ("CosineAnnealingWarmRestarts", "T_cur", [1]),
    ],
)
def test_malformed_field_is_rejected_before_anything_changes(name: str, key: str, value: Any) -> None:
    scheduler, _ = built(name)
    before = json.dumps(scheduler.state_dict())
    broken = {**scheduler.state_dict(), key: value}
    broken["last_epoch"] = 1000  # a field that a partial load would already have changed
    with pytest.raises(StateError, match=key):
        scheduler.load_state_dict(broken)
    assert json.dumps(scheduler.state_dict()) == before


@pytest.mark.parametrize(
    "milestones,match",
    [
        ([3.7], r"milestones\[0\] must be an int, got milestones\[0\]=3\.7"),
        (["x"], r"milestones\[0\] must be an int, got milestones\[0\]='x'"),
        ([0], r"milestones\[0\] must be a positive int, got milestones\[0\]=0"),
        ([12, 14], r"one milestone fewer than schedulers \(1\)"),
    ],
    ids=["float", "str", "zero", "one-too-many"],
)
def test_sequential_milestones_in_a_state_are_checked_as_the_constructor_checks_them(
    milestones: list[Any], match: str
) -> None:
    """A stored milestone of 3.7 is not read as 3, nor "x" a bare ValueError: StateError naming the key."""
    scheduler, _ = built("SequentialLR")
    before = json.dumps(scheduler.state_dict())
    broken = {**scheduler.state_dict(), "_milestones": milestones, "last_epoch": 1000}
    with pytest.raises(StateError, match=r"state\['_milestones'\]") as err:
        scheduler.load_state_dict(broken)
    assert err.match(match)
    assert json.dumps(scheduler.state_dict()) == before


# --------------------------------------------------------------------------- functions are rebuilt, not stored


@pytest.mark.parametrize("cls,fn", [(lrkit.LambdaLR, halve_every_10), (lrkit.MultiplicativeLR, shrink)])
def test_lambda_schedulers_rebuild_then_load(cls: Any, fn: Any) -> None:
    """The documented protocol: rebuild with the same function, load the optimizer, then the scheduler."""
    optimizer = make_optimizer()
    scheduler = cls(optimizer, lr_lambda=[fn, lambda epoch: 0.99])
    for _ in range(17):
        scheduler.step()
    state = json.loads(json.dumps(scheduler.state_dict()))
    assert state["lr_lambdas"] == [None, None]  # functions are not data (torch saves None too)
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    expected = lrs_after(scheduler, optimizer, 17, 30)

    resumed_optimizer = make_optimizer()
    resumed = cls(resumed_optimizer, lr_lambda=[fn, lambda epoch: 0.99])
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 17
    assert lrs_after(resumed, resumed_optimizer, 17, 30) == expected


class Scaled:
    """A callable object: torch saves its attributes, and so does lrkit where they are plain data."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, epoch: int) -> float:
        return self.value * 0.9**epoch


@pytest.mark.parametrize("cls", [lrkit.LambdaLR, lrkit.MultiplicativeLR])
def test_callable_object_state_is_restored_as_torch_restores_it(cls: Any) -> None:
    torch_cls = getattr(torch.optim.lr_scheduler, cls.__name__)
    ours_opt, theirs_opt = make_optimizer(), make_optimizer()
    ours, theirs = cls(ours_opt, Scaled(0.5)), torch_cls(theirs_opt, Scaled(0.5))
    for _ in range(3):
        ours.step()
        theirs.step()
    state = json.loads(json.dumps(ours.state_dict()))
    assert state["lr_lambdas"] == [{"value": 0.5}] * 2 == [dict(d) for d in theirs.state_dict()["lr_lambdas"]]
    ours_again, theirs_again = cls(make_optimizer(), Scaled(-1.0)), torch_cls(make_optimizer(), Scaled(-1.0))
    ours_again.load_state_dict(state)
    theirs_again.load_state_dict(theirs.state_dict())
    assert [fn.value for fn in ours_again.lr_lambdas] == [fn.value for fn in theirs_again.lr_lambdas] == [0.5, 0.5]
    assert ours_again.to_spec()["lr_lambda"].value == 0.5
    # An object whose attributes are not plain data is saved as None (torch would pickle it).
    holder = Scaled(0.5)
    holder.cache = object()  # type: ignore[attr-defined]
    assert cls(make_optimizer(), holder).state_dict()["lr_lambdas"] == [None, None]


def test_lambda_state_does_not_carry_the_function() -> None:
    """Loading into a LambdaLR built with another function uses that function from then on."""
    optimizer = make_optimizer()
    scheduler = lrkit.LambdaLR(optimizer, halve_every_10)
    for _ in range(5):
        scheduler.step()
    other = lrkit.LambdaLR(make_optimizer(), lambda epoch: 1.0)
    other.load_state_dict(scheduler.state_dict())
    other.step()
    assert other.get_last_lr() == other.base_lrs == scheduler.base_lrs


def test_cyclic_custom_scale_fn_rebuild_then_load() -> None:
    def scale(x: float) -> float:
        return 1.0 / (1.0 + 0.1 * x)

    optimizer = make_optimizer()
    scheduler = lrkit.CyclicLR(optimizer, 0.01, 0.2, step_size_up=3, scale_fn=scale, scale_mode="iterations")
    for _ in range(11):
        scheduler.step()
    state = json.loads(json.dumps(scheduler.state_dict()))
    optimizer_state = copy.deepcopy(optimizer.state_dict())
    expected = lrs_after(scheduler, optimizer, 11, 20)
    resumed_optimizer = make_optimizer()
    resumed = lrkit.CyclicLR(resumed_optimizer, 0.01, 0.2, step_size_up=3, scale_fn=scale, scale_mode="iterations")
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed.load_state_dict(state)
    assert lrs_after(resumed, resumed_optimizer, 11, 20) == expected


# --------------------------------------------------------------------------- ReduceLROnPlateau, against torch

PLATEAU_METRICS = [5.0, 4.0, 4.0, 4.0, 3.99, 4.5, 4.5, 2.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0] * 3
PLATEAU_ATTRS = ("last_epoch", "num_bad_epochs", "cooldown_counter", "best", "mode_worse", "min_lrs", "default_min_lr")


def _sgd_groups(lrs: tuple[float, ...] = (0.1, 0.05)) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"patience": 2},
        {"mode": "max", "threshold_mode": "abs", "threshold": 0.5, "patience": 0, "cooldown": 2, "factor": 0.5},
        {"patience": 1, "cooldown": 1, "min_lr": [0.02, 0.0], "eps": 0.01, "factor": 0.3},
        {"patience": 0, "min_lr": 0.004, "eps": 0.0},
    ],
    ids=["defaults", "patience-2", "max-abs-cooldown", "per-group-min-eps", "scalar-min-no-eps"],
)
def test_reduce_lr_on_plateau_steps_like_torchs(kwargs: dict[str, Any]) -> None:
    """torch's ReduceLROnPlateau is the oracle: the LRs and every counter, exactly, after each step."""
    ours_opt, theirs_opt = _sgd_groups(), _sgd_groups()
    ours = lrkit.ReduceLROnPlateau(ours_opt, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_opt, **kwargs)
    metrics = [-m for m in PLATEAU_METRICS] if kwargs.get("mode") == "max" else PLATEAU_METRICS
    for metric in metrics:
        ours.step(metric)
        theirs.step(metric)
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]
        assert {a: getattr(ours, a) for a in PLATEAU_ATTRS} == {a: getattr(theirs, a) for a in PLATEAU_ATTRS}
    assert ours.get_last_lr() != [0.1, 0.05]  # the metrics did reduce the LR
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation warning for the epoch argument
        ours.step(0.5, 40)
        theirs.step(0.5, 40)
    assert ours.last_epoch == theirs.last_epoch == 40


def test_reduce_lr_on_plateau_loads_torchs_state_with_tensor_arguments() -> None:
    """torch keeps Tensor arguments as Tensors in its state; lrkit loads that state and continues as torch does."""
    tensors = {
        "factor": torch.tensor(0.5),
        "threshold": torch.tensor(0.01),
        "eps": torch.tensor(1e-6),
        "min_lr": torch.tensor(0.001),
        "patience": 1,
    }
    theirs_opt, ours_opt = _sgd_groups((0.1,)), _sgd_groups((0.1,))
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(theirs_opt, **tensors)
    ours = lrkit.ReduceLROnPlateau(ours_opt)
    ours.load_state_dict(theirs.state_dict())
    for metric in PLATEAU_METRICS:
        ours.step(metric)
        theirs.step(metric)
        assert ours.get_last_lr() == pytest.approx([float(lr) for lr in theirs.get_last_lr()], rel=1e-6)
    assert ours.num_bad_epochs == theirs.num_bad_epochs and ours.best == theirs.best


#: (state key, refused value, the constructor arguments that refuse it, the constructor's name for the key)
PLATEAU_BAD_STATE: list[tuple[str, Any, dict[str, Any] | None, str]] = [
    ("mode", "up", {"mode": "up"}, "mode"),
    ("factor", 1.0, {"factor": 1.0}, "factor"),
    ("factor", 0.0, {"factor": 0.0}, "factor"),
    ("factor", 2.0, {"factor": 2.0}, "factor"),
    ("patience", -1, {"patience": -1}, "patience"),
    ("patience", 1.5, {"patience": 1.5}, "patience"),
    ("threshold", -0.1, {"threshold": -0.1}, "threshold"),
    ("threshold_mode", "pct", {"threshold_mode": "pct"}, "threshold_mode"),
    ("cooldown", -1, {"cooldown": -1}, "cooldown"),
    ("cooldown", 0.5, {"cooldown": 0.5}, "cooldown"),
    ("eps", -1.0, {"eps": -1.0}, "eps"),
    ("min_lrs", [-1.0], {"min_lr": [-1.0]}, "min_lr"),
    ("default_min_lr", -1.0, {"min_lr": -1.0}, "min_lr[0]"),
    ("best", "nan", None, ""),
    ("num_bad_epochs", -1, None, ""),
    ("cooldown_counter", -1, None, ""),
]


@pytest.mark.parametrize(
    "key,value,refused_by,named", PLATEAU_BAD_STATE, ids=[f"{k}={v!r}" for k, v, _, _ in PLATEAU_BAD_STATE]
)
def test_reduce_lr_on_plateau_refuses_a_state_value_its_constructor_refuses(
    key: str, value: Any, refused_by: dict[str, Any] | None, named: str
) -> None:
    optimizer = _sgd_groups((0.1,))
    scheduler = lrkit.ReduceLROnPlateau(optimizer)
    before = json.dumps(scheduler.state_dict())
    if refused_by is not None:  # the oracle: the constructor's own message, with the state's name for the key
        with pytest.raises((TypeError, ValueError)) as refused:
            lrkit.ReduceLROnPlateau(_sgd_groups((0.1,)), **refused_by)
        reason = str(refused.value).replace(named, key)
    else:
        shown = "nan" if value == "nan" else repr(value)
        what = "a number or +-inf" if key == "best" else "an int >= 0"
        reason = f"{key} must be {what}, got {key}={shown}"
    expected = f"state[{key!r}]={value!r} is refused: {reason}"
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**json.loads(before), key: value})
    assert json.dumps(scheduler.state_dict()) == before


def test_reduce_lr_on_plateau_loads_the_boundary_values_its_constructor_accepts() -> None:
    edge = {"patience": 0, "cooldown": 0, "eps": 0.0, "threshold": 0.0, "factor": 0.999, "min_lr": 0.0}
    built = lrkit.ReduceLROnPlateau(_sgd_groups((0.1,)), mode="max", threshold_mode="abs", **edge)
    scheduler = lrkit.ReduceLROnPlateau(_sgd_groups((0.1,)))
    scheduler.load_state_dict(built.state_dict())
    assert scheduler.state_dict() == built.state_dict()
    assert scheduler.mode_worse == -math.inf  # set from the loaded mode, as the constructor does
    per_group = lrkit.ReduceLROnPlateau(_sgd_groups((0.1,)), min_lr=[0.0])
    scheduler.load_state_dict(per_group.state_dict())
    assert scheduler.default_min_lr is None and scheduler.state_dict() == per_group.state_dict()


def test_the_repr_reads_as_the_constructor_call_of_the_spec() -> None:
    for scheduler in (
        lrkit.StepLR(_sgd_groups(), step_size=3, gamma=0.5),
        lrkit.ReduceLROnPlateau(_sgd_groups(), mode="max", min_lr=[0.0, 1e-4]),
    ):
        call = ast.parse(repr(scheduler), mode="eval").body
        assert isinstance(call, ast.Call) and not call.args
        assert isinstance(call.func, ast.Name) and call.func.id == type(scheduler).__name__
        spec = scheduler.to_spec()
        assert {k.arg: ast.literal_eval(k.value) for k in call.keywords} == {
            k: v for k, v in spec.items() if k != "type"
        }
        assert len(call.keywords) == len(spec) - 1 >= 2
