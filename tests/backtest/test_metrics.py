"""Hit ranks, HR@k, NDCG@k and the day-level bootstrap, on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hybridrec.backtest.metrics import (
    DayGroups,
    bootstrap_ci,
    hit_ranks,
    hr_at,
    ndcg_at,
    paired_bootstrap,
    summarize,
)


def test_hit_ranks_hr_and_ndcg_by_hand() -> None:
    served = np.array([[3, 4, 5, 6, 7], [3, 4, 5, 6, 7], [3, 4, 5, 6, 7], [1, -1, -1, -1, -1]])
    truth = np.array([3, 7, 9, 1])
    ranks = hit_ranks(served, truth)
    assert ranks.tolist() == [0, 4, -1, 0]
    assert hr_at(ranks, 1).tolist() == [1, 0, 0, 1]
    assert hr_at(ranks, 5).tolist() == [1, 1, 0, 1]
    assert ndcg_at(ranks, 5) == pytest.approx([1.0, 1 / math.log2(6), 0.0, 1.0])
    summary = summarize(ranks)
    assert summary["hr@1"] == pytest.approx(0.5)
    assert summary["hr@5"] == pytest.approx(0.75)
    assert summary["ndcg@5"] == pytest.approx((2 + 1 / math.log2(6)) / 4)


def test_rank_beyond_five_is_a_miss_for_hr5() -> None:
    ranks = hit_ranks(np.array([[9, 8, 7, 6, 5, 4]]), np.array([4]))
    assert ranks.tolist() == [5]
    assert hr_at(ranks, 5).tolist() == [0.0]
    assert ndcg_at(ranks, 5).tolist() == [0.0]


def test_paired_bootstrap_of_identical_arms_is_zero() -> None:
    values = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    groups = DayGroups(day_of=np.array([0, 0, 1, 1, 2, 2]), n_days=3)
    delta, (lo, hi) = paired_bootstrap(values, values, groups, n_boot=200, seed=1)
    assert (delta, lo, hi) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_detects_a_consistent_difference_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    b = (rng.random(2000) < 0.3).astype(float)
    a = np.maximum(b, (rng.random(2000) < 0.2).astype(float))
    groups = DayGroups(day_of=np.repeat(np.arange(40), 50), n_days=40)
    delta, (lo, hi) = paired_bootstrap(a, b, groups, n_boot=500, seed=3)
    assert delta == pytest.approx(a.mean() - b.mean())
    assert 0 < lo < delta < hi
    assert paired_bootstrap(a, b, groups, n_boot=500, seed=3) == (delta, (lo, hi))


def test_bootstrap_ci_brackets_the_mean() -> None:
    values = np.tile([1.0, 0.0, 0.0, 1.0], 25)
    groups = DayGroups(day_of=np.repeat(np.arange(10), 10), n_days=10)
    lo, hi = bootstrap_ci(values, groups, n_boot=300, seed=0)
    assert lo <= values.mean() <= hi


def test_bad_arm_names_are_reported_with_the_valid_ones() -> None:
    from hybridrec.backtest.config import load_backtest_config
    from hybridrec.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unknown arms \['foo'\].*markov-all"):
        load_backtest_config(None, arms=["foo", "markov-all"])
