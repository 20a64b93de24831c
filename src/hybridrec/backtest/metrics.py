"""Ranking metrics and paired bootstrap confidence intervals.

Scoring works on *hit ranks*: for each scored transition, the 0-based position of the true next
cluster in the served list, or ``-1`` when it is not among the first ``K``. HR@k and NDCG@k
follow from the ranks alone, so one ``int8`` per transition and arm is all the backtest keeps.

Bootstrap resampling unit: **days**. All transitions of a day are scored against the same
served table, so they are correlated; resampling whole days (a cluster bootstrap) keeps that
dependence and gives honest, wider intervals than resampling transitions. Paired intervals
resample the same days for both arms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MISS = -1

#: Pair-support buckets of the report's slices: earlier transitions of the context's exact
#: ``(c1, c2)`` pair before the day (lower bounds; the last bucket is open).
SUPPORT_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0", 0, 1), ("1-4", 1, 5), ("5-49", 5, 50), (">=50", 50, None),
)


def hit_ranks(served: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """0-based rank of ``truth[i]`` in ``served[i]`` (``(m, K)``), ``-1`` if absent; ``int8``."""
    served = np.asarray(served)
    truth = np.asarray(truth)
    if served.ndim != 2 or served.shape[0] != truth.shape[0]:
        raise ValueError(f"served {served.shape} and truth {truth.shape} do not align")
    match = served == truth[:, None]
    found = match.any(axis=1)
    ranks = np.where(found, match.argmax(axis=1), MISS)
    return ranks.astype(np.int8)


def hr_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-transition HR@k indicator (float64 0/1)."""
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)


def ndcg_at(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-transition NDCG@k with one relevant item: ``1/log2(rank+2)`` inside the top k."""
    ranks = np.asarray(ranks, dtype=np.int64)
    inside = (ranks >= 0) & (ranks < k)
    gain = np.zeros(ranks.shape[0], dtype=np.float64)
    gain[inside] = 1.0 / np.log2(ranks[inside] + 2.0)
    return gain


METRICS: dict[str, tuple[str, int]] = {"hr@1": ("hr", 1), "hr@5": ("hr", 5), "ndcg@5": ("ndcg", 5)}


def per_transition(metric: str, ranks: np.ndarray) -> np.ndarray:
    """The per-transition values of ``metric`` (one of :data:`METRICS`)."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    kind, k = METRICS[metric]
    return hr_at(ranks, k) if kind == "hr" else ndcg_at(ranks, k)


def summarize(ranks: np.ndarray) -> dict[str, float]:
    """HR@1, HR@5 and NDCG@5 means (0.0 for an empty input)."""
    if ranks.size == 0:
        return {name: 0.0 for name in METRICS}
    return {name: float(per_transition(name, ranks).mean()) for name in METRICS}


def pair_support_before_day(c1: np.ndarray, c2: np.ndarray, ts: np.ndarray, n_clusters: int,
                            scored: np.ndarray, day_start: np.ndarray) -> np.ndarray:
    """For each scored row ``scored[i]``: how many rows of the same ``(c1, c2)`` pair have a time
    before ``day_start[i]`` (all history; the same for every arm)."""
    if c1.size == 0 or scored.size == 0:
        return np.zeros(scored.shape[0], dtype=np.int64)
    keys = c1.astype(np.int64) * n_clusters + c2.astype(np.int64)
    _, pair = np.unique(keys, return_inverse=True)
    # Dense ranks of the row times and the day starts together keep the sort key small.
    _, when = np.unique(np.concatenate([ts.astype(np.int64), day_start.astype(np.int64)]),
                        return_inverse=True)
    width = int(when.max()) + 2
    pair = pair.reshape(-1).astype(np.int64)
    when = when.reshape(-1).astype(np.int64)
    combined = np.sort(pair * width + when[: ts.shape[0]])
    query = pair[scored] * width
    lo = np.searchsorted(combined, query, side="left")
    hi = np.searchsorted(combined, query + when[ts.shape[0]:], side="left")
    return (hi - lo).astype(np.int64)


def support_slices(ranks: np.ndarray, support: np.ndarray) -> list[dict[str, float | int | str]]:
    """HR@1 and HR@5 of ``ranks`` per :data:`SUPPORT_BUCKETS` bucket of ``support``."""
    out: list[dict[str, float | int | str]] = []
    for label, lo, hi in SUPPORT_BUCKETS:
        mask = (support >= lo) if hi is None else ((support >= lo) & (support < hi))
        n = int(mask.sum())
        stats = summarize(ranks[mask]) if n else {"hr@1": 0.0, "hr@5": 0.0}
        out.append({"bucket": label, "n": n, "hr@1": round(stats["hr@1"], 6),
                    "hr@5": round(stats["hr@5"], 6)})
    return out


@dataclass(frozen=True)
class DayGroups:
    """Which day each scored transition belongs to: ``day_of[i]`` in ``0..n_days-1``."""

    day_of: np.ndarray
    n_days: int

    def sums(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.day_of, weights=values, minlength=self.n_days)

    def counts(self) -> np.ndarray:
        return np.bincount(self.day_of, minlength=self.n_days).astype(np.float64)


def _bootstrap_weights(n_days: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_days)`` multiplicities of days drawn with replacement."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_days, size=(n_boot, n_days))
    weights = np.zeros((n_boot, n_days), dtype=np.float64)
    rows = np.repeat(np.arange(n_boot), n_days)
    np.add.at(weights, (rows, draws.ravel()), 1.0)
    return weights


def bootstrap_ci(
    values: np.ndarray, groups: DayGroups, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean of ``values`` under a day-level bootstrap."""
    if values.size == 0 or groups.n_days == 0:
        return (0.0, 0.0)
    weights = _bootstrap_weights(groups.n_days, n_boot, seed)
    num = weights @ groups.sums(values)
    den = weights @ groups.counts()
    stats = num / np.maximum(den, 1.0)
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def paired_bootstrap(
    a: np.ndarray,
    b: np.ndarray,
    groups: DayGroups,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, tuple[float, float]]:
    """``mean(a) - mean(b)`` over the same transitions, and its day-level paired percentile CI."""
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    if a.size == 0 or groups.n_days == 0:
        return 0.0, (0.0, 0.0)
    delta = float(a.mean() - b.mean())
    weights = _bootstrap_weights(groups.n_days, n_boot, seed)
    den = np.maximum(weights @ groups.counts(), 1.0)
    stats = (weights @ groups.sums(a - b)) / den
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return delta, (float(lo), float(hi))


__all__ = [
    "METRICS",
    "MISS",
    "SUPPORT_BUCKETS",
    "DayGroups",
    "bootstrap_ci",
    "hit_ranks",
    "hr_at",
    "ndcg_at",
    "pair_support_before_day",
    "paired_bootstrap",
    "per_transition",
    "summarize",
    "support_slices",
]
