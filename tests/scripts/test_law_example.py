"""scripts/law_example.py writes runs that the trainer's reader takes, whose val losses are the generating law's
to within the noise it adds, and its comparison prints one row per schedule."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from lrkit.schedules import laws
from lrkit.tools.law import read_run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "law_example.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("law_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["law_example"] = module
    spec.loader.exec_module(module)
    return module


def test_the_runs_follow_the_generating_law(example: ModuleType, tmp_path: Path, capsys) -> None:
    assert example.main(["write", "--out", str(tmp_path)]) == 0
    true = laws.Law("mpl", example.TRUE)
    for name in ("constant", "cosine"):
        run = read_run(tmp_path / name, loss="val")
        assert run.lrs.size == example.TOTAL and run.points.tolist() == list(range(50, 2001, 50))
        rel = run.losses / laws.predict(true, run.lrs, run.points) - 1
        assert 0 < np.abs(rel).max() < 5 * example.NOISE  # the noise is there, and it is 0.1%
    path = tmp_path / "law.json"
    path.write_text(true.to_json())
    assert example.main(["compare", "--law", str(path), "--tuned", "400:1-sqrt:20"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "%" in line]
    assert len(rows) == 5 and all(row.endswith("| +0.00% |") for row in rows)  # the law against itself
