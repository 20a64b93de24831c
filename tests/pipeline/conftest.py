from __future__ import annotations

from pathlib import Path

import pytest

from hybridrec.testing import fakes

CONFIG = """
[generator]
plugin = "fake-gen"
[fine_tuner]
plugin = "fake-ft"
[knowledge_store]
plugin = "fake-store"
[update_policy]
plugin = "hybrid"
[executor]
plugin = "local"
options = {{ batch_size = 16 }}
[serving]
backend = "{backend}"
k = 5
"""


@pytest.fixture
def fake_plugins(hybridrec_plugin):
    hybridrec_plugin(fakes, "test-fakes")
    return fakes


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(CONFIG.format(backend="sqlite"))
    return path
