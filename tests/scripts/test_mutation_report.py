"""scripts/mutation_report.py: a survivor's file:line is found in its own function, a method's in its own class."""

from __future__ import annotations

import importlib.util
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
