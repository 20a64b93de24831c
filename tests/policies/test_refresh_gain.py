"""The counterfactual refresh gain (hybridrec.engine.freshness): paired, out of sample, and it
sees a planted change of successors that stale counts miss."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from hybridrec.engine.freshness import proxy_hits, refresh_gain
from hybridrec.engine.state import freshness_signals
from hybridrec.types import UTC, TransitionSet
from hybridrec.types.base import datetime_to_ts

START = datetime(2000, 1, 1, tzinfo=UTC)
N = 12


def _world(days: int, switch_day: int | None, per_day: int = 200, seed: int = 0) -> TransitionSet:
    """Contexts (c1, c2) drawn at random; before ``switch_day`` the next cluster is
    ``(c1 + c2) % N`` (or its neighbour), from it on ``(c1 + c2 + 5) % N``; novel by construction."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        for _ in range(per_day):
            c1, c2 = rng.choice(N, size=2, replace=False)
            shift = 5 if switch_day is not None and day >= switch_day else 0
            base = (c1 + c2 + shift + (rng.random() < 0.2)) % N
            c3 = next(int((base + j) % N) for j in range(N) if (base + j) % N not in (c1, c2))
            t = START + timedelta(days=day, seconds=int(rng.integers(0, 86_400)))
            rows.append((datetime_to_ts(t), int(c1), int(c2), c3))
    rows.sort()
    a = np.array(rows, dtype=np.int64)
    return TransitionSet(a[:, 1], a[:, 2], a[:, 3], a[:, 0], np.zeros(len(a), dtype=np.int64), N)


def test_fresh_counts_gain_after_a_planted_shift_and_stale_ones_are_blind() -> None:
    world = _world(40, switch_day=30)
    now = START + timedelta(days=40)
    gain, se = refresh_gain(world, knowledge_until=START + timedelta(days=25), data_until=now, days=3) or (0, 0)
    # Counts up to day 37 include a week of the new successors; counts up to day 25 none.
    assert gain > 0.3 and gain - 1.96 * se > 0


def test_without_drift_fresher_counts_gain_nothing_beyond_noise() -> None:
    world = _world(40, switch_day=None)
    now = START + timedelta(days=40)
    gain, se = refresh_gain(world, knowledge_until=START + timedelta(days=25), data_until=now, days=3) or (1, 0)
    assert gain - 1.96 * se <= 0 <= gain + 1.96 * se + 1e-12


def test_knowledge_that_covers_the_measured_days_gains_zero_and_no_knowledge_or_data_is_none() -> None:
    world = _world(20, switch_day=10)
    now = START + timedelta(days=20)
    assert refresh_gain(world, knowledge_until=now - timedelta(days=2), data_until=now, days=3) == (0.0, 0.0)
    assert refresh_gain(world, knowledge_until=None, data_until=now) is None
    later = now + timedelta(days=30)  # the last three days hold no transition
    assert refresh_gain(world, knowledge_until=START, data_until=later, days=3) is None
    assert freshness_signals(world, knowledge_until=None, data_until=now) == {
        "refresh_gain": None, "refresh_gain_se": None}


def test_the_proxy_never_scores_rows_it_was_built_from() -> None:
    world = _world(5, switch_day=None)
    with pytest.raises(ValueError, match="not out of sample"):
        proxy_hits(world, 600, 500, 700)
    hits = proxy_hits(world, 500, 500, 700)
    assert hits.shape == (200,) and hits.dtype == bool


def test_ranking_in_blocks_gives_the_same_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridrec.engine.freshness as freshness

    world = _world(12, switch_day=6)
    whole = proxy_hits(world, 1600, 1600, 2400)
    monkeypatch.setattr(freshness, "_BLOCK_CELLS", 3 * N)  # three contexts per block
    np.testing.assert_array_equal(proxy_hits(world, 1600, 1600, 2400), whole)


def test_catalogs_beyond_the_proxys_size_get_no_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridrec.engine.freshness as freshness

    world = _world(10, switch_day=None)
    monkeypatch.setattr(freshness, "MAX_FRESHNESS_CLUSTERS", N - 1)
    assert refresh_gain(world, knowledge_until=START, data_until=START + timedelta(days=10)) is None
    with pytest.raises(ValueError, match="at most"):
        proxy_hits(world, 100, 100, 200)
