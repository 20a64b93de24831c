"""A state file with a malformed entry, damaged manifests, repair with rollback targets, and the
versions killed updates leave (issue 15)."""

from __future__ import annotations

import json
import shutil
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec.artifacts import MANIFEST, ArtifactStore, forget_verified, verify
from hybridrec.cli import main
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.errors import CorruptArtifactError
from hybridrec.generation import all_contexts
from hybridrec.types import UTC
from hybridrec.workspace import Workspace, entry_problem

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace after three updates, built once for the module (tests work on copies)."""
    from hybridrec.plugins import register_plugin, unregister_plugin
    from hybridrec.testing import fakes

    tmp = tmp_path_factory.mktemp("state-damage")
    config = tmp / "pipeline.toml"
    config.write_text('[generator]\nplugin = "fake-gen"\n[fine_tuner]\nplugin = "fake-ft"\n'
                      '[knowledge_store]\nplugin = "fake-store"\n[serving]\nbackend = "sqlite"\nk = 5\n')
    name = register_plugin(fakes, "state-damage-fakes")
    try:
        ws = Workspace.init(tmp / "ws", load_config(config))
        run_update(ws, fakes.write_log(tmp / "jan.csv", JAN, 31), now=FEB)
        run_update(ws, fakes.write_log(tmp / "feb.csv", FEB, 3, seed=1), now=datetime(2000, 2, 4, tzinfo=UTC))
        run_update(ws, fakes.write_log(tmp / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2),
                   now=datetime(2000, 2, 7, tzinfo=UTC))
    finally:
        unregister_plugin(name)
    return ws.root


def three_updates(tmp_path: Path, built: Path) -> Workspace:
    shutil.copytree(built, tmp_path / "ws")
    return Workspace(tmp_path / "ws")


def served(ws: Workspace) -> np.ndarray:
    return ws.lookup_batch(all_contexts(len(ws.catalog())), 5).ids


def _edit(change: Any) -> Any:
    def edit(state: dict[str, Any]) -> dict[str, Any]:
        change(state)
        return state
    return edit


ENTRY_DAMAGE = {
    "table-not-an-id": _edit(lambda s: s["current"].update(table=5)),
    "table-escapes": _edit(lambda s: s["current"].update(table="../../other/tables/v000001-abcd")),
    "data-not-a-list": _edit(lambda s: s["current"].update(data=7)),
    "data-names-a-path": _edit(lambda s: s["current"]["data"].append("/etc/passwd")),
    "held-not-a-list": _edit(lambda s: s["current"].update(held_adapters=5)),
    "clock-not-a-time": _edit(lambda s: s["current"].update(data_until="garbage")),
    "clock-a-number": _edit(lambda s: s["current"].update(updated_at=5)),
    "no-current-but-history": _edit(lambda s: s.update(current=None)),
    "history-entry-damaged": _edit(lambda s: s["history"][0].update(adapter="v1-XYZ")),
    "data-without-catalog": _edit(lambda s: s["current"].update(catalog=None)),
    "drift-not-an-object": _edit(lambda s: s["current"].update(drift=[1])),
}


def test_entry_problem_accepts_what_updates_write(fake_plugins: Any, tmp_path: Path, built: Path) -> None:
    ws = three_updates(tmp_path, built)
    data = ws.pointer.read_all()
    for entry in [data["current"], *data["history"]]:
        assert entry_problem(entry) is None
    assert entry_problem({}) is None


@pytest.fixture(scope="module")
def good_state(built: Path) -> dict[str, Any]:
    return dict(json.loads((built / "state").read_text()))


@pytest.mark.parametrize("damage", list(ENTRY_DAMAGE), ids=str)
def test_every_malformed_entry_is_a_damaged_state(
    damage: str, good_state: dict[str, Any], tmp_path: Path
) -> None:
    from hybridrec.artifacts import Pointer

    path = tmp_path / "state"
    path.write_text(json.dumps(ENTRY_DAMAGE[damage](json.loads(json.dumps(good_state)))))
    with pytest.raises(CorruptArtifactError, match=f"hybridrec repair {tmp_path}"):
        Pointer(path, check=entry_problem).read_all()


@pytest.mark.parametrize("damage", ["table-escapes", "no-current-but-history", "clock-not-a-time"])
def test_a_malformed_state_entry_names_the_repair_command_and_repair_restores_rollback(
    damage: str, fake_plugins: Any, tmp_path: Path, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = three_updates(tmp_path, built)
    good = json.loads(ws.pointer.path.read_text())
    expected = served(ws)
    tables = [good["current"]["table"], *(h["table"] for h in reversed(good["history"]))]
    ws.pointer.path.write_text(json.dumps(ENTRY_DAMAGE[damage](json.loads(json.dumps(good)))))
    later = tmp_path / "later.csv"
    fake_plugins.write_log(later, datetime(2000, 2, 7, tzinfo=UTC), 2, seed=4)
    for command in (["status", str(ws.root)], ["lookup", str(ws.root), "0", "1"],
                    ["rollback", str(ws.root)], ["update", str(ws.root), "--data", str(later), "--now", "2000-02-10"]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2, command
        err = capsys.readouterr().err
        assert "Traceback" not in err and f"hybridrec repair {ws.root}" in err, (command, err)
    main(["repair", str(ws.root)])
    capsys.readouterr()
    repaired = Workspace(ws.root)
    np.testing.assert_array_equal(served(repaired), expected)  # the same table serves again
    assert repaired.status()["ok"]
    # every earlier table is a rollback target again
    for table in tables[1:]:
        assert Workspace(ws.root).rollback()["table"] == table


def test_repair_serves_what_the_newest_table_was_built_from(
    fake_plugins: Any, tmp_path: Path, built: Path
) -> None:
    """An adapter committed by a killed update (never promoted) is not what repair serves."""
    ws = three_updates(tmp_path, built)
    entry = ws.current()
    assert entry is not None
    orphan = ws.store.stage("adapters")
    (orphan.path / "adapter").mkdir()
    (orphan.path / "adapter" / "adapter.json").write_text("{}")
    orphan_id = ws.store.commit(orphan, {"status": "ok"}).id
    ws.pointer.path.write_text("{")
    rebuilt = Workspace(ws.root).repair()
    assert rebuilt["table"] == entry["table"] and rebuilt["adapter"] == entry["adapter"] != orphan_id
    assert rebuilt["knowledge"] == entry["knowledge"] and rebuilt["data"] == entry["data"]


@pytest.mark.parametrize("edit", ["backend", "adapter", "status", "files-escape"])
def test_an_edited_manifest_fails_verification(
    edit: str, fake_plugins: Any, tmp_path: Path, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Manifests carry their own checksum: one changed value is damage, not a new truth."""
    ws = three_updates(tmp_path, built)
    entry = ws.current()
    assert entry is not None
    path = ws.store.get("tables", entry["table"]).path / MANIFEST
    manifest = json.loads(path.read_text())
    if edit == "files-escape":
        manifest["files"]["../../../state"] = {"bytes": 1, "sha256": "0" * 64}
    else:
        manifest[edit] = "v000001-00000000" if edit == "adapter" else "other"
    forget_verified()
    path.write_text(json.dumps(manifest))
    with pytest.raises(CorruptArtifactError):
        verify(path.parent)
    with pytest.raises(SystemExit) as exit_info:
        main(["status", str(ws.root)])
    assert exit_info.value.code == 1 and entry["table"] in capsys.readouterr().out


def test_versions_a_killed_update_committed_are_collected_by_the_next(
    fake_plugins: Any, tmp_path: Path, built: Path
) -> None:
    ws = three_updates(tmp_path, built)
    orphans = []
    for kind in ("adapters", "knowledge", "tables"):
        staging = ws.store.stage(kind)
        (staging.path / "f").write_text("left by a killed update")
        orphans.append(ws.store.commit(staging, {"status": "ok"}).id)
    later = fake_plugins.write_log(tmp_path / "apr.csv", datetime(2000, 2, 7, tzinfo=UTC), 3, seed=5)
    run_update(ws, later, now=datetime(2000, 2, 10, tzinfo=UTC))
    left = {v.id for kind in ("adapters", "knowledge", "tables") for v in ws.store.versions(kind)}
    assert not left & set(orphans)
    named = ws.referenced()
    assert left <= named, left - named  # nothing on disk that no entry names
    for table in [h["table"] for h in ws.pointer.read_all()["history"]][-ws.config.serving.keep_versions:]:
        assert table in left  # rollback targets stay


def test_staging_folders_are_private_while_written(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    staging = store.stage("tables")
    assert stat.S_IMODE(staging.path.stat().st_mode) == 0o700
    (staging.path / "table.sqlite").write_text("user ids")
    version = store.commit(staging, {})
    assert stat.S_IMODE(version.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((version.path / "table.sqlite").stat().st_mode) == 0o600


def test_a_deleted_served_table_falls_back_and_an_update_does_not_build_on_it(
    fake_plugins: Any, tmp_path: Path, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = three_updates(tmp_path, built)
    entry, history = ws.current(), ws.pointer.read_all()["history"]
    assert entry is not None
    shutil.rmtree(ws.store.get("tables", entry["table"]).path)
    fresh = Workspace(ws.root)
    assert served(fresh).shape[0] > 0 and fresh.served_table == history[-1]["table"]
    assert fresh.serving_problem and "missing" in fresh.serving_problem
    with pytest.raises(SystemExit) as exit_info:
        main(["status", str(ws.root)])
    assert exit_info.value.code == 1
    later = fake_plugins.write_log(tmp_path / "apr.csv", datetime(2000, 2, 7, tzinfo=UTC), 3, seed=5)
    with pytest.raises(SystemExit) as exit_info:
        main(["update", str(ws.root), "--data", str(later), "--now", "2000-02-10"])
    assert exit_info.value.code == 2 and "rollback" in capsys.readouterr().err
    assert Workspace(ws.root).current() == entry  # nothing promoted
    main(["rollback", str(ws.root)])
    main(["update", str(ws.root), "--data", str(later), "--now", "2000-02-10"])
    assert Workspace(ws.root).status()["ok"]


FOLDERS = {"catalog": "catalog", "data": "data", "adapter": "adapters", "knowledge": "knowledge",
           "table": "tables"}


def _largest(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST),
               key=lambda p: p.stat().st_size)


DAMAGE = {
    "truncate-file": lambda f: _largest(f).write_bytes(_largest(f).read_bytes()[:7]),
    "delete-file": lambda f: _largest(f).unlink(),
    "same-size-zeros": lambda f: _largest(f).write_bytes(bytes(_largest(f).stat().st_size)),
    "garbage-manifest": lambda f: (f / MANIFEST).write_text("{garbage"),
    "manifest-not-an-object": lambda f: (f / MANIFEST).write_text("[]"),
    "delete-manifest": lambda f: (f / MANIFEST).unlink(),
    "delete-folder": lambda f: shutil.rmtree(f),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("kind", list(FOLDERS))
def test_every_kind_of_damage_to_every_artifact_is_reported_and_never_served(
    kind: str, damage: str, tmp_path: Path, built: Path
) -> None:
    ws = three_updates(tmp_path, built)
    entry = ws.current()
    assert entry is not None
    expected_earlier = ws.pointer.read_all()["history"][-1]["table"]
    version = entry["data"][-1] if kind == "data" else entry[kind]
    forget_verified()
    DAMAGE[damage](ws.store.kind_dir(FOLDERS[kind]) / version)
    fresh = Workspace(ws.root)
    problems = fresh.status()["problems"]
    assert any(version in p for p in problems), problems
    if kind == "table":  # the damaged table is never read: the earlier one serves, with a reason
        assert served(fresh).shape[0] > 0
        assert fresh.served_table == expected_earlier and fresh.serving_problem
    if kind == "catalog":  # descriptions come from the catalog: lookups name the damage
        with pytest.raises(CorruptArtifactError):
            fresh.catalog()


def test_a_state_reset_to_empty_loses_no_data(fake_plugins: Any, tmp_path: Path, built: Path) -> None:
    """A valid but empty state (an edited or restored file) starts a new history, but garbage
    collection never deletes the older data, so `repair` can adopt it again."""
    ws = three_updates(tmp_path, built)
    data = list(ws.current()["data"])  # type: ignore[index]
    ws.pointer.path.write_text(json.dumps({"current": None, "history": []}))
    later = fake_plugins.write_log(tmp_path / "apr.csv", datetime(2000, 2, 7, tzinfo=UTC), 3, seed=5)
    run_update(Workspace(ws.root), later, now=datetime(2000, 2, 10, tzinfo=UTC))
    assert set(data) <= {v.id for v in ws.store.versions("data")}


def test_a_damaged_history_entry_stops_updates_and_status_but_not_lookups(
    fake_plugins: Any, tmp_path: Path, built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = three_updates(tmp_path, built)
    expected = served(ws)
    state = json.loads(ws.pointer.path.read_text())
    state["history"][0]["table"] = "../elsewhere"
    ws.pointer.path.write_text(json.dumps(state))
    np.testing.assert_array_equal(served(Workspace(ws.root)), expected)  # serving goes on
    later = fake_plugins.write_log(tmp_path / "apr.csv", datetime(2000, 2, 7, tzinfo=UTC), 3, seed=5)
    for command in (["status", str(ws.root)],
                    ["update", str(ws.root), "--data", str(later), "--now", "2000-02-10"]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 2 and "hybridrec repair" in capsys.readouterr().err
    assert json.loads(ws.pointer.path.read_text()) == state  # nothing promoted
