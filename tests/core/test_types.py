"""The core types enforce their invariants with messages that say what is wrong."""

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from pydantic import TypeAdapter, ValidationError

from hybridrec.testing import strategies as hst
from hybridrec.types import (
    UTC,
    Action,
    Budget,
    ClusterCatalog,
    Context,
    CostEstimate,
    CostRecord,
    EvidenceBatch,
    RankedPrediction,
    Rankings,
    SystemState,
    TimeWindow,
    Transition,
    TransitionSet,
)

T0 = datetime(2000, 6, 1, tzinfo=UTC)


def test_catalog_rejects_duplicate_descriptions_naming_both_ids():
    with pytest.raises(ValidationError, match="clusters 0 and 2 share the description"):
        ClusterCatalog.from_descriptions(["Action", "Comedy", "action"])


def test_catalog_hash_depends_on_content_only():
    a = ClusterCatalog.from_descriptions(["Action", "Comedy"], name="a")
    b = ClusterCatalog.from_descriptions(["Action", "Comedy"], name="b")
    c = ClusterCatalog.from_descriptions(["Action", "Drama"])
    assert a.hash == b.hash != c.hash
    assert a.lookup_description("  action ") == 0
    assert a.lookup_description("Western") is None


def test_context_and_transition_protocol():
    with pytest.raises(ValidationError, match="distinct"):
        Context(clusters=(1, 1))
    with pytest.raises(ValidationError, match="not novel"):
        Transition(context=(1, 2), next=2, time=T0)
    t = Transition(context=(1, 2), next=3, time=datetime(2000, 6, 1))
    assert t.time.tzinfo is not None


def test_transition_set_invariants():
    ts = np.array([1, 2, 3])
    ok = TransitionSet(np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([2, 0, 1]), ts, ts, 3)
    assert len(ok) == 3
    with pytest.raises(ValueError, match="not novel"):
        TransitionSet(np.array([0]), np.array([1]), np.array([1]), ts[:1], ts[:1], 3)
    with pytest.raises(ValueError, match="sorted by time"):
        TransitionSet(ok.c1, ok.c2, ok.c3, np.array([3, 2, 1]), ts, 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        TransitionSet(np.array([0]), np.array([1]), np.array([5]), ts[:1], ts[:1], 3)


@given(hst.transition_sets(), hst.time_windows())
def test_window_selects_exactly_the_rows_inside(tset, window):
    inside = tset.window(window)
    mask = (tset.ts >= window.start_ts) & (tset.ts < window.end_ts)
    assert len(inside) == int(mask.sum())
    assert np.array_equal(inside.c3, tset.c3[mask])


def test_time_window_is_half_open_and_ordered():
    w = TimeWindow.ending_at(T0, days=2)
    assert w.contains(T0 - timedelta(seconds=1)) and not w.contains(T0)
    with pytest.raises(ValidationError, match="must be after"):
        TimeWindow(start=T0, end=T0)


def test_rankings_never_contain_context_clusters():
    ctx = np.array([[0, 1], [2, 3]])
    good = Rankings(ctx, np.array([[2, 3], [0, 1]]), np.zeros((2, 2)))
    good.validate()
    bad = Rankings(ctx, np.array([[2, 1], [0, 1]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"context \(0, 1\)"):
        bad.validate()
    with pytest.raises(ValidationError, match="in the context"):
        RankedPrediction(context=(0, 1), clusters=(1,), scores=(0.0,))
    assert good.row(0).clusters == (2, 3)


def test_evidence_batch_row_round_trips_to_models():
    batch = EvidenceBatch.empty(np.array([[0, 1], [1, 2]]), width=2)
    batch.cluster[0, 0] = 5
    batch.support[0, 0] = 3
    batch.last_seen[0, 0] = int(T0.timestamp())
    ev = batch.row(0)
    assert [i.cluster for i in ev.items] == [5]
    assert ev.items[0].last_seen == T0
    assert batch.row(1).items == ()


def test_actions_parse_by_kind():
    adapter = TypeAdapter(Action)
    action = adapter.validate_python(
        {"kind": "fine_tune", "window": {"start": "2000-05-01", "end": "2000-06-01"}}
    )
    assert action.kind == "fine_tune" and action.window.days == 31
    with pytest.raises(ValidationError):
        adapter.validate_python({"kind": "retrain"})


def test_system_state_budget_accounting():
    est = CostEstimate(action="fine_tune", flops=10.0)
    ledger = (
        CostRecord(action="fine_tune", at=T0 - timedelta(days=40), estimate=est, flops=100.0),
        CostRecord(action="fine_tune", at=T0 - timedelta(days=5), estimate=est, flops=30.0),
    )
    state = SystemState(now=T0, data_until=T0, budget=Budget(period_days=30, flops=50.0), ledger=ledger)
    assert state.budget_left("flops") == 20.0
    assert state.budget_left("money") == float("inf")
    with pytest.raises(ValidationError, match="after the clock"):
        SystemState(now=T0, data_until=T0 + timedelta(days=1))


@given(hst.system_states())
def test_generated_states_are_consistent(state):
    assert state.data_until <= state.now
    for t in (state.adapter_trained_until, state.knowledge_until):
        assert t is None or t <= state.data_until
