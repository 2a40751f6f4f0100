"""Sharded checkpoints (torch.distributed.checkpoint): save and load on every layout, resume on another layout
or world size, incomplete saves skipped, asynchronous saves, and a kill during one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lrkit.train import checkpoint as ckpt
from lrkit.train.data import TokenLoader
from lrkit.train.errors import TrainError
from lrkit.train.metrics import read_metrics
from tests.conftest import TINY, torchrun, trace, train_run

SHARDED = ["--checkpoint-format", "sharded"]
#: One global batch (8 sequences of 32 tokens) for every layout: the ranks and micro-batches split it.
GLOBAL = ["--total-batch-size", "512", "--lr-scheduler", "cosine", "--warmup-steps", "2", "--min-lr", "1e-4"]


# ----------------------------------------------------------------------------- the data position


def _updates(loader: TokenLoader, ranks: list[TokenLoader], n_updates: int) -> list[Counter[tuple[int, ...]]]:
    """The sequences (as token tuples) each of ``n_updates`` updates reads, over all ranks and micro-batches."""
    out = []
    for _ in range(n_updates):
        seen: Counter[tuple[int, ...]] = Counter()
        for _ in range(loader.accumulation):
            for rank in ranks:
                x, _ = rank.next_batch()
                seen.update(tuple(row.tolist()) for row in x)
        out.append(seen)
    return out


def _split(tokens: np.ndarray, world: int, accumulation: int) -> list[TokenLoader]:
    return [TokenLoader(tokens, 2, 4, rank=r, world_size=world, accumulation=accumulation) for r in range(world)]


def test_every_update_reads_the_same_sequences_however_the_global_batch_is_split() -> None:
    """8 sequences per update as 4 ranks x 1, 2 ranks x 2 micro-batches or 1 x 4: each update reads the same
    sequences, across three wraps of the data (whose tail is not a whole update), and a state saved under one
    split continues under another with the same updates: none repeated, none skipped."""
    tokens = np.arange(7 * 32 + 9)  # 7 updates of 32 tokens (+1 for the targets) and a short tail
    splits = [(4, 1), (2, 2), (1, 4)]
    reads = {split: _updates(_split(tokens, *split)[0], _split(tokens, *split), 20) for split in splits}
    assert reads[(4, 1)] == reads[(2, 2)] == reads[(1, 4)]
    starts = [min(update)[0] for update in reads[(4, 1)]]
    assert starts[:8] == [0, 32, 64, 96, 128, 160, 192, 0]  # the tail (< one update) is skipped, as llm.c does

    for before, after in [((4, 1), (2, 2)), ((2, 2), (1, 4)), ((1, 4), (4, 1))]:
        first = _split(tokens, *before)
        done = _updates(first[0], first, 9)  # into the second pass
        second = _split(tokens, *after)
        for loader in second:
            loader.load_state_dict(first[0].state_dict())
        assert done + _updates(second[0], second, 11) == reads[before], (before, after)


def test_a_split_smaller_than_one_update_still_wraps_per_call() -> None:
    """Data holding less than one update (here 2 of the 4 micro-batches) wraps per micro-batch, as before."""
    tokens = np.arange(2 * 8 + 1)
    loader = TokenLoader(tokens, 2, 4, accumulation=4)
    starts = [int(loader.next_batch()[0][0, 0]) for _ in range(6)]
    assert starts == [0, 8, 0, 8, 0, 8] and loader.epoch == 2


# ----------------------------------------------------------------------------- one process


@pytest.mark.parametrize("mode", [[], ["--async-checkpoint"]], ids=["sync", "async"])
def test_sharded_resume_in_one_process_is_exact(tmp_path: Path, mode: list[str]) -> None:
    """A sharded checkpoint (a directory: DCP's shards and index, and trainer.pt) resumes bit for bit, and the
    run keeps the last ``--keep-last`` of them."""
    flags = [*SHARDED, *mode, "--save-interval", "2", "--keep-last", "2"]
    straight = train_run(tmp_path / "a", "--num-iterations", "6", *flags)
    train_run(tmp_path / "b", "--num-iterations", "4", *flags)
    saved = ckpt.list_checkpoints(tmp_path / "b")
    assert [p.name for p in saved] == ["step_00000002", "step_00000004"] and all(p.is_dir() for p in saved)
    assert {".metadata", ckpt.TRAINER_FILE} <= {f.name for f in saved[-1].iterdir()}
    resumed = train_run(tmp_path / "b", "--num-iterations", "6", *flags, "--resume", "auto")
    assert trace(resumed) == trace(straight)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "b")] == ["step_00000004", "step_00000006"]


def test_the_two_formats_resume_each_other_exactly(tmp_path: Path) -> None:
    """A sharded checkpoint resumes as a full-format run and the other way round, bit for bit."""
    straight = train_run(tmp_path / "a", "--num-iterations", "6")
    train_run(tmp_path / "b", "--num-iterations", "2", "--save-interval", "2", *SHARDED)
    train_run(tmp_path / "b", "--num-iterations", "4", "--save-interval", "2", "--resume", "auto")
    assert ckpt.find_checkpoint(tmp_path / "b", 4) == ckpt.checkpoint_path(tmp_path / "b", 4)  # full
    resumed = train_run(tmp_path / "b", "--num-iterations", "6", "--save-interval", "2", *SHARDED, "--resume", "auto")
    assert trace(resumed) == trace(straight)


def test_async_needs_the_sharded_format(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="--async-checkpoint needs sharded checkpoints, got --checkpoint-format auto"):
        train_run(tmp_path, "--num-iterations", "2", "--async-checkpoint")


def _four_steps_saved_at_2_and_4(tmp_path: Path) -> list[dict[str, Any]]:
    straight = train_run(tmp_path / "straight", "--num-iterations", "6")
    train_run(tmp_path / "r", "--num-iterations", "4", "--save-interval", "2", *SHARDED)
    return straight


@pytest.mark.parametrize(
    "damage",
    ["no index", "truncated shard", "no trainer state"],
)
def test_an_incomplete_checkpoint_is_skipped(tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--resume auto`` passes over a newest checkpoint whose index, shards or plain state is missing or cut
    short, with a note naming it and why, and resumes the one before bit for bit."""
    straight = _four_steps_saved_at_2_and_4(tmp_path)
    newest = ckpt.find_checkpoint(tmp_path / "r", 4)
    assert newest is not None
    if damage == "no index":
        (newest / ".metadata").unlink()
        why = "no readable DCP index"
    elif damage == "truncated shard":
        shard = next(newest.glob("*.distcp"))
        shard.write_bytes(shard.read_bytes()[:1000])
        why = f"its shard file {shard.name} is 1000 bytes"
    else:
        (newest / ckpt.TRAINER_FILE).unlink()
        why = f"it has no {ckpt.TRAINER_FILE}"
    capsys.readouterr()
    resumed = train_run(tmp_path / "r", "--num-iterations", "6", "--resume", "auto", *SHARDED)
    err = capsys.readouterr().err
    assert f"skipping unusable checkpoint {newest}" in err and why in err
    assert trace(resumed)[2:] == trace(straight)[2:]


def test_a_save_cut_short_is_no_checkpoint_and_is_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ``.partial`` directory (a save that never committed) is not a checkpoint: resuming takes the one
    before, and opening the run removes it with a note."""
    straight = _four_steps_saved_at_2_and_4(tmp_path)
    newest = ckpt.find_checkpoint(tmp_path / "r", 4)
    assert newest is not None
    partial = newest.with_name(f".{newest.name}{ckpt.PARTIAL_MARK}")
    newest.rename(partial)
    assert ckpt.list_checkpoints(tmp_path / "r")[-1].name == "step_00000002"
    capsys.readouterr()
    resumed = train_run(tmp_path / "r", "--num-iterations", "6", "--resume", "auto", *SHARDED)
    assert f"removed {partial}, the directory of a sharded save cut short" in capsys.readouterr().err
    assert not partial.exists()
    assert trace(resumed)[2:] == trace(straight)[2:]


def test_a_failed_background_save_is_reported_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A background save that fails raises on the next wait (here the end of the run) naming the step and the
    error; nothing is published, no ``.partial`` is left, and the checkpoint before it is the newest."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter

    write = FileSystemWriter.write_data

    def failing(self: Any, plan: Any, planner: Any) -> Any:
        if "step_00000004" in str(self.path):
            raise OSError(28, "No space left on device (injected)")
        return write(self, plan, planner)

    monkeypatch.setattr(FileSystemWriter, "write_data", failing)
    flags = ["--save-interval", "2", *SHARDED, "--async-checkpoint"]
    with pytest.raises(ckpt.CheckpointError, match=r"saving checkpoint step_00000004 failed: .*injected"):
        train_run(tmp_path, "--num-iterations", "4", *flags)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000002"]
    assert not list((tmp_path / ckpt.CHECKPOINT_DIR).glob(".*"))
    assert ckpt.load_checkpoint(ckpt.list_checkpoints(tmp_path)[0])["step"] == 2


#: Runs ``lrkit train`` with the write of checkpoint 4 held back: it touches MARK, then sleeps.
_SLOW_WRITER = """
import sys, time
from pathlib import Path
from torch.distributed.checkpoint.filesystem import FileSystemWriter
write, mark = FileSystemWriter.write_data, Path(sys.argv[1])
def slow(self, plan, planner):
    if "step_00000004" in str(self.path):
        mark.touch()
        time.sleep(600)
    return write(self, plan, planner)
FileSystemWriter.write_data = slow
from lrkit.cli import main
sys.argv = ["lrkit", *sys.argv[2:]]
sys.exit(main())
"""


def test_kill_9_during_an_async_save_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """``kill -9`` while checkpoint 4 is being written in the background (training goes on meanwhile): the
    checkpoint of step 2 stays the newest, and the run resumes from it bit for bit."""
    straight = train_run(tmp_path / "straight", "--num-iterations", "6")
    run, mark = tmp_path / "r", tmp_path / "writing"
    argv = ["train", *TINY, "--run-dir", str(run), "--num-iterations", "50", "--save-interval", "2", *SHARDED,
            "--async-checkpoint"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(mark), *argv], env={**os.environ})
    try:
        deadline = time.monotonic() + 120
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), f"the save of step 4 never started (exit {proc.poll()})"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert (run / ckpt.CHECKPOINT_DIR / ".step_00000004.partial").is_dir()  # the kill landed during the save
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step_00000002"]
    resumed = train_run(run, "--num-iterations", "6", "--resume", "auto", *SHARDED)
    assert trace(resumed)[2:] == trace(straight)[2:]


# ----------------------------------------------------------------------------- layouts


def _state_at(run: Path, step: int) -> dict[str, Any]:
    path = ckpt.find_checkpoint(run, step)
    assert path is not None, f"{run} has no checkpoint of step {step}"
    return ckpt.load_checkpoint(path)


def _continues(source: Path, resumed: list[dict[str, Any]], run: Path) -> float:
    """The resumed steps against the source run's: LRs, tokens and the schedule's clock exactly, the data
    position of the last checkpoint exactly, losses to float tolerance. Returns the largest |Δloss|."""
    straight = {r["step"]: r for r in read_metrics(source / "metrics.jsonl")}
    assert [r["step"] for r in resumed] == [4, 5, 6]
    for r in resumed:
        assert r["lr"] == straight[r["step"]]["lr"] and r["tokens"] == straight[r["step"]]["tokens"]
        assert r.get("clock") == straight[r["step"]].get("clock")
        assert r["loss"] == pytest.approx(straight[r["step"]]["loss"], rel=1e-5, abs=1e-6)
    assert _state_at(run, 6)["data"] == _state_at(source, 6)["data"]  # the same tokens read, none twice
    return max(abs(r["loss"] - straight[r["step"]]["loss"]) for r in resumed)


def _launch(n: int, run: Path, *argv: str) -> list[dict[str, Any]]:
    """Six steps of the tiny model on ``n`` ranks (one: in this process), saving at steps 3 and 6."""
    flags = [*GLOBAL, "--num-iterations", "6", "--save-interval", "3", *argv]
    if n == 1:
        return train_run(run, *flags)
    torchrun(n, "--run-dir", str(run), *flags)
    return read_metrics(run / "metrics.jsonl")


#: (source ranks, source flags) -> [(target ranks, target flags)]: the issue's layout changes.
LAYOUT_CHANGES = {
    "ddp4": (4, [], [("ddp2", 2, []), ("one", 1, [])]),
    "fsdp4": (4, ["--fsdp", "--async-checkpoint"], [("fsdp2", 2, ["--fsdp"]), ("fsdp4", 4, ["--fsdp"])]),
    "tp2": (2, ["--tensor-parallel", "2"], [("tp1", 1, [])]),
    "pp2": (2, ["--pipeline-parallel", "2"], [("pp1", 1, [])]),
}


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("source", list(LAYOUT_CHANGES))
def test_resume_on_another_layout_continues_exactly(tmp_path: Path, source: str) -> None:
    """Sharded checkpoint of step 3 of a 6-step run, resumed on another layout or world size with the same
    global batch: the LR, the tokens, the clock and the data position continue exactly, the loss to float
    tolerance. On the same layout (fsdp4 -> fsdp4) the resumed run is bit for bit the straight one; that
    source saves in the background (``--async-checkpoint``), so this also checks what an async save holds."""
    n, flags, targets = LAYOUT_CHANGES[source]
    _launch(n, tmp_path / source, *flags)
    start = ckpt.find_checkpoint(tmp_path / source, 3)
    assert start is not None and start.is_dir()  # auto is sharded under torchrun
    for name, target_n, target_flags in targets:
        run = tmp_path / f"{source}-to-{name}"
        resumed = _launch(target_n, run, *target_flags, "--resume", str(start))
        delta = _continues(tmp_path / source, resumed, run)
        print(f"{source} -> {name}: max |dloss| = {delta:.3g}")
        if name == source:
            straight = read_metrics(tmp_path / source / "metrics.jsonl")
            assert trace(resumed) == trace(straight[3:])
