"""The schedule component any training loop calls: lrkit.runtime.schedule.TrainingSchedule."""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as torch_lr

from lrkit import schedules as S
from lrkit.runtime.resume import ResumeError
from lrkit.runtime.schedule import ScheduleError, TrainingSchedule
from lrkit.schedulers.hparams import HyperparamScheduler
from lrkit.schedules.batch import BatchRamp

COSINE = {"type": "WarmupCosine", "warmup_steps": 3, "total_steps": 12, "min_lr": 1e-4}
STEP = {"type": "StepLR", "step_size": 2, "gamma": 0.5}
TOKENS = {
    "type": "Clocked",
    "unit": "tokens",
    "schedule": {"type": "WarmupCosine", "warmup_steps": 600, "total_steps": 3000, "min_lr": 1e-4},
}
PLATEAU = {"type": "ReduceLROnPlateau", "patience": 1, "factor": 0.5}


def optimizer(lr: float = 1e-2) -> torch.optim.Optimizer:
    model = torch.nn.Linear(3, 2)
    return torch.optim.AdamW(
        [{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0}], lr=lr, weight_decay=0.1
    )


def losses(n: int) -> list[float]:
    """A metric that improves for 4 updates, then stalls (so a plateau schedule acts)."""
    return [1.0 / (1 + i) if i < 4 else 0.5 for i in range(n)]


def run(schedule: TrainingSchedule, updates: int, skipped: set[int] = frozenset(), start: int = 0) -> list[list[float]]:
    """The LRs each update used; update ``u`` (1-based) is skipped when in ``skipped``."""
    seen = []
    metric = losses(start + updates)
    for u in range(start + 1, start + updates + 1):
        seen.append(schedule.lrs())
        schedule.optimizer.step()
        schedule.step(skipped=u in skipped, metric=metric[u - 1], tokens=256 if u % 2 else 512)
    return seen


def test_a_skipped_update_moves_nothing():
    """The oracle: torch's own StepLR, stepped only after the updates that happened."""
    ours = TrainingSchedule(STEP, optimizer(), backend="lrkit", tokens_per_step=256, sequence_length=64)
    opt = optimizer()
    theirs = torch_lr.StepLR(opt, step_size=2, gamma=0.5)
    skipped = {2, 3, 7}
    expected = []
    for u in range(1, 11):
        expected.append([g["lr"] for g in opt.param_groups])
        opt.step()
        if u not in skipped:
            theirs.step()
    assert run(ours, 10, skipped) == expected
    assert ours.steps == 7
    # odd updates are 256 tokens, even ones 512: the clock counts only the 7 that happened
    assert ours.clock["tokens"] == sum(256 if u % 2 else 512 for u in range(1, 11) if u not in skipped)


def test_the_token_clock_matches_the_torch_oracle():
    """A schedule in tokens advances by each update's tokens: lrkit's Clocked against torch's LambdaLR."""
    ours = TrainingSchedule(TOKENS, optimizer(), backend="lrkit", sequence_length=64)
    theirs = TrainingSchedule(TOKENS, optimizer(), backend="torch", sequence_length=64)
    a, b = run(ours, 12, {5}), run(theirs, 12, {5})
    assert sum(a, []) == pytest.approx(sum(b, []), rel=1e-15, abs=0)
    tokens = sum(256 if u % 2 else 512 for u in range(1, 13) if u != 5)  # run()'s updates, less the skipped one
    assert ours.clock == theirs.clock == {"tokens": tokens, "samples": tokens // 64}
    assert len({lr[0] for lr in a}) > 8  # the LR moved with the clock


def test_hyperparameter_schedules_step_with_the_lr_and_skip_with_it():
    opt = optimizer()
    wd = HyperparamScheduler(opt, "weight_decay", [S.Decay(0.1, 6, 0.01, "linear"), None])
    schedule = TrainingSchedule(COSINE, opt, hparams=[wd])
    for u in range(1, 9):
        schedule.step(skipped=u in (2, 3))
    assert wd.last_epoch == schedule.steps == 6
    assert opt.param_groups[0]["weight_decay"] == pytest.approx(0.01) and opt.param_groups[1]["weight_decay"] == 0.0


def test_a_metric_schedule_needs_its_metric():
    schedule = TrainingSchedule(PLATEAU, optimizer())
    with pytest.raises(ScheduleError, match="call step\\(metric=<loss>\\)"):
        schedule.step()


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
@pytest.mark.parametrize("spec", [COSINE, STEP, TOKENS, PLATEAU], ids=["cosine", "step", "tokens", "plateau"])
def test_a_resume_continues_exactly(spec: dict[str, Any], backend: str):
    """6 updates, save (JSON round trip), a new optimizer and component, load, 6 more == 12 straight."""
    straight = TrainingSchedule(spec, optimizer(), backend=backend, tokens_per_step=256, sequence_length=64)
    expected = run(straight, 12, {4})

    first = TrainingSchedule(spec, optimizer(), backend=backend, tokens_per_step=256, sequence_length=64)
    seen = run(first, 6, {4})
    saved = json.loads(json.dumps({"optimizer_lrs": first.lrs(), **first.state_dict()}))
    opt = optimizer()
    opt_state = first.optimizer.state_dict()
    second = TrainingSchedule(spec, opt, backend=backend, tokens_per_step=256, sequence_length=64)
    opt.load_state_dict(opt_state)
    assert second.load_state_dict(saved) == []
    assert second.lrs() == saved["optimizer_lrs"]
    seen += run(second, 6, start=6)
    assert seen == expected
    assert second.state_dict()["scheduler_spec"] == spec


def _resumed(spec: dict[str, Any], new_spec: dict[str, Any], policy: str, backend: str = "lrkit") -> Any:
    first = TrainingSchedule(spec, optimizer(), backend=backend)
    for _ in range(6):
        first.optimizer.step()
        first.step()
    opt = optimizer()
    opt_state, state = first.optimizer.state_dict(), json.loads(json.dumps(first.state_dict()))
    second = TrainingSchedule(new_spec, opt, backend=backend)
    opt.load_state_dict(opt_state)
    from lrkit.runtime.resume import parse_policy

    notes = second.load_state_dict(state, parse_policy(policy), where="ckpt-6")
    return first, second, notes


def test_strict_refuses_a_changed_schedule_and_names_the_change():
    with pytest.raises(ResumeError, match=r"ckpt-6:\n  total_steps: 12 -> 20"):
        _resumed(COSINE, {**COSINE, "total_steps": 20}, "strict")


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_extend_and_cooldown_keep_the_lr_continuous(backend: str):
    for policy, new in (("extend", {**COSINE, "total_steps": 20}), ("cooldown:4", COSINE)):
        first, second, notes = _resumed(COSINE, new, policy, backend)
        assert second.lrs() == first.lrs(), policy  # the first LR after the resume is the one in force
        assert notes and policy.split(":")[0] in notes[0]
        assert second.policy == policy and second.request == new
        for _ in range(4):
            second.optimizer.step()
            second.step()
        if policy.startswith("cooldown"):
            assert second.lrs() == pytest.approx([COSINE["min_lr"]] * 2, rel=1e-12)


def test_override_reports_the_jump_and_a_plateau_can_be_put_in_force():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torch warning either
        _, second, notes = _resumed(COSINE, PLATEAU, "override")
    assert "the LR jumps at step 6" in notes[-1]
    assert second.lrs() == [1e-2, 1e-2]  # a plateau schedule starts at the peak
    second.step(metric=1.0)
    assert second.to_spec() == PLATEAU


# ----------------------------------------------------------------------------- a batch-size ramp

RAMP = BatchRamp(start=2, end=8, ramp_tokens=640, increment=2, lr_scaling="sqrt")


def ramped_lrs(spec: dict[str, Any], backend: str, ramp: Any, updates: int, sequence_length: int = 32) -> tuple:
    """Each update's LRs, clock and batch under ``ramp``, stepping with the ramp's tokens (as the trainer does)."""
    schedule = TrainingSchedule(spec, optimizer(), backend=backend, sequence_length=sequence_length, batch_ramp=ramp)
    seen = []
    for _ in range(updates):
        seen.append((schedule.lrs(), schedule.clock["tokens"], schedule.batch_sequences()))
        schedule.optimizer.step()
        schedule.step(tokens=schedule.tokens_per_step)
    return seen, schedule


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
@pytest.mark.parametrize("spec", [STEP, COSINE, TOKENS], ids=["StepLR", "WarmupCosine", "Clocked"])
def test_the_ramps_lr_scaling_multiplies_the_schedule_it_would_follow_unscaled(spec: dict, backend: str) -> None:
    """The oracle: the same schedule with the same tokens and no scaling, times (B / start) ** 1/2 at each clock.
    StepLR is chainable on torch's backend (it reads the LR it set): the factor must not compound into it."""
    scaled, _ = ramped_lrs(spec, backend, RAMP, 14)
    plain, _ = ramped_lrs(spec, backend, BatchRamp(2, 8, 640, 2, lr_scaling="none"), 14)
    assert [clock for _, clock, _ in scaled] == [clock for _, clock, _ in plain]
    assert [b for _, _, b in scaled] == [RAMP.sequences(clock) for _, clock, _ in scaled]
    assert {b for _, _, b in scaled} == {2, 4, 6, 8}
    for (lrs, _, batch), (base, _, _) in zip(scaled, plain):
        assert lrs == [lr * math.sqrt(batch / 2) for lr in base]


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_a_ramped_schedule_resumed_mid_ramp_continues_exactly(backend: str) -> None:
    straight, _ = ramped_lrs(STEP, backend, RAMP, 12)
    _, first = ramped_lrs(STEP, backend, RAMP, 5)
    state = json.loads(json.dumps(first.state_dict()))
    assert state["batch_ramp"] == RAMP.to_dict()
    assert state["tokens_per_step"] == RAMP.sequences(state["clock"]["tokens"]) * 32  # the next update's
    opt = optimizer()
    opt.load_state_dict(first.optimizer.state_dict())  # the scaled LRs, as a checkpoint holds them
    resumed = TrainingSchedule(STEP, opt, backend=backend, sequence_length=32, batch_ramp=RAMP)
    assert resumed.load_state_dict(state) == []
    rest = []
    for _ in range(7):
        rest.append((resumed.lrs(), resumed.clock["tokens"], resumed.batch_sequences()))
        opt.step()
        resumed.step(tokens=resumed.tokens_per_step)
    assert rest == straight[5:]


def test_a_checkpoint_of_another_batch_ramp_is_refused_and_changes_nothing() -> None:
    _, first = ramped_lrs(COSINE, "lrkit", RAMP, 4)
    state = first.state_dict()
    other = BatchRamp(2, 8, 1280, 2, lr_scaling="sqrt")
    for ramp, match in [
        (other, r"ramps the batch as linear:2:8:640tok:2 with sqrt LR scaling, and this run asks for linear:2:8:1280"),
        (None, r"ramps the batch as .*, and this run asks for none: .* resume with the checkpoint's batch ramp"),
    ]:
        kwargs = {"batch_ramp": ramp} if ramp is not None else {"tokens_per_step": 64}
        schedule = TrainingSchedule(COSINE, optimizer(), sequence_length=32, **kwargs)
        before = schedule.lrs(), schedule.steps
        with pytest.raises(ScheduleError, match=match):
            schedule.load_state_dict(state)
        assert (schedule.lrs(), schedule.steps) == before
    without = TrainingSchedule(COSINE, optimizer(), tokens_per_step=64, sequence_length=32).state_dict()
    with pytest.raises(ScheduleError, match=r"has no batch ramp, and this run asks for linear:2:8:640tok:2"):
        TrainingSchedule(COSINE, optimizer(), sequence_length=32, batch_ramp=RAMP).load_state_dict(without)


def test_a_batch_ramp_refuses_a_fixed_batch_and_scaling_a_metric_schedule() -> None:
    with pytest.raises(ScheduleError, match=r"pass sequence_length= and no tokens_per_step, got tokens_per_step=64"):
        TrainingSchedule(COSINE, optimizer(), tokens_per_step=64, sequence_length=32, batch_ramp=RAMP)
    with pytest.raises(ScheduleError, match=r"ReduceLROnPlateau follows a metric .* sqrt LR scaling would compound"):
        TrainingSchedule(PLATEAU, optimizer(), sequence_length=32, batch_ramp=RAMP)
