"""The snippets of docs/writing-plugins.md and docs/roles.md work as written.

Every ```python block runs, in a fresh subprocess, in an empty folder, with the example plugin of
examples/third_party_plugin visible as an installed distribution (the ``installed`` fixture in
``tests/core/conftest.py``); a block that defines pytest tests (``def test_...`` or a module-level
``Test...`` name) is run by pytest instead and must pass. Markers, an HTML comment on the line
just before a fence:

``<!-- fragment -->``
    the block is deliberately not runnable (a signature listing, part of a method): skipped.
``<!-- file: NAME -->``
    the block's text is written as ``NAME`` into the folder the page's Python blocks run in.

Every ```toml block must parse; a ``pyproject.toml`` must carry what an editable install of the package needs and
match the example package, and a pipeline config must pass ``hybridrec config validate`` (every
plugin name resolves, every option validates).

Every ```toml block of docs/backtest.md is a study file: it must load with
``load_backtest_config`` (what ``hybridrec backtest --config`` reads), which validates every arm,
plugin and option before any data is read.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = (ROOT / "docs" / "writing-plugins.md", ROOT / "docs" / "roles.md")
STUDY_PAGE = ROOT / "docs" / "backtest.md"
EXAMPLE = ROOT / "examples" / "third_party_plugin"
MARKER = re.compile(r"<!--\s*(fragment|file:\s*[\w.-]+)\s*-->")
DEFINES_TESTS = re.compile(r"^(def test_\w+|class Test\w+|Test\w+\s*=)", re.M)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def file_name(self) -> str | None:
        if self.marker and self.marker.startswith("file:"):
            return self.marker.split(":", 1)[1].strip()
        return None


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, each with the marker on the line before its fence."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{page.name}:{i + 1}: unclosed code fence"
        before = lines[i - 1].strip() if i else ""
        found = MARKER.fullmatch(before)
        if before.startswith("<!--"):
            assert found, f"{page.name}:{i}: unknown snippet marker {before!r}"
        out.append(Block(page, i + 1, fence.group(1), "\n".join(lines[i + 1 : end]) + "\n",
                         found.group(1) if found else None))
        i = end + 1
    return out


ALL = [b for page in PAGES for b in blocks(page)]
PYTHON = [b for b in ALL if b.lang == "python"]
RUNNABLE = [b for b in PYTHON if b.marker != "fragment"]
TOML = [b for b in ALL if b.lang == "toml"]


def test_each_page_has_runnable_python_and_fragments_are_marked_not_guessed() -> None:
    for page in PAGES:
        assert any(b.page == page for b in RUNNABLE), f"{page.name}: no runnable python block found"
    # a fragment marker anywhere but before a block would silently do nothing
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        assert text.count("<!-- fragment -->") == sum(
            1 for b in ALL if b.page == page and b.marker == "fragment"
        ), f"{page.name}: a <!-- fragment --> marker is not on the line before a fence"


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_python_snippet_runs(block: Block, installed: None, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for other in ALL:
        if other.page == block.page and other.file_name:
            (work / other.file_name).write_text(other.text, encoding="utf-8")
    if DEFINES_TESTS.search(block.text):
        script = work / "test_snippet.py"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        script = work / "snippet.py"
        command = [sys.executable, str(script)]
    script.write_text(block.text, encoding="utf-8")
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (
        f"{block.id}: the snippet failed (exit {done.returncode})\n{done.stdout}\n{done.stderr}"
    )


@pytest.mark.parametrize("block", TOML, ids=[b.id for b in TOML])
def test_toml_snippet_parses_and_validates(block: Block, installed: None, tmp_path: Path) -> None:
    data = tomllib.loads(block.text)
    if "project" in data:
        example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
        assert data["build-system"]["build-backend"] and data["build-system"]["requires"]
        project = data["project"]
        for key in ("name", "version", "entry-points"):
            assert project[key] == example["project"][key], f"{block.id}: [project] {key}"
        assert data["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
        for module in project["entry-points"]["hybridrec"].values():
            assert (EXAMPLE / "src" / module / "__init__.py").is_file(), module
        return
    config = tmp_path / (block.file_name or "snippet.toml")
    config.write_text(block.text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "hybridrec", "config", "validate", str(config)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"{block.id}: invalid config\n{done.stdout}\n{done.stderr}"
    for role, table in data.items():
        shown = next(line for line in done.stdout.splitlines() if line.split()[:1] == [role])
        assert table["plugin"] in shown.split(), f"{block.id}: [{role}] resolved to {shown!r}"


STUDIES = [b for b in blocks(STUDY_PAGE) if b.lang == "toml"]


def test_the_study_page_documents_a_free_named_arm() -> None:
    assert any(isinstance(tomllib.loads(b.text).get("arms"), dict) for b in STUDIES)


@pytest.mark.parametrize("block", STUDIES, ids=[b.id for b in STUDIES])
def test_study_snippet_loads_and_validates(block: Block, tmp_path: Path) -> None:
    from hybridrec.backtest.config import load_backtest_config

    path = tmp_path / (block.file_name or "study.toml")
    path.write_text(block.text, encoding="utf-8")
    config = load_backtest_config(path)
    declared = tomllib.loads(block.text).get("arms")
    if isinstance(declared, dict):
        assert list(config.arms) == list(declared), block.id
        assert [p.name for p in config.arm_plans()] == list(declared)
