"""``--lr-resume-policy``: changing the schedule on resume never moves the LR silently."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch

import lrkit
from lrkit import schedules as S
from lrkit.runtime.resume import (
    Policy,
    ResumeError,
    Saved,
    _last_key,
    cooldown_floors,
    decide,
    in_force,
    jump_report,
    parse_policy,
    policy_argument,
    spec_diff,
)
from lrkit.train import checkpoint as ckpt
from lrkit.train.loop import train
from lrkit.train.metrics import read_metrics
from lrkit.train.parallel import DistContext
from tests.conftest import CHAINED, TINY, parse, trace, train_error_of

LR, FLOOR = 0.01, 0.001
COSINE = ["--lr", str(LR), "--lr-scheduler", "cosine", "--warmup-steps", "2", "--min-lr", str(FLOOR)]


def old(t: float) -> float:
    """The first leg's schedule (cosine to step 8), as the trainer builds it."""
    return S.WarmupCosine(LR, 2, 8, min_lr=FLOOR)(t)


def leg(tmp: Path, steps: int, *argv: str) -> list[dict[str, Any]]:
    args = parse(*TINY, "--run-dir", str(tmp), "--num-iterations", str(steps), "--save-interval", "4", *argv)
    train(args, DistContext())
    return read_metrics(tmp / "metrics.jsonl")


def lrs_of(records: list[dict[str, Any]]) -> list[float]:
    """Group 0's LR of every step (both groups follow the same schedule here)."""
    assert all(len(set(r["lr"])) == 1 for r in records)
    return [r["lr"][0] for r in records]


def saved_spec(tmp: Path) -> dict[str, Any]:
    return ckpt.load_checkpoint(ckpt.list_checkpoints(tmp)[-1])["schedule"]["scheduler_spec"]


def test_spec_diff_names_each_changed_path() -> None:
    changed = json.loads(json.dumps(CHAINED))
    changed["schedulers"][0]["gamma"] = 0.3
    changed["schedulers"][1]["end_factor"] = 0.5
    assert spec_diff(CHAINED, changed) == [
        "schedulers[0].gamma: 0.5 -> 0.3",
        "schedulers[1].end_factor: (absent) -> 0.5",
    ]
    assert spec_diff({"type": "WSD", "total_steps": 1000}, {"type": "WSD", "total_steps": 2000}) == [
        "total_steps: 1000 -> 2000"
    ]
    assert spec_diff({"gamma": 1}, {"gamma": 1.0}) == ["gamma: 1 -> 1.0"]  # they fingerprint differently
    assert spec_diff(CHAINED, CHAINED) == []


def test_parse_policy() -> None:
    assert parse_policy("extend") == Policy("extend")
    assert parse_policy("cooldown:200:1-sqrt") == Policy("cooldown", 200, "1-sqrt")
    assert str(parse_policy("cooldown:50")) == "cooldown:50"
    for bad in ("later", "cooldown", "cooldown:0", "cooldown:10:square", "extend:5"):
        with pytest.raises(ValueError, match="lr-resume-policy"):
            parse_policy(bad)


def _error_of(tmp: Path, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The error of resuming the run in ``tmp`` to step 8 with ``argv`` (no step may run)."""
    return train_error_of(tmp, "--num-iterations", "8", "--resume", "auto", *argv, capsys=capsys)


@pytest.mark.trainer
def test_strict_is_an_error_with_the_diff_before_any_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = json.loads(json.dumps(CHAINED))
    changed["schedulers"][0]["gamma"] = 0.3
    leg(tmp_path, 4, "--lr-scheduler", json.dumps(CHAINED))
    err = _error_of(tmp_path, capsys, "--lr-scheduler", json.dumps(changed))
    assert "schedulers[0].gamma: 0.5 -> 0.3" in err and "--lr-resume-policy" in err
    leg(tmp_path / "cos", 4, *COSINE, "--total-steps", "8")
    err = _error_of(tmp_path / "cos", capsys, *COSINE, "--total-steps", "12")
    assert "total_steps: 8 -> 12" in err


@pytest.mark.trainer
def test_checkpoint_keeps_the_old_schedule_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight = leg(tmp_path / "straight", 8, *COSINE, "--total-steps", "8")
    leg(tmp_path / "b", 4, *COSINE, "--total-steps", "8")
    capsys.readouterr()
    resumed = leg(
        tmp_path / "b", 8, *COSINE, "--total-steps", "12", "--resume", "auto", "--lr-resume-policy", "checkpoint"
    )
    assert trace(resumed) == trace(straight)
    assert "the command line's schedule is ignored" in capsys.readouterr().err
    # The run keeps asking for the checkpoint's schedule: a later strict resume with its flags works.
    again = leg(tmp_path / "b", 9, *COSINE, "--total-steps", "8", "--resume", "auto")
    assert lrs_of(again)[8] == old(8)


@pytest.mark.trainer
def test_override_applies_the_new_schedule_at_the_step_and_reports_the_jump(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leg(tmp_path, 4, *COSINE, "--total-steps", "8")
    capsys.readouterr()
    resumed = leg(tmp_path, 8, *COSINE, "--total-steps", "12", "--resume", "auto", "--lr-resume-policy", "override")
    new = S.WarmupCosine(LR, 2, 12, min_lr=FLOOR)
    assert lrs_of(resumed) == [old(t) for t in range(4)] + [new(t) for t in range(4, 8)]
    err = capsys.readouterr().err
    assert f"the LR jumps at step 4: group 0: {old(4):.6g} -> {new(4):.6g} (+{(new(4) - old(4)) / old(4):.1%})" in err
    assert saved_spec(tmp_path)["total_steps"] == 12  # the new schedule is in force, and saved


@pytest.mark.trainer
def test_extend_keeps_the_lr_continuous_and_reaches_the_new_floor_at_the_new_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leg(tmp_path, 4, *COSINE, "--total-steps", "8")
    longer = [*COSINE, "--total-steps", "12", "--resume", "auto"]
    leg(tmp_path, 8, *longer, "--lr-resume-policy", "extend")
    assert "refitted" in capsys.readouterr().err
    in_force = saved_spec(tmp_path)
    assert in_force["type"] == "SequentialLR" and in_force["milestones"] == [4]
    # A second resume of the extended run with the same flags and the default strict policy continues it.
    records = leg(tmp_path, 14, *longer)
    lrs = lrs_of(records)
    assert lrs[:4] == [old(t) for t in range(4)]
    assert lrs[4] == old(4)  # the first update after the resume uses the LR the old run would have used
    assert all(a > b for a, b in zip(lrs[4:12], lrs[5:13]))  # still decaying, never up
    assert lrs[12] == FLOOR and lrs[13] == FLOOR  # the floor exactly at the new total (step 12), then held
    refit = S.Refit(S.WarmupCosine(LR, 2, 12, min_lr=FLOOR), 4, old(4))
    assert lrs[4:] == [refit(t - 4) for t in range(4, 14)]


HF_COSINE = ["--lr", str(LR), "--lr-scheduler", "hf:cosine", "--warmup-steps", "2"]


@pytest.mark.trainer
@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_extend_of_a_transformers_schedule_refits_it_to_the_new_num_training_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """hf:cosine from 8 to 16 steps at step 4: the LR stays continuous, then follows transformers' cosine over
    16 steps refitted to start from it (the factor, with the base LR of each group, is the schedule)."""
    flags = [*HF_COSINE, "--scheduler-backend", backend]
    leg(tmp_path, 4, *flags, "--total-steps", "8")
    capsys.readouterr()
    records = leg(tmp_path, 16, *flags, "--total-steps", "16", "--resume", "auto", "--lr-resume-policy", "extend")
    assert "num_training_steps: 8 -> 16" in capsys.readouterr().err
    before = S.Product(S.Constant(LR), S.HFCosineFactor(2, 8))
    refit = S.Refit(S.Product(S.Constant(LR), S.HFCosineFactor(2, 16)), 4, before(4))
    lrs = lrs_of(records)
    assert lrs[:4] == pytest.approx([before(t) for t in range(4)], rel=1e-15)
    assert lrs[4:] == pytest.approx([refit(t - 4) for t in range(4, 16)], rel=1e-15)
    assert lrs[4] == pytest.approx(before(4), rel=1e-15)  # continuous: the LR the old run would have used
    assert all(a > b for a, b in zip(lrs[4:15], lrs[5:16]))  # decaying towards 0 at step 16


def test_extend_of_a_transformers_schedule_that_reads_the_default_lr_needs_one_peak() -> None:
    """polynomial reads optimizer.defaults["lr"] (lr_init), which groups of different peaks do not give: a
    ResumeError naming the schedule and the policies that apply, not a floor computed from a guess."""
    old = {"type": "HFSchedule", "name": "polynomial", "num_warmup_steps": 2, "num_training_steps": 8}
    new = {**old, "num_training_steps": 16}
    decision = decide(Policy("extend"), Saved(old, old), new)
    with pytest.raises(ResumeError, match=r"cannot refit HFSchedule 'polynomial': polynomial reads the .*default LR"):
        in_force(decision, 4, [5e-3, 1e-3], [1e-2, 2e-3])
    # One peak stands for the default LR (the trainer's groups without their own LR): refitted.
    before = S.Product(S.Constant(LR), S.HFPolynomialFactor(2, 8, 1e-7, 1.0, LR))(4)
    spec, _ = in_force(decision, 4, [before, before], [LR, LR])
    assert spec["type"] == "SequentialLR" and spec["milestones"] == [4]


PEAKS = [LR, 2 * LR]  # two param groups of different peaks


def lrs_by_step(spec: dict[str, Any], steps: int) -> list[list[float]]:
    """Each group's LR at steps 0 .. steps-1 of ``spec`` built on an optimizer whose groups start at PEAKS."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in PEAKS]
    optimizer = torch.optim.SGD([{"params": [p], "lr": peak} for p, peak in zip(params, PEAKS)])
    scheduler = lrkit.build_scheduler(spec, optimizer)
    out = []
    for _ in range(steps):
        out.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return out


def test_extend_refits_every_group_unless_all_are_continuous() -> None:
    """At step 4, group 0's LR happens to be on the longer schedule but group 1's is not: both are refitted, so
    neither jumps (applying the longer schedule as it is would move group 1 from 0.01525 to 0.0182)."""
    saved = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 8, "min_lr": FLOOR}
    longer = {**saved, "total_steps": 12}
    before = [S.WarmupCosine(peak, 2, 8, min_lr=FLOOR) for peak in PEAKS]
    after = [S.WarmupCosine(peak, 2, 12, min_lr=FLOOR) for peak in PEAKS]
    current = [after[0](4), before[1](4)]
    assert after[1](4) != current[1]
    spec, notes = in_force(decide(Policy("extend"), Saved(saved, saved), longer), 4, current, PEAKS)
    assert "refitted" in notes[0]
    refits = [S.Refit(schedule, 4, lr) for schedule, lr in zip(after, current)]
    expected = [[s(t) for s in before] for t in range(4)] + [[r(t - 4) for r in refits] for t in range(4, 14)]
    lrs = lrs_by_step(spec, 14)
    assert lrs == expected
    assert lrs[4] == current and lrs[12] == [FLOOR, FLOOR]


def test_extend_that_is_continuous_for_every_group_applies_the_longer_schedule_itself() -> None:
    saved = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 8, "min_lr": FLOOR}
    longer = {**saved, "total_steps": 12}
    current = [S.WarmupCosine(peak, 2, 12, min_lr=FLOOR)(4) for peak in PEAKS]
    spec, notes = in_force(decide(Policy("extend"), Saved(saved, saved), longer), 4, current, PEAKS)
    assert spec == longer and "continuous at step 4" in notes[0]


@pytest.mark.parametrize(("policy", "shape"), [("cooldown:3", "cosine"), ("cooldown:3:1-sqrt", "1-sqrt")])
def test_cooldown_takes_its_shape_from_wsds_decay_shape_unless_the_policy_names_one(policy: str, shape: str) -> None:
    wsd = {"type": "WSD", "warmup_steps": 1, "total_steps": 20, "decay_steps": 3, "min_lr": FLOOR}
    wsd_cosine = {**wsd, "decay_shape": "cosine"}
    before = [S.WSD(peak, 1, 20, decay_steps=3, min_lr=FLOOR) for peak in PEAKS]
    current = [s(4) for s in before]
    spec, notes = in_force(decide(parse_policy(policy), Saved(wsd, wsd), wsd_cosine), 4, current, PEAKS)
    assert f"{shape} decay from the LR in force" in notes[0]
    decays = [S.Decay(lr, 3, FLOOR, shape) for lr in current]
    lrs = lrs_by_step(spec, 9)
    assert lrs[:4] == [[s(t) for s in before] for t in range(4)]
    assert lrs[4:] == [[d(t - 4) for d in decays] for t in range(4, 9)]
    assert lrs[4] == current and lrs[7:] == [[FLOOR, FLOOR]] * 2
    assert lrs[5] != [S.Decay(lr, 3, FLOOR, "linear")(1) for lr in current]


WSDS = {"type": "WSDS", "cycle_ends": [8, 16, 24], "warmup_steps": 2, "decay_steps": 3, "min_lr": FLOOR}


@pytest.mark.parametrize("resume_at", [4, 10, 19], ids=["cycle-1", "cycle-2", "cycle-3"])
def test_cooldown_reaches_a_decay_from_the_stable_phase_of_every_wsds_cycle(resume_at: int) -> None:
    """WSD-S's branch points are decays to min_lr: ``cooldown:N`` makes one from any stable phase, with the
    spec's decay shape and floor, exactly as it does for WSD."""
    wsds_cosine = {**WSDS, "decay_shape": "cosine"}
    before = [S.WSDS(peak, (8, 16, 24), 2, decay_steps=3, decay_shape="cosine", min_lr=FLOOR) for peak in PEAKS]
    current = [s(resume_at) for s in before]
    assert current == PEAKS  # a stable phase
    spec, notes = in_force(decide(parse_policy("cooldown:3"), Saved(wsds_cosine, wsds_cosine), wsds_cosine),
                           resume_at, current, PEAKS)  # fmt: skip
    assert "cosine decay from the LR in force" in notes[0]
    decays = [S.Decay(lr, 3, FLOOR, "cosine") for lr in current]
    lrs = lrs_by_step(spec, resume_at + 6)
    assert lrs[:resume_at] == [[s(t) for s in before] for t in range(resume_at)]
    assert lrs[resume_at:] == [[d(t - resume_at) for d in decays] for t in range(resume_at, resume_at + 6)]
    assert lrs[resume_at + 3 :] == [[FLOOR, FLOOR]] * 3


@pytest.mark.trainer
def test_extend_in_a_stable_phase_is_the_longer_schedule_itself(tmp_path: Path) -> None:
    wsd = [
        "--lr",
        str(LR),
        "--lr-scheduler",
        "wsd",
        "--warmup-steps",
        "1",
        "--decay-steps",
        "3",
        "--min-lr",
        str(FLOOR),
    ]
    leg(tmp_path, 4, *wsd, "--total-steps", "8")
    resumed = leg(tmp_path, 10, *wsd, "--total-steps", "10", "--resume", "auto", "--lr-resume-policy", "extend")
    longer = S.WSD(LR, 1, 10, decay_steps=3, min_lr=FLOOR)
    assert lrs_of(resumed) == [longer(t) for t in range(10)]


@pytest.mark.trainer
def test_extend_with_another_change_is_an_error_that_lists_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    leg(tmp_path, 4, *COSINE, "--total-steps", "8")
    argv = [*COSINE[:-1], "0.002", "--total-steps", "12", "--lr-resume-policy", "extend"]
    err = _error_of(tmp_path, capsys, *argv)
    assert "min_lr: 0.001 -> 0.002" in err and "total_steps: 8 -> 12" not in err


@pytest.mark.trainer
def test_cooldown_reaches_min_lr_after_n_steps_and_holds_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags = [*COSINE, "--total-steps", "20"]
    first = S.WarmupCosine(LR, 2, 20, min_lr=FLOOR)
    leg(tmp_path, 4, *flags)
    leg(tmp_path, 8, *flags, "--resume", "auto", "--lr-resume-policy", "cooldown:3")
    assert "linear decay from the LR in force" in capsys.readouterr().err
    # Rerunning the same command (e.g. after a crash) continues the cooldown in force, it does not start another.
    lrs = lrs_of(leg(tmp_path, 10, *flags, "--resume", "auto", "--lr-resume-policy", "cooldown:3"))
    start = first(4)
    assert lrs[:5] == [first(t) for t in range(5)]  # continuous: step 5 uses the LR in force at the checkpoint
    assert lrs[5:7] == [S.Decay(start, 3, FLOOR)(t) for t in (1, 2)]
    assert lrs[7:] == [FLOOR] * 3  # min_lr exactly 3 steps after the resume, then held


@pytest.mark.trainer
@pytest.mark.parametrize("policy", ["extend", "cooldown:3:cosine"])
def test_torch_backend_applies_the_same_policy(tmp_path: Path, policy: str) -> None:
    """PyTorch's LambdaLR over the same math: LRs equal lrkit's up to the rounding of schedule / base_lr."""
    runs = {}
    for backend in ("lrkit", "torch"):
        flags = [*COSINE, "--scheduler-backend", backend]
        leg(tmp_path / backend, 4, *flags, "--total-steps", "8")
        records = leg(
            tmp_path / backend, 8, *flags, "--total-steps", "12", "--resume", "auto", "--lr-resume-policy", policy
        )
        runs[backend] = lrs_of(records)
    assert runs["torch"] == pytest.approx(runs["lrkit"], rel=1e-12, abs=1e-18)
    assert runs["torch"][4] == pytest.approx(old(4), rel=1e-12)


@pytest.mark.trainer
def test_cooldown_from_a_constant_run_decays_to_zero(tmp_path: Path) -> None:
    flags = ["--lr", str(LR), "--lr-scheduler", "constant"]
    leg(tmp_path, 4, *flags)
    lrs = lrs_of(leg(tmp_path, 7, *flags, "--resume", "auto", "--lr-resume-policy", "cooldown:2:1-sqrt"))
    cooldown = S.Decay(LR, 2, 0.0, "1-sqrt")
    assert lrs == [LR] * 5 + [cooldown(1), cooldown(2)]
    assert lrs[6] == 0.0


def test_the_jump_report_names_each_groups_change_even_from_zero() -> None:
    before, after = [0.0, 0.0, 1e-3], [0.0, 2e-4, 1.5e-3]
    change = f"{(after[2] - before[2]) / before[2]:+.1%}"  # the only group with a relative change
    assert jump_report(6, before, after) == (
        "--lr-resume-policy override: the LR jumps at step 6: "
        f"group 0: {0.0:.6g} -> {0.0:.6g} (+0.0%); "
        f"group 1: {0.0:.6g} -> {2e-4:.6g} (from 0); "
        f"group 2: {1e-3:.6g} -> {1.5e-3:.6g} ({change})"
    )
    assert jump_report(6, before, list(before)) == (
        "--lr-resume-policy override: the new schedule gives the same LR at step 6 (no jump)"
    )


def _final_lr(spec: dict[str, Any], peak: float, steps: int) -> float:
    """The oracle of a cooldown floor: the LR the spec, built alone on one group at ``peak``, ends at."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    scheduler = lrkit.build_scheduler(spec, optimizer)
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return float(optimizer.param_groups[0]["lr"])


def test_cooldown_floors_are_where_each_groups_schedule_ends() -> None:
    cosine = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 10}
    floor_a, floor_b = {**cosine, "min_lr": 1e-4}, {**cosine, "min_lr": 3e-5}
    assert cooldown_floors(cosine, 2) == [_final_lr(cosine, 1e-3, 10)] * 2 == [0.0, 0.0]  # no min_lr: 0
    assert cooldown_floors(floor_a, 2) == [_final_lr(floor_a, 1e-3, 10)] * 2
    assert cooldown_floors({**cosine, "min_lr": [1e-4, 3e-5]}, 2) == [1e-4, 3e-5]  # one per group, as given
    with pytest.raises(ValueError, match=r"^min_lr must have one value per param group \(3\), got 2 values"):
        cooldown_floors({**cosine, "min_lr": [1e-4, 3e-5]}, 3)
    # PerGroup: each group's child, found by the group's name; a child without min_lr ends at 0.
    per_group = {"type": "PerGroup", "schedulers": {"head": floor_b, "body": floor_a, "embed": cosine}}
    names = ["body", "embed", "head"]
    expected = [_final_lr(child, 1e-3, 10) for child in (floor_a, cosine, floor_b)]
    assert cooldown_floors(per_group, 3, names) == expected == [1e-4, 0.0, 3e-5]
    clocked = {"type": "Clocked", "unit": "tokens", "schedule": per_group}
    assert cooldown_floors(clocked, 3, names) == expected  # a clocked spec: the schedule it wraps
    assert cooldown_floors({"type": "Clocked", "unit": "tokens", "schedule": floor_a}, 1) == [1e-4]
    with pytest.raises(ValueError, match=r"^min_lr must have one value per param group \(1\), got 2 values"):
        cooldown_floors({"type": "PerGroup", "schedulers": [{**cosine, "min_lr": [1e-4, 1e-5]}]}, 1)
    with pytest.raises(TypeError, match=r"^min_lr must be a real number, got min_lr='1e-4' \(str\)"):
        cooldown_floors({**cosine, "min_lr": [0.0, "1e-4"]}, 2)  # a floor is never read from a string
    with pytest.raises(ValueError, match=r"^min_lr must be finite, got min_lr=nan"):
        cooldown_floors({"type": "PerGroup", "schedulers": [{**cosine, "min_lr": float("nan")}]}, 1)


# ---------------------------------------------------------------- the decisions, unit by unit (fast, exact)

COS8 = {"type": "WarmupCosine", "warmup_steps": 2, "total_steps": 8, "min_lr": FLOOR}
TOKENS = {"type": "Clocked", "unit": "tokens", "schedule": {**COS8, "total_steps": 800}}


@pytest.mark.parametrize(
    "text,message",
    [
        ("x", "must be one of strict, checkpoint, override, extend, cooldown:N; got 'x'"),
        ("cooldown:abc", "cooldown needs the number of decay steps N >= 1 (cooldown:N), got 'cooldown:abc'"),
        ("cooldown:0", "cooldown needs the number of decay steps N >= 1 (cooldown:N), got 'cooldown:0'"),
        ("strict:1", "strict takes no ':' argument, got 'strict:1'"),
        ("cooldown:5:square", "cooldown shape must be one of linear, cosine, 1-sqrt, exponential, got 'square'"),
    ],
)
def test_a_refused_policy_says_why(text: str, message: str) -> None:
    expected = f"^{re.escape('--lr-resume-policy ' + message)}$"
    with pytest.raises(ValueError, match=expected):
        parse_policy(text)
    with pytest.raises(argparse.ArgumentTypeError, match=expected):
        policy_argument(text)


def test_a_policy_parses_to_what_it_prints() -> None:
    assert parse_policy(" cooldown:7: ") == Policy("cooldown", 7, None)
    assert parse_policy("cooldown:1") == Policy("cooldown", 1, None)
    assert policy_argument("cooldown:7:cosine") == Policy("cooldown", 7, "cosine")
    for text in ("strict", "checkpoint", "override", "extend", "cooldown:7", "cooldown:7:exponential"):
        assert str(parse_policy(text)) == text


def test_saved_reads_a_payload_and_a_decision_says_what_the_next_checkpoint_records() -> None:
    request = {**COS8, "total_steps": 12}
    saved = Saved.from_payload({"scheduler_spec": COS8, "scheduler_request": request, "scheduler_resume_policy": "x"})
    assert saved == Saved(COS8, request, "x")
    assert Saved.from_payload({"scheduler_spec": COS8}) == Saved(COS8, COS8, None)
    assert Saved.from_payload({"scheduler_spec": COS8, "scheduler_request": None}).request == COS8
    kept = decide(Policy("checkpoint"), saved, {**COS8, "total_steps": 16})
    assert (kept.change, kept.request, kept.record) == (False, request, "x")
    changed = decide(Policy("override"), saved, {**COS8, "total_steps": 16})
    assert (changed.change, changed.request, changed.record) == (True, {**COS8, "total_steps": 16}, "override")


def test_decide_names_what_differs_for_each_policy() -> None:
    saved, longer = Saved(COS8, COS8), {**COS8, "total_steps": 12}
    other = {**longer, "warmup_steps": 3}
    with pytest.raises(
        ResumeError,
        match="^"
        + re.escape(
            "the schedule differs from the one in the checkpoint:\n  warmup_steps: 2 -> 3\n  total_steps: 8 -> 12\n"
            "pass --lr-resume-policy checkpoint (keep the checkpoint's schedule), override (apply this one from the "
            "current step, with an LR jump), extend (only the run length changed) or cooldown:N"
        )
        + "$",
    ):
        decide(Policy("strict"), saved, other)
    with pytest.raises(
        ResumeError,
        match="^"
        + re.escape(
            "--lr-resume-policy extend changes only the run length (total_steps, T_max, total_iters, "
            "num_training_steps), but the schedule also differs from the one in run X in:\n  warmup_steps: 2 -> 3\n"
            "use --lr-resume-policy override to apply another schedule"
        )
        + "$",
    ):
        decide(Policy("extend"), saved, other, where="run X")
    kept = decide(Policy("checkpoint"), saved, longer, where="run X")
    assert kept.notes == [
        "--lr-resume-policy checkpoint: keeping the schedule of run X; the command line's schedule is ignored. "
        "It differs in:\n  total_steps: 8 -> 12"
    ]
    assert decide(Policy("checkpoint"), saved, COS8).notes == []
    assert decide(Policy("strict"), saved, {**COS8, "warmup_start_lr": 0.0}).change is False  # a default spelled out
    assert decide(Policy("extend"), saved, longer).change is True
    # Every length key may change under extend, nested too; nothing else may.
    seq = {"type": "SequentialLR", "milestones": [3], "schedulers": [
        {"type": "LinearLR", "total_iters": 3}, {"type": "CosineAnnealingLR", "T_max": 5}]}  # fmt: skip
    seq_longer = json.loads(json.dumps(seq))
    seq_longer["schedulers"][1]["T_max"] = 9
    with pytest.raises(ResumeError, match=r"extend refits lrkit's LLM schedules .*not 'SequentialLR'"):
        decide(Policy("extend"), Saved(seq, seq), seq_longer)


def test_extend_refuses_what_it_cannot_refit_and_a_change_of_clock() -> None:
    step_lr = {"type": "StepLR", "step_size": 2, "total_iters": 5}
    with pytest.raises(
        ResumeError,
        match="^"
        + re.escape(
            "--lr-resume-policy extend refits lrkit's LLM schedules (WarmupLinear, WarmupCosine, WarmupPolynomial, "
            "WSD, ...), not 'PureSchedule': use cooldown:N or override"
        )
        + "$",
    ):
        pure = {"type": "PureSchedule", "schedules": [S.Constant(LR).to_dict()], "total_steps": 3}
        decide(Policy("extend"), Saved(pure, pure), {**pure, "total_steps": 4})
    with pytest.raises(ResumeError, match=r"not 'StepLR': use cooldown:N or override$"):
        decide(Policy("extend"), Saved(step_lr, step_lr), {**step_lr, "total_iters": 9})
    for policy in (Policy("extend"), Policy("cooldown", 3)):
        with pytest.raises(
            ResumeError,
            match="^"
            + re.escape(
                f"--lr-resume-policy {policy} continues on the clock of the schedule in force, which counts steps, "
                "but the command line's schedule counts tokens: use --lr-resume-policy checkpoint or override"
            )
            + "$",
        ):
            decide(policy, Saved(COS8, COS8), TOKENS)
        with pytest.raises(ResumeError, match=r"which counts tokens, but the command line's schedule counts steps"):
            decide(policy, Saved(TOKENS, TOKENS), {**COS8, "total_steps": 900})


def test_a_cooldown_rerun_with_the_same_command_continues_the_one_in_force() -> None:
    again = decide(Policy("cooldown", 3), Saved(COS8, COS8, "cooldown:3"), COS8)
    assert again.change is False and again.record == "cooldown:3"
    assert (again.policy, again.new_spec) == (Policy("cooldown", 3), COS8)
    assert decide(Policy("cooldown", 4), Saved(COS8, COS8, "cooldown:3"), COS8).change is True
    assert decide(Policy("cooldown", 3), Saved(COS8, COS8), COS8).change is True


def test_extend_on_the_token_clock_refits_on_that_clock() -> None:
    longer = {**TOKENS, "schedule": {**TOKENS["schedule"], "total_steps": 1600}}
    decision = decide(Policy("extend"), Saved(TOKENS, TOKENS), longer)
    with pytest.raises(
        ResumeError, match=r"^--lr-resume-policy extend: the schedule counts tokens, and the trainer gave no clock$"
    ):
        in_force(decision, 4, [0.005], [LR])
    with pytest.raises(ResumeError, match=r"the trainer gave no clock$"):
        in_force(decision, 4, [0.005], [LR], clock={"tokens": 400}, per_step={"tokens": 0})
    spec, notes = in_force(decision, 4, [0.005], [LR], clock={"tokens": 400}, per_step={"tokens": 100})
    before = S.WarmupCosine(LR, 2, 800, min_lr=FLOOR)
    refit = S.Refit(S.WarmupCosine(LR, 2, 1600, min_lr=FLOOR), 400, 0.005)
    assert spec == {
        "type": "Clocked",
        "unit": "tokens",
        "schedule": {"type": "PureSchedule", "schedules": [S.Sequence((before, refit), (400,)).to_dict()]},
    }
    assert notes == [
        "--lr-resume-policy extend (schedule.total_steps: 800 -> 1600): the rest of the decay is refitted from the "
        "LR in force 0.005 at step 4 (400 tokens) to the floor at tokens 1600"
    ]


def test_cooldown_on_the_token_clock_lasts_n_updates_of_tokens() -> None:
    decision = decide(Policy("cooldown", 3), Saved(TOKENS, TOKENS), TOKENS)
    spec, notes = in_force(decision, 4, [0.005, 0.004], [LR, LR], clock={"tokens": 400}, per_step={"tokens": 100})
    before = S.WarmupCosine(LR, 2, 800, min_lr=FLOOR)
    pieces = [S.Sequence((before, S.Decay(lr, 300, FLOOR, "linear")), (400,)).to_dict() for lr in (0.005, 0.004)]
    assert spec == {"type": "Clocked", "unit": "tokens", "schedule": {"type": "PureSchedule", "schedules": pieces}}
    assert notes == [
        "--lr-resume-policy cooldown:3: linear decay from the LR in force [0.005, 0.004] at step 4 (400 tokens) to "
        "min_lr [0.001, 0.001] at step 7 (700 tokens, at 100 tokens per step), then held"
    ]
    at_zero, _ = in_force(decision, 0, [LR], [LR], clock={"tokens": 0}, per_step={"tokens": 100})
    assert at_zero["schedule"]["schedules"] == [S.Decay(LR, 300, FLOOR, "linear").to_dict()]


def test_cooldown_in_steps_follows_the_saved_schedule_from_its_step() -> None:
    decision = decide(Policy("cooldown", 3), Saved(COS8, COS8), COS8)
    spec, notes = in_force(decision, 4, [0.005], [LR])
    piece = {"type": "PureSchedule", "schedules": [S.Decay(0.005, 3, FLOOR, "linear").to_dict()]}
    assert spec == {"type": "SequentialLR", "milestones": [4], "schedulers": [COS8, piece]}
    assert notes == [
        "--lr-resume-policy cooldown:3: linear decay from the LR in force 0.005 at step 4 to min_lr 0.001 at step 7, "
        "then held"
    ]
    at_zero, notes = in_force(decision, 0, [0.005], [LR])
    assert at_zero == piece and "at step 0 to min_lr 0.001 at step 3," in notes[0]
    at_one, _ = in_force(decision, 1, [0.005], [LR])
    assert at_one["type"] == "SequentialLR" and at_one["milestones"] == [1]
    with pytest.raises(
        ResumeError, match=r"^--lr-resume-policy cooldown:3: min_lr must be in \[0\.0, inf\), got min_lr=-1\.0$"
    ):
        in_force(decide(Policy("cooldown", 3), Saved(COS8, COS8), {**COS8, "min_lr": -1.0}), 4, [0.005], [LR])
    two = {**COS8, "min_lr": [0.1, 0.2]}
    with pytest.raises(
        ResumeError, match=r"^--lr-resume-policy cooldown:3: min_lr must have one value per param group \(1\)"
    ):
        in_force(decide(Policy("cooldown", 3), Saved(two, two), two), 4, [0.005], [LR])


def test_override_puts_the_new_spec_in_force_as_it_is() -> None:
    longer = {**COS8, "total_steps": 12}
    assert in_force(decide(Policy("override"), Saved(COS8, COS8), longer), 4, [0.005], [LR]) == (longer, [])


@pytest.mark.parametrize(
    "line,key",
    [
        ("total_steps: 8 -> 12", "total_steps"),
        ("milestones[0]: 3 -> 4", "milestones"),
        ("schedulers[1].T_max: 5 -> 9", "T_max"),
        ("schedule.schedulers[0].total_iters: 5 -> 9", "total_iters"),
        ("schedulers[0].grid[1][2]: 5 -> 9", "grid"),
        ("name: 'a: b' -> 'c'", "name"),
    ],
)
def test_last_key_is_the_argument_a_diff_line_changes(line: str, key: str) -> None:
    assert _last_key(line) == key


def test_extend_notes_say_exactly_what_changed_and_where() -> None:
    longer = {**COS8, "total_steps": 12}
    current = [S.WarmupCosine(LR, 2, 12, min_lr=FLOOR)(4)]
    _, notes = in_force(decide(Policy("extend"), Saved(COS8, COS8), longer), 4, current, [LR])
    assert notes == ["--lr-resume-policy extend (total_steps: 8 -> 12): the new schedule is continuous at step 4"]
    spelled = {**longer, "warmup_start_lr": 0.0}  # the same schedule, one default spelled out: two lines joined
    _, notes = in_force(decide(Policy("extend"), Saved(COS8, COS8), spelled), 4, [0.005], [LR])
    assert notes == [
        "--lr-resume-policy extend (total_steps: 8 -> 12; warmup_start_lr: (absent) -> 0.0): the rest of the decay "
        "is refitted from the LR in force 0.005 at step 4 to the floor at step 12"
    ]
    old = {"type": "HFSchedule", "name": "polynomial", "num_warmup_steps": 2, "num_training_steps": 8}
    decision = decide(Policy("extend"), Saved(old, old), {**old, "num_training_steps": 16})
    with pytest.raises(
        ResumeError,
        match=r"^--lr-resume-policy extend \(num_training_steps: 8 -> 16\) cannot refit HFSchedule 'polynomial': "
        r".*; use cooldown:N or override$",
    ):
        in_force(decision, 4, [5e-3, 1e-3], [1e-2, 2e-3])


def test_cooldown_of_a_per_group_spec_keyed_by_name_needs_the_group_names() -> None:
    per_group = {"type": "PerGroup", "schedulers": {"head": {**COS8, "min_lr": 1e-4}, "body": {**COS8, "min_lr": 3e-5}}}
    decision = decide(Policy("cooldown", 3), Saved(per_group, per_group), per_group)
    spec, notes = in_force(decision, 4, [0.005, 0.004], [LR, LR], group_names=["body", "head"])
    assert notes == [
        "--lr-resume-policy cooldown:3: linear decay from the LR in force [0.005, 0.004] at step 4 to min_lr "
        "[3e-05, 0.0001] at step 7, then held"
    ]
    decays = [S.Decay(0.005, 3, 3e-5, "linear").to_dict(), S.Decay(0.004, 3, 1e-4, "linear").to_dict()]
    assert spec["schedulers"][1] == {"type": "PureSchedule", "schedules": decays}
    with pytest.raises(ResumeError, match=r"^--lr-resume-policy cooldown:3: PerGroup: schedulers keyed by group name"):
        in_force(decision, 4, [0.005, 0.004], [LR, LR])


def test_cooldown_on_the_token_clock_needs_the_clock_and_joins_from_the_first_token() -> None:
    decision = decide(Policy("cooldown", 3), Saved(TOKENS, TOKENS), TOKENS)
    with pytest.raises(
        ResumeError, match=r"^--lr-resume-policy cooldown:3: the schedule counts tokens, and the trainer gave no clock$"
    ):
        in_force(decision, 4, [0.005], [LR])
    spec, _ = in_force(decision, 1, [0.005], [LR], clock={"tokens": 1}, per_step={"tokens": 100})
    before = S.WarmupCosine(LR, 2, 800, min_lr=FLOOR)
    joined = S.Sequence((before, S.Decay(0.005, 300, FLOOR, "linear")), (1,)).to_dict()
    assert spec["schedule"]["schedules"] == [joined]


@pytest.mark.parametrize("steps", [None, 0])
def test_a_cooldown_policy_built_without_its_number_of_steps_is_refused(steps: int | None) -> None:
    """parse_policy never makes one (``cooldown`` needs ``:N``); a ``Policy`` built in code gets the same answer
    instead of a length made up for it."""
    decision = decide(Policy("cooldown", steps), Saved(COS8, COS8), COS8)
    with pytest.raises(
        ResumeError,
        match=rf"^--lr-resume-policy cooldown:{steps}: cooldown needs its number of decay steps N >= 1 "
        r"\(cooldown:N\)$",
    ):
        in_force(decision, 4, [0.005], [LR])
    in_force(decide(Policy("cooldown", 1), Saved(COS8, COS8), COS8), 4, [0.005], [LR])  # the control: N = 1


def test_a_resume_with_the_flags_of_an_extended_run_continues_the_schedule_in_force() -> None:
    """After extend, the checkpoint holds the schedule in force (a SequentialLR) and the request that made it:
    resuming with that request again is the same schedule, whatever the policy (the unit form of the trainer's
    second resume of an extended run)."""
    longer = {**COS8, "total_steps": 12}
    now = S.WarmupCosine(LR, 2, 8, min_lr=FLOOR)(4)
    spec, _ = in_force(decide(Policy("extend"), Saved(COS8, COS8), longer), 4, [now], [LR])
    assert spec["type"] == "SequentialLR"
    saved = Saved(spec, longer, "extend")
    for policy in (Policy("strict"), Policy("extend"), Policy("override"), Policy("checkpoint")):
        decision = decide(policy, saved, longer)
        assert (decision.change, decision.notes, decision.request, decision.record) == (False, [], longer, "extend")
    with pytest.raises(
        ResumeError, match=r"^the schedule differs from the one in the checkpoint:\n  total_steps: 12 -> 8\n"
    ):
        decide(Policy("strict"), saved, COS8)  # the control: the first leg's flags are another schedule now


def test_cooldown_floors_unwrap_only_a_clocked_spec() -> None:
    assert cooldown_floors({**COS8, "min_lr": 2e-4, "schedule": {"min_lr": 5e-4}}, 1) == [2e-4]
    assert cooldown_floors({"type": "Clocked", "unit": "tokens", "schedule": {**COS8, "min_lr": 5e-4}}, 1) == [5e-4]


def test_a_decision_carries_its_policy_and_the_schedule_in_force_counts_as_asked() -> None:
    longer = {**COS8, "total_steps": 12}
    assert decide(Policy("checkpoint"), Saved(COS8, COS8), longer).policy == Policy("checkpoint")
    assert decide(Policy("checkpoint"), Saved(COS8, COS8), longer).new_spec == longer
    same = decide(Policy("strict"), Saved(COS8, COS8), COS8)
    assert (same.policy, same.new_spec, same.change) == (Policy("strict"), COS8, False)
    with pytest.raises(ResumeError, match=r"in:\n  warmup_steps: 2 -> 3\n  min_lr: 0\.001 -> 0\.002\nuse --lr-resume"):
        decide(Policy("extend"), Saved(COS8, COS8), {**longer, "warmup_steps": 3, "min_lr": 0.002})
    # The flags give the schedule in force (saved by an earlier extend), not the request: the same schedule.
    in_force_now = {"type": "SequentialLR", "milestones": [4], "schedulers": [COS8, longer]}
    again = decide(Policy("strict"), Saved(in_force_now, COS8, "extend"), in_force_now)
    assert again.change is False and again.record == "extend"


def test_extend_to_a_run_that_has_already_ended_is_refused() -> None:
    saved = {**COS8, "total_steps": 12}
    decision = decide(Policy("extend"), Saved(saved, saved), COS8)
    with pytest.raises(
        ResumeError,
        match=r"^--lr-resume-policy extend \(total_steps: 12 -> 8\): the new schedule must still be decaying at the "
        r"resume step 10: schedule must still be above its final LR",
    ):
        in_force(decision, 10, [0.002], [LR])
