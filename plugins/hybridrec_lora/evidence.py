"""Leak-free training evidence: each example's top successors from strictly earlier data.

Used by the ``lora`` fine-tuner when no ``evidence_fn`` is given, and for its held-out metrics.
Everything is vectorised over examples (no Python loop per row).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hybridrec.types import PROVENANCE_CODES, RECENT_COLUMNS, EvidenceBatch, TransitionSet

DAY = 86400


def daily_backoff_successors(
    history: TransitionSet,
    contexts: np.ndarray,
    as_of: np.ndarray,
    *,
    days: float | None,
    m: int,
    alpha: float,
    weights: tuple[float, float, float],
    recent_days: int | None = None,
    half_life_days: float | None = None,
) -> EvidenceBatch:
    """For each row, the ``m`` best successors of its context by the ``markov-backoff``
    estimator (pair counts smoothed toward the last and first clusters' successor shares; the
    same ranking as the stores' ``backoff`` granularity) over the transitions of ``history``
    before the *start of the day* of the row's ``as_of`` (and within the trailing ``days``).

    Day granularity is what serving sees: a knowledge snapshot is built at a day boundary. Only
    data strictly before each row's ``as_of`` is read. ``support`` is the exact pair count
    (``exact`` provenance) or 0 for an item that comes from the backoff alone (``borrowed``);
    ``last_seen`` is unknown (``-1``), as in the store. ``shares`` and ``context_support``
    are filled exactly as the stores' ``backoff`` granularity fills them, and with
    ``recent_days`` so is ``recent``: the same counts over the last ``recent_days`` before the
    day (at most the ``days`` window), for the same items. With ``half_life_days`` the counts
    (not the recent window's) are decayed to the start of the row's day, as the store's
    ``half_life_days`` decays a snapshot's to its window's end.
    """
    # The one implementation of the estimator (hybridrec.estimators.counting), shared with the
    # counting arms.
    from hybridrec.estimators.counting import CountingConfig, CountTables, counting_scores, top_k

    contexts = np.asarray(contexts, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    shares = np.zeros((contexts.shape[0], m, 3))
    context_support = np.zeros(contexts.shape[0])
    recent = None if recent_days is None else np.zeros((contexts.shape[0], m, len(RECENT_COLUMNS)))
    out = dataclasses.replace(
        EvidenceBatch.empty(contexts, width=m), shares=shares, context_support=context_support,
        recent=recent,
    )
    if contexts.shape[0] == 0 or len(history) == 0 or m == 0:
        return out
    config = CountingConfig(kind="backoff", alpha=alpha, w_last=weights[0], w_skip=weights[1],
                            w_pop=weights[2])
    window = None if days is None or days >= 36500 else max(1, int(np.ceil(days)))
    tables = CountTables(history, window_days=window, half_life_days=half_life_days)
    recent_tables = None
    if recent is not None:
        assert recent_days is not None
        recent_tables = CountTables(history, window_days=min(recent_days, window or recent_days))
    day = as_of // DAY * DAY
    width = min(m, history.n_clusters - 2)
    for start in np.unique(day):
        rows = np.flatnonzero(day == start)
        tables.advance(int(start))
        components = tables.components(contexts[rows])
        scores, position = counting_scores(config, components)
        top = top_k(scores, position, contexts[rows], width)
        support = np.take_along_axis(components[0], top, axis=1)
        _, p_last, p_skip, p_pop, _ = components
        shares[rows, :width, 0] = np.take_along_axis(p_last, top, axis=1)
        shares[rows, :width, 1] = np.take_along_axis(p_skip, top, axis=1)
        shares[rows, :width, 2] = p_pop[top]
        context_support[rows] = components[0].sum(axis=1)
        out.cluster[rows, :width] = top
        out.support[rows, :width] = support
        out.score[rows, :width] = np.take_along_axis(scores, top, axis=1)
        out.provenance[rows, :width] = np.where(
            support > 0, PROVENANCE_CODES["exact"], PROVENANCE_CODES["borrowed"]
        )
        if recent_tables is not None:
            assert recent is not None
            recent_tables.advance(int(start))
            r_counts, r_last, r_skip, r_pop, _ = recent_tables.components(contexts[rows])
            recent[rows, :width, 0] = np.take_along_axis(r_counts, top, axis=1)
            recent[rows, :width, 1] = r_counts.sum(axis=1)[:, None]
            recent[rows, :width, 2] = np.take_along_axis(r_last, top, axis=1)
            recent[rows, :width, 3] = np.take_along_axis(r_skip, top, axis=1)
            recent[rows, :width, 4] = r_pop[top]
    return out


def trailing_top_successors(
    history: TransitionSet,
    contexts: np.ndarray,
    as_of: np.ndarray,
    *,
    days: float | None,
    m: int = 1,
) -> EvidenceBatch:
    """For each row, the ``m`` most frequent successors of its context in ``history`` among the
    transitions with ``as_of - days <= ts < as_of`` (``days=None``: all earlier ones).

    Ties break by the most recent observation, then the lower cluster id. ``support`` is the count,
    ``last_seen`` the time of the latest observation, provenance ``exact``; rows with no earlier
    observation are all ``-1``. Only data strictly before each row's ``as_of`` is read.
    """
    contexts = np.asarray(contexts, dtype=np.int64)
    as_of = np.asarray(as_of, dtype=np.int64)
    q = contexts.shape[0]
    out = EvidenceBatch.empty(contexts, width=m)
    if q == 0 or len(history) == 0 or m == 0:
        return out
    index = _SuccessorIndex(history, int((as_of - int((days or 0) * DAY)).min()), int(as_of.max()))
    # bound memory: each query expands to one candidate per distinct successor of its context
    q_key = contexts[:, 0] * history.n_clusters + contexts[:, 1]
    lo = np.searchsorted(index.pair_ctx, q_key, side="left")
    hi = np.searchsorted(index.pair_ctx, q_key, side="right")
    cumulative = np.cumsum(hi - lo)
    start = 0
    while start < q:
        budget = (cumulative[start - 1] if start else 0) + _MAX_CANDIDATES
        stop = max(start + 1, int(np.searchsorted(cumulative, budget, side="right")))
        part = slice(start, min(stop, q))
        _fill(index, out, part, lo[part], hi[part], as_of[part], days, m)
        start = part.stop
    return out


_MAX_CANDIDATES = 2_000_000


class _SuccessorIndex:
    """Transitions sorted by (context, successor, time) as one int64 search key."""

    def __init__(self, history: TransitionSet, t_min: int, t_max: int) -> None:
        n = history.n_clusters
        self.n = n
        key3 = (history.c1 * n + history.c2) * n + history.c3
        self.t0 = int(min(history.ts.min(), t_min))
        self.span = int(max(history.ts.max(), t_max)) - self.t0 + 2
        if float(n) ** 3 * self.span >= 2**62:
            raise ValueError(f"{n} clusters over {self.span} s overflow the int64 search key")
        self.combined = np.sort(key3 * self.span + (history.ts - self.t0))
        self.sorted_ts = self.combined % self.span + self.t0
        self.pairs = np.unique(key3)  # the distinct (context, successor) pairs seen
        self.pair_ctx = self.pairs // n


def _fill(
    index: _SuccessorIndex,
    out: EvidenceBatch,
    part: slice,
    lo: np.ndarray,
    hi: np.ndarray,
    as_of: np.ndarray,
    days: float | None,
    m: int,
) -> None:
    n, span, span_lo, combined = index.n, index.span, index.t0, index.combined
    q = hi.shape[0]
    counts = hi - lo
    total = int(counts.sum())
    if total == 0:
        return
    qi = np.repeat(np.arange(q), counts)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    cand = index.pairs[np.repeat(lo, counts) + (np.arange(total) - offsets)]
    upper_t = np.clip(as_of[qi] - span_lo, 0, span - 1)
    upper = np.searchsorted(combined, cand * span + upper_t, side="left")
    if days is None:
        lower = np.searchsorted(combined, cand * span, side="left")
    else:
        lower_t = np.clip(as_of[qi] - int(days * DAY) - span_lo, 0, span - 1)
        lower = np.searchsorted(combined, cand * span + lower_t, side="left")
    support = upper - lower
    seen = np.where(support > 0, index.sorted_ts[np.maximum(upper - 1, 0)], -1)
    keep = support > 0
    qi, cand, support, seen = qi[keep], cand[keep], support[keep], seen[keep]
    successor = cand % n
    order = np.lexsort((successor, -seen, -support, qi))
    qi, successor, support, seen = qi[order], successor[order], support[order], seen[order]
    first = np.searchsorted(qi, np.arange(q), side="left")
    slot = np.arange(qi.shape[0]) - first[qi]
    take = slot < m
    rows, cols = qi[take] + part.start, slot[take]
    out.cluster[rows, cols] = successor[take]
    out.support[rows, cols] = support[take]
    out.score[rows, cols] = support[take]
    out.last_seen[rows, cols] = seen[take]
    out.provenance[rows, cols] = PROVENANCE_CODES["exact"]
