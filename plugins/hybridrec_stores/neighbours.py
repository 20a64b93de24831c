"""Nearest-neighbour search over unit context embeddings: Annoy (approximate) and exact.

Both return ``(index, similarity)`` arrays of shape ``(n_queries, k)``: positions in the indexed
set, best first, cosine similarity, ``-1`` / ``nan`` padding when fewer than ``k`` items exist.
"""

from __future__ import annotations

import multiprocessing
import os
from abc import ABC, abstractmethod
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

#: Below this many queries a process pool costs more than it saves.
PARALLEL_MIN_QUERIES = 20_000


class NeighbourIndex(ABC):
    """An index over ``items`` (unit float32 rows)."""

    @abstractmethod
    def query(
        self, vectors: np.ndarray, k: int, search_k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest items of each row of ``vectors`` (see the module docstring);
        ``search_k`` overrides an approximate index's default effort (exact ones ignore it)."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of indexed items."""


def _empty(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan, dtype=np.float32)


class ExactIndex(NeighbourIndex):
    """Brute-force cosine similarity in blocks (the oracle)."""

    def __init__(self, items: np.ndarray, block: int = 2048) -> None:
        self.items = np.ascontiguousarray(items, dtype=np.float32)
        self.block = block

    @property
    def size(self) -> int:
        return int(self.items.shape[0])

    def query(
        self, vectors: np.ndarray, k: int, search_k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        n = int(vectors.shape[0])
        index, sim = _empty(n, k)
        kk = min(k, self.size)
        if kk == 0 or n == 0:
            return index, sim
        for lo in range(0, n, self.block):
            hi = min(n, lo + self.block)
            s = np.asarray(vectors[lo:hi], dtype=np.float32) @ self.items.T
            if kk < self.size:
                part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            else:
                part = np.broadcast_to(np.arange(self.size), (hi - lo, self.size))
            part_sim = np.take_along_axis(s, part, axis=1)
            # best first; equal similarities by smaller item position, so results are canonical
            order = np.lexsort((part, -part_sim), axis=1)
            index[lo:hi, :kk] = np.take_along_axis(part, order, axis=1)
            sim[lo:hi, :kk] = np.take_along_axis(part_sim, order, axis=1)
        return index, sim


def annoy_index() -> Any:
    """``annoy.AnnoyIndex``, or a :class:`~hybridrec.errors.PluginError` saying which extra to
    install (the ``backoff`` and ``global`` granularities need no index)."""
    try:
        from annoy import AnnoyIndex
    except ModuleNotFoundError:
        from hybridrec.errors import PluginError

        raise PluginError(
            "the neighbour index needs the 'annoy' package, which is not installed (pip install "
            "'hybridrec[annoy]'); granularity = 'backoff' or 'global' needs none") from None
    return AnnoyIndex


class AnnoyIndexFile(NeighbourIndex):
    """An Annoy ``angular`` index saved to (and memory-mapped from) a file."""

    def __init__(self, path: Path, dim: int, search_k: int, workers: int = 1) -> None:
        AnnoyIndex = annoy_index()

        self.path = Path(path)
        self.dim = dim
        self.search_k = search_k
        self.workers = workers
        self._index = AnnoyIndex(dim, "angular")
        self._index.load(str(self.path))  # mmap: opening is O(1) in the index size

    @classmethod
    def build(
        cls, items: np.ndarray, path: Path, *, n_trees: int, seed: int, search_k: int,
        workers: int = 1,
    ) -> AnnoyIndexFile:
        """Index ``items`` deterministically (fixed seed, one build thread) and save to ``path``."""
        AnnoyIndex = annoy_index()

        dim = int(items.shape[1])
        index = AnnoyIndex(dim, "angular")
        index.set_seed(seed)
        add = index.add_item
        for i, row in enumerate(np.asarray(items, dtype=np.float32).tolist()):
            add(i, row)
        index.build(n_trees, n_jobs=1)
        index.save(str(path))
        index.unload()
        return cls(path, dim, search_k, workers)

    @property
    def size(self) -> int:
        return int(self._index.get_n_items())

    def query(
        self, vectors: np.ndarray, k: int, search_k: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items per row; large batches are split over ``workers`` forked processes
        that each memory-map the same index file (results are identical to one process)."""
        n = int(vectors.shape[0])
        if n == 0 or self.size == 0:
            return _empty(n, k)
        effort = self.search_k if search_k is None else search_k
        workers = min(self.workers, os.cpu_count() or 1)
        if workers <= 1 or n < PARALLEL_MIN_QUERIES or "fork" not in multiprocessing.get_all_start_methods():
            return _query_annoy(self._index, vectors, k, effort)
        bounds = np.linspace(0, n, workers + 1).astype(int)
        _FORK_STATE["job"] = (str(self.path), self.dim, effort, vectors, k)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                parts = pool.map(_query_slice, [(int(a), int(b)) for a, b in pairwise(bounds)])
        finally:
            _FORK_STATE.clear()
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# Handed to forked workers through the copied address space (nothing large is pickled).
_FORK_STATE: dict[str, Any] = {}


def _query_slice(bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    from annoy import AnnoyIndex

    path, dim, search_k, vectors, k = _FORK_STATE["job"]
    index = AnnoyIndex(dim, "angular")
    index.load(path)
    lo, hi = bounds
    return _query_annoy(index, vectors[lo:hi], k, search_k)


def _query_annoy(
    annoy_index: Any, vectors: np.ndarray, k: int, search_k: int
) -> tuple[np.ndarray, np.ndarray]:
    n = int(vectors.shape[0])
    index, sim = _empty(n, k)
    get = annoy_index.get_nns_by_vector
    flat_ids: list[int] = []
    flat_dist: list[float] = []
    lengths = np.empty(n, dtype=np.int64)
    for row, vector in enumerate(np.asarray(vectors, dtype=np.float32).tolist()):
        ids, dist = get(vector, k, search_k, True)
        flat_ids.extend(ids)
        flat_dist.extend(dist)
        lengths[row] = len(ids)
    rows = np.repeat(np.arange(n), lengths)
    cols = np.arange(rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    d = np.asarray(flat_dist, dtype=np.float32)
    index[rows, cols] = np.asarray(flat_ids, dtype=np.int64)
    # Annoy's angular distance between unit vectors is sqrt(2 - 2 cos)
    sim[rows, cols] = 1.0 - 0.5 * d * d
    return index, sim
