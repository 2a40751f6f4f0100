"""Issue 18, items 1 and 4 (disk): a run dir belongs to one run, nothing in it is lost, disk errors are named.

The lock (a second trainer is refused with the holder's PID and host; a dead holder's lock blocks nothing),
reuse (no silent fresh start over a run; ``--overwrite`` moves it aside), ``--resume`` (auto never starts over a
run whose checkpoints are all unusable; it falls back past one lacking keys; a directory; a missing path),
``metrics.jsonl`` across resumes (records past the resume point move to ``superseded/``), a wrong-shape
checkpoint, a full or read-only disk (a real small tmpfs where this machine can mount one, else skipped) and
the temporary files of saves cut short.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from lrkit.train import checkpoint as ckpt
from lrkit.train import rundir
from lrkit.train.command import run_train
from lrkit.train.metrics import MetricsError, MetricsLog, read_metrics
from tests.conftest import TINY, parse, trace, train_run

STEPS = ["--num-iterations", "4", "--save-interval", "2"]


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file under ``run_dir`` (but the lock) and its bytes: what "nothing changed" compares."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != rundir.LOCK_NAME
    }


def _error(run_dir: Path, *argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    """``lrkit train``'s error for ``argv`` in ``run_dir`` (exit 2), after checking that nothing changed there."""
    before = _snapshot(run_dir) if run_dir.is_dir() else {}
    assert run_train(parse(*TINY, "--run-dir", str(run_dir), "--num-iterations", "2", *argv)) == 2
    assert (_snapshot(run_dir) if run_dir.is_dir() else {}) == before
    return capsys.readouterr().err


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


_HOLDER = """
import fcntl, json, os, socket, sys, time
f = open(sys.argv[1], "a+")
fcntl.flock(f.fileno(), fcntl.LOCK_EX)
f.seek(0); f.truncate()
f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "then"})); f.flush()
print("locked", flush=True)
time.sleep(120)
"""


@contextmanager
def _lock_holder(run_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``run_dir``'s lock as a trainer does."""
    run_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir / rundir.LOCK_NAME)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` at ``path``: a small disk that fills. Skips where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)


# ----------------------------------------------------------------------------- the lock


def test_a_second_trainer_is_refused_naming_the_holders_pid_and_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _lock_holder(tmp_path) as holder:
        err = _error(tmp_path, capsys=capsys)
    assert f"pid {holder.pid}" in err and f"host {socket.gethostname()}" in err and "in use" in err
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
def test_two_real_trainers_on_one_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's reproduction: a trainer runs; a second on the same run dir (another seed) is refused."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lrkit.train", *TINY, "--run-dir", str(tmp_path), "--num-iterations", "400"]
    first = subprocess.Popen([*cmd, "--save-interval", "1", "--resume", "auto"], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.poll() is None
        args = parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2", "--seed", "1", "--resume", "auto")
        assert run_train(args) == 2
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert f"pid {first.pid}" in capsys.readouterr().err
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(1, len(steps) + 1))  # one run's records only


def test_a_lock_left_by_a_killed_trainer_blocks_nothing(tmp_path: Path) -> None:
    with _lock_holder(tmp_path) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert str(holder.pid) in (tmp_path / rundir.LOCK_NAME).read_text()  # the stale file is still there
    records = train_run(tmp_path, "--num-iterations", "2")
    assert [r["step"] for r in records] == [1, 2]
    assert json.loads((tmp_path / rundir.LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_lock_is_released_when_a_run_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--total-batch-size", "100")) == 2
    lock = rundir.RunDirLock(tmp_path)
    lock.acquire()  # would raise RunDirError if the failed run still held it
    lock.release()


# ----------------------------------------------------------------------------- reuse of a run dir


@pytest.mark.parametrize("save_interval", ["2", "0"], ids=["checkpoints-and-metrics", "metrics-only"])
def test_a_fresh_run_over_a_run_is_refused_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], save_interval: str
) -> None:
    """Was: the old metrics.jsonl was replaced and its checkpoints stayed beside the new run's."""
    train_run(tmp_path, "--num-iterations", "4", "--save-interval", save_interval)
    err = _error(tmp_path, capsys=capsys)
    assert "already holds a run" in err and "metrics.jsonl with 4 record(s) (steps 1-4)" in err
    assert "--resume auto" in err and "--overwrite" in err


def test_overwrite_moves_the_old_run_aside_and_resume_auto_then_continues_the_new_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_run(tmp_path, "--num-iterations", "6", "--save-interval", "2")
    old = _snapshot(tmp_path)
    records = train_run(tmp_path, "--num-iterations", "2", "--save-interval", "1", "--overwrite")
    assert [r["step"] for r in records] == [1, 2]
    (previous,) = tmp_path.glob(f"{rundir.PREVIOUS_PREFIX}*")
    assert _snapshot(previous) == old  # everything moved, byte for byte, nothing deleted
    assert f"moved the old contents of {tmp_path} to {previous}" in capsys.readouterr().err
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000001.pt", "step_00000002.pt"]
    resumed = train_run(tmp_path, "--num-iterations", "3", "--save-interval", "1", "--resume", "auto")
    assert [r["step"] for r in resumed] == [1, 2, 3]  # the new run's step 2, not the old step 6


def test_overwrite_and_resume_together_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_run(tmp_path, *STEPS)
    err = _error(tmp_path, "--overwrite", "--resume", "auto", capsys=capsys)
    assert "--overwrite" in err and "--resume auto" in err


def test_a_run_dir_without_a_run_is_used_as_is(tmp_path: Path) -> None:
    (tmp_path / "lr_loss.png").write_bytes(b"png")
    (tmp_path / f"{rundir.PREVIOUS_PREFIX}20260101T000000Z").mkdir()
    (tmp_path / "metrics.jsonl").write_text("")
    assert [r["step"] for r in train_run(tmp_path, "--num-iterations", "2")] == [1, 2]


@pytest.mark.parametrize("where", ["a-file", "under-a-file"])
def test_run_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    """Was: a raw FileExistsError traceback."""
    (tmp_path / "f").write_text("x")
    run_dir = tmp_path / "f" if where == "a-file" else tmp_path / "f" / "run"
    assert run_train(parse(*TINY, "--run-dir", str(run_dir), "--num-iterations", "1")) == 2
    err = capsys.readouterr().err
    assert f"--run-dir {run_dir}" in err and (tmp_path / "f").read_text() == "x"


# ----------------------------------------------------------------------------- --resume


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _drop_model(path: Path) -> None:
    record = torch.load(path, weights_only=True)
    del record["payload"]["model"]
    torch.save(record, path)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(_truncate, "truncated"), (_garbage, "corrupted"), (_drop_model, "missing key(s) ['model']")],
    ids=["truncated", "garbage", "no-model"],
)
def test_resume_auto_with_no_usable_checkpoint_stops_listing_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any, reason: str
) -> None:
    """Was: three warnings, then a fresh start that replaced metrics.jsonl (40 lines became 6)."""
    train_run(tmp_path, "--num-iterations", "6", "--save-interval", "2")
    for path in ckpt.list_checkpoints(tmp_path):
        damage(path)
    err = _error(tmp_path, "--resume", "auto", capsys=capsys)
    assert "none of the 3 checkpoint(s)" in err
    for name in ("step_00000002.pt", "step_00000004.pt", "step_00000006.pt"):
        assert f"  {name}: " in err
    assert err.count(reason) >= 3


def test_resume_auto_falls_back_past_a_checkpoint_without_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: KeyError: 'model'."""
    straight = train_run(tmp_path / "straight", "--num-iterations", "6")
    train_run(tmp_path / "r", "--num-iterations", "4", "--save-interval", "2")
    _drop_model(ckpt.checkpoint_path(tmp_path / "r", 4))
    resumed = train_run(tmp_path / "r", "--num-iterations", "6", "--resume", "auto")
    err = capsys.readouterr().err
    assert "skipping unusable checkpoint" in err and "step_00000004.pt" in err and "'model'" in err
    assert trace(resumed) == trace(straight)  # resumed exactly from step 2


@pytest.mark.parametrize("form", ["run-dir", "checkpoints-dir"])
def test_resume_a_directory_picks_its_newest_usable_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    """Was: '--resume DIR' said the checkpoint does not exist."""
    straight = train_run(tmp_path / "straight", "--num-iterations", "6")
    train_run(tmp_path / "r", "--num-iterations", "4", "--save-interval", "2")
    given = tmp_path / "r" if form == "run-dir" else tmp_path / "r" / "checkpoints"
    resumed = train_run(tmp_path / "r", "--num-iterations", "6", "--resume", str(given))
    assert f"resuming from its newest usable checkpoint, {ckpt.checkpoint_path(tmp_path / 'r', 4)}" in (
        capsys.readouterr().err
    )
    assert trace(resumed) == trace(straight)


@pytest.mark.parametrize("what", ["missing", "empty-dir"])
def test_resume_a_path_without_checkpoints_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str
) -> None:
    given = tmp_path / "nope"
    if what == "empty-dir":
        given.mkdir()
    err = _error(tmp_path / "run", "--resume", str(given), capsys=capsys)
    assert f"--resume {given}" in err and "expected 'auto', a checkpoint file or a run directory" in err


def test_a_wrong_shape_checkpoint_names_the_tensor_and_shapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: load_state_dict's raw "size mismatch" traceback."""
    train_run(tmp_path, "--num-iterations", "2", "--save-interval", "2")
    path = ckpt.checkpoint_path(tmp_path, 2)
    record = torch.load(path, weights_only=True)
    model = record["payload"]["model"]
    key = next(k for k, v in model.items() if v.dim() == 2)
    shape = list(model[key].shape)
    model[key] = torch.zeros(shape[0], shape[1] + 1)
    torch.save(record, path)
    err = _error(tmp_path, "--resume", "auto", capsys=capsys)
    assert f"{key}: checkpoint {[shape[0], shape[1] + 1]}, model {shape}" in err and str(path) in err


# ----------------------------------------------------------------------------- metrics.jsonl across resumes


def test_resume_from_an_earlier_checkpoint_moves_later_records_and_checkpoints_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: the records past the checkpoint were dropped from metrics.jsonl, and later checkpoints stayed for the
    next --resume auto to pick."""
    straight = train_run(tmp_path / "straight", "--num-iterations", "6")
    run = tmp_path / "r"
    first = train_run(run, "--num-iterations", "6", "--save-interval", "2")
    resumed = train_run(run, "--num-iterations", "6", "--resume", str(ckpt.checkpoint_path(run, 2)))
    assert trace(resumed) == trace(straight)  # metrics.jsonl: the live run only
    archived = read_metrics(run / rundir.SUPERSEDED_DIR / "metrics.jsonl")
    assert [{k: v for k, v in r.items() if k != "superseded"} for r in archived] == first[2:]
    assert all(r["superseded"]["resumed_at_step"] == 2 for r in archived)
    (folder,) = (run / rundir.SUPERSEDED_DIR).glob("checkpoints-*")
    assert sorted(p.name for p in folder.iterdir()) == ["step_00000004.pt", "step_00000006.pt"]
    assert "moved 4 metrics.jsonl record(s) (steps 3-6) and 2 checkpoint(s) (steps 4-6)" in capsys.readouterr().err


def test_resume_auto_without_a_checkpoint_keeps_the_killed_runs_records(tmp_path: Path) -> None:
    """A run killed before its first save: --resume auto starts at step 0 and archives what it had written."""
    train_run(tmp_path, "--num-iterations", "3")  # no checkpoint, 3 records
    old = read_metrics(tmp_path / "metrics.jsonl")
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "lr": [0.1')  # torn by a kill
    records = train_run(tmp_path, "--num-iterations", "2", "--resume", "auto")
    assert [r["step"] for r in records] == [1, 2]
    archived = read_metrics(tmp_path / rundir.SUPERSEDED_DIR / "metrics.jsonl")
    assert [r["step"] for r in archived if "step" in r] == [r["step"] for r in old]
    assert archived[-1]["unparseable_line"] == '{"step": 4, "lr": [0.1'


def test_a_record_after_a_torn_line_is_not_lost(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl", enabled=True)
    log.write({"step": 1})
    with log.path.open("a") as f:
        f.write('{"step": 2, "lo')
    log.write({"step": 2})
    assert read_metrics(log.path) == [{"step": 1}, {"step": 2}]


# ----------------------------------------------------------------------------- disk errors and temporary files


def test_a_full_disk_during_a_save_names_path_bytes_needed_and_free(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 16 MiB tmpfs holds one ~10 MB checkpoint, not two. Was: "enforce fail at inline_container.cc:672"."""
    with _tmpfs(tmp_path / "disk", "16m") as disk:
        args = parse(*TINY, "--run-dir", str(disk), "--num-iterations", "3", "--save-interval", "1", "--keep-last", "1")
        assert run_train(args) == 2
        err = capsys.readouterr().err
        assert f"cannot save checkpoint {ckpt.checkpoint_path(disk, 2)}" in err
        assert "needs about" in err and "bytes free" in err
        assert [p.name for p in (disk / "checkpoints").iterdir()] == ["step_00000001.pt"]  # no temp file left
        assert ckpt.load_checkpoint(ckpt.checkpoint_path(disk, 1))["step"] == 1  # the last good one is intact


def test_a_write_that_runs_out_of_space_is_a_checkpoint_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the free-space check (another writer filled the disk meanwhile): torch's own write error, translated."""
    with _tmpfs(tmp_path / "disk", "2m") as disk:
        calls = iter([10**12])  # the check before writing sees room; the error message sees the real number
        real = ckpt.free_bytes
        monkeypatch.setattr(ckpt, "free_bytes", lambda d: next(calls, None) or real(d))
        with pytest.raises(ckpt.CheckpointError) as info:
            ckpt.save_checkpoint(disk, 1, {"model": torch.zeros(1_000_000)})
        message = str(info.value)
        assert str(ckpt.checkpoint_path(disk, 1)) in message and os.strerror(errno.ENOSPC) in message
        assert f"needs about {4_000_000 + 64 * 1024} bytes" in message and "bytes free" in message
        assert list((disk / "checkpoints").iterdir()) == []  # the partial temporary file is gone


def test_a_read_only_disk_during_a_save_is_a_checkpoint_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """checkpoints/ on a read-only mount, the run dir writable. Was: a raw OSError 30."""
    run = tmp_path / "run"
    train_run(run, "--num-iterations", "2", "--save-interval", "2")
    saved = ckpt.checkpoint_path(run, 2).read_bytes()
    shutil.rmtree(run / "checkpoints")
    with _tmpfs(run / "checkpoints", "64m") as folder:
        (folder / "step_00000002.pt").write_bytes(saved)
        _read_only(folder)
        args = parse(*TINY, "--run-dir", str(run), "--num-iterations", "4", "--save-interval", "2", "--resume", "auto")
        assert run_train(args) == 2
        err = capsys.readouterr().err
        assert f"cannot save checkpoint {ckpt.checkpoint_path(run, 4)}: {os.strerror(errno.EROFS)}" in err
        assert "needs about" in err and "bytes free" in err
        assert (folder / "step_00000002.pt").read_bytes() == saved


def test_a_read_only_run_dir_is_refused_before_any_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _tmpfs(tmp_path / "disk", "1m") as disk:
        _read_only(disk)
        err = _error(disk, capsys=capsys)
    assert f"--run-dir {disk}" in err and os.strerror(errno.EROFS) in err


@pytest.mark.parametrize("failure", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_a_failed_write_is_a_checkpoint_error_with_the_old_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: int
) -> None:
    """Without root or a tmpfs: the writer fails as the disk would (open raises), the last good checkpoint stays."""
    ckpt.save_checkpoint(tmp_path, 1, {"x": torch.ones(3)})
    real_open = open

    def failing_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "tmp-" in str(file) and "w" in mode:
            raise OSError(failure, os.strerror(failure), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.save_checkpoint(tmp_path, 2, {"x": torch.ones(3)})
    monkeypatch.undo()
    message = str(info.value)
    assert str(ckpt.checkpoint_path(tmp_path, 2)) in message and os.strerror(failure) in message
    assert "needs about" in message and "bytes free" in message
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000001.pt"]
    assert torch.equal(ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 1))["x"], torch.ones(3))


def test_a_failed_metrics_write_names_the_path(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "gone" / "metrics.jsonl", enabled=True)
    with pytest.raises(MetricsError, match="metrics.jsonl.*bytes free"):
        log.write({"step": 1})


def test_stale_temporary_files_of_dead_savers_are_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: ``.step_*.pt.tmp-PID`` files of killed saves stayed forever; a live writer's file is left alone."""
    train_run(tmp_path, "--num-iterations", "2", "--save-interval", "2")
    folder = tmp_path / "checkpoints"
    dead = folder / f".step_00000003.pt.tmp-{_dead_pid()}"
    live = folder / f".step_00000003.pt.tmp-{os.getppid()}"
    dead.write_bytes(b"partial")
    live.write_bytes(b"partial")
    train_run(tmp_path, "--num-iterations", "3", "--resume", "auto")
    assert not dead.exists() and live.exists()
    assert f"removed {dead}" in capsys.readouterr().err


@pytest.mark.distributed
@pytest.mark.slow
def test_under_torchrun_rank_0_takes_the_lock_and_every_rank_stops(tmp_path: Path) -> None:
    """Rank 0 holds the lock; when it is refused, the other ranks learn it (no hang) and the job fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lrkit.train"]
    cmd += [*TINY, "--run-dir", str(tmp_path), "--num-iterations", "2"]
    with _lock_holder(tmp_path) as holder:
        refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and f"pid {holder.pid}" in refused.stderr
    assert "rank 0 could not open the run directory" in refused.stderr  # rank 1's line: it did not hang
    assert not (tmp_path / "metrics.jsonl").exists()
    ran = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads((tmp_path / rundir.LOCK_NAME).read_text())["pid"] != holder.pid
