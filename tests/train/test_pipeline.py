"""Pipeline parallel (torch.distributed.pipelining), alone and with TP, SP, DP and ZeRO-1: same LRs and losses as
one process, exact resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrkit.train.checkpoint import find_checkpoint
from lrkit.train.command import run_train
from lrkit.train.metrics import read_metrics
from lrkit.train.parallel import DistContext
from lrkit.train.pipeline import check_pipeline_args, stage_layers
from tests.conftest import CHAINED, TINY, chained_run, parse, torchrun, trace

SPEC = json.dumps(CHAINED)
TWO_MICRO = ["--total-batch-size", str(2 * 2 * 32)]  # 2 micro-batches of 2 x 32 tokens per update
FOUR_MICRO = ["--total-batch-size", str(4 * 2 * 32)]


def _same_run(pipelined: list[dict[str, object]], single: list[dict[str, object]]) -> None:
    assert [r["step"] for r in pipelined] == [r["step"] for r in single]
    assert [r["lr"] for r in pipelined] == [r["lr"] for r in single]  # exactly
    assert [r["loss"] for r in pipelined] == pytest.approx([r["loss"] for r in single], rel=1e-5)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt2", "llama3"])
def test_pp2_matches_one_process(tmp_path: Path, model: str) -> None:
    single = chained_run(tmp_path / "one", "--num-iterations", "4", "--model", model, *TWO_MICRO)
    torchrun(
        2, "--run-dir", str(tmp_path / "pp"), "--num-iterations", "4", "--lr-scheduler", SPEC, "--model", model,
        "--pipeline-parallel", "2", "--check-lr-sync", *TWO_MICRO,
    )  # fmt: skip
    pipelined = read_metrics(tmp_path / "pp" / "metrics.jsonl")
    assert all(r["lr_ranks_equal"] for r in pipelined)
    _same_run(pipelined, single)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize(
    "layout",
    [
        # 2 data-parallel replicas of a 2-rank pipeline with 2 virtual stages each (Interleaved1F1B)
        ["--virtual-pipeline-parallel", "2"],
        # ZeRO-1 shards each stage's optimizer state over its 2 replicas (GPT-2's tied embedding included)
        ["--zero-stage", "1"],
    ],
    ids=["vpp2-interleaved", "zero1"],
)
def test_pp2_dp2_matches_one_process(tmp_path: Path, layout: list[str]) -> None:
    """4 ranks, PP2 x DP2: the same LRs as one process, exactly, and the same losses to rel 1e-5."""
    single = chained_run(tmp_path / "one", "--num-iterations", "3", *FOUR_MICRO)
    torchrun(
        4, "--run-dir", str(tmp_path / "pp"), "--num-iterations", "3", "--lr-scheduler", SPEC,
        "--pipeline-parallel", "2", *layout, "--check-lr-sync", *FOUR_MICRO,
    )  # fmt: skip
    pipelined = read_metrics(tmp_path / "pp" / "metrics.jsonl")
    assert all(r["lr_ranks_equal"] for r in pipelined)
    _same_run(pipelined, single)


@pytest.mark.distributed
@pytest.mark.slow
def test_pp2_resume_equals_pp2_straight_exactly_and_the_checkpoint_is_the_full_model(tmp_path: Path) -> None:
    """A 2-stage pipeline stopped at its step-2 checkpoint and resumed with ``--resume auto`` logs steps 3 and 4
    bit for bit like the same pipeline run straight through (model, optimizer, schedule, data and RNG all resume).

    Its checkpoint holds the full model: loaded in one process it continues like the one-process run, to fp32
    reduction order (the pipeline sums its micro-batches in another order than one process).
    """
    flags = ["--lr-scheduler", SPEC, "--pipeline-parallel", "2", "--model", "llama3", *TWO_MICRO]
    torchrun(2, "--run-dir", str(tmp_path / "straight"), "--num-iterations", "4", *flags)
    torchrun(2, "--run-dir", str(tmp_path / "pp"), "--num-iterations", "2", "--save-interval", "2", *flags)
    torchrun(2, "--run-dir", str(tmp_path / "pp"), "--num-iterations", "4", "--resume", "auto", *flags)
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "pp" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [r["lr"] for r in resumed[2:]] == [r["lr"] for r in straight[2:]]
    assert [r["loss"] for r in resumed[2:]] == [r["loss"] for r in straight[2:]]
    assert trace(resumed) == trace(straight)

    one_process = chained_run(tmp_path / "one", "--num-iterations", "4", "--model", "llama3", *TWO_MICRO)
    _same_run(straight, one_process)
    crossed = chained_run(
        tmp_path / "cross", "--num-iterations", "4", "--model", "llama3", "--resume",
        str(find_checkpoint(tmp_path / "pp", 2)), *TWO_MICRO,
    )  # fmt: skip
    _same_run(crossed, one_process[2:])


def _four_ranks_match_one_process_and_resume(tmp_path: Path, flags: list[str], single_flags: list[str]) -> None:
    """3 steps on 4 ranks with ``flags`` (saving at step 2) against one process with ``single_flags``: the
    same LRs on every rank, losses to fp32 reduction order; resumed from step 2, step 3 bit for bit."""
    single = chained_run(tmp_path / "one", "--num-iterations", "3", *single_flags)
    straight_dir = tmp_path / "straight"
    torchrun(
        4, "--run-dir", str(straight_dir), "--num-iterations", "3", "--save-interval", "2", "--check-lr-sync", *flags
    )
    straight = read_metrics(straight_dir / "metrics.jsonl")
    assert all(r["lr_ranks_equal"] for r in straight)
    _same_run(straight, single)
    resume = ["--resume", str(find_checkpoint(straight_dir, 2))]
    torchrun(4, "--run-dir", str(tmp_path / "resumed"), "--num-iterations", "3", *resume, *flags)
    assert trace(read_metrics(tmp_path / "resumed" / "metrics.jsonl")) == trace(straight[2:])


@pytest.mark.distributed
@pytest.mark.slow
def test_pp2_tp2_sp_matches_one_process_and_resumes_exactly(tmp_path: Path) -> None:
    """4 ranks on the (pp, tp) mesh: a 2-stage pipeline whose stages are tensor- and sequence-parallel.

    LRs equal the single process's exactly and losses to fp32 reduction order; resumed from its
    step-2 checkpoint in a fresh process group it reproduces step 3 bit for bit.
    """
    flags = [
        "--lr-scheduler", SPEC, "--model", "llama3", "--pipeline-parallel", "2", "--tensor-parallel", "2",
        "--sequence-parallel", *TWO_MICRO,
    ]  # fmt: skip
    _four_ranks_match_one_process_and_resume(tmp_path, flags, ["--model", "llama3", *TWO_MICRO])


@pytest.mark.distributed
@pytest.mark.slow
def test_zero1_under_tp2_dp2_matches_one_process_and_resumes_exactly(tmp_path: Path) -> None:
    """4 ranks on the (dp, tp) mesh: ZeRO-1 over DTensor parameters; its full checkpoint (gathered on rank 0,
    ``--checkpoint-format full``) holds the whole optimizer state and resumes bit for bit."""
    flags = ["--lr-scheduler", SPEC, "--tensor-parallel", "2", "--zero-stage", "1", "--checkpoint-format", "full",
             *FOUR_MICRO]  # fmt: skip
    _four_ranks_match_one_process_and_resume(tmp_path, flags, FOUR_MICRO)


# ------------------------------------------------------------------ bad input


def test_stages_must_divide_the_layers() -> None:
    assert stage_layers(4, 2, 2) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    with pytest.raises(
        ValueError, match=r"--pipeline-parallel 2 x --virtual-pipeline-parallel 3 = 6 stages.*n_layer=4"
    ):
        stage_layers(4, 2, 3)


def test_too_few_microbatches() -> None:
    args = parse(*TINY, "--pipeline-parallel", "2")
    with pytest.raises(ValueError, match=r"needs at least 2 micro-batches per update.*got 1.*--total-batch-size"):
        check_pipeline_args(args, DistContext(pp_size=2), grad_accum=1, n_layer=4)


def test_refused_combination() -> None:
    args = parse(*TINY, "--pipeline-parallel", "2", "--fsdp")
    with pytest.raises(ValueError, match="cannot be combined with --fsdp"):
        check_pipeline_args(args, DistContext(pp_size=2), grad_accum=2, n_layer=4)
    args = parse(*TINY, "--pipeline-parallel", "2", "--sequence-parallel")
    with pytest.raises(ValueError, match="--sequence-parallel needs --tensor-parallel > 1"):
        check_pipeline_args(args, DistContext(pp_size=2), grad_accum=2, n_layer=4)


def test_tensor_parallel_and_zero1_are_accepted() -> None:
    flags = ["--tensor-parallel", "2", "--sequence-parallel", "--zero-stage", "1", "--virtual-pipeline-parallel", "2"]
    args = parse(*TINY, "--pipeline-parallel", "2", *flags)
    check_pipeline_args(args, DistContext(pp_size=2, tp_size=2, dp_size=2), grad_accum=2, n_layer=4)


def test_pipeline_needs_the_ranks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "1", "--pipeline-parallel", "2")
    assert run_train(args) == 2
    assert "--pipeline-parallel x --tensor-parallel must divide the number of ranks" in capsys.readouterr().err
    args = parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "1", "--virtual-pipeline-parallel", "2")
    assert run_train(args) == 2
    assert "need --pipeline-parallel > 1" in capsys.readouterr().err


@pytest.mark.distributed
@pytest.mark.slow
def test_too_few_microbatches_under_torchrun(tmp_path: Path) -> None:
    """Every rank refuses before any step; torchrun fails with the message."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lrkit.train"]
    args = [*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2", "--pipeline-parallel", "2"]
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "needs at least 2 micro-batches per update" in proc.stderr
    assert not (tmp_path / "metrics.jsonl").exists()
