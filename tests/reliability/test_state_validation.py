"""Issue 18, item 2 (validated state) and the scheduler/spec inputs of item 5.

* every ``load_state_dict`` re-applies the constructor's checks to the loaded values and bounds the counters:
  a refused state raises :class:`StateError` naming the key and the value, and changes nothing;
* a state whose keys are another class's is refused, typed or untyped, torch's own states included (torch's
  StepLR state still loads into lrkit's drop-in StepLR, and continues as torch's does);
* the trainer's resume path (:class:`TrainingSchedule`) refuses a scheduler state that its stored spec, moved
  to the stored step, could not have produced, naming the field;
* a ``lr_lambda`` returning a string, ``ChainedScheduler([1, 2])`` and a spec whose ``type`` is a list get an
  error naming the argument; numpy ints in a spec are accepted and stored as Python ints (``to_spec()`` and the
  state stay JSON).

The oracle of each refused value is the constructor: it refuses the same value.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit.runtime import TrainingSchedule
from lrkit.schedulers.base import StateError
from lrkit.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from lrkit.train.command import run_train
from tests.conftest import CHAINED, TINY, parse, train_run


def sgd(lr: float = 0.1, groups: int = 1) -> torch.optim.SGD:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for _ in range(groups)]
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


# ----------------------------------------------------------------- the constructor's checks, on a loaded state

#: (class, constructor arguments, state key, bad value, the constructor argument that is refused the same way)
BAD_FIELDS: list[tuple[Any, dict[str, Any], str, Any, dict[str, Any] | None]] = [
    (lrkit.StepLR, {"step_size": 2}, "gamma", -1, {"step_size": 2, "gamma": -1}),
    (lrkit.StepLR, {"step_size": 2}, "step_size", 0, {"step_size": 0}),
    (lrkit.CosineAnnealingLR, {"T_max": 10}, "T_max", 0, {"T_max": 0}),
    (lrkit.CosineAnnealingLR, {"T_max": 10}, "eta_min", "nan", {"T_max": 10, "eta_min": math.nan}),
    (lrkit.StepLR, {"step_size": 2}, "last_epoch", -5, {"step_size": 2, "last_epoch": -5}),
    (lrkit.StepLR, {"step_size": 2}, "last_epoch", 10**400, None),
    (lrkit.StepLR, {"step_size": 2}, "_step_count", -3, None),
    (lrkit.StepLR, {"step_size": 2}, "base_lrs", ["nan"], None),
    (lrkit.StepLR, {"step_size": 2}, "base_lrs", [-0.1], None),
    (lrkit.StepLR, {"step_size": 2}, "_last_lr", ["inf"], None),
    (lrkit.MultiStepLR, {"milestones": [2, 4]}, "gamma", 0.0, {"milestones": [2], "gamma": 0.0}),
    (lrkit.ExponentialLR, {"gamma": 0.9}, "gamma", 0, {"gamma": 0}),
    (lrkit.ConstantLR, {}, "factor", 0.0, {"factor": 0.0}),
    (lrkit.ConstantLR, {}, "total_iters", 0, {"total_iters": 0}),
    (lrkit.LinearLR, {}, "start_factor", 1.5, {"start_factor": 1.5}),
    (lrkit.LinearLR, {}, "end_factor", -0.5, {"end_factor": -0.5}),
    (lrkit.PolynomialLR, {}, "power", -1.0, {"power": -1.0}),
    (lrkit.ReduceLROnPlateau, {}, "factor", 1.5, {"factor": 1.5}),
    (lrkit.ReduceLROnPlateau, {}, "patience", -1, {"patience": -1}),
    (lrkit.ReduceLROnPlateau, {"patience": 3}, "num_bad_epochs", 7, None),
    (lrkit.ReduceLROnPlateau, {}, "best", "nan", None),
    (lrkit.CosineAnnealingWarmRestarts, {"T_0": 5}, "T_mult", 0, {"T_0": 5, "T_mult": 0}),
    (lrkit.CosineAnnealingWarmRestarts, {"T_0": 5}, "T_cur", 9, None),
    (lrkit.CyclicLR, {"base_lr": 0.01, "max_lr": 0.1}, "total_size", 0.0, None),
    (lrkit.OneCycleLR, {"max_lr": 0.1, "total_steps": 10}, "total_steps", 0, {"max_lr": 0.1, "total_steps": 0}),
    (lrkit.OneCycleLR, {"max_lr": 0.1, "total_steps": 10}, "phase_ends", [2.0, 99.0], None),
    (lrkit.SWALR, {"swa_lr": 0.05}, "anneal_strategy", "sine", {"swa_lr": 0.05, "anneal_strategy": "sine"}),
    (lrkit.WarmupCosine, {"warmup_steps": 2, "total_steps": 10}, "last_epoch", -5, None),
    (lrkit.GreedyLR, {}, "last_epoch", -5, None),
]


@pytest.mark.parametrize(
    "cls,args,key,value,refused_by_constructor",
    BAD_FIELDS,
    ids=[f"{c.__name__}-{k}={str(v)[:12]}" for c, _, k, v, _ in BAD_FIELDS],
)
def test_a_state_value_the_constructor_refuses_is_refused_and_changes_nothing(
    cls: Any, args: dict[str, Any], key: str, value: Any, refused_by_constructor: dict[str, Any] | None
) -> None:
    if refused_by_constructor is not None:  # the oracle: the constructor refuses this value
        with pytest.raises((TypeError, ValueError)):
            cls(sgd(), **refused_by_constructor)
    optimizer = sgd()
    scheduler = cls(optimizer, **args)
    before, lrs = json.dumps(scheduler.state_dict()), [g["lr"] for g in optimizer.param_groups]
    state = {**json.loads(before), key: value}
    with pytest.raises(StateError, match=rf"state\['{key}'\]") as err:
        scheduler.load_state_dict(state)
    assert str(value)[:10] in str(err.value)  # the value is named
    assert json.dumps(scheduler.state_dict()) == before  # nothing changed
    assert [g["lr"] for g in optimizer.param_groups] == lrs


def test_the_refused_gamma_would_have_set_negative_lrs() -> None:
    """The issue's case: before, a StepLR state with gamma=-1 loaded and gave LRs 0.1, -0.1, -0.1."""
    scheduler = lrkit.StepLR(sgd(), step_size=1)
    with pytest.raises(StateError, match=r"state\['gamma'\]=-1 is refused: gamma must be in \(0.0, inf\)"):
        scheduler.load_state_dict({**scheduler.state_dict(), "gamma": -1})
    scheduler.step()
    assert scheduler.get_last_lr()[0] > 0


def test_a_counter_past_2_53_is_refused_and_so_is_the_constructor_argument() -> None:
    with pytest.raises(ValueError, match=r"last_epoch must be an int in \[-1, 2\*\*53\]"):
        lrkit.StepLR(sgd(), step_size=2, last_epoch=2**53 + 1)
    scheduler = lrkit.WarmupCosine(sgd(), warmup_steps=2, total_steps=10)
    with pytest.raises(StateError, match=r"401 chars"):  # the value is shown, cut short
        scheduler.load_state_dict({**scheduler.state_dict(), "last_epoch": 10**400})


def test_a_bad_child_of_a_composite_is_named_with_its_position() -> None:
    optimizer = sgd()
    chained = lrkit.ChainedScheduler([lrkit.StepLR(optimizer, 2), lrkit.ExponentialLR(optimizer, 0.9)])
    state = chained.state_dict()
    state["_schedulers"][1]["gamma"] = -2.0
    with pytest.raises(StateError, match=r"_schedulers'\]\[1\].*state\['gamma'\]=-2.0"):
        chained.load_state_dict(state)


def test_nested_sequential_children_still_load_their_own_states() -> None:
    """A leaf inside two SequentialLRs waits at last_epoch -2 (torch's recursive undo): that state is valid."""

    def build(optimizer: Any) -> Any:
        inner = lrkit.SequentialLR(
            optimizer, [lrkit.ConstantLR(optimizer), lrkit.ExponentialLR(optimizer, 0.9)], milestones=[2]
        )
        return lrkit.SequentialLR(optimizer, [lrkit.StepLR(optimizer, 2), inner], milestones=[3])

    optimizer = sgd()
    scheduler = build(optimizer)
    assert scheduler.state_dict()["_schedulers"][1]["_schedulers"][1]["last_epoch"] == -2
    other = build(sgd())
    other.load_state_dict(json.loads(json.dumps(scheduler.state_dict())))
    assert other.state_dict() == scheduler.state_dict()


# ---------------------------------------------------------------------------- keys of another class


def torch_step_lr_state() -> dict[str, Any]:
    optimizer = sgd()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    return scheduler.state_dict()


def test_torchs_step_lr_state_is_refused_by_exponential_lr() -> None:
    """The issue's case: it loaded, silently taking gamma=0.5. Its key step_size is named."""
    scheduler = lrkit.ExponentialLR(sgd(), gamma=0.9)
    before = json.dumps(scheduler.state_dict())
    with pytest.raises(StateError, match=r"keys \['step_size'\] that no ExponentialLR state has"):
        scheduler.load_state_dict(torch_step_lr_state())
    assert json.dumps(scheduler.state_dict()) == before


def test_torchs_step_lr_state_still_loads_into_the_drop_in_step_lr() -> None:
    """The drop-in's format is torch's: the state loads and the next LRs are torch's own."""
    optimizer, reference = sgd(), sgd()
    theirs = torch.optim.lr_scheduler.StepLR(reference, step_size=2, gamma=0.5)
    for _ in range(3):
        reference.step()
        theirs.step()
    optimizer.load_state_dict(reference.state_dict())
    mine = lrkit.StepLR(optimizer, step_size=7, gamma=0.9)
    mine.load_state_dict(theirs.state_dict())
    for _ in range(5):
        optimizer.step()
        mine.step()
        reference.step()
        theirs.step()
        assert mine.get_last_lr() == theirs.get_last_lr()


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "untyped"])
def test_a_state_with_the_keys_of_another_class_is_refused(typed: bool) -> None:
    """A StepLR state relabelled ExponentialLR (typed), or with no label (untyped): its step_size is named."""
    state = lrkit.StepLR(sgd(), step_size=2, gamma=0.5).state_dict()
    del state["spec"]
    if typed:
        state["type"] = "ExponentialLR"
    else:
        del state["type"]
    scheduler = lrkit.ExponentialLR(sgd(), gamma=0.9)
    with pytest.raises(StateError, match=r"keys \['step_size'\] that no ExponentialLR state has"):
        scheduler.load_state_dict(state)
    assert scheduler.gamma == 0.9


def test_an_unknown_key_in_a_state_of_the_right_class_is_refused() -> None:
    scheduler = lrkit.WarmupCosine(sgd(), warmup_steps=2, total_steps=10)
    with pytest.raises(StateError, match=r"\['peak'\]"):
        scheduler.load_state_dict({**scheduler.state_dict(), "peak": 1000})


# ------------------------------------------------------- the trainer's resume path: state against spec and step

COSINE = {"type": "WarmupCosine", "warmup_steps": 5, "total_steps": 20, "min_lr": 3e-4}
PLATEAU = {"type": "ReduceLROnPlateau", "factor": 0.5, "patience": 1}


def adamw() -> torch.optim.AdamW:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)


def saved_run(spec: dict[str, Any], steps: int = 6) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    """A TrainingSchedule stepped ``steps`` times: its state (after JSON), the optimizer's, and the LRs the
    uninterrupted run uses for the next update."""
    optimizer = adamw()
    schedule = TrainingSchedule(spec, optimizer)
    for i in range(steps):
        optimizer.step()
        schedule.step(metric=float(10 - i % 3) if schedule.follows_a_metric else None)
    return json.loads(json.dumps(schedule.state_dict())), copy.deepcopy(optimizer.state_dict()), schedule.lrs()


def resume(spec: dict[str, Any], state: dict[str, Any], optimizer_state: dict[str, Any]) -> TrainingSchedule:
    optimizer = adamw()
    optimizer.load_state_dict(optimizer_state)
    schedule = TrainingSchedule(spec, optimizer)
    schedule.load_state_dict(state)
    return schedule


def _peak(state: dict[str, Any]) -> None:
    for schedule in state["scheduler"]["schedules"]:
        schedule["peak_lr"] = 1000


EDITS = [
    (COSINE, "peak_lr", _peak, r"\['schedules'\]\[0\]\['peak_lr'\]: the checkpoint holds 1000"),
    (COSINE, "last_epoch", lambda s: s["scheduler"].update(last_epoch=10**6), r"\['last_epoch'\]: .* holds 1000000"),
    (COSINE, "_last_lr", lambda s: s["scheduler"].update(_last_lr=[5.0]), r"\['_last_lr'\]\[0\]: .* holds 5.0"),
    (COSINE, "base_lrs", lambda s: s["scheduler"].update(base_lrs=[0.5]), r"\['base_lrs'\]\[0\]"),
    (
        COSINE,
        "warmup_steps",
        lambda s: s["scheduler"]["schedules"][0].update(warmup_steps=1),
        r"\['warmup_steps'\]: .* holds 1",
    ),
    (COSINE, "scheduler_steps", lambda s: s.update(scheduler_steps=2), r"produces at update 2"),
    (
        CHAINED,
        "child gamma",
        lambda s: s["scheduler"]["_schedulers"][0].update(gamma=0.9),
        r"\['_schedulers'\]\[0\]\['gamma'\]: .* holds 0.9",
    ),
    (PLATEAU, "factor", lambda s: s["scheduler"].update(factor=0.9), r"\['factor'\]: .* holds 0.9"),
    (PLATEAU, "last_epoch", lambda s: s["scheduler"].update(last_epoch=10**6), r"\['last_epoch'\]"),
]


@pytest.mark.parametrize("spec,what,edit,match", EDITS, ids=[f"{s['type']}-{w}" for s, w, _, _ in EDITS])
def test_a_state_its_spec_could_not_have_produced_is_refused_naming_the_field(
    spec: dict[str, Any], what: str, edit: Any, match: str
) -> None:
    state, optimizer_state, _ = saved_run(spec)
    edit(state)
    with pytest.raises(StateError, match=match):
        resume(spec, state, optimizer_state)


@pytest.mark.parametrize("spec", [COSINE, CHAINED, PLATEAU], ids=lambda s: s["type"])
def test_the_unedited_state_resumes_with_the_uninterrupted_lrs(spec: dict[str, Any]) -> None:
    """The control: the same state, unedited, resumes and the next LRs are the uninterrupted run's."""
    state, optimizer_state, expected = saved_run(spec)
    assert resume(spec, state, optimizer_state).lrs() == expected


def test_a_metric_driven_schedule_keeps_its_history() -> None:
    """best and the counters are what the metrics made: not checkable against the spec, so they load."""
    state, optimizer_state, _ = saved_run(PLATEAU)
    state["scheduler"]["best"] = 3.5
    assert resume(PLATEAU, state, optimizer_state).scheduler.best == 3.5


def test_the_trainer_refuses_a_hand_edited_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case end to end: peak_lr = 1000 in the newest checkpoint; ``--resume auto`` exits 2 naming the
    field, and nothing runs (before: step 7 ran at LR 883)."""
    flags = ["--lr", "3e-3", "--lr-scheduler", "cosine", "--warmup-steps", "2", "--min-lr", "3e-4"]
    flags += ["--num-iterations", "6", "--save-interval", "2"]
    train_run(tmp_path, *flags)
    *_, edited, newest = list_checkpoints(tmp_path)
    newest.unlink()  # the run stopped after step 4
    payload = load_checkpoint(edited)
    _peak(payload["schedule"])
    save_checkpoint(tmp_path, int(payload["step"]), payload)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    args = parse(*TINY, "--run-dir", str(tmp_path), *flags, "--resume", "auto")
    assert run_train(args) == 2
    assert "['peak_lr']: the checkpoint holds 1000" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_text() == metrics


# ----------------------------------------------------------------- item 5: the scheduler and spec inputs


@pytest.mark.parametrize(
    "cls,fn,shown",
    [
        (lrkit.LambdaLR, lambda e: "0.5", r"lr_lambda\[0\]\(0\)='0.5' \(str\)"),
        (lrkit.LambdaLR, lambda e: None, r"lr_lambda\[0\]\(0\)=None"),
        (lrkit.LambdaLR, lambda e: math.nan, r"lr_lambda\[0\]\(0\)=nan"),
        (lrkit.MultiplicativeLR, lambda e: "0.5", r"lr_lambda\[0\]\(1\)='0.5'"),
    ],
    ids=["LambdaLR-str", "LambdaLR-None", "LambdaLR-nan", "MultiplicativeLR-str"],
)
def test_a_lr_lambda_that_returns_no_number_is_named(cls: Any, fn: Any, shown: str) -> None:
    with pytest.raises(TypeError, match=rf"lr_lambda must return a finite number, got {shown}"):
        cls(sgd(), fn).step()


@pytest.mark.parametrize("with_optimizer", [False, True])
def test_chained_scheduler_of_non_schedulers_names_the_child(with_optimizer: bool) -> None:
    """Before: "optimizer must be a torch.optim.Optimizer ... got optimizer=NoneType"."""
    args = (sgd(),) if with_optimizer else ()
    with pytest.raises(
        TypeError,
        match=r"ChainedScheduler schedulers\[0\] must be an lrkit scheduler, got "
        r"builtins.int \(schedulers\[0\]=1\)",
    ):
        lrkit.ChainedScheduler([1, 2], *args)  # type: ignore[list-item]


@pytest.mark.parametrize("kind", [["StepLR"], {"name": "StepLR"}, 3], ids=["list", "dict", "int"])
def test_a_spec_type_that_is_no_name_is_named(kind: Any) -> None:
    """Before: a list gave "unhashable type: 'list'"."""
    with pytest.raises(TypeError, match=r"spec\['type'\] must be the name of a scheduler \(a str\)"):
        lrkit.build_scheduler({"type": kind, "step_size": 3}, sgd())


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "StepLR", "step_size": np.int64(3), "gamma": np.float32(0.5)},
        {"type": "WarmupCosine", "warmup_steps": np.int64(3), "total_steps": np.int32(10), "min_lr": np.float64(0.01)},
        {
            "type": "SequentialLR",
            "schedulers": [{"type": "ConstantLR", "total_iters": np.int64(2)}, {"type": "ExponentialLR", "gamma": 0.9}],
            "milestones": [np.int64(2)],
        },
    ],
    ids=["StepLR", "WarmupCosine", "SequentialLR"],
)
def test_numpy_numbers_in_a_spec_are_stored_as_python_numbers(spec: dict[str, Any]) -> None:
    """Accepted, and stored as the Python numbers they stand for: to_spec() and the state are JSON (before:
    "Object of type int64 is not JSON serializable", and the state silently lost its "spec")."""
    plain = json.loads(json.dumps(spec, default=lambda v: v.item()))
    mine, reference = lrkit.build_scheduler(spec, sgd()), lrkit.build_scheduler(plain, sgd())
    assert json.loads(json.dumps(mine.to_spec())) == reference.to_spec()
    state = json.loads(json.dumps(mine.state_dict()))
    assert state == json.loads(json.dumps(reference.state_dict()))
    assert "spec" in state
