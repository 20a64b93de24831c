from __future__ import annotations

from pathlib import Path

import pytest

from hybridrec.testing import fakes


@pytest.fixture
def fake_plugins(hybridrec_plugin):
    hybridrec_plugin(fakes, "test-fakes")
    return fakes


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(fakes.workspace_config())
    return path
