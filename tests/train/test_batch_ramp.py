"""The trainer with a batch-size ramp (--batch-size-schedule, --batch-lr-scaling): every update's batch, tokens,
accumulation and LR against a direct computation, an exact resume mid-ramp, and the combinations it refuses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import lrkit
from lrkit import schedules as S
from lrkit.tools.flags import ScheduleFlagError
from lrkit.train.checkpoint_command import inspect_checkpoint
from lrkit.train.config import TrainConfig
from lrkit.train.errors import ConfigError, TrainError
from lrkit.train.metrics import read_metrics
from tests.conftest import (
    CHAINED,
    chained_run,
    megatron_batch,
    parse,
    torchrun,
    trace,
    train_error_of,
    train_run,
)

SEQUENCE = 32  # TINY's --sequence-length; its --batch-size is 2 (the ramp's grid with one rank)


def test_every_update_reads_the_ramps_batch_and_its_lr_is_the_token_schedule_times_sqrt_of_the_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """2 -> 8 sequences over 640 tokens, a cosine over 2048 tokens, sqrt scaling. The oracle, step by step:
    Megatron's rampup at the clock, the clock summing the updates' tokens, the pure cosine at the clock."""
    argv = ["--batch-size-schedule", "linear:2:8:640tok", "--batch-lr-scaling", "sqrt", "--lr-scheduler", "cosine",
            "--lr", "1e-2", "--min-lr", "1e-3", "--warmup", "128tok", "--total", "2048tok"]  # fmt: skip
    records = train_run(tmp_path, *argv)
    assert "running to step" in capsys.readouterr().err
    pure = S.WarmupCosine(1e-2, 128, 2048, 1e-3)
    clock = 0
    for record in records:
        batch = megatron_batch(2, 2, 8, 640, clock)
        assert record["clock"] == clock
        assert (record["batch_sequences"], record["grad_accum"]) == (batch, batch // 2)
        assert record["tokens"] == clock + batch * SEQUENCE
        np.testing.assert_allclose(record["lr"], [pure(clock) * math.sqrt(batch / 2)] * 2, rtol=4.5e-16, atol=0)
        clock += batch * SEQUENCE
    assert records[-2]["tokens"] < 2048 <= records[-1]["tokens"]  # the run length: the updates that reach --total
    assert {r["batch_sequences"] for r in records} == {2, 4, 6, 8}


RAMP = ["--batch-size-schedule", "linear:2:6:384tok", "--batch-lr-scaling", "linear"]


def test_a_step_schedule_keeps_counting_steps_and_a_resume_mid_ramp_is_exact(tmp_path: Path) -> None:
    """The chained StepLR/LinearLR counts updates; the LR is torch's chained schedule times B / 2. Resumed at
    step 4, where the batch is about to grow, the run gives the straight run's LRs, batches and losses."""
    straight = chained_run(tmp_path / "a", *RAMP, "--num-iterations", "8")
    chained_run(tmp_path / "b", *RAMP, "--num-iterations", "4", "--save-interval", "4")
    info = inspect_checkpoint(tmp_path / "b")  # `lrkit checkpoint inspect`: the LRs of steps 5 and 6
    assert (info["lr"]["now"], info["lr"]["next"]) == (straight[4]["lr"], straight[5]["lr"])
    assert info["batch_ramp"]["lr_scaling"] == "linear"
    resumed = chained_run(tmp_path / "b", *RAMP, "--num-iterations", "8", "--resume", "auto")
    assert trace(resumed) == trace(straight)
    batches = [(r["batch_sequences"], r["grad_accum"], r["tokens"]) for r in straight]
    assert [(r["batch_sequences"], r["grad_accum"], r["tokens"]) for r in resumed] == batches
    clock, expected = 0, []
    for _ in straight:
        expected.append(megatron_batch(2, 2, 6, 384, clock))
        clock += expected[-1] * SEQUENCE
    assert [b for b, _, _ in batches] == expected and straight[3]["batch_sequences"] > straight[2]["batch_sequences"]
    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW([{"params": [params[0]]}, {"params": [params[1]]}], lr=1e-3)
    oracle = lrkit.build_scheduler(CHAINED, opt, backend="torch")
    for record, batch in zip(straight, expected):
        assert record["lr"] == pytest.approx([g["lr"] * batch / 2 for g in opt.param_groups], rel=1e-15, abs=0)
        opt.step()
        oracle.step()


def test_a_skipped_update_does_not_move_the_ramp(tmp_path: Path) -> None:
    """The fp16 GradScaler skips update 4: the clock stays, so update 5 reads update 4's batch again."""
    records = chained_run(tmp_path, *RAMP, "--num-iterations", "6", "--dtype", "float16", "--inject-inf-grad-at", "4")
    assert [r["skipped"] for r in records] == [False, False, False, True, False, False]
    clock, expected = 0, []
    for record in records:
        expected.append(megatron_batch(2, 2, 6, 384, clock))
        clock += 0 if record["skipped"] else expected[-1] * SEQUENCE
    assert [r["batch_sequences"] for r in records] == expected and expected[3] == expected[4] == 4
    assert [r["tokens"] for r in records] == list(np.cumsum([b * SEQUENCE for b in expected]))


def test_a_resume_with_another_ramp_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chained_run(tmp_path, *RAMP, "--num-iterations", "2", "--save-interval", "2")
    other = [RAMP[0], "linear:2:6:768tok", *RAMP[2:]]
    err = train_error_of(tmp_path, *other, "--num-iterations", "4", "--resume", "auto", capsys=capsys)
    assert "ramps the batch as linear:2:6:384tok:2 with linear LR scaling" in err
    assert "and this run asks for linear:2:6:768tok:2 with linear LR scaling" in err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--batch-size-schedule", "linear:3:9:640tok"],
         r"--batch-size-schedule 'linear:3:9:640tok': START 3 must be a multiple of --batch-size x data-parallel "
         r"size = 2 x 1 = 2 sequences"),
        (["--batch-size-schedule", "linear:2:8:640tok:4"], r"end - start = 8 - 2 = 6, increment=4"),
        (["--batch-size-schedule", "linear:2:8:640tok:3"], r"INCREMENT 3 must be a multiple of --batch-size x"),
        (["--batch-size-schedule", "linear:8:2:640tok"], r"start must be <= end, got start=8, end=2"),
        (["--batch-size-schedule", "linear:2:8:640tok", "--total-batch-size", "128"],
         r"--total-batch-size 128 and --batch-size-schedule 'linear:2:8:640tok' both set the tokens per update"),
        (["--batch-lr-scaling", "sqrt"], r"--batch-lr-scaling sqrt scales the LR with a batch-size ramp, but there "
                                         r"is none: add --batch-size-schedule"),
        (["--batch-size-schedule", "linear:2:8:640tok", "--lr-scheduler", "cosine", "--warmup-steps", "2",
          "--total", "2048tok"],
         r"--warmup-steps 2 is in steps but the schedule counts tokens: converting steps to tokens needs the "
         r"tokens per optimizer step \(--batch-size-schedule makes the tokens per step vary: give"),
    ],
)  # fmt: skip
def test_a_ramp_that_does_not_fit_is_refused_before_any_step(
    tmp_path: Path, argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = train_error_of(tmp_path, *argv, capsys=capsys)
    assert err.startswith("lrkit train: error: ")
    with pytest.raises((TrainError, ScheduleFlagError), match=match):
        TrainConfig.from_args(parse(*argv, "--batch-size", "2", "--sequence-length", "32")).resolve()


def test_a_ramp_with_pipeline_parallel_or_an_unknown_rule_is_refused() -> None:
    ramp = ["--batch-size-schedule", "linear:8:16:640tok", "--pipeline-parallel", "2"]  # a grid of 8 x 1
    config = TrainConfig.from_args(parse(*ramp))
    with pytest.raises(TrainError, match=r"with --pipeline-parallel 2: the pipeline's microbatches are fixed"):
        config.resolve()
    with pytest.raises(ConfigError, match=r"\[batch\] lr_scaling = 'cube' must be one of: none, linear, sqrt"):
        TrainConfig.from_toml("[batch]\nlr_scaling = 'cube'\n")
    with pytest.raises(ConfigError, match=r"\[batch\] batch_size_schedule 'linear:2:8' is not a batch ramp; expected"):
        TrainConfig.from_toml("[batch]\nbatch_size_schedule = 'linear:2:8'\n")


def test_the_ramp_is_config_data_that_round_trips_through_toml() -> None:
    ramp = ["--batch-size-schedule", "linear:256:2048:10Btok", "--batch-lr-scaling", "sqrt"]
    config = TrainConfig.from_args(parse(*ramp))
    assert TrainConfig.from_toml(config.to_toml()) == config
    assert json.loads(json.dumps(config.to_dict()))["batch"]["lr_scaling"] == "sqrt"


@pytest.mark.distributed
@pytest.mark.slow
def test_under_ddp_the_ramp_reads_the_batches_of_one_process(tmp_path: Path) -> None:
    """2 ranks of 1 sequence per micro-batch against 1 process of 2: the same grid, so the same global batch,
    accumulation and LR every update (ranks equal, --check-lr-sync), the same loss up to summation order."""
    flags = [*RAMP, "--num-iterations", "8", "--lr-scheduler", json.dumps(CHAINED)]
    torchrun(2, "--run-dir", str(tmp_path / "ddp"), *flags, "--batch-size", "1", "--check-lr-sync")
    ddp = read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    one = train_run(tmp_path / "one", *flags)
    fields = ("step", "batch_sequences", "grad_accum", "tokens", "lr")
    assert [[r[k] for k in fields] for r in ddp] == [[r[k] for k in fields] for r in one]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], rel=1e-6)
    assert {r["grad_accum"] for r in ddp} == {1, 2, 3}
