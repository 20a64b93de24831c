"""Snapshot lifecycle: corruption is detected on open, promotion is atomic, crashes are harmless."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import stores_synthetic as syn
from hybridrec_stores import AnnoyStore, ExactStore, SnapshotManager

from hybridrec.errors import CorruptArtifactError
from hybridrec.generation import all_contexts

N = 10


@pytest.fixture
def store() -> AnnoyStore:
    return AnnoyStore(AnnoyStore.Options(), syn.catalog(N))


@pytest.fixture
def rows() -> object:
    return syn.transitions(N, 2000, seed=2, days=90)


def test_a_truncated_file_is_detected_on_open(tmp_path: Path, store: AnnoyStore, rows: object) -> None:
    snap = store.build(rows, syn.window(0, 30), tmp_path / "s")  # type: ignore[arg-type]
    target = snap.path / "cluster.npy"
    target.write_bytes(target.read_bytes()[:-7])
    with pytest.raises(CorruptArtifactError, match=r"cluster\.npy.*truncated"):
        store.open(tmp_path / "s")


def test_a_flipped_byte_is_caught_by_sha256_but_not_by_the_size_check(
    tmp_path: Path, store: AnnoyStore, rows: object
) -> None:
    snap = store.build(rows, syn.window(0, 30), tmp_path / "s")  # type: ignore[arg-type]
    target = snap.path / "support.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=r"support\.npy: checksum mismatch"):
        store.open(snap.path)
    fast = AnnoyStore(AnnoyStore.Options(verify="size"), store.catalog)
    assert fast.open(snap.path).id == snap.id  # documented: sizes only


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "manifest.json").unlink(), "no manifest.json"),
        (lambda p: (p / "manifest.json").write_text("{not json"), "unreadable manifest"),
        (lambda p: (p / "offsets.npy").unlink(), r"offsets\.npy listed in the manifest is missing"),
    ],
)
def test_incomplete_snapshots_are_rejected(
    tmp_path: Path, store: AnnoyStore, rows: object, damage: object, message: str
) -> None:
    snap = store.build(rows, syn.window(0, 30), tmp_path / "s")  # type: ignore[arg-type]
    damage(snap.path)  # type: ignore[operator]
    with pytest.raises(CorruptArtifactError, match=message):
        store.open(snap.path)


def test_a_snapshot_opens_only_with_the_store_that_built_it(
    tmp_path: Path, store: AnnoyStore, rows: object
) -> None:
    snap = store.build(rows, syn.window(0, 30), tmp_path / "s")  # type: ignore[arg-type]
    with pytest.raises(CorruptArtifactError, match="built by knowledge store 'annoy'"):
        ExactStore(ExactStore.Options(), store.catalog).open(snap.path)


def test_refresh_promotes_keeps_n_and_rolls_back(tmp_path: Path, store: AnnoyStore, rows: object) -> None:
    manager = SnapshotManager(tmp_path / "ws", store, keep=2)
    assert manager.current() is None
    built = [manager.refresh(rows, syn.window(day, 20)) for day in (0, 20, 40)]  # type: ignore[arg-type]
    assert len({s.id for s in built}) == 3
    assert manager.current().id == built[-1].id  # type: ignore[union-attr]
    assert len(manager.versions()) == 2  # keep=2: the oldest was pruned
    assert manager.rollback().id == built[1].id
    assert manager.current().id == built[1].id  # type: ignore[union-attr]
    with pytest.raises(CorruptArtifactError, match="no earlier snapshot"):
        manager.rollback()  # built[0] was pruned and nothing older exists
    # every version folder is self-contained: it opens from a copy elsewhere
    copied = tmp_path / "copy"
    os.rename(manager.root / "knowledge" / manager.versions()[-1], copied)
    assert store.open(copied).evidence(all_contexts(N)).cluster.shape == (N * (N - 1), 1)


def test_a_corrupt_newest_snapshot_falls_back_to_the_previous_one(
    tmp_path: Path, store: AnnoyStore, rows: object
) -> None:
    manager = SnapshotManager(tmp_path / "ws", store)
    first = manager.refresh(rows, syn.window(0, 20))  # type: ignore[arg-type]
    second = manager.refresh(rows, syn.window(20, 20))  # type: ignore[arg-type]
    target = second.path / "keys.npy"
    target.write_bytes(target.read_bytes()[:-8])
    fresh = SnapshotManager(tmp_path / "ws", store)  # a new reader, e.g. after a restart
    with pytest.warns(RuntimeWarning, match="failed verification"):
        served = fresh.current()
    assert served is not None and served.id == first.id
    assert "keys.npy" in (fresh.last_fallback or "")
    assert fresh.refresh(rows, syn.window(40, 20)).id not in {first.id, second.id}  # type: ignore[arg-type]


_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import stores_synthetic as syn
from hybridrec_stores import AnnoyStore, SnapshotManager
store = AnnoyStore(AnnoyStore.Options(neighbours=20, n_trees=50, borrow_search_k=5000), syn.catalog({n}))
rows = syn.transitions({n}, 400_000, seed=9, days=90)
manager = SnapshotManager({root!r}, store)
print("building", flush=True)
manager.refresh(rows, syn.window(0, 60))
print("done", flush=True)
"""


def test_killing_a_refresh_mid_build_keeps_the_previous_snapshot_served(
    tmp_path: Path, rows: object
) -> None:
    n = 90
    store = AnnoyStore(AnnoyStore.Options(neighbours=20, n_trees=50, borrow_search_k=5000), syn.catalog(n))
    root = tmp_path / "ws"
    manager = SnapshotManager(root, store)
    before = manager.refresh(syn.transitions(n, 3000, seed=1), syn.window(0, 30))
    code = textwrap.dedent(_CHILD).format(tests=str(Path(__file__).parent), n=n, root=str(root))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "building"
        deadline = time.monotonic() + 60
        while not list((root / "knowledge").glob(".staging-*")) and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until the build has started writing
        time.sleep(random.uniform(0.0, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "the build finished before it was killed"
    assert list((root / "knowledge").glob(".staging-*")), "killed mid-build: staging is left"

    after_crash = SnapshotManager(root, store)
    served = after_crash.current()
    assert served is not None and served.id == before.id
    pointer = json.loads((root / "knowledge.current.json").read_text())
    assert pointer["current"]["snapshot_id"] == before.id
    np.testing.assert_array_equal(served.evidence(all_contexts(n)).cluster,
                                  before.evidence(all_contexts(n)).cluster)

    nxt = after_crash.refresh(syn.transitions(n, 3000, seed=2), syn.window(0, 30))
    assert after_crash.current().id == nxt.id != before.id  # type: ignore[union-attr]
    assert not list((root / "knowledge").glob(".staging-*")), "crash leftovers are cleaned"
