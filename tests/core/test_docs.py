"""The repository is self-contained: code, docs and tests cite only files that are in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS_PAGE = re.compile(r"\bdocs/[A-Za-z0-9_-]+\.md\b")
OUTSIDE = "DESIGN" + ".md"  # spelled in two parts so this file does not cite it


def _files() -> list[Path]:
    out = [ROOT / "README.md"]
    for top in ("src", "plugins", "tests", "examples", "docs"):
        out += [p for p in (ROOT / top).rglob("*") if p.suffix in {".py", ".md", ".toml"}]
    return out


def test_no_file_cites_a_design_document_outside_the_repository() -> None:
    offenders = [str(p.relative_to(ROOT)) for p in _files() if OUTSIDE in p.read_text(encoding="utf-8")]
    assert not offenders, f"these files cite {OUTSIDE}, which is not in the repository: {offenders}"


def test_every_cited_docs_page_exists() -> None:
    missing = sorted(
        f"{path.relative_to(ROOT)}: {page}"
        for path in _files()
        for page in DOCS_PAGE.findall(path.read_text(encoding="utf-8"))
        if not (ROOT / page).is_file()
    )
    assert not missing, missing
