"""scripts/upstream_suites.py: only imports are swapped, line numbers are kept, outcomes are read right."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "upstream_suites.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("upstream_suites", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["upstream_suites"] = module
    spec.loader.exec_module(module)
    return module


SOURCE = """import torch
from torch.optim.lr_scheduler import (
    LRScheduler,
    StepLR,
)
from torch.optim.swa_utils import SWALR, AveragedModel


def test_classes_come_from_lrkit():
    from transformers import get_scheduler
    assert StepLR.__module__.startswith("lrkit")
    assert SWALR.__module__.startswith("lrkit")
    assert get_scheduler.__module__.startswith("lrkit")


def test_untouched():
    assert LRScheduler is torch.optim.lr_scheduler.LRScheduler
    assert AveragedModel.__module__ == "torch.optim.swa_utils"
"""


def test_rewrite_swaps_only_lrkit_names_and_keeps_line_numbers(runner) -> None:
    modules = runner.SWAPPED["torch"] + runner.SWAPPED["transformers"]
    text, notes = runner.rewrite(SOURCE, modules, to_lrkit=True)
    assert len(text.splitlines()) == len(SOURCE.splitlines())
    assert "from torch.optim.lr_scheduler import LRScheduler; from lrkit import StepLR\n" in text
    assert "from lrkit import SWALR; from torch.optim.swa_utils import AveragedModel\n" in text
    assert "    from lrkit import get_scheduler" in text
    untouched = [i for i, line in enumerate(SOURCE.splitlines()) if line.lstrip().startswith(("def ", "assert "))]
    assert [text.splitlines()[i] for i in untouched] == [SOURCE.splitlines()[i] for i in untouched]
    assert notes == []
    baseline, _ = runner.rewrite(SOURCE, modules, to_lrkit=False)
    assert "from lrkit" not in baseline


def test_a_suite_runs_both_ways_and_reports_what_fails_only_with_lrkit(runner, tmp_path: Path) -> None:
    suite = tmp_path / "test_suite.py"
    suite.write_text(SOURCE)
    kind = "torch"
    runner.SWAPPED[kind] = runner.SWAPPED["torch"] + runner.SWAPPED["transformers"]
    try:
        upstream, ours, _ = runner.run_suite(kind, suite, tmp_path)
    finally:
        runner.SWAPPED[kind] = ("torch.optim.lr_scheduler", "torch.optim.swa_utils")
    assert (upstream.passed, upstream.failed) == (1, 1)  # the baseline has torch's classes
    assert list(upstream.failures) == ["test_suite_upstream.test_classes_come_from_lrkit"]
    assert (ours.passed, ours.failed) == (2, 0)
