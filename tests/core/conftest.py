"""Fixtures shared by the core tests."""

import os
import tomllib
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "third_party_plugin"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """The example package (examples/third_party_plugin) as a distribution on a path of its own,
    without installing it into the project's environment: its source folder plus a
    ``.dist-info`` with the metadata and the entry points of its ``pyproject.toml``, which
    ``importlib.metadata`` discovers on sys.path. Subprocesses see it through ``PYTHONPATH``."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site"
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    points = ["[hybridrec]", *(f"{k} = {v}" for k, v in project["entry-points"]["hybridrec"].items())]
    (info / "entry_points.txt").write_text("\n".join(points) + "\n")
    paths = [str(site), str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
