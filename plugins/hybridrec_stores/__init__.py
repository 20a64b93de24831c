"""Built-in knowledge stores: ``counts`` (the counting estimator's snapshots, no neighbour index:
the rerank preset's store), ``annoy`` (instance evidence borrowed through an Annoy index of
contexts) and ``exact`` (the same with brute-force neighbours: the oracle).

Also provides :class:`SnapshotManager` (build off the hot path, atomic promotion, rollback) and
the ``store`` bench suite (``hybridrec bench store --json``).
"""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_stores.manager import SnapshotManager
from hybridrec_stores.snapshot import MmapSnapshot
from hybridrec_stores.store import (
    SNAPSHOT_CAPABILITIES,
    AnnoyStore,
    AnnoyStoreOptions,
    CountsStore,
    CountsStoreOptions,
    ExactStore,
    ExactStoreOptions,
    SnapshotStore,
    SnapshotStoreOptions,
)

__all__ = [
    "SNAPSHOT_CAPABILITIES",
    "AnnoyStore",
    "AnnoyStoreOptions",
    "CountsStore",
    "CountsStoreOptions",
    "ExactStore",
    "ExactStoreOptions",
    "MmapSnapshot",
    "SnapshotManager",
    "SnapshotStore",
    "SnapshotStoreOptions",
]


@hookimpl
def register_knowledge_stores(register: Any) -> None:
    register(CountsStore)
    register(AnnoyStore)
    register(ExactStore)


@hookimpl
def register_bench_suites(register: Any) -> None:
    from hybridrec_stores.bench import store_suite

    register("store", store_suite)
