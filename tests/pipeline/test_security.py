"""No path escapes from the ``state`` file, and user data is created owner-only (issue 15)."""

from __future__ import annotations

import json
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hybridrec.artifacts import check_version_id
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.errors import CorruptArtifactError, HybridrecError
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


def updated(tmp_path: Path, config_file: Path, fakes: Any, name: str = "ws") -> Workspace:
    ws = Workspace.init(tmp_path / name, load_config(config_file))
    log = fakes.write_log(tmp_path / f"{name}-jan.csv", JAN, 31)
    bad = tmp_path / f"{name}-bad.csv"
    bad.write_text(log.read_text() + "u1,i3,not-a-time,5,a|b\n")
    run_update(ws, bad, now=FEB)
    return ws


@pytest.mark.parametrize("bad", [
    "../../other/tables/v000001-abcd", "v000001-abcd/../../x", "/etc/passwd", "v1-XYZ", "", 7, None,
    "v000001-abcd\n",
])
def test_malformed_version_ids_are_refused(bad: Any) -> None:
    with pytest.raises(CorruptArtifactError):
        check_version_id(bad)


def test_a_state_naming_another_workspace_is_not_served(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = updated(tmp_path, config_file, fake_plugins)
    other = updated(tmp_path, config_file, fake_plugins, name="other")
    data = json.loads(ws.pointer.path.read_text())
    escape = f"../../other/tables/{other.current()['table']}"  # type: ignore[index]
    data["current"]["table"] = escape
    ws.pointer.path.write_text(json.dumps(data))
    fresh = Workspace(ws.root)
    with pytest.raises(HybridrecError):
        fresh.lookup(0, 1)


def test_user_data_files_are_owner_only(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = updated(tmp_path, config_file, fake_plugins)
    entry = ws.current()
    assert entry is not None
    files = [
        ws.quarantine_path,
        ws.root / "ledger.jsonl",
        ws.root / "state",
        ws.store.get("tables", entry["table"]).path / "table.sqlite",
        *(ws.store.get("data", v).path / "interactions.npz" for v in entry["data"]),
    ]
    assert ws.quarantine_path.read_text().strip()
    for path in files:
        assert path.is_file(), path
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
