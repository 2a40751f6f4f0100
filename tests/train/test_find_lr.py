"""``lrkit find-lr``: the LR range test on the tiny model (ramp, plot, suggestion, early stop, bad flags)."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from lrkit import cli
from lrkit.schedules import ExponentialRamp
from lrkit.train.arguments import add_train_arguments
from lrkit.train.find_lr import add_find_lr_arguments, find_lr, smooth_losses, steepest_index

START, END, N = 1e-6, 3.0, 30
FAST = ["--preset", "tiny", "--batch-size", "2", "--sequence-length", "32", "--threads", "1", "--num-steps", str(N)]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_find_lr_arguments(parser)
    return parser.parse_args(list(argv))


def read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return {key: np.array([float(r[key]) for r in rows]) for key in ("lr", "loss", "smoothed_loss")}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``lrkit find-lr`` run through the command line, with its outputs."""
    tmp = tmp_path_factory.mktemp("find_lr")
    png, table = tmp / "find_lr.png", tmp / "find_lr.csv"
    out = io.StringIO()
    argv = ["find-lr", *FAST, "--start-lr", str(START), "--end-lr", str(END), "-o", str(png), "--csv", str(table)]
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    return {"code": code, "stdout": out.getvalue(), "png": png, "csv": read_csv(table)}


def test_the_command_succeeds(cli_run: dict[str, Any]) -> None:
    assert cli_run["code"] == 0, cli_run["stdout"]
    assert "steepest descent" in cli_run["stdout"] and "divergence" in cli_run["stdout"]


def test_recorded_lrs_are_the_exponential_ramp(cli_run: dict[str, Any]) -> None:
    lrs = cli_run["csv"]["lr"]
    assert 2 <= len(lrs) <= N
    i = np.arange(len(lrs))
    closed_form = START * (END / START) ** (i / (N - 1))
    np.testing.assert_allclose(lrs, closed_form, rtol=1e-13, atol=0)
    assert lrs[0] == START


def test_smoothed_loss_is_the_bias_corrected_ema(cli_run: dict[str, Any]) -> None:
    losses, smoothed = cli_run["csv"]["loss"], cli_run["csv"]["smoothed_loss"]
    beta = 0.98
    # The weighted-mean form, not the recursion the code uses: sum_j beta^(i-j) loss_j / sum_j beta^(i-j).
    expected = [
        sum(beta ** (i - j) * losses[j] for j in range(i + 1)) / sum(beta ** (i - j) for j in range(i + 1))
        for i in range(len(losses))
    ]
    np.testing.assert_allclose(smoothed, expected, rtol=1e-12)
    np.testing.assert_allclose(smooth_losses(losses, beta), expected, rtol=1e-12)


def test_png_is_a_valid_image(cli_run: dict[str, Any]) -> None:
    image = matplotlib.image.imread(cli_run["png"])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0  # something was drawn


def test_suggestion_lies_inside_the_scanned_range(cli_run: dict[str, Any]) -> None:
    match = re.search(r"suggested peak LR: (\S+)", cli_run["stdout"])
    assert match, cli_run["stdout"]
    suggested = float(match.group(1))
    lrs = cli_run["csv"]["lr"]
    assert START <= lrs[0] <= suggested <= lrs[-1] <= END
    # it is the steepest point, printed at 3 significant digits
    steepest = lrs[steepest_index(lrs, cli_run["csv"]["smoothed_loss"])]
    assert math.isclose(suggested, steepest, rel_tol=5e-3)


def test_a_huge_end_lr_stops_early_at_the_first_divergence() -> None:
    num_steps = 40
    args = parse(*FAST, "--num-steps", str(num_steps), "--start-lr", "1e-5", "--end-lr", "1e6")
    result = find_lr(args)
    assert result.stop_reason == "diverged"  # seeded: the smoothed loss crosses 4x its best before any NaN
    assert len(result.lrs) < num_steps
    assert result.stop_lr < 1e6
    running_best = np.minimum.accumulate(result.smoothed)
    crossed = result.smoothed > args.divergence_factor * running_best
    assert crossed[-1] and not crossed[:-1].any()  # it stopped at the first crossing, not later
    assert result.stop_lr == result.lrs[-1]
    assert result.lrs[0] <= result.suggested_lr <= result.stop_lr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--start-lr", "1", "--end-lr", "0.1"], "--start-lr=1.0 >= --end-lr=0.1"),
        (["--start-lr", "0"], "--start-lr=0.0"),
        (["--num-steps", "1"], "--num-steps=1"),
        (["--smoothing", "1"], "--smoothing=1.0"),
        (["--divergence-factor", "0.5"], "--divergence-factor=0.5"),
        (["--batch-size", "0"], "--batch-size = 0 must be an integer >= 1"),  # the config checks it first
        (["--sequence-length", "100000"], "--sequence-length=100000"),
        (["--num-steps", "many"], "--num-steps"),
        (["--optimizer", "lion"], "--optimizer"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["find-lr", *FAST, *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err, err


def test_shared_flags_are_the_trainers() -> None:
    trainer = argparse.ArgumentParser()
    add_train_arguments(trainer)
    ours = vars(parse())
    theirs = vars(trainer.parse_args([]))
    shared = ["model", "preset", "data", "batch_size", "sequence_length", "optimizer", "weight_decay", "seed"]
    shared += ["beta1", "beta2", "momentum", "grad_clip", "threads", "device"]
    assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_steepest_index_finds_the_steepest_descent_of_a_known_curve() -> None:
    lrs = np.geomspace(1e-7, 10.0, 100)
    u = np.log(lrs)
    # falls fastest where ln lr = ln 1e-3 (d/du tanh is largest at 0), rises again past lr ~ 1
    loss = 5.0 - np.tanh(u - math.log(1e-3)) + np.exp(2.0 * (u - math.log(1.0)))
    i = steepest_index(lrs, loss)
    step = lrs[1] / lrs[0]
    assert 1e-3 / step <= lrs[i] <= 1e-3 * step
    assert i < int(np.argmin(loss))


def test_exponential_ramp_schedule() -> None:
    ramp = ExponentialRamp(start_lr=1e-7, end_lr=10.0, num_steps=100)
    assert ramp(0) == 1e-7 and ramp(99) == 10.0 and ramp(250) == 10.0
    steps = np.arange(120)
    np.testing.assert_allclose(ramp(steps), [ramp(int(t)) for t in steps], rtol=1e-15)
    np.testing.assert_allclose(ramp(steps[:100]), 1e-7 * 1e8 ** (steps[:100] / 99), rtol=1e-13)
    with pytest.raises(ValueError, match="num_steps"):
        ExponentialRamp(1e-7, 10.0, 1)
    with pytest.raises(ValueError, match="start_lr"):
        ExponentialRamp(0.0, 10.0, 10)
