"""The alignment suite's make-test subset: the 4 source cases (gpt2/llama3 x StepLR/Chained) on 2 ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from lrkit.align import Case, all_cases, compare, random_cases, run_case, source_cases


@pytest.mark.parametrize("case", source_cases(nproc=2, steps=10), ids=lambda c: c.name)
def test_source_case_is_bit_identical_to_torch(case: Case, tmp_path: Path) -> None:
    row = run_case(case, tmp_path)
    assert row["steps"] == 10
    assert row["max_dloss"] == 0.0 and row["max_dlr"] == 0.0
    assert row["lr_equal_on_ranks"] and row["verdict"] == "PASS"


def test_compare_reports_a_real_difference() -> None:
    """The verdict is not a formality: a loss off by more than the fp32 tolerance fails."""
    ours = [{"step": s, "loss": 1.0, "lr": [0.1]} for s in range(1, 11)]
    theirs = [dict(r) for r in ours]
    theirs[4] = {**theirs[4], "loss": 1.0 + 2e-5, "lr": [0.1 + 1e-9]}
    row = compare(Case("x", {}), ours, theirs, 0.0)
    assert row["verdict"] == "FAIL" and row["max_dloss"] == pytest.approx(2e-5) and row["max_dlr"] > 0
    assert compare(Case("x", {}), ours, ours, 0.0)["verdict"] == "PASS"


def test_matrix_names_are_unique_and_random_cases_are_reproducible() -> None:
    names = [c.name for c in all_cases()]
    assert len(names) == len(set(names))
    assert {"source", "classes", "llm", "layouts", "resume", "precision"} <= {c.group for c in all_cases()}
    assert [c.spec for c in random_cases(3, seed=5)] == [c.spec for c in random_cases(3, seed=5)]
