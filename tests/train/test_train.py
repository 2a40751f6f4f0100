"""The trainer: exact resume (also after SIGKILL, mid-save too), LR equal on all ranks, AMP skips, accumulation,
bad input."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lrkit
from lrkit.train import checkpoint as ckpt
from lrkit.train import loop as train_loop
from lrkit.train.components import optimizer_impl_kwargs
from lrkit.train.errors import TrainError
from lrkit.train.metrics import read_metrics
from tests.conftest import CHAINED, TINY, chained_run, parse, torchrun, trace, train_error_of


def test_resume_is_exact_in_one_process(tmp_path: Path) -> None:
    straight = chained_run(tmp_path / "a", "--num-iterations", "8")
    chained_run(tmp_path / "b", "--num-iterations", "4", "--save-interval", "4")
    resumed = chained_run(tmp_path / "b", "--num-iterations", "8", "--resume", "auto")
    assert len(straight) == 8
    assert trace(resumed) == trace(straight)


def test_lr_in_metrics_is_the_schedule(tmp_path: Path) -> None:
    """The logged LR of step s is the schedule's value after s-1 scheduler steps (torch as the oracle)."""
    records = chained_run(tmp_path, "--num-iterations", "7", "--lr", "0.01")
    params = [torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW([{"params": [params[0]]}, {"params": [params[1]]}], lr=0.01)
    oracle = lrkit.build_scheduler(CHAINED, opt, backend="torch")
    expected = []
    for _ in range(7):
        expected.append([g["lr"] for g in opt.param_groups])
        opt.step()
        oracle.step()
    assert [r["lr"] for r in records] == expected


def test_gradient_accumulation_steps_the_scheduler_once_per_update(tmp_path: Path) -> None:
    records = chained_run(tmp_path, "--num-iterations", "5", "--total-batch-size", str(4 * 2 * 32))
    assert [r["scheduler_steps"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["tokens"] for r in records] == [4 * 2 * 32 * (i + 1) for i in range(5)]


def test_gradient_accumulation_equals_one_big_batch(tmp_path: Path) -> None:
    """2 micro-batches of 2 sequences per update against 1 batch of 4: the same 128 tokens, the same update.

    The micro-batch losses are averaged, not summed, so the loss, the gradient (its norm) and the LRs match; only
    float summation order differs (measured: a relative 2e-7 on the loss).
    """
    big = chained_run(tmp_path / "big", "--num-iterations", "4", "--batch-size", "4")
    accumulated = chained_run(
        tmp_path / "accumulated", "--num-iterations", "4", "--batch-size", "2", "--total-batch-size", str(4 * 32)
    )
    assert [r["tokens"] for r in accumulated] == [r["tokens"] for r in big]
    assert [r["lr"] for r in accumulated] == [r["lr"] for r in big]
    assert [r["loss"] for r in accumulated] == pytest.approx([r["loss"] for r in big], rel=1e-6)
    assert [r["grad_norm"] for r in accumulated] == pytest.approx([r["grad_norm"] for r in big], rel=1e-5)
    assert big[-1]["loss"] < big[0]["loss"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--optimizer", "adamw"], {"fused": True}),
        (["--optimizer", "adam"], {"fused": True}),
        (["--optimizer", "sgd"], {}),
        (["--optimizer", "adamw", "--compile"], {}),
        (["--optimizer-impl", "for-loop"], {"foreach": False}),
        (["--optimizer-impl", "foreach"], {"foreach": True}),
        (["--optimizer", "sgd", "--optimizer-impl", "fused"], {"fused": True}),
    ],
)
def test_optimizer_impl_picks_torchs_implementation(argv: list[str], expected: dict[str, bool]) -> None:
    assert optimizer_impl_kwargs(parse(*argv)) == expected


def test_optimizer_impl_with_dtensor_parameters() -> None:
    """torch's fused kernels refuse DTensors (TP, FSDP2): auto falls back, an explicit fused is an error."""
    assert optimizer_impl_kwargs(parse(), dtensor_params=True) == {}
    with pytest.raises(TrainError, match="--optimizer-impl fused .*DTensor"):
        optimizer_impl_kwargs(parse("--optimizer-impl", "fused"), dtensor_params=True)


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_fused_update_trains_like_torchs_for_loop(tmp_path: Path, optimizer: str) -> None:
    """The fused AdamW/Adam kernel (the default) against torch's for-loop implementation, as the oracle."""
    argv = ("--num-iterations", "5", "--optimizer", optimizer, "--weight-decay", "0.1")
    fused = chained_run(tmp_path / "fused", *argv)
    loop = chained_run(tmp_path / "loop", *argv, "--optimizer-impl", "for-loop")
    assert [r["lr"] for r in fused] == [r["lr"] for r in loop]
    assert [r["loss"] for r in fused] == pytest.approx([r["loss"] for r in loop], rel=1e-5)
    assert fused[-1]["loss"] < fused[0]["loss"]


def test_amp_skipped_update_does_not_advance_the_schedule(tmp_path: Path) -> None:
    """fp16 + GradScaler on CPU with an injected inf gradient at step 3: the update and the schedule skip."""
    records = chained_run(tmp_path, "--num-iterations", "6", "--dtype", "float16", "--inject-inf-grad-at", "3")
    skipped = [r["skipped"] for r in records]
    assert skipped == [False, False, True, False, False, False]
    assert records[2]["scheduler_steps"] == records[1]["scheduler_steps"]
    # The step after the skip runs at the LR the skipped step would have used.
    assert records[3]["lr"] == records[2]["lr"]
    clean = chained_run(tmp_path / "clean", "--num-iterations", "5", "--dtype", "float16")
    assert [r["lr"] for r in records[3:]] == [r["lr"] for r in clean[2:5]]


@pytest.mark.parametrize("backend", ["torch", "lrkit"])
def test_resume_after_a_skipped_fp16_update_is_exact(tmp_path: Path, backend: str) -> None:
    """Update 2 is skipped, so the checkpoint at step 4 holds 3 scheduler steps: a resume replays those 3 (torch's
    classes are rebuilt and stepped), not the 4 optimizer steps, and continues exactly like the straight run."""
    flags = ["--num-iterations", "6", "--dtype", "float16", "--inject-inf-grad-at", "2", "--scheduler-backend", backend]
    straight = chained_run(tmp_path / "straight", *flags)
    chained_run(tmp_path / "resumed", *flags[2:], "--num-iterations", "4", "--save-interval", "4")
    resumed = chained_run(tmp_path / "resumed", *flags, "--resume", "auto")
    assert [r["skipped"] for r in straight] == [False, True, False, False, False, False]
    assert [r["scheduler_steps"] for r in resumed] == [1, 1, 2, 3, 4, 5]
    assert trace(resumed) == trace(straight)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize(
    "layout",
    [[], ["--tensor-parallel", "2", "--dropout", "0.1"], ["--zero-stage", "1"]],
    ids=["ddp2", "tp2-dropout", "zero1"],
)
def test_resume_is_exact_under_ddp(tmp_path: Path, layout: list[str]) -> None:
    """2 ranks, 6 steps straight against 3 + resume to 6, through sharded checkpoints (the default under
    torchrun): each ZeRO-1 rank writes the optimizer state it owns; with TP, dropout's random state resumes too."""
    flags = ["--lr-scheduler", json.dumps(CHAINED), *layout]
    torchrun(2, "--run-dir", str(tmp_path / "a"), "--num-iterations", "6", *flags)
    torchrun(2, "--run-dir", str(tmp_path / "b"), "--num-iterations", "3", "--save-interval", "3", *flags)
    torchrun(2, "--run-dir", str(tmp_path / "b"), "--num-iterations", "6", "--resume", "auto", *flags)
    straight = read_metrics(tmp_path / "a" / "metrics.jsonl")
    resumed = read_metrics(tmp_path / "b" / "metrics.jsonl")
    assert len(straight) == 6
    assert trace(resumed) == trace(straight)


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize(
    "layout",
    [
        [],
        ["--zero-stage", "1"],
        ["--fsdp"],
        ["--tensor-parallel", "2"],
        ["--tensor-parallel", "2", "--model", "llama3"],
    ],
    ids=["ddp", "zero1", "fsdp2", "tp2-gpt2", "tp2-llama3"],
)
def test_lr_equal_on_all_ranks(tmp_path: Path, layout: list[str]) -> None:
    """Every rank all-gathers its LRs each step (--check-lr-sync raises on any difference)."""
    torchrun(
        2, "--run-dir", str(tmp_path), "--num-iterations", "4", "--lr-scheduler", json.dumps(CHAINED),
        "--check-lr-sync", "--save-interval", "4", *layout,
    )  # fmt: skip
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == 4 and all(r["lr_ranks_equal"] for r in records)
    assert ckpt.find_latest_valid(tmp_path) is not None


def test_check_lr_sync_catches_a_rank_that_disagrees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative control for ``lr_ranks_equal``: a second rank one ulp off at step 3 stops the run.

    The all-gather is replaced by two ranks: an exact copy of this rank's LRs, except at step 3 where the
    second rank's last group is one float step higher.
    """
    calls = []

    def two_ranks(values: list[float], ctx: object) -> list[list[float]]:
        calls.append(values)
        other = list(values)
        if len(calls) == 3:
            other[-1] = math.nextafter(other[-1], math.inf)
        return [values, other]

    monkeypatch.setattr(train_loop, "all_gather_floats", two_ranks)
    with pytest.raises(RuntimeError, match=r"ranks disagree on the LR at step 3: \[\["):
        chained_run(tmp_path, "--num-iterations", "5", "--check-lr-sync")
    assert len(calls) == 3
    assert [r["lr_ranks_equal"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [True, True]  # steps 1, 2


def _kill_during_a_save(proc: subprocess.Popen[bytes], checkpoints: Path, nth: int) -> None:
    """SIGKILL ``proc`` while the temporary file of its ``nth`` save exists (unless it ends before that)."""
    seen: set[str] = set()
    marker = f".pt.tmp-{proc.pid}"
    while proc.poll() is None:
        try:
            writing = {name for name in os.listdir(checkpoints) if name.endswith(marker)}
        except FileNotFoundError:
            writing = set()
        seen |= writing
        if writing and len(seen) >= nth:
            proc.send_signal(signal.SIGKILL)
            return
        time.sleep(0.0005)


@pytest.mark.slow
def test_sigkill_at_random_moments_and_mid_save_then_resume_auto_ends_identical(tmp_path: Path) -> None:
    """Killed with SIGKILL again and again, then resumed with ``--resume auto``: the run ends identical.

    The first 4 attempts are killed while a save is in progress, when the process's temporary checkpoint file
    appears in ``checkpoints/``; the next 4 at a random moment (imports, a step, a metrics write). ``save_checkpoint``
    renames or removes that file before it returns, so it is still there after the process died only when the
    kill cut a save short: at least one kill must have done so, and the run resumed after it must still end
    bit for bit like the uninterrupted one.
    """
    steps = 14
    base = [
        sys.executable, "-m", "lrkit.train", *TINY, "--num-iterations", str(steps),
        "--lr-scheduler", json.dumps(CHAINED), "--save-interval", "1", "--keep-last", "2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*base, "--run-dir", str(tmp_path / "ref")], env=env, check=True, capture_output=True)
    reference = trace(read_metrics(tmp_path / "ref" / "metrics.jsonl"))
    rng = random.Random(7)
    run_dir = tmp_path / "killed"
    checkpoints = run_dir / ckpt.CHECKPOINT_DIR
    cut_saves: list[Path] = []  # the temporary files that killed processes left behind
    for attempt in range(40):
        proc = subprocess.Popen([*base, "--run-dir", str(run_dir), "--resume", "auto"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        if attempt < 4:  # at most 2 saves complete per attempt: steps remain for the next ones
            _kill_during_a_save(proc, checkpoints, nth=rng.randint(1, 3))
        elif attempt < 8:
            time.sleep(rng.uniform(2.0, 4.0))  # startup (imports) takes ~2 s, then ~1 step + save per 50 ms
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        cut_short = list(checkpoints.glob(f".step_*.pt.tmp-{proc.pid}"))
        assert not set(cut_short) & set(ckpt.list_checkpoints(run_dir))  # a save cut short is no checkpoint
        cut_saves += cut_short
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert proc.returncode == 0  # the last kill was followed by a resume to the end
    assert cut_saves, "no SIGKILL landed while a checkpoint was being saved"
    assert trace(read_metrics(run_dir / "metrics.jsonl")) == reference


# ------------------------------------------------------------------ bad input, before any step


def test_batch_that_does_not_divide_the_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = train_error_of(tmp_path, "--total-batch-size", "100", capsys=capsys)
    assert "--total-batch-size" in err and "100" in err


def test_sequence_longer_than_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = train_error_of(tmp_path, "--sequence-length", "4096", capsys=capsys)
    assert "--sequence-length 4096" in err and "block_size" in err


def test_missing_data_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = train_error_of(tmp_path, "--data", str(tmp_path / "nope.txt"), capsys=capsys)
    assert "nope.txt" in err


def test_truncated_checkpoint_is_reported_and_the_previous_one_survives(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chained_run(tmp_path, "--num-iterations", "4", "--save-interval", "2")
    newest = ckpt.list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    err = train_error_of(tmp_path, "--resume", str(newest), capsys=capsys)
    assert str(newest) in err
    with pytest.warns(UserWarning, match="skipping"):
        assert ckpt.find_latest_valid(tmp_path) == ckpt.checkpoint_path(tmp_path, 2)
    resumed = chained_run(tmp_path, "--num-iterations", "4", "--resume", "auto")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]


def test_checkpoint_from_another_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chained_run(tmp_path, "--num-iterations", "2", "--save-interval", "2")
    err = train_error_of(tmp_path, "--model", "llama3", "--resume", "auto", capsys=capsys)
    assert "model" in err and "gpt2" in err and "llama3" in err


@pytest.mark.parametrize(
    ("flag", "value", "saved"),
    [("--lr", "2e-3", "0.001"), ("--layer-decay", "0.5", "None"), ("--n-layer", "2", "4")],  # n_layer resolved
)
def test_resume_with_another_peak_or_shape_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, saved: str
) -> None:
    """The groups' peaks come from the checkpoint: a changed --lr or --layer-decay would be ignored silently."""
    chained_run(tmp_path, "--num-iterations", "2", "--save-interval", "2")
    err = train_error_of(tmp_path, flag, value, "--resume", "auto", capsys=capsys)
    assert "incompatible" in err and f"{flag[2:].replace('-', '_')}: checkpoint={saved}" in err


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("model", ["gpt2", "llama3"])
def test_tensor_and_sequence_parallel_match_one_process(tmp_path: Path, model: str) -> None:
    """TP2+SP computes the same model: losses agree with the single-process run (fp32 reduction order aside)."""
    spec = json.dumps(CHAINED)
    single = chained_run(tmp_path / "one", "--num-iterations", "4", "--model", model)
    torchrun(
        2, "--run-dir", str(tmp_path / "sp"), "--num-iterations", "4", "--lr-scheduler", spec, "--model", model,
        "--tensor-parallel", "2", "--sequence-parallel", "--check-lr-sync",
    )  # fmt: skip
    sharded = read_metrics(tmp_path / "sp" / "metrics.jsonl")
    assert [r["lr"] for r in sharded] == [r["lr"] for r in single]
    assert [r["loss"] for r in sharded] == pytest.approx([r["loss"] for r in single], rel=1e-5)


def test_a_checkpoint_with_the_schedule_state_at_the_top_level_still_resumes(tmp_path: Path) -> None:
    """Checkpoints before session 4 held the schedule's keys at the top level, not under "schedule"."""
    straight = chained_run(tmp_path / "a", "--num-iterations", "8")
    chained_run(tmp_path / "b", "--num-iterations", "4", "--save-interval", "4")
    path = ckpt.find_latest_valid(tmp_path / "b")
    assert path is not None
    record = torch.load(path, weights_only=True)
    payload = record["payload"]
    record["payload"] = {**{k: v for k, v in payload.items() if k != "schedule"}, **payload["schedule"]}
    torch.save(record, path)
    assert "scheduler_spec" in ckpt.load_checkpoint(path)
    resumed = chained_run(tmp_path / "b", "--num-iterations", "8", "--resume", str(path))
    assert trace(resumed) == trace(straight)
