"""SIGKILL ``hybridrec update`` at many points: the last good version is always served whole."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec.artifacts import verify
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.generation import all_contexts
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

DRIVER = Path(__file__).with_name("crash_driver.py")
SLOW = [
    "generator.options.sleep=0.04",
    "fine_tuner.options.sleep=0.3",
    "knowledge_store.options.sleep=0.2",
]
TRIALS = 6


def cli(ws: Path, data: Path, now: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HYBRIDREC_LOAD_PLUGINS": "datasets,policies,costs,executors", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, str(DRIVER), "update", str(ws), "--data", str(data), "--now", now],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def served_ids(ws: Workspace) -> np.ndarray:
    return ws.lookup_batch(all_contexts(len(ws.catalog())), 5).ids


def check_complete(ws: Workspace) -> None:
    """Every version the pointer names passes a deep checksum verification."""
    current = ws.current()
    assert current is not None
    for kind, folder in (("catalog", "catalog"), ("adapter", "adapters"), ("knowledge", "knowledge"),
                         ("table", "tables")):
        if current.get(kind):
            verify(ws.store.get(folder, current[kind]).path, deep=True)
    for version in current["data"]:
        verify(ws.store.get("data", version).path, deep=True)


@pytest.mark.integration
def test_sigkill_during_update_leaves_one_complete_version_served(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    config = load_config(config_file, overrides=SLOW)
    jan = fake_plugins.write_log(tmp_path / "jan.csv", datetime(2000, 1, 1, tzinfo=UTC), 31)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", datetime(2000, 2, 1, tzinfo=UTC), 31, seed=3)
    base = Workspace.init(tmp_path / "base", config)
    run_update(base, jan, now=datetime(2000, 2, 1, tzinfo=UTC))
    old = served_ids(base)

    reference = tmp_path / "reference"
    shutil.copytree(base.root, reference)
    started = time.perf_counter()
    proc = cli(reference, feb, "2000-03-03")
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode() if proc.stderr else ""
    duration = time.perf_counter() - started
    ref = Workspace(reference)
    new = served_ids(ref)
    assert [r.action for r in ref.ledger.records()][-3:] == ["fine_tune", "refresh_knowledge", "regenerate_table"]
    assert not np.array_equal(old, new)

    outcomes = []
    for trial, fraction in enumerate(np.linspace(0.45, 1.0, TRIALS)):
        ws_path = tmp_path / f"trial{trial}"
        shutil.copytree(base.root, ws_path)
        proc = cli(ws_path, feb, "2000-03-03")
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ws = Workspace(ws_path)
        check_complete(ws)
        ids = served_ids(ws)
        is_old, is_new = np.array_equal(ids, old), np.array_equal(ids, new)
        assert is_old or is_new, f"trial {trial}: the served table is neither the old nor the new one"
        outcomes.append("new" if is_new else "old")
        run_update(ws, feb, now=datetime(2000, 3, 3, tzinfo=UTC))  # the next update succeeds
        check_complete(ws)
        np.testing.assert_array_equal(served_ids(ws), new)
        assert not list(ws.root.glob("*/.staging-*")), "the recovering update left staging folders"
    print(f"crash outcomes over {TRIALS} trials (update took {duration:.2f} s): {outcomes}")
    assert "old" in outcomes, outcomes
