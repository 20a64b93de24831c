"""Built-in knowledge stores: ``annoy`` (the reference) and ``exact`` (the brute-force oracle).

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
    ExactStore,
    ExactStoreOptions,
    SnapshotStore,
    SnapshotStoreOptions,
)

__all__ = [
    "SNAPSHOT_CAPABILITIES",
    "AnnoyStore",
    "AnnoyStoreOptions",
    "ExactStore",
    "ExactStoreOptions",
    "MmapSnapshot",
    "SnapshotManager",
    "SnapshotStore",
    "SnapshotStoreOptions",
]


@hookimpl
def register_knowledge_stores(register: Any) -> None:
    register(AnnoyStore)
    register(ExactStore)


@hookimpl
def register_bench_suites(register: Any) -> None:
    from hybridrec_stores.bench import store_suite

    register("store", store_suite)
