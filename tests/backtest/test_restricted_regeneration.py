"""A regeneration restricted to the contexts with recent traffic ranks (and is charged for) only
those; the others keep the row the arm served before (``fallback="previous"``) or go to the
serving backoff (``"backoff"``). A table that has not changed is re-ranked for nothing."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
from conftest import fake_config
from hybridrec_policies.policies import StaticPolicy

from hybridrec.backtest import run_backtest
from hybridrec.backtest.llm import INITIAL, PolicyArm, WorkCache, initial_adapter
from hybridrec.backtest.study import build_stack
from hybridrec.config import PluginRef
from hybridrec.generation import all_contexts, observed_contexts
from hybridrec.types import (
    ClusterCatalog,
    RefreshKnowledge,
    RegenerateTable,
    TimeWindow,
    TransitionSet,
)


def _prompt_config(**updates: object):  # type: ignore[no-untyped-def]
    config = fake_config(**updates)
    llm = config.llm.model_copy(update={"generator": PluginRef(plugin="fake-prompt-gen")})
    return config.model_copy(update={"llm": llm})


def _arm(catalog: ClusterCatalog, transitions: TransitionSet, tmp: Path) -> tuple[PolicyArm, WorkCache]:
    config = _prompt_config(arms=["no-update"])
    cache = WorkCache(build_stack(config, catalog, tmp), transitions)
    start = config.start_dt
    initial_adapter(cache, transitions.before(start), start, 10)
    arm = PolicyArm("arm", StaticPolicy(), cache)  # static: no action of its own once a table exists
    arm.begin(transitions.before(start), start)
    return arm, cache


def _keys(contexts: np.ndarray, n: int) -> set[int]:
    return set((contexts[:, 0] * n + contexts[:, 1]).tolist())


def _differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per context: whether two rendered prompts differ (prompts of other lengths always do)."""
    if a.shape != b.shape:
        return np.ones(a.shape[0], dtype=bool)
    return np.asarray((a != b).any(axis=1))


def _charged(arm: PolicyArm) -> float:
    record = arm.ledger[-1]
    assert record.action == "regenerate_table"
    return float(record.flops)  # fake-cost: one flop per ranked context


def test_kept_rows_are_the_rows_served_before_and_only_ranked_contexts_are_charged(
    fake_stack, catalog, transitions, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    arm, cache = _arm(catalog, transitions, tmp_path)
    n = len(catalog)
    everything = all_contexts(n)
    t0 = arm.table
    assert t0 is not None
    day1 = arm.data_start + timedelta(days=22)  # type: ignore[operator]
    seen = transitions.before(day1)
    base_ids, _ = arm.table_rows(t0, everything)

    # Refresh, then regenerate the contexts seen in the last half day, keeping the others.
    arm.execute(RefreshKnowledge(window=TimeWindow.ending_at(day1, 14)), seen, day1)
    s1 = arm.knowledge
    w1 = TimeWindow.ending_at(day1, 0.5)
    arm.execute(RegenerateTable(contexts="observed", observed_window=w1, fallback="previous"), seen, day1)
    recent1 = _keys(observed_contexts(seen, w1), n)
    assert 0 < len(recent1) < n * (n - 1)
    ids1, _ = arm.table_rows(arm.table, everything)  # type: ignore[arg-type]
    fresh1, _ = cache.rows_for(INITIAL, s1, everything)
    keys = everything[:, 0] * n + everything[:, 1]
    mine = np.isin(keys, list(recent1))
    np.testing.assert_array_equal(ids1[mine], fresh1[mine])       # ranked now
    np.testing.assert_array_equal(ids1[~mine], base_ids[~mine])   # kept as served
    # Charged for the recent contexts whose prompt differs from the one their row was ranked from.
    plain = cache.prompts(None, everything)
    with_s1 = cache.prompts(s1, everything)
    assert plain is not None and with_s1 is not None
    changed1 = mine & _differ(plain, with_s1)
    assert _charged(arm) == int(changed1.sum()) > 0

    # A second refresh and a regeneration of another window: three generations of rows served.
    day2 = day1 + timedelta(days=3)
    seen2 = transitions.before(day2)
    arm.execute(RefreshKnowledge(window=TimeWindow.ending_at(day2, 2)), seen2, day2)
    s2 = arm.knowledge
    w2 = TimeWindow.ending_at(day2, 0.5)
    arm.execute(RegenerateTable(contexts="observed", observed_window=w2, fallback="previous"), seen2, day2)
    recent2 = np.isin(keys, list(_keys(observed_contexts(seen2, w2), n)))
    ids2, _ = arm.table_rows(arm.table, everything)  # type: ignore[arg-type]
    fresh2, _ = cache.rows_for(INITIAL, s2, everything)
    np.testing.assert_array_equal(ids2[recent2], fresh2[recent2])
    older = mine & ~recent2
    np.testing.assert_array_equal(ids2[older], fresh1[older])
    oldest = ~mine & ~recent2
    np.testing.assert_array_equal(ids2[oldest], base_ids[oldest])
    with_s2 = cache.prompts(s2, everything)
    assert with_s2 is not None
    # The prompt each served row was ranked from: s1's for the recent contexts, else no evidence.
    differs = np.where(mine, _differ(with_s1, with_s2), _differ(plain, with_s2))
    assert _charged(arm) == int((recent2 & differs).sum())
    # Every state a served row comes from stays in the cache.
    assert {(INITIAL, None), (INITIAL, s1), (INITIAL, s2)} <= arm.live_states()

    # A window without traffic ranks nothing, is charged nothing and changes no served row.
    quiet = TimeWindow(start=day2 - timedelta(days=1000), end=day2 - timedelta(days=999))
    arm.execute(RegenerateTable(contexts="observed", observed_window=quiet, fallback="previous"), seen2, day2)
    assert _charged(arm) == 0.0
    ids3, _ = arm.table_rows(arm.table, everything)  # type: ignore[arg-type]
    np.testing.assert_array_equal(ids3, ids2)
    # Regenerating the same state again re-ranks nothing either: the table has not changed.
    before = fake_stack["rank_contexts"]
    arm.execute(RegenerateTable(contexts="observed", observed_window=w2, fallback="previous"), seen2, day2)
    assert _charged(arm) == 0.0
    np.testing.assert_array_equal(arm.table_rows(arm.table, everything)[0], ids2)  # type: ignore[arg-type]
    assert fake_stack["rank_contexts"] == before
    assert len(np.unique(arm.table.states)) <= 3  # type: ignore[union-attr]


def test_the_backoff_fallback_serves_the_others_by_the_backoff(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    arm, _ = _arm(catalog, transitions, tmp_path)
    n = len(catalog)
    day1 = arm.data_start + timedelta(days=22)  # type: ignore[operator]
    seen = transitions.before(day1)
    arm.execute(RefreshKnowledge(window=TimeWindow.ending_at(day1, 14)), seen, day1)
    w1 = TimeWindow.ending_at(day1, 0.5)
    arm.execute(RegenerateTable(contexts="observed", observed_window=w1, fallback="serving"), seen, day1)
    everything = all_contexts(n)
    keys = everything[:, 0] * n + everything[:, 1]
    mine = np.isin(keys, list(_keys(observed_contexts(seen, w1), n)))
    ids, _ = arm.table_rows(arm.table, everything)  # type: ignore[arg-type]
    assert (ids[~mine] == -1).all() and (ids[mine] >= 0).any()
    served = arm.serve(everything, 5)
    assert not served.covered[~mine].any() and served.covered[mine].all()
    assert _charged(arm) <= int(mine.sum())
    assert arm.live_states() == {(INITIAL, arm.knowledge)} | (
        {(INITIAL, None)} if arm.measure_rag_agreement else set())


def test_a_backtest_regenerating_recent_contexts_costs_less_than_full(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    config = _prompt_config(arms=["hybrid", "adaptive"], end=date(2000, 2, 15))
    base, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    full = {a["name"]: a for a in base["arms"]}
    for fallback in ("previous", "serving"):
        policies = dict(config.llm.policies)
        for name in ("hybrid", "adaptive"):
            ref = policies[name]
            policies[name] = PluginRef(plugin=ref.plugin, options={
                **ref.options, "regenerate_recent_days": 1.0, "regenerate_fallback": fallback})
        recent = config.model_copy(update={"llm": config.llm.model_copy(update={"policies": policies})})
        report, result, _ = run_backtest(recent, data=(catalog, transitions), drift=False)
        for arm in report["arms"]:
            name = arm["name"]
            # hybrid's decisions do not depend on what it serves: the same actions, cheaper
            # tables when the served rows are kept. With the backoff fallback a context that
            # comes back must be ranked again (no table holds its row), which can cost more than
            # a full delta.
            if name == "hybrid":
                assert arm["cost"]["table_regenerations"] == full[name]["cost"]["table_regenerations"]
                if fallback == "previous":
                    assert arm["cost"]["flops_by_action"]["regenerate_table"] < \
                        full[name]["cost"]["flops_by_action"]["regenerate_table"]
            assert arm["metrics"]["regenerated_contexts"] <= arm["metrics"]["regenerated_contexts_if_full"]
            assert 0.0 < arm["metrics"]["hr@5"] <= 1.0
            if fallback == "previous":  # every context keeps a learned row
                assert all(d["coverage"] == 1.0 for d in arm["per_day"] if d["n"]), name
            states = np.unique(result.run(name).arm.table.states)  # type: ignore[attr-defined]
            assert len(states) <= len(arm["per_day"]) + 1
