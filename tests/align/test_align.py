"""The alignment suite's make-test subset: the 4 source cases (gpt2/llama3 x StepLR/Chained) on 2 ranks."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lrkit.align.cases import Case, all_cases, random_cases, source_cases
from lrkit.align.runner import compare, run_case


@pytest.mark.distributed
@pytest.mark.slow
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


def test_layout_matrix_has_every_scenario_with_a_valid_batch_split() -> None:
    """make align-layouts: InfiniTrain's layouts for both models, ZeRO-1 wherever DP > 1, same global batch."""
    from lrkit.align.layouts import SEQUENCES, layout_cases, reference_name
    from lrkit.train.arguments import add_train_arguments

    cases = layout_cases()
    names = [lc.name for lc in cases]
    assert len(names) == len(set(names))
    for model in ("gpt2", "llama3"):
        layouts = {lc.layout for lc in cases if lc.case.model == model}
        assert {"single", "ddp8", "tp4-dp2", "tp4-sp-dp2", "pp8", "pp4-vpp2-dp2", "tp2-sp-pp2-vpp2-dp2"} <= layouts
        assert {"ddp8-zero1", "tp4-dp2-zero1", "pp4-vpp2-dp2-zero1", "tp2-sp-pp2-vpp2-dp2-zero1"} <= layouts
        assert {"ckpt single", "ckpt tp2-sp-pp2-vpp2-dp2"} <= layouts
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    for lc in cases:
        args = parser.parse_args(lc.case.flags)
        ranks_per_replica = args.tensor_parallel * args.pipeline_parallel
        dp = lc.case.nproc // ranks_per_replica
        micro = args.total_batch_size // (args.batch_size * args.sequence_length * dp)
        assert micro * args.batch_size * dp == SEQUENCES, lc.name  # every layout sees the same 16 sequences
        assert micro >= args.pipeline_parallel, lc.name
        assert args.n_layer % (args.pipeline_parallel * args.virtual_pipeline_parallel) == 0, lc.name
        assert (args.zero_stage == 1) <= (dp > 1), lc.name
        assert reference_name(lc) in names


def test_a_failed_case_is_an_error_row_and_the_matrix_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    from lrkit.align.command import _run_matrix
    from lrkit.align.runner import format_table

    ours = [{"step": s, "loss": 1.0, "lr": [0.1]} for s in range(1, 11)]
    good = compare(Case("good", {}), ours, ours, 0.0)

    def broken() -> dict[str, object]:
        raise RuntimeError("command failed (1): torchrun ...")

    runs = [("broken", broken, {"model": "gpt2", "layout": "2", "dtype": "float32"}), ("good", lambda: good, {})]
    assert _run_matrix(runs, lambda r: "", format_table, None, "") == 1  # type: ignore[arg-type]
    out = capsys.readouterr()
    assert "command failed" in out.err
    lines = out.out.splitlines()
    assert any(line.startswith("broken") and line.endswith("ERROR") for line in lines)
    assert any(line.startswith("good") and line.endswith("PASS") for line in lines)
    assert "1 passed, 1 failed" in out.out
