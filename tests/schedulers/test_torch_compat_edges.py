"""The torch classes' edges that the parity suites do not reach, each with torch 2.13 as the oracle where torch
has the behaviour: a group added after construction, a reduction of exactly ``eps``, Tensor arguments in a
reloaded state, the refusals of a state's fields and their messages, and what ``to_spec`` says after a load.
"""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

import lrkit
from lrkit import StateError
from tests.conftest import hyperparameters, lrs, round_trip, sgd

# --------------------------------------------------------------------------- ReduceLROnPlateau


def test_plateau_fills_min_lrs_for_a_group_added_later_from_a_scalar_min_lr_as_torch() -> None:
    ours_opt, theirs_opt = sgd(0.5), sgd(0.5)
    ours = lrkit.ReduceLROnPlateau(ours_opt, min_lr=0.01, patience=0)
    theirs = torch_lr.ReduceLROnPlateau(theirs_opt, min_lr=0.01, patience=0)
    for opt in (ours_opt, theirs_opt):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.3})
    for metric in (1.0, 1.0, 1.0, 1.0):
        ours.step(metric)
        theirs.step(metric)
        assert lrs(ours_opt) == lrs(theirs_opt)
    assert ours.min_lrs == theirs.min_lrs


def test_plateau_refuses_to_reduce_a_group_added_later_with_per_group_min_lrs_as_torch() -> None:
    ours_opt, theirs_opt = sgd(0.5), sgd(0.5)
    ours = lrkit.ReduceLROnPlateau(ours_opt, min_lr=[0.01], patience=0)
    theirs = torch_lr.ReduceLROnPlateau(theirs_opt, min_lr=[0.01], patience=0)
    for opt in (ours_opt, theirs_opt):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.3})
    ours.step(1.0)
    theirs.step(1.0)
    with pytest.raises(RuntimeError, match=r"differs from when `ReduceLROnPlateau` was initialized \(1\)"):
        theirs.step(1.0)
    expected = (
        "The number of param groups in the optimizer (2) differs from the number of min_lr values (1): a group "
        "was added after construction; set scheduler.min_lrs to one value per group"
    )
    with pytest.raises(RuntimeError, match=f"^{re.escape(expected)}$"):
        ours.step(1.0)
    assert lrs(ours_opt) == lrs(theirs_opt) == [0.5, 0.3]


def test_plateau_keeps_an_lr_that_a_reduction_would_lower_by_exactly_eps_as_torch() -> None:
    """0.5 - 0.5 * 0.5 == 0.25 exactly: a reduction by eps is not *more* than eps, so torch keeps the LR."""
    ours_opt, theirs_opt = sgd(0.5, 0.75), sgd(0.5, 0.75)
    ours = lrkit.ReduceLROnPlateau(ours_opt, factor=0.5, eps=0.25, patience=0)
    theirs = torch_lr.ReduceLROnPlateau(theirs_opt, factor=0.5, eps=0.25, patience=0)
    for metric in (1.0, 1.0, 1.0):
        ours.step(metric)
        theirs.step(metric)
        assert lrs(ours_opt) == lrs(theirs_opt)
    assert lrs(ours_opt)[0] == 0.5 and lrs(ours_opt)[1] < 0.75  # one group kept, the other reduced


PLATEAU_TENSOR_ARGS = {"factor": 0.5, "threshold": 0.01, "eps": 1e-6}


@pytest.mark.parametrize("name", sorted(PLATEAU_TENSOR_ARGS))
def test_plateau_with_a_tensor_argument_reloads_its_own_state_and_steps_as_torch(name: str) -> None:
    """A Tensor argument stays a Tensor in the reloaded scheduler (as torch keeps it), and the state check of the
    field accepts it as the constructor does."""
    kwargs = {name: torch.tensor(PLATEAU_TENSOR_ARGS[name], dtype=torch.float64), "patience": 1}
    ours_opt, theirs_opt = sgd(0.1), sgd(0.1)
    built = lrkit.ReduceLROnPlateau(sgd(0.1), **kwargs)
    ours = lrkit.ReduceLROnPlateau(ours_opt, **kwargs)
    theirs = torch_lr.ReduceLROnPlateau(theirs_opt, **kwargs)
    ours.load_state_dict(round_trip(built))
    assert isinstance(getattr(ours, name), torch.Tensor)
    for metric in (1.0, 0.995, 0.995, 0.9, 0.9, 0.9, 0.9, 0.5):
        ours.step(metric)
        theirs.step(metric)
        assert lrs(ours_opt) == lrs(theirs_opt)


@pytest.mark.parametrize(("mode", "worse"), [("min", math.inf), ("max", -math.inf)])
def test_plateau_takes_mode_worse_from_the_loaded_mode_as_torch(mode: str, worse: float) -> None:
    other = "max" if mode == "min" else "min"
    theirs = torch_lr.ReduceLROnPlateau(sgd(), mode=other)
    theirs.load_state_dict(torch_lr.ReduceLROnPlateau(sgd(), mode=mode).state_dict())
    ours = lrkit.ReduceLROnPlateau(sgd(), mode=other)
    ours.load_state_dict(round_trip(lrkit.ReduceLROnPlateau(sgd(), mode=mode)))
    assert ours.mode_worse == theirs.mode_worse == worse


@pytest.mark.parametrize(("counter", "limit"), [("num_bad_epochs", "patience"), ("cooldown_counter", "cooldown")])
def test_plateau_refuses_a_counter_past_its_limit(counter: str, limit: str) -> None:
    scheduler = lrkit.ReduceLROnPlateau(sgd(), patience=2, cooldown=3)
    before = round_trip(scheduler)
    bound = before[limit]
    expected = (
        f"state[{counter!r}]={bound + 1} is refused: it must be <= {limit}={bound} "
        f"(a step that passes {limit} resets it)"
    )
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**before, counter: bound + 1})
    assert round_trip(scheduler) == before
    scheduler.load_state_dict({**before, counter: bound})  # the limit itself is a state a step can leave
    assert getattr(scheduler, counter) == bound


def test_plateau_names_a_default_min_lr_that_is_no_number() -> None:
    scheduler = lrkit.ReduceLROnPlateau(sgd(), min_lr=0.01)
    before = round_trip(scheduler)
    with pytest.raises(StateError, match=r"^state\['default_min_lr'\] must be a number, got 'x'$"):
        scheduler.load_state_dict({**before, "default_min_lr": "x"})
    assert round_trip(scheduler) == before


@pytest.mark.parametrize("min_lr", [0.01, 0, (0.0, 0.01), [0.02, 0.0]], ids=["float", "int", "tuple", "list"])
def test_plateau_spec_keeps_min_lr_as_given(min_lr: Any) -> None:
    """to_spec gives the argument as it was given (a scalar stays a scalar, a tuple a tuple) while the groups
    still have it, also after a load of the scheduler's own state."""
    scheduler = lrkit.ReduceLROnPlateau(sgd(0.5, 0.4), min_lr=min_lr)
    assert scheduler.to_spec()["min_lr"] == min_lr
    assert type(scheduler.to_spec()["min_lr"]) is type(min_lr)
    scheduler.load_state_dict(scheduler.state_dict())
    assert scheduler.to_spec()["min_lr"] == min_lr
    assert type(scheduler.to_spec()["min_lr"]) is type(min_lr)


def test_plateau_spec_follows_min_lrs_loaded_from_a_state() -> None:
    scheduler = lrkit.ReduceLROnPlateau(sgd(0.5, 0.4), min_lr=0.01)
    scheduler.load_state_dict(lrkit.ReduceLROnPlateau(sgd(0.5, 0.4), min_lr=[0.02, 0.0]).state_dict())
    assert scheduler.to_spec()["min_lr"] == [0.02, 0.0]
    scheduler.load_state_dict(lrkit.ReduceLROnPlateau(sgd(0.5, 0.4), min_lr=0.03).state_dict())
    assert scheduler.to_spec()["min_lr"] == 0.03


# --------------------------------------------------------------------------- OneCycleLR


def one_cycle(optimizer: Any, **kwargs: Any) -> lrkit.OneCycleLR:
    return lrkit.OneCycleLR(optimizer, **{"max_lr": 0.3, "total_steps": 40, **kwargs})


def test_one_cycle_spec_keeps_factors_whose_ratio_the_groups_do_not_give_back_exactly() -> None:
    """0.4 / (0.4 / 11.0) is not 11.0 in floats (nor the final division's ratio 27.0): the spec keeps the
    arguments as given while the groups hold what they made, and the spec builds the same schedule."""
    kwargs = {"max_lr": (0.4, 1), "div_factor": 11.0, "final_div_factor": 27.0, "total_steps": 30}
    optimizer = sgd(0.1, 0.2, momentum=0.9)
    scheduler = one_cycle(optimizer, **kwargs)
    groups = optimizer.param_groups
    assert groups[0]["max_lr"] / groups[0]["initial_lr"] != 11.0  # the premise
    assert groups[0]["initial_lr"] / groups[0]["min_lr"] != 27.0
    spec = scheduler.to_spec()
    assert {k: spec[k] for k in kwargs} == kwargs
    assert type(spec["max_lr"]) is tuple and type(spec["max_lr"][1]) is int
    rebuilt_optimizer = sgd(0.1, 0.2, momentum=0.9)
    lrkit.build_scheduler(spec, rebuilt_optimizer)
    assert hyperparameters(rebuilt_optimizer) == hyperparameters(optimizer)


def test_one_cycle_spec_reads_the_groups_after_an_optimizer_load() -> None:
    """Where torch keeps them (the groups, so the optimizer's state carries them): after the optimizer loads the
    state of another run, to_spec describes that run, and the spec rebuilds its LRs and momenta."""
    kwargs: dict[str, Any] = {
        "max_lr": [0.4, 0.2],
        "div_factor": 8.0,
        "final_div_factor": 50.0,
        "base_momentum": [0.8, 0.7],
        "max_momentum": 0.9,
    }
    source_optimizer = sgd(0.1, 0.05, momentum=0.9)
    source = one_cycle(source_optimizer, **kwargs)
    optimizer = sgd(0.1, 0.05, momentum=0.9)
    scheduler = one_cycle(optimizer)
    optimizer.load_state_dict(source_optimizer.state_dict())
    assert scheduler.to_spec() == source.to_spec() == {**one_cycle(sgd(0.1, 0.05, momentum=0.9)).to_spec(), **kwargs}
    scheduler.load_state_dict(round_trip(source))
    rebuilt_optimizer = sgd(0.1, 0.05, momentum=0.9)
    rebuilt = lrkit.build_scheduler(scheduler.to_spec(), rebuilt_optimizer)
    for _ in range(39):
        for s in (source, rebuilt):
            s.step()
        assert hyperparameters(rebuilt_optimizer) == hyperparameters(source_optimizer)


def test_one_cycle_spec_takes_the_factors_from_the_first_group_when_the_groups_disagree_with_it() -> None:
    source_optimizer = sgd(0.1, momentum=0.9)
    one_cycle(source_optimizer, max_lr=0.4, div_factor=4.0, final_div_factor=16.0)
    optimizer = sgd(0.1, momentum=0.9)
    scheduler = one_cycle(optimizer, max_lr=0.4)
    optimizer.load_state_dict(source_optimizer.state_dict())
    spec = scheduler.to_spec()
    group = optimizer.param_groups[0]
    assert (
        (spec["div_factor"], spec["final_div_factor"])
        == (
            group["max_lr"] / group["initial_lr"],
            group["initial_lr"] / group["min_lr"],
        )
        == (4.0, 16.0)
    )


@pytest.mark.parametrize(
    "keys",
    [("initial_lr",), ("initial_lr", "max_lr"), ("initial_lr", "min_lr"), ("max_lr", "min_lr")],
    ids=lambda keys: "+".join(keys),
)
def test_one_cycle_spec_reads_the_groups_only_when_every_group_holds_all_three_lrs(keys: tuple[str, ...]) -> None:
    """An optimizer state from a run without OneCycleLR lacks some of max_lr, initial_lr, min_lr: the spec is then
    the recorded one (the step would fail on the missing key, as torch's does)."""
    optimizer = sgd(0.1, momentum=0.9)
    scheduler = one_cycle(optimizer, max_lr=0.4, div_factor=4.0)
    expected = scheduler.to_spec()
    for group in optimizer.param_groups:
        for key in ("initial_lr", "max_lr", "min_lr"):
            if key in keys:
                group[key] = 7.0
            else:
                del group[key]
    assert scheduler.to_spec() == expected


@pytest.mark.parametrize("keys", [(), ("max_momentum",), ("base_momentum",)], ids=["none", "max", "base"])
def test_one_cycle_spec_reads_momenta_only_when_every_group_holds_both(keys: tuple[str, ...]) -> None:
    optimizer = sgd(0.1, momentum=0.9)
    scheduler = one_cycle(optimizer, base_momentum=0.8, max_momentum=0.9)
    expected = scheduler.to_spec()
    for group in optimizer.param_groups:
        for key in ("max_momentum", "base_momentum"):
            if key in keys:
                group[key] = 0.5
            else:
                del group[key]
    assert scheduler.to_spec() == expected


def test_one_cycle_without_momentum_cycling_ignores_momenta_in_the_groups() -> None:
    """Groups may hold the momenta of an earlier OneCycleLR; one that does not cycle momentum does not read them."""
    optimizer = sgd(0.1, momentum=0.9)
    one_cycle(optimizer, base_momentum=0.6, max_momentum=0.7)
    scheduler = one_cycle(optimizer, cycle_momentum=False, base_momentum=0.8, max_momentum=0.9)
    assert (scheduler.to_spec()["base_momentum"], scheduler.to_spec()["max_momentum"]) == (0.8, 0.9)


def test_one_cycle_three_phase_spec_keeps_a_pct_start_that_its_phase_ends_do_not_give_back() -> None:
    """(pct_start * T - 1 + 1) / T is not 0.01 for T = 2: the spec keeps pct_start while the three phases match."""
    scheduler = one_cycle(sgd(0.1, momentum=0.9), total_steps=2, pct_start=0.01, three_phase=True)
    assert (scheduler.phase_ends[0] + 1) / 2 != 0.01  # the premise
    assert scheduler.to_spec()["pct_start"] == 0.01
    scheduler.load_state_dict(round_trip(scheduler))
    assert scheduler.to_spec()["pct_start"] == 0.01


def one_cycle_refusal(kwargs: dict[str, Any], named: str, key: str) -> str:
    """The constructor's message for ``kwargs``, with its argument ``named`` called by the state's ``key``."""
    with pytest.raises((TypeError, ValueError)) as refused:
        one_cycle(sgd(0.1, momentum=0.9), **kwargs)
    return str(refused.value).replace(named, key)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("total_steps", 0, lambda: one_cycle_refusal({"total_steps": 0}, "total_steps", "total_steps")),
        ("anneal_strategy", "exp", lambda: one_cycle_refusal({"anneal_strategy": "exp"}, "x", "x")),
        ("phase_ends", [-2.5, 39], lambda: "phase_ends[0] must be in [-2.0, inf), got phase_ends[0]=-2.5"),
    ],
    ids=["total_steps", "anneal_strategy", "phase_ends"],
)
def test_one_cycle_refuses_a_state_field_as_its_constructor_refuses_the_argument(
    key: str, value: Any, reason: Any
) -> None:
    scheduler = one_cycle(sgd(0.1, momentum=0.9))
    before = round_trip(scheduler)
    expected = f"state[{key!r}]={value!r} is refused: {reason()}"
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**before, key: value})
    assert round_trip(scheduler) == before


@pytest.mark.parametrize(
    "kwargs",
    [
        {"total_steps": 1},
        {"pct_start": 0.0},
        {"pct_start": 1.0},
        {"anneal_strategy": "linear"},
        {"pct_start": 0.0, "three_phase": True},
        {"pct_start": 0.01, "three_phase": True},
        {"pct_start": 0.9, "three_phase": True},
        {"pct_start": 1.0, "three_phase": True},
    ],
    ids=["1-step", "pct-0", "pct-1", "linear", "3-pct-0", "3-pct-0.01", "3-pct-0.9", "3-pct-1"],
)
def test_one_cycle_reloads_the_edge_states_its_constructor_makes_and_steps_as_torch(kwargs: dict[str, Any]) -> None:
    """The phase ends the constructor makes, as torch's: a first phase ending at step -1 (pct_start 0), and in
    three phases a middle end below the first (pct_start * T < 1) or past the last (pct_start > 1/2 + 1/(2T)).
    Each state loads back, and the reloaded scheduler steps as torch's does."""
    source_optimizer = sgd(0.1, momentum=0.9)
    source = one_cycle(source_optimizer, **kwargs)
    optimizer = sgd(0.1, momentum=0.9)
    scheduler = one_cycle(optimizer, **{**kwargs, "max_lr": 0.9, "anneal_strategy": "cos"})
    optimizer.load_state_dict(source_optimizer.state_dict())
    scheduler.load_state_dict(round_trip(source))
    assert round_trip(scheduler) == round_trip(source)
    theirs_optimizer = sgd(0.1, momentum=0.9)
    theirs = torch_lr.OneCycleLR(theirs_optimizer, **{"max_lr": 0.3, "total_steps": 40, **kwargs})
    assert lrs(optimizer) == lrs(theirs_optimizer)
    for _ in range(theirs.total_steps - 1):
        for opt in (optimizer, theirs_optimizer):
            opt.step()  # before the scheduler's step, as torch wants it
        scheduler.step()
        theirs.step()
        assert lrs(optimizer) == lrs(theirs_optimizer)


@pytest.mark.parametrize(
    ("three_phase", "ends"),
    [
        (False, [11.0]),
        (False, [11.0, 22.0, 39]),
        (False, [-1.5, 39]),
        (False, [39.5, 39]),
        (False, [11.0, 38]),
        (True, [11.0, 20.0, 39]),
        (True, [11.0, 22.0, 38]),
        (True, [11.0, 39]),
    ],
    ids=["too-few", "too-many", "first-below--1", "first-past-T-1", "last-not-T-1", "middle", "3-last", "3-with-2"],
)
def test_one_cycle_refuses_phase_ends_that_no_constructor_makes(three_phase: bool, ends: list[float]) -> None:
    scheduler = one_cycle(sgd(0.1, momentum=0.9))
    before = round_trip(scheduler)
    middle = "2*pct_start*T - 2, " if three_phase else ""
    expected = (
        f"state['phase_ends']={ends!r} is refused: expected [pct_start*T - 1, {middle}T - 1] for a pct_start in "
        f"[0, 1] and T = total_steps = 40 (three_phase={three_phase!r})"
    )
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**before, "three_phase": three_phase, "phase_ends": ends})
    assert round_trip(scheduler) == before


def test_one_cycle_spec_keeps_the_arguments_as_given() -> None:
    """Ints stay ints, tuples stay tuples: the spec is the call that was made, while the state agrees with it."""
    kwargs: dict[str, Any] = {
        "max_lr": (0.4, 1),
        "total_steps": 30,
        "pct_start": 0.25,
        "anneal_strategy": "linear",
        "cycle_momentum": 1,
        "base_momentum": (0.8, 0),
        "max_momentum": 1,
        "div_factor": 4,
        "final_div_factor": 8,
        "three_phase": 0,
    }
    scheduler = lrkit.OneCycleLR(sgd(0.1, 0.2, momentum=0.9), **kwargs)
    spec = scheduler.to_spec()
    assert spec == {"type": "OneCycleLR", **kwargs}
    assert [type(spec[k]) for k in kwargs] == [type(v) for v in kwargs.values()]
    assert [type(v) for v in spec["base_momentum"]] == [float, int]


def one_cycle_error(module: Any, optimizer: Any, **kwargs: Any) -> Exception:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((TypeError, ValueError)) as refused:
            module.OneCycleLR(optimizer, **{"max_lr": 0.3, "total_steps": 40, **kwargs})
    return refused.value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"final_div_factor": 0.0}, "final_div_factor must be in (0.0, inf), got final_div_factor=0.0"),
        ({"final_div_factor": -2.0}, "final_div_factor must be in (0.0, inf), got final_div_factor=-2.0"),
        ({"max_lr": [0.1, 0.2]}, "max_lr must have one value per param group (1), got 2 values: max_lr=[0.1, 0.2]"),
        ({"base_momentum": -0.1}, "base_momentum[0] must be in [0.0, inf), got base_momentum[0]=-0.1"),
        ({"max_momentum": -0.2}, "max_momentum[0] must be in [0.0, inf), got max_momentum[0]=-0.2"),
        (
            {"base_momentum": [0.8, 0.7]},
            "base_momentum must have one value per param group (1), got 2 values: base_momentum=[0.8, 0.7]",
        ),
        (
            {"max_momentum": [0.9, 0.9]},
            "max_momentum must have one value per param group (1), got 2 values: max_momentum=[0.9, 0.9]",
        ),
    ],
    ids=["final_div_factor-0", "final_div_factor-negative", "max_lr", "base_m", "max_m", "base_m-list", "max_m-list"],
)
def test_one_cycle_refuses_bad_arguments_naming_them(kwargs: dict[str, Any], message: str) -> None:
    error = one_cycle_error(lrkit, sgd(0.1, momentum=0.9), **kwargs)
    assert type(error) is ValueError and str(error) == message
    if "max_lr" in kwargs:  # torch refuses it too (in its own words)
        assert type(one_cycle_error(torch_lr, sgd(0.1, momentum=0.9), **kwargs)) is ValueError


def test_one_cycle_refuses_to_cycle_the_momentum_of_an_optimizer_without_one_as_torch() -> None:
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert type(one_cycle_error(torch_lr, adagrad)) is ValueError
    expected = "cycle_momentum=True needs an optimizer with 'momentum' or 'betas' (Adagrad has neither); pass "
    with pytest.raises(ValueError, match=f"^{re.escape(expected)}cycle_momentum=False$"):
        one_cycle(adagrad)


class GroupsOnly:
    """An optimizer in all but name: param_groups, no ``defaults``."""

    def __init__(self) -> None:
        self.param_groups = [{"params": [], "lr": 0.1, "momentum": 0.9}]


def test_one_cycle_reads_no_defaults_of_an_object_without_them() -> None:
    with pytest.raises(ValueError, match=r"\(GroupsOnly has neither\); pass cycle_momentum=False$"):
        one_cycle(GroupsOnly())
    one_cycle(GroupsOnly(), cycle_momentum=False)


def test_one_cycle_accepts_a_final_div_factor_below_1_as_torch() -> None:
    ours_opt, theirs_opt = sgd(0.1, momentum=0.9), sgd(0.1, momentum=0.9)
    ours = one_cycle(ours_opt, final_div_factor=0.5)
    theirs = torch_lr.OneCycleLR(theirs_opt, max_lr=0.3, total_steps=40, final_div_factor=0.5)
    for _ in range(39):
        for opt in (ours_opt, theirs_opt):
            opt.step()
        ours.step()
        theirs.step()
        assert hyperparameters(ours_opt) == hyperparameters(theirs_opt)


@pytest.mark.parametrize(
    "make", [lambda: sgd(0.1, 0.2, momentum=0.9), lambda: sgd(0.1, 0.2)], ids=["SGD", "no-momentum"]
)
def test_one_cycle_with_tensor_arguments_and_use_beta1_as_torch(make: Any) -> None:
    """Tensor max_lr and momenta compute as torch's (in their dtype); an SGD's momentum is no beta1, with or
    without momentum cycling."""
    cycle = make().defaults["momentum"] > 0
    kwargs: dict[str, Any] = {
        "max_lr": [torch.tensor(0.3, dtype=torch.float64), 0.2],
        "total_steps": 20,
        "cycle_momentum": cycle,
        "base_momentum": torch.tensor(0.8, dtype=torch.float64),
        "max_momentum": [torch.tensor(0.9, dtype=torch.float64), 0.95],
    }
    ours_opt, theirs_opt = make(), make()
    ours = lrkit.OneCycleLR(ours_opt, **kwargs)
    theirs = torch_lr.OneCycleLR(theirs_opt, **kwargs)
    assert ours.use_beta1 is getattr(theirs, "use_beta1", False) is False  # torch sets none without cycling
    assert hyperparameters(ours_opt) == hyperparameters(theirs_opt)
    for _ in range(19):
        for opt in (ours_opt, theirs_opt):
            opt.step()
        ours.step()
        theirs.step()
        assert hyperparameters(ours_opt) == hyperparameters(theirs_opt)


def test_one_cycle_built_at_a_later_step_continues_as_torch() -> None:
    """last_epoch=k: the groups already hold initial_lr, max_lr and min_lr; the schedule resumes at step k + 1."""
    ours_opt, theirs_opt = sgd(0.1, momentum=0.9), sgd(0.1, momentum=0.9)
    one_cycle(ours_opt)
    torch_lr.OneCycleLR(theirs_opt, max_lr=0.3, total_steps=40)
    ours = one_cycle(ours_opt, last_epoch=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch_lr.OneCycleLR(theirs_opt, max_lr=0.3, total_steps=40, last_epoch=9)
    assert ours.last_epoch == theirs.last_epoch == 10
    assert hyperparameters(ours_opt) == hyperparameters(theirs_opt)


# --------------------------------------------------------------------------- SWALR


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("anneal_epochs", -1, "anneal_epochs must be an int >= 0, got anneal_epochs=-1"),
        ("anneal_epochs", 2.5, "anneal_epochs must be an int, got anneal_epochs=2.5 (float)"),
        ("anneal_strategy", "sine", "anneal_strategy must be one of 'cos', 'linear'; got anneal_strategy='sine'"),
    ],
    ids=["anneal_epochs-negative", "anneal_epochs-float", "anneal_strategy"],
)
def test_swalr_refuses_a_state_field_its_constructor_refuses(key: str, value: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key} must be"):  # the constructor refuses it as well
        lrkit.SWALR(sgd(), swa_lr=0.05, **{key: value})
    scheduler = lrkit.SWALR(sgd(), swa_lr=0.05)
    before = round_trip(scheduler)
    expected = f"state[{key!r}]={value!r} is refused: {reason}"
    with pytest.raises(StateError, match=f"^{re.escape(expected)}$"):
        scheduler.load_state_dict({**before, key: value})
    assert round_trip(scheduler) == before


def test_swalr_loads_a_state_without_annealing() -> None:
    source = lrkit.SWALR(sgd(), swa_lr=0.05, anneal_epochs=0, anneal_strategy="linear")
    scheduler = lrkit.SWALR(sgd(), swa_lr=0.05)
    scheduler.load_state_dict(round_trip(source))
    assert round_trip(scheduler) == round_trip(source)


def test_plateau_spec_keeps_every_argument_as_given() -> None:
    kwargs: dict[str, Any] = {
        "mode": "max",
        "factor": 0.5,
        "patience": 3,
        "threshold": 0,
        "threshold_mode": "abs",
        "cooldown": 2,
        "min_lr": (0.0, 0.01),
        "eps": 0,
    }
    spec = lrkit.ReduceLROnPlateau(sgd(0.5, 0.4), **kwargs).to_spec()
    assert spec == {"type": "ReduceLROnPlateau", **kwargs}
    assert [type(spec[k]) for k in kwargs] == [type(v) for v in kwargs.values()]
