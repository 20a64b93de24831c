"""Property: every arm and the backtest handle any sequence of days, including days and whole
windows without transitions, and a budget of zero."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from conftest import N_CLUSTERS, START, fake_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrec.backtest import run_backtest
from hybridrec.backtest.config import ALL_ARMS
from hybridrec.types import Budget, TransitionSet

WARMUP_DAYS = 20
TEST_START = date(2000, 1, 21)


def day_counts(lengths: list[tuple[int, int]], total: int) -> list[int]:
    """Runs ``(transitions per day, days)`` flattened and cut or padded (with empty days) to
    ``total`` days."""
    counts = [c for c, n in lengths for _ in range(n)][:total]
    return counts + [0] * (total - len(counts))


def transitions_for(counts: list[int], seed: int) -> TransitionSet:
    rng = np.random.default_rng(seed)
    rows = []
    for day, count in enumerate(counts):
        for _ in range(count):
            c1, c2 = rng.choice(N_CLUSTERS, size=2, replace=False)
            options = [c for c in range(N_CLUSTERS) if c not in (c1, c2)]
            c3 = options[(c1 + c2 + day // 10) % len(options)] if rng.random() < 0.7 else rng.choice(options)
            rows.append((int(START.timestamp()) + day * 86400 + int(rng.integers(0, 86400)), c1, c2, c3))
    rows.sort()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return TransitionSet(arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 0], np.full(len(arr), -1), N_CLUSTERS)


# Runs of days: many empty, some long enough (>= 14 days) to leave a knowledge window empty.
runs = st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 5, 30]), st.integers(1, 16)), min_size=1, max_size=6)


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(warmup=runs, test=runs, test_days=st.integers(1, 30), zero_budget=st.booleans(),
       seed=st.integers(0, 3))
def test_every_arm_handles_any_day_sequence(fake_stack, catalog, warmup, test, test_days, zero_budget, seed) -> None:  # type: ignore[no-untyped-def]
    counts = day_counts(warmup, WARMUP_DAYS) + day_counts(test, test_days)
    counts[0] = max(counts[0], 1)  # the warm-up needs at least one transition
    transitions = transitions_for(counts, seed)
    config = fake_config(start=TEST_START, end=TEST_START + timedelta(days=test_days))
    if zero_budget:
        config = config.model_copy(update={"llm": config.llm.model_copy(
            update={"budget": Budget(flops=0.0)})})
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    assert "partial" not in report
    assert report["dataset"]["test_days"] == test_days
    assert report["dataset"]["test_transitions"] == sum(counts[WARMUP_DAYS:])
    assert [a["name"] for a in report["arms"]] == list(ALL_ARMS)
    for arm in report["arms"]:
        assert [d["n"] for d in arm["per_day"]] == counts[WARMUP_DAYS:], arm["name"]
        cum = [d["cum_flops"] for d in arm["per_day"]]
        assert cum == sorted(cum), arm["name"]
        hr5 = arm["metrics"]["hr@5"]
        assert hr5 is None or 0.0 <= hr5 <= 1.0
        if zero_budget and arm["llm"]:
            # Nothing priced above zero may run on a budget of zero.
            assert arm["cost"]["flops"] == 0.0, arm["name"]
            assert arm["cost"]["table_regenerations"] == 0, arm["name"]
    assert set(report["pareto"]["frontier"]) <= {a["name"] for a in report["arms"]}
