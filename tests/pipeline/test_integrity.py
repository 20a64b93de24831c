"""Verify on open, damaged state, crash-safe init, collection of killed runs' versions (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec.artifacts import forget_verified, verify
from hybridrec.cli import main
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.errors import CorruptArtifactError, HybridrecError
from hybridrec.generation import all_contexts
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)
DRIVER = Path(__file__).with_name("kill_driver.py")


def two_updates(tmp_path: Path, config_file: Path, fakes: Any) -> Workspace:
    """A workspace with two promoted entries (so an earlier table exists)."""
    ws = Workspace.init(tmp_path / "ws", load_config(config_file))
    run_update(ws, fakes.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    feb = fakes.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    return ws


def flip(path: Path, at: int | None = None) -> None:
    """Flip one bit of ``path`` (as another process would: this one forgets what it verified)."""
    forget_verified()
    blob = bytearray(path.read_bytes())
    i = len(blob) // 2 if at is None else at
    blob[i] ^= 0x01
    path.write_bytes(bytes(blob))


def served(ws: Workspace) -> np.ndarray:
    return ws.lookup_batch(all_contexts(len(ws.catalog())), 5).ids


def status_code(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    try:
        main(["status", str(ws.root), "--json"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else {})


def test_a_flipped_table_is_never_served_and_status_fails(
    fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    entry = ws.current()
    assert entry is not None
    history = ws.pointer.read_all()["history"]
    earlier = Workspace(ws.root)
    earlier.pointer.path.write_text(json.dumps({"current": history[-1], "history": []}))
    expected = served(earlier)
    earlier.pointer.path.write_text(json.dumps({"current": entry, "history": history}))

    flip(ws.store.get("tables", entry["table"]).path / "table.sqlite")
    fresh = Workspace(ws.root)
    np.testing.assert_array_equal(served(fresh), expected)  # the previous good table serves
    assert fresh.serving_problem and entry["table"] in fresh.serving_problem
    code, info = status_code(fresh, capsys)
    assert code == 1 and not info["ok"] and any("checksum" in p for p in info["problems"])
    Workspace(ws.root).rollback()
    code, info = status_code(Workspace(ws.root), capsys)
    assert code == 0 and info["ok"]


def test_a_flipped_adapter_is_not_built_upon(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    entry = ws.current()
    assert entry is not None
    adapter = ws.store.get("adapters", entry["adapter"]).path
    target = max((p for p in adapter.rglob("*") if p.is_file() and p.name != "manifest.json"),
                 key=lambda p: p.stat().st_size)
    flip(target)
    later = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2)
    with pytest.raises(CorruptArtifactError, match="checksum"):
        run_update(Workspace(ws.root), later, now=datetime(2000, 2, 7, tzinfo=UTC))
    assert Workspace(ws.root).current() == entry, "nothing built on the damaged adapter was promoted"


def test_flipped_data_and_garbage_manifests_are_errors_not_tracebacks(
    fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    entry = ws.current()
    assert entry is not None
    flip(ws.store.get("data", entry["data"][0]).path / "interactions.npz")
    later = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2)
    with pytest.raises(CorruptArtifactError):
        run_update(Workspace(ws.root), later, now=datetime(2000, 2, 7, tzinfo=UTC))
    code, info = status_code(Workspace(ws.root), capsys)
    assert code == 1 and any(entry["data"][0] in p for p in info["problems"])

    (ws.store.get("tables", entry["table"]).path / "manifest.json").write_text("{garbage")
    fresh = Workspace(ws.root)
    assert served(fresh).shape[0] > 0 and fresh.serving_problem  # an earlier table serves
    code, info = status_code(Workspace(ws.root), capsys)
    assert code == 1


def test_a_damaged_state_names_the_repair_command_and_repair_rebuilds_it(
    fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    expected = served(ws)
    for damage in (b"\x00garbage", b'{"current": [1, 2]}', ws.pointer.path.read_bytes()[:40]):
        ws.pointer.path.write_bytes(damage)
        for command in (["status", str(ws.root)], ["lookup", str(ws.root), "0", "1"], ["rollback", str(ws.root)]):
            with pytest.raises(SystemExit) as exit_info:
                main(command)
            assert exit_info.value.code == 2
            err = capsys.readouterr().err
            assert "Traceback" not in err and f"hybridrec repair {ws.root}" in err
    main(["repair", str(ws.root)])
    assert "rebuilt" in capsys.readouterr().out
    np.testing.assert_array_equal(served(Workspace(ws.root)), expected)
    assert list(ws.root.glob("state.damaged-*"))


def test_a_deleted_state_is_not_a_silent_new_history(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    data = list(ws.current()["data"])  # type: ignore[index]
    ws.pointer.path.unlink()
    later = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2)
    with pytest.raises(CorruptArtifactError, match="hybridrec repair"):
        run_update(Workspace(ws.root), later, now=datetime(2000, 2, 7, tzinfo=UTC))
    Workspace(ws.root).repair()
    assert Workspace(ws.root).current()["data"] == data  # type: ignore[index]
    run_update(Workspace(ws.root), later, now=datetime(2000, 2, 7, tzinfo=UTC))


def test_rollback_skips_a_damaged_entry_and_says_so(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    later = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2)
    run_update(ws, later, now=datetime(2000, 2, 7, tzinfo=UTC))
    history = ws.pointer.read_all()["history"]
    assert len(history) >= 2
    damaged = history[-1]["table"]
    (ws.store.get("tables", damaged).path / "manifest.json").unlink()
    entry = Workspace(ws.root).rollback()
    assert entry["table"] == history[-2]["table"]
    assert any("damaged" in s and damaged in s for s in entry["rollback_skipped"])
    with pytest.raises(HybridrecError, match=r"no previous version|no earlier version"):
        for _ in range(5):
            Workspace(ws.root).rollback()


def test_versions_left_by_a_killed_update_are_collected(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = two_updates(tmp_path, config_file, fake_plugins)
    orphan = ws.store.stage("data")
    (orphan.path / "interactions.npz").write_bytes(b"left by a killed update")
    orphan_id = ws.store.commit(orphan, {"rows": 0}).id
    later = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2)
    run_update(ws, later, now=datetime(2000, 2, 7, tzinfo=UTC))
    assert orphan_id not in {v.id for v in ws.store.versions("data")}
    assert set(ws.current()["data"]) == {v.id for v in ws.store.versions("data")}  # type: ignore[index]


# -- SIGKILL at named points ---------------------------------------------------------------------


def run_driver(point: str, *argv: str) -> int:
    env = {**os.environ, "HYBRIDREC_KILL_AT": point, "HF_HUB_OFFLINE": "1",
           "HYBRIDREC_LOAD_PLUGINS": "datasets,policies,costs,executors"}
    return subprocess.run([sys.executable, str(DRIVER), *argv], env=env, capture_output=True,
                          timeout=120, check=False).returncode


INIT_POINTS = ["init:config.json", "init:state", "init:workspace.json", "init:before-rename", "init:after-rename"]


@pytest.mark.slow
def test_sigkill_during_init_never_leaves_a_stuck_folder(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    for i, point in enumerate(INIT_POINTS):
        root = tmp_path / f"ws{i}"
        assert run_driver(point, "init", str(root), "--config", str(config_file)) == -9, point
        if root.exists():
            Workspace(root).status()  # complete: opens and reports
            assert point == "init:after-rename"
        else:
            Workspace.init(root, load_config(config_file))  # nothing stuck: init works again
        assert Workspace(root).current() is None


UPDATE_POINTS = [*(f"update:commit-{n}" for n in (1, 2, 3, 4)), "update:before-promote", "update:before-gc"]


@pytest.mark.slow
def test_sigkill_at_named_points_of_update(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    import shutil

    base = Workspace.init(tmp_path / "base", load_config(config_file))
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 31, seed=3)
    run_update(base, log, now=FEB)
    old = served(base)
    for i, point in enumerate(UPDATE_POINTS):
        root = tmp_path / f"trial{i}"
        shutil.copytree(base.root, root)
        code = run_driver(point, "update", str(root), "--data", str(feb), "--now", "2000-03-03")
        assert code == -9, point
        ws = Workspace(root)
        assert ws.status()["ok"], point
        ids = served(ws)
        if point != "update:before-gc":
            np.testing.assert_array_equal(ids, old, err_msg=point)  # the old version, whole
        current = ws.current()
        assert current is not None
        for kind, folder in (("catalog", "catalog"), ("table", "tables"), ("adapter", "adapters")):
            verify(ws.store.get(folder, current[kind]).path, deep=True)
        run_update(ws, feb, now=datetime(2000, 3, 3, tzinfo=UTC))  # the next update succeeds
        assert ws.status()["ok"]
        assert set(ws.current()["data"]) == {v.id for v in ws.store.versions("data")}, point  # type: ignore[index]


@pytest.mark.parametrize("kind", ["catalog", "data", "adapter", "knowledge", "table"])
def test_one_flipped_byte_in_any_served_artifact_is_reported(
    kind: str, fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every artifact kind: a flipped byte makes status exit 1, and nothing is built upon it."""
    ws = two_updates(tmp_path, config_file, fake_plugins)
    entry = ws.current()
    assert entry is not None
    folder = {"catalog": "catalog", "data": "data", "adapter": "adapters", "knowledge": "knowledge",
              "table": "tables"}[kind]
    version = entry["data"][-1] if kind == "data" else entry[kind]
    path = ws.store.get(folder, version).path
    target = max((p for p in path.rglob("*") if p.is_file() and p.name != "manifest.json"),
                 key=lambda p: p.stat().st_size)
    flip(target)
    code, info = status_code(Workspace(ws.root), capsys)
    assert code == 1 and any(version in p for p in info["problems"]), info.get("problems")
    later = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 4, tzinfo=UTC), 3, seed=2)
    if kind in ("catalog", "data", "adapter"):  # the next update reads them: it stops
        with pytest.raises(HybridrecError):
            run_update(Workspace(ws.root), later, now=datetime(2000, 2, 7, tzinfo=UTC))
        assert Workspace(ws.root).current() == entry
    elif kind == "knowledge":  # the next update refreshes it: a new snapshot replaces it
        run_update(Workspace(ws.root), later, now=datetime(2000, 2, 7, tzinfo=UTC))
        assert Workspace(ws.root).current()["knowledge"] != version  # type: ignore[index]
        assert status_code(Workspace(ws.root), capsys)[0] == 0


def test_environment_overrides_on_a_workspace_are_named_not_silently_ignored(
    fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = Workspace.init(tmp_path / "ws", load_config(config_file))
    monkeypatch.setenv("HYBRIDREC__UPDATE_POLICY__PLUGIN", "static")
    main(["status", str(ws.root)])
    err = capsys.readouterr().err
    assert "HYBRIDREC__UPDATE_POLICY__PLUGIN not applied" in err and "config.json" in err


def _fork_killed_at(n: int, work: Any) -> bool:
    """Run ``work()`` in a forked child that SIGKILLs itself just before its ``n``-th durable
    file-system step (fsync, replace, rename); True when it was killed, False when it finished."""
    import signal

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            count = [0]
            for name in ("fsync", "replace", "rename"):
                real = getattr(os, name)

                def step(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
                    count[0] += 1
                    if count[0] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return _real(*args, **kwargs)

                setattr(os, name, step)
            work()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def test_sigkill_before_every_durable_step_of_init(tmp_path: Path, config_file: Path, fake_plugins: Any) -> None:
    config = load_config(config_file)
    killed = 0
    for n in range(1, 60):
        root = tmp_path / f"ws{n}"
        if not _fork_killed_at(n, lambda root=root: Workspace.init(root, config)):
            break
        killed += 1
        if root.exists():  # renamed into place: complete
            assert Workspace(root).current() is None and Workspace(root).status()["ok"]
        else:  # nothing stuck: init works again and removes the hidden leftovers
            Workspace.init(root, config)
            assert not list(tmp_path.glob(f".ws{n}.init-*"))
    assert killed >= 8, killed


@pytest.mark.slow
def test_sigkill_before_sampled_durable_steps_of_update(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    """Forked updates killed before every 4th durable step: the old or the new version serves,
    whole, status is ok, and the next update succeeds."""
    import shutil

    base = Workspace.init(tmp_path / "base", load_config(config_file))
    run_update(base, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 31, seed=3)
    old = served(base)
    reference = tmp_path / "reference"
    shutil.copytree(base.root, reference)
    run_update(Workspace(reference), feb, now=datetime(2000, 3, 3, tzinfo=UTC))
    new = served(Workspace(reference))
    assert not np.array_equal(old, new)
    killed, n = 0, 1
    while True:
        root = tmp_path / f"t{n}"
        shutil.copytree(base.root, root)
        if not _fork_killed_at(n, lambda root=root: run_update(
                Workspace(root), feb, now=datetime(2000, 3, 3, tzinfo=UTC))):
            break
        killed += 1
        ws = Workspace(root)
        assert ws.status()["ok"], n
        ids = served(ws)
        assert np.array_equal(ids, old) or np.array_equal(ids, new), f"step {n}: a mixed table"
        n += 4
    assert killed >= 5, killed
    recovered = Workspace(tmp_path / "t1")
    run_update(recovered, feb, now=datetime(2000, 3, 3, tzinfo=UTC))
    np.testing.assert_array_equal(served(recovered), new)
