"""docs/python-api.md runs as written, and the package's public API is declared."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import hybridrec

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "python-api.md"


def test_the_python_api_walkthrough_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 2  # the walk-through, then the preset, in the walk-through's namespace
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    namespace = {"__name__": "python_api_doc"}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "('regenerate_table', 'ok')" in out and "'mode': 'delta'" in out
    assert "markov-all" in out and "popularity" in out


def test_every_name_in_hybridrec_all_resolves() -> None:
    for name in hybridrec.__all__:
        assert getattr(hybridrec, name) is not None, name


def test_every_public_module_declares_all() -> None:
    missing = []
    for path in sorted((ROOT / "src" / "hybridrec").rglob("*.py")):
        parts = path.relative_to(ROOT / "src").with_suffix("").parts
        if parts[-1] == "__main__" or any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        name = ".".join(p for p in parts if p != "__init__")
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(name)
            continue
        for symbol in exported:
            if not hasattr(module, symbol):
                importlib.import_module(f"{name}.{symbol}")  # a submodule listed by name
    assert not missing, f"modules without __all__: {missing}"
