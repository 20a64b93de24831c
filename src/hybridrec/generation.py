"""Bulk table generation: the job description and the context enumerations.

A :class:`TableJob` is everything a worker needs to rebuild the generator and the knowledge
snapshot on its own (so it pickles to a Ray worker), plus the contexts to rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridrec.config import PluginRef
from hybridrec.interfaces import Generator, KnowledgeSnapshot
from hybridrec.plugins import build
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet


def all_contexts(n_clusters: int) -> np.ndarray:
    """Every ordered pair ``(c1, c2)`` with ``c1 != c2``, lexicographic: ``n(n-1)`` rows."""
    c1 = np.repeat(np.arange(n_clusters, dtype=np.int64), n_clusters)
    c2 = np.tile(np.arange(n_clusters, dtype=np.int64), n_clusters)
    keep = c1 != c2
    return np.stack([c1[keep], c2[keep]], axis=1)


def observed_contexts(transitions: TransitionSet, window: TimeWindow | None = None) -> np.ndarray:
    """Distinct contexts seen in ``window`` (all of ``transitions`` if None), lexicographic."""
    rows = transitions.window(window) if window is not None else transitions
    if len(rows) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    keys = np.unique(rows.c1 * transitions.n_clusters + rows.c2)
    return np.stack([keys // transitions.n_clusters, keys % transitions.n_clusters], axis=1)


def batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass
class TableJob:
    """Rank ``contexts`` with a generator (plus adapter) and optional knowledge snapshot.

    The generator and store are named by plugin reference so any process can rebuild them.
    """

    generator: PluginRef
    catalog: ClusterCatalog
    contexts: np.ndarray
    k: int = 10
    batch_size: int = 4096
    adapter: Path | None = None
    knowledge_store: PluginRef | None = None
    snapshot: Path | None = None

    def build_generator(self) -> Generator:
        """The job's generator (built by :func:`hybridrec.plugins.build`) with its adapter."""
        gen = build("generator", self.generator, self.catalog, source="table job")
        gen.load_adapter(self.adapter)
        return gen

    @property
    def store_name(self) -> str | None:
        """The knowledge store's plugin name (named in evidence errors)."""
        return None if self.knowledge_store is None else self.knowledge_store.plugin

    def open_snapshot(self) -> KnowledgeSnapshot | None:
        """The job's knowledge snapshot, opened by a store built by :func:`hybridrec.plugins.build`."""
        if self.knowledge_store is None or self.snapshot is None:
            return None
        return build("knowledge_store", self.knowledge_store, self.catalog, source="table job").open(self.snapshot)


__all__ = [
    "TableJob",
    "all_contexts",
    "batches",
    "observed_contexts",
]
