"""The time flags (``--warmup 50Mtok``, ``--total 10Btok``, ``--decay 0.2dur``) in specs, ``lrkit preview``
and ``lrkit plot``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from lrkit import cli
from lrkit import schedules as S
from lrkit.schedules.clock import QUANTITY_SYNTAX, Rates
from lrkit.tools.flags import ScheduleFlagError, add_schedule_arguments, spec_from_args

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
