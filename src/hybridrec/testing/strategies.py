"""hypothesis strategies for hybridrec's core types.

Every strategy produces *valid* values (the models' invariants hold), so property tests can
focus on the code under test::

    from hypothesis import given
    from hybridrec.testing import strategies as hst

    @given(hst.system_states())
    def test_my_policy_is_pure(state):
        assert MyPolicy().decide(state) == MyPolicy().decide(state)
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from hypothesis import strategies as st

from hybridrec.types import (
    UTC,
    Budget,
    ClusterCatalog,
    Context,
    CostEstimate,
    CostRecord,
    DriftStats,
    FineTune,
    Noop,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
    Transition,
    TransitionSet,
)

EPOCH_START = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH_END = datetime(2003, 1, 1, tzinfo=UTC)

_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8)


def datetimes(
    min_value: datetime = EPOCH_START, max_value: datetime = EPOCH_END
) -> st.SearchStrategy[datetime]:
    """Whole-second UTC datetimes."""
    return st.integers(int(min_value.timestamp()), int(max_value.timestamp())).map(
        lambda s: datetime.fromtimestamp(s, tz=UTC)
    )


@st.composite
def catalogs(draw: st.DrawFn, min_size: int = 3, max_size: int = 12) -> ClusterCatalog:
    """Catalogs with unique multi-word descriptions."""
    size = draw(st.integers(min_size, max_size))
    words = draw(st.lists(_words, min_size=size, max_size=size, unique=True))
    return ClusterCatalog.from_descriptions([f"{w} cluster" for w in words])


@st.composite
def contexts(draw: st.DrawFn, n_clusters: int = 10, k: int = 2) -> Context:
    clusters = draw(st.lists(st.integers(0, n_clusters - 1), min_size=k, max_size=k, unique=True))
    return Context(clusters=tuple(clusters))


@st.composite
def transitions(draw: st.DrawFn, n_clusters: int = 10) -> Transition:
    c1, c2, c3 = draw(st.lists(st.integers(0, n_clusters - 1), min_size=3, max_size=3, unique=True))
    user = draw(st.sampled_from(["u1", "u2", "u3", "u4"]))
    return Transition(context=(c1, c2), next=c3, time=draw(datetimes()), user=user)


@st.composite
def transition_sets(
    draw: st.DrawFn, n_clusters: int = 10, max_size: int = 200
) -> TransitionSet:
    """Sorted transition arrays over ``n_clusters`` clusters."""
    n = draw(st.integers(0, max_size))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    c1 = rng.integers(0, n_clusters, n)
    c2 = (c1 + rng.integers(1, n_clusters, n)) % n_clusters
    c3 = np.empty(n, dtype=np.int64)
    for i in range(n):
        choices = [c for c in range(n_clusters) if c not in (c1[i], c2[i])]
        c3[i] = choices[int(rng.integers(0, len(choices)))]
    start = int(EPOCH_START.timestamp())
    ts = np.sort(rng.integers(start, start + 400 * 86400, n))
    return TransitionSet(c1, c2, c3, ts, rng.integers(0, 20, n), n_clusters)


@st.composite
def time_windows(draw: st.DrawFn) -> TimeWindow:
    start = draw(datetimes())
    days = draw(st.floats(min_value=1 / 24, max_value=120, allow_nan=False))
    return TimeWindow(start=start, end=start + timedelta(days=days))


@st.composite
def actions(draw: st.DrawFn, until: datetime | None = None) -> object:
    end = until or draw(datetimes())
    window = TimeWindow.ending_at(end, draw(st.integers(1, 60)))
    return draw(
        st.sampled_from(
            [
                FineTune(window=window),
                RefreshKnowledge(window=window),
                RegenerateTable(),
                Noop(reason="test"),
            ]
        )
    )


@st.composite
def cost_records(draw: st.DrawFn, at: datetime | None = None) -> CostRecord:
    kind = draw(st.sampled_from(["fine_tune", "refresh_knowledge", "regenerate_table"]))
    flops = draw(st.floats(0, 1e15, allow_nan=False))
    seconds = draw(st.floats(0, 1e4, allow_nan=False))
    estimate = CostEstimate(action=kind, flops=flops, seconds=seconds)
    return CostRecord(
        action=kind, at=at or draw(datetimes()), estimate=estimate, flops=flops, seconds=seconds
    )


@st.composite
def system_states(draw: st.DrawFn) -> SystemState:
    """Consistent system states: artifacts never built from data after ``data_until``; every
    signal a policy can declare (drift, recall, freshness), present or missing; estimates of
    each action kind in every unit, or none; and budgets in every unit, often exactly at (or just
    above) what the ledger spent in the period, so properties meet exhausted budgets."""
    now = draw(datetimes(datetime(2000, 3, 1, tzinfo=UTC)))
    data_until = now - timedelta(seconds=draw(st.integers(0, 86400)))
    data_start = data_until - timedelta(days=draw(st.integers(30, 400)))

    def before(limit: datetime) -> st.SearchStrategy[datetime | None]:
        return st.none() | datetimes(data_start, limit)

    adapter_until = draw(before(data_until))
    knowledge_until = draw(before(data_until))
    table_at = draw(before(data_until))
    ledger = tuple(
        sorted(
            draw(st.lists(cost_records(), max_size=5).map(list)),
            key=lambda r: r.at,
        )
    )
    ledger = tuple(r for r in ledger if r.at <= now)
    drift_j = draw(st.none() | st.floats(0, 1, allow_nan=False))
    share = st.none() | st.floats(0, 1, allow_nan=False)
    drift = DriftStats(
        top5_jaccard=drift_j, pairs=draw(st.integers(0, 500)),
        recall_recent=draw(share), recall_at_training=draw(share), recall_at_table=draw(share),
        refresh_gain=draw(st.none() | st.floats(-0.2, 0.2, allow_nan=False)),
        refresh_gain_se=draw(st.none() | st.floats(0, 0.05, allow_nan=False)),
        measured_at=now,
    )
    # Every action kind priced (or not), in every unit; budgets in every unit, often set right
    # at what the period's ledger already spent (exhausted, or within one action of it).
    estimates = {
        kind: CostEstimate(action=kind, flops=draw(st.floats(0, 1e15, allow_nan=False)),
                           seconds=draw(st.floats(0, 1e4, allow_nan=False)),
                           money=draw(st.floats(0, 100, allow_nan=False)))
        for kind in ("fine_tune", "refresh_knowledge", "regenerate_table") if draw(st.booleans())
    }
    period = draw(st.sampled_from([7.0, 30.0]))
    since = now - timedelta(days=period)

    def limit(unit: str) -> st.SearchStrategy[float | None]:
        spent = sum(float(getattr(r, unit)) for r in ledger if r.at >= since)
        near = [spent, spent * 1.001, spent + max((float(getattr(e, unit)) for e in estimates.values()),
                                                 default=0.0)]
        return st.none() | st.sampled_from(near) | st.floats(0, 1e18, allow_nan=False)

    budget = Budget(period_days=period, flops=draw(limit("flops")), seconds=draw(limit("seconds")),
                    money=draw(limit("money")))
    return SystemState(
        now=now,
        data_start=data_start,
        data_until=data_until,
        adapter_version="v1" if adapter_until else None,
        adapter_trained_until=adapter_until,
        adapter_trained_at=adapter_until,
        knowledge_version="k1" if knowledge_until else None,
        knowledge_until=knowledge_until,
        knowledge_built_at=knowledge_until,
        table_version="t1" if table_at else None,
        table_built_at=table_at,
        pending_fine_tune=draw(st.booleans()),
        drift=drift,
        budget=budget,
        ledger=ledger,
        estimates=estimates,
    )


__all__ = [
    "EPOCH_END",
    "EPOCH_START",
    "actions",
    "catalogs",
    "contexts",
    "cost_records",
    "datetimes",
    "system_states",
    "time_windows",
    "transition_sets",
    "transitions",
]
