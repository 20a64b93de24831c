"""Seeded synthetic transitions with known, drifting ground truth.

A :class:`SyntheticConfig` defines, for every context ``(c1, c2)`` of ``n_clusters`` clusters,
a successor distribution over ``support`` candidate clusters (never ``c1`` or ``c2``), and how it
changes day by day:

* **gradual drift**: each day every context's candidate logits take a Gaussian step of standard
  deviation ``drift_rate`` (a random walk; ``0`` freezes them), and with probability
  ``swap_rate`` one candidate is replaced by a random new cluster;
* **abrupt shifts**: on each day in ``shift_days`` a ``shift_fraction`` of contexts draw entirely
  new candidates and logits;
* **planted rule** (``mode="planted"``): the successor is a deterministic function of the context,
  ``rule(c1, c2) = (a*c1 + b*c2 + offset) mod n`` stepped forward past ``c1``/``c2``, with
  probability ``planted_noise`` of a uniform random novel cluster instead. Shifts re-draw
  ``(a, b, offset)``. A model that learns the rule reaches HR@1 close to ``1 - planted_noise``.

:func:`generate_transitions` samples a :class:`~hybridrec.types.TransitionSet` directly (with the
truth in :class:`SyntheticTruth`); :func:`generate_interactions` samples raw user sequences
(for extraction benchmarks) by walking users through the same truth. Everything is vectorised and
deterministic in ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hybridrec.data.transitions import SECONDS_PER_DAY, sort_transitions
from hybridrec.types import (
    UTC,
    ClusterCatalog,
    InteractionData,
    InteractionTable,
    ItemTable,
    TransitionSet,
    datetime_to_ts,
)

__all__ = [
    "SyntheticConfig",
    "SyntheticInteractions",
    "SyntheticTransitions",
    "SyntheticTruth",
    "build_truth",
    "generate_interactions",
    "generate_transitions",
    "planted_successor",
    "synthetic_catalog",
]


class SyntheticConfig(BaseModel):
    """Parameters of the synthetic world (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_clusters: int = Field(default=20, ge=3, le=2000)
    start: date = date(2000, 1, 1)
    days: int = Field(default=120, ge=1)
    transitions_per_day: int = Field(default=500, ge=0)
    n_users: int = Field(default=1000, ge=1)
    mode: Literal["drift", "planted"] = "drift"
    support: int | None = Field(
        default=None, ge=1, description="Candidate successors per context (default min(8, n - 2))."
    )
    concentration: float = Field(
        default=1.0, gt=0, description="Scale of the initial logits: larger = peakier successors."
    )
    drift_rate: float = Field(default=0.05, ge=0)
    swap_rate: float = Field(default=0.0, ge=0, le=1)
    shift_days: tuple[int, ...] = ()
    shift_fraction: float = Field(default=1.0, ge=0, le=1)
    context_skew: float = Field(
        default=1.0, ge=0, description="Zipf exponent of context popularity (0 = uniform)."
    )
    planted_noise: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.support is not None and self.support > self.n_clusters - 2:
            raise ValueError(
                f"support ({self.support}) must be at most n_clusters - 2 ({self.n_clusters - 2})"
            )
        bad = [d for d in self.shift_days if not 0 <= d < self.days]
        if bad:
            raise ValueError(f"shift_days {bad} lie outside [0, {self.days})")
        return self

    @property
    def successor_support(self) -> int:
        return self.support if self.support is not None else min(8, self.n_clusters - 2)

    @property
    def start_ts(self) -> int:
        return datetime_to_ts(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC))


_ADJECTIVES = (
    "quiet", "bright", "rapid", "gentle", "bold", "hidden", "golden", "silver", "wild", "calm",
    "dark", "frozen", "urban", "rural", "ancient", "modern", "tiny", "vast", "sweet", "bitter",
)
_NOUNS = (
    "harbor", "forest", "engine", "garden", "comet", "castle", "river", "market", "desert",
    "island", "canyon", "meadow", "galaxy", "village", "tundra", "lagoon", "summit", "jungle",
    "prairie", "glacier",
)


def synthetic_catalog(n_clusters: int, *, name: str = "synthetic") -> ClusterCatalog:
    """A catalog with readable, unique two-word descriptions (``"quiet harbor"``), id ``i`` for
    cluster ``i`` of the generator; beyond 400 clusters a number is appended."""
    size = len(_ADJECTIVES) * len(_NOUNS)
    descriptions = []
    for i in range(n_clusters):
        text = f"{_ADJECTIVES[i % len(_ADJECTIVES)]} {_NOUNS[(i // len(_ADJECTIVES)) % len(_NOUNS)]}"
        descriptions.append(text if i < size else f"{text} {i // size}")
    return ClusterCatalog.from_descriptions(descriptions, name=name, version="synthetic/1")


def planted_successor(c1: np.ndarray, c2: np.ndarray, n: int, a: int, b: int, offset: int) -> np.ndarray:
    """``(a*c1 + b*c2 + offset) mod n``, stepped forward (mod n) until it is neither c1 nor c2."""
    c1 = np.asarray(c1, dtype=np.int64)
    c2 = np.asarray(c2, dtype=np.int64)
    out = (a * c1 + b * c2 + offset) % n
    for _ in range(2):
        clash = (out == c1) | (out == c2)
        out = np.where(clash, (out + 1) % n, out)
    return out


@dataclass(frozen=True)
class SyntheticTruth:
    """The ground truth: contexts and, per day, each context's successor distribution.

    ``contexts`` is ``(m, 2)`` (all ordered pairs of distinct clusters, by ``(c1, c2)``);
    ``candidates[d]`` and ``probs[d]`` are ``(m, support)`` for day ``d``; ``context_weight`` is the
    fixed popularity of each context (sums to 1).
    """

    config: SyntheticConfig
    contexts: np.ndarray
    context_weight: np.ndarray
    candidates: np.ndarray
    probs: np.ndarray

    def context_index(self, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
        """Row of each ``(c1, c2)`` in :attr:`contexts` (pairs are dense, so this is arithmetic)."""
        n = self.config.n_clusters
        c1 = np.asarray(c1, dtype=np.int64)
        c2 = np.asarray(c2, dtype=np.int64)
        return c1 * (n - 1) + c2 - (c2 > c1)

    def day_of(self, when: datetime | int) -> int:
        ts = when if isinstance(when, int) else datetime_to_ts(when)
        return int(np.clip((ts - self.config.start_ts) // SECONDS_PER_DAY, 0, self.config.days - 1))

    def distribution(self, c1: int, c2: int, day: int) -> dict[int, float]:
        """``{cluster: probability}`` of the successors of ``(c1, c2)`` on ``day``."""
        row = int(self.context_index(np.array([c1]), np.array([c2]))[0])
        out: dict[int, float] = {}
        for c, p in zip(self.candidates[day, row], self.probs[day, row], strict=True):
            out[int(c)] = out.get(int(c), 0.0) + float(p)
        return out

    def top_k(self, day: int, k: int) -> np.ndarray:
        """``(m, k)`` most probable successors of every context on ``day`` (ties: smaller id)."""
        cands, probs = self.candidates[day], self.probs[day]
        order = np.lexsort((cands, -probs), axis=-1)[:, :k]
        return np.take_along_axis(cands, order, axis=1)


def _novel_candidates(
    rng: np.random.Generator, contexts: np.ndarray, n: int, size: int
) -> np.ndarray:
    """``(m, size)`` distinct clusters per row, none equal to the row's context clusters."""
    m = contexts.shape[0]
    # Sample from n - 2 slots, then skip over the two context clusters (sorted) to stay novel.
    scores = rng.random((m, n - 2))
    slots = np.argsort(scores, axis=1)[:, :size]
    lo = np.minimum(contexts[:, 0], contexts[:, 1])[:, None]
    hi = np.maximum(contexts[:, 0], contexts[:, 1])[:, None]
    out = slots + (slots >= lo)
    out = out + (out >= hi)
    return out.astype(np.int64)


def build_truth(config: SyntheticConfig) -> SyntheticTruth:
    """The day-by-day successor distributions of ``config`` (deterministic in ``config.seed``)."""
    rng = np.random.default_rng([config.seed, 1])
    n = config.n_clusters
    c1, c2 = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    mask = c1 != c2
    contexts = np.stack([c1[mask], c2[mask]], axis=1).astype(np.int64)
    m = contexts.shape[0]
    ranks = rng.permutation(m) + 1
    weight = 1.0 / ranks.astype(np.float64) ** config.context_skew
    weight /= weight.sum()
    shifts = set(config.shift_days)

    if config.mode == "planted":
        candidates = np.empty((config.days, m, 1), dtype=np.int64)
        probs = np.ones((config.days, m, 1), dtype=np.float64)
        a, b, offset = (int(x) for x in rng.integers(1, n, size=3))
        for day in range(config.days):
            if day in shifts:
                a, b, offset = (int(x) for x in rng.integers(1, n, size=3))
            candidates[day, :, 0] = planted_successor(contexts[:, 0], contexts[:, 1], n, a, b, offset)
        return SyntheticTruth(config, contexts, weight, candidates, probs)

    s = config.successor_support
    candidates = np.empty((config.days, m, s), dtype=np.int64)
    probs = np.empty((config.days, m, s), dtype=np.float64)
    cand = _novel_candidates(rng, contexts, n, s)
    logits = rng.normal(0.0, config.concentration, size=(m, s))
    for day in range(config.days):
        if day > 0:
            if config.drift_rate:
                logits = logits + rng.normal(0.0, config.drift_rate, size=(m, s))
            if config.swap_rate:
                swap = np.flatnonzero(rng.random(m) < config.swap_rate)
                if swap.size:
                    cand = cand.copy()
                    fresh = _novel_candidates(rng, contexts[swap], n, n - 2)
                    slot = rng.integers(0, s, size=swap.size)
                    # The first fresh cluster not already a candidate of that row.
                    taken = (fresh[:, :, None] == cand[swap][:, None, :]).any(axis=2)
                    pick = fresh[np.arange(swap.size), np.argmax(~taken, axis=1)]
                    cand[swap, slot] = pick
        if day in shifts:
            chosen = np.flatnonzero(rng.random(m) < config.shift_fraction)
            cand = cand.copy()
            cand[chosen] = _novel_candidates(rng, contexts[chosen], n, s)
            logits = logits.copy()
            logits[chosen] = rng.normal(0.0, config.concentration, size=(chosen.size, s))
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        candidates[day] = cand
        probs[day] = z / z.sum(axis=1, keepdims=True)
    return SyntheticTruth(config, contexts, weight, candidates, probs)


def _sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One column index per row of ``probs`` (rows sum to 1), by inverse CDF."""
    cdf = np.cumsum(probs, axis=1)
    u = np.asarray(rng.random(probs.shape[0]))[:, None] * cdf[:, -1:]
    return np.minimum((u > cdf).sum(axis=1), probs.shape[1] - 1)


def _successors(
    rng: np.random.Generator, truth: SyntheticTruth, day: np.ndarray, row: np.ndarray
) -> np.ndarray:
    config = truth.config
    cand = truth.candidates[day, row]
    pick = _sample_rows(rng, truth.probs[day, row])
    out = cand[np.arange(row.shape[0]), pick]
    if config.mode == "planted" and config.planted_noise > 0:
        noisy = np.flatnonzero(rng.random(row.shape[0]) < config.planted_noise)
        if noisy.size:
            out[noisy] = _novel_candidates(rng, truth.contexts[row[noisy]], config.n_clusters, 1)[:, 0]
    return out


@dataclass(frozen=True)
class SyntheticTransitions:
    """Sampled transitions and the truth they were sampled from."""

    transitions: TransitionSet
    truth: SyntheticTruth

    @property
    def catalog(self) -> ClusterCatalog:
        """:func:`synthetic_catalog` for this world's clusters (ids match the truth's)."""
        return synthetic_catalog(self.truth.config.n_clusters)

    def day_start(self, day: int) -> datetime:
        return datetime(*self.truth.config.start.timetuple()[:3], tzinfo=UTC) + timedelta(days=day)


def generate_transitions(config: SyntheticConfig) -> SyntheticTransitions:
    """``transitions_per_day`` transitions per day, contexts by popularity, successors by the
    day's truth, times uniform within the day, users uniform over ``n_users``."""
    truth = build_truth(config)
    rng = np.random.default_rng([config.seed, 2])
    total = config.days * config.transitions_per_day
    if total == 0:
        return SyntheticTransitions(TransitionSet.empty(config.n_clusters), truth)
    day = np.repeat(np.arange(config.days, dtype=np.int64), config.transitions_per_day)
    row = rng.choice(truth.contexts.shape[0], size=total, p=truth.context_weight)
    c3 = _successors(rng, truth, day, row)
    ts = config.start_ts + day * SECONDS_PER_DAY + rng.integers(0, SECONDS_PER_DAY, size=total)
    user = rng.integers(0, config.n_users, size=total)
    transitions = sort_transitions(
        truth.contexts[row, 0], truth.contexts[row, 1], c3, ts, user, config.n_clusters
    )
    return SyntheticTransitions(transitions, truth)


@dataclass(frozen=True)
class SyntheticInteractions:
    """Raw interactions, the item -> cluster map, and the truth the users walked through."""

    interactions: InteractionTable
    item_cluster: np.ndarray
    truth: SyntheticTruth

    def as_interaction_data(self, name: str = "synthetic") -> InteractionData:
        """As a loaded data set whose items carry their cluster's description as categories, so
        ``prepare(..., clustering="categories")`` recovers exactly these clusters and ids."""
        catalog = synthetic_catalog(self.truth.config.n_clusters)
        # Zero-padded ids sort like the numbers, so sorted category keys keep cluster ids.
        keys = [f"c{c:04d}" for c in range(len(catalog))]
        items = ItemTable(
            item_ids=self.interactions.item_ids,
            titles=tuple(
                f"{catalog.description(int(c))} item {k}" for k, c in enumerate(self.item_cluster)
            ),
            categories=tuple((keys[int(c)],) for c in self.item_cluster),
        )
        return InteractionData(
            name=name,
            interactions=self.interactions,
            items=items,
            source="hybridrec.data.synthetic",
            metadata={"config": self.truth.config.model_dump(mode="json")},
        )


def generate_interactions(
    n_interactions: int,
    config: SyntheticConfig | None = None,
    *,
    items_per_cluster: int = 50,
    repeat_prob: float = 0.2,
    tie_prob: float = 0.3,
    positive_rate: float = 0.6,
) -> SyntheticInteractions:
    """About ``n_interactions`` rated interactions of ``config.n_users`` users.

    Each user walks through clusters: the next cluster follows the truth for the user's last two
    distinct clusters on the current day; with probability ``repeat_prob`` the user instead stays
    in the same cluster (exercising de-duplication). Items are uniform within their cluster;
    consecutive interactions share their second with probability ``tie_prob`` (exercising the
    tie rule); a ``positive_rate`` share of ratings is 4 or 5. Steps are vectorised over users.
    """
    config = config or SyntheticConfig()
    rng = np.random.default_rng([config.seed, 3])
    truth = build_truth(config)
    n, users = config.n_clusters, config.n_users
    steps = max(3, -(-n_interactions // users))
    span = config.days * SECONDS_PER_DAY
    mean_gap = max(1.0, span / (steps * 1.5))
    clock = config.start_ts + rng.integers(0, max(1, span // 3), size=users)
    first = rng.integers(0, n, size=users)
    second = (first + rng.integers(1, n, size=users)) % n
    prev, last = first, second
    cluster_steps = np.empty((steps, users), dtype=np.int64)
    ts_steps = np.empty((steps, users), dtype=np.int64)
    cluster_steps[0], cluster_steps[1] = first, second
    for step in range(steps):
        if step >= 2:
            day = np.clip((clock - config.start_ts) // SECONDS_PER_DAY, 0, config.days - 1)
            nxt = _successors(rng, truth, day, truth.context_index(prev, last))
            stay = rng.random(users) < repeat_prob
            cluster = np.where(stay, last, nxt)
            moved = ~stay
            prev = np.where(moved, last, prev)
            last = cluster
            cluster_steps[step] = cluster
        gap = np.where(
            rng.random(users) < tie_prob,
            0,
            rng.exponential(mean_gap, size=users).astype(np.int64) + 1,
        )
        clock = clock + gap
        ts_steps[step] = clock
    total = steps * users
    cluster = cluster_steps.reshape(-1)
    item = cluster * items_per_cluster + rng.integers(0, items_per_cluster, size=total)
    user = np.tile(np.arange(users, dtype=np.int64), steps)
    positive = rng.random(total) < positive_rate
    rating = np.where(positive, rng.integers(4, 6, size=total), rng.integers(1, 4, size=total)).astype(np.float64)
    # Step-major order: truncating keeps whole steps plus a prefix of users in the last one.
    keep = min(total, n_interactions)
    user, item, rating = user[:keep], item[:keep], rating[:keep]
    ts = ts_steps.reshape(-1)[:keep]
    item_cluster = np.repeat(np.arange(n, dtype=np.int64), items_per_cluster)
    table = InteractionTable(
        user=user,
        item=item,
        ts=ts,
        rating=rating,
        # Zero-padded so that identifier order is code order, as loaders guarantee.
        user_ids=np.array([f"u{i:08d}" for i in range(users)], dtype=object),
        item_ids=np.array([f"i{i:08d}" for i in range(n * items_per_cluster)], dtype=object),
    )
    return SyntheticInteractions(table, item_cluster, truth)
