"""lrkit.GreedyLR against transformers' own GreedyLR: the same LRs for the same metric stream, to the last bit.

Random metric streams (seeded) drive both over random arguments; every LR, ``best`` and count must be equal
(``==``). State is plain data, continues exactly after a JSON round trip, also from transformers' own
state dicts, and a bad state changes nothing.
"""

from __future__ import annotations

import copy
import io
import json
import random
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
optimization = pytest.importorskip("transformers.optimization")
if not hasattr(optimization, "GreedyLR"):  # pragma: no cover - transformers < 5.24
    pytest.skip("transformers has no GreedyLR (added in 5.24)", allow_module_level=True)
from transformers.optimization import GreedyLR as HFGreedyLR  # noqa: E402
from transformers.optimization import StreamingAverage as HFStreamingAverage  # noqa: E402

import lrkit  # noqa: E402
from lrkit import StateError  # noqa: E402
from lrkit.runtime import TrainingSchedule  # noqa: E402

TRIALS = 60
STEPS = 160
#: The attributes transformers' GreedyLR is stepped through; after every step lrkit's must be equal.
TRACKED = (
    "best",
    "num_bad_epochs",
    "num_good_epochs",
    "cooldown_counter",
    "warmup_counter",
    "reset_start",
    "last_epoch",
)


def make_optimizer(lrs: list[float]) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def random_config(rng: random.Random) -> tuple[list[float], dict[str, Any]]:
    """Initial LRs (1 or 2 groups) and GreedyLR arguments that make increases, decreases and resets likely."""
    groups = rng.choice([1, 2])
    lrs = [rng.choice([0.1, 1e-3, rng.uniform(1e-4, 0.5)]) for _ in range(groups)]
    kwargs: dict[str, Any] = {
        "mode": rng.choice(["min", "max"]),
        "factor": rng.choice([0.5, 0.9, 0.95, rng.uniform(0.05, 0.99)]),
        "patience": rng.choice([0, 1, 2, rng.randint(0, 6)]),
        "threshold": rng.choice([0.0, 1e-6, rng.uniform(0, 0.2)]),
        "threshold_mode": rng.choice(["rel", "abs"]),
        "cooldown": rng.choice([0, 0, rng.randint(1, 4)]),
        "warmup": rng.choice([0, 0, rng.randint(1, 4)]),
        "reset_start": rng.choice([1, 2, rng.randint(0, 8), 500]),
    }
    if rng.random() < 0.4:
        kwargs["smooth"] = True
        kwargs["window_size"] = rng.choice([1, 3, rng.randint(2, 12)])
    if rng.random() < 0.7:
        floors = [lr * rng.choice([0.5, 0.1, 1e-3]) for lr in lrs]
        kwargs["min_lr"] = floors if groups > 1 and rng.random() < 0.5 else min(floors)
    if rng.random() < 0.5:
        ceilings = [lr * rng.choice([1.0, 1.5, 4.0]) for lr in lrs]
        kwargs["max_lr"] = ceilings if groups > 1 and rng.random() < 0.5 else max(ceilings)
    if rng.random() < 0.4:  # the boundary cases make the first decrease or increase change exactly eps
        lr, factor = lrs[0], kwargs["factor"]
        kwargs["eps"] = rng.choice([0.0, 1e-3 * min(lrs), lr - lr * factor, lr / factor - lr])
    return lrs, kwargs


def metric_stream(rng: random.Random, steps: int) -> list[float]:
    """Runs of improvement, plateaus, worsening, exact repeats and noise, in either direction."""
    out: list[float] = []
    value = rng.uniform(0.5, 10)
    while len(out) < steps:
        kind, length = rng.choice(["down", "up", "flat", "noise", "repeat"]), rng.randint(1, 15)
        for _ in range(length):
            if kind == "down":
                value *= rng.uniform(0.7, 0.999)
            elif kind == "up":
                value *= rng.uniform(1.001, 1.3)
            elif kind == "noise":
                value += rng.gauss(0, 0.1 * abs(value) + 1e-3)
            elif kind == "flat":
                value += rng.uniform(-1e-7, 1e-7)
            out.append(value)
    return out[:steps]


def group_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def assert_same(ours: lrkit.GreedyLR, theirs: Any, where: str) -> None:
    assert group_lrs(ours.optimizer) == group_lrs(theirs.optimizer), where
    assert ours.get_last_lr() == theirs.get_last_lr(), where
    for name in TRACKED:
        assert getattr(ours, name) == getattr(theirs, name), f"{where}: {name}"
    if theirs._streaming_avg is not None:
        assert ours._streaming_avg.values == theirs._streaming_avg.values, where
        assert ours._streaming_avg.sum == theirs._streaming_avg.sum, where


def counting_resets(scheduler: Any) -> list[int]:
    """Count the calls of transformers' ``_reset`` on this instance (to show the random cases reach it)."""
    calls: list[int] = []
    reset = scheduler._reset

    def counted() -> None:
        calls.append(scheduler.last_epoch)
        reset()

    scheduler._reset = counted
    return calls


def test_same_lrs_as_transformers_over_random_metric_streams() -> None:
    rng = random.Random("greedy")
    seen = {"increase": 0, "decrease": 0, "reset": 0, "smooth": 0, "two groups": 0}
    for trial in range(TRIALS):
        lrs, kwargs = random_config(rng)
        metrics = metric_stream(rng, STEPS)
        ours_opt, theirs_opt = make_optimizer(lrs), make_optimizer(lrs)
        ours, theirs = lrkit.GreedyLR(ours_opt, **kwargs), HFGreedyLR(theirs_opt, **kwargs)
        resets = counting_resets(theirs)
        assert_same(ours, theirs, f"trial {trial} at construction")
        for t, metric in enumerate(metrics):
            before = group_lrs(theirs_opt)
            ours.step(metric)
            theirs.step(metric)
            assert_same(ours, theirs, f"trial {trial} ({kwargs}) step {t}")
            after = group_lrs(theirs_opt)
            seen["increase"] += any(a > b for a, b in zip(after, before))
            seen["decrease"] += any(a < b for a, b in zip(after, before))
        seen["reset"] += len(resets)
        seen["smooth"] += bool(kwargs.get("smooth"))
        seen["two groups"] += len(lrs) == 2
    assert all(count > 0 for count in seen.values()), seen


def test_an_epoch_given_to_step_is_the_last_epoch_as_in_transformers() -> None:
    ours_opt, theirs_opt = make_optimizer([0.1]), make_optimizer([0.1])
    ours, theirs = lrkit.GreedyLR(ours_opt, patience=0), HFGreedyLR(theirs_opt, patience=0)
    for epoch, metric in [(5, 3.0), (None, 2.0), (2, 2.5), (None, 1.0)]:
        ours.step(metric, epoch)
        theirs.step(metric, epoch)
        assert_same(ours, theirs, f"epoch {epoch}")


def test_get_scheduler_greedy_is_lrkits_and_matches_transformers() -> None:
    kwargs = {"patience": 1, "factor": 0.8, "min_lr": 1e-4, "smooth": True, "window_size": 4}
    ours_opt, theirs_opt = make_optimizer([1e-2, 3e-3]), make_optimizer([1e-2, 3e-3])
    ours = lrkit.get_scheduler("greedy", ours_opt, scheduler_specific_kwargs=kwargs)
    theirs = transformers.get_scheduler("greedy", theirs_opt, scheduler_specific_kwargs=kwargs)
    assert type(ours) is lrkit.GreedyLR and type(theirs) is HFGreedyLR
    assert isinstance(lrkit.get_scheduler(transformers.SchedulerType.GREEDY, make_optimizer([1.0])), lrkit.GreedyLR)
    for t, metric in enumerate(metric_stream(random.Random("get_scheduler"), 80)):
        ours.step(metric)
        theirs.step(metric)
        assert_same(ours, theirs, f"step {t}")
    assert ours.to_spec() == lrkit.GreedyLR(make_optimizer([1.0]), **kwargs).to_spec()


def test_it_is_stepped_on_a_metric_like_a_reduce_lr_on_plateau() -> None:
    """The HF Trainer, Lightning and TrainingSchedule recognise metric-driven schedulers as torch's
    ReduceLROnPlateau (the Trainer also by transformers' GreedyLR class): lrkit's GreedyLR is one."""
    scheduler = lrkit.GreedyLR(make_optimizer([0.1]))
    assert isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert isinstance(scheduler, lrkit.LRScheduler)
    schedule = TrainingSchedule({"type": "GreedyLR", "patience": 0}, make_optimizer([0.1]))
    assert schedule.follows_a_metric
    reference = TrainingSchedule({"type": "GreedyLR", "patience": 0}, make_optimizer([0.1]), backend="torch")
    assert type(reference.scheduler) is HFGreedyLR and reference.follows_a_metric
    for metric in [3.0, 2.0, 1.0, 1.5, 1.5]:
        schedule.step(metric=metric)
        reference.step(metric=metric)
        assert schedule.lrs() == reference.lrs()


def test_a_training_schedule_resumes_it_exactly() -> None:
    spec = {"type": "GreedyLR", "patience": 1, "factor": 0.5, "smooth": True, "window_size": 3, "min_lr": 1e-3}
    metrics = metric_stream(random.Random("runtime"), 60)
    straight = TrainingSchedule(spec, make_optimizer([0.1]))
    reference = []
    for metric in metrics:
        straight.step(metric=metric)
        reference.append(straight.lrs())
    first_opt = make_optimizer([0.1])
    first = TrainingSchedule(spec, first_opt)
    for metric in metrics[:25]:
        first.step(metric=metric)
    resumed_opt = make_optimizer([0.1])
    resumed_opt.load_state_dict(first_opt.state_dict())
    resumed = TrainingSchedule(spec, resumed_opt)
    assert resumed.load_state_dict(json.loads(json.dumps(first.state_dict()))) == []
    for t, metric in enumerate(metrics[25:], start=25):
        resumed.step(metric=metric)
        assert resumed.lrs() == reference[t], t
    assert len({lr for lrs in reference for lr in lrs}) > 2  # the LR did move both ways


def test_the_streaming_average_is_transformers() -> None:
    rng = random.Random("streamavg")
    for window in (1, 2, 5, 17):
        ours, theirs = lrkit.StreamingAverage(window), HFStreamingAverage(window)
        for _ in range(60):
            value = rng.uniform(-5, 5)
            assert ours.streamavg(value) == theirs.streamavg(value)
            assert (ours.values, ours.sum) == (theirs.values, theirs.sum)
        restored = lrkit.StreamingAverage(1)
        restored.load_state_dict(json.loads(json.dumps(ours.state_dict())))
        assert restored.state_dict() == theirs.state_dict()


# ----------------------------------------------------------------------------------------------------- state


def _fresh(lrs: list[float], kwargs: dict[str, Any]) -> tuple[torch.optim.Optimizer, lrkit.GreedyLR]:
    """A scheduler built with other arguments and LRs: the loaded state must win over all of them."""
    optimizer = make_optimizer([lr * 3 for lr in lrs])
    other = {"smooth": not kwargs.get("smooth", False), "patience": 7, "factor": 0.3, "mode": "max"}
    return optimizer, lrkit.GreedyLR(optimizer, **other)


def test_state_is_plain_data_and_a_resume_continues_like_the_uninterrupted_run() -> None:
    rng = random.Random("greedy-state")
    for trial in range(25):
        lrs, kwargs = random_config(rng)
        metrics = metric_stream(rng, 120)
        cut = rng.randint(0, len(metrics))
        ours_opt, theirs_opt = make_optimizer(lrs), make_optimizer(lrs)
        ours, theirs = lrkit.GreedyLR(ours_opt, **kwargs), HFGreedyLR(theirs_opt, **kwargs)
        for metric in metrics[:cut]:
            ours.step(metric)
            theirs.step(metric)
        state = json.loads(json.dumps(ours.state_dict(), allow_nan=False))
        buffer = io.BytesIO()
        torch.save(ours.state_dict(), buffer)
        buffer.seek(0)
        assert torch.load(buffer, weights_only=True) == ours.state_dict()
        assert set(theirs.state_dict()) | {"type"} == set(state)
        assert state["type"] == "GreedyLR"

        resumed_opt, resumed = _fresh(lrs, kwargs)
        resumed.load_state_dict(state)
        assert resumed.to_spec() == ours.to_spec()
        assert resumed.state_dict() == ours.state_dict()
        assert_same(resumed, theirs, f"trial {trial} after the load at {cut}")
        for t, metric in enumerate(metrics[cut:], start=cut):
            resumed.step(metric)
            theirs.step(metric)
            assert_same(resumed, theirs, f"trial {trial} ({kwargs}) resumed at {cut}, step {t}")


def test_transformers_own_state_loads_and_continues_exactly() -> None:
    rng = random.Random("greedy-migrate")
    for trial in range(15):
        lrs, kwargs = random_config(rng)
        metrics = metric_stream(rng, 100)
        cut = rng.randint(1, len(metrics) - 1)
        theirs = HFGreedyLR(make_optimizer(lrs), **kwargs)
        for metric in metrics[:cut]:
            theirs.step(metric)
        _, ours = _fresh(lrs, kwargs)
        ours.load_state_dict(copy.deepcopy(theirs.state_dict()))
        assert_same(ours, theirs, f"trial {trial} after the load")
        for metric in metrics[cut:]:
            ours.step(metric)
            theirs.step(metric)
            assert_same(ours, theirs, f"trial {trial} ({kwargs})")


def test_a_partial_state_leaves_the_missing_keys_as_transformers_does() -> None:
    metrics = metric_stream(random.Random("partial"), 60)
    partial = {"factor": 0.8, "patience": 1, "best": 5.0, "num_bad_epochs": 1, "cooldown": 2}
    ours_opt, theirs_opt = make_optimizer([0.1, 0.02]), make_optimizer([0.1, 0.02])
    ours, theirs = lrkit.GreedyLR(ours_opt, min_lr=1e-4), HFGreedyLR(theirs_opt, min_lr=1e-4)
    for metric in metrics[:10]:
        ours.step(metric)
        theirs.step(metric)
    ours.load_state_dict(partial)
    theirs.load_state_dict(partial)
    assert_same(ours, theirs, "after the partial load")
    for t, metric in enumerate(metrics[10:]):
        ours.step(metric)
        theirs.step(metric)
        assert_same(ours, theirs, f"step {t}")
    assert ours.to_spec()["factor"] == 0.8 and ours.to_spec()["cooldown"] == 2


def test_to_spec_describes_the_loaded_schedule_and_rebuilds_it() -> None:
    source_opt = make_optimizer([0.1, 0.05])
    args = {"mode": "max", "factor": 0.7, "patience": 2, "min_lr": [1e-3, 2e-3], "max_lr": 0.5, "reset_start": 3}
    source = lrkit.GreedyLR(source_opt, smooth=True, window_size=4, cooldown=1, warmup=2, **args)
    for metric in metric_stream(random.Random("spec"), 30):
        source.step(metric)
    _, loaded = _fresh([0.1, 0.05], {"smooth": True})
    assert loaded.to_spec() != source.to_spec()
    loaded.load_state_dict(json.loads(json.dumps(source.state_dict())))
    spec = loaded.to_spec()
    assert spec == source.to_spec()
    defaults = {"threshold": 1e-6, "threshold_mode": "abs", "eps": 1e-8, "verbose": False}
    assert spec == {
        "type": "GreedyLR",
        **args,
        **defaults,
        "cooldown": 1,
        "warmup": 2,
        "smooth": True,
        "window_size": 4,
    }
    assert repr(loaded) == repr(source)
    rebuilt = lrkit.build_scheduler(json.loads(json.dumps(spec)), make_optimizer([0.1, 0.05]))
    assert rebuilt.to_spec() == spec
    reference = lrkit.build_scheduler(spec, make_optimizer([0.1, 0.05]), backend="torch")
    assert type(reference) is HFGreedyLR and reference.reset_start_original == 3


def _stepped(kwargs: dict[str, Any] | None = None) -> lrkit.GreedyLR:
    scheduler = lrkit.GreedyLR(make_optimizer([0.1, 0.02]), patience=1, smooth=True, window_size=3, **(kwargs or {}))
    for metric in [5.0, 4.0, 3.0, 3.5, 3.5, 3.5, 3.5]:
        scheduler.step(metric)
    return scheduler


BAD_STATES: list[tuple[str, dict[str, Any], str]] = [
    ("another class", {"type": "ReduceLROnPlateau"}, "ReduceLROnPlateau"),
    ("unknown key", {"factor": 0.5, "patiance": 3}, "patiance"),
    ("factor of 1", {"factor": 1.0, "patience": 3}, "factor"),
    ("factor as a string", {"factor": "0.5"}, "factor"),
    ("bad mode", {"mode": "minimum"}, "mode"),
    ("bad threshold mode", {"threshold_mode": "relative"}, "threshold_mode"),
    ("negative count", {"num_bad_epochs": -1}, "num_bad_epochs"),
    ("float count", {"cooldown_counter": 1.5}, "cooldown_counter"),
    ("bool flag as int", {"smooth": 1}, "smooth"),
    ("too few LRs", {"_last_lr": [0.1]}, "_last_lr"),
    ("negative LR", {"_init_lrs": [0.1, -0.2]}, "_init_lrs"),
    ("floor above ceiling", {"min_lrs": [0.5, 0.5], "max_lrs": [0.4, 1.0]}, "min_lr"),
    ("best not a number", {"best": "low"}, "best"),
    ("count-down past its start", {"reset_start": 9, "reset_start_original": 8}, "reset_start"),
    ("window not a dict", {"_streaming_avg": [1.0, 2.0]}, "_streaming_avg"),
    ("window longer than its size", {"_streaming_avg": {"window_size": 2, "values": [1, 2, 3], "sum": 6}}, "values"),
    ("window without its sum", {"_streaming_avg": {"window_size": 3, "values": [1.0]}}, "sum"),
    ("window with smoothing off", {"smooth": False, "_streaming_avg": {"values": [], "sum": 0.0}}, "smooth"),
    ("last_epoch not an int", {"last_epoch": "7"}, "last_epoch"),
]


@pytest.mark.parametrize("case", BAD_STATES, ids=[c[0] for c in BAD_STATES])
def test_a_bad_state_is_refused_naming_the_key_and_changes_nothing(case: tuple[str, dict[str, Any], str]) -> None:
    _, bad, named = case
    scheduler = _stepped()
    state = json.loads(json.dumps(scheduler.state_dict()))
    lrs, spec = group_lrs(scheduler.optimizer), scheduler.to_spec()
    with pytest.raises(StateError, match=named):
        scheduler.load_state_dict({**state, **bad})
    with pytest.raises(StateError, match=named):
        scheduler.load_state_dict(bad)
    assert json.loads(json.dumps(scheduler.state_dict())) == state
    assert group_lrs(scheduler.optimizer) == lrs and scheduler.to_spec() == spec


def test_the_state_of_another_class_is_refused() -> None:
    plateau = lrkit.ReduceLROnPlateau(make_optimizer([0.1, 0.02]))
    with pytest.raises(StateError, match="cannot load a ReduceLROnPlateau state into a GreedyLR"):
        _stepped().load_state_dict(plateau.state_dict())
    with pytest.raises(StateError, match="cannot load a GreedyLR state into a ReduceLROnPlateau"):
        plateau.load_state_dict(_stepped().state_dict())


# ------------------------------------------------------------------------------------------------- arguments

SAME_ERRORS_AS_TRANSFORMERS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"factor": 1.0}, ValueError),
    ({"factor": 1.5}, ValueError),
    ({"mode": "unknown"}, ValueError),
    ({"threshold_mode": "unknown"}, ValueError),
    ({"min_lr": [1e-3, 1e-3, 1e-3]}, ValueError),
    ({"max_lr": [1.0]}, ValueError),
]


@pytest.mark.parametrize("kwargs,error", SAME_ERRORS_AS_TRANSFORMERS)
def test_bad_arguments_raise_what_transformers_raises(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        HFGreedyLR(make_optimizer([0.1, 0.2]), **kwargs)
    with pytest.raises(error, match=next(iter(kwargs))):
        lrkit.GreedyLR(make_optimizer([0.1, 0.2]), **kwargs)


def test_a_non_optimizer_is_a_type_error_as_in_transformers() -> None:
    for bad in ("not_an_optimizer", None, object()):
        with pytest.raises(TypeError):
            HFGreedyLR(bad)
        with pytest.raises(TypeError, match="optimizer"):
            lrkit.GreedyLR(bad)


LRKIT_REFUSES: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"factor": 0.0}, ValueError, "factor=0.0"),  # transformers divides by zero on the first increase
    ({"factor": -0.5}, ValueError, "factor=-0.5"),  # transformers sets negative LRs
    ({"window_size": 0, "smooth": True}, ValueError, "window_size=0"),  # transformers divides by zero
    ({"min_lr": 0.5, "max_lr": 0.1}, ValueError, "min_lr\\[0\\]=0.5 > max_lr\\[0\\]=0.1"),
    ({"patience": -1}, ValueError, "patience=-1"),
    ({"patience": 2.5}, TypeError, "patience=2.5"),
    ({"threshold": -1e-3}, ValueError, "threshold=-0.001"),
    ({"smooth": 1}, TypeError, "smooth=1"),
    ({"reset_start": -1}, ValueError, "reset_start=-1"),
]


@pytest.mark.parametrize("kwargs,error,message", LRKIT_REFUSES)
def test_arguments_that_make_no_schedule_are_refused_up_front(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        lrkit.GreedyLR(make_optimizer([0.1]), **kwargs)


def test_a_float64_tensor_lr_is_filled_in_place_with_transformers_values() -> None:
    """A Tensor LR stays the same tensor (a compiled optimizer does not recompile); in float64 it holds
    exactly the LRs transformers computes with Python floats."""
    lr = torch.tensor(0.1, dtype=torch.float64)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD([{"params": params, "lr": lr}])
    theirs_opt = make_optimizer([0.1])
    ours, theirs = lrkit.GreedyLR(optimizer, patience=1, factor=0.7), HFGreedyLR(theirs_opt, patience=1, factor=0.7)
    for metric in metric_stream(random.Random("tensor"), 50):
        ours.step(metric)
        theirs.step(metric)
        assert optimizer.param_groups[0]["lr"] is lr
        assert float(lr) == theirs_opt.param_groups[0]["lr"]
        assert ours.get_last_lr() == theirs.get_last_lr()


def test_the_flags_and_preview_know_it_follows_a_metric() -> None:
    import argparse

    from lrkit.tools.flags import add_schedule_arguments, spec_from_args
    from lrkit.tools.preview import curve_from_spec

    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser)
    args = parser.parse_args(["--lr-scheduler", "hf:greedy", "--gamma", "0.8", "--patience", "3", "--min-lr", "1e-5"])
    spec = spec_from_args(args)
    assert spec == {"type": "GreedyLR", "factor": 0.8, "patience": 3, "min_lr": 1e-5}
    with pytest.raises(ValueError, match="GreedyLR follows a metric"):
        curve_from_spec(spec, lr=1e-3, total_steps=10)
