"""The counting estimators, the one implementation the counting arms (``markov-backoff``,
``markov-best``) and the ``lora`` fine-tuner's training evidence share.

``kind="markov"``: plain pair counts. ``kind="backoff"``: every cluster ``c3`` for a context
``(c1, c2)`` scores Dirichlet-smoothed pair counts ``N(c1, c2, c3) + alpha * B(c3)`` with

    B = w_last * P(c3 | second context cluster = c2)
      + w_skip * P(c3 | first context cluster = c1)      (skip-gram: c1 -> c3 over a gap)
      + w_pop  * P(c3)                                      (successor popularity)

over the transitions of the same window (a share whose context cluster has no transitions yet is
replaced by popularity); ties break by popularity. Counts may be limited to a trailing window of
days and decayed exponentially (a transition ``a`` days old weighs ``2 ** (-a / half_life_days)``).
:data:`COUNTING_GRID` is the one place the tunable grid lives (``markov-best``, and the LLM arms'
candidate estimator chosen on validation days). The knowledge stores' ``backoff`` granularity
computes the same ranking for every context at once (``hybridrec_stores.stats.backoff_table``,
pinned equal to this one by tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hybridrec.types import TransitionSet

#: seconds in a day (counts advance day by day)
DAY = 86_400

TieBreak = Literal["popularity", "id"]


def popularity_order(counts: np.ndarray) -> np.ndarray:
    """Cluster ids by descending count, ties by ascending id (deterministic)."""
    return np.argsort(-np.asarray(counts), kind="stable")




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
        p_pop = popularity_shares(self.pop)
        return (counts, row_shares(self.last[contexts[:, 1]], p_pop),
                row_shares(self.skip[contexts[:, 0]], p_pop), p_pop, popularity_position(self.pop))


def popularity_shares(pop: np.ndarray) -> np.ndarray:
    """Each cluster's share of all successors ``(n,)`` (uniform without data)."""
    total = pop.sum()
    return pop / total if total > 0 else np.full(pop.shape[0], 1.0 / pop.shape[0])


def row_shares(rows: np.ndarray, p_pop: np.ndarray) -> np.ndarray:
    """``rows`` of successor counts as shares; a row without counts falls back to ``p_pop``
    (float residue of decayed or windowed counts counts as none)."""
    total = rows.sum(axis=1, keepdims=True)
    return np.where(total > 1e-12, rows / np.where(total > 1e-12, total, 1.0), p_pop)


def popularity_position(pop: np.ndarray) -> np.ndarray:
    """Each cluster's position in the popularity order (the estimator's tie-break)."""
    position = np.empty(pop.shape[0], dtype=np.int64)
    position[popularity_order(pop)] = np.arange(pop.shape[0])
    return position


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


__all__ = [
    "CHUNK",
    "COUNTING_GRID",
    "DAY",
    "GRID_ALPHAS",
    "GRID_BACKOFF_FAMILIES",
    "GRID_MARKOV_WINDOWS",
    "GRID_WEIGHTS",
    "CountTables",
    "CountingConfig",
    "TieBreak",
    "counting_grid",
    "counting_scores",
    "popularity_order",
    "popularity_position",
    "popularity_shares",
    "row_shares",
    "top_k",
    "truth_ranks",
]
