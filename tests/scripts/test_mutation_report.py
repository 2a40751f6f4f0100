"""scripts/mutation_report.py: a survivor's file:line is found in its own function, a method's in its own class."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "mutation_report.py"

SOURCE = """class First:
    def phases(self, until):
        if until is not None and start >= until:
            return 1


class Second:
    def phases(self, until):
        x = 0
        if until is not None and start >= until:
            return 2


def phases(until):
    if until is not None and start >= until:
        return 3
"""


@pytest.fixture(scope="module")
def report():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("mutation_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_mutmut(folder: Path, source: str) -> str:
    """A ``mutmut`` whose ``show`` prints one diff of ``source``'s comparison line, as mutmut 3 prints it."""
    script = folder / "mutmut"
    script.write_text(
        "#!/bin/sh\n"
        f"echo '--- {source}'\necho '+++ {source}'\necho '@@ -2,3 +2,3 @@'\n"
        "echo '-        if until is not None and start >= until:'\n"
        "echo '+        if until is not None and start > until:'\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("pkg.mod.xǁFirstǁphases__mutmut_4", 3),
        ("pkg.mod.xǁSecondǁphases__mutmut_4", 10),
        ("pkg.mod.x_phases__mutmut_4", 15),
    ],
)
def test_the_line_is_the_first_match_after_the_functions_own_def(report, tmp_path, monkeypatch, name, line):
    (tmp_path / "mod.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    where, added = report.change_of(fake_mutmut(tmp_path, "mod.py"), name)
    assert where == f"mod.py:{line}"
    assert added == "if until is not None and start > until:"


def write_run(folder: Path, codes: dict[str, int | None], hashes: dict[str, str]) -> Path:
    """A mutmut ``mutants/`` folder holding one module's meta file."""
    meta = folder / "mutants" / "src" / "mod.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes, "hash_by_function_name": hashes}))
    return folder / "mutants"


def test_an_earlier_run_fills_in_only_the_unrun_mutants_of_unchanged_functions(report, tmp_path):
    earlier = write_run(
        tmp_path / "complete",
        {"m.x_f__mutmut_1": 0, "m.x_f__mutmut_2": 1, "m.x_g__mutmut_1": 1, "m.x_h__mutmut_1": 0},
        {"x_f": "aa", "x_g": "bb", "x_h": "cc"},
    )
    latest = write_run(
        tmp_path / "survivors",
        {"m.x_f__mutmut_1": 1, "m.x_f__mutmut_2": None, "m.x_g__mutmut_1": None, "m.x_h__mutmut_1": None},
        {"x_f": "aa", "x_g": "bb", "x_h": "edited"},
    )
    assert report.combined(latest, [earlier]) == {
        "m.x_f__mutmut_1": 1,  # the latest run's own result wins
        "m.x_f__mutmut_2": 1,  # not run now, same function: the earlier result
        "m.x_g__mutmut_1": 1,
        "m.x_h__mutmut_1": None,  # h was edited since: its earlier result no longer counts
    }
    assert report.combined(latest, []) == report.run_of(latest)[0]
