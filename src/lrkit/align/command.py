"""``lrkit align`` (``make align``, ``make align-layouts``): run the case matrix and print the table."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lrkit.align.cases import all_cases, random_cases, source_cases
from lrkit.align.layouts import format_layout_table, layout_cases, reference_name, run_layout_case
from lrkit.align.runner import format_table, run_case


def add_align_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cases", nargs="*", help="case names to run (default: the whole matrix); see --list")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument(
        "--group", default=None, help="only cases of this group: source, classes, llm, layouts, resume, precision"
    )
    parser.add_argument("--source-nproc", type=int, default=8, help="ranks for the 4 source cases (default 8)")
    parser.add_argument("--random", type=int, default=0, metavar="K", help="add K random black-box cases")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cases")
    parser.add_argument("--workdir", default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="run the parallel-layout matrix instead (make align-layouts): single, DDP8, TP4, TP4+SP, PP8, "
        "PP4+VPP2, TP2+SP+PP2+VPP2, their ZeRO-1 variants and the checkpoint cases, for gpt2 and llama3",
    )


def _bad_argument(args: argparse.Namespace, groups: list[str]) -> str | None:
    """What is wrong with ``args``, naming the flag, its value and what was expected; None when nothing is.

    Checked before any case runs: a group or count that selects nothing would otherwise run nothing and report
    "0 passed" with exit 0, and a ``--json`` path that cannot be written would fail after the whole matrix ran.
    """
    if args.random < 0:
        return f"--random {args.random}: expected K >= 0 (random black-box cases to add)"
    if args.source_nproc < 1:
        return f"--source-nproc {args.source_nproc}: expected ranks >= 1 for the source cases"
    if args.json is not None:
        path = Path(args.json)
        if path.is_dir():
            return f"--json {args.json}: is a directory; expected a file path"
        if not path.parent.is_dir():
            return f"--json {args.json}: its directory {str(path.parent)!r} does not exist; expected an existing one"
    if args.workdir is not None and Path(args.workdir).exists() and not Path(args.workdir).is_dir():
        return f"--workdir {args.workdir}: is not a directory; expected a directory (created if missing)"
    if args.group is not None:
        if args.layouts:
            return f"--group {args.group}: --layouts runs its own matrix, which has no groups; expected no --group"
        if args.group not in groups:
            return f"--group {args.group!r}: expected one of {', '.join(groups)}"
        if args.group == "random" and args.random == 0:
            return "--group random: selects the --random cases, and --random is 0; expected --random K with K >= 1"
    return None


def run_align(args: argparse.Namespace) -> int:
    """``lrkit align``: run the case matrix (or ``--layouts``'), print the table; the exit code: 0 when every
    case passes, 1 when one fails, 2 for a bad argument (nothing runs)."""
    matrix = [c for c in all_cases() if c.group != "source"]
    groups = sorted({"source", "random", *(c.group for c in matrix)})
    problem = _bad_argument(args, groups)
    if problem is not None:
        print(f"lrkit align: error: {problem}", file=sys.stderr)
        return 2
    if args.layouts:
        return _run_layouts(args)
    cases = source_cases(args.source_nproc) + matrix
    cases += random_cases(args.random, args.seed)
    if args.list:
        for c in cases:
            print(f"{c.name:36} group={c.group:9} model={c.model} nproc={c.nproc} {json.dumps(c.spec)}")
        return 0
    if args.group:
        cases = [c for c in cases if c.group == args.group or (args.random and c.group == "random")]
    if args.cases:
        known = {c.name: c for c in cases}
        unknown = [n for n in args.cases if n not in known]
        if unknown:
            print(f"lrkit align: error: unknown case(s) {unknown}; run 'lrkit align --list'", file=sys.stderr)
            return 2
        cases = [known[n] for n in args.cases]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lrkit-align-"))
    runs: list[Run] = [
        (c.name, partial(run_case, c, workdir), {"model": c.model, "layout": str(c.nproc), "dtype": c.dtype})
        for c in cases
    ]
    return _run_matrix(runs, lambda r: f"Δloss={r['max_dloss']:.3g}", format_table, args.json, "")


#: One case of a matrix: its name, what runs it (returns its row), and the columns of its row if it fails.
Run = tuple[str, Callable[[], dict[str, Any]], dict[str, Any]]


def _run_matrix(
    runs: list[Run],
    summary: Callable[[dict[str, Any]], str],
    table: Callable[[list[dict[str, Any]]], str],
    json_path: str | None,
    footer: str,
) -> int:
    """Run every case with a progress line, print the table; 0 when every row passes.

    A case whose training fails is an ERROR row (its third element fills the columns) and the others still run.
    """
    rows = []
    for i, (name, run, failed) in enumerate(runs, 1):
        print(f"[{i}/{len(runs)}] {name} ...", end=" ", flush=True)
        try:
            row = run()
        except RuntimeError as err:
            print("ERROR")
            print(str(err), file=sys.stderr)
            inf = float("inf")
            row = {**failed, "case": name, "steps": 0, "max_dloss": inf, "max_dlr": inf, "max_dloss_single": inf,
                   "lr_equal_on_ranks": False, "verdict": "ERROR", "seconds": 0.0}  # fmt: skip
        else:
            print(f"{row['verdict']}  {summary(row)}  ({row['seconds']:.1f} s)", flush=True)
        rows.append(row)
    print()
    print(table(rows))
    passed = sum(r["verdict"] == "PASS" for r in rows)
    print(f"\n{passed} passed, {len(rows) - passed} failed{footer}")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=2))
    return 0 if passed == len(rows) else 1


def _run_layouts(args: argparse.Namespace) -> int:
    cases = layout_cases()
    if args.list:
        for lc in cases:
            print(f"{lc.name:36} nproc={lc.case.nproc} {' '.join(lc.case.flags)}")
        return 0
    if args.cases:
        known = {lc.name: lc for lc in cases}
        unknown = [n for n in args.cases if n not in known]
        if unknown:
            print(f"lrkit align: error: unknown case(s) {unknown}; run 'lrkit align --layouts --list'", file=sys.stderr)
            return 2
        wanted = set(args.cases)
        # The single-process run of each model is the reference for "Δloss vs single": always run it first.
        wanted |= {reference_name(known[n]) for n in args.cases}
        cases = [lc for lc in cases if lc.name in wanted]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="lrkit-layouts-"))
    single: dict[str, list[dict[str, Any]]] = {}
    runs: list[Run] = [
        (lc.name, partial(run_layout_case, lc, workdir, single), {"model": lc.case.model, "layout": lc.layout})
        for lc in cases
    ]
    return _run_matrix(
        runs,
        lambda r: f"Δloss vs torch={r['max_dloss']:.3g}  vs single={r['max_dloss_single']:.3g}",
        format_layout_table,
        args.json,
        f"; runs in {workdir}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lrkit align", description="Compare lrkit's LRs and losses with PyTorch's own schedulers."
    )
    add_align_arguments(parser)
    return run_align(parser.parse_args(argv))
