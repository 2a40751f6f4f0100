"""The Clocked schedule (lrkit.spec.clocked): an LLM schedule on the token or sample clock, its state, its
spec, its torch backend, and the resume policies that keep its clock."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

import lrkit
from lrkit import schedules as S
from lrkit.runtime.resume import Policy, ResumeError, Saved, decide
from lrkit.schedulers.base import StateError
from lrkit.spec import build_scheduler, spec_fingerprint
from lrkit.spec.clocked import Clocked, advance, spec_clock_unit

LRS = (1e-2, 4e-3)  # two param groups, two peaks
COSINE = {"type": "WarmupCosine", "warmup_steps": 512, "total_steps": 4096, "min_lr": 1e-4}
CLOCKED = {"type": "Clocked", "unit": "tokens", "schedule": COSINE}


def make_optimizer(lrs: tuple[float, ...] = LRS) -> torch.optim.Optimizer:
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in lrs]
    return torch.optim.AdamW([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def lrs_of(optimizer: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in optimizer.param_groups]


def oracle(peak: float, spec: dict[str, Any] = COSINE) -> S.Schedule:
    """The pure schedule (lrkit.schedules) that a param group peaking at ``peak`` follows, in clock ticks."""
    args = {k: v for k, v in spec.items() if k != "type"}
    return getattr(S, spec["type"])(peak, **args)


def test_clocked_lr_is_the_inner_schedule_at_the_clock() -> None:
    optimizer = make_optimizer()
    scheduler = Clocked(optimizer, **{k: v for k, v in CLOCKED.items() if k != "type"})
    pures = [oracle(peak) for peak in LRS]
    assert lrs_of(optimizer) == [p(0) for p in pures] == [0.0, 0.0]
    for amount, clock in [(256, 256), (256, 512), (1000, 1512), (2584, 4096), (10_000, 14_096)]:
        advance(scheduler, amount)
        assert scheduler.clock == clock
        assert lrs_of(optimizer) == scheduler.get_last_lr() == [p(clock) for p in pures]
    assert scheduler.last_epoch == 5  # one per update, as torch counts steps
    # warmup end (512) was the peak, the end (4096) and past it the floor
    assert [p(512) for p in pures] == list(LRS) and lrs_of(optimizer) == [1e-4, 1e-4]


def test_clocked_refuses_step_without_an_amount() -> None:
    scheduler = build_scheduler(CLOCKED, make_optimizer())
    with pytest.raises(RuntimeError, match=r"advance\(tokens\)"):
        scheduler.step()
    with pytest.raises(ValueError, match="amount"):
        scheduler.advance(-1)


def test_clocked_state_survives_json_and_resumes_exactly() -> None:
    optimizer = make_optimizer()
    first = build_scheduler(CLOCKED, optimizer)
    for amount in (300, 300, 77):
        first.advance(amount)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["clock"] == 677 and state["unit"] == "tokens" and state["last_epoch"] == 3
    resumed_optimizer = make_optimizer()
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed = build_scheduler(CLOCKED, resumed_optimizer)
    resumed.load_state_dict(state)
    for amount in (500, 5000):
        first.advance(amount)
        resumed.advance(amount)
        assert lrs_of(resumed_optimizer) == lrs_of(optimizer)
    assert (resumed.clock, resumed.last_epoch) == (first.clock, first.last_epoch)


def test_clocked_bad_state_is_refused_and_changes_nothing() -> None:
    scheduler = build_scheduler(CLOCKED, make_optimizer())
    scheduler.advance(100)
    before = scheduler.state_dict()
    for key, value in (("clock", -1), ("unit", "steps"), ("clock_schedules", [])):
        with pytest.raises(StateError, match=key):
            scheduler.load_state_dict({**before, key: value})
    assert scheduler.state_dict() == before


def test_clocked_to_spec_round_trips() -> None:
    scheduler = build_scheduler(CLOCKED, make_optimizer())
    spec = json.loads(json.dumps(scheduler.to_spec()))
    assert spec == CLOCKED and spec_clock_unit(spec) == "tokens"
    rebuilt = build_scheduler(spec, make_optimizer())
    assert rebuilt.to_spec() == spec and spec_fingerprint(rebuilt.to_spec()) == spec_fingerprint(CLOCKED)
    assert lrkit.Clocked is Clocked


def test_torch_backend_is_lambda_lr_driven_by_the_clock() -> None:
    ours, theirs = make_optimizer(), make_optimizer()
    lrkit_scheduler = build_scheduler(CLOCKED, ours)
    native = build_scheduler(CLOCKED, theirs, backend="torch")
    assert type(native) is torch.optim.lr_scheduler.LambdaLR
    for amount in (128, 384, 1000, 3000, 10):
        advance(lrkit_scheduler, amount)
        advance(native, amount)
        assert native.last_epoch == lrkit_scheduler.clock
        # torch computes base_lr * (schedule(clock) / base_lr): the same LR up to about one rounding
        np.testing.assert_allclose(lrs_of(theirs), lrs_of(ours), rtol=4.5e-16, atol=0)


@pytest.mark.parametrize(
    "spec,error,match",
    [
        ({**CLOCKED, "unit": "steps"}, ValueError, "unit"),
        ({**CLOCKED, "schedule": {"type": "StepLR", "step_size": 3}}, ValueError, "LLM schedules"),
        ({**CLOCKED, "schedule": {**COSINE, "warmup": 3}}, TypeError, "warmup"),
        ({**CLOCKED, "schedule": {**COSINE, "total_steps": 100}}, ValueError, "total_steps must be > warmup_steps"),
    ],
)
def test_bad_clocked_specs_name_the_problem(spec: dict[str, Any], error: type, match: str) -> None:
    for backend in ("lrkit", "torch"):
        with pytest.raises(error, match=match):
            build_scheduler(spec, make_optimizer(), backend=backend)  # type: ignore[arg-type]


def test_wsd_with_a_decay_fraction_runs_on_the_clock() -> None:
    inner = {"type": "WSD", "warmup_steps": 100, "total_steps": 1000, "decay_fraction": 0.2}
    optimizer = make_optimizer()
    scheduler = build_scheduler({"type": "Clocked", "unit": "samples", "schedule": inner}, optimizer)
    pures = [oracle(peak, inner) for peak in LRS]
    for clock in range(0, 1100, 50):
        assert lrs_of(optimizer) == [p(clock) for p in pures]
        scheduler.advance(50)


def test_extend_and_cooldown_refuse_a_change_of_clock() -> None:
    saved = Saved(CLOCKED, CLOCKED)
    new = {**CLOCKED, "schedule": {**COSINE, "total_steps": 8192}}
    for policy in (Policy("extend"), Policy("cooldown", 10)):
        assert decide(policy, saved, new).change is True  # on the token clock
        for before, after, units in ((CLOCKED, COSINE, ("tokens", "steps")), (COSINE, CLOCKED, ("steps", "tokens"))):
            message = f"{policy} continues on the clock .* which counts {units[0]}, but .* counts {units[1]}"
            with pytest.raises(ResumeError, match=message):
                decide(policy, Saved(before, before), {**after, "total_steps": 8192} if after is COSINE else new)
    with pytest.raises(ResumeError, match="extend changes only the run length"):
        decide(Policy("extend"), saved, {**CLOCKED, "schedule": {**COSINE, "min_lr": 2e-4}})
    assert decide(Policy("strict"), saved, dict(CLOCKED)).change is False


def test_a_transformers_schedule_is_refused_on_the_token_clock():
    """transformers' schedules count optimizer steps: a Clocked spec refuses one by name."""
    spec = {
        "type": "Clocked",
        "unit": "tokens",
        "schedule": {"type": "HFSchedule", "name": "cosine", "num_warmup_steps": 100, "num_training_steps": 1000},
    }
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="got 'HFSchedule'.*count optimizer steps"):
        build_scheduler(spec, opt)
