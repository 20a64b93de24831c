"""Non-LLM baselines: ``markov-all``, ``markov-recent`` and ``popularity``.

Markov arms keep successor counts per observed context as a dense ``(pairs, n)`` ``int32`` array
(about 40 MB on ML-1M: 33k pairs x 301 clusters) updated incrementally, one ``np.add.at`` per day;
``markov-recent`` also subtracts the day leaving its window. The served list for ``(c1, c2)`` is
the pair's successors by descending count (ties: lower cluster id first), then filled up from
successor popularity in the same window (ties: lower id), never repeating a cluster and never
containing ``c1`` or ``c2``. A context whose pair has no successor in the window is *not covered*:
its whole list is the popularity backoff.

The pair index is the set of contexts that occur anywhere in the transition set: an index only
(its counts start at zero), so knowing a pair exists later gives no information before its time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from hybridrec.backtest.protocol import (
    Arm,
    Day,
    Served,
    fill_lists,
    popularity_order,
)
from hybridrec.types import TransitionSet, datetime_to_ts


class SuccessorCounts:
    """Counts of ``c3`` after each known context ``(c1, c2)`` and overall, over a set of rows."""

    def __init__(self, transitions: TransitionSet) -> None:
        n = transitions.n_clusters
        self.n = n
        keys = transitions.c1 * n + transitions.c2
        self.pair_keys, self.pair_of_row = np.unique(keys, return_inverse=True)
        self.counts = np.zeros((self.pair_keys.shape[0], n), dtype=np.int32)
        self.popularity = np.zeros(n, dtype=np.int64)
        self.pair_total = np.zeros(self.pair_keys.shape[0], dtype=np.int64)

    def add(self, transitions: TransitionSet, lo: int, hi: int, sign: int = 1) -> None:
        """Add (``sign=1``) or remove (``-1``) rows ``[lo, hi)`` of the indexed transitions."""
        if hi <= lo:
            return
        pairs = self.pair_of_row[lo:hi]
        c3 = transitions.c3[lo:hi]
        np.add.at(self.counts, (pairs, c3), sign)
        np.add.at(self.popularity, c3, sign)
        np.add.at(self.pair_total, pairs, sign)

    def pairs_of(self, contexts: np.ndarray) -> np.ndarray:
        """Index of each context's pair, ``-1`` for contexts never seen in the data."""
        keys = contexts[:, 0] * self.n + contexts[:, 1]
        pos = np.searchsorted(self.pair_keys, keys)
        pos = np.minimum(pos, self.pair_keys.shape[0] - 1)
        known = self.pair_keys[pos] == keys if self.pair_keys.size else np.zeros(keys.shape, bool)
        return np.where(known, pos, -1)

    def rank(self, contexts: np.ndarray, k: int) -> Served:
        """Top-``k`` successors per context, filled up from popularity (see module doc)."""
        m = contexts.shape[0]
        pairs = self.pairs_of(contexts)
        ids = np.full((m, k), -1, dtype=np.int64)
        known = pairs >= 0
        covered = np.zeros(m, dtype=bool)
        if known.any():
            rows = np.nonzero(known)[0]
            counts = self.counts[pairs[rows]]
            order = np.argsort(-counts, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(counts, order, axis=1)
            ids[rows] = np.where(top > 0, order, -1)
            covered[rows] = self.pair_total[pairs[rows]] > 0
        ids = fill_lists(ids, contexts, popularity_order(self.popularity))
        return Served(ids=ids, covered=covered)


class MarkovArm(Arm):
    """Second-order Markov successor counts over all history or a trailing window of days."""

    def __init__(self, name: str, transitions: TransitionSet, window_days: int | None = None) -> None:
        super().__init__(name)
        self.window_days = window_days
        self.state = SuccessorCounts(transitions)
        self._transitions = transitions
        self._added = 0
        self._removed = 0

    def _advance(self, until: datetime) -> None:
        ts = self._transitions.ts
        hi = int(np.searchsorted(ts, datetime_to_ts(until), side="left"))
        self.state.add(self._transitions, self._added, hi, +1)
        self._added = hi
        if self.window_days is not None:
            cut = int(
                np.searchsorted(ts, datetime_to_ts(until - timedelta(days=self.window_days)), side="left")
            )
            self.state.add(self._transitions, self._removed, cut, -1)
            self._removed = max(self._removed, cut)

    def begin(self, history: TransitionSet, start: datetime) -> None:
        self._advance(start)

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        return self.state.rank(contexts, k)

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        self._advance(day.end)
        return []


class PopularityArm(Arm):
    """The same list for every context: successor popularity over all history, minus c1, c2."""

    def __init__(self, name: str, transitions: TransitionSet) -> None:
        super().__init__(name)
        self._transitions = transitions
        self.popularity = np.zeros(transitions.n_clusters, dtype=np.int64)
        self._added = 0

    def _advance(self, until: datetime) -> None:
        hi = int(np.searchsorted(self._transitions.ts, datetime_to_ts(until), side="left"))
        np.add.at(self.popularity, self._transitions.c3[self._added : hi], 1)
        self._added = hi

    def begin(self, history: TransitionSet, start: datetime) -> None:
        self._advance(start)

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        empty = np.full((contexts.shape[0], k), -1, dtype=np.int64)
        ids = fill_lists(empty, contexts, popularity_order(self.popularity))
        # The popularity table answers every context by design: its list is not a fallback.
        return Served(ids=ids, covered=np.ones(contexts.shape[0], dtype=bool))

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        self._advance(day.end)
        return []
