"""Inputs that used to get past the checks: symbolic links planted at workspace files, folder
names that are URI syntax, oversized ids, deeply nested TOML, booleans as integers, and a
quarantine file pointed at an input."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.errors import ConfigError
from hybridrec.testing.cli import run_cli
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


def _served(fakes: Any, root: Path, config_file: Path, tmp_path: Path, seed: int = 0) -> Workspace:
    ws = Workspace.init(root, load_config(config_file))
    run_update(ws, fakes.write_log(tmp_path / f"{root.name}.csv", JAN, 31, seed=seed), now=FEB)
    return ws


@pytest.mark.parametrize("name", ["quarantine.jsonl", "ledger.jsonl", ".lock"])
def test_no_write_goes_through_a_symlink_planted_in_the_workspace(
        name: str, fake_plugins: Any, tmp_path: Path, config_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ws = _served(fake_plugins, tmp_path / "ws", config_file, tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    os.chmod(outside, 0o644)
    target = ws.root / name
    if target.exists():
        target.unlink()
    target.symlink_to(outside)
    log = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1,
                                 extra_rows=["u1,i1,not-a-time,4,Action"])
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-04")
    assert code == 2 and "is a symbolic link" in err and "Traceback" not in err
    assert outside.read_text() == "precious\n" and (outside.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize("name", ["alias%42", "a#b", "a?b", "p%41", "a&b=c", "with space", "ünïcødé"])
def test_folder_names_that_are_uri_syntax_serve_their_own_table(
        name: str, fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    import numpy as np

    from hybridrec.generation import all_contexts

    # a sibling whose name the escape would decode to, with other data
    other = _served(fake_plugins, tmp_path / "aliasB", config_file, tmp_path, seed=7)
    ws = _served(fake_plugins, tmp_path / name, config_file, tmp_path)
    before = set(tmp_path.iterdir())
    contexts = all_contexts(len(ws.catalog()))
    mine = Workspace(ws.root).lookup_batch(contexts, 5).ids
    theirs = Workspace(other.root).lookup_batch(contexts, 5).ids
    assert not np.array_equal(mine, theirs)  # the two tables differ ...
    table = ws.store.get("tables", ws.current()["table"]).path  # type: ignore[index]
    from hybridrec.serving import get_backend

    own = get_backend("sqlite").reader(table).lookup_batch(contexts, 5).ids
    np.testing.assert_array_equal(mine, own)  # ... and each folder serves its own
    assert set(tmp_path.iterdir()) == before  # no stray file outside the workspaces


def test_bad_numbers_and_nesting_get_errors_not_tracebacks(
        fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _served(fake_plugins, tmp_path / "ws", config_file, tmp_path)
    code, _, err = run_cli(capsys, "lookup", str(ws.root), "99999999999999999999", "1")
    assert code == 2 and "must hold cluster ids" in err
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    for command in (("config", "validate", str(deep)), ("init", str(tmp_path / "new"), "--config", str(deep))):
        code, _, err = run_cli(capsys, *command)
        assert code == 2 and "nested too deeply" in err, command
    boolean = tmp_path / "k.toml"
    boolean.write_text("[serving]\nk = true\n")
    code, _, err = run_cli(capsys, "config", "validate", str(boolean))
    assert code == 2 and "serving.k" in err


def test_the_quarantine_file_may_not_be_an_input(tmp_path: Path) -> None:
    from hybridrec.plugins import build

    data, items = tmp_path / "events.csv", tmp_path / "items.csv"
    data.write_text("user,item,timestamp\nu,i,1\n")
    items.write_text("item,categories\ni,A\n")
    for target in (data, items):
        with pytest.raises(ConfigError, match="must not be the"):
            build("dataset", {"plugin": "file", "options": {
                "interactions": str(data), "items": str(items), "quarantine": str(target)}})
    assert data.read_text().startswith("user,item")


@pytest.mark.parametrize("how", ["copy of an older version", "link outside the workspace"])
def test_a_table_folder_that_is_not_its_version_is_never_served(
        how: str, fake_plugins: Any, tmp_path: Path, config_file: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    from datetime import timedelta

    ws = _served(fake_plugins, tmp_path / "ws", config_file, tmp_path)
    first = ws.current()["table"]  # type: ignore[index]
    run_update(ws, fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=3), now=FEB + timedelta(days=3))
    served = ws.current()["table"]  # type: ignore[index]
    assert served != first
    folder = ws.store.get("tables", served).path
    older = ws.store.get("tables", first).path
    shutil.rmtree(folder)
    if how.startswith("copy"):
        shutil.copytree(older, folder)
    else:
        outside = tmp_path / "elsewhere"
        shutil.copytree(older, outside)
        folder.symlink_to(outside, target_is_directory=True)
    code, out, err = run_cli(capsys, "status", str(Workspace(ws.root).root))
    assert code == 1, out + err
    assert ("not " + served) in out + err or "link" in out + err


def test_a_long_running_server_stops_serving_a_table_damaged_on_disk(
        fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    import time
    from datetime import timedelta

    config = load_config(config_file, overrides=["serving.reverify_seconds=0.01"])
    ws = Workspace.init(tmp_path / "ws", config)
    run_update(ws, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    first = ws.current()["table"]  # type: ignore[index]
    run_update(ws, fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=3), now=FEB + timedelta(days=3))
    served = ws.current()["table"]  # type: ignore[index]
    server = Workspace(ws.root)  # a serving process
    assert server.served_reader()[0] == served
    table = next(p for p in ws.store.get("tables", served).path.iterdir() if p.name.endswith(".sqlite"))
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    time.sleep(0.05)
    version, _ = server.served_reader()
    assert version == first and server.serving_problem is not None
    assert "no longer match" in server.serving_problem


def test_a_state_file_emptied_to_an_empty_object_is_damaged_not_a_fresh_start(
        fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _served(fake_plugins, tmp_path / "ws", config_file, tmp_path)
    (ws.root / "state").write_text("{}")
    code, out, err = run_cli(capsys, "status", str(ws.root))
    assert code != 0 and "damaged" in out + err
    log = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-04")
    assert code == 2 and "hybridrec repair" in err  # never a new history that forgets January


def test_repair_rebuilds_a_damaged_catalog_from_the_first_updates_file(
        fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np

    ws = _served(fake_plugins, tmp_path / "ws", config_file, tmp_path)
    first = tmp_path / "ws.csv"  # the file the first update read
    served = ws.current()
    assert served is not None
    contexts = np.array([[0, 1], [2, 3], [4, 1]])
    lists = ws.lookup_batch(contexts, 5).ids
    catalog = ws.store.get("catalog", served["catalog"]).path / "catalog.json"
    catalog.write_text(catalog.read_text().replace("Action", "Actiom"))
    (ws.root / "state").write_text("{")
    code, _, err = run_cli(capsys, "repair", str(ws.root))
    assert code == 2 and "--catalog-from" in err
    # a file that gives another catalog is refused, and nothing is written
    other = tmp_path / "other.csv"
    other.write_text(first.read_text().replace("Action", "Thriller|Action"))
    before = (ws.root / "state").read_text()
    code, _, err = run_cli(capsys, "repair", str(ws.root), "--catalog-from", str(other))
    assert code == 2 and "is not the one this workspace's versions were built for" in err
    assert (ws.root / "state").read_text() == before
    # the first update's file gives the same catalog back: the table, adapter and data serve again
    code, out, err = run_cli(capsys, "repair", str(ws.root), "--catalog-from", str(first))
    assert code == 0, err
    assert "rebuilt from" in out
    ws = Workspace(ws.root)
    now = ws.current()
    assert now is not None and now["table"] == served["table"] and now["data"] == served["data"]
    assert now["catalog"] != served["catalog"] and ws.catalog().hash == ws.store.get(
        "catalog", now["catalog"]).manifest["hash"]
    np.testing.assert_array_equal(ws.lookup_batch(contexts, 5).ids, lists)
    code, _, err = run_cli(capsys, "status", str(ws.root))
    assert code == 0, err
    log = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-04")
    assert code == 0, err
    assert len(Workspace(ws.root).current()["data"]) == 2  # type: ignore[index]  # January kept


def test_repair_without_an_intact_catalog_refuses_instead_of_forgetting_the_data(
        fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _served(fake_plugins, tmp_path / "ws", config_file, tmp_path)
    catalog = ws.store.get("catalog", ws.current()["catalog"]).path / "catalog.json"  # type: ignore[index]
    catalog.write_text(catalog.read_text().replace("Action", "Actiom"))
    (ws.root / "state").write_text("{")
    before = (ws.root / "state").read_text()
    code, _, err = run_cli(capsys, "repair", str(ws.root))
    assert code == 2 and "no intact catalog" in err and "1 intact data version" in err
    assert (ws.root / "state").read_text() == before  # nothing written that forgets the data
    log = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-04")
    assert code == 2
