"""Exact per-context successor statistics over a window of transitions (vectorised numpy).

A context ``(c1, c2)`` is encoded as the key ``c1 * n + c2`` and a transition as the triple key
``(c1 * n + c2) * n + c3`` (``n`` clusters), so counting is a single ``np.unique`` and every
per-context operation is a segment operation over a sorted key array; there is no per-row
Python loop anywhere on this path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hybridrec.errors import DataError
from hybridrec.estimators.counting import (
    DAY,
    CountingConfig,
    counting_scores,
    popularity_position,
    popularity_shares,
    row_shares,
    top_k,
)
from hybridrec.types import TransitionSet

Scoring = Literal["frequency", "trend"]

#: Largest catalog whose triple keys fit in int64 (``n ** 3 < 2 ** 63``).
MAX_CLUSTERS = 2_000_000


@dataclass(frozen=True)
class SuccessorTable:
    """Successor items grouped by context, CSR-style, best first within each context.

    ``keys`` (sorted, unique context keys) and ``offsets`` (``len(keys) + 1``) index the item
    arrays: the items of ``keys[i]`` are ``[offsets[i], offsets[i + 1])``. Item arrays:
    ``cluster``, ``support`` (count, or similarity-weighted count when borrowed), ``score``,
    ``last_seen`` (Unix seconds), ``provenance`` (:data:`hybridrec.types.PROVENANCE_CODES`),
    ``source`` (context key it came from, ``-1`` for the context itself) and ``similarity``
    (``1`` for the context itself). ``context_support`` is the exact number of transitions of
    each context in the window (``0`` for contexts that only hold borrowed items). ``shares``
    (optional, ``(I, 3)`` float64; the ``backoff`` granularity fills it) is each item's share
    among the successors of its context's last cluster, first cluster and all contexts.
    ``recent`` (optional, ``(I, 5)`` float64; the ``backoff`` granularity with ``recent_days``)
    is the same count evidence over the window's last days, in the columns of
    :data:`hybridrec.types.RECENT_COLUMNS`.
    """

    n_clusters: int
    keys: np.ndarray
    offsets: np.ndarray
    context_support: np.ndarray
    cluster: np.ndarray
    support: np.ndarray
    score: np.ndarray
    last_seen: np.ndarray
    provenance: np.ndarray
    source: np.ndarray
    similarity: np.ndarray
    shares: np.ndarray | None = None
    recent: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return int(self.cluster.shape[0])

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays written to a snapshot, by file stem."""
        return {
            "keys": self.keys,
            "offsets": self.offsets,
            "context_support": self.context_support,
            "cluster": self.cluster,
            "support": self.support,
            "score": self.score,
            "last_seen": self.last_seen,
            "provenance": self.provenance,
            "source": self.source,
            "similarity": self.similarity,
            **({} if self.shares is None else {"shares": self.shares}),
            **({} if self.recent is None else {"recent": self.recent}),
        }


@dataclass(frozen=True)
class TripleCounts:
    """Distinct triples of a window: sorted ``key3``, their ``count`` and ``last_seen``.

    ``count`` is ``int64``, or ``float64`` when the window is decayed (:func:`count_triples`
    with ``half_life_days``): each transition then weighs ``2 ** (-a / half_life_days)``, ``a``
    its age in days at the window's end.
    """

    n_clusters: int
    key3: np.ndarray
    count: np.ndarray
    last_seen: np.ndarray

    @property
    def context(self) -> np.ndarray:
        return self.key3 // self.n_clusters

    @property
    def successor(self) -> np.ndarray:
        return self.key3 % self.n_clusters


def check_catalog_size(n_clusters: int) -> None:
    if n_clusters > MAX_CLUSTERS:
        raise DataError(
            f"{n_clusters} clusters: knowledge stores encode (c1, c2, c3) in one int64 and support "
            f"at most {MAX_CLUSTERS:,} clusters; coarsen the clustering"
        )


def count_triples(rows: TransitionSet, *, half_life_days: float | None = None,
                  as_of: int | None = None) -> TripleCounts:
    """Count every distinct ``(c1, c2, c3)`` in ``rows`` and the time of its latest occurrence.

    With ``half_life_days`` the counts are decayed to ``as_of`` (Unix seconds, at or after every
    row): a transition ``a`` days old weighs ``2 ** (-a / half_life_days)``, the weight the
    counting estimator's decayed tables give it (:class:`hybridrec.estimators.counting.CountTables`).
    """
    n = rows.n_clusters
    check_catalog_size(n)
    decayed = half_life_days is not None
    if decayed and as_of is None:
        raise ValueError("decayed counts need as_of, the time they are decayed to")
    if len(rows) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TripleCounts(n, empty, empty.astype(np.float64) if decayed else empty, empty)
    key3 = (rows.c1 * n + rows.c2) * n + rows.c3
    # rows are sorted by time, so the first occurrence in the reversed array is the latest one
    key3_u, first_in_reversed, inverse, count = np.unique(
        key3[::-1], return_index=True, return_inverse=True, return_counts=True)
    last_seen = rows.ts[::-1][first_in_reversed]
    if not decayed:
        return TripleCounts(n, key3_u, count.astype(np.int64), last_seen.astype(np.int64))
    assert half_life_days is not None and as_of is not None
    rate = math.log(2.0) / (half_life_days * DAY)
    weight = np.exp(-rate * (int(as_of) - rows.ts[::-1].astype(np.float64)))
    decayed_count = np.zeros(key3_u.shape[0])
    # summed oldest first, the order the estimator's tables add rows in
    np.add.at(decayed_count, inverse.reshape(-1)[::-1], weight[::-1])
    return TripleCounts(n, key3_u, decayed_count, last_seen.astype(np.int64))


def lookup_counts(counts: TripleCounts, key3: np.ndarray) -> np.ndarray:
    """Counts of ``key3`` in ``counts`` (0 where absent)."""
    if counts.key3.size == 0 or key3.size == 0:
        return np.zeros(key3.shape, dtype=np.int64)
    pos = np.searchsorted(counts.key3, key3)
    pos_clipped = np.minimum(pos, counts.key3.size - 1)
    hit = counts.key3[pos_clipped] == key3
    return np.where(hit, counts.count[pos_clipped], 0)


def score_triples(
    current: TripleCounts, previous: TripleCounts | None, scoring: Scoring
) -> np.ndarray:
    """Per-triple scores: the count (``frequency``) or the count minus the previous window's
    count of the same triple (``trend``; a triple new in this window scores its full count)."""
    count = current.count.astype(np.float64)
    if scoring == "frequency":
        return count
    if previous is None:
        raise ValueError("trend scoring needs the previous window's counts")
    return count - lookup_counts(previous, current.key3).astype(np.float64)


def sort_keys(
    score: np.ndarray, support: np.ndarray, last_seen: np.ndarray, cluster: np.ndarray,
    provenance: np.ndarray | None = None,
) -> list[np.ndarray]:
    """``np.lexsort`` keys (least significant first) for "best first".

    Best first means: higher score, then higher support, then exact before borrowed, then more
    recent, then smaller cluster id (so ties are broken deterministically). Provenance, age and
    cluster are folded into one exact integer key when it fits in 53 bits (it does for any
    realistic window), and support is skipped where it equals the score (frequency scoring).
    """
    prov = np.zeros(score.shape, dtype=np.int64) if provenance is None else provenance
    prov = prov.astype(np.int64)
    cluster = cluster.astype(np.int64)
    age = int(last_seen.max()) - last_seen.astype(np.int64)
    span = int(age.max()) + 1
    n = int(cluster.max()) + 1
    fits = 3 * span * n < 2**53
    keys = [(prov * span + age) * n + cluster] if fits else [cluster, age, prov]
    if support is not score and not np.array_equal(support, score):
        keys.append(-support)
    keys.append(-score)
    return keys


def rank_order(
    group: np.ndarray, score: np.ndarray, support: np.ndarray, last_seen: np.ndarray,
    cluster: np.ndarray, provenance: np.ndarray | None = None,
) -> np.ndarray:
    """Permutation sorting items by group, then best first (see :func:`sort_keys`)."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort((*sort_keys(score, support, last_seen, cluster, provenance), group))


def top_per_group(
    group: np.ndarray, depth: int, score: np.ndarray, support: np.ndarray,
    last_seen: np.ndarray, cluster: np.ndarray, provenance: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the best ``depth`` items of each group, grouped (ascending) and best first
    (the order of :func:`rank_order`).

    ``group`` must be sorted. Groups are short (a context's successors), so rows are laid out
    in a padded ``(groups, longest)`` matrix and sorted row-wise: that is ``O(N log L)``
    instead of the ``O(N log N)`` of one global sort.
    """
    n = int(group.size)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = segment_starts(group)
    lengths = np.diff(np.r_[starts, n])
    longest = int(lengths.max())
    if starts.size * longest > 4 * n + 1024:  # very uneven groups: padding would cost more
        order = rank_order(group, score, support, last_seen, cluster, provenance)
        return order[rank_within(group[order]) < depth]
    g = np.repeat(np.arange(starts.size), lengths)
    slot = np.arange(n) - np.repeat(starts, lengths)

    def padded(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((starts.size, longest), fill, dtype=np.float64)
        out[g, slot] = values
        return out

    # padding sorts last: +inf on every (ascending) key
    keys = [padded(k.astype(np.float64), np.inf)
            for k in sort_keys(score, support, last_seen, cluster, provenance)]
    cols = np.lexsort(keys, axis=1)[:, :depth]
    take = cols < lengths[:, None]
    return (starts[:, None] + cols)[take].astype(np.int64)


def segment_starts(sorted_group: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in a sorted array."""
    if sorted_group.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])


def rank_within(sorted_group: np.ndarray) -> np.ndarray:
    """0-based position of each element within its run of equal values."""
    starts = segment_starts(sorted_group)
    lengths = np.diff(np.r_[starts, sorted_group.size])
    return np.arange(sorted_group.size) - np.repeat(starts, lengths)


def exact_table(
    current: TripleCounts, previous: TripleCounts | None, scoring: Scoring, depth: int
) -> SuccessorTable:
    """The top-``depth`` successors of every context seen in the window, with its support."""
    n = current.n_clusters
    ctx = current.context
    succ = current.successor
    score = score_triples(current, previous, scoring)
    support = current.count.astype(np.float64)
    keep = top_per_group(ctx, depth, score, support, current.last_seen, succ)
    keys, first = np.unique(ctx, return_index=True)
    context_support = np.add.reduceat(current.count, first) if first.size else first
    kept_ctx = ctx[keep]
    offsets = np.searchsorted(kept_ctx, np.r_[keys, np.iinfo(np.int64).max])
    return SuccessorTable(
        n_clusters=n,
        keys=keys.astype(np.int64),
        offsets=np.asarray(offsets, dtype=np.int64),
        context_support=np.asarray(context_support, dtype=np.int64),
        cluster=succ[keep].astype(np.int32),
        support=support[keep],
        score=score[keep],
        last_seen=current.last_seen[keep],
        provenance=np.zeros(keep.size, dtype=np.int8),
        source=np.full(keep.size, -1, dtype=np.int64),
        similarity=np.ones(keep.size, dtype=np.float32),
    )


def global_table(
    current: TripleCounts, previous: TripleCounts | None, scoring: Scoring, depth: int
) -> SuccessorTable:
    """The top-``depth`` transitions overall (the paper's global-level prompt).

    Stored as a single pseudo-context with key ``-1``; each item's ``source`` is the context
    the transition was observed in.
    """
    score = score_triples(current, previous, scoring)
    support = current.count.astype(np.float64)
    succ = current.successor
    group = np.zeros_like(current.key3)
    order = rank_order(group, score, support, current.last_seen, succ)[:depth]
    n_items = int(order.size)
    return SuccessorTable(
        n_clusters=current.n_clusters,
        keys=np.array([-1], dtype=np.int64),
        offsets=np.array([0, n_items], dtype=np.int64),
        context_support=np.array([int(current.count.sum())], dtype=np.int64),
        cluster=succ[order].astype(np.int32),
        support=support[order],
        score=score[order],
        last_seen=current.last_seen[order],
        provenance=np.full(n_items, 2, dtype=np.int8),
        source=current.context[order].astype(np.int64),
        similarity=np.zeros(n_items, dtype=np.float32),
    )


def successor_shares(counts: TripleCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(P_last, P_skip, P_pop, pop)`` of ``counts``' triples: each cluster's share among the
    successors of the contexts whose *last* (resp. *first*) cluster it is, ``(n, n)`` rows by
    context cluster (a cluster with none falls back to popularity), the popularity shares
    ``(n,)`` (uniform without data) and the popularity counts ``(n,)``."""
    n = counts.n_clusters
    ctx, succ, count = counts.context, counts.successor, counts.count.astype(np.float64)
    last = np.zeros((n, n))
    skip = np.zeros((n, n))
    np.add.at(last, (ctx % n, succ), count)
    np.add.at(skip, (ctx // n, succ), count)
    pop = np.bincount(succ, weights=count, minlength=n).astype(np.float64)
    p_pop = popularity_shares(pop)
    return row_shares(last, p_pop), row_shares(skip, p_pop), p_pop, pop


def _row_of_context(ctx: np.ndarray, n: int) -> np.ndarray:
    """Row of each context key ``c1 * n + c2`` among the ordered pairs ``c1 != c2``."""
    return ctx - ctx // n - (ctx % n > ctx // n)


def backoff_table(
    current: TripleCounts,
    depth: int,
    *,
    alpha: float,
    weights: tuple[float, float, float],
    recent: TripleCounts | None = None,
    chunk: int = 4096,
) -> SuccessorTable:
    """The top-``depth`` successors of *every* ordered pair ``c1 != c2`` by smoothed counts.

    A successor ``c3`` of ``(c1, c2)`` scores ``N(c1, c2, c3) + alpha * B(c3)`` with
    ``B = w_last P(c3 | c2 last) + w_skip P(c3 | c1 first) + w_pop P(c3)`` (shares over the
    window's transitions whose second, resp. first, context cluster is ``c2``, resp. ``c1``; a
    cluster with none falls back to popularity); ``c1`` and ``c2`` are never items. This is
    the Dirichlet-smoothed estimate of the ``markov-backoff`` baseline (its numerator), so the
    evidence of a context is that baseline's ranked list. Items with exact support are
    ``exact``; items that come only from the backoff are ``borrowed`` (support 0). Recency is
    not part of this estimator: ``last_seen`` is ``-1`` (unknown) for every item, exactly as the
    ``lora`` fine-tuner's backoff training evidence has it. The scores and the ranking (ties: the
    more popular cluster, then the lower id) are :mod:`hybridrec.estimators.counting`'s, the one
    estimator the counting arms and the fine-tuner's evidence use. With ``recent`` (the triples
    of the window's last days) each item also gets the same counts and shares over those days
    (``SuccessorTable.recent``), computed exactly as the ``lora`` fine-tuner's ``recent_days``
    evidence. Decayed ``current`` counts (float ``count``) make every count and share of the
    estimator decayed, and ``context_support`` the context's decayed count (``float64``); the
    recent window's counts are never decayed.
    """
    n = current.n_clusters
    estimator = CountingConfig(kind="backoff", alpha=alpha, w_last=weights[0], w_skip=weights[1],
                               w_pop=weights[2])
    ctx, succ, count = current.context, current.successor, current.count.astype(np.float64)
    decayed = current.count.dtype.kind == "f"
    if decayed:
        # a pair count decayed to float residue is none, as in the estimator's tables
        count = np.where(np.abs(count) < 1e-9, 0.0, count)
    p_last, p_skip, p_pop, pop = successor_shares(current)
    position = popularity_position(pop)
    if recent is not None:
        r_succ, r_count = recent.successor, recent.count.astype(np.float64)
        rp_last, rp_skip, r_pop, _ = successor_shares(recent)
        r_row = _row_of_context(recent.context, n)
    keys = np.arange(n * n, dtype=np.int64)
    keys = keys[keys // n != keys % n]
    context_support = np.zeros(keys.size, dtype=np.float64 if decayed else np.int64)
    # position of each context key in `keys` (keys skip the diagonal c1 == c2)
    row_of_ctx = _row_of_context(ctx, n)
    np.add.at(context_support, row_of_ctx, count if decayed else current.count)
    depth = min(depth, n - 2)
    out_cluster = np.empty((keys.size, depth), dtype=np.int32)
    out_support = np.empty((keys.size, depth))
    out_score = np.empty((keys.size, depth))
    out_shares = np.empty((keys.size, depth, 3))
    out_recent = None if recent is None else np.empty((keys.size, depth, 5))
    for lo in range(0, keys.size, chunk):
        hi = min(lo + chunk, keys.size)
        a, b = keys[lo:hi] // n, keys[lo:hi] % n
        exact = np.zeros((hi - lo, n))
        inside = (row_of_ctx >= lo) & (row_of_ctx < hi)
        exact[row_of_ctx[inside] - lo, succ[inside]] = count[inside]
        # the estimator's scores and ranking (hybridrec.estimators.counting), for every context
        # of the chunk at once
        score, _ = counting_scores(estimator, (exact, p_last[b], p_skip[a], p_pop, position))
        top = top_k(score, position, np.stack([a, b], axis=1), depth)
        out_cluster[lo:hi] = top
        out_support[lo:hi] = np.take_along_axis(exact, top, axis=1)
        out_score[lo:hi] = np.take_along_axis(score, top, axis=1)
        out_shares[lo:hi, :, 0] = np.take_along_axis(p_last[b], top, axis=1)
        out_shares[lo:hi, :, 1] = np.take_along_axis(p_skip[a], top, axis=1)
        out_shares[lo:hi, :, 2] = p_pop[top]
        if out_recent is not None:
            r_exact = np.zeros((hi - lo, n))
            inside = (r_row >= lo) & (r_row < hi)
            r_exact[r_row[inside] - lo, r_succ[inside]] = r_count[inside]
            out_recent[lo:hi, :, 0] = np.take_along_axis(r_exact, top, axis=1)
            out_recent[lo:hi, :, 1] = r_exact.sum(axis=1)[:, None]
            out_recent[lo:hi, :, 2] = np.take_along_axis(rp_last[b], top, axis=1)
            out_recent[lo:hi, :, 3] = np.take_along_axis(rp_skip[a], top, axis=1)
            out_recent[lo:hi, :, 4] = r_pop[top]
    support = out_support.reshape(-1)
    exact_item = support > 0
    return SuccessorTable(
        n_clusters=n,
        keys=keys,
        offsets=np.arange(0, keys.size * depth + 1, depth, dtype=np.int64),
        context_support=context_support,
        cluster=out_cluster.reshape(-1),
        support=support,
        score=out_score.reshape(-1),
        last_seen=np.full(support.size, -1, dtype=np.int64),
        provenance=np.where(exact_item, 0, 1).astype(np.int8),
        source=np.full(support.size, -1, dtype=np.int64),
        similarity=np.where(exact_item, 1.0, 0.0).astype(np.float32),
        shares=out_shares.reshape(-1, 3),
        recent=None if out_recent is None else out_recent.reshape(-1, 5),
    )
