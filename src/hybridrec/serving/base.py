"""The serving-table contract: writer, reader, backend, and the lookup backoff.

A serving table maps a context ``(c1, c2)`` to its top-K clusters. A table version lives in one
folder (written while staged, then made visible by the workspace's atomic promotion); a backend
decides the file format inside that folder.

Lookup backoff (**contract**), applied per context and recorded as a *level*:

``pair`` (0)
    the table has a row for ``(c1, c2)``;
``last`` (1)
    no row for the pair: the most common successors of ``c2`` alone (the last cluster);
``popularity`` (2)
    neither: the globally most common next clusters;
``none`` (3)
    nothing at all to serve (an empty table and no backoff data).

Served lists never contain ``c1`` or ``c2`` and never repeat a cluster; a short list is filled
from the lower levels (the level reported is the one that answered first).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from hybridrec.errors import HybridrecError
from hybridrec.types import RankedPrediction, Rankings, TransitionSet

Level = Literal["pair", "last", "popularity", "none"]
LEVELS: tuple[Level, ...] = ("pair", "last", "popularity", "none")
LEVEL_PAIR, LEVEL_LAST, LEVEL_POPULARITY, LEVEL_NONE = 0, 1, 2, 3


class ServedPrediction(RankedPrediction):
    """A :class:`RankedPrediction` plus the backoff level that answered it."""

    level: Level = "pair"


@dataclass(frozen=True)
class SuccessorFallback:
    """The serving fallback: the lower levels a lookup falls back to when a table row cannot
    fill it (successors of the last cluster alone, then global popularity). Formerly
    ``Backoff``: renamed so the serving fallback and the counting estimator (``backoff`` in
    :mod:`hybridrec.estimators.counting`) do not share a name.

    ``by_last`` is ``(n_clusters, w)`` (``-1`` pads), row ``c`` holding the most common next
    clusters after ``c`` (never ``c`` itself), best first, with ``by_last_scores`` their counts;
    ``popular`` is ``(w,)`` likewise over all transitions. ``w`` should be at least ``k + 2`` so
    dropping ``c1`` and ``c2`` still leaves ``k``.
    """

    by_last: np.ndarray
    by_last_scores: np.ndarray
    popular: np.ndarray
    popular_scores: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.by_last.shape[0])

    @classmethod
    def empty(cls, n_clusters: int, width: int) -> SuccessorFallback:
        return cls(
            by_last=np.full((n_clusters, width), -1, dtype=np.int64),
            by_last_scores=np.zeros((n_clusters, width), dtype=np.float64),
            popular=np.full(width, -1, dtype=np.int64),
            popular_scores=np.zeros(width, dtype=np.float64),
        )

    @classmethod
    def from_transitions(cls, transitions: TransitionSet, width: int) -> SuccessorFallback:
        """Count successors of each last cluster and overall; ties break by the smaller id."""
        n = transitions.n_clusters
        out = cls.empty(n, width)
        if len(transitions) == 0:
            return out
        pair_counts = np.bincount(transitions.c2 * n + transitions.c3, minlength=n * n).reshape(n, n)
        order = np.argsort(-pair_counts, axis=1, kind="stable")[:, :width]
        counts = np.take_along_axis(pair_counts, order, axis=1)
        ids = np.where(counts > 0, order, -1)
        width_here = ids.shape[1]
        out.by_last[:, :width_here] = ids
        out.by_last_scores[:, :width_here] = np.where(counts > 0, counts, 0)
        totals = np.bincount(transitions.c3, minlength=n)
        top = np.argsort(-totals, kind="stable")[:width]
        top_counts = totals[top]
        out.popular[: top.shape[0]] = np.where(top_counts > 0, top, -1)
        out.popular_scores[: top.shape[0]] = np.where(top_counts > 0, top_counts, 0)
        return out


#: The former name of :class:`SuccessorFallback`, kept for code that imports it.
Backoff = SuccessorFallback


def check_contexts(contexts: np.ndarray, n_clusters: int) -> np.ndarray:
    """Validate an ``(n, 2)`` context array; raise a :class:`HybridrecError` naming the bad row."""
    try:
        array = np.asarray(contexts)
        if array.dtype == object:  # Python ints too large for int64 stay objects
            array = array.astype(np.int64)
    except (OverflowError, ValueError, TypeError):
        raise HybridrecError(
            f"contexts must hold cluster ids 0..{n_clusters - 1}; got values that are not "
            "(too large, or not integers)") from None
    if array.ndim != 2 or array.shape[1] != 2:
        raise HybridrecError(f"contexts must be an (n, 2) array of cluster ids, got shape {array.shape}")
    array = array.astype(np.int64, copy=False)
    if array.size:
        bad = (array < 0) | (array >= n_clusters)
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise HybridrecError(
                f"context {tuple(int(x) for x in array[row])} (row {row}) has a cluster outside "
                f"the catalog's ids 0..{n_clusters - 1}"
            )
        same = array[:, 0] == array[:, 1]
        if same.any():
            row = int(np.argmax(same))
            raise HybridrecError(
                f"context {tuple(int(x) for x in array[row])} (row {row}) repeats a cluster; "
                "the two context clusters must differ"
            )
    return array


def fill_rows(
    contexts: np.ndarray,
    pair_ids: np.ndarray,
    pair_scores: np.ndarray,
    backoff: SuccessorFallback,
    k: int,
) -> tuple[Rankings, np.ndarray]:
    """Apply the backoff to table rows already fetched for ``contexts``.

    ``pair_ids`` is ``(n, w)`` with ``-1`` where the table has nothing (a whole row of ``-1`` is
    an unknown pair). Returns the top-``k`` rankings and the ``int8`` level of each row.
    """
    n = int(contexts.shape[0])
    c1 = contexts[:, 0:1]
    c2 = contexts[:, 1:2]
    width = pair_ids.shape[1]
    head = pair_ids[:, : min(k, width)]
    head_ok = (head >= 0) & (head != c1) & (head != c2)
    full = head_ok.all(axis=1) if head.shape[1] == k else np.zeros(n, dtype=bool)
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.zeros((n, k), dtype=np.float64)
    levels = np.full(n, LEVEL_PAIR, dtype=np.int8)
    if full.any():
        ids[full] = head[full]
        scores[full] = pair_scores[full, :k]
    rest = np.flatnonzero(~full)
    if rest.size == 1:  # one row (a service's lookup): the same rule without (w x w) arrays
        i = int(rest[0])
        ids[i], scores[i], levels[i] = _fill_one(
            int(contexts[i, 0]), int(contexts[i, 1]), pair_ids[i], pair_scores[i], backoff, k)
    elif rest.size:
        candidates = np.concatenate(
            [
                pair_ids[rest],
                backoff.by_last[contexts[rest, 1]],
                np.broadcast_to(backoff.popular, (rest.size, backoff.popular.shape[0])),
            ],
            axis=1,
        )
        cand_scores = np.concatenate(
            [
                pair_scores[rest],
                backoff.by_last_scores[contexts[rest, 1]],
                np.broadcast_to(backoff.popular_scores, (rest.size, backoff.popular.shape[0])),
            ],
            axis=1,
        )
        source = np.concatenate(
            [
                np.full(width, LEVEL_PAIR, dtype=np.int8),
                np.full(backoff.by_last.shape[1], LEVEL_LAST, dtype=np.int8),
                np.full(backoff.popular.shape[0], LEVEL_POPULARITY, dtype=np.int8),
            ]
        )
        valid = (candidates >= 0) & (candidates != c1[rest]) & (candidates != c2[rest])
        # A candidate repeats if an earlier valid column of the same row holds the same cluster.
        same = candidates[:, :, None] == candidates[:, None, :]
        earlier = np.tril(np.ones((candidates.shape[1],) * 2, dtype=bool), k=-1)
        repeated = (same & earlier[None] & valid[:, None, :]).any(axis=2)
        keep = valid & ~repeated
        rank = np.cumsum(keep, axis=1) - 1
        take = keep & (rank < k)
        rows, cols = np.nonzero(take)
        ids[rest[rows], rank[rows, cols]] = candidates[rows, cols]
        scores[rest[rows], rank[rows, cols]] = cand_scores[rows, cols]
        first = np.where(keep.any(axis=1), np.argmax(keep, axis=1), -1)
        levels[rest] = np.where(first >= 0, source[np.maximum(first, 0)], LEVEL_NONE)
    return Rankings(contexts=contexts, ids=ids, scores=scores), levels


def _fill_one(c1: int, c2: int, pair_ids: np.ndarray, pair_scores: np.ndarray, backoff: SuccessorFallback,
              k: int) -> tuple[list[int], list[float], int]:
    """:func:`fill_rows` for one row: candidates from the pair row, then the successors of
    ``c2``, then popularity; each valid (a catalog id, not a context cluster) and not yet taken;
    the level is the source of the first one taken."""
    ids = [-1] * k
    scores = [0.0] * k
    taken: set[int] = set()
    level = LEVEL_NONE
    filled = 0
    for source, (cands, values) in zip(
            (LEVEL_PAIR, LEVEL_LAST, LEVEL_POPULARITY),
            ((pair_ids, pair_scores), (backoff.by_last[c2], backoff.by_last_scores[c2]),
             (backoff.popular, backoff.popular_scores)), strict=True):
        for cluster, value in zip(cands.tolist(), values.tolist(), strict=True):
            if cluster < 0 or cluster in (c1, c2) or cluster in taken:
                continue
            if level == LEVEL_NONE:
                level = source
            taken.add(cluster)
            ids[filled], scores[filled] = cluster, float(value)
            filled += 1
            if filled == k:
                return ids, scores, level
    return ids, scores, level


def served_row(rankings: Rankings, levels: np.ndarray, i: int) -> ServedPrediction:
    row = rankings.row(i)
    return ServedPrediction(
        context=row.context, clusters=row.clusters, scores=row.scores, level=LEVELS[int(levels[i])]
    )


class TableWriter(ABC):
    """Writes one table version into a (staging) folder.

    Call :meth:`write` with :class:`Rankings` batches (each context at most once), then
    :meth:`set_backoff`, then :meth:`commit` exactly once; after :meth:`commit` the folder is
    complete and immutable and the writer is closed. :meth:`abort` releases resources without
    completing the folder.
    """

    @abstractmethod
    def write(self, rankings: Rankings) -> None:
        """Add rows for ``rankings.contexts``."""

    @abstractmethod
    def set_backoff(self, backoff: SuccessorFallback) -> None:
        """Store the lower backoff levels."""

    @abstractmethod
    def commit(self, manifest: dict[str, Any]) -> None:
        """Finish the files (``manifest`` is kept as table metadata) and close."""

    @abstractmethod
    def abort(self) -> None:
        """Close without completing."""

    @property
    @abstractmethod
    def rows(self) -> int:
        """Rows written so far."""


class TableReader(ABC):
    """Reads one complete, immutable table version. Thread-safe for concurrent lookups."""

    n_clusters: int
    k: int
    metadata: dict[str, Any]
    #: the table's lower backoff levels (successors of the last cluster, popularity), or None for
    #: a backend that does not keep them apart
    backoff: SuccessorFallback | None = None

    @abstractmethod
    def lookup_batch_with_levels(self, contexts: np.ndarray, k: int) -> tuple[Rankings, np.ndarray]:
        """Top-``k`` per context and the backoff level (``int8`` codes of :data:`LEVELS`)."""

    def lookup_batch(self, contexts: np.ndarray, k: int) -> Rankings:
        """Top-``k`` clusters for each row of the ``(n, 2)`` ``contexts`` (backoff applied)."""
        return self.lookup_batch_with_levels(contexts, k)[0]

    def lookup(self, context: tuple[int, int] | np.ndarray, k: int) -> ServedPrediction:
        """Top-``k`` clusters for one context, with the backoff level that answered."""
        try:
            array = np.asarray([context], dtype=np.int64)
        except (OverflowError, ValueError, TypeError):
            raise HybridrecError(f"context {tuple(context)} must hold cluster ids "
                                 f"0..{self.n_clusters - 1}") from None
        rankings, levels = self.lookup_batch_with_levels(array, k)
        return served_row(rankings, levels, 0)

    def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release resources (idempotent)."""

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TableBackend(ABC):
    """A serving-table file format: registered by ``name`` through ``register_table_backends``."""

    name: ClassVar[str]

    @abstractmethod
    def writer(self, folder: Path, *, n_clusters: int, k: int) -> TableWriter:
        """A writer for a new table in the (existing, empty) ``folder``."""

    @abstractmethod
    def reader(self, folder: Path) -> TableReader:
        """Open the complete table in ``folder`` read-only."""


__all__ = [
    "LEVELS",
    "Level",
    "ServedPrediction",
    "SuccessorFallback",
    "TableBackend",
    "TableReader",
    "TableWriter",
    "check_contexts",
    "fill_rows",
    "served_row",
]
