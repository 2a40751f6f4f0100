"""The mutation score of the last ``make mutate`` run, and every survivor with its file and line.

mutmut (``[tool.mutmut]`` in pyproject.toml) leaves one ``*.py.meta`` file per mutated module under
``mutants/``, with the test exit code of every mutant: 1 or 3 killed it, 0 means every selected test
passed (a survivor). A survivor that cannot change behaviour is an *equivalent* mutant: it is listed
in ``scripts/mutation_equivalent.toml`` with its reason and the line mutmut put in, and is left out
of the score. An entry whose mutant no longer makes that change (the function was edited and the
numbering moved) is reported as stale.

    score = killed / (killed + survivors that are not listed as equivalent)

    python scripts/mutation_report.py [--mutants mutants] [--mutmut .venv-mutate/bin/mutmut] [--earlier DIR ...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib

EQUIVALENT = Path(__file__).with_name("mutation_equivalent.toml")
KILLED = {1, 3}
SURVIVED = 0


def run_of(mutants: Path) -> tuple[dict[str, int | None], dict[str, str]]:
    """A run's exit codes by mutant name, and mutmut's hash of each mutated function's source by its name."""
    codes: dict[str, int | None] = {}
    hashes: dict[str, str] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        codes.update(data["exit_code_by_key"])
        hashes.update(data.get("hash_by_function_name", {}))
    return codes, hashes


def function_of(name: str) -> str:
    """``lrkit.m.xǁCǁf__mutmut_3`` -> ``xǁCǁf``: the key of mutmut's function hashes."""
    return re.sub(r"__mutmut_\d+$", "", name.rsplit(".", 1)[-1])


def combined(latest: Path, earlier: list[Path]) -> dict[str, int | None]:
    """The latest run's exit codes, a mutant it did not run taking an earlier run's result, the latest earlier run
    first, but only where the mutated function's source is the same in both (mutmut's hash): a function edited
    since then stays "not run"."""
    codes, hashes = run_of(latest)
    for folder in reversed(earlier):
        old_codes, old_hashes = run_of(folder)
        for name, code in codes.items():
            function = function_of(name)
            if code is None and old_codes.get(name) is not None and old_hashes.get(function) == hashes.get(function):
                codes[name] = old_codes[name]
    return codes


def change_of(mutmut: str, name: str) -> tuple[str, str]:
    """``(file:line, the line mutmut put in)`` of one mutant, from ``mutmut show``.

    mutmut's hunk numbers count from the function, so the line is found in the source: the first
    line equal to the removed one after the function's ``def`` (a method's: after its class's line).
    """
    diff = subprocess.run([mutmut, "show", name], capture_output=True, text=True, check=False).stdout
    path, removed, added = "", "", ""
    for text in diff.splitlines():
        if text.startswith("--- "):
            path = text[4:].strip()
        elif text.startswith("-") and not removed:
            removed = text[1:].strip()
        elif text.startswith("+") and not text.startswith("+++") and not added:
            added = text[1:].strip()
    parts = re.sub(r"__mutmut_\d+$", "", name.rsplit(".", 1)[-1]).removeprefix("x_").split("\u01c1")
    function, owner = parts[-1], (parts[1] if len(parts) == 3 else None)
    line = 0
    source = Path(path)
    if source.is_file():
        lines = source.read_text().splitlines()
        # A method is looked for after its own class's line: several classes define `phases`, `_value`, ...
        begin = next((i for i, text in enumerate(lines) if owner and re.match(rf"class {re.escape(owner)}\b", text)), 0)
        indent = r"\s+" if owner else ""  # a module-level function's def is not indented
        start = next(
            (i for i in range(begin, len(lines)) if re.match(rf"{indent}def {re.escape(function)}\(", lines[i])), begin
        )
        line = next((i + 1 for i in range(start, len(lines)) if lines[i].strip() == removed), start + 1)
    return f"{path}:{line}", added


def per_module(codes: dict[str, int | None], equivalent: dict[str, object]) -> str:
    """One line per mutated module: its mutants, killed, survivors, those listed as equivalent, and its score.

    A listed survivor counts as equivalent here by its name; ``main`` checks below that it still makes its change.
    """
    modules: dict[str, list[str]] = {}
    for name in codes:
        modules.setdefault(name.split(".x", 1)[0], []).append(name)
    lines = []
    for module, names in sorted(modules.items()):
        killed = sum(codes[n] in KILLED for n in names)
        survived = [n for n in names if codes[n] == SURVIVED]
        listed = sum(n in equivalent for n in survived)
        not_run = sum(codes[n] is None for n in names)
        counted = killed + len(survived) - listed
        score = f"{killed / counted:.1%}" if counted else "-"
        lines.append(
            f"  {module}: mutants {len(names)}, killed {killed}, survived {len(survived)} ({listed} listed), "
            f"not run {not_run}, score {score}"
        )
    return "per module:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's working folder")
    parser.add_argument("--mutmut", default=".venv-mutate/bin/mutmut", help="the mutmut executable")
    parser.add_argument(
        "--earlier",
        type=Path,
        action="append",
        default=[],
        help="an earlier run's mutants/ folder, oldest first: it fills in the mutants --mutants did not run, "
        "where the function is unchanged since (e.g. a complete run, then a run of its survivors' functions)",
    )
    args = parser.parse_args(argv)
    for folder in [args.mutants, *args.earlier]:
        if not folder.is_dir():
            parser.error(f"no {folder}/ folder: run `make mutate` first")
    codes = combined(args.mutants, args.earlier)
    equivalent = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    killed = sum(code in KILLED for code in codes.values())
    survivors = sorted(name for name, code in codes.items() if code == SURVIVED)
    not_run = sorted(name for name, code in codes.items() if code is None)
    other = sorted(name for name, code in codes.items() if code not in KILLED and code not in (SURVIVED, None))

    print(per_module(codes, equivalent))
    live, stale = [], []
    for name in survivors:
        where, added = change_of(args.mutmut, name)
        entry = equivalent.get(name)
        if entry is None:
            live.append(f"  {where}  {name}\n      now: {added}")
        elif entry.get("change", "").strip() != added:
            stale.append(f"  {name}: listed as `{entry.get('change')}`, but it now makes `{added}` ({where})")
    counted = killed + len(live)
    score = killed / counted if counted else 1.0
    print(
        f"mutants {len(codes)}: killed {killed}, survived {len(survivors)} "
        f"({len(survivors) - len(live) - len(stale)} listed as equivalent), "
        f"not run {len(not_run)}, other (timeout, no tests) {len(other)}"
    )
    print(f"mutation score {score:.1%} (killed / (killed + survivors not listed as equivalent))")
    if live:
        print("survivors:")
        print("\n".join(live))
    if stale:
        print("stale entries in scripts/mutation_equivalent.toml:")
        print("\n".join(stale))
    return 1 if live or stale else 0


if __name__ == "__main__":
    sys.exit(main())
