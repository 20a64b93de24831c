"""``hybridrec update --data`` reads through the ``file`` dataset plugin: one ingest path."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.plugins import registry
from hybridrec.types import UTC
from hybridrec.workspace import Workspace


def test_update_ingests_through_the_file_dataset_plugin(
    fake_plugins: Any, tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cls = registry().get("dataset", "file")
    real_load = cls.load
    seen: list[dict[str, Any]] = []

    def spy(self: Any, **kwargs: Any) -> Any:
        seen.append(self.options.model_dump())
        return real_load(self, **kwargs)

    monkeypatch.setattr(cls, "load", spy)
    bad = ["u1,i1,not-a-time,5,Action"]
    log = fake_plugins.write_log(tmp_path / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31, extra_rows=bad)
    ws = Workspace.init(tmp_path / "ws", load_config(config_file, environ={}))
    report = run_update(ws, log, now=datetime(2000, 2, 1, tzinfo=UTC))
    assert len(seen) == 1 and seen[0]["interactions"] == log and seen[0]["name"] == "workspace"
    assert report.rows_quarantined >= 1
    quarantined = ws.quarantine_path.read_text()
    assert "timestamp" in quarantined and str(log) in quarantined
