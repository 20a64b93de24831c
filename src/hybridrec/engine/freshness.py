"""The counterfactual refresh gain: what fresher knowledge would have bought on the last days.

A policy that refreshes on a calendar pays for refreshes that change nothing; one that refreshes
when the served lists' hit rate drops acts on noise (a few days of traffic move HR@5 by a
percentage point on their own). :func:`refresh_gain` measures the value of fresh evidence
directly and paired: on the transitions of the last ``days`` before ``data_until`` it scores a
counting proxy built from the data before the served knowledge's end (what the served table
knows) and the same proxy built from all data before those days (what a refresh would have
known), and returns the difference of their HR@k. Both are out of sample, and on the same
transitions, so the difference carries only the rows whose outcome the newer data changed.

The proxy is of the family of counting estimators the reference stack retrieves candidates
with: pair counts, Dirichlet-smoothed towards the successor shares of the last cluster and of the
first (skip-gram) cluster, popularity breaking ties. It stands in for the learned table: a
refresh changes the model's output only through the evidence, and the evidence is these counts.
Its constants are fixed (those ML-1M's validation days chose for ``markov-best``), not tuned per
data set: the signal is a difference between two builds of the same proxy.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from hybridrec.types import TransitionSet
from hybridrec.types.base import datetime_to_ts

#: Days of recent transitions the refresh gain is measured on.
FRESHNESS_DAYS = 3.0
#: The proxy's smoothing mass and the weights of the last and the first cluster's shares.
PROXY_ALPHA = 64.0
PROXY_WEIGHTS = (0.7, 0.3)
#: Largest catalog the proxy is built for: its successor-share tables are dense ``n x n``
#: (2,048 clusters: 4.2M cells, 34 MB each). Larger catalogs get no signal.
MAX_FRESHNESS_CLUSTERS = 2048
#: Cells of one block of scores (contexts x clusters) ranked at a time: bounded memory.
_BLOCK_CELLS = 2_000_000


def _shares(keys: np.ndarray, n: int) -> np.ndarray:
    """Row-normalised ``n x n`` successor shares of ``keys = a * n + b`` (zero rows stay 0)."""
    table = np.bincount(keys, minlength=n * n).reshape(n, n).astype(np.float64)
    total = table.sum(axis=1, keepdims=True)
    return np.divide(table, total, out=np.zeros_like(table), where=total > 0)


def proxy_hits(transitions: TransitionSet, cutoff: int, lo: int, hi: int, k: int = 5) -> np.ndarray:
    """Whether each transition of rows ``[lo, hi)`` has its next cluster in the top ``k`` of the
    counting proxy built from rows ``[0, cutoff)`` (``cutoff <= lo``: out of sample). Context
    clusters are never ranked; ties go to the more popular cluster, then the lower id. Needs
    at most :data:`MAX_FRESHNESS_CLUSTERS` clusters."""
    if cutoff > lo:
        raise ValueError(f"proxy built from rows up to {cutoff} scores rows from {lo}: not out of sample")
    n = transitions.n_clusters
    if n > MAX_FRESHNESS_CLUSTERS:
        raise ValueError(f"{n} clusters: the freshness proxy supports at most {MAX_FRESHNESS_CLUSTERS:,}")
    c1, c2, c3 = transitions.c1, transitions.c2, transitions.c3
    q1, q2, q3 = c1[lo:hi], c2[lo:hi], c3[lo:hi]
    hits = np.zeros(q1.size, dtype=bool)
    if not q1.size:
        return hits
    h1, h2, h3 = c1[:cutoff], c2[:cutoff], c3[:cutoff]
    last, skip = _shares(h2 * n + h3, n), _shares(h1 * n + h3, n)
    pop = np.bincount(h3, minlength=n).astype(np.float64)
    tie = (pop / max(pop.sum(), 1.0) + (n - np.arange(n)) / (n * n)) * 1e-6
    w_last, w_skip = PROXY_WEIGHTS
    codes, row = np.unique(q1 * n + q2, return_inverse=True)
    hist = h1 * n + h2
    step = max(1, _BLOCK_CELLS // n)
    for a in range(0, codes.size, step):
        block = codes[a:a + step]
        where = np.searchsorted(block, hist)
        seen = (where < block.size) & (block[np.minimum(where, block.size - 1)] == hist)
        pair = np.bincount(where[seen] * n + h3[seen], minlength=block.size * n).reshape(block.size, n)
        u1, u2 = block // n, block % n
        score = pair + PROXY_ALPHA * (w_last * last[u2] + w_skip * skip[u1]) + tie[None, :]
        score[np.arange(block.size), u1] = -np.inf
        score[np.arange(block.size), u2] = -np.inf
        mine = np.flatnonzero((row >= a) & (row < a + block.size))
        rows = score[row[mine] - a]
        truth = rows[np.arange(mine.size), q3[mine]]
        hits[mine] = (rows > truth[:, None]).sum(axis=1) < k
    return hits


def refresh_gain(
    transitions: TransitionSet,
    *,
    knowledge_until: datetime | None,
    data_until: datetime,
    days: float = FRESHNESS_DAYS,
    k: int = 5,
) -> tuple[float, float] | None:
    """``(gain, standard error)``: the HR@``k`` that refreshing knowledge built from the data
    before ``knowledge_until`` would have bought on the last ``days`` before ``data_until``
    (module docstring): the counting proxy built from all data before those days minus the
    proxy built from the data before ``knowledge_until``, on those days' transitions, with the
    standard error of that paired difference. ``(0.0, 0.0)`` when the knowledge already covers
    the data before those days (nothing newer to measure out of sample); None when there is no
    knowledge, the days hold no transition, or the catalog has more than
    :data:`MAX_FRESHNESS_CLUSTERS` clusters."""
    if knowledge_until is None or transitions.n_clusters > MAX_FRESHNESS_CLUSTERS:
        return None
    ts = transitions.ts
    start = data_until - timedelta(days=days)
    lo = int(np.searchsorted(ts, datetime_to_ts(start), side="left"))
    hi = int(np.searchsorted(ts, datetime_to_ts(data_until), side="left"))
    if hi <= lo:
        return None
    if knowledge_until >= start:
        return 0.0, 0.0
    stale = int(np.searchsorted(ts, datetime_to_ts(knowledge_until), side="left"))
    diff = (proxy_hits(transitions, lo, lo, hi, k).astype(np.float64)
            - proxy_hits(transitions, stale, lo, hi, k))
    n = diff.size
    se = float(np.sqrt(diff.var(ddof=1) / n)) if n > 1 else 0.0
    return float(diff.mean()), se


__all__ = ["FRESHNESS_DAYS", "MAX_FRESHNESS_CLUSTERS", "PROXY_ALPHA", "PROXY_WEIGHTS", "proxy_hits", "refresh_gain"]
