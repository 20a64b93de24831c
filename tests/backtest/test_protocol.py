"""The replay protocol of docs/protocol.md on tiny synthetic data."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from conftest import N_CLUSTERS, drifting_transitions
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrec.backtest.baselines import MarkovArm, PopularityArm, SuccessorCounts
from hybridrec.backtest.protocol import Arm, Day, Served, fill_lists, popularity_order, prefix
from hybridrec.backtest.runner import ProtocolViolation, replay
from hybridrec.types import UTC, TransitionSet

T0 = datetime(2000, 1, 21, tzinfo=UTC)
T1 = datetime(2000, 2, 10, tzinfo=UTC)


class SpyArm(Arm):
    """Records what it could see when serving, and serves a fixed list."""

    def __init__(self) -> None:
        super().__init__("spy")
        self.seen_until = -1
        self.served_days: list[tuple[int, int]] = []
        self.updates: list[tuple[str, int]] = []

    def begin(self, history: TransitionSet, start: datetime) -> None:
        self.seen_until = int(history.ts.max())

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        self.served_days.append((self.seen_until, contexts.shape[0]))
        ids = fill_lists(np.full((contexts.shape[0], k), -1), contexts, np.arange(N_CLUSTERS))
        return Served(ids=ids, covered=np.zeros(contexts.shape[0], dtype=bool))

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        assert len(history) == 0 or int(history.ts.max()) < int(day.end.timestamp())
        self.seen_until = int(history.ts.max())
        self.updates.append((day.label, len(history)))
        return []


def test_table_served_on_day_d_never_saw_day_d(transitions: TransitionSet) -> None:
    spy = SpyArm()
    result = replay(transitions, [spy], T0, T1)
    assert len(result.days) == 20
    for day, (seen_until, n) in zip(result.days, spy.served_days, strict=True):
        assert seen_until < int(day.start.timestamp()), f"served on {day.label} with data of that day"
        assert n == day.n
    # Every transition of every day was scored, none skipped.
    assert result.n_transitions == sum(d.n for d in result.days)


def test_every_transition_in_window_is_scored(transitions: TransitionSet) -> None:
    result = replay(transitions, [MarkovArm("markov-all", transitions)], T0, T1)
    in_window = ((transitions.ts >= T0.timestamp()) & (transitions.ts < T1.timestamp())).sum()
    assert result.n_transitions == in_window
    assert result.runs[0].all_ranks().shape[0] == in_window


def test_markov_learns_only_from_the_past() -> None:
    # Each day introduces a brand-new context whose only successor appears that day: a leaky
    # table would hit it, a prequential one can only fall back to popularity.
    base = int(T0.timestamp())
    c1 = np.array([0, 1, 2, 3, 4, 5])
    c2 = np.array([1, 2, 3, 4, 5, 6])
    c3 = np.array([7, 7, 7, 7, 7, 0])
    ts = base + 86400 * np.arange(6)
    ts[-1] = ts[-2] + 10
    tr = TransitionSet(c1, c2, c3, ts, np.full(6, -1), 8)
    result = replay(tr, [MarkovArm("markov-all", tr)], T0 + timedelta(days=4), T0 + timedelta(days=5))
    run = result.runs[0]
    # Day 4 has two transitions: (4,5)->7 and (5,6)->0; neither pair existed before, so both are
    # served the popularity backoff (7 first, which is right for the first one only).
    assert run.all_covered().tolist() == [False, False]
    assert run.all_ranks().tolist()[0] == 0


def test_backoff_is_scored_not_skipped(transitions: TransitionSet) -> None:
    arm = MarkovArm("markov-recent", transitions, window_days=1)
    result = replay(transitions, [arm], T0, T1)
    covered = result.runs[0].all_covered()
    assert 0 < covered.mean() < 1
    assert result.runs[0].all_ranks().shape == covered.shape


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 6))
def test_served_lists_never_contain_the_context(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    tr = drifting_transitions(days=8, per_day=5, seed=seed)
    counts = SuccessorCounts(tr)
    counts.add(tr, 0, len(tr) // 2)
    contexts = np.array([rng.choice(N_CLUSTERS, 2, replace=False) for _ in range(20)])
    served = counts.rank(contexts, k)
    for j in range(2):
        assert not (served.ids == contexts[:, j : j + 1]).any()
    for row in served.ids:
        real = row[row >= 0]
        assert len(set(real.tolist())) == real.size
        assert real.size == min(k, N_CLUSTERS - 2)


def test_fill_lists_keeps_real_entries_and_skips_context_and_repeats() -> None:
    ids = np.array([[5, -1, -1], [-1, -1, -1]])
    contexts = np.array([[0, 1], [2, 3]])
    order = popularity_order(np.array([9, 8, 7, 6, 5, 4, 3, 2]))
    assert fill_lists(ids, contexts, order).tolist() == [[5, 2, 3], [0, 1, 4]]


def test_markov_ties_break_by_lower_cluster_id() -> None:
    base = int(T0.timestamp())
    tr = TransitionSet(np.array([0, 0]), np.array([1, 1]), np.array([6, 3]), np.array([base, base + 1]),
                       np.full(2, -1), 8)
    counts = SuccessorCounts(tr)
    counts.add(tr, 0, 2)
    served = counts.rank(np.array([[0, 1]]), 3)
    assert served.ids.tolist() == [[3, 6, 2]]  # 3 and 6 tie at one; then popularity (ties by id)


def test_popularity_arm_serves_everyone(transitions: TransitionSet) -> None:
    result = replay(transitions, [PopularityArm("popularity", transitions)], T0, T1)
    assert result.runs[0].all_covered().all()


class LeakyArm(SpyArm):
    def serve(self, contexts: np.ndarray, k: int) -> Served:
        ids = np.tile(np.arange(k), (contexts.shape[0], 1))
        return Served(ids=ids, covered=np.ones(contexts.shape[0], dtype=bool))


def test_serving_a_context_cluster_is_a_protocol_violation(transitions: TransitionSet) -> None:
    with pytest.raises(ProtocolViolation, match="must not contain c1 or c2"):
        replay(transitions, [LeakyArm()], T0, T1)


def test_prefix_is_the_data_before_a_row(transitions: TransitionSet) -> None:
    view = prefix(transitions, 10)
    assert len(view) == 10 and (view.ts == transitions.ts[:10]).all()
