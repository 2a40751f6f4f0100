"""Bugs of the training loop (issue #8, item 7): each test failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrkit.train import loop
from lrkit.train.command import run_train
from tests.conftest import TINY, parse, trace, train_run

PLATEAU = ["--lr-scheduler", "reduce_lr_on_plateau", "--patience", "0", "--lr", "0.01"]


@pytest.mark.parametrize("backend", ["torch", "lrkit"])
def test_a_plateau_schedule_resumes_exactly(tmp_path: Path, backend: str) -> None:
    """Was: TypeError: ReduceLROnPlateau.step() missing 1 required positional argument: 'metrics' (torch)."""
    flags = [*PLATEAU, "--scheduler-backend", backend]
    straight = train_run(tmp_path / "a", *flags, "--num-iterations", "8")
    train_run(tmp_path / "b", *flags, "--num-iterations", "4", "--save-interval", "4")
    resumed = train_run(tmp_path / "b", *flags, "--num-iterations", "8", "--resume", "auto")
    assert len({r["lr"][0] for r in straight}) > 1  # the plateau did reduce the LR
    assert trace(resumed) == trace(straight)


@pytest.mark.parametrize("backend", ["torch", "lrkit"])
def test_override_to_a_plateau_schedule_starts_it_at_the_resume_step(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: the same TypeError, from fast-forwarding the new schedule (``--lr-resume-policy override``)."""
    train_run(tmp_path, "--lr", "0.01", "--num-iterations", "3", "--save-interval", "3", "--scheduler-backend", backend)
    records = train_run(
        tmp_path, *PLATEAU, "--num-iterations", "6", "--resume", "auto", "--lr-resume-policy", "override",
        "--scheduler-backend", backend,
    )  # fmt: skip
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[3]["lr"] == [0.01, 0.01]  # the plateau's peak: no loss was watched before step 3
    assert "ReduceLROnPlateau starts at step 3" in capsys.readouterr().err


def test_an_incompatible_checkpoint_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was: ``checkpoint is incompatible with this run: ...`` without saying which checkpoint."""
    train_run(tmp_path, "--num-iterations", "2", "--save-interval", "2")
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--n-layer", "1", "--resume", "auto")) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrkit train: error: checkpoint ")
    assert str(tmp_path / "checkpoints" / "step_00000002.pt") in err and "n_layer" in err


def test_an_internal_bug_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: ``run_train`` caught every ValueError and printed it as a user's mistake (exit 2)."""

    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("an internal bug")

    monkeypatch.setattr(loop, "load_corpus", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        run_train(parse(*TINY, "--run-dir", str(tmp_path), "--num-iterations", "1"))


def test_a_users_mistake_still_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--preset", "huge")) == 2
    assert "lrkit train: error: " in capsys.readouterr().err
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--data", str(tmp_path / "nope"))) == 2
    assert run_train(parse(*TINY, "--run-dir", str(tmp_path), "--lr-scheduler", "step")) == 2  # needs --step-size
