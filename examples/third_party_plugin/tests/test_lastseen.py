"""Tests of hybridrec-lastseen, written as docs/writing-plugins.md § 7 shows.

They pass whether or not the package is installed: the ``hybridrec_plugin`` fixture (installed
with hybridrec) registers the module for one test, moving aside the copy that the entry point
registered when the package is installed.
"""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import hybridrec_lastseen
import numpy as np
import pytest
from hybridrec_lastseen.store import LastSeenStore

from hybridrec import plugins
from hybridrec.errors import ConfigError, CorruptArtifactError
from hybridrec.testing.store_contract import make_store_contract
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet

#: The contract every knowledge store keeps (hybridrec.testing.store_contract), on random data.
TestLastSeenContract = make_store_contract(
    lambda catalog: LastSeenStore({"m": 3}, catalog), max_examples=15, derandomize=True
)

CATALOG = ClusterCatalog.from_descriptions(["a x", "b x", "c x", "d x"])
TS = np.array([10, 20, 30, 40])
TRANSITIONS = TransitionSet(
    np.array([0, 0, 0, 1]), np.array([1, 1, 1, 2]), np.array([2, 3, 2, 3]), TS, TS, 4
)


def window(start: int, end: int) -> TimeWindow:
    return TimeWindow(start=datetime.fromtimestamp(start, UTC), end=datetime.fromtimestamp(end, UTC))


def test_registered_by_the_fixture_and_built_by_name(hybridrec_plugin):
    assert hybridrec_plugin(hybridrec_lastseen, name="lastseen") == "lastseen"
    info = plugins.registry().info("knowledge_store", "lastseen")
    assert info.cls is LastSeenStore and info.plugin == "lastseen" and not info.builtin
    store = plugins.build("knowledge_store", {"plugin": "lastseen", "options": {"m": 2}}, CATALOG)
    assert isinstance(store, LastSeenStore) and store.options.m == 2


def test_unknown_options_are_config_errors_with_a_suggestion(hybridrec_plugin):
    hybridrec_plugin(hybridrec_lastseen)
    with pytest.raises(ConfigError, match=r"plugin 'lastseen':\n.*\] m: Input should be greater"):
        plugins.build("knowledge_store", {"plugin": "lastseen", "options": {"m": 0}}, CATALOG)
    with pytest.raises(ConfigError, match=r"mm: Extra inputs are not permitted.*did you mean 'm'"):
        plugins.build("knowledge_store", {"plugin": "lastseen", "options": {"mm": 2}}, CATALOG)


def test_most_recent_successor_first_and_nothing_after_the_window():
    store = LastSeenStore({"m": 2}, CATALOG)
    with tempfile.TemporaryDirectory() as tmp:
        evidence = store.build(TRANSITIONS, window(0, 35), Path(tmp)).evidence(
            np.array([[0, 1], [1, 2]])
        )
    # (0, 1): 3 at t=20, 2 last at t=30 -> [2, 3]; (1, 2) is only seen at t=40
    assert evidence.cluster.tolist() == [[2, 3], [-1, -1]]
    assert evidence.last_seen.tolist() == [[30, 20], [-1, -1]]


def test_a_corrupt_snapshot_is_refused(tmp_path):
    store = LastSeenStore({"m": 1}, CATALOG)
    store.build(TRANSITIONS, window(0, 50), tmp_path)
    (tmp_path / "succ.npy").write_bytes(b"garbage")
    with pytest.raises(CorruptArtifactError):
        store.open(tmp_path)
