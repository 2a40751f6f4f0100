"""Issue 18, item 4 and issue 15, item 5: SIGINT, SIGTERM and SIGUSR1 stop a run cleanly, and
``--collective-timeout`` bounds a collective.

A signal lets the step in progress finish, saves it through the normal atomic save path, prints one line
(``lrkit train: SIGTERM at step 3: saved .../step_00000003.pt; exit 0``) and exits. SIGTERM and SIGUSR1 (a
scheduler's preemption) exit 0 once nothing is lost; SIGINT (Ctrl-C), and a preemption that lost steps
(checkpoints off), exit ``128 + signal``, the status a shell gives a process that the signal killed (the
oracle of :func:`test_exit_code_is_what_a_shell_reports`). ``--resume auto`` afterwards continues bit for bit
like a run that was never interrupted.

In-process tests send the signal to this process from inside the loop (``train_step`` wrapped), so the step
it lands in is exact; the subprocess tests send it from outside, at a moment the metrics file shows.
The multi-rank cases (torchrun) are in ``test_shutdown_ranks.py``.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from lrkit.train import checkpoint as ckpt
from lrkit.train import loop as train_loop
from lrkit.train import parallel
from lrkit.train.command import run_train
from lrkit.train.config import TrainConfig
from lrkit.train.metrics import read_metrics
from lrkit.train.parallel import CollectiveTimeoutError, DistContext, as_collective_timeout, unanswered_ranks
from lrkit.train.shutdown import SIGNALS, Shutdown, TrainingStopped, exit_code
from tests.conftest import TINY, checkpoint_steps, parse, trace, train_error_of, train_run, wait_for_records

#: The one line of a clean stop that saved: signal, step, checkpoint (a ``.pt`` file or a directory), exit code.
SAVED = re.compile(r"^lrkit train: (SIG\w+) at step (\d+): saved (\S+step_(\d{8})(?:\.pt)?/?); exit (\d+)$")
#: The exit code of a stop that lost nothing: 0 for a preemption (SIGTERM, SIGUSR1), 130 for Ctrl-C.
SAVED_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 0, signal.SIGUSR1: 0}
#: A short cosine run on the tiny model (the issue's schedule), on a small corpus that loads at once (this
#: package's loop.py as bytes) rather than the standard library's.
RUN = [
    "--lr-scheduler",
    "cosine",
    "--lr",
    "3e-3",
    "--warmup-steps",
    "3",
    "--min-lr",
    "3e-4",
    "--data",
    train_loop.__file__,
]


@pytest.fixture(autouse=True)
def _handlers_stay_put() -> Iterator[None]:
    """Every test leaves SIGINT's, SIGTERM's and SIGUSR1's handlers as it found them (a run restores them).

    The tests send SIGINT as a terminal's Ctrl-C would. A test runner started with SIGINT ignored (a background
    job of a non-interactive shell: ``make test &`` in a script) would pass that on, and a run rightly leaves an
    ignored SIGINT ignored; so each test starts with Python's default SIGINT handler, and the inherited one is
    put back after it."""
    inherited = signal.getsignal(signal.SIGINT)
    if inherited is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    assert {sig: signal.getsignal(sig) for sig in SIGNALS} == before
    signal.signal(signal.SIGINT, inherited)


def _signal_at(monkeypatch: pytest.MonkeyPatch, at: dict[int, list[signal.Signals]]) -> None:
    """Send this process ``at[step]``'s signals right after the loop's step ``step`` (inside the step's
    iteration, before its metrics record, a save, and the stop check)."""
    real = train_loop.train_step

    def step(t: Any) -> dict[str, Any]:
        record = real(t)
        for sig in at.get(t.step, []):
            os.kill(os.getpid(), sig)
        return record

    monkeypatch.setattr(train_loop, "train_step", step)


def _count_saves(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The steps of the checkpoints saved from here on, in order."""
    steps: list[int] = []
    real = ckpt.save_checkpoint

    def save(run_dir: Any, step: int, payload: dict[str, Any], keep_last: int | None = None) -> Path:
        steps.append(step)
        return real(run_dir, step, payload, keep_last=keep_last)

    monkeypatch.setattr(ckpt, "save_checkpoint", save)
    return steps


def _run(tmp: Path, *argv: str) -> int:
    """``lrkit train`` in this process on the tiny model; its exit code."""
    return run_train(parse(*TINY, "--run-dir", str(tmp), *RUN, *argv))


def _one_line(err: str) -> str:
    """The only line of ``err`` (a clean stop prints exactly one, and no traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ------------------------------------------------------------------ the exit code


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_exit_code_is_what_a_shell_reports(sig: signal.Signals) -> None:
    """The oracle: bash's ``$?`` for a process that ``sig`` killed: SIGINT's code always, SIGTERM's and
    SIGUSR1's when steps were lost."""
    shell = subprocess.run(["bash", "-c", f"bash -c 'kill -{sig.name} $$'; echo $?"], capture_output=True, text=True)
    assert exit_code(sig, lost=True) == int(shell.stdout.strip())
    if sig == signal.SIGINT:
        assert exit_code(sig, lost=False) == int(shell.stdout.strip())


@pytest.mark.parametrize(
    ("sig", "lost", "code"),
    [
        (signal.SIGTERM, False, 0),
        (signal.SIGUSR1, False, 0),
        (signal.SIGINT, False, 130),
        (signal.SIGTERM, True, 143),
        (signal.SIGUSR1, True, 138),
        (signal.SIGINT, True, 130),
    ],
)
def test_exit_code_rules(sig: signal.Signals, lost: bool, code: int) -> None:
    """A preemption (SIGTERM, SIGUSR1) that lost nothing exits 0, the SLURM requeue convention; Ctrl-C, and a
    preemption that lost steps, exit ``128 + signal``."""
    assert exit_code(sig, lost) == code
    assert TrainingStopped(sig, 5, None, "why", lost).exit_code == code


def test_train_help_says_what_the_signals_do(capsys: pytest.CaptureFixture[str]) -> None:
    from lrkit.cli import main

    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "SIGTERM and SIGUSR1" in text and "exit 0" in text and "exits 130" in text and "--resume auto" in text


# ------------------------------------------------------------------ one process, the signal at an exact step


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_mid_run_saves_the_step_and_exits_with_its_code(
    tmp_path: Path, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM and SIGUSR1 exit 0 (preemption, nothing lost), SIGINT 130. Before issue 18: SIGTERM killed the
    process at once and SIGINT raised KeyboardInterrupt with a traceback; the steps since the last checkpoint
    (here all 3: the interval is 100) were lost. Before issue 15: SIGTERM exited 143, SIGUSR1 killed."""
    _signal_at(monkeypatch, {3: [sig]})
    assert _run(tmp_path, "--num-iterations", "10", "--save-interval", "100") == SAVED_EXIT[sig]
    m = SAVED.match(_one_line(capsys.readouterr().err))
    assert m is not None and (m[1], int(m[2]), int(m[4]), int(m[5])) == (sig.name, 3, 3, SAVED_EXIT[sig])
    assert [Path(m[3])] == ckpt.list_checkpoints(tmp_path) and checkpoint_steps(tmp_path) == [3]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_in_process_train_raises_training_stopped(
    tmp_path: Path, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library call (``train``) installs its own handlers and raises, with where it stopped."""
    _signal_at(monkeypatch, {2: [sig]})
    with pytest.raises(TrainingStopped) as stopped:
        train_run(tmp_path, *RUN, "--num-iterations", "6", "--save-interval", "5")
    assert (stopped.value.signum, stopped.value.step) == (sig, 2)
    assert [stopped.value.checkpoint] == ckpt.list_checkpoints(tmp_path) and checkpoint_steps(tmp_path) == [2]
    assert stopped.value.exit_code == SAVED_EXIT[sig] and not stopped.value.lost


@pytest.mark.parametrize(
    ("steps", "interval", "at", "saves"),
    [(10, 3, 3, [3]), (4, 100, 4, [4]), (10, 2, 3, [2, 3])],
    ids=["on-a-save-step", "at-the-last-step", "after-a-save-step"],
)
def test_the_stop_saves_each_step_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    steps: int,
    interval: int,
    at: int,
    saves: list[int],
) -> None:
    """A step the interval (or the run's end) saved already is not saved again; the line names it."""
    saved = _count_saves(monkeypatch)
    _signal_at(monkeypatch, {at: [signal.SIGTERM]})
    assert _run(tmp_path, "--num-iterations", str(steps), "--save-interval", str(interval)) == 0
    assert saved == saves
    m = SAVED.match(_one_line(capsys.readouterr().err))
    assert m is not None and int(m[2]) == int(m[4]) == at


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_without_checkpoints_the_line_says_nothing_was_saved(
    tmp_path: Path, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--save-interval 0`` turns checkpoints off: the stop saves none, and says so (never silent). The steps
    are lost, so a preemption exits ``128 + signal`` too (a requeued job would start over)."""
    _signal_at(monkeypatch, {3: [sig]})
    assert _run(tmp_path, "--num-iterations", "10", "--save-interval", "0") == 128 + sig
    line = _one_line(capsys.readouterr().err)
    assert (
        line
        == f"lrkit train: {sig.name} at step 3: not saved (--save-interval 0 turns checkpoints off); exit {128 + sig}"
    )
    assert ckpt.list_checkpoints(tmp_path) == []
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 3


def _signal_in_setup(monkeypatch: pytest.MonkeyPatch, sig: signal.Signals) -> None:
    real = train_loop.setup

    def setup(config: Any, ctx: Any) -> Any:
        t = real(config, ctx)
        os.kill(os.getpid(), sig)
        return t

    monkeypatch.setattr(train_loop, "setup", setup)


@pytest.mark.parametrize("interval", ["1", "0"])
def test_a_signal_during_setup_stops_before_the_first_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], interval: str
) -> None:
    """Nothing ran, so nothing is lost: a preemption exits 0, with checkpoints on or off."""
    saved = _count_saves(monkeypatch)
    _signal_in_setup(monkeypatch, signal.SIGTERM)
    assert _run(tmp_path, "--num-iterations", "10", "--save-interval", interval) == 0
    assert _one_line(capsys.readouterr().err) == (
        "lrkit train: SIGTERM at step 0: no step ran yet, nothing new to save; exit 0"
    )
    assert saved == [] and not (tmp_path / "metrics.jsonl").exists()  # no step ran


def test_a_signal_right_after_a_resume_keeps_the_checkpoint_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No step ran since the resume: the checkpoint it resumed from holds the state, and is not rewritten."""
    train_run(tmp_path, *RUN, "--num-iterations", "4", "--total-steps", "8", "--save-interval", "4")
    checkpoint = ckpt.checkpoint_path(tmp_path, 4)
    before = checkpoint.read_bytes()
    saved = _count_saves(monkeypatch)
    _signal_in_setup(monkeypatch, signal.SIGINT)
    assert (
        _run(tmp_path, "--num-iterations", "8", "--total-steps", "8", "--save-interval", "4", "--resume", "auto") == 130
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "lrkit train: SIGINT at step 4: no step ran since it resumed at step 4, nothing new to save; exit 130" in err
    assert saved == [] and checkpoint.read_bytes() == before
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_a_second_signal_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under torchrun a terminal's Ctrl-C reaches each rank twice (the terminal, then the agent): the stop
    stays clean."""
    _signal_at(monkeypatch, {3: [signal.SIGINT, signal.SIGINT]})
    assert _run(tmp_path, "--num-iterations", "10", "--save-interval", "100") == 130
    m = SAVED.match(_one_line(capsys.readouterr().err))
    assert m is not None and int(m[2]) == 3


def test_a_third_signal_abandons_and_the_last_good_checkpoint_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three signals: stop at once, one line, exit 128 + signal; the checkpoint of step 2 stays intact and
    nothing of step 3 is published (not even a temporary file)."""
    _signal_at(monkeypatch, {3: [signal.SIGTERM] * 3})
    assert _run(tmp_path, "--num-iterations", "10", "--save-interval", "2") == 143
    line = _one_line(capsys.readouterr().err)
    assert line == "lrkit train: SIGTERM received 3 times: stopped at once; exit 143"
    assert ckpt.list_checkpoints(tmp_path) == [ckpt.checkpoint_path(tmp_path, 2)]
    assert ckpt.load_checkpoint(ckpt.checkpoint_path(tmp_path, 2))["step"] == 2
    assert [p.name for p in (tmp_path / ckpt.CHECKPOINT_DIR).iterdir()] == ["step_00000002.pt"]


def test_handlers_are_restored_after_a_run_and_a_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked by the autouse fixture for every test; here with a handler of the caller's own in place."""
    seen: list[int] = []

    def mine(signum: int, frame: Any) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        _run(tmp_path / "a", "--num-iterations", "4")
        assert signal.getsignal(signal.SIGTERM) is mine
        _signal_at(monkeypatch, {1: [signal.SIGTERM]})
        assert _run(tmp_path / "b", "--num-iterations", "4") == 143  # checkpoints are off by default: lost
        assert signal.getsignal(signal.SIGTERM) is mine and seen == []  # the run had it, not mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_sigint_stays_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell starts ``cmd &`` with SIGINT ignored so that Ctrl-C spares it: the run keeps ignoring it."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _signal_at(monkeypatch, {2: [signal.SIGINT]})
        assert _run(tmp_path, "--num-iterations", "4", "--save-interval", "4") == 0
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 4


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_an_ignored_sigterm_or_sigusr1_is_handled_anyway(
    tmp_path: Path, sig: signal.Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No shell ignores them for a job, and a scheduler's SIGKILL follows them: a run that inherited them
    ignored (a wrapper's ``trap '' USR1``) still stops cleanly and saves; the ignoring is restored after."""
    previous = signal.signal(sig, signal.SIG_IGN)
    try:
        _signal_at(monkeypatch, {2: [sig]})
        assert _run(tmp_path, "--num-iterations", "4", "--save-interval", "100") == 0
        assert signal.getsignal(sig) is signal.SIG_IGN
    finally:
        signal.signal(sig, previous)
    assert checkpoint_steps(tmp_path) == [2] and len(read_metrics(tmp_path / "metrics.jsonl")) == 2


def test_shutdown_is_inert_outside_the_main_thread() -> None:
    """Python installs handlers only in the main thread: elsewhere the run keeps the process's handlers."""
    import threading

    states: list[bool] = []

    def body() -> None:
        with Shutdown() as stop:
            states.append(stop.active)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert states == [False]


# ------------------------------------------------------------------ from outside: a real process, then resume


@pytest.mark.slow
@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_signal_from_outside_then_resume_auto_ends_identical(tmp_path: Path, sig: signal.Signals) -> None:
    """``python -m lrkit.train`` gets ``sig`` mid-run, stops with one line and its code (0 for SIGTERM and
    SIGUSR1: a preemption; 130 for SIGINT); ``--resume auto`` (in this process) then ends bit for bit like
    the uninterrupted run (the SIGKILL test's comparison, tests/train/test_train.py): step, LRs and losses
    exactly equal."""
    steps = 24
    argv = [*TINY, *RUN, "--num-iterations", str(steps), "--save-interval", "100"]
    reference = trace(train_run(tmp_path / "ref", *RUN, "--num-iterations", str(steps), "--save-interval", "100"))
    run_dir = tmp_path / "stopped"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lrkit.train", *argv, "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_records(run_dir / "metrics.jsonl", 3, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == SAVED_EXIT[sig], err.decode()[-2000:]
    m = SAVED.match(_one_line(err.decode()))
    assert m is not None and m[1] == sig.name and int(m[5]) == SAVED_EXIT[sig]
    stopped_at = int(m[2])
    assert 3 <= stopped_at < steps
    assert checkpoint_steps(run_dir) == [stopped_at]
    assert len(read_metrics(run_dir / "metrics.jsonl")) == stopped_at
    resumed = train_run(run_dir, *RUN, "--num-iterations", str(steps), "--save-interval", "100", "--resume", "auto")
    assert trace(resumed) == reference


# ------------------------------------------------------------------ --collective-timeout: the flag and its use


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_collective_timeout_must_be_a_positive_number_of_seconds(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = train_error_of(tmp_path, "--collective-timeout", value, capsys=capsys)
    assert "--collective-timeout" in err and value in err and "seconds > 0" in err


@pytest.mark.parametrize(("argv", "seconds"), [((), 600.0), (("--collective-timeout", "7.5"), 7.5)])
def test_collective_timeout_reaches_the_process_group_and_the_mesh(
    monkeypatch: pytest.MonkeyPatch, argv: tuple[str, ...], seconds: float
) -> None:
    """Under torchrun (its environment faked) the timeout goes to ``init_process_group`` and to every
    group of the device mesh (a new group would take torch's default: 30 minutes for gloo)."""
    calls: dict[str, Any] = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(parallel.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(parallel.dist, "init_process_group", lambda **kw: calls.update(init=kw))
    import torch.distributed.device_mesh as device_mesh

    monkeypatch.setattr(device_mesh, "init_device_mesh", lambda *a, **kw: calls.update(mesh=kw))
    config = TrainConfig.from_args(parse(*argv))
    ctx = parallel.setup_distributed(device="cpu", collective_timeout=config.parallel.collective_timeout)
    assert ctx.world_size == 2
    assert calls["init"]["backend"] == "gloo" and calls["init"]["timeout"] == timedelta(seconds=seconds)
    overrides = calls["mesh"]["backend_override"]
    assert sorted(overrides) == ["dp", "tp"]
    assert all(
        backend == "gloo" and opts._timeout == timedelta(seconds=seconds) for backend, opts in overrides.values()
    )


def test_collective_timeout_is_in_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--print-config`` writes it under ``[parallel]``; the file read back gives it again."""
    assert run_train(parse("--collective-timeout", "42", "--print-config")) == 0
    text = capsys.readouterr().out
    assert "collective_timeout = 42.0" in text
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert TrainConfig.from_file(str(path)).parallel.collective_timeout == 42.0


class _Store:
    """A rendezvous store's ``set`` and ``check``; ``answered`` ranks have answered the roll call already."""

    def __init__(self, answered: tuple[int, ...] = (), broken: bool = False) -> None:
        self.keys: set[str] = {f"lrkit/collective-timeout/alive/{r}" for r in answered}
        self.broken = broken

    def set(self, key: str, value: str) -> None:
        if self.broken:
            raise RuntimeError("store: connection refused")
        self.keys.add(key)

    def check(self, keys: list[str]) -> bool:
        return all(k in self.keys for k in keys)


GLOO_TIMEOUT = RuntimeError(
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms "
    "for recv operation to complete"
)  # what a gloo all-reduce raised after a peer was stopped with SIGSTOP (measured, torch 2.13)


@pytest.fixture
def _no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.dist, "is_initialized", lambda: False)


@pytest.mark.usefixtures("_no_group")
@pytest.mark.parametrize(
    ("world", "answered", "named"),
    [(2, (), "rank 1 did not answer"), (4, (0, 3), "rank 1, 2 did not answer"), (2, (1,), "every rank answered")],
    ids=["one-stopped", "two-of-four-stopped", "all-answer"],
)
def test_a_timeout_names_the_ranks_that_did_not_answer(world: int, answered: tuple[int, ...], named: str) -> None:
    ctx = DistContext(rank=0, world_size=world, dp_size=world)
    error = as_collective_timeout(GLOO_TIMEOUT, ctx, 0.2, "step 7", store=_Store(answered))
    assert isinstance(error, CollectiveTimeoutError)
    message = str(error)
    assert named in message and "--collective-timeout 0.2 s" in message and "step 7" in message
    assert "Timed out waiting 3000ms" in message  # the backend's own words


@pytest.mark.usefixtures("_no_group")
def test_a_timeout_with_the_store_gone_says_the_rank_is_unknown() -> None:
    ctx = DistContext(rank=1, world_size=2, dp_size=2)
    error = as_collective_timeout(GLOO_TIMEOUT, ctx, 0.2, "setup", store=_Store(broken=True))
    assert error is not None and "which rank is unknown" in str(error) and "connection refused" in str(error)


@pytest.mark.parametrize(
    ("err", "world"),
    [(RuntimeError("CUDA error: an illegal memory access"), 2), (ValueError("Timed out"), 2), (GLOO_TIMEOUT, 1)],
    ids=["another-runtime-error", "not-a-runtime-error", "one-process"],
)
def test_anything_else_is_not_a_collective_timeout(err: BaseException, world: int) -> None:
    """The negative controls: only a distributed run's timeout is converted; the rest keeps its traceback."""
    ctx = DistContext(rank=0, world_size=world, dp_size=world)
    assert as_collective_timeout(err, ctx, 0.2, "step 1", store=_Store()) is None


def test_the_roll_call_waits_for_late_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank that answers during the wait is not named; the wait ends as soon as every rank answered."""
    store = _Store()
    polls: list[int] = []
    real_check: Callable[[list[str]], bool] = store.check

    def check(keys: list[str]) -> bool:
        polls.append(1)
        if len(polls) == 3:
            store.keys.add("lrkit/collective-timeout/alive/1")
        return real_check(keys)

    monkeypatch.setattr(store, "check", check)
    assert unanswered_ranks(store, 0, 2, wait_s=math.inf, poll_s=0.0) == []
