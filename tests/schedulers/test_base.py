"""The base scheduler's helpers and protocol (``lrkit.schedulers.base``), pinned where mutation testing
found nothing that would notice a change: torch's own classes are the oracle wherever they do the same."""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

import lrkit
from lrkit.schedulers import base

pytestmark = pytest.mark.filterwarnings(r"ignore:Detected call of `lr_scheduler.step\(\)` before:UserWarning")


def _sgd(*lrs: Any) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs or (0.1,)])


# ------------------------------------------------------------------ stepping


def test_update_lr_without_an_epoch_steps_as_torchs_does() -> None:
    """``_update_lr()`` is torch's private one-step update (torch's own composites call it): with no epoch it
    advances one step, exactly as torch's."""
    ours_opt, theirs_opt = _sgd(0.2, 0.05), _sgd(0.2, 0.05)
    ours = lrkit.StepLR(ours_opt, step_size=2, gamma=0.5)
    theirs = torch_lr.StepLR(theirs_opt, step_size=2, gamma=0.5)
    for _ in range(5):
        ours._update_lr()
        theirs._update_lr()
        assert ours.last_epoch == theirs.last_epoch
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert [g["lr"] for g in ours_opt.param_groups] == [g["lr"] for g in theirs_opt.param_groups]
    assert ours.last_epoch == 5  # the control: it did advance


def _epoch_warning(make: Any) -> warnings.WarningMessage:
    scheduler = make(_sgd(0.1), step_size=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scheduler.step(2)  # the warning must point at this line's file, the caller's
    (warning,) = [w for w in caught if "epoch" in str(w.message)]
    return warning


def test_step_with_an_epoch_warns_as_torch_does() -> None:
    ours, theirs = _epoch_warning(lrkit.StepLR), _epoch_warning(torch_lr.StepLR)
    assert str(ours.message) == str(theirs.message) == base.EPOCH_DEPRECATION_WARNING
    assert ours.category is theirs.category is UserWarning


@pytest.mark.skipif(
    "MUTANT_UNDER_TEST" in os.environ, reason="mutmut's trampolines add stack frames between the caller and lrkit"
)
def test_the_epoch_warning_points_at_the_callers_line_as_torchs_does() -> None:
    ours, theirs = _epoch_warning(lrkit.StepLR), _epoch_warning(torch_lr.StepLR)
    assert ours.filename == theirs.filename == __file__
    assert ours.lineno == theirs.lineno


# ------------------------------------------------------------------ helpers


def test_short_keeps_a_repr_up_to_the_limit_and_cuts_a_longer_one_to_it() -> None:
    assert base._short("x" * 78) == repr("x" * 78)  # 80 characters: kept
    cut = base._short("x" * 79)  # 81 characters
    assert cut == repr("x" * 79)[:65] + "... (81 chars)"
    assert base._short(10**400) == str(10**400)[:65] + "... (401 chars)"
    assert len(base._short(10**400)) == 80
    assert base._short("abcdefghij" * 3, limit=20) == "'abcd... (32 chars)"


def test_a_composite_names_a_child_that_is_not_an_lrkit_scheduler_or_is_bound_elsewhere() -> None:
    optimizer = _sgd(0.1)
    with pytest.raises(
        TypeError,
        match=r"^SequentialLR schedulers\[1\] must be an lrkit scheduler, got torch\.optim\.lr_scheduler\.StepLR$",
    ):
        lrkit.SequentialLR(optimizer, [lrkit.StepLR(optimizer, 2), torch_lr.StepLR(optimizer, 3)], milestones=[2])
    with pytest.raises(
        ValueError,
        match=r"^ChainedScheduler expects all schedulers to belong to the same optimizer, but schedulers\[1\] "
        r"\(ExponentialLR\) is bound to a different one$",
    ):
        lrkit.ChainedScheduler([lrkit.StepLR(optimizer, 2), lrkit.ExponentialLR(_sgd(0.1), 0.9)], optimizer)
    lrkit.ChainedScheduler([lrkit.StepLR(optimizer, 2), lrkit.ExponentialLR(optimizer, 0.9)], optimizer)  # control


def test_check_count_takes_ints_up_to_2_to_the_53() -> None:
    assert base.check_count("n", base.MAX_COUNT) == 2**53
    assert base.check_count("n", -1, minimum=-1) == -1
    with pytest.raises(ValueError, match=r"^n must be an int in \[0, 2\*\*53\], got n=9007199254740993$"):
        base.check_count("n", 2**53 + 1)
    with pytest.raises(ValueError, match=r"^n must be an int in \[-1, 2\*\*53\], got n=10{64}\.\.\. \(401 chars\)$"):
        base.check_count("n", 10**400, minimum=-1)
    with pytest.raises(ValueError, match=r"^n must be an int >= 0, got n=-1$"):
        base.check_count("n", -1)
    with pytest.raises(TypeError, match=r"^n must be an int"):
        base.check_count("n", True)


def test_check_each_checks_every_entry_and_names_it() -> None:
    assert base.check_each("lrs", (0.5, 1)) == [0.5, 1]
    with pytest.raises(TypeError, match=r"^lrs must be a list of numbers, got lrs=0\.5$"):
        base.check_each("lrs", 0.5)
    with pytest.raises(ValueError, match=r"^lrs\[1\] must be"):
        base.check_each("lrs", [0.5, -1.0], low=0.0)
    with pytest.raises(TypeError, match=r"^lrs\[0\] must be a real number"):
        base.check_each("lrs", ["0.5"])


def test_state_value_names_the_key_and_the_stored_value() -> None:
    def refuse(value: Any) -> Any:
        raise ValueError("x must be > 0")

    assert base.state_value("k", 3, lambda v: v + 1) == 4
    with pytest.raises(base.StateError, match=r"^state\['k'\]=0\.5 is refused: x must be > 0$"):
        base.state_value("k", torch.tensor(0.5), refuse)  # a Tensor is shown as the float it stores
    with pytest.raises(base.StateError, match=r"^state\['k'\]='inf' is refused: x must be > 0$"):
        base.state_value("k", float("inf"), refuse)
    thing = object()
    with pytest.raises(base.StateError, match=rf"^state\['k'\]={re.escape(repr(thing))} is refused"):
        base.state_value("k", thing, refuse)  # not plain data: shown as it is
    inner = base.StateError("already a state error")
    with pytest.raises(base.StateError, match=r"^already a state error$") as raised:
        base.state_value("k", 1, lambda v: (_ for _ in ()).throw(inner))
    assert raised.value is inner


@pytest.mark.parametrize(
    "optimizer,error,match",
    [
        (
            None,
            TypeError,
            r"^opt must be a torch\.optim\.Optimizer \(an object with a non-empty param_groups list\), "
            r"got opt=NoneType$",
        ),
        (type("O", (), {"param_groups": []})(), TypeError, r"got opt=O$"),
        (type("O", (), {"param_groups": ({"lr": 1.0},)})(), TypeError, r"got opt=O$"),
        (type("O", (), {"param_groups": [{"lr": 1.0}, 5]})(), TypeError, r"got opt=O$"),
        (
            type("O", (), {"param_groups": [{"lr": 1.0}, {"momentum": 0.9}]})(),
            ValueError,
            r"^opt\.param_groups\[1\] has no 'lr' key$",
        ),
    ],
    ids=["none", "no-groups", "a-tuple", "a-group-not-a-dict", "a-group-without-lr"],
)
def test_check_optimizer(optimizer: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        base.check_optimizer(optimizer, "opt")


def test_check_optimizer_default_name_and_a_good_one() -> None:
    base.check_optimizer(_sgd(0.1, 0.2))
    with pytest.raises(TypeError, match=r"^optimizer must be .* got optimizer=int$"):
        base.check_optimizer(3)


def test_set_group_value_fills_a_tensor_in_place_and_replaces_anything_else() -> None:
    lr = torch.tensor(0.1, dtype=torch.float64)
    group: dict[str, Any] = {"lr": lr, "momentum": 0.9}
    base.set_group_value(group, "lr", 0.25)
    assert group["lr"] is lr and lr.item() == 0.25
    base.set_group_value(group, "momentum", 0.5)
    base.set_group_value(group, "beta", 0.7)
    assert group == {"lr": lr, "momentum": 0.5, "beta": 0.7}


def test_group_lrs_and_group_values() -> None:
    optimizer = _sgd(0.1, torch.tensor(0.2, dtype=torch.float64))
    assert base.group_lrs(optimizer) == [0.1, 0.2]
    assert all(type(v) is float for v in base.group_lrs(optimizer))
    values = base.group_values(optimizer)
    assert values[0] == 0.1 and type(values[0]) is float
    tensor = optimizer.param_groups[1]["lr"]
    assert isinstance(values[1], torch.Tensor) and values[1] is not tensor and values[1].dtype == torch.float64
    assert values[1].item() == 0.2
    tensors = _sgd(torch.tensor(0.1), torch.tensor(0.3))
    copies = base.group_values(tensors)
    assert [v.item() for v in copies] == [g["lr"].item() for g in tensors.param_groups]
    assert all(c is not g["lr"] for c, g in zip(copies, tensors.param_groups))  # copies, never the groups' own
    floats = _sgd(0.1, 0.3)
    assert base.group_values(floats) == [0.1, 0.3]
    floats.param_groups[0]["momentum"] = 0.9
    assert base.group_values(floats, "momentum") == [0.9, 0]


def test_like_is_a_tensor_of_the_templates_dtype_or_a_float() -> None:
    template = torch.tensor(1.0, dtype=torch.float16)
    value = base.like(template, 0.3)
    assert (
        isinstance(value, torch.Tensor)
        and value.dtype == torch.float16
        and value.item() == torch.tensor(0.3, dtype=torch.float16).item()
    )
    assert type(base.like(None, 3)) is float and base.like(2.0, 3) == 3.0


def test_python_scalars_turns_numpy_scalars_into_python_numbers_everywhere() -> None:
    np = pytest.importorskip("numpy")
    array = np.array([1, 2])
    function = abs
    got = base.python_scalars(
        {"a": np.int64(3), "b": [np.float32(0.5), (np.bool_(True), 2)], "c": array, "d": function, "e": np.float64(2.5)}
    )
    assert got["a"] == 3 and type(got["a"]) is int
    assert got["b"][0] == 0.5 and type(got["b"][0]) is float
    assert got["b"][1] == (True, 2) and type(got["b"][1]) is tuple and type(got["b"][1][0]) is bool
    assert got["c"] is array and got["d"] is function
    assert got["e"] == 2.5 and type(got["e"]) is float
    assert type(base.python_scalars(np.int32(7))) is int


def test_plain_makes_json_primitives() -> None:
    np = pytest.importorskip("numpy")
    assert base._plain(
        {1: (True, None, 3, "s", 0.5), "t": torch.tensor(0.25), "inf": [float("inf"), -float("inf"), float("nan")]}
    ) == {"1": [True, None, 3, "s", 0.5], "t": 0.25, "inf": ["inf", "-inf", "nan"]}
    assert type(base._plain(np.float32(0.5))) is float
    assert base._plain(torch.tensor(float("inf"))) == "inf"
    with pytest.raises(TypeError, match=r"^cannot store object in a plain-data state: <object object at"):
        base._plain(object())


@pytest.mark.parametrize(
    "current,value,same",
    [
        (True, False, True),
        (True, 1, False),
        (1, True, False),
        (1, 2.5, True),
        (1.0, 2, True),
        (1, "1", False),
        ("a", "b", True),
        ("a", 1, False),
        ([1, 2.0], [3], True),
        ([1, 2.0], ["3"], False),
        ((1, 2), [3, 4], True),
        ([1, 2], (3, 4), False),
        ([], ["x"], True),
        (["x"], [1], True),
        (None, "anything", True),
    ],
)
def test_same_kind(current: Any, value: Any, same: bool) -> None:
    assert base._same_kind(current, value) is same


def test_decode_float() -> None:
    assert [str(base.decode_float("k", v)) for v in ("inf", "-inf", "nan")] == ["inf", "-inf", "nan"]
    assert base.decode_float("k", 3) == 3.0 and type(base.decode_float("k", 3)) is float
    for bad in (True, "1.5", None):
        with pytest.raises(base.StateError, match=rf"^state\['k'\] must be a number, got {re.escape(repr(bad))}$"):
            base.decode_float("k", bad)


# ------------------------------------------------------------------ construction and state


def test_resuming_needs_every_groups_initial_lr_as_torch() -> None:
    optimizer = _sgd(0.1, 0.2)
    optimizer.param_groups[0]["initial_lr"] = 0.1
    with pytest.raises(KeyError, match=r"param 'initial_lr' is not specified in param_groups\[1\]"):
        torch_lr.StepLR(optimizer, 2, last_epoch=3)  # the oracle refuses it too
    with pytest.raises(
        KeyError,
        match=r"param 'initial_lr' is not specified in param_groups\[1\] when resuming scheduler with last_epoch "
        r">= 0 \(last_epoch=3\): load the optimizer state first, or use last_epoch=-1",
    ):
        lrkit.StepLR(optimizer, 2, last_epoch=3)


def test_an_existing_initial_lr_is_kept_as_torch_keeps_it() -> None:
    ours_opt, theirs_opt = _sgd(0.1, 0.2), _sgd(0.1, 0.2)
    for optimizer in (ours_opt, theirs_opt):
        optimizer.param_groups[1]["initial_lr"] = 0.4
    ours, theirs = lrkit.StepLR(ours_opt, 2, 0.5), torch_lr.StepLR(theirs_opt, 2, 0.5)
    assert ours.base_lrs == theirs.base_lrs == [0.1, 0.4]
    for _ in range(3):
        ours.step()
        theirs.step()
    assert ours.get_last_lr() == theirs.get_last_lr()


def test_a_tensor_lr_state_loads_back_as_tensors_of_its_dtype() -> None:
    lr = torch.tensor(0.1, dtype=torch.float64)
    scheduler = lrkit.ExponentialLR(_sgd(lr, 0.05), 0.9)
    scheduler.step()
    state = scheduler.state_dict()
    assert state["base_lrs"] == [0.1, 0.05] and all(type(v) is float for v in state["_last_lr"])
    other = lrkit.ExponentialLR(_sgd(torch.tensor(0.3, dtype=torch.float64), 0.05), 0.9)
    other.load_state_dict(state)
    assert isinstance(other.base_lrs[0], torch.Tensor) and other.base_lrs[0].dtype == torch.float64
    assert other.base_lrs[0].item() == 0.1 and type(other.base_lrs[1]) is float
    assert [float(v) for v in other.get_last_lr()] == state["_last_lr"]


def test_a_state_with_a_type_that_is_no_class_name_or_unknown_keys_is_refused() -> None:
    scheduler = lrkit.StepLR(_sgd(0.1), 2)
    state = scheduler.state_dict()
    with pytest.raises(
        base.StateError, match=r"^cannot load a 3 \(a 'type' that is no class name\) state into a StepLR$"
    ):
        scheduler.load_state_dict({**state, "type": 3})
    with pytest.raises(
        base.StateError,
        match=r"^cannot load this state into StepLR: it has keys \['T_max', 'eta_min'\] that no StepLR state has "
        r"\(a state of another class\?\); a StepLR state holds the keys \[",
    ):
        scheduler.load_state_dict({**state, "eta_min": 0.0, "T_max": 3})
    with pytest.raises(base.StateError, match=r"it has keys \['1'\] that no StepLR state has"):
        scheduler.load_state_dict({**state, 1: 0})
    scheduler.load_state_dict({**state, "verbose": False, "_is_initial": False})  # torch's own extra keys: ignored


def test_load_state_dict_policies() -> None:
    saved = lrkit.StepLR(_sgd(0.1), 2, gamma=0.5)
    saved.step()
    state = saved.state_dict()
    scheduler = lrkit.StepLR(_sgd(0.1), 3, gamma=0.5)
    refused = (
        "StepLR.load_state_dict(policy='extend'): a scheduler loads its state under 'strict' or 'checkpoint'; "
        "override, extend and cooldown:N put a new schedule in force at the resume step, which "
        "lrkit.TrainingSchedule(spec, optimizer, resume_policy=...) does"
    )
    with pytest.raises(base.StateError, match=f"^{re.escape(refused)}$"):
        scheduler.load_state_dict(state, policy="extend")
    differs = (
        "the state was saved by another schedule than this StepLR's; it differs in:\n  step_size: 2 -> 3\n"
        "load_state_dict(state, policy='checkpoint') keeps the saved schedule; lrkit.TrainingSchedule(spec, "
        "optimizer, resume_policy='extend' | 'override' | 'cooldown:N').load_state_dict(state) puts this one in "
        "force from the saved step"
    )
    with pytest.raises(base.StateError, match=f"^{re.escape(differs)}$"):
        scheduler.load_state_dict(state, policy="strict")
    with pytest.raises(base.StateError, match=r"^state_dict must be a dict, got list$"):
        scheduler.load_state_dict([state])  # type: ignore[arg-type]
    with pytest.raises(base.StateError, match=r"^StepLR state is missing keys \['step_size', 'gamma'\]$"):
        scheduler.load_state_dict({k: v for k, v in state.items() if k not in ("gamma", "step_size")})
    assert scheduler.to_spec()["step_size"] == 3  # nothing loaded
    scheduler.load_state_dict(state)  # the drop-in classes' default: "checkpoint", the saved arguments win
    assert scheduler.to_spec() == saved.to_spec() and scheduler.state_dict() == state
    same = lrkit.StepLR(_sgd(0.1), 2, gamma=0.5)
    same.load_state_dict(state, policy="strict")  # the same schedule loads under strict
    assert same.state_dict() == state
    no_spec = {k: v for k, v in state.items() if k != "spec"}
    lrkit.StepLR(_sgd(0.1), 3, gamma=0.5).load_state_dict(no_spec, policy="strict")  # an older state: no spec


def test_a_spec_holds_floats_where_the_arguments_were_tensors() -> None:
    optimizer = _sgd(0.1, 0.2)
    low = torch.tensor(0.01)
    scheduler = lrkit.CyclicLR(optimizer, base_lr=[low, 0.02], max_lr=[torch.tensor(0.5), 1], cycle_momentum=False)
    spec = scheduler.to_spec()
    assert spec["base_lr"] == [float(low), 0.02] and [type(v) for v in spec["base_lr"]] == [float, float]
    assert spec["max_lr"] == [0.5, 1] and [type(v) for v in spec["max_lr"]] == [float, int]  # the rest as given
    assert "spec" in scheduler.state_dict()  # data: saved with the state


def test_a_spec_keeps_the_arguments_as_given_and_is_a_copy() -> None:
    """``gamma=1`` stays the int 1 in the spec (1 and 1.0 fingerprint differently, so a float would read as another
    schedule on resume), and changing a returned spec changes nothing in the scheduler."""
    from lrkit.schedulers.llm import PureSchedule
    from lrkit.spec import spec_fingerprint

    step = lrkit.StepLR(_sgd(0.1), 4, gamma=1)
    assert step.to_spec() == {"type": "StepLR", "step_size": 4, "gamma": 1} and type(step.to_spec()["gamma"]) is int
    assert spec_fingerprint(step.to_spec()) == spec_fingerprint({"type": "StepLR", "step_size": 4, "gamma": 1})
    cosine = lrkit.CosineAnnealingLR(_sgd(0.1), 7, eta_min=0)
    assert type(cosine.to_spec()["eta_min"]) is int
    pure = PureSchedule(_sgd(0.1), [{"type": "Constant", "value": 0.1}])
    spec = pure.to_spec()
    spec["schedules"][0]["value"] = 0.5
    assert pure.to_spec() == {"type": "PureSchedule", "schedules": [{"type": "Constant", "value": 0.1}]}


def test_a_spec_is_a_deep_copy_of_an_argument_that_is_not_a_state_field() -> None:
    """PerGroup's ``schedulers`` (a list of specs) is recorded, not a state field: changing a spec nested in a
    returned spec changes nothing in the scheduler."""
    child = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 8}
    per_group = lrkit.PerGroup(_sgd(0.1, 0.2), [child, {**child, "total_steps": 6}])
    spec = per_group.to_spec()
    spec["schedulers"][0]["total_steps"] = 99
    assert per_group.to_spec() == {"type": "PerGroup", "schedulers": [child, {**child, "total_steps": 6}]}


def test_a_recorded_argument_that_is_not_data_is_never_the_same_as_a_live_value() -> None:
    """``_same_data(live, recorded)``: ``0`` and ``0.0`` say the same, and so do a Tensor and its float; a callable
    object (a LambdaLR-style argument) is not the plain data a state holds, even where its attributes are."""

    class Scale:
        def __init__(self) -> None:
            self.factor = 2

        def __call__(self, step: int) -> float:
            return self.factor * step

    assert base._same_data(0.0, 0) and base._same_data(0.5, torch.tensor(0.5))
    assert not base._same_data(0.5, 0.25)
    scale = Scale()
    assert not base._same_data(vars(scale), scale)
    assert not base._same_data(None, abs)


def test_a_loaded_state_gives_its_arguments_as_stored_whatever_was_loaded_before() -> None:
    """After a load, ``to_spec()`` is the saved spec, typed as stored (``gamma=1.0`` over the constructor's
    ``gamma=1``: they fingerprint differently), so the same state then loads under ``strict``; an earlier load
    makes no difference."""
    other = lrkit.StepLR(_sgd(0.1), 4, gamma=0.5).state_dict()
    stored = lrkit.StepLR(_sgd(0.1), 4, gamma=1.0).state_dict()
    direct = lrkit.StepLR(_sgd(0.1), 4, gamma=1)
    direct.load_state_dict(stored)
    twice = lrkit.StepLR(_sgd(0.1), 4, gamma=1)
    twice.load_state_dict(other)
    twice.load_state_dict(stored)
    for scheduler in (direct, twice):
        assert scheduler.to_spec() == stored["spec"] and type(scheduler.to_spec()["gamma"]) is float
        scheduler.load_state_dict(stored, policy="strict")
    with pytest.raises(base.StateError, match=r"it differs in:\n  gamma: 1\.0 -> 1\n"):
        lrkit.StepLR(_sgd(0.1), 4, gamma=1).load_state_dict(stored, policy="strict")  # the control: 1 is not 1.0


def test_a_state_whose_counts_or_lrs_the_constructor_would_refuse_is_refused_and_changes_nothing() -> None:
    scheduler = lrkit.StepLR(_sgd(0.1), 2)
    scheduler.step()
    state = scheduler.state_dict()
    with pytest.raises(
        base.StateError,
        match=r"^state\['last_epoch'\]=-2 is refused: last_epoch must be an int >= -1, got last_epoch=-2$",
    ):
        scheduler.load_state_dict({**state, "last_epoch": -2})
    with pytest.raises(
        base.StateError,
        match=r"^state\['last_epoch'\]=9007199254740993 is refused: last_epoch must be an int in \[-1, 2\*\*53\]",
    ):
        scheduler.load_state_dict({**state, "last_epoch": 2**53 + 1})
    with pytest.raises(
        base.StateError, match=r"^state\['_step_count'\]=-1 is refused: _step_count must be an int >= 0, got"
    ):
        scheduler.load_state_dict({**state, "_step_count": -1})
    with pytest.raises(
        base.StateError,
        match=r"^state\['base_lrs'\]=\[-0\.1\] is refused: base_lrs\[0\] must be in \[0\.0, inf\), "
        r"got base_lrs\[0\]=-0\.1$",
    ):
        scheduler.load_state_dict({**state, "base_lrs": [-0.1]})
    with pytest.raises(
        base.StateError,
        match=r"^state\['_last_lr'\]=\['nan'\] is refused: _last_lr\[0\] must be finite, got _last_lr\[0\]=nan$",
    ):
        scheduler.load_state_dict({**state, "_last_lr": ["nan"]})
    assert scheduler.state_dict() == state
    lowest = {"last_epoch": -1, "_step_count": 0, "base_lrs": [0.0], "_last_lr": [-1.0]}
    scheduler.load_state_dict({**state, **lowest})  # the control: the lowest each holds
    assert scheduler.state_dict() == {**state, **lowest}


def test_a_loaded_state_of_a_field_that_is_also_an_argument_is_described_as_the_saved_spec() -> None:
    """PureSchedule's ``schedules`` is both its argument and its state field (the schedules, stored as their
    dicts): loaded under ``checkpoint``, ``to_spec()`` is the saved spec."""
    from lrkit.schedulers.llm import PureSchedule

    decay = {"type": "Decay", "start_lr": 0.1, "decay_steps": 4}
    saved = PureSchedule(_sgd(0.1, 0.2), [decay, {**decay, "start_lr": 0.2}])
    saved.step()
    state = saved.state_dict()
    scheduler = PureSchedule(_sgd(0.1, 0.2), {"type": "Constant", "value": 0.3})
    scheduler.load_state_dict(state, policy="checkpoint")
    assert scheduler.to_spec() == saved.to_spec() == state["spec"]
    assert scheduler.state_dict() == state


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("base_lrs", ["x"], r"^state\['base_lrs'\] must be a number, got 'x'$"),
        ("_last_lr", [None], r"^state\['_last_lr'\] must be a number, got None$"),
        ("base_lrs", [0.1, 0.1], r"^state\['base_lrs'\] must be a list with one float per param group \(1\), got "),
        ("_step_count", 2.5, r"^state\['_step_count'\] must be an int, got 2\.5$"),
        ("_step_count", True, r"^state\['_step_count'\] must be an int, got True$"),
        ("last_epoch", 1.0, r"^state\['last_epoch'\] must be an int, got 1\.0$"),
        ("last_epoch", False, r"^state\['last_epoch'\] must be an int, got False$"),
        ("gamma", "x", r"^state\['gamma'\] must be a float like 0\.1, got 'x'$"),
        ("step_size", [1], r"^state\['step_size'\] must be a int like 2, got \[1\]$"),
    ],
)
def test_a_malformed_field_is_refused_by_its_key(key: str, value: Any, message: str) -> None:
    scheduler = lrkit.StepLR(_sgd(0.1), 2, gamma=0.1)
    state = scheduler.state_dict()
    with pytest.raises(base.StateError, match=message):
        scheduler.load_state_dict({**state, key: value})
    assert scheduler.state_dict() == state


def test_a_tensor_argument_loads_back_as_a_tensor_of_its_dtype() -> None:
    """eta_min given as a float64 Tensor is stored as a float and loaded back as a float64 Tensor (the LRs are
    computed in its dtype, as torch computes them), so a resumed run steps as the uninterrupted one."""

    def build() -> Any:
        return lrkit.CosineAnnealingLR(_sgd(0.1), T_max=6, eta_min=torch.tensor(0.01, dtype=torch.float64))

    straight, resumed = build(), build()
    for _ in range(2):
        straight.step()
    state = straight.state_dict()
    assert type(state["eta_min"]) is float
    resumed.optimizer.load_state_dict(straight.optimizer.state_dict())
    with pytest.raises(base.StateError, match=r"^state\['eta_min'\] must be a number, got 'x'$"):
        resumed.load_state_dict({**state, "eta_min": "x"})
    resumed.load_state_dict(state)
    assert isinstance(resumed.eta_min, torch.Tensor) and resumed.eta_min.dtype == torch.float64
    assert resumed.eta_min.item() == 0.01
    for _ in range(4):
        straight.step()
        resumed.step()
        assert [float(v) for v in resumed.get_last_lr()] == [float(v) for v in straight.get_last_lr()]
        assert [type(v) for v in resumed.get_last_lr()] == [type(v) for v in straight.get_last_lr()]


# ------------------------------------------------------------------ the LR written back, against torch's


def test_an_int_lr_is_replaced_by_the_computed_one_as_torch_replaces_it() -> None:
    """``SGD(lr=1)`` holds the int 1: neither a float nor a Tensor, so it is replaced, not filled in place."""
    ours, theirs = lrkit.StepLR(_sgd(1), 2, gamma=0.5), torch_lr.StepLR(_sgd(1), 2, gamma=0.5)
    for _ in range(5):
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert [g["lr"] for g in ours.optimizer.param_groups] == [g["lr"] for g in theirs.optimizer.param_groups]
        ours.optimizer.step(), theirs.optimizer.step()
        ours.step(), theirs.step()


def test_an_int_initial_lr_becomes_a_float_base_lr() -> None:
    """``initial_lrs`` documents a float per group (a Tensor only where the group holds one): the base LRs, and so
    the saved state, are the same for ``lr=1`` as for ``lr=1.0``; torch keeps the int in its ``base_lrs``."""
    from_int, from_float = lrkit.StepLR(_sgd(1, 2), 2), lrkit.StepLR(_sgd(1.0, 2.0), 2)
    assert base.initial_lrs(from_int.optimizer) == [1.0, 2.0]
    assert [type(v) for v in base.initial_lrs(from_int.optimizer)] == [float, float]
    assert [type(v) for v in from_int.state_dict()["base_lrs"]] == [float, float]
    assert from_int.state_dict()["base_lrs"] == from_float.state_dict()["base_lrs"]
    assert [type(v) for v in torch_lr.StepLR(_sgd(1, 2), 2).base_lrs] == [int, int]  # the control: torch's differ


def test_the_last_lrs_are_copies_that_a_later_step_leaves_alone() -> None:
    """A Tensor ``eta_min`` makes the computed LRs Tensors; the group then holds one and later steps fill it in
    place. ``get_last_lr()`` holds copies, as torch's does, so a list taken earlier keeps its values."""
    eta_min = torch.tensor(0.01, dtype=torch.float64)
    ours = lrkit.CosineAnnealingLR(_sgd(0.1, 0.2), 10, eta_min=eta_min)
    theirs = torch_lr.CosineAnnealingLR(_sgd(0.1, 0.2), 10, eta_min=eta_min)
    held_ours, held_theirs = [], []
    for _ in range(4):
        ours.optimizer.step(), theirs.optimizer.step()
        ours.step(), theirs.step()
        held_ours.append(ours.get_last_lr()), held_theirs.append(theirs.get_last_lr())
    assert [[float(v) for v in lrs] for lrs in held_ours] == [[float(v) for v in lrs] for lrs in held_theirs]
    assert len({float(lrs[0]) for lrs in held_ours}) == 4  # each step's LRs kept, none overwritten by a later fill
    assert all(lr is not g["lr"] for lr, g in zip(ours.get_last_lr(), ours.optimizer.param_groups))


def test_a_state_of_another_schedule_lists_each_difference_on_its_own_line() -> None:
    state = lrkit.StepLR(_sgd(0.1), 2, gamma=0.5).state_dict()
    listing = "it differs in:\n  step_size: 2 -> 3\n  gamma: 0.5 -> 0.1\nload_state_dict(state, policy='checkpoint')"
    with pytest.raises(base.StateError, match=re.escape(listing)):
        lrkit.StepLR(_sgd(0.1), 3, gamma=0.1).load_state_dict(state, policy="strict")
