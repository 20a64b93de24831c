"""Synthetic catalogs and transition sets for the knowledge-store tests, plus brute-force
oracles written with plain Python loops (deliberately unlike the vectorised code under test)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np

from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet

T0 = datetime(2000, 6, 1, tzinfo=UTC)
WORDS = ("action", "comedy", "drama", "horror", "romance", "thriller", "war", "western")


def catalog(n: int) -> ClusterCatalog:
    """``n`` clusters described by distinct combinations of up to three genre words."""
    descriptions: list[str] = []
    for size in (1, 2, 3):
        for i in range(len(WORDS)):
            for j in range(i + 1, len(WORDS)) if size > 1 else [None]:
                for k in (range(j + 1, len(WORDS)) if size > 2 and j is not None else [None]):
                    words = [WORDS[i]] + ([WORDS[j]] if j is not None else [])
                    words += [WORDS[k]] if k is not None else []
                    descriptions.append(" ".join(words))
                    if len(descriptions) == n:
                        return ClusterCatalog.from_descriptions(descriptions)
    raise ValueError(f"at most {len(descriptions)} synthetic clusters")


def transitions(
    n_clusters: int, n: int, seed: int, *, days: float = 60.0, skew: float = 1.5
) -> TransitionSet:
    """``n`` random transitions over ``days`` days from T0; popularity is Zipf-like."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** skew
    weights /= weights.sum()
    c1 = rng.choice(n_clusters, n, p=weights)
    c2 = (c1 + 1 + rng.choice(n_clusters - 1, n, p=_renorm(weights[1:]))) % n_clusters
    c3 = rng.choice(n_clusters, n, p=weights)
    clash = (c3 == c1) | (c3 == c2)
    while clash.any():
        c3[clash] = rng.integers(0, n_clusters, int(clash.sum()))
        clash = (c3 == c1) | (c3 == c2)
    start = int(T0.timestamp())
    ts = np.sort(rng.integers(start, start + int(days * 86400), n))
    return TransitionSet(c1, c2, c3, ts, rng.integers(0, 50, n), n_clusters)


def _renorm(p: np.ndarray) -> np.ndarray:
    return p / p.sum()


def window(start_day: float, days: float) -> TimeWindow:
    start = T0 + timedelta(days=start_day)
    return TimeWindow(start=start, end=start + timedelta(days=days))


def recount(rows: TransitionSet, win: TimeWindow) -> dict[tuple[int, int], Counter[int]]:
    """Successor counts per context inside ``win``, one Python row at a time."""
    out: dict[tuple[int, int], Counter[int]] = defaultdict(Counter)
    for i in range(len(rows)):
        if win.start_ts <= int(rows.ts[i]) < win.end_ts:
            out[(int(rows.c1[i]), int(rows.c2[i]))][int(rows.c3[i])] += 1
    return out


def last_seen(rows: TransitionSet, win: TimeWindow) -> dict[tuple[int, int, int], int]:
    out: dict[tuple[int, int, int], int] = {}
    for i in range(len(rows)):
        t = int(rows.ts[i])
        if win.start_ts <= t < win.end_ts:
            key = (int(rows.c1[i]), int(rows.c2[i]), int(rows.c3[i]))
            out[key] = max(out.get(key, t), t)
    return out
