"""Run PyTorch's and transformers' own scheduler test suites against lrkit.

The test files are public and stay out of this repository:

* ``test/optim/test_lrscheduler.py`` from pytorch/pytorch (the tag of the installed torch);
* ``tests/optimization/test_optimization.py`` and ``test_greedy_lr.py`` from
  huggingface/transformers (the tag of the installed transformers).

Each file is run twice, in a temporary folder: as it is (the baseline: the project's
own classes), and with only its imports swapped. In the swapped copy, every name that a
``from torch.optim.lr_scheduler import ...``, ``from torch.optim.swa_utils import ...``,
``from transformers import ...`` or ``from transformers.optimization import ...`` takes,
and that lrkit exports, is taken from ``lrkit`` instead. Nothing else in the file changes
(line numbers included), and the base class ``LRScheduler`` stays torch's (see ``KEPT``).
A name the installed project no longer has (transformers v5 dropped its ``AdamW``) is
taken from ``torch.optim`` in both runs, and the script says so.

    python scripts/upstream_suites.py --torch path/to/test_lrscheduler.py \\
        --transformers path/to/test_optimization.py path/to/test_greedy_lr.py

It prints passed/failed per suite and run, and every test that fails only with lrkit: a
deliberate deviation (``KNOWN_DEVIATIONS``, with its reason) or a FAIL. It exits 1 on a FAIL.
``make upstream TORCH_TESTS=... HF_TESTS="..."`` runs the same.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

#: Names never swapped: ``LRScheduler`` is the base class the test files also subclass and
#: check with ``isinstance`` against torch's own classes (``torch.optim.lr_scheduler.StepLR``);
#: lrkit's classes are subclasses of torch's base, so those checks keep their meaning.
KEPT = frozenset({"LRScheduler"})

#: Tests that fail with lrkit on purpose (docs/drop-in.md, "Deliberate deviations from torch").
_PATCH = "expects the warnings torch raises by patching optimizer.step, which lrkit never patches"
_PRIVATE = "reads a torch-private attribute"
KNOWN_DEVIATIONS = {
    "TestLRScheduler.test_old_pattern_warning": _PATCH,
    "TestLRScheduler.test_old_pattern_warning_with_arg": _PATCH,
    "TestLRScheduler.test_old_pattern_warning_resuming": _PATCH,
    "TestLRScheduler.test_old_pattern_warning_resuming_with_arg": _PATCH,
    "TestLRScheduler.test_old_pattern_warning_with_overridden_optim_step": _PATCH,
    "TestLRScheduler.test_new_pattern_no_warning_with_overridden_optim_step": _PATCH,
    "TestLRScheduler.test_cycle_lr_scale_fn_restored_from_state_dict": f"{_PRIVATE} (_scale_fn_ref)",
    "TestLRScheduler.test_cycle_lr_state_dict_picklable": f"{_PRIVATE} (_scale_fn_ref)",
    "TestLRScheduler.test_onecycle_lr_legacy_state_dict": f"{_PRIVATE} (_anneal_func_type)",
}

#: Modules whose imports are swapped to lrkit, per suite.
SWAPPED = {
    "torch": ("torch.optim.lr_scheduler", "torch.optim.swa_utils"),
    "transformers": ("transformers", "transformers.optimization"),
}


@dataclass
class Outcome:
    """One pytest run: counts and the failing test ids with their first error line."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def _exports(module: str) -> set[str]:
    return set(dir(importlib.import_module(module)))


def rewrite(source: str, modules: tuple[str, ...], to_lrkit: bool) -> tuple[str, list[str]]:
    """``source`` with the ``from M import ...`` statements of ``modules`` rewritten.

    With ``to_lrkit``, names lrkit exports come from ``lrkit``; in both modes a name that
    ``M`` no longer has comes from ``torch.optim``. Each statement is replaced in place and
    padded to its original number of lines. Returns the new source and notes on what moved.
    """
    lrkit_names = _exports("lrkit") if to_lrkit else set()
    torch_optim = _exports("torch.optim")
    lines = source.splitlines(keepends=True)
    edits = []
    notes = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.module not in modules or node.level:
            continue
        have = _exports(node.module)
        groups: dict[str, list[str]] = {}
        for alias in node.names:
            text = alias.name if alias.asname is None else f"{alias.name} as {alias.asname}"
            if alias.name in lrkit_names and alias.name not in KEPT:
                target = "lrkit"
            elif alias.name not in have and alias.name in torch_optim:
                target = "torch.optim"
                notes.append(f"{node.module}.{alias.name} no longer exists: taken from torch.optim")
            else:
                target = node.module
            groups.setdefault(target, []).append(text)
        statement = "; ".join(f"from {module} import {', '.join(names)}" for module, names in groups.items())
        edits.append((node.lineno, node.end_lineno or node.lineno, node.col_offset, statement))
    for first, last, col, statement in sorted(edits, reverse=True):
        indent = lines[first - 1][:col]
        padding = "\n" * (last - first)
        lines[first - 1 : last] = [f"{indent}{statement}\n{padding}"]
    return "".join(lines), sorted(set(notes))


def run_pytest(test_file: Path, workdir: Path, name: str) -> Outcome:
    """Run one test file with pytest in ``workdir``; read the outcome from its JUnit XML."""
    report = workdir / f"{name}.xml"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            f"--junitxml={report}",
            str(test_file),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    outcome = Outcome()
    if not report.exists():
        outcome.failures["<collection>"] = "pytest wrote no report"
        outcome.failed = 1
        return outcome
    for case in ET.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').rsplit('.', 1)[-1]}.{case.get('name')}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            outcome.failed += 1
            message = (problem.get("message") or problem.text or "").strip().splitlines()
            outcome.failures[test_id] = message[0][:160] if message else ""
        elif case.find("skipped") is not None:
            outcome.skipped += 1
        else:
            outcome.passed += 1
    return outcome


def run_suite(kind: str, path: Path, workdir: Path) -> tuple[Outcome, Outcome, list[str]]:
    """The baseline and the lrkit run of one test file."""
    source = path.read_text()
    outcomes = []
    notes: list[str] = []
    for to_lrkit in (False, True):
        text, notes = rewrite(source, SWAPPED[kind], to_lrkit)
        name = f"{path.stem}_{'lrkit' if to_lrkit else 'upstream'}"
        target = workdir / f"{name}.py"
        target.write_text(text)
        outcomes.append(run_pytest(target, workdir, name))
    return outcomes[0], outcomes[1], notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--torch", type=Path, nargs="*", default=[], metavar="PATH", help="torch's test/optim/test_lrscheduler.py"
    )
    parser.add_argument(
        "--transformers",
        type=Path,
        nargs="*",
        default=[],
        metavar="PATH",
        help="transformers' tests/optimization/test_optimization.py, test_greedy_lr.py",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the rewritten files and reports here instead of a temporary folder",
    )
    args = parser.parse_args(argv)
    suites = [("torch", p) for p in args.torch] + [("transformers", p) for p in args.transformers]
    if not suites:
        parser.error("give at least one test file with --torch or --transformers")
    for _, path in suites:
        if not path.is_file():
            parser.error(f"no such test file: {path}")
    workdir = Path(tempfile.mkdtemp(prefix="lrkit-upstream-")) if args.keep is None else args.keep
    workdir.mkdir(parents=True, exist_ok=True)
    only_lrkit_failures = 0
    try:
        for kind, path in suites:
            upstream, ours, notes = run_suite(kind, path, workdir)
            print(f"{kind}: {path.name}")
            for note in notes:
                print(f"  note: {note}")
            for label, outcome in ((kind, upstream), ("lrkit", ours)):
                total = outcome.passed + outcome.failed
                print(
                    f"  with {label:<12} {outcome.passed:4d}/{total} passed, {outcome.failed} failed, "
                    f"{outcome.skipped} skipped"
                )
            for test_id, message in sorted(ours.failures.items()):
                if test_id in upstream.failures:
                    continue
                if test_id in KNOWN_DEVIATIONS:
                    print(f"    deviation {test_id}: {KNOWN_DEVIATIONS[test_id]}")
                else:
                    only_lrkit_failures += 1
                    print(f"    FAIL {test_id}: {message}")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if only_lrkit_failures:
        print(f"{only_lrkit_failures} test(s) fail only with lrkit and are not known deviations")
    return 1 if only_lrkit_failures else 0


if __name__ == "__main__":
    sys.exit(main())
