"""Transition extraction (docs/protocol.md) and time-window helpers, vectorised over numpy arrays.

The protocol, step by step (:func:`extract_transitions`):

1. **Positive engagement.** Keep interactions with ``rating >= min_rating``; ``min_rating=None``
   keeps every row. Unrated rows (``NaN`` rating, implicit-feedback logs) count as positive.
2. **Order.** Per user, order interactions by ``(timestamp, item)``, stably. Many interactions
   share a timestamp (on ML-1M 66% of positive ratings share their second with another rating of
   the same user), so the item breaks ties. The item key is the dense item *code*; loaders assign
   codes in sorted order of the item identifier (see :mod:`hybridrec.data.io`), so ties are
   ordered by item identifier, which does not depend on the order of the input rows.
3. **Clusters.** Map items to cluster ids through ``item_cluster``; items with cluster ``-1``
   (unassigned) are dropped before the next step.
4. **De-duplication.** Collapse consecutive repeats of the same cluster within a user.
5. **Triples.** Every three consecutive entries ``(c1, c2, c3)`` of a user's collapsed sequence with
   ``c3 not in {c1, c2}`` is a transition; its time is the timestamp of the ``c3`` interaction.

The result is a :class:`~hybridrec.types.TransitionSet` sorted by ``(ts, user, c1, c2, c3)``, a
total order on its rows, so extraction is invariant to the order of the input rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from hybridrec.types import (
    UTC,
    InteractionTable,
    TimeWindow,
    TransitionSet,
    to_utc,
)

SECONDS_PER_DAY = 86_400

__all__ = [
    "SECONDS_PER_DAY",
    "DailyCounts",
    "daily_counts",
    "day_index",
    "day_windows",
    "extract_transitions",
    "extract_transitions_arrays",
    "lexicographic_order",
    "month_windows",
    "pair_successor_counts",
    "positive_mask",
    "sort_transitions",
    "split_windows",
    "window_counts",
]


def positive_mask(rating: np.ndarray, min_rating: float | None) -> np.ndarray:
    """Boolean mask of positive-engagement rows: ``rating >= min_rating`` or unrated (NaN)."""
    rating = np.asarray(rating, dtype=np.float64)
    if min_rating is None:
        return np.ones(rating.shape[0], dtype=bool)
    return (rating >= min_rating) | np.isnan(rating)


def lexicographic_order(*columns: np.ndarray) -> np.ndarray:
    """Stable order of rows by ``columns`` (most significant first), for integer columns.

    Columns are offset to start at 0 and packed into as few int64 words as their ranges allow
    (usually one), so a single stable argsort replaces a many-key ``np.lexsort``.
    """
    if not columns or columns[0].shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    limit = 1 << 62
    words: list[np.ndarray] = []
    word: np.ndarray | None = None
    span = 1
    for column in columns:
        low = int(column.min())
        size = int(column.max()) - low + 1
        shifted = column.astype(np.int64) - low
        if word is not None and span * size < limit:
            word = word * size + shifted
            span *= size
        else:
            if word is not None:
                words.append(word)
            word, span = shifted, size
    assert word is not None
    words.append(word)
    if len(words) == 1:
        return np.argsort(words[0], kind="stable")
    return np.lexsort(words[::-1])


def sort_transitions(
    c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, ts: np.ndarray, user: np.ndarray, n_clusters: int
) -> TransitionSet:
    """Build a :class:`TransitionSet` from unsorted rows, sorted by ``(ts, user, c1, c2, c3)``."""
    order = lexicographic_order(ts, user, c1, c2, c3)
    return TransitionSet(
        c1=c1[order], c2=c2[order], c3=c3[order], ts=ts[order], user=user[order],
        n_clusters=n_clusters,
    )


def extract_transitions_arrays(
    user: np.ndarray,
    item: np.ndarray,
    ts: np.ndarray,
    rating: np.ndarray | None,
    item_cluster: np.ndarray,
    n_clusters: int,
    *,
    min_rating: float | None = 4.0,
) -> TransitionSet:
    """:func:`extract_transitions` over bare arrays (``rating=None`` means all rows unrated).

    ``user`` and ``item`` are non-negative integer codes; ``item_cluster[item]`` is the item's
    cluster id in ``[0, n_clusters)`` or ``-1``. Runs in O(n log n) with numpy only.
    """
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    item_cluster = np.asarray(item_cluster, dtype=np.int64)
    if not (user.shape == item.shape == ts.shape):
        raise ValueError(
            f"user, item and ts must have equal shapes, got {user.shape}, {item.shape}, {ts.shape}"
        )
    if item.size and (int(item.min()) < 0 or int(item.max()) >= item_cluster.shape[0]):
        raise ValueError(
            f"item codes must lie in [0, {item_cluster.shape[0]}) (the length of item_cluster)"
        )
    if item_cluster.size and int(item_cluster.max()) >= n_clusters:
        raise ValueError(f"item_cluster holds ids >= n_clusters ({n_clusters})")

    keep = np.ones(user.shape[0], dtype=bool) if rating is None else positive_mask(rating, min_rating)
    cluster = item_cluster[item]
    keep &= cluster >= 0
    if not keep.all():
        user, item, ts, cluster = user[keep], item[keep], ts[keep], cluster[keep]
    if user.shape[0] < 3:
        return TransitionSet.empty(n_clusters)

    # Per user, by (timestamp, item code); the cluster key only makes equal-(user, ts, item) rows
    # (true duplicates) order identically whatever the input order.
    order = lexicographic_order(user, ts, item)
    user, ts, cluster = user[order], ts[order], cluster[order]

    # Collapse consecutive repeats: keep the first row of each run of equal (user, cluster).
    first = np.empty(user.shape[0], dtype=bool)
    first[0] = True
    np.not_equal(user[1:], user[:-1], out=first[1:])
    first[1:] |= cluster[1:] != cluster[:-1]
    user, ts, cluster = user[first], ts[first], cluster[first]
    if user.shape[0] < 3:
        return TransitionSet.empty(n_clusters)

    # Triples end at position i >= 2 of the collapsed sequence with all three rows of one user.
    # After collapsing, c1 != c2 and c2 != c3 hold by construction; novelty adds c3 != c1.
    c1, c2, c3 = cluster[:-2], cluster[1:-1], cluster[2:]
    valid = (user[:-2] == user[2:]) & (c3 != c1)
    return sort_transitions(
        c1[valid], c2[valid], c3[valid], ts[2:][valid], user[2:][valid], n_clusters
    )


def extract_transitions(
    interactions: InteractionTable,
    item_cluster: np.ndarray,
    n_clusters: int,
    *,
    min_rating: float | None = 4.0,
) -> TransitionSet:
    """All transitions of ``interactions`` under the protocol in the module docstring."""
    return extract_transitions_arrays(
        interactions.user,
        interactions.item,
        interactions.ts,
        interactions.rating,
        item_cluster,
        n_clusters,
        min_rating=min_rating,
    )


# ---------------------------------------------------------------------------------------------
# Days and windows
# ---------------------------------------------------------------------------------------------


def day_index(ts: np.ndarray) -> np.ndarray:
    """UTC day number (days since 1970-01-01) of each Unix-second timestamp."""
    return np.floor_divide(np.asarray(ts, dtype=np.int64), SECONDS_PER_DAY)


@dataclass(frozen=True)
class DailyCounts:
    """Transitions per UTC day: ``days`` (``datetime64[D]``, ascending, only days with data)."""

    days: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return int(self.days.shape[0])

    def as_dict(self) -> dict[str, int]:
        return {str(d): int(c) for d, c in zip(self.days, self.counts, strict=True)}


def daily_counts(transitions: TransitionSet) -> DailyCounts:
    """Number of transitions on each UTC day that has any (sorted input makes this one pass)."""
    days, counts = np.unique(day_index(transitions.ts), return_counts=True)
    return DailyCounts(days=days.astype("datetime64[D]"), counts=counts.astype(np.int64))


def _utc_midnight(value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        return to_utc(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def day_windows(start: date | datetime, end: date | datetime, days: int = 1) -> list[TimeWindow]:
    """Consecutive windows ``[start + i*days, start + (i+1)*days)`` covering ``[start, end)``.

    The last window is cut at ``end``.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    lo, hi = _utc_midnight(start), _utc_midnight(end)
    out: list[TimeWindow] = []
    step = timedelta(days=days)
    while lo < hi:
        out.append(TimeWindow(start=lo, end=min(lo + step, hi)))
        lo += step
    return out


def _month_start(value: datetime) -> datetime:
    return datetime(value.year, value.month, 1, tzinfo=UTC)


def _next_month(value: datetime) -> datetime:
    return datetime(value.year + value.month // 12, value.month % 12 + 1, 1, tzinfo=UTC)


def month_windows(start: date | datetime, end: date | datetime) -> list[TimeWindow]:
    """Calendar-month windows (UTC) from the month containing ``start`` to the one containing
    the last instant before ``end``."""
    lo, hi = _month_start(_utc_midnight(start)), _utc_midnight(end)
    out: list[TimeWindow] = []
    while lo < hi:
        nxt = _next_month(lo)
        out.append(TimeWindow(start=lo, end=nxt))
        lo = nxt
    return out


def split_windows(
    transitions: TransitionSet, windows: list[TimeWindow]
) -> Iterator[tuple[TimeWindow, TransitionSet]]:
    """Each window with the transitions whose time lies in it (binary search on sorted time)."""
    for window in windows:
        yield window, transitions.window(window)


def window_counts(transitions: TransitionSet, windows: list[TimeWindow]) -> np.ndarray:
    """Number of transitions in each window, computed with one ``searchsorted``."""
    if not windows:
        return np.zeros(0, dtype=np.int64)
    starts = np.array([w.start_ts for w in windows], dtype=np.int64)
    ends = np.array([w.end_ts for w in windows], dtype=np.int64)
    lo = np.searchsorted(transitions.ts, starts, side="left")
    hi = np.searchsorted(transitions.ts, ends, side="left")
    return (hi - lo).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------


def pair_successor_counts(
    transitions: TransitionSet,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``(c1, c2, c3)`` triples and how often each occurs.

    Returns ``(pairs, successors, counts)``: ``pairs`` is ``(m, 2)``, sorted by ``(c1, c2, c3)``.
    """
    n = np.int64(transitions.n_clusters)
    key = (transitions.c1 * n + transitions.c2) * n + transitions.c3
    uniq, counts = np.unique(key, return_counts=True)
    pair_key, successors = np.divmod(uniq, n)
    c1, c2 = np.divmod(pair_key, n)
    return np.stack([c1, c2], axis=1), successors, counts.astype(np.int64)

