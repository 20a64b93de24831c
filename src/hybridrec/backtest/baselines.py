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

import math
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
from hybridrec.types import TransitionSet, datetime_to_ts

TieBreak = Literal["popularity", "id"]


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


# -- tuned counting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CountingConfig:
    """One counting model: plain pair counts (``kind="markov"``) or smoothed backoff counts.

    ``alpha`` and the weights apply to ``kind="backoff"`` only (see the module doc); the weights
    are normalised to sum to one. ``tie_break`` applies to ``kind="markov"`` only (backoff
    always breaks ties by popularity).
    """

    kind: Literal["markov", "backoff"] = "markov"
    window_days: int | None = None
    half_life_days: float | None = None
    tie_break: TieBreak = "popularity"
    alpha: float = 0.0
    w_last: float = 0.0
    w_skip: float = 0.0
    w_pop: float = 0.0

    def __post_init__(self) -> None:
        if self.window_days is not None and self.window_days < 1:
            raise ValueError(f"window_days must be >= 1 or None, got {self.window_days}")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0 or None, got {self.half_life_days}")
        if self.kind == "backoff":
            weights = (self.w_last, self.w_skip, self.w_pop)
            if self.alpha < 0 or min(weights) < 0 or sum(weights) <= 0:
                raise ValueError(f"backoff needs alpha >= 0 and non-negative weights with a "
                                 f"positive sum, got alpha={self.alpha}, weights={weights}")

    @property
    def weights(self) -> tuple[float, float, float]:
        total = self.w_last + self.w_skip + self.w_pop
        return (self.w_last / total, self.w_skip / total, self.w_pop / total)

    @property
    def family(self) -> tuple[int | None, float | None]:
        """What the count tables depend on: configurations of one family share them."""
        return (self.window_days, self.half_life_days)

    def label(self) -> str:
        window = "all" if self.window_days is None else f"{self.window_days}d"
        decay = "" if self.half_life_days is None else f", half-life {self.half_life_days:g}d"
        if self.kind == "markov":
            return f"markov (window {window}{decay}, ties by {self.tie_break})"
        wl, ws, wp = self.weights
        return (f"backoff (alpha {self.alpha:g}, weights last {wl:.2f} / skip {ws:.2f} / "
                f"pop {wp:.2f}, window {window}{decay})")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "window_days": self.window_days,
                               "half_life_days": self.half_life_days}
        if self.kind == "markov":
            out["tie_break"] = self.tie_break
        else:
            wl, ws, wp = self.weights
            out.update({"alpha": self.alpha, "w_last": round(wl, 6), "w_skip": round(ws, 6),
                        "w_pop": round(wp, 6), "tie_break": "popularity"})
        out["label"] = self.label()
        return out


#: The tunable grid of ``markov-best``, in preference order (the first of equal scores wins):
#: plain pair counts over all history or a trailing window, with either tie-break; then the
#: backoff model over smoothing strengths ``alpha`` x interpolation weights ``(last, skip, pop)``
#: x count families (all history, all history decayed with a 60-day half-life, a 30-day window).
GRID_MARKOV_WINDOWS: tuple[int | None, ...] = (None, 7, 14, 30)
GRID_ALPHAS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
GRID_WEIGHTS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.9, 0.0, 0.1), (0.8, 0.2, 0.0), (0.7, 0.3, 0.0), (0.6, 0.3, 0.1),
    (0.5, 0.5, 0.0), (0.5, 0.4, 0.1), (0.4, 0.4, 0.2), (0.3, 0.6, 0.1),
)
GRID_BACKOFF_FAMILIES: tuple[tuple[int | None, float | None], ...] = ((None, None), (None, 60.0), (30, None))


def counting_grid() -> list[CountingConfig]:
    """Every configuration ``markov-best`` chooses from (see the ``GRID_*`` constants)."""
    grid = [CountingConfig(kind="markov", window_days=w) for w in GRID_MARKOV_WINDOWS]
    grid.append(CountingConfig(kind="markov", tie_break="id"))
    for window, half_life in GRID_BACKOFF_FAMILIES:
        for w_last, w_skip, w_pop in GRID_WEIGHTS:
            for alpha in GRID_ALPHAS:
                grid.append(CountingConfig(
                    kind="backoff", window_days=window, half_life_days=half_life, alpha=alpha,
                    w_last=w_last, w_skip=w_skip, w_pop=w_pop,
                ))
    return grid


COUNTING_GRID: tuple[CountingConfig, ...] = tuple(counting_grid())

#: Contexts scored at once: the dense ``(CHUNK, n)`` score arrays stay small on large days.
CHUNK = 4096


class CountTables:
    """Pair, last-cluster, first-cluster (skip-gram) and popularity counts of ``c3`` over the
    rows of ``transitions`` before an as-of time, optionally windowed and decayed (``float64``).

    Decayed counts are stored scaled by ``2 ** ((t - ref) / half_life)`` (``ref``: the first
    as-of time) so that a day's update touches only that day's rows; :meth:`components` applies
    the common factor back. Shares are scale-free.
    """

    def __init__(self, transitions: TransitionSet, window_days: int | None = None,
                 half_life_days: float | None = None) -> None:
        self._t = transitions
        n = transitions.n_clusters
        self.n = n
        keys = transitions.c1.astype(np.int64) * n + transitions.c2
        self.pair_keys, self.pair_of_row = np.unique(keys, return_inverse=True)
        self.pair_of_row = self.pair_of_row.reshape(-1)
        self.pair = np.zeros((self.pair_keys.shape[0], n), dtype=np.float64)
        self.pair_rows = np.zeros(self.pair_keys.shape[0], dtype=np.int64)  # unweighted support
        self.last = np.zeros((n, n), dtype=np.float64)
        self.skip = np.zeros((n, n), dtype=np.float64)
        self.pop = np.zeros(n, dtype=np.float64)
        self.window_days = window_days
        self.rate = 0.0 if half_life_days is None else math.log(2.0) / (half_life_days * DAY)
        self.ref: int | None = None
        self.asof: int | None = None
        self._added = 0
        self._removed = 0

    def _apply(self, lo: int, hi: int, sign: int) -> None:
        if hi <= lo:
            return
        t = self._t
        assert self.ref is not None
        if self.rate:
            w = sign * np.exp(self.rate * (t.ts[lo:hi] - self.ref).astype(np.float64))
        else:
            w = np.full(hi - lo, float(sign))
        pairs, c1, c2, c3 = self.pair_of_row[lo:hi], t.c1[lo:hi], t.c2[lo:hi], t.c3[lo:hi]
        np.add.at(self.pair, (pairs, c3), w)
        np.add.at(self.pair_rows, pairs, sign)
        np.add.at(self.last, (c2, c3), w)
        np.add.at(self.skip, (c1, c3), w)
        np.add.at(self.pop, c3, w)

    def advance(self, until: int) -> None:
        """Count every row strictly before ``until`` (a timestamp) and inside the window."""
        if self.ref is None:
            self.ref = until
        ts = self._t.ts
        hi = int(np.searchsorted(ts, until, side="left"))
        self._apply(self._added, hi, +1)
        self._added = max(self._added, hi)
        if self.window_days is not None:
            cut = int(np.searchsorted(ts, until - self.window_days * DAY, side="left"))
            self._apply(self._removed, cut, -1)
            self._removed = max(self._removed, cut)
        self.asof = until

    def pairs_of(self, contexts: np.ndarray) -> np.ndarray:
        """Index of each context's pair, ``-1`` for contexts never seen in the data."""
        keys = contexts[:, 0].astype(np.int64) * self.n + contexts[:, 1]
        if self.pair_keys.size == 0:
            return np.full(keys.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.pair_keys, keys), self.pair_keys.shape[0] - 1)
        return np.where(self.pair_keys[pos] == keys, pos, -1)

    def support(self, contexts: np.ndarray) -> np.ndarray:
        """Rows in the window (unweighted) of each context's exact pair."""
        pairs = self.pairs_of(contexts)
        return np.where(pairs >= 0, self.pair_rows[np.maximum(pairs, 0)], 0)

    def components(self, contexts: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(N, P_last, P_skip, P_pop, position)`` for ``contexts``: decayed pair counts
        ``(m, n)``, the three shares ``(m, n)``, ``(m, n)``, ``(n,)``, and each cluster's
        position in the popularity order (the tie-break)."""
        m = contexts.shape[0]
        scale = 1.0
        if self.rate and self.asof is not None and self.ref is not None:
            scale = math.exp(-self.rate * (self.asof - self.ref))
        pairs = self.pairs_of(contexts)
        counts = np.zeros((m, self.n), dtype=np.float64)
        known = pairs >= 0
        counts[known] = self.pair[pairs[known]] * scale
        # Decayed and windowed counts can keep float residue where a count went back to zero.
        counts[np.abs(counts) < 1e-9] = 0.0
        pop_total = self.pop.sum()
        p_pop = self.pop / pop_total if pop_total > 0 else np.full(self.n, 1.0 / self.n)

        def shares(rows: np.ndarray) -> np.ndarray:
            total = rows.sum(axis=1, keepdims=True)
            return np.where(total > 1e-12, rows / np.where(total > 1e-12, total, 1.0), p_pop)

        position = np.empty(self.n, dtype=np.int64)
        position[popularity_order(self.pop)] = np.arange(self.n)
        return counts, shares(self.last[contexts[:, 1]]), shares(self.skip[contexts[:, 0]]), p_pop, position


def counting_scores(config: CountingConfig, components: tuple[np.ndarray, ...],
                    backoff: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(scores (m, n), position (n,))``: serve by descending score, ties by ascending position.

    ``backoff`` (optional) is ``B`` precomputed for ``config``'s weights.
    """
    counts, p_last, p_skip, p_pop, position = components
    if config.kind == "backoff":
        if backoff is None:
            wl, ws, wp = config.weights
            backoff = wl * p_last + ws * p_skip + wp * p_pop
        return counts + config.alpha * backoff, position
    if config.tie_break == "popularity":
        return counts, position
    # Observed successors by count (ties: id), then the rest in popularity order.
    n = position.shape[0]
    unseen = -1.0 - position / n
    return np.where(counts > 0, counts, unseen[None, :]), np.arange(n)


def _mask_context(scores: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    scores = scores.copy()
    rows = np.arange(scores.shape[0])
    scores[rows, contexts[:, 0]] = -np.inf
    scores[rows, contexts[:, 1]] = -np.inf
    return scores


def top_k(scores: np.ndarray, position: np.ndarray, contexts: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best clusters per row (descending score, ties by ascending ``position``),
    never ``c1`` or ``c2``: with fewer than ``k + 2`` clusters the last slots are ``-1``."""
    scores = _mask_context(scores, contexts)
    columns = np.argsort(position, kind="stable")
    order = np.argsort(-scores[:, columns], axis=1, kind="stable")[:, :k]
    ids = columns[order].astype(np.int64)
    clash = (ids == contexts[:, :1]) | (ids == contexts[:, 1:2])
    return np.where(clash, -1, ids)


def truth_ranks(scores: np.ndarray, position: np.ndarray, contexts: np.ndarray,
                truth: np.ndarray) -> np.ndarray:
    """0-based rank of ``truth`` in the full list :func:`top_k` would serve (without sorting)."""
    scores = _mask_context(scores, contexts)
    rows = np.arange(scores.shape[0])
    own = scores[rows, truth][:, None]
    ahead = (scores > own) | ((scores == own) & (position[None, :] < position[truth][:, None]))
    return ahead.sum(axis=1)


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
