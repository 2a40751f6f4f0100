"""``make mutate``: mutation testing of the pure and state layers in a scratch copy, then the report.

mutmut generates the mutants of every module in ``[tool.mutmut] source_paths`` before it runs any, which
for all seven modules takes minutes. Naming modules narrows the copy's ``source_paths`` to them, so only
their mutants are generated and run; the tests are the same. The copy (``src``, ``tests`` and
``pyproject.toml``) lives in ``.mutate/`` and is rebuilt on each run, so a test added since the last run
is seen and the working tree is never touched.

    python scripts/mutate.py [--children 2] [--mutmut .venv-mutate/bin/mutmut] [MODULE ...] [-- MUTANT_GLOB ...]

``MODULE`` is a path such as ``src/lrkit/schedules/shapes.py`` or a dotted name such as
``lrkit.schedules.shapes``; it must be one of ``source_paths``. Prints the run time, then
``scripts/mutation_report.py``'s table and survivors; exits with the report's code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import mutation_report  # noqa: E402


def configured_modules(pyproject: Path) -> list[str]:
    """``[tool.mutmut] source_paths`` of ``pyproject``."""
    return list(tomllib.loads(pyproject.read_text())["tool"]["mutmut"]["source_paths"])


def as_path(module: str, known: list[str]) -> str:
    """A module named by path or dotted name, as the path listed in ``source_paths``; errors name it."""
    path = module if module.endswith(".py") else "src/" + module.replace(".", "/") + ".py"
    if path not in known:
        raise SystemExit(f"mutate: MODULE={module!r} is not in [tool.mutmut] source_paths; expected one of {known}")
    return path


def narrowed(pyproject_text: str, modules: list[str]) -> str:
    """``pyproject.toml``'s text with ``[tool.mutmut] source_paths`` listing only ``modules``."""
    listing = "source_paths = [\n" + "".join(f'  "{m}",\n' for m in modules) + "]"
    text, count = re.subn(r"source_paths\s*=\s*\[[^\]]*\]", listing, pyproject_text, count=1)
    if count != 1:
        raise SystemExit("mutate: no `source_paths = [...]` in pyproject.toml's [tool.mutmut]")
    return text


def build_copy(work: Path, modules: list[str]) -> None:
    """A fresh ``work`` folder with ``src``, ``tests`` and a ``pyproject.toml`` narrowed to ``modules``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache")
    for folder in ("src", "tests"):
        shutil.copytree(ROOT / folder, work / folder, ignore=ignore)
    (work / "pyproject.toml").write_text(narrowed((ROOT / "pyproject.toml").read_text(), modules))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: every one in source_paths)")
    parser.add_argument("--children", type=int, default=2, help="mutmut's --max-children (default 2)")
    parser.add_argument("--mutmut", default=str(ROOT / ".venv-mutate/bin/mutmut"), help="the mutmut executable")
    parser.add_argument("--work", type=Path, default=ROOT / ".mutate", help="the scratch copy (default .mutate/)")
    parser.add_argument("--mutants", nargs="*", default=[], help="mutmut's mutant-name globs, to narrow further")
    args = parser.parse_args(argv)
    if args.children < 1:
        parser.error(f"--children must be at least 1, got {args.children}")
    known = configured_modules(ROOT / "pyproject.toml")
    modules = [as_path(m, known) for m in args.modules] or known
    work = args.work.resolve()
    build_copy(work, modules)
    env = {**os.environ, "PYTHONPATH": "src"}
    print(f"mutate: {len(modules)} module(s) in {work}: {', '.join(modules)}", flush=True)
    start = time.monotonic()
    run = subprocess.run(
        [args.mutmut, "run", "--max-children", str(args.children), *args.mutants], cwd=work, env=env, check=False
    )
    minutes, seconds = divmod(round(time.monotonic() - start), 60)
    print(f"mutate: mutmut ran for {minutes} min {seconds} s (exit {run.returncode})", flush=True)
    previous = Path.cwd()
    os.chdir(work)  # `mutmut show` reads the run's own mutants/
    try:
        return mutation_report.main(["--mutants", "mutants", "--mutmut", args.mutmut])
    finally:
        os.chdir(previous)


if __name__ == "__main__":
    sys.exit(main())
