"""The trainer on the token clock: LR equal at equal tokens across batch sizes, no jump on a batch change,
and the resume policies (cooldown, extend, override) counted in tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrkit import schedules as S
from tests.conftest import train_run

LR = ["--lr", "1e-2", "--min-lr", "1e-3"]
TOKEN_COSINE = ["--lr-scheduler", "cosine", *LR, "--warmup", "512tok", "--total", "2048tok"]
PURE = S.WarmupCosine(1e-2, 512, 2048, 1e-3)  # the oracle: the schedule in tokens, evaluated directly


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
