"""``lrkit fit-law``, ``lrkit predict``, ``lrkit tune`` and ``lrkit preview --law`` on synthetic runs whose
``metrics.jsonl`` a known law generated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lrkit import cli
from lrkit import schedules as S
from lrkit.schedules import laws
from lrkit.tools.law import read_run

ANNEALING = {"L0": 2.5, "A": 0.6, "alpha": 0.45, "C": 150.0, "decay": 0.999}
MPL = {"L0": 2.5, "A": 0.6, "alpha": 0.45, "B": 300.0, "C": 2.0, "beta": 0.6, "gamma": 0.55}
TOTAL = 400


def write_run(run: Path, lrs: np.ndarray, law: laws.Law, noise: float = 0.002, seed: int = 0) -> Path:
    """A run directory whose metrics.jsonl follows the trainer's records: step s holds the LR of update s, its train
    loss (measured after s - 1 updates) and, every 20 steps, the val loss after update s."""
    rng = np.random.default_rng(seed)
    after = laws.predict(law, lrs)  # after[t - 1]: the loss after t updates
    run.mkdir(parents=True, exist_ok=True)
    with (run / "metrics.jsonl").open("w") as f:
        for s in range(1, lrs.size + 1):
            before = after[s - 2] if s >= 2 and np.isfinite(after[s - 2]) else 11.0  # S1 = 0: no prediction
            record = {"step": s, "lr": [float(lrs[s - 1])], "loss": float(before * (1 + noise * rng.standard_normal()))}
            if s % 20 == 0:
                record["val_loss"] = float(after[s - 1])
            f.write(json.dumps(record) + "\n")
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    law = laws.Law("annealing", ANNEALING)
    constant = S.WarmupConstant(1e-3, 10)(np.arange(TOTAL))
    cosine = S.WarmupCosine(1e-3, 10, TOTAL, min_lr=1e-4)(np.arange(TOTAL))
    return [write_run(tmp_path / "constant", constant, law), write_run(tmp_path / "cosine", cosine, law, seed=1)]


def law_file(tmp_path: Path, form: str = "mpl") -> Path:
    law = laws.Law(form, MPL if form == "mpl" else ANNEALING, [{"run": "x", "peak_lr": 1e-3}])
    path = tmp_path / f"{form}.json"
    path.write_text(law.to_json())
    return path


def test_fit_law_writes_the_law_and_prints_the_error(runs: list[Path], tmp_path: Path, capsys) -> None:
    pytest.importorskip("scipy")
    out = tmp_path / "law.json"
    argv = ["fit-law", *map(str, runs), "-o", str(out), "--form", "annealing", "--restarts", "2"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "annealing law on 2 run(s), train loss" in text and "rms rel err" in text
    law = laws.load_law(str(out))
    assert law.constants["alpha"] == pytest.approx(0.45, rel=0.1)
    assert [r["run"] for r in law.fitted_on] == [str(r) for r in runs]
    assert law.fitted_on[0]["updates"] == TOTAL and law.fitted_on[0]["peak_lr"] == pytest.approx(1e-3)
    assert set(law.fit_error) == {str(r) for r in runs}
    assert cli.main([*argv[:-4], "-o", str(out), "--form", "annealing", "--loss", "val", "--restarts", "1"]) == 0
    assert laws.load_law(str(out)).fitted_on[0]["points"] == TOTAL // 20
    assert cli.main([*argv[:-4], "-o", str(out), "--form", "annealing", "--fit-from", "100", "--restarts", "1"]) == 0
    assert [r["fit_from"] for r in laws.load_law(str(out)).fitted_on] == [100, 100]
    assert "rms rel err from update 100" in capsys.readouterr().out
    law = laws.load_law(str(out))
    for run in runs:  # the fitted points' error apart, as a direct computation gives it
        curve = read_run(run, "train")
        late = curve.points >= 100
        rel = (laws.predict(law, curve.lrs, curve.points[late]) - curve.losses[late]) / curve.losses[late]
        error = law.fit_error[str(run)]
        assert error["points_fitted"] == np.count_nonzero(late) < error["points"]
        assert error["rms_rel_fitted"] == pytest.approx(float(np.sqrt(np.mean(rel**2))), rel=1e-12)


def test_fit_law_fits_the_decay_unless_told_a_value(runs: list[Path], tmp_path: Path, capsys) -> None:
    pytest.importorskip("scipy")
    out = tmp_path / "law.json"
    argv = ["fit-law", *map(str, runs), "-o", str(out), "--form", "annealing", "--restarts", "2"]
    assert cli.main([*argv, "--decay", "0.99"]) == 0
    assert "decay  0.99  (fixed: a time scale of 100 updates)" in capsys.readouterr().out
    assert laws.load_law(str(out)).constants["decay"] == 0.99
    assert cli.main([*argv, "--decay", "fit"]) == 0
    fitted = laws.load_law(str(out)).constants["decay"]
    assert f"(fitted: a time scale of {1 / (1 - fitted):.4g} updates)" in capsys.readouterr().out
    assert cli.main(argv) == 0  # the default: fitted
    assert laws.load_law(str(out)).constants["decay"] == fitted
    for bad in ("1", "-0.1", "soon"):
        assert cli.main([*argv, "--decay", bad]) == 2
        assert f"argument --decay: expected 'fit' or a number in [0, 1), got {bad!r}" in capsys.readouterr().err


def test_fit_law_errors(runs: list[Path], tmp_path: Path, capsys) -> None:
    def error(*argv: str) -> str:
        assert cli.main(["fit-law", *argv, "-o", str(tmp_path / "law.json")]) == 2
        return capsys.readouterr().err

    assert "no metrics file" in error(str(tmp_path / "nowhere"))
    pytest.importorskip("scipy")
    assert "too few loss points to fit from update 399 on: 1 of 398" in error(*map(str, runs), "--fit-from", "399")
    lines = (runs[0] / "metrics.jsonl").read_text().splitlines()
    no_lr = tmp_path / "no-lr"
    no_lr.mkdir()
    (no_lr / "metrics.jsonl").write_text("\n".join(json.dumps({"step": i, "loss": 3.0}) for i in range(1, 50)))
    assert "the record of step 1 has no LR ('lr': None)" in error(str(no_lr))
    short = tmp_path / "short"
    short.mkdir()
    (short / "metrics.jsonl").write_text("\n".join(lines[:10]) + "\n")
    assert "too short to fit: 10 updates; a run needs at least 20" in error(str(short))
    nan = tmp_path / "nan"
    nan.mkdir()
    record = json.loads(lines[6])
    record["loss"] = float("nan")
    (nan / "metrics.jsonl").write_text("\n".join([*lines[:6], json.dumps(record), *lines[7:]]) + "\n")
    assert "the loss at step 7 is nan; losses must be finite" in error(str(nan))
    assert "no 'val_loss' in any record (try --loss train)" in error(str(short), "--loss", "val")


def test_predict_prints_the_table_and_draws_the_curves(tmp_path: Path, capsys) -> None:
    law = law_file(tmp_path)
    png, csv = tmp_path / "pred.png", tmp_path / "pred.csv"
    argv = ["predict", "--law", str(law), "--lr", "1e-3", "--total-steps", "1000", "--warmup-steps", "10"]
    argv += ["--lr-scheduler", "cosine", "--min-lr", "1e-4", "--lr-scheduler", "wsd", "--decay-fraction", "0.2"]
    assert cli.main([*argv, "-o", str(png), "--csv", str(csv)]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("1 ", "2 "))]
    cosine = S.WarmupCosine(1e-3, 10, 1000, min_lr=1e-4)(np.arange(1000))
    wsd = S.WSD(1e-3, 10, 1000, decay_fraction=0.2)(np.arange(1000))
    expected = laws.predict_final(laws.load_law(str(law)), np.stack([cosine, wsd]))
    assert [float(r[2]) for r in rows] == pytest.approx(expected, abs=1e-4)
    assert rows[0][4].startswith("cosine") and rows[1][4].startswith("wsd")
    assert png.stat().st_size > 1000
    assert csv.read_text().startswith("schedule,update,lr,predicted_loss\n1,1,0.0,inf\n")
    assert cli.main(["predict", "--law", str(law)]) == 2
    assert "give at least one --lr-scheduler" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text('{"form": "mpl", "constants": {}}')
    assert cli.main(["predict", "--law", str(tmp_path / "bad.json"), "--lr-scheduler", "constant"]) == 2
    assert "constants: missing 'L0'" in capsys.readouterr().err


@pytest.mark.parametrize("form", ["mpl", "annealing"])
def test_tune_prints_the_best_spec(tmp_path: Path, capsys, form: str) -> None:
    law = law_file(tmp_path, form)
    argv = ["tune", "--law", str(law), "--family", "wsd", "--budget", "2000", "--warmups", "0.01"]
    assert cli.main([*argv, "--decay-fractions", "0.1,0.2,0.4", "--shapes", "linear,1-sqrt"]) == 0
    text = capsys.readouterr().out
    assert "6 candidates" in text
    best = text.split("best:\n")[1].split()
    assert best[:2] == ["--lr-scheduler", "wsd"] and "--decay-steps" in best
    flags = dict(zip(best[::2], best[1::2]))
    lrs = S.WSD(1e-3, 20, 2000, decay_steps=int(flags["--decay-steps"]), decay_shape=flags["--decay-shape"])
    finals = [float(line.split()[1]) for line in text.splitlines() if line.strip()[:1].isdigit()]
    predicted = float(laws.predict_final(laws.load_law(str(law)), lrs(np.arange(2000))))
    assert predicted == pytest.approx(min(finals), abs=1e-4)
    cosine = ["tune", "--law", str(law), "--family", "cosine", "--budget", "16Mtok"]
    assert cli.main([*cosine, "--tokens-per-step", "8192"]) == 0
    assert "cosine, 1954 updates" in capsys.readouterr().out
    assert cli.main(cosine) == 2
    assert "--tokens-per-step" in capsys.readouterr().err


def test_preview_law_adds_the_predicted_final_loss(tmp_path: Path, capsys) -> None:
    law = law_file(tmp_path)
    argv = ["preview", "--lr-scheduler", "cosine", "--lr", "1e-3", "--warmup-steps", "10", "--total-steps", "1000"]
    assert cli.main([*argv, "--law", str(law)]) == 0
    cosine = S.WarmupCosine(1e-3, 10, 1000)(np.arange(1000))
    final = float(laws.predict_final(laws.load_law(str(law)), cosine))
    assert f"ok    predicted final loss {final:.4f} after 1000 updates (mpl law, {law})" in capsys.readouterr().out
    assert cli.main([*argv, "--law", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the law file" in capsys.readouterr().err
