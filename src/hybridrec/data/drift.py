"""Drift analytics: how fast each context's top successors change.

The paper's statistic (:func:`top5_jaccard`): for each context pair ``(c1, c2)`` observed at least
``min_count`` times in both periods, the Jaccard similarity of its top-``k`` successor sets in the
two periods; averaged over those pairs. Top-``k`` ties in count are broken by the smaller cluster
id, so the statistic is deterministic.

:func:`drift_report` computes it month over month, beside a **noise baseline** (the same statistic
between two random halves of one month: what the statistic shows with no drift at all, given the
sample sizes) and the **decay** of top-``k`` overlap with the lag between months (Fig. 3b of the
paper). The report's JSON keys ``statistic``, ``mean``, ``variance``, ``noise_mean`` and
``months[].{month, mean, pairs, noise_mean}`` are a contract of ``hybridrec drift --json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hybridrec.data.transitions import month_windows, pair_successor_counts
from hybridrec.types import TimeWindow, TransitionSet, ts_to_datetime

__all__ = [
    "DecayPoint",
    "DriftReport",
    "MonthDrift",
    "drift_report",
    "plot_drift",
    "random_halves",
    "top5_jaccard",
    "top_k_jaccard_per_pair",
    "top_k_successors",
]


def top_k_successors(
    transitions: TransitionSet, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The top-``k`` successors of every observed pair.

    Returns ``(pair_keys, totals, top_pair_keys, top_successors)``: ``pair_keys`` (sorted, unique,
    ``c1 * n + c2``) with their total counts ``totals``; and, row by row, each pair's top successors
    (``top_pair_keys[i]`` is the pair of ``top_successors[i]``), ordered by pair, then count
    descending, then cluster id ascending.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = np.int64(transitions.n_clusters)
    pairs, successors, counts = pair_successor_counts(transitions)
    keys = pairs[:, 0] * n + pairs[:, 1]
    order = np.lexsort((successors, -counts, keys))
    keys, successors, counts = keys[order], successors[order], counts[order]
    pair_keys, starts, sizes = np.unique(keys, return_index=True, return_counts=True)
    totals = np.add.reduceat(counts, starts) if counts.size else np.zeros(0, dtype=np.int64)
    rank = np.arange(keys.shape[0]) - np.repeat(starts, sizes)
    top = rank < k
    return pair_keys, totals.astype(np.int64), keys[top], successors[top]


TopK = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def top_k_jaccard_per_pair(
    a: TransitionSet, b: TransitionSet, *, k: int = 5, min_count: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair Jaccard of top-``k`` successor sets, over pairs with ``>= min_count`` in both.

    Returns ``(pairs, values)``: ``pairs`` is ``(m, 2)`` sorted by ``(c1, c2)``; ``values`` in
    ``[0, 1]``.
    """
    if a.n_clusters != b.n_clusters:
        raise ValueError(
            f"transition sets use different catalogs ({a.n_clusters} vs {b.n_clusters} clusters)"
        )
    return _jaccard(top_k_successors(a, k), top_k_successors(b, k), a.n_clusters, min_count)


def _group_sizes(sorted_keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_keys, wanted, side="right") - np.searchsorted(
        sorted_keys, wanted, side="left"
    )


def _jaccard(top_a: TopK, top_b: TopK, n_clusters: int, min_count: int) -> tuple[np.ndarray, np.ndarray]:
    n = np.int64(n_clusters)
    keys_a, totals_a, top_keys_a, top_succ_a = top_a
    keys_b, totals_b, top_keys_b, top_succ_b = top_b
    eligible = np.intersect1d(keys_a[totals_a >= min_count], keys_b[totals_b >= min_count])
    if eligible.size == 0:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float64)
    in_a = np.isin(top_keys_a, eligible)
    in_b = np.isin(top_keys_b, eligible)
    size_a = _group_sizes(top_keys_a[in_a], eligible)
    size_b = _group_sizes(top_keys_b[in_b], eligible)
    common = np.intersect1d(
        top_keys_a[in_a] * n + top_succ_a[in_a], top_keys_b[in_b] * n + top_succ_b[in_b]
    ) // n
    inter = _group_sizes(common, eligible)
    values = inter / (size_a + size_b - inter)
    c1, c2 = np.divmod(eligible, n)
    return np.stack([c1, c2], axis=1), values.astype(np.float64)


def top5_jaccard(
    a: TransitionSet, b: TransitionSet, *, k: int = 5, min_count: int = 5
) -> tuple[float | None, int]:
    """Mean Jaccard of each pair's top-``k`` successors in ``a`` and ``b``.

    Over pairs with at least ``min_count`` observations in both; returns ``(mean, pairs)``, with
    ``mean`` None when no pair qualifies.
    """
    _, values = top_k_jaccard_per_pair(a, b, k=k, min_count=min_count)
    if values.size == 0:
        return None, 0
    return float(values.mean()), int(values.size)


def random_halves(transitions: TransitionSet, seed: int | Sequence[int]) -> tuple[TransitionSet, TransitionSet]:
    """Split ``transitions`` into two random halves (sizes ``n // 2`` and ``n - n // 2``)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(transitions))
    half = len(transitions) // 2
    return (
        transitions.take(np.sort(perm[:half])),
        transitions.take(np.sort(perm[half:])),
    )


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


class MonthDrift(BaseModel):
    """One month against the month before it, and the noise baseline within the month."""

    model_config = ConfigDict(extra="forbid")

    month: str
    previous: str
    transitions: int
    mean: float | None
    variance: float | None
    pairs: int
    noise_mean: float | None
    noise_pairs: int
    matched_mean: float | None = None
    matched_pairs: int = 0


class DecayPoint(BaseModel):
    """Mean top-``k`` overlap between months ``lag_months`` apart (pooled over pairs)."""

    model_config = ConfigDict(extra="forbid")

    k: int
    lag_months: int
    mean: float | None
    pairs: int
    month_pairs: int


class DriftReport(BaseModel):
    """What ``hybridrec drift`` prints (see the module docstring for the contract keys).

    ``mean`` and ``variance`` are pooled over every (month, pair) Jaccard value of the listed
    months (the paper's "0.17, variance 0.07" is of this kind); ``noise_mean`` pools the noise
    baseline the same way. ``month_mean`` is the unweighted mean of the monthly means.
    """

    model_config = ConfigDict(extra="forbid")

    statistic: str = "top5_successor_jaccard"
    dataset: str
    k: int
    min_count: int
    seed: int
    min_rating: float | None
    clusters: int
    mean: float | None
    variance: float | None
    pairs: int
    month_mean: float | None
    noise_mean: float | None
    noise_variance: float | None
    noise_pairs: int
    matched_mean: float | None = None
    matched_pairs: int = 0
    months: list[MonthDrift]
    decay: list[DecayPoint] = Field(default_factory=list)
    noise_by_k: dict[str, float | None] = Field(default_factory=dict)


def _month_label(window: TimeWindow) -> str:
    return window.start.strftime("%Y-%m")


def _pooled(values: list[np.ndarray]) -> tuple[float | None, float | None, int]:
    if not values:
        return None, None, 0
    pooled = np.concatenate(values)
    if pooled.size == 0:
        return None, None, 0
    return float(pooled.mean()), float(pooled.var()), int(pooled.size)


def _noise_values(
    month: TransitionSet, window: TimeWindow, *, k: int, min_count: int, seed: int
) -> np.ndarray:
    # Seeded per month so a month's baseline does not depend on which other months are listed.
    first, second = random_halves(month, (seed, window.start.year, window.start.month))
    return top_k_jaccard_per_pair(first, second, k=k, min_count=min_count)[1]


def _matched_values(
    before: TransitionSet, here: TransitionSet, window: TimeWindow, *, k: int, min_count: int, seed: int
) -> np.ndarray:
    half_before, _ = random_halves(before, (seed, window.start.year, window.start.month, 1))
    half_here, _ = random_halves(here, (seed, window.start.year, window.start.month, 2))
    return top_k_jaccard_per_pair(half_before, half_here, k=k, min_count=min_count)[1]


def drift_report(
    transitions: TransitionSet,
    *,
    dataset: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    k: int = 5,
    min_count: int = 5,
    seed: int = 0,
    decay_ks: Sequence[int] = (1, 3, 5, 10),
    max_lag: int = 6,
    min_rating: float | None = None,
) -> DriftReport:
    """Month-over-month top-``k`` Jaccard for every month in ``[start, end)`` with a previous month.

    ``start``/``end`` default to the span of ``transitions``; the first month of the data has no
    previous month and only serves as the reference of the second. Decay points pool, for each
    lag, every pair of months that are that far apart and both lie in ``[start, end)`` (the
    month before ``start`` included as a reference).
    """
    if len(transitions) == 0:
        raise ValueError("no transitions: nothing to measure drift on")
    first_ts = ts_to_datetime(int(transitions.ts[0]))
    last_ts = ts_to_datetime(int(transitions.ts[-1]) + 1)
    lo = start if start is not None else first_ts
    hi = end if end is not None else last_ts
    all_months = month_windows(first_ts, last_ts)
    wanted = [w for w in all_months if w.end > lo and w.start < hi]
    slices = {w.start: transitions.window(w) for w in all_months}
    months: list[MonthDrift] = []
    values: list[np.ndarray] = []
    noise: list[np.ndarray] = []
    matched: list[np.ndarray] = []
    for window in wanted:
        index = all_months.index(window)
        if index == 0:
            continue
        previous = all_months[index - 1]
        here, before = slices[window.start], slices[previous.start]
        _, v = top_k_jaccard_per_pair(before, here, k=k, min_count=min_count)
        nv = _noise_values(here, window, k=k, min_count=min_count, seed=seed)
        mv = _matched_values(before, here, window, k=k, min_count=min_count, seed=seed)
        values.append(v)
        noise.append(nv)
        matched.append(mv)
        months.append(
            MonthDrift(
                month=_month_label(window),
                previous=_month_label(previous),
                transitions=len(here),
                mean=float(v.mean()) if v.size else None,
                variance=float(v.var()) if v.size else None,
                pairs=int(v.size),
                noise_mean=float(nv.mean()) if nv.size else None,
                noise_pairs=int(nv.size),
                matched_mean=float(mv.mean()) if mv.size else None,
                matched_pairs=int(mv.size),
            )
        )
    mean, variance, pairs = _pooled(values)
    noise_mean, noise_variance, noise_pairs = _pooled(noise)
    matched_mean, _, matched_pairs = _pooled(matched)
    monthly = [m.mean for m in months if m.mean is not None]

    span = [w for w in all_months if w.end > lo and w.start < hi]
    first_index = max(0, all_months.index(span[0]) - 1) if span else 0
    reference = all_months[first_index : all_months.index(span[-1]) + 1] if span else []
    decay: list[DecayPoint] = []
    noise_by_k: dict[str, float | None] = {}
    n = transitions.n_clusters
    for kk in decay_ks:
        tops = [top_k_successors(slices[w.start], kk) for w in reference]
        for lag in range(1, max_lag + 1):
            lag_values = [
                _jaccard(tops[i], tops[i + lag], n, min_count)[1]
                for i in range(len(reference) - lag)
            ]
            lag_mean, _, lag_pairs = _pooled(lag_values)
            decay.append(
                DecayPoint(
                    k=kk, lag_months=lag, mean=lag_mean, pairs=lag_pairs,
                    month_pairs=len(lag_values),
                )
            )
        kk_noise = [
            _noise_values(slices[w.start], w, k=kk, min_count=min_count, seed=seed) for w in span
        ]
        noise_by_k[str(kk)] = _pooled(kk_noise)[0]

    return DriftReport(
        dataset=dataset,
        k=k,
        min_count=min_count,
        seed=seed,
        min_rating=min_rating,
        clusters=transitions.n_clusters,
        mean=mean,
        variance=variance,
        pairs=pairs,
        month_mean=float(np.mean(monthly)) if monthly else None,
        noise_mean=noise_mean,
        noise_variance=noise_variance,
        noise_pairs=noise_pairs,
        matched_mean=matched_mean,
        matched_pairs=matched_pairs,
        months=months,
        decay=decay,
        noise_by_k=noise_by_k,
    )


def plot_drift(report: DriftReport, path: Path) -> Path:
    """Two panels: monthly Jaccard beside its noise baseline, and overlap decay by lag and k."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [m.month for m in report.months]
    x = np.arange(len(labels))

    def series(values: list[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    left.plot(x, series([m.mean for m in report.months]), "o-", label="month over month")
    left.plot(x, series([m.noise_mean for m in report.months]), "s--", label="noise (random halves)")
    left.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    left.set_ylim(0, 1)
    left.set_ylabel(f"top-{report.k} successor Jaccard")
    left.set_title(f"{report.dataset}: month-over-month drift (>= {report.min_count} obs.)")
    left.legend()

    by_k: dict[int, list[DecayPoint]] = {}
    for point in report.decay:
        by_k.setdefault(point.k, []).append(point)
    for kk, points in sorted(by_k.items()):
        line = right.plot(
            [p.lag_months for p in points], series([p.mean for p in points]), "o-", label=f"top-{kk}"
        )
        noise = report.noise_by_k.get(str(kk))
        if noise is not None:
            right.axhline(noise, color=line[0].get_color(), linestyle=":", linewidth=1)
    right.set_xlabel("lag (months)")
    right.set_ylabel("top-k overlap (Jaccard)")
    right.set_ylim(0, 1)
    right.set_title("overlap decay (dotted: noise baseline)")
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report_dict(report: DriftReport) -> dict[str, Any]:
    """The report as a JSON-ready dict."""
    return report.model_dump(mode="json")
