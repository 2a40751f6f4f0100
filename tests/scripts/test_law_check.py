"""scripts/law_check.py's bookkeeping, on run directories written here: the seed-to-seed noise of a schedule's
final loss (against :func:`statistics.stdev`), the pairs the prediction orders otherwise than the measurement,
and the plan of the noise runs. The training it drives is ``make law-check``'s, not a unit test's."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "law_check.py"


@pytest.fixture(scope="module")
def law_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("law_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["law_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def write_run(run_dir: Path, final: float, steps: int = 40) -> None:
    """A metrics.jsonl as the trainer writes it: an LR per step, the val loss every 10 steps, ``final`` last."""
    run_dir.mkdir(parents=True)
    with (run_dir / "metrics.jsonl").open("w") as f:
        for step in range(1, steps + 1):
            record: dict = {"step": step, "lr": [1e-3], "loss": 3.0}
            if step % 10 == 0:
                record["val_loss"] = final if step == steps else 3.0 - step / 100
            f.write(json.dumps(record) + "\n")


def test_seed_noise_is_the_sample_sd_of_the_final_losses(law_check: ModuleType, tmp_path: Path) -> None:
    runs = law_check.plan(40, 1e-3, 5)
    noise = law_check.noise_plan(runs, [1, 2], ("constant", "cosine"))
    assert [(r.name, r.data_seed, r.role) for r in noise] == [
        ("seed-1/constant", 1, "noise"),
        ("seed-1/cosine", 1, "noise"),
        ("seed-2/constant", 2, "noise"),
        ("seed-2/cosine", 2, "noise"),
    ]
    assert noise[1].schedule == next(r for r in runs if r.name == "cosine").schedule
    finals = {"constant": [1.73, 1.74, 1.71], "cosine": [1.66, 1.63, 1.64]}
    for name, values in finals.items():
        write_run(tmp_path / name, values[0])
        for seed, value in zip((1, 2), values[1:]):
            write_run(tmp_path / f"seed-{seed}" / name, value)
    rows = law_check.seed_noise(runs, noise, tmp_path, data_seed=0)
    assert [r["name"] for r in rows] == ["constant", "cosine"]  # only the schedules trained again
    for row in rows:
        values = finals[row["name"]]
        assert row["finals"] == dict(zip((0, 1, 2), values))
        assert row["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert row["sd"] == pytest.approx(statistics.stdev(values), rel=1e-12)
        assert row["sd_rel"] == pytest.approx(statistics.stdev(values) / statistics.fmean(values), rel=1e-12)
    table = law_check.noise_table(rows).splitlines()
    assert table[0].startswith("| schedule | final val loss, data seeds 0, 1, 2 |")
    sd = statistics.stdev(finals["constant"])
    mean = statistics.fmean(finals["constant"])
    assert table[2] == f"| constant | 1.7300, 1.7400, 1.7100 | {mean:.4f} | {sd:.4f} | {sd / mean:.2%} |"


def test_noise_on_an_unknown_schedule_is_refused(law_check: ModuleType) -> None:
    with pytest.raises(SystemExit, match=r"--noise-on constant,cosine-2x: unknown \['cosine-2x'\]"):
        law_check.noise_plan(law_check.plan(40, 1e-3, 5), [1], ("constant", "cosine-2x"))


def test_discordant_pairs_are_the_pairs_ordered_otherwise(law_check: ModuleType) -> None:
    def row(name: str, measured: float, predicted: float, steps: int = 1000) -> dict:
        return {"name": name, "steps": steps, "measured": measured, "predicted": predicted, "measured_se": 0.02}

    rows = [row("a", 1.70, 1.60), row("b", 1.65, 1.62), row("c", 1.60, 1.50), row("d", 1.50, 1.90, steps=1500)]
    pairs = law_check.discordant_pairs(rows)
    assert [p["pair"] for p in pairs] == ["a vs b"]  # a > b measured, a < b predicted; d is another length
    assert pairs[0]["measured"] == pytest.approx(0.05) and pairs[0]["predicted"] == pytest.approx(-0.02)
    assert pairs[0]["mean"] == pytest.approx(1.675)
    assert law_check.describe(pairs[0]) == "a vs b: measured gap +0.0500 (s.e. 0.0200), predicted gap -0.0200"
