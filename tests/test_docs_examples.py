"""Every Python example in README.md and docs/*.md runs here: one test per ```python block.

Sybil finds the blocks. The examples of one document share a namespace and run in the document's
order, in a temporary directory of the document's own, so a later block may use what an earlier one
built. Blocks tagged ```bash, ```console or ```text are shown, not run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.example import Example
from sybil.parsers.markdown import PythonCodeBlockParser

from lrkit.spec import registry

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
#: Fence languages that are shown and not run.
NOT_RUN = {"bash", "console", "text"}
FENCE = re.compile(r"^ *```(?P<language>[^`\s]*)", re.MULTILINE)

EXAMPLES: list[Example] = [e for path in DOCUMENTS for e in Sybil(parsers=[PythonCodeBlockParser()]).parse(path)]

# Per document path: how many of its examples have run, its working directory, the first that failed.
_done: dict[str, int] = {}
_directory: dict[str, Path] = {}
_failed: dict[str, Example] = {}


@pytest.fixture(autouse=True, scope="module")
def _registry_as_found() -> Iterator[None]:
    """The guide registers its own spec types (as it teaches); the test files run after it in the same
    process (xdist's loadfile) see the registry as it was, the built-in catalog."""
    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


def _where(example: Example) -> str:
    return f"{Path(example.path).relative_to(ROOT).as_posix()}:{example.line}"


@pytest.mark.parametrize("example", EXAMPLES, ids=_where)
def test_example_runs(
    example: Example, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs ``example``, after any examples before it in its document that have not run yet."""
    path = example.path
    if path not in _directory:
        _directory[path] = tmp_path_factory.mktemp(Path(path).stem)
    monkeypatch.chdir(_directory[path])
    ordered = [e for e in EXAMPLES if e.path == path]
    for index in range(_done.get(path, 0), ordered.index(example) + 1):
        if path in _failed:
            pytest.fail(f"not run: the example at {_where(_failed[path])} before it failed")
        try:
            ordered[index].evaluate()
        except BaseException:
            _failed[path] = ordered[index]
            raise
        _done[path] = index + 1


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_code_block_says_whether_it_runs(path: Path) -> None:
    """A block tagged ```py or left untagged would silently not run: each is python or one of NOT_RUN."""
    text = path.read_text(encoding="utf-8")
    openings = list(FENCE.finditer(text))[::2]
    lines_and_languages = [(text.count("\n", 0, m.start()) + 1, m["language"]) for m in openings]
    assert [(line, tag) for line, tag in lines_and_languages if tag not in {"python", *NOT_RUN}] == []
    python_blocks = sum(tag == "python" for _, tag in lines_and_languages)
    assert sum(e.path == str(path) for e in EXAMPLES) == python_blocks


def test_examples_are_found_in_the_readme_and_the_guide() -> None:
    assert any(e.path == str(ROOT / "README.md") for e in EXAMPLES)
    assert len({e.path for e in EXAMPLES}) >= 7
