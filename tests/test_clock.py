"""Time in steps, tokens, samples or a fraction of the run: quantities, the Clocked schedule, the flags,
preview/plot, and the trainer (LR equal at equal tokens across batch sizes, no jump on a batch change)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_train import TINY, parse

import lrkit
from lrkit import cli
from lrkit import schedules as S
from lrkit.runtime.resume import Policy, ResumeError, Saved, decide
from lrkit.schedulers.base import StateError
from lrkit.schedules.clock import (
    QUANTITY_SYNTAX,
    Quantity,
    QuantityError,
    RateError,
    Rates,
    StepView,
    clock_unit,
    parse_quantity,
    steps_to_reach,
)
from lrkit.spec import build_scheduler, spec_fingerprint
from lrkit.spec.clocked import Clocked, advance, spec_clock_unit
from lrkit.tools.flags import ScheduleFlagError, add_schedule_arguments, spec_from_args
from lrkit.train.loop import read_metrics, train
from lrkit.train.parallel import DistContext

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


# ----------------------------------------------------------------------------- quantities


@pytest.mark.parametrize(
    "text,amount,unit",
    [
        ("2000", 2000, "steps"),
        ("2K", 2000, "steps"),
        ("300steps", 300, "steps"),
        ("512tok", 512, "tokens"),
        ("50Mtok", 50_000_000, "tokens"),
        ("10Btok", 10_000_000_000, "tokens"),
        ("1Ttokens", 10**12, "tokens"),
        ("2ktok", 2000, "tokens"),
        ("0.3Mtok", 300_000, "tokens"),  # exact: decimal, not 0.3 * 1e6 in binary floating point
        ("1e3tok", 1000, "tokens"),
        ("1.5Msamples", 1_500_000, "samples"),
        ("0.01dur", 0.01, "dur"),
        ("1dur", 1.0, "dur"),
        (" 4Ktok ", 4000, "tokens"),
    ],
)
def test_quantities_parse(text: str, amount: float, unit: str) -> None:
    quantity = parse_quantity(text, "--warmup")
    assert (quantity.amount, quantity.unit) == (amount, unit)
    assert type(quantity.amount) is (float if unit == "dur" else int)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("5x", "is not a quantity"),
        ("tok", "is not a quantity"),
        ("-5tok", "is not a quantity"),
        ("", "is not a quantity"),
        ("5Tok", "is not a quantity"),  # T is the multiplier: "ok" is not a unit
        ("1.5tok", "whole number of tokens"),
        ("1.2dur", "must be in [0, 1]"),
    ],
)
def test_bad_quantities_name_the_flag_and_the_value(text: str, expected: str) -> None:
    with pytest.raises(QuantityError) as err:
        parse_quantity(text, "--warmup")
    message = str(err.value)
    assert message.startswith(f"--warmup {text!r}") and expected in message
    if expected == "is not a quantity":
        assert QUANTITY_SYNTAX in message


def test_the_clock_is_tokens_if_any_length_is_in_tokens_else_samples_else_steps() -> None:
    assert clock_unit(["steps", "tokens", "dur"]) == "tokens"
    assert clock_unit(["samples", "tokens"]) == "tokens"
    assert clock_unit(["samples", "steps"]) == "samples"
    assert clock_unit(["steps", "dur"]) == "steps"
    assert clock_unit([]) == "steps"


def test_conversions_to_the_clock() -> None:
    rates = Rates(tokens_per_step=4096, sequence_length=128)
    assert rates.convert(Quantity(10, "steps"), "tokens") == 40960
    assert rates.convert(Quantity(10, "steps"), "samples") == 320
    assert rates.convert(Quantity(10, "samples"), "tokens") == 1280
    assert rates.convert(Quantity(0.25, "dur"), "tokens", total=1000) == 250
    assert rates.convert(Quantity(0.0015, "dur"), "steps", total=1000) == 2  # round(1.5): the nearest even
    with pytest.raises(RateError, match="tokens per optimizer step"):
        Rates().convert(Quantity(10, "steps", "10"), "tokens", name="--warmup-steps")
    with pytest.raises(RateError, match="sequence length"):
        Rates(tokens_per_step=4096).convert(Quantity(10, "samples"), "tokens")
    with pytest.raises(QuantityError, match="fraction of the run"):
        rates.convert(Quantity(0.1, "dur", "0.1dur"), "tokens", name="--warmup")
    with pytest.raises(QuantityError, match="cannot take a length in tokens"):
        rates.convert(Quantity(10, "tokens"), "steps")


def test_steps_to_reach_is_the_ceiling() -> None:
    assert steps_to_reach(2000, 0, 128) == 16  # 15 steps read 1920 tokens, the 16th passes 2000
    assert steps_to_reach(2048, 768, 256) == 5
    assert steps_to_reach(100, 200, 8) == 0


def test_step_view_is_the_schedule_at_step_times_rate() -> None:
    pure = oracle(1e-2)
    view = StepView(pure, 1000)
    steps = np.arange(6)
    assert view(steps).tolist() == [pure(1000 * s) for s in steps]
    assert view.end() == (5, 1e-4)  # ceil(4096 / 1000)
    assert view.peak() == (0.512, 1e-2)
    assert S.schedule_from_dict(view.to_dict()) == view


# ----------------------------------------------------------------------------- the Clocked scheduler


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


# ----------------------------------------------------------------------------- flags


def flags(*argv: str, rates: Rates | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_schedule_arguments(parser)
    return spec_from_args(parser.parse_args(list(argv)), rates=rates)


def test_flags_in_tokens_give_a_clocked_spec() -> None:
    spec = flags("--lr-scheduler", "cosine", "--warmup", "50Mtok", "--total", "10Btok", "--min-lr", "3e-5")
    assert spec == {
        "type": "Clocked",
        "unit": "tokens",
        "schedule": flags(
            "--lr-scheduler", "cosine", "--warmup-steps", "50000000", "--total-steps", "10000000000", "--min-lr", "3e-5"
        ),
    }


def test_dur_is_a_fraction_of_the_total() -> None:
    steps = flags("--lr-scheduler", "cosine", "--warmup", "0.01dur", "--total-steps", "1000")
    assert steps == flags("--lr-scheduler", "cosine", "--warmup-steps", "10", "--total-steps", "1000")
    tokens = flags("--lr-scheduler", "cosine", "--warmup", "0.01dur", "--total", "10Btok")
    assert tokens["schedule"]["warmup_steps"] == 100_000_000
    assert flags("--lr-scheduler", "cosine", "--warmup", "2000", "--total", "5000") == flags(
        "--lr-scheduler", "cosine", "--warmup-steps", "2000", "--total-steps", "5000"
    )


def test_wsd_decay_length_in_tokens_or_as_a_fraction() -> None:
    base = ["--lr-scheduler", "wsd", "--warmup", "0.01dur", "--total", "10Btok"]
    spec = flags(*base, "--decay", "1Btok")
    assert spec["unit"] == "tokens"
    assert (spec["schedule"]["decay_steps"], spec["schedule"]["warmup_steps"]) == (1_000_000_000, 100_000_000)
    spec = flags(*base, "--decay", "0.2dur")
    assert (spec["schedule"]["decay_steps"], spec["schedule"]["decay_fraction"]) == (None, 0.2)
    in_steps = flags("--lr-scheduler", "wsd", "--total-steps", "2000", "--decay", "0.2dur")
    assert in_steps == flags("--lr-scheduler", "wsd", "--total-steps", "2000", "--decay-fraction", "0.2")


def test_mixed_units_convert_with_the_rates_or_say_what_is_missing() -> None:
    argv = ["--lr-scheduler", "cosine", "--warmup-steps", "2000", "--total", "10Btok"]
    spec = flags(*argv, rates=Rates(tokens_per_step=4096, sequence_length=128))
    assert spec["schedule"]["warmup_steps"] == 2000 * 4096 and spec["schedule"]["total_steps"] == 10**10
    with pytest.raises(ScheduleFlagError, match="--warmup-steps 2000 is in steps.*--tokens-per-step"):
        flags(*argv)
    samples = flags("--lr-scheduler", "cosine", "--warmup", "2Ksamples", "--total", "1Msamples")
    assert samples["unit"] == "samples" and samples["schedule"]["warmup_steps"] == 2000
    mixed = flags("--lr-scheduler", "cosine", "--warmup", "2Ksamples", "--total", "1Btok", rates=Rates(4096, 128))
    assert mixed["unit"] == "tokens" and mixed["schedule"]["warmup_steps"] == 2000 * 128


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--lr-scheduler", "cosine", "--warmup", "10", "--warmup-steps", "10", "--total", "100"], "not both"),
        (["--lr-scheduler", "wsd", "--total", "1Ktok", "--decay", "1", "--decay-fraction", "0.1"], "not both"),
        (["--lr-scheduler", "cosine", "--warmup", "0.1dur"], "--warmup 0.1dur is a fraction of the run"),
        (["--lr-scheduler", "cosine", "--total", "0.5dur"], "--total 0.5dur is the run's length"),
        (["--lr-scheduler", "step", "--step-size", "5", "--total", "1Mtok"], "step counts optimizer steps"),
        (["--lr-scheduler", "cyclic", "--warmup", "5"], "--warmup does not apply to --lr-scheduler cyclic"),
        (["--lr-scheduler", "cosine", "--warmup", "5"], "needs --total-steps \\(or --total\\)"),
    ],
)
def test_time_flags_that_do_not_fit_are_errors(argv: list[str], match: str) -> None:
    with pytest.raises(ScheduleFlagError, match=match):
        flags(*argv)


def test_a_bad_quantity_is_an_argparse_error_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        flags("--lr-scheduler", "cosine", "--warmup", "50Mtk", "--total", "1Btok")
    err = capsys.readouterr().err
    assert "argument --warmup: '50Mtk' is not a quantity" in err and QUANTITY_SYNTAX in err


# ----------------------------------------------------------------------------- preview and plot

PREVIEW = ["--lr-scheduler", "cosine", "--lr", "3e-3", "--warmup", "2Ktok", "--total", "64Ktok", "--min-lr", "3e-4"]


def test_preview_shows_a_token_schedule_per_optimizer_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "lr.csv"
    assert cli.main(["preview", *PREVIEW, "--tokens-per-step", "2048", "--csv", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Clocked WarmupCosine (tokens: 2048 per optimizer step)" in out and "FAIL" not in out
    assert "final LR at step 32 equals the floor" in out  # ceil(64000 / 2048)
    pure = S.WarmupCosine(3e-3, 2000, 64000, 3e-4)
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    assert [float(lr) for _, lr in rows] == [pure(int(step) * 2048) for step, _ in rows]


def test_preview_of_a_token_schedule_needs_the_tokens_per_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["preview", *PREVIEW]) == 2
    assert "pass --tokens-per-step" in capsys.readouterr().err
    argv = ["preview", "--lr-scheduler", "cosine", "--warmup-steps", "10", "--total", "64Ktok"]
    assert cli.main(argv) == 2
    assert "--warmup-steps 10 is in steps" in capsys.readouterr().err
    assert cli.main([*argv, "--total-batch-size", "2048"]) == 0  # the trainer's name for it works too


def test_preview_of_dur_and_samples(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["preview", "--lr-scheduler", "wsd", "--warmup", "0.05dur", "--total", "2000", "--decay", "0.2dur"]
    assert cli.main(argv) == 0
    assert '"warmup_steps": 100' in capsys.readouterr().out
    argv = ["preview", "--lr-scheduler", "cosine", "--warmup", "64samples", "--total", "4Ksamples"]
    assert cli.main([*argv, "--tokens-per-step", "1024", "--sequence-length", "128"]) == 0
    assert "(samples: 8 per optimizer step)" in capsys.readouterr().out


def test_plot_accepts_the_time_flags(tmp_path: Path) -> None:
    path = tmp_path / "lr.png"
    assert cli.main(["plot", *PREVIEW, "--tokens-per-step", "2048", "-o", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- the trainer

LR = ["--lr", "1e-2", "--min-lr", "1e-3"]
TOKEN_COSINE = ["--lr-scheduler", "cosine", *LR, "--warmup", "512tok", "--total", "2048tok"]
PURE = S.WarmupCosine(1e-2, 512, 2048, 1e-3)  # the oracle: the schedule in tokens, evaluated directly


def train_run(run_dir: Path, *argv: str) -> list[dict[str, Any]]:
    train(parse(*TINY, "--run-dir", str(run_dir), *argv), DistContext())
    return read_metrics(run_dir / "metrics.jsonl")


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_lr_at_equal_tokens_is_equal_across_batch_sizes(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """128 vs 256 tokens per update (2 vs 4 micro-batches of 2 x 32): the same LR after the same tokens."""
    runs = {}
    for tokens_per_step in (128, 256):
        argv = [*TOKEN_COSINE, "--total-batch-size", str(tokens_per_step), "--scheduler-backend", backend]
        records = train_run(tmp_path / str(tokens_per_step), *argv)
        assert len(records) == 2048 // tokens_per_step  # the run length comes from --total
        assert f"running to step {len(records)}" in capsys.readouterr().err
        # the LR a record shows was set before its update: at the tokens of the steps before it
        assert [r["clock"] for r in records] == [r["tokens"] - tokens_per_step for r in records]
        runs[tokens_per_step] = {r["clock"]: r["lr"] for r in records}
    small, large = runs[128], runs[256]
    assert set(large) < set(small)
    for tokens, lr in large.items():
        assert small[tokens] == lr
        np.testing.assert_allclose(lr, [PURE(tokens)] * 2, rtol=4.5e-16, atol=0)


def test_a_skipped_update_does_not_advance_the_token_clock(tmp_path: Path) -> None:
    fp16_skip_at_3 = ["--dtype", "float16", "--inject-inf-grad-at", "3"]
    records = train_run(tmp_path, *TOKEN_COSINE, "--num-iterations", "5", *fp16_skip_at_3)
    assert [r["skipped"] for r in records] == [False, False, True, False, False]
    assert [r["clock"] for r in records] == [0, 64, 128, 128, 192]
    assert [r["tokens"] for r in records] == [64, 128, 192, 256, 320]
    assert [r["samples"] for r in records] == [2, 4, 6, 8, 10]
    assert [r["lr"][0] for r in records] == [PURE(r["clock"]) for r in records]


def first_leg(
    tmp_path: Path, backend: str, steps: int, capsys: pytest.CaptureFixture[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The token cosine at 128 tokens per update for ``steps`` updates, saved at the last one: the flags
    both legs share and the records (the leg's notes are read off ``capsys``)."""
    common = [*TOKEN_COSINE, "--save-interval", str(steps), "--scheduler-backend", backend]
    first = train_run(tmp_path, *common, "--total-batch-size", "128", "--num-iterations", str(steps))
    capsys.readouterr()
    return common, first


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_resume_with_another_batch_size_has_no_lr_jump(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common, first = first_leg(tmp_path, backend, 6, capsys)
    assert first[-1]["tokens"] == 768
    records = train_run(tmp_path, *common, "--total-batch-size", "256", "--resume", "auto")
    err = capsys.readouterr().err
    assert "batch changed from 128 to 256 tokens per step at step 6" in err and "no LR jump" in err
    resumed = records[6:]
    assert [r["step"] for r in resumed] == [7, 8, 9, 10, 11]  # 6 + ceil((2048 - 768) / 256)
    assert [r["clock"] for r in resumed] == [768, 1024, 1280, 1536, 1792]
    # the LR right after the resume is the token schedule's at the tokens trained so far, then it goes on
    for record in resumed:
        np.testing.assert_allclose(record["lr"], [PURE(record["clock"])] * 2, rtol=4.5e-16, atol=0)
    assert records[:6] == first


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_cooldown_of_a_token_schedule_decays_over_n_steps_of_tokens(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``cooldown:2`` at 512 tokens, resumed at 256 tokens per step: the decay spans 2 x 256 tokens."""
    common, first = first_leg(tmp_path, backend, 4, capsys)
    cooldown = ["--total-batch-size", "256", "--num-iterations", "8", "--resume", "auto"]
    records = train_run(tmp_path, *common, *cooldown, "--lr-resume-policy", "cooldown:2")
    err = capsys.readouterr().err
    assert "at step 4 (512 tokens) to min_lr [0.001, 0.001] at step 6 (1024 tokens, at 256 tokens per step)" in err
    assert records[:4] == first
    resumed = records[4:]
    assert [r["clock"] for r in resumed] == [512, 768, 1024, 1280]
    start = PURE(512)  # the LR in force at the checkpoint: the first update after the resume uses it
    expected = [start, S.Decay(start, 512, 1e-3)(256), 1e-3, 1e-3]
    for record, lr in zip(resumed, expected):
        np.testing.assert_allclose(record["lr"], [lr] * 2, rtol=4.5e-16, atol=0)
    # rerunning the same command continues the cooldown in force (the floor, held)
    more = train_run(tmp_path, *common, *cooldown[:2], "--num-iterations", "10", "--resume", "auto",
                     "--lr-resume-policy", "cooldown:2")  # fmt: skip
    assert [r["lr"][0] for r in more[8:]] == pytest.approx([1e-3, 1e-3], rel=4.5e-16)


@pytest.mark.parametrize("backend", ["lrkit", "torch"])
def test_extend_of_a_token_schedule_refits_the_rest_in_tokens(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """2048 -> 4096 tokens at 1024 tokens trained: the LR continues, then decays to the floor at 4096 tokens."""
    common, first = first_leg(tmp_path, backend, 8, capsys)
    longer = [arg.replace("2048tok", "4096tok") for arg in common]
    records = train_run(
        tmp_path, *longer, "--total-batch-size", "128", "--resume", "auto", "--lr-resume-policy", "extend"
    )
    err = capsys.readouterr().err
    assert "schedule.total_steps: 2048 -> 4096" in err and "at step 8 (1024 tokens) to the floor at tokens 4096" in err
    assert records[:8] == first and len(records) == 4096 // 128
    refit = S.Refit(S.WarmupCosine(1e-2, 512, 4096, 1e-3), 1024, PURE(1024))
    for record in records[8:]:
        np.testing.assert_allclose(record["lr"], [refit(record["clock"] - 1024)] * 2, rtol=1e-15, atol=0)
    assert records[8]["lr"][0] == pytest.approx(PURE(1024), rel=1e-15) and records[-1]["lr"][0] > 1e-3


def test_a_step_schedule_resumed_with_another_batch_is_continuous_in_steps_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--lr-scheduler", "cosine", *LR, "--warmup-steps", "2", "--total-steps", "8", "--save-interval", "4"]
    train_run(tmp_path, *common, "--total-batch-size", "128", "--num-iterations", "4")
    records = train_run(tmp_path, *common, "--total-batch-size", "256", "--num-iterations", "6", "--resume", "auto")
    assert "schedule counts optimizer steps" in capsys.readouterr().err
    pure = S.WarmupCosine(1e-2, 2, 8, 1e-3)
    assert [r["lr"][0] for r in records] == [pure(step) for step in range(6)]
    assert "clock" not in records[0] and records[-1]["tokens"] == 4 * 128 + 2 * 256


def test_override_puts_a_token_schedule_in_force_at_the_tokens_trained(tmp_path: Path) -> None:
    steps = ["--lr-scheduler", "cosine", *LR, "--warmup-steps", "2", "--total-steps", "8", "--save-interval", "4"]
    train_run(tmp_path, *steps, "--total-batch-size", "128", "--num-iterations", "4")
    records = train_run(
        tmp_path, *TOKEN_COSINE, "--total-batch-size", "128", "--resume", "auto", "--lr-resume-policy", "override"
    )
    assert [r["clock"] for r in records[4:]] == list(range(512, 2048, 128))
    assert [r["lr"][0] for r in records[4:]] == [PURE(r["clock"]) for r in records[4:]]
