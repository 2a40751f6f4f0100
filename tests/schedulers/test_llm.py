"""Optimizer-bound LLM schedules: pure math == bound class == spec-built (lrkit and torch backends)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import lrkit
from lrkit import schedules as S
from lrkit.schedulers.base import StateError
from lrkit.spec.clocked import advance
from tests.conftest import run_schedule

LRS = (3e-4, 1e-3)  # two param groups, two peaks

CASES = [
    (lrkit.WarmupConstant, S.WarmupConstant, {"warmup_steps": 10, "warmup_start_lr": 1e-6}),
    (lrkit.WarmupLinear, S.WarmupLinear, {"warmup_steps": 10, "total_steps": 100, "min_lr": 1e-5}),
    (lrkit.WarmupCosine, S.WarmupCosine, {"warmup_steps": 10, "total_steps": 100, "min_lr": [1e-5, 2e-5]}),
    (lrkit.WarmupPolynomial, S.WarmupPolynomial, {"warmup_steps": 5, "total_steps": 80, "power": 2.0, "min_lr": 1e-6}),
    (lrkit.WSD, S.WSD, {"warmup_steps": 10, "total_steps": 100, "decay_fraction": 0.2, "decay_shape": "1-sqrt"}),
    (
        lrkit.WSD,
        S.WSD,
        {"warmup_steps": 0, "total_steps": 90, "decay_steps": 30, "decay_shape": "exponential", "min_lr": 1e-6},
    ),
    (
        lrkit.WSDS,
        S.WSDS,
        {
            "cycle_ends": [40, 100, 160],
            "warmup_steps": 10,
            "decay_fraction": 0.25,
            "decay_shape": "cosine",
            "rewarmup_steps": 5,
            "min_lr": [1e-5, 2e-5],
        },
    ),
    (lrkit.WSDS, S.WSDS, {"cycle_ends": [30, 90, 150], "decay_steps": 20, "decay_shape": "1-sqrt"}),
    (
        lrkit.PowerLR,
        S.PowerLR,
        {"coefficient": [3e-3, 1e-2], "exponent": -0.5, "warmup_steps": 10, "total_steps": 150, "decay_steps": 30},
    ),
    (lrkit.PowerLR, S.PowerLR, {"coefficient": 1e-3, "exponent": -0.51, "warmup_start_lr": 0.0}),
    (lrkit.LogWarmup, S.LogWarmup, {"warmup_steps": 30, "warmup_start_lr": [1e-6, 1e-7]}),
    (lrkit.InverseSqrt, S.InverseSqrt, {"warmup_steps": 10, "warmup_start_lr": 1e-7}),
    (
        lrkit.CosineWithRestarts,
        S.CosineWithRestarts,
        {"cycle_steps": 20, "cycle_mult": 2, "cycle_decay": 0.5, "warmup_steps": 5, "num_cycles": 3},
    ),
]
IDS = [f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)]
STEPS = 160


def make_optimizer(lrs=LRS) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    return torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def pure_for_group(cls, pure_cls, kwargs, group):
    """The pure schedule of ``group``: a list of a per-group argument is one value per group."""
    args = {k: (v[group] if isinstance(v, list) and k in cls._per_group else v) for k, v in kwargs.items()}
    return pure_cls(LRS[group], **args)


@pytest.mark.parametrize("cls,pure_cls,kwargs", CASES, ids=IDS)
def test_bound_class_sets_exactly_the_pure_schedule(cls, pure_cls, kwargs):
    optimizer = make_optimizer()
    scheduler = cls(optimizer, **kwargs)
    lrs = np.array(run_schedule(scheduler, optimizer, STEPS))
    for group in range(2):
        pure = pure_for_group(cls, pure_cls, kwargs, group)
        assert lrs[:, group].tolist() == [pure(t) for t in range(STEPS + 1)]
    assert scheduler.get_last_lr() == lrs[-1].tolist()
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)


@pytest.mark.parametrize("cls,pure_cls,kwargs", CASES, ids=IDS)
def test_spec_builds_the_same_schedule_with_both_backends(cls, pure_cls, kwargs):
    optimizer = make_optimizer()
    reference = run_schedule(cls(optimizer, **kwargs), optimizer, STEPS)
    spec = json.loads(json.dumps(cls(make_optimizer(), **kwargs).to_spec()))
    assert spec["type"] == cls.__name__

    optimizer = make_optimizer()
    assert run_schedule(lrkit.build_scheduler(spec, optimizer), optimizer, STEPS) == reference

    optimizer = make_optimizer()
    native = lrkit.build_scheduler(spec, optimizer, backend="torch")
    assert type(native) is torch.optim.lr_scheduler.LambdaLR
    # torch computes base_lr * (schedule(t) / base_lr): the same LR up to about one rounding
    np.testing.assert_allclose(run_schedule(native, optimizer, STEPS), reference, rtol=4.5e-16, atol=0)


def test_torch_backend_fills_in_defaults_from_a_minimal_spec():
    optimizer = make_optimizer()
    native = lrkit.build_scheduler({"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 9}, optimizer, "torch")
    expected = [S.WarmupCosine(LRS[0], 3, 9)(t) for t in range(12)]
    np.testing.assert_allclose([lr[0] for lr in run_schedule(native, optimizer, 11)], expected, rtol=4.5e-16, atol=0)


@pytest.mark.parametrize("cls,pure_cls,kwargs", CASES, ids=IDS)
def test_json_state_round_trip_resumes_exactly(cls, pure_cls, kwargs):
    optimizer = make_optimizer()
    full = run_schedule(cls(optimizer, **kwargs), optimizer, STEPS)

    optimizer = make_optimizer()
    first = cls(optimizer, **kwargs)
    head = run_schedule(first, optimizer, 37)
    state = json.loads(json.dumps(first.state_dict()))
    optimizer_state = optimizer.state_dict()

    resumed_optimizer = make_optimizer()
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed = cls(resumed_optimizer, **kwargs)
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 37
    tail = run_schedule(resumed, resumed_optimizer, STEPS - 37)
    assert head + tail[1:] == full


def test_loaded_state_carries_its_schedules():
    optimizer = make_optimizer()
    saved = lrkit.WarmupCosine(optimizer, warmup_steps=10, total_steps=100, min_lr=1e-5)
    for _ in range(20):
        saved.step()
    other = lrkit.WarmupCosine(make_optimizer(), warmup_steps=1, total_steps=50)
    other.load_state_dict(saved.state_dict(), policy="checkpoint")
    assert other.schedules == saved.schedules
    other.step()
    saved.step()
    assert other.get_last_lr() == saved.get_last_lr()


@pytest.mark.parametrize("name", ["WarmupCosine", "HFSchedule", "Clocked"])
def test_a_state_of_another_schedule_is_refused_with_the_diff_and_changes_nothing(name: str) -> None:
    """An LLM schedule never runs another schedule silently: the default policy is strict, and the error
    lists each changed argument; the state of the same schedule loads."""
    specs = {
        "WarmupCosine": {"type": "WarmupCosine", "warmup_steps": 10, "total_steps": 100, "min_lr": 1e-5},
        "HFSchedule": lrkit.get_scheduler("cosine", make_optimizer(), 10, 100).to_spec(),
        "Clocked": {
            "type": "Clocked",
            "unit": "tokens",
            "schedule": {"type": "WarmupCosine", "warmup_steps": 10, "total_steps": 100},
        },
    }
    spec = specs[name]
    length = "num_training_steps" if name == "HFSchedule" else "total_steps"
    longer = json.loads(json.dumps(spec))
    (longer.get("schedule") or longer)[length] = 200
    saved = lrkit.build_scheduler(spec, make_optimizer())
    for _ in range(20):
        advance(saved, 1)  # a step, or one token on the Clocked schedule
    state = json.loads(json.dumps(saved.state_dict()))
    assert state["spec"] == saved.to_spec()
    mine = lrkit.build_scheduler(longer, make_optimizer())
    before = json.dumps(mine.state_dict())
    with pytest.raises(StateError, match=rf"{length}: 100 -> 200") as refused:
        mine.load_state_dict(state)
    assert "policy='checkpoint'" in str(refused.value)
    assert json.dumps(mine.state_dict()) == before
    with pytest.raises(StateError, match="TrainingSchedule"):
        mine.load_state_dict(state, policy="extend")
    same = lrkit.build_scheduler(spec, make_optimizer())
    same.load_state_dict(state)
    assert same.last_epoch == 20 and same.get_last_lr() == saved.get_last_lr()
    mine.load_state_dict(state, policy="checkpoint")
    assert mine.to_spec() != longer and mine.get_last_lr() == saved.get_last_lr()


def test_a_bad_state_changes_nothing():
    scheduler = lrkit.WarmupCosine(make_optimizer(), warmup_steps=10, total_steps=100)
    before = scheduler.state_dict()
    bad = json.loads(json.dumps(before))
    bad["last_epoch"] = 50
    bad["schedules"][1]["min_lr"] = 1.0  # above its peak
    with pytest.raises(StateError, match="min_lr"):
        scheduler.load_state_dict(bad)
    bad["schedules"] = bad["schedules"][:1]
    with pytest.raises(StateError, match="one schedule per param group"):
        scheduler.load_state_dict(bad)
    assert scheduler.state_dict() == before


def test_per_group_floor_above_a_groups_peak_is_an_error_naming_the_group():
    with pytest.raises(ValueError, match=r"min_lr must be <= peak_lr.*param_groups\[0\]"):
        lrkit.WarmupCosine(make_optimizer(), warmup_steps=1, total_steps=10, min_lr=[5e-4, 5e-4])
    with pytest.raises(ValueError, match="one value per param group"):
        lrkit.WarmupCosine(make_optimizer(), warmup_steps=1, total_steps=10, min_lr=[1e-5])


def test_closed_form_jump_and_resume_with_last_epoch():
    optimizer = make_optimizer()
    scheduler = lrkit.WSD(optimizer, warmup_steps=10, total_steps=100, decay_steps=20)
    scheduler.step(90)
    assert scheduler.get_last_lr() == [S.WSD(lr, 10, 100, decay_steps=20)(90) for lr in LRS]
    # as in torch, constructing with last_epoch=e performs the step to e + 1
    resumed = lrkit.WSD(optimizer, warmup_steps=10, total_steps=100, decay_steps=20, last_epoch=90)
    assert resumed.last_epoch == 91
    resumed.step()
    assert resumed.get_last_lr() == [S.WSD(lr, 10, 100, decay_steps=20)(92) for lr in LRS]
    with pytest.raises(KeyError, match="initial_lr"):
        lrkit.WSD(make_optimizer(), warmup_steps=1, total_steps=10, decay_steps=2, last_epoch=3)


def test_tensor_lr_is_filled_in_place():
    param = torch.nn.Parameter(torch.zeros(1))
    lr = torch.tensor(1e-3)
    optimizer = torch.optim.AdamW([param], lr=lr)
    scheduler = lrkit.WarmupLinear(optimizer, warmup_steps=2, total_steps=10)
    scheduler.step()
    # The oracle: the pure schedule's LR at step 1, rounded to the tensor's float32 as fill_ does.
    expected = torch.tensor(S.WarmupLinear(1e-3, 2, 10)(1), dtype=lr.dtype)
    assert optimizer.param_groups[0]["lr"] is lr and torch.equal(lr, expected)


def test_inside_sequential_lr_with_both_backends():
    spec = {
        "type": "SequentialLR",
        "milestones": [20],
        "schedulers": [
            {"type": "WarmupConstant", "warmup_steps": 20},
            {"type": "WarmupCosine", "warmup_steps": 0, "total_steps": 80, "min_lr": 1e-6},
        ],
    }
    optimizer = make_optimizer()
    ours = run_schedule(lrkit.build_scheduler(spec, optimizer), optimizer, 120)
    optimizer = make_optimizer()
    theirs = run_schedule(lrkit.build_scheduler(spec, optimizer, backend="torch"), optimizer, 120)
    np.testing.assert_allclose(ours, theirs, rtol=4.5e-16, atol=0)
    expected = [
        S.WarmupConstant(LRS[0], 20)(t) if t < 20 else S.WarmupCosine(LRS[0], 0, 80, 1e-6)(t - 20) for t in range(121)
    ]
    assert [lr[0] for lr in ours] == expected


def test_to_spec_describes_loaded_schedules() -> None:
    """A state from a differently built schedule: to_spec() gives the schedule that runs, as data."""

    def opt() -> torch.optim.Optimizer:
        return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)

    source_opt = opt()
    source = lrkit.WarmupCosine(source_opt, warmup_steps=10, total_steps=100, min_lr=1e-4)
    for _ in range(30):
        source.step()
    target = lrkit.WarmupCosine(opt(), warmup_steps=5, total_steps=50, min_lr=0.0)
    same = lrkit.WarmupCosine(opt(), warmup_steps=10, total_steps=100, min_lr=1e-4)
    state = json.loads(json.dumps(source.state_dict()))
    same.load_state_dict(state)
    assert same.to_spec() == source.to_spec()  # the same schedule: the constructor's spec still holds
    target.load_state_dict(state, policy="checkpoint")
    assert target.to_spec() == source.to_spec()  # the saved spec rebuilds what runs: it describes it
    del state["spec"]  # a state saved before states carried their spec: the schedules, as data
    target = lrkit.WarmupCosine(opt(), warmup_steps=5, total_steps=50, min_lr=0.0)
    target.load_state_dict(state)
    spec = target.to_spec()
    assert spec["type"] == "PureSchedule"
    rebuilt_opt = opt()
    rebuilt = lrkit.build_scheduler(json.loads(json.dumps(spec)), rebuilt_opt)
    for step in range(100):
        assert rebuilt.schedules[0](step) == source.schedules[0](step)
