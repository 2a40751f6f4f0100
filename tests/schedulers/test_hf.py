"""lrkit.get_scheduler against transformers' own get_scheduler: every name, randomised arguments."""

from __future__ import annotations

import json
import math
import random
import warnings

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import SchedulerType  # noqa: E402
from transformers import get_scheduler as hf_get_scheduler  # noqa: E402

import lrkit  # noqa: E402
from lrkit import schedules as S  # noqa: E402

#: The names whose scheduler steps on a metric (their tests: below, and tests/schedulers/test_greedy.py).
METRIC_DRIVEN = ("reduce_lr_on_plateau", "greedy")
NAMES = [n for n in S.HF_SCHEDULER_NAMES if n not in METRIC_DRIVEN]
#: What the names that need more than the step counts are given in the name test.
REQUIRED_KWARGS: dict[str, dict] = {
    "warmup_stable_decay": {"num_decay_steps": 3},
    "cosine_with_min_lr": {"min_lr": 1e-5},
    "cosine_warmup_with_min_lr": {"min_lr": 1e-5},
}
TRIALS = 12
PAST_END = 40


def make_optimizer(lrs) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def random_case(name: str, rng: random.Random) -> tuple[int, int, dict]:
    warmup = rng.choice([0, 1, 2, rng.randint(3, 60)])
    total = warmup + rng.randint(1, 300)
    kwargs: dict = {}
    if name in ("cosine", "cosine_with_min_lr", "cosine_warmup_with_min_lr") and rng.random() < 0.7:
        kwargs["num_cycles"] = rng.choice([0.5, 0.25, 1.0, 1.5, rng.uniform(0.1, 2)])
    if name == "cosine_with_restarts" and rng.random() < 0.7:
        kwargs["num_cycles"] = rng.randint(1, 5)
    if name == "polynomial":
        kwargs.update(lr_end=rng.uniform(0, 5e-5), power=rng.choice([1.0, 2.0, rng.uniform(0.3, 4)]))
    if name == "inverse_sqrt" and rng.random() < 0.5:
        kwargs["timescale"] = rng.randint(1, 200)
    if name in ("cosine_with_min_lr", "cosine_warmup_with_min_lr"):
        kwargs["min_lr" if rng.random() < 0.5 else "min_lr_rate"] = rng.uniform(0, 5e-5)
    if name == "cosine_warmup_with_min_lr" and rng.random() < 0.5:
        kwargs["warmup_lr_rate"] = rng.uniform(0, 0.5)
    if name == "warmup_stable_decay":
        kwargs.update(
            num_decay_steps=rng.randint(0, total - warmup),
            warmup_type=rng.choice(["linear", "cosine", "1-sqrt"]),
            decay_type=rng.choice(["linear", "cosine", "1-sqrt"]),
            min_lr_ratio=rng.choice([0.0, rng.uniform(0, 0.5)]),
            num_cycles=rng.choice([0.5, 1.0]),
        )
        if rng.random() < 0.3:
            kwargs["num_stable_steps"] = rng.randint(0, 100)
    return warmup, total, kwargs


def lr_trace(scheduler, optimizer, steps: int) -> list[list[float]]:
    out = [list(scheduler.get_last_lr())]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        out.append(list(scheduler.get_last_lr()))
    return out


def assert_rel_close(ours, theirs, rel=1e-12):
    for step, (a_row, b_row) in enumerate(zip(ours, theirs)):
        for a, b in zip(a_row, b_row):
            assert math.isclose(a, b, rel_tol=rel, abs_tol=0.0), f"step {step}: lrkit {a!r} vs transformers {b!r}"


@pytest.mark.parametrize("name", NAMES)
def test_same_lrs_as_transformers_over_random_arguments(name):
    rng = random.Random(f"hf-{name}")
    for _ in range(TRIALS):
        warmup, total, kwargs = random_case(name, rng)
        lrs = [rng.uniform(1e-4, 1e-2), rng.uniform(1e-4, 1e-2)]
        args = dict(num_warmup_steps=warmup, num_training_steps=total)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers/torch warnings about arguments and step order
            theirs_opt, ours_opt = make_optimizer(lrs), make_optimizer(lrs)
            theirs = hf_get_scheduler(name, theirs_opt, scheduler_specific_kwargs=dict(kwargs), **args)
            ours = lrkit.get_scheduler(name, ours_opt, scheduler_specific_kwargs=dict(kwargs), **args)
            steps = total + PAST_END
            assert_rel_close(lr_trace(ours, ours_opt, steps), lr_trace(theirs, theirs_opt, steps))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name", NAMES)
def test_tensor_lrs_are_bit_identical_to_transformers(name, dtype):
    """With Tensor LRs transformers multiplies in the tensor's dtype; lrkit does the same, bit for bit,
    and fills the group's tensor in place."""
    rng = random.Random(f"hf-tensor-{name}")
    for _ in range(3):
        warmup, total, kwargs = random_case(name, rng)
        lrs = [rng.uniform(1e-4, 1e-2), rng.uniform(1e-4, 1e-2)]
        args = dict(num_warmup_steps=warmup, num_training_steps=total)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_opt, ours_opt = make_optimizer(lrs), make_optimizer(lrs)
            for opt in (theirs_opt, ours_opt):
                for group in opt.param_groups:
                    group["lr"] = torch.tensor(group["lr"], dtype=dtype)
            tensors = [g["lr"] for g in ours_opt.param_groups]
            theirs = hf_get_scheduler(name, theirs_opt, scheduler_specific_kwargs=dict(kwargs), **args)
            ours = lrkit.get_scheduler(name, ours_opt, scheduler_specific_kwargs=dict(kwargs), **args)
            for _ in range(total + PAST_END):
                got = [g["lr"].item() for g in ours_opt.param_groups]
                assert got == [g["lr"].item() for g in theirs_opt.param_groups]
                assert [x.item() for x in ours.get_last_lr()] == [x.item() for x in theirs.get_last_lr()]
                ours.step()
                theirs.step()
            assert all(g["lr"] is t for g, t in zip(ours_opt.param_groups, tensors))


@pytest.mark.parametrize("name", NAMES)
def test_spec_and_state_are_plain_data_and_rebuild_the_schedule(name):
    rng = random.Random(f"spec-{name}")
    warmup, total, kwargs = random_case(name, rng)
    lrs = [2e-3, 5e-4]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer = make_optimizer(lrs)
        scheduler = lrkit.get_scheduler(name, optimizer, warmup, total, dict(kwargs))
        assert isinstance(scheduler, lrkit.LRScheduler)
        assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
        spec = json.loads(json.dumps(scheduler.to_spec()))
        assert spec["type"] == "HFSchedule" and spec["name"] == name
        reference = lr_trace(scheduler, optimizer, total + 10)

        optimizer = make_optimizer(lrs)
        assert lr_trace(lrkit.build_scheduler(spec, optimizer), optimizer, total + 10) == reference
        optimizer = make_optimizer(lrs)
        native = lrkit.build_scheduler(spec, optimizer, backend="torch")
        assert type(native) is torch.optim.lr_scheduler.LambdaLR
        assert lr_trace(native, optimizer, total + 10) == reference

        optimizer = make_optimizer(lrs)
        first = lrkit.get_scheduler(name, optimizer, warmup, total, dict(kwargs))
        head = lr_trace(first, optimizer, total // 2)
        state = json.loads(json.dumps(first.state_dict()))
        resumed_optimizer = make_optimizer(lrs)
        resumed_optimizer.load_state_dict(optimizer.state_dict())
        resumed = lrkit.build_scheduler(spec, resumed_optimizer)
        resumed.load_state_dict(state)
        tail = lr_trace(resumed, resumed_optimizer, total + 10 - total // 2)
    assert head + tail[1:] == reference


def test_reduce_lr_on_plateau_is_lrkits_and_matches():
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.95, 0.9, 0.91, 0.92, 0.93, 0.94, 0.8, 0.8, 0.8, 0.8]
    kwargs = {"patience": 2, "factor": 0.5, "min_lr": 1e-5}
    ours_opt, theirs_opt = make_optimizer([1e-3]), make_optimizer([1e-3])
    ours = lrkit.get_scheduler("reduce_lr_on_plateau", ours_opt, scheduler_specific_kwargs=kwargs)
    theirs = hf_get_scheduler("reduce_lr_on_plateau", theirs_opt, scheduler_specific_kwargs=kwargs)
    assert isinstance(ours, lrkit.ReduceLROnPlateau)
    for metric in metrics:
        ours.step(metric)
        theirs.step(metric)
        assert ours_opt.param_groups[0]["lr"] == theirs_opt.param_groups[0]["lr"]
    assert ours.to_spec()["type"] == "ReduceLROnPlateau"
    json.dumps(ours.state_dict())


def test_constant_ignores_arguments_as_transformers_does():
    optimizer = make_optimizer([1e-3])
    scheduler = lrkit.get_scheduler("constant", optimizer, scheduler_specific_kwargs={"anything": 1})
    assert lr_trace(scheduler, optimizer, 5) == [[1e-3]] * 6


def test_scheduler_type_members_are_accepted():
    optimizer = make_optimizer([1e-3])
    scheduler = lrkit.get_scheduler(SchedulerType.COSINE, optimizer, 2, 10)
    assert scheduler.to_spec()["name"] == "cosine"


#: (name, arguments, error, what transformers says, what lrkit says where it words it differently).
#: Where lrkit copies transformers' message one pattern must match both.
ERRORS = [
    (
        "no_such_schedule",
        {},
        ValueError,
        r"no_such_schedule'? is not a valid SchedulerType, please select one of",
        None,
    ),
    (
        "linear",  # missing num_warmup_steps
        {"num_training_steps": 10},
        ValueError,
        r"(SchedulerType\.LINEAR|linear) requires `num_warmup_steps`, please provide that argument\.",
        None,
    ),
    (
        "cosine",  # missing num_training_steps
        {"num_warmup_steps": 1},
        ValueError,
        r"(SchedulerType\.COSINE|cosine) requires `num_training_steps`, please provide that argument\.",
        None,
    ),
    (
        "inverse_sqrt",
        {},
        ValueError,
        r"(SchedulerType\.INVERSE_SQRT|inverse_sqrt) requires `num_warmup_steps`, please provide that argument\.",
        None,
    ),
    (
        "constant_with_warmup",
        {},
        ValueError,
        r"(SchedulerType\.CONSTANT_WITH_WARMUP|constant_with_warmup) requires `num_warmup_steps`",
        None,
    ),
    (
        "warmup_stable_decay",
        {"num_warmup_steps": 1, "scheduler_specific_kwargs": {"num_decay_steps": 2}},
        ValueError,
        r"^Either num_training_steps or num_stable_steps must be specified\.$",
        None,
    ),
    (
        "cosine_with_min_lr",  # no min_lr(_rate)
        {"num_warmup_steps": 1, "num_training_steps": 10},
        ValueError,
        r"^One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`$",
        None,
    ),
    (
        "polynomial",
        {"num_warmup_steps": 1, "num_training_steps": 10, "scheduler_specific_kwargs": {"lr_end": 1.0}},
        ValueError,
        r"^lr_end \(1\.0\) must be smaller than initial lr \(0\.001\)$",
        None,
    ),
    (
        "linear",
        {"num_warmup_steps": 1, "num_training_steps": 10, "scheduler_specific_kwargs": {"num_cycles": 2}},
        TypeError,
        r"unexpected keyword argument 'num_cycles'",
        r"get_scheduler\('linear'\) got unexpected scheduler_specific_kwargs \['num_cycles'\]; accepted: none",
    ),
    (
        "cosine",
        {"num_warmup_steps": 1, "num_training_steps": 10, "scheduler_specific_kwargs": {"power": 2}},
        TypeError,
        r"unexpected keyword argument 'power'",
        r"got unexpected scheduler_specific_kwargs \['power'\]; accepted: \['num_cycles'\]",
    ),
    (
        "warmup_stable_decay",
        {
            "num_warmup_steps": 1,
            "num_training_steps": 10,
            "scheduler_specific_kwargs": {"num_decay_steps": 2, "decay_type": "step"},
        },
        ValueError,
        r"^Unknown decay type: step, expected 'linear', 'cosine' or '1-sqrt'$",
        None,
    ),
]


@pytest.mark.parametrize("name,args,error,theirs,ours", ERRORS, ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_invalid_arguments_fail_like_transformers(name, args, error, theirs, ours):
    with pytest.raises(error, match=theirs):
        hf_get_scheduler(name, make_optimizer([1e-3]), **args)
    with pytest.raises(error, match=ours or theirs):
        lrkit.get_scheduler(name, make_optimizer([1e-3]), **args)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="warmup_stable_decay"):
        lrkit.get_scheduler("cosine_annealing", make_optimizer([1e-3]))


@pytest.mark.parametrize("member", list(SchedulerType), ids=[m.value for m in SchedulerType])
def test_every_name_of_the_installed_transformers_is_supported(member):
    """The names come from the installed transformers: a name it adds fails here until lrkit supports it."""
    optimizer = make_optimizer([1e-3])
    scheduler = lrkit.get_scheduler(member.value, optimizer, 2, 10, dict(REQUIRED_KWARGS.get(member.value, {})))
    assert isinstance(scheduler, lrkit.LRScheduler)
    assert member.value in S.HF_SCHEDULER_NAMES


def test_lrkit_has_no_name_transformers_lacks():
    assert set(S.HF_SCHEDULER_NAMES) == {member.value for member in SchedulerType}


def test_a_metric_driven_name_has_no_step_factor():
    for name, kind in (("reduce_lr_on_plateau", "ReduceLROnPlateau"), ("greedy", "GreedyLR")):
        assert type(lrkit.get_scheduler(name, make_optimizer([1e-3]))).__name__ == kind
        with pytest.raises(ValueError, match=f"{name} is metric-driven .* lrkit.{kind}"):
            lrkit.HFSchedule(make_optimizer([1e-3]), name, 2, 10)


def transformers_factor(function: str, **kwargs):
    """The LR factor of one of transformers' schedule functions: its own ``lr_lambda``."""
    scheduler = getattr(transformers.optimization, function)(make_optimizer([1.0]), **kwargs)
    return scheduler.lr_lambdas[0]


def test_transformers_quirks_are_visible_beside_the_quirk_free_schedules():
    """transformers' own lambdas are the oracle for the HF factors; lrkit's quirk-free schedules differ there."""
    warmup, total, peak = 10, 100, 1e-3
    steps = range(total + 30)

    hf_cosine = transformers_factor(
        "get_cosine_schedule_with_warmup", num_warmup_steps=warmup, num_training_steps=total
    )
    assert [S.HFCosineFactor(warmup, total)(t) for t in steps] == [hf_cosine(t) for t in steps]
    ours = S.WarmupCosine(peak, warmup, total)
    theirs = [peak * hf_cosine(t) for t in steps]
    assert theirs[: total + 1] == [ours(t) for t in range(total + 1)]  # identical up to T ...
    assert np.all(np.diff(theirs[total:]) > 0) and all(ours(t) == 0.0 for t in steps[total:])  # ... then HF rises

    hf_warm = transformers_factor(
        "get_cosine_with_min_lr_schedule_with_warmup_lr_rate",
        num_warmup_steps=warmup,
        num_training_steps=total,
        min_lr_rate=0.1,
    )
    factor = S.HFCosineWarmupWithMinLRFactor(warmup, total, 0.5, 0.1)
    assert [factor(t) for t in steps] == [hf_warm(t) for t in steps]
    ours = S.WarmupCosine(1.0, warmup, total, min_lr=0.1)
    assert hf_warm(0) > 0 and ours(0) == 0.0  # step 0 is not 0 ...
    assert hf_warm(warmup - 1) == 1.0 and ours(warmup - 1) < 1.0 and ours(warmup) == 1.0  # ... peak one step early

    hf_wsd = transformers_factor(
        "get_wsd_schedule", num_warmup_steps=warmup, num_decay_steps=40, num_stable_steps=50, min_lr_ratio=0.1
    )
    factor = S.HFWSDFactor(warmup, 50, 40, min_lr_ratio=0.1)
    assert [factor(t) for t in steps] == [hf_wsd(t) for t in steps]
    assert hf_wsd(0) == 0.1 == factor(0)  # warmup starts at the floor ...
    assert S.WSD(1.0, warmup, total, decay_steps=40, min_lr=0.1)(0) == 0.0  # ... lrkit's from warmup_start_lr


# Arguments for each transformers function (one call each; the defaults are exercised too).
FUNCTION_ARGS = {
    "get_constant_schedule": {},
    "get_constant_schedule_with_warmup": {"num_warmup_steps": 4},
    "get_linear_schedule_with_warmup": {"num_warmup_steps": 3, "num_training_steps": 30},
    "get_cosine_schedule_with_warmup": {"num_warmup_steps": 3, "num_training_steps": 30, "num_cycles": 0.7},
    "get_cosine_with_hard_restarts_schedule_with_warmup": {
        "num_warmup_steps": 2,
        "num_training_steps": 30,
        "num_cycles": 3,
    },
    "get_polynomial_decay_schedule_with_warmup": {"num_warmup_steps": 3, "num_training_steps": 30, "power": 2.0},
    "get_inverse_sqrt_schedule": {"num_warmup_steps": 5},
    "get_cosine_with_min_lr_schedule_with_warmup": {"num_warmup_steps": 3, "num_training_steps": 30, "min_lr": 1e-4},
    "get_cosine_with_min_lr_schedule_with_warmup_lr_rate": {
        "num_warmup_steps": 3,
        "num_training_steps": 30,
        "min_lr_rate": 0.1,
        "warmup_lr_rate": 0.05,
    },
    "get_wsd_schedule": {"num_warmup_steps": 3, "num_decay_steps": 8, "num_training_steps": 30},
    "get_reduce_on_plateau_schedule": {"patience": 1},
    "get_greedy_schedule": {"patience": 1},
}


def test_every_transformers_schedule_function_has_an_lrkit_twin():
    """The oracle for the list is transformers' own TYPE_TO_SCHEDULER_FUNCTION."""
    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

    assert {fn.__name__ for fn in TYPE_TO_SCHEDULER_FUNCTION.values()} == set(FUNCTION_ARGS)


@pytest.mark.parametrize("function", list(FUNCTION_ARGS))
def test_schedule_functions_match_transformers(function):
    import inspect

    import transformers.optimization as hf_optimization

    theirs_fn, ours_fn = getattr(hf_optimization, function), getattr(lrkit, function)
    assert list(inspect.signature(ours_fn).parameters) == list(inspect.signature(theirs_fn).parameters)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_opt, ours_opt = make_optimizer([3e-3, 1e-3]), make_optimizer([3e-3, 1e-3])
        theirs, ours = theirs_fn(theirs_opt, **FUNCTION_ARGS[function]), ours_fn(ours_opt, **FUNCTION_ARGS[function])
        assert isinstance(ours, lrkit.LRScheduler)
        metric_driven = function in ("get_reduce_on_plateau_schedule", "get_greedy_schedule")
        for t in range(40):
            assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups], t
            if metric_driven:
                metric = 1.0 / (1 + t % 5)
                ours.step(metric)
                theirs.step(metric)
            else:
                ours.step()
                theirs.step()


@pytest.mark.parametrize("module_name", ["torch_compat", "hf_functions"])
def test_lrkit_exports_every_public_name_of_the_drop_in_modules(module_name):
    """lrkit/__init__.py lists its lazy exports by hand; this keeps that list equal to the modules' own."""
    import importlib

    module = importlib.import_module(f"lrkit.schedulers.{module_name}")
    for name in module.__all__:
        assert name in lrkit.__all__, name
        assert getattr(lrkit, name) is getattr(module, name), name
