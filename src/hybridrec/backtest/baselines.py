"""Non-LLM baselines: ``markov-all``, ``markov-recent``, ``markov-backoff``, ``markov-best`` and
``popularity``.

Markov arms keep successor counts per observed context as a dense ``(pairs, n)`` ``int32`` array
(about 40 MB on ML-1M: 33k pairs x 301 clusters) updated incrementally, one ``np.add.at`` per day;
``markov-recent`` also subtracts the day leaving its window. The served list for ``(c1, c2)`` is
the pair's successors by descending count, ties broken by successor popularity in the same window
(``tie_break="popularity"``, the default; ``"id"``: lower cluster id first), then filled up from
successor popularity in the same window (ties: lower id), never repeating a cluster and never
containing ``c1`` or ``c2``. A context whose pair has no successor in the window is *not covered*:
its whole list is the popularity backoff.

``markov-backoff`` scores every cluster ``c3`` for a context ``(c1, c2)`` as Dirichlet-smoothed
pair counts ``N(c1, c2, c3) + alpha * B(c3)`` (the numerator of ``(N + alpha B) / (N_total +
alpha)``; the denominator is the same for every ``c3``), where the backoff distribution

    B = w_last * P(c3 | second context cluster = c2)
      + w_skip * P(c3 | first context cluster = c1)      (skip-gram: c1 -> c3 over a gap)
      + w_pop  * P(c3)                                      (successor popularity)

interpolates shares over all transitions in the same window (a share whose context cluster has
no transitions yet is replaced by popularity). Ties break by popularity. Counts may be limited to
a trailing window of days and decayed exponentially (a transition ``a`` days old weighs
``2 ** (-a / half_life_days)``). ``alpha = 0`` with no decay is exactly ``markov-all``.

``markov-best`` picks one :class:`CountingConfig` from :data:`COUNTING_GRID` (the one place where
the tunable grid lives) on a validation period strictly before the test start: the
``validation_days`` days before ``start``, each scored prequentially with counts built from the
data before that day. It sees only the warm-up history handed to :meth:`Arm.begin`, so no test
day can influence the choice.

The pair index is the set of contexts that occur anywhere in the transition set: an index only
(its counts start at zero), so knowing a pair exists later gives no information before its time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np

from hybridrec.backtest.protocol import (
    DAY,
    Arm,
    Day,
    Served,
    fill_lists,
    popularity_order,
    prefix,
)
from hybridrec.estimators.counting import (
    CHUNK,
    COUNTING_GRID,
    GRID_ALPHAS,
    GRID_BACKOFF_FAMILIES,
    GRID_MARKOV_WINDOWS,
    GRID_WEIGHTS,
    CountingConfig,
    CountTables,
    TieBreak,
    counting_grid,
    counting_scores,
    top_k,
    truth_ranks,
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

    def rank(self, contexts: np.ndarray, k: int, tie_break: TieBreak = "popularity") -> Served:
        """Top-``k`` successors per context, filled up from popularity (see module doc)."""
        m = contexts.shape[0]
        pairs = self.pairs_of(contexts)
        ids = np.full((m, k), -1, dtype=np.int64)
        known = pairs >= 0
        covered = np.zeros(m, dtype=bool)
        pop_order = popularity_order(self.popularity)
        if known.any():
            rows = np.nonzero(known)[0]
            counts = self.counts[pairs[rows]]
            # Columns in tie-break order, then a stable sort by count: equal counts keep it.
            columns = pop_order if tie_break == "popularity" else np.arange(self.n)
            counts = counts[:, columns]
            order = np.argsort(-counts, axis=1, kind="stable")[:, :k]
            top = np.take_along_axis(counts, order, axis=1)
            ids[rows] = np.where(top > 0, columns[order], -1)
            covered[rows] = self.pair_total[pairs[rows]] > 0
        ids = fill_lists(ids, contexts, pop_order)
        return Served(ids=ids, covered=covered)


class MarkovArm(Arm):
    """Second-order Markov successor counts over all history or a trailing window of days."""

    def __init__(
        self,
        name: str,
        transitions: TransitionSet,
        window_days: int | None = None,
        tie_break: TieBreak = "popularity",
    ) -> None:
        super().__init__(name)
        self.window_days = window_days
        self.tie_break: TieBreak = tie_break
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
        return self.state.rank(contexts, k, self.tie_break)

    def describe(self) -> dict[str, Any]:
        return CountingConfig(window_days=self.window_days, tie_break=self.tie_break).as_dict()

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


class CountingArm(Arm):
    """A :class:`CountingConfig` served as an arm (``markov-backoff``, and ``markov-best``'s
    chosen configuration)."""

    def __init__(self, name: str, transitions: TransitionSet, config: CountingConfig) -> None:
        super().__init__(name)
        self.config = config
        self.tables = CountTables(transitions, config.window_days, config.half_life_days)

    def begin(self, history: TransitionSet, start: datetime) -> None:
        self.tables.advance(datetime_to_ts(start))

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        ids = np.empty((contexts.shape[0], k), dtype=np.int64)
        for lo in range(0, contexts.shape[0], CHUNK):  # bounded (chunk, n) float arrays
            part = contexts[lo : lo + CHUNK]
            scores, position = counting_scores(self.config, self.tables.components(part))
            ids[lo : lo + CHUNK] = top_k(scores, position, part, k)
        return Served(ids=ids, covered=self.tables.support(contexts) > 0)

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        self.tables.advance(datetime_to_ts(day.end))
        return []

    def describe(self) -> dict[str, Any]:
        return self.config.as_dict()


@dataclass
class Selection:
    """What :func:`select_counting_config` chose, on which days, and every candidate's score."""

    chosen: CountingConfig
    window: tuple[str, str]
    days: int
    transitions: int
    metric: str
    scores: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "arm": "markov-best",
            "window": list(self.window),
            "days": self.days,
            "transitions": self.transitions,
            "metric": self.metric,
            "scoring": "prequential: each validation day scored with counts built from the data "
                       "before that day; test days are never read",
            "chosen": self.chosen.as_dict(),
            "candidates": len(self.scores),
            "top": sorted(self.scores, key=lambda r: -r[self.metric])[:10],
            "note": self.note,
        }


def _score_chunk(tables: CountTables, seen: TransitionSet, a: int, b: int,
                 grid: tuple[CountingConfig, ...] | list[CountingConfig], members: list[int],
                 sums: np.ndarray) -> None:
    """Add the hits of rows ``[a, b)`` of ``seen`` to ``sums[i] = (HR@1, HR@5, NDCG@5)`` for
    every grid entry ``i`` in ``members`` (configurations sharing ``tables``)."""
    contexts = np.stack([seen.c1[a:b], seen.c2[a:b]], axis=1).astype(np.int64)
    truth = seen.c3[a:b].astype(np.int64)
    comps = tables.components(contexts)
    backoffs: dict[tuple[float, float, float], np.ndarray] = {}
    for i in members:
        cfg = grid[i]
        pre = None
        if cfg.kind == "backoff":
            key = cfg.weights
            if key not in backoffs:
                wl, ws, wp = key
                backoffs[key] = wl * comps[1] + ws * comps[2] + wp * comps[3]
            pre = backoffs[key]
        scores, position = counting_scores(cfg, comps, pre)
        ranks = truth_ranks(scores, position, contexts, truth)
        sums[i, 0] += float((ranks < 1).sum())
        sums[i, 1] += float((ranks < 5).sum())
        sums[i, 2] += float((1.0 / np.log2(ranks[ranks < 5] + 2.0)).sum())


def select_counting_config(
    history: TransitionSet,
    start: datetime,
    *,
    validation_days: int = 14,
    grid: tuple[CountingConfig, ...] | list[CountingConfig] = COUNTING_GRID,
    metric: Literal["hr@5", "hr@1", "ndcg@5"] = "hr@5",
) -> Selection:
    """Choose the best of ``grid`` on the ``validation_days`` days before ``start``.

    Only rows of ``history`` strictly before ``start`` are read. Each validation day is scored
    prequentially: counts come from the data before that day (the same protocol as the test
    replay). Ties keep the earlier configuration of ``grid``.
    """
    if not grid:
        raise ValueError("the counting grid is empty")
    end_ts = datetime_to_ts(start)
    first = start - timedelta(days=validation_days)
    first_ts = datetime_to_ts(first)
    hi = int(np.searchsorted(history.ts, end_ts, side="left"))
    seen = prefix(history, hi)
    window = (first.date().isoformat(), start.date().isoformat())
    lo = int(np.searchsorted(seen.ts, first_ts, side="left"))
    if lo == 0 or lo == len(seen):
        reason = ("no data before the validation window" if lo == 0 else
                  "no transitions in the validation window")
        return Selection(chosen=grid[0], window=window, days=validation_days, transitions=0,
                         metric=metric, note=f"{reason}: kept the first grid configuration")
    sums = np.zeros((len(grid), 3), dtype=np.float64)
    families: dict[tuple[int | None, float | None], list[int]] = {}
    for i, cfg in enumerate(grid):
        families.setdefault(cfg.family, []).append(i)
    bounds = [first_ts + d * DAY for d in range(validation_days + 1)]
    cuts = np.searchsorted(seen.ts, bounds, side="left")
    for (window_days, half_life), members in families.items():
        tables = CountTables(seen, window_days, half_life)
        for d in range(validation_days):
            tables.advance(bounds[d])
            for a in range(int(cuts[d]), int(cuts[d + 1]), CHUNK):
                b = min(a + CHUNK, int(cuts[d + 1]))
                _score_chunk(tables, seen, a, b, grid, members, sums)
    n = int(cuts[-1] - cuts[0])
    means = sums / n
    column = {"hr@1": 0, "hr@5": 1, "ndcg@5": 2}[metric]
    best = int(np.argmax(means[:, column]))  # first maximum: earlier grid entries win ties
    table = [
        {"config": cfg.label(), "hr@1": round(float(means[i, 0]), 6),
         "hr@5": round(float(means[i, 1]), 6), "ndcg@5": round(float(means[i, 2]), 6)}
        for i, cfg in enumerate(grid)
    ]
    return Selection(chosen=grid[best], window=window, days=validation_days, transitions=n,
                     metric=metric, scores=table)


class MarkovBestArm(Arm):
    """The counting configuration chosen on the validation days before the test start
    (:func:`select_counting_config` on the warm-up history only), then served as a
    :class:`CountingArm`."""

    def __init__(self, name: str, transitions: TransitionSet, *, validation_days: int = 14,
                 grid: tuple[CountingConfig, ...] | list[CountingConfig] = COUNTING_GRID,
                 metric: Literal["hr@5", "hr@1", "ndcg@5"] = "hr@5") -> None:
        super().__init__(name)
        self._transitions = transitions
        self.validation_days = validation_days
        self.grid = tuple(grid)
        self.metric: Literal["hr@5", "hr@1", "ndcg@5"] = metric
        self.selection: Selection | None = None
        self._inner: CountingArm | None = None

    def begin(self, history: TransitionSet, start: datetime) -> None:
        self.selection = select_counting_config(
            history, start, validation_days=self.validation_days, grid=self.grid, metric=self.metric
        )
        self._inner = CountingArm(self.name, self._transitions, self.selection.chosen)
        self._inner.begin(history, start)

    def _arm(self) -> CountingArm:
        if self._inner is None:
            raise RuntimeError("markov-best serves only after begin() chose its configuration")
        return self._inner

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        return self._arm().serve(contexts, k)

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        return self._arm().end_of_day(history, day)

    def describe(self) -> dict[str, Any]:
        return self._arm().describe()


__all__ = [
    "CHUNK",
    "COUNTING_GRID",
    "GRID_ALPHAS",
    "GRID_BACKOFF_FAMILIES",
    "GRID_MARKOV_WINDOWS",
    "GRID_WEIGHTS",
    "CountTables",
    "CountingArm",
    "CountingConfig",
    "MarkovArm",
    "MarkovBestArm",
    "PopularityArm",
    "Selection",
    "SuccessorCounts",
    "TieBreak",
    "counting_grid",
    "counting_scores",
    "select_counting_config",
    "top_k",
    "truth_ranks",
]
