"""Tuned counting arms: tie-breaking, the backoff model, markov-best's validation-only choice."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from conftest import N_CLUSTERS

from hybridrec.backtest.baselines import (
    COUNTING_GRID,
    CountingArm,
    CountingConfig,
    CountTables,
    MarkovArm,
    MarkovBestArm,
    SuccessorCounts,
    counting_scores,
    select_counting_config,
    top_k,
    truth_ranks,
)
from hybridrec.backtest.config import BackoffOptions, load_backtest_config
from hybridrec.backtest.protocol import DAY
from hybridrec.backtest.runner import replay
from hybridrec.types import UTC, TransitionSet

T0 = datetime(2000, 1, 21, tzinfo=UTC)
T1 = datetime(2000, 2, 10, tzinfo=UTC)
BASE = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp())


def rows(*items: tuple[int, int, int, int], n: int = 6) -> TransitionSet:
    """Transitions from ``(c1, c2, c3, day)`` tuples (ten seconds apart within a day)."""
    arr = np.array(sorted(((BASE + d * DAY + 10 * i, c1, c2, c3) for i, (c1, c2, c3, d) in enumerate(items))),
                   dtype=np.int64)
    return TransitionSet(arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 0], np.full(len(arr), -1), n)


def serve(config: CountingConfig, tr: TransitionSet, contexts: list[list[int]], k: int = 4,
          until_day: int = 50) -> list[list[int]]:
    arm = CountingArm("c", tr, config)
    arm.tables.advance(BASE + until_day * DAY)
    return arm.serve(np.array(contexts), k).ids.tolist()


# -- tie-breaking -------------------------------------------------------------------------------


def test_markov_ties_break_by_popularity_or_by_id() -> None:
    # (0, 1) was followed once by 6 and once by 3; 6 is the more popular successor overall.
    tr = rows((0, 1, 6, 0), (0, 1, 3, 0), (2, 4, 6, 0), (2, 5, 6, 0), (4, 5, 7, 0), n=8)
    counts = SuccessorCounts(tr)
    counts.add(tr, 0, len(tr))
    ctx = np.array([[0, 1]])
    assert counts.rank(ctx, 4, tie_break="popularity").ids.tolist() == [[6, 3, 7, 2]]
    assert counts.rank(ctx, 4, tie_break="id").ids.tolist() == [[3, 6, 7, 2]]
    start = datetime(2000, 1, 2, tzinfo=UTC)
    for tie_break, first in (("popularity", 6), ("id", 3)):
        arm = MarkovArm("markov-all", tr, tie_break=tie_break)  # type: ignore[arg-type]
        arm.begin(tr, start)
        assert arm.serve(ctx, 4).ids[0, 0] == first
        assert arm.describe()["tie_break"] == tie_break


def test_markov_all_is_backoff_with_zero_smoothing(transitions: TransitionSet) -> None:
    arms = [
        MarkovArm("markov-all", transitions),
        CountingArm("markov", transitions, CountingConfig(kind="markov")),
        CountingArm("backoff0", transitions,
                    CountingConfig(kind="backoff", alpha=0.0, w_pop=1.0)),
        MarkovArm("markov-id", transitions, tie_break="id"),
        CountingArm("markov-id2", transitions, CountingConfig(kind="markov", tie_break="id")),
        MarkovArm("markov-recent", transitions, window_days=7),
        CountingArm("recent2", transitions, CountingConfig(kind="markov", window_days=7)),
    ]
    result = replay(transitions, arms, T0, T1)
    ranks = {r.arm.name: r.all_ranks() for r in result.runs}
    covered = {r.arm.name: r.all_covered() for r in result.runs}
    for a, b in (("markov-all", "markov"), ("markov-all", "backoff0"), ("markov-id", "markov-id2"),
                 ("markov-recent", "recent2")):
        assert (ranks[a] == ranks[b]).all(), (a, b)
        assert (covered[a] == covered[b]).all(), (a, b)


# -- the backoff model --------------------------------------------------------------------------


#: (0,1)->2 once; (5,1)->3 three times; (0,3)->4 twice. For context (0, 1):
#: pair counts {2: 1}; P(.|c2=1) = {2: 1/4, 3: 3/4}; P(.|c1=0) = {2: 1/3, 4: 2/3};
#: popularity {3: 3, 4: 2, 2: 1, 5: 0}.
HAND = [(0, 1, 2, 0), (5, 1, 3, 1), (5, 1, 3, 1), (5, 1, 3, 2), (0, 3, 4, 2), (0, 3, 4, 3)]


@pytest.mark.parametrize(
    ("alpha", "weights", "expected"),
    [
        (0.0, (0, 0, 1), [2, 3, 4, 5]),   # plain counts, then popularity
        (1.0, (1, 0, 0), [2, 3, 4, 5]),   # 2: 1 + 0.25 = 1.25; 3: 0.75
        (2.0, (1, 0, 0), [3, 2, 4, 5]),   # 2: 1.5, 3: 1.5: a tie, 3 is more popular
        (4.0, (0, 1, 0), [4, 2, 3, 5]),   # 2: 1 + 4/3; 4: 8/3; 3 and 5 tie at 0 (popularity)
        (2.0, (1, 1, 0), [2, 3, 4, 5]),   # 2: 1 + 2(1/8 + 1/6); 3: 0.75; 4: 2/3
        (8.0, (0, 0, 1), [3, 4, 2, 5]),   # 2: 1 + 8/6 = 2.33; 3: 4; 4: 2.67
    ],
)
def test_backoff_ranking_by_hand(alpha: float, weights: tuple[float, float, float], expected: list[int]) -> None:
    config = CountingConfig(kind="backoff", alpha=alpha, w_last=weights[0], w_skip=weights[1],
                            w_pop=weights[2])
    tr = rows(*HAND)
    assert serve(config, tr, [[0, 1]]) == [expected]
    # truth_ranks agrees with the served order without sorting.
    tables = CountTables(tr)
    tables.advance(BASE + 50 * DAY)
    ctx = np.array([[0, 1]] * 4)
    scores, position = counting_scores(config, tables.components(ctx))
    assert truth_ranks(scores, position, ctx, np.array(expected)).tolist() == [0, 1, 2, 3]
    assert top_k(scores, position, ctx, 4).tolist() == [expected] * 4


def test_backoff_never_serves_the_context_and_only_counts_the_past() -> None:
    tr = rows(*HAND)
    config = BackoffOptions(alpha=2.0, w_last=1.0, w_skip=0.0).counting_config()
    # Before day 1 only (0,1)->2 exists: 2 first, then popularity (only 2 has any), then ids.
    assert serve(config, tr, [[0, 1]], until_day=1) == [[2, 3, 4, 5]]
    assert serve(config, tr, [[5, 1]], until_day=3)[0][0] == 3
    for ids in serve(config, tr, [[3, 2], [4, 5], [0, 1]], k=4):
        assert len(set(ids)) == 4
    # No transition has c2 = 2, so its last-cluster share is popularity: 4, then the unseen by id.
    assert serve(config, tr, [[3, 2]], k=4) == [[4, 0, 1, 5]]


def test_backoff_window_and_decay() -> None:
    # (0,1) -> 2 twice on day 0, -> 3 once on day 20; served on day 21.
    tr = rows((0, 1, 2, 0), (0, 1, 2, 0), (0, 1, 3, 20))
    plain = CountingConfig(kind="markov")
    assert serve(plain, tr, [[0, 1]], until_day=21)[0][:2] == [2, 3]
    # Half-life 5 days: the day-0 rows weigh 2 * 2**-4.2 < 1 against the day-20 row.
    decayed = CountingConfig(kind="markov", half_life_days=5.0)
    assert serve(decayed, tr, [[0, 1]], until_day=21)[0][:2] == [3, 2]
    windowed = CountingConfig(kind="markov", window_days=10)
    arm = CountingArm("w", tr, windowed)
    arm.tables.advance(BASE + 21 * DAY)
    served = arm.serve(np.array([[0, 1], [4, 5]]), 3)
    assert served.ids[0, 0] == 3 and served.covered.tolist() == [True, False]
    assert arm.tables.pop.tolist() == [0, 0, 0, 1, 0, 0]  # the day-0 rows left the window


def test_counting_config_validates() -> None:
    with pytest.raises(ValueError, match="positive sum"):
        CountingConfig(kind="backoff", alpha=1.0)
    with pytest.raises(ValueError, match="half_life"):
        CountingConfig(half_life_days=0.0)
    with pytest.raises(Exception, match="must not all be zero"):
        BackoffOptions(w_last=0, w_skip=0, w_pop=0)
    assert len({c.label() for c in COUNTING_GRID}) == len(COUNTING_GRID)


# -- markov-best --------------------------------------------------------------------------------


def _stationary_then_drift(planted: bool) -> TransitionSet:
    """Every pair of 8 clusters, each day: a fixed successor for 30 days; with ``planted``, a
    different fixed successor on days 30-49 (after the test start, day 30)."""
    items = []
    pairs = [(a, b) for a in range(N_CLUSTERS) for b in range(N_CLUSTERS) if a != b]
    for day in range(50 if planted else 30):
        for a, b in pairs:
            options = [c for c in range(N_CLUSTERS) if c not in (a, b)]
            shift = 1 if day >= 30 else 0
            items.append((a, b, options[(a + b + shift) % len(options)], day))
    return rows(*items, n=N_CLUSTERS)


def test_markov_best_choice_never_reads_test_days() -> None:
    start = datetime.fromtimestamp(BASE + 30 * DAY, tz=UTC)
    grid = [CountingConfig(kind="markov"), CountingConfig(kind="markov", window_days=3)]
    base, full = _stationary_then_drift(False), _stationary_then_drift(True)
    # Where the validation days include the planted (drifting) days, the short window wins ...
    leaky = select_counting_config(full, start + timedelta(days=14), validation_days=14, grid=grid,
                                   metric="hr@1")
    assert leaky.chosen == grid[1]
    # ... but the choice before the test start is the same with and without them.
    honest = select_counting_config(full, start, validation_days=14, grid=grid, metric="hr@1")
    assert honest.chosen == grid[0]
    assert honest.as_dict() == select_counting_config(base, start, validation_days=14, grid=grid,
                                                      metric="hr@1").as_dict()
    assert honest.window == ("2000-01-17", "2000-01-31") and honest.transitions == 14 * 56
    # The arm, replayed over the planted days, keeps the pre-start choice.
    arm = MarkovBestArm("markov-best", full, validation_days=14, grid=grid, metric="hr@1")
    replay(full, [arm], start, start + timedelta(days=5))
    assert arm.selection is not None and arm.selection.chosen == grid[0]
    assert arm.describe()["window_days"] is None


def test_markov_best_validation_is_prequential() -> None:
    # A pair whose only successor appears on a validation day: scoring that day with counts that
    # include it would hit it at rank 0; prequentially it cannot be known.
    tr = rows((0, 1, 2, 0), (3, 4, 5, 10), n=6)
    start = datetime.fromtimestamp(BASE + 11 * DAY, tz=UTC)
    sel = select_counting_config(tr, start, validation_days=2, grid=[CountingConfig(kind="markov")])
    assert sel.transitions == 1
    assert sel.scores[0]["hr@1"] == 0.0  # popularity says 2, the answer was 5


def test_markov_best_without_validation_data_keeps_the_first_configuration() -> None:
    tr = rows((0, 1, 2, 0), n=6)
    sel = select_counting_config(tr, datetime.fromtimestamp(BASE + 40 * DAY, tz=UTC),
                                 validation_days=14, grid=list(COUNTING_GRID[:3]))
    assert sel.chosen == COUNTING_GRID[0] and sel.note and "no transitions" in sel.note


def test_config_names_the_new_arms_and_options() -> None:
    config = load_backtest_config(None, arms=["markov-backoff", "markov-best"], seeds=3,
                                  tie_break="id")
    assert config.seed_list() == [0, 1, 2]
    assert config.markov_backoff.counting_config().kind == "backoff"
    assert config.markov_best.validation_days == 14
    with pytest.raises(Exception, match="tie_break"):
        load_backtest_config(None, tie_break="random")


def test_grid_selection_on_drifting_data_is_vectorised_and_named(transitions: TransitionSet) -> None:
    sel = select_counting_config(transitions, T0, validation_days=5)
    assert sel.transitions == int(((transitions.ts >= T0.timestamp() - 5 * DAY)
                                   & (transitions.ts < T0.timestamp())).sum())
    assert len(sel.scores) == len(COUNTING_GRID)
    best = max(r["hr@5"] for r in sel.scores)
    assert sel.as_dict()["chosen"]["label"] == sel.chosen.label()
    assert next(r for r in sel.scores if r["config"] == sel.chosen.label())["hr@5"] == best


def test_chunked_scoring_gives_the_same_lists_and_choice(transitions: TransitionSet, monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridrec.backtest.baselines as baselines

    config = CountingConfig(kind="backoff", alpha=4.0, w_last=0.6, w_skip=0.3, w_pop=0.1)
    grid = list(COUNTING_GRID[::20])
    whole = replay(transitions, [CountingArm("b", transitions, config)], T0, T1).runs[0].all_ranks()
    chosen = select_counting_config(transitions, T0, validation_days=5, grid=grid)
    monkeypatch.setattr(baselines, "CHUNK", 7)
    chunked = replay(transitions, [CountingArm("b", transitions, config)], T0, T1).runs[0].all_ranks()
    assert (whole == chunked).all()
    assert select_counting_config(transitions, T0, validation_days=5, grid=grid).scores == chosen.scores


def test_top_k_with_fewer_clusters_than_the_list_pads_with_minus_one() -> None:
    # 6 clusters leave 4 candidates for a top-5 list: the last slot is empty, never c1 or c2.
    contexts = np.array([[3, 4], [0, 5]])
    scores = np.tile(np.arange(6, dtype=np.float64)[::-1], (2, 1))
    ids = top_k(scores, np.arange(6), contexts, 5)
    assert ids.tolist() == [[0, 1, 2, 5, -1], [1, 2, 3, 4, -1]]
