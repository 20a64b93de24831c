"""Specifications of the built-in update policies (docs/protocol.md, the arms)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hybridrec_policies.policies import (
    AdaptivePolicy,
    HybridPolicy,
    PeriodicFineTunePolicy,
    PeriodicRagPolicy,
    RagOncePolicy,
    StaticPolicy,
)

from hybridrec import plugins
from hybridrec.types import (
    UTC,
    Budget,
    CostEstimate,
    CostRecord,
    DriftStats,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
)

NOW = datetime(2000, 7, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def state(**changes: object) -> SystemState:
    """A system whose artifacts were all built ``age`` days before the data clock."""
    base: dict[str, object] = {"now": NOW, "data_start": NOW - 200 * DAY, "data_until": NOW}
    base.update(changes)
    return SystemState(**base)  # type: ignore[arg-type]


def served(adapter_age: float, knowledge_age: float | None = None, **changes: object) -> SystemState:
    fields: dict[str, object] = {
        "adapter_version": "a1", "adapter_trained_until": NOW - adapter_age * DAY,
        "adapter_trained_at": NOW - adapter_age * DAY, "table_version": "t1",
        "table_built_at": NOW - DAY,
    }
    if knowledge_age is not None:
        fields.update(knowledge_version="k1", knowledge_until=NOW - knowledge_age * DAY,
                      knowledge_built_at=NOW - knowledge_age * DAY)
    fields.update(changes)
    return state(**fields)


def kinds(actions: list) -> list[str]:
    return [a.kind for a in actions]


def test_every_builtin_policy_is_registered_by_name() -> None:
    names = set(plugins.registry().names("update_policy"))
    assert {"static", "periodic-finetune", "periodic-rag", "rag-once", "hybrid", "adaptive"} <= names


def test_hybrid_starts_with_fine_tune_refresh_and_regeneration_on_the_configured_windows() -> None:
    actions = HybridPolicy().decide(state())
    assert kinds(actions) == ["fine_tune", "refresh_knowledge", "regenerate_table"]
    ft, refresh, regen = actions
    assert isinstance(ft, FineTune) and isinstance(refresh, RefreshKnowledge)
    assert ft.window.end == NOW and ft.window.days == 30
    assert refresh.window.end == NOW and refresh.window.days == 14
    assert isinstance(regen, RegenerateTable) and regen.use_knowledge


def test_hybrid_refreshes_every_two_days_and_fine_tunes_every_thirty() -> None:
    policy = HybridPolicy()
    assert policy.decide(served(adapter_age=10, knowledge_age=1)) == []
    assert kinds(policy.decide(served(adapter_age=10, knowledge_age=2))) == ["refresh_knowledge", "regenerate_table"]
    assert kinds(policy.decide(served(adapter_age=30, knowledge_age=1)))[0] == "fine_tune"
    assert policy.knowledge_bound() == 2 * DAY


def test_periodic_finetune_regenerates_without_knowledge() -> None:
    weekly = PeriodicFineTunePolicy(PeriodicFineTunePolicy.Options(period_days=7, train_days=14))
    assert weekly.decide(served(adapter_age=6)) == []
    actions = weekly.decide(served(adapter_age=7))
    assert kinds(actions) == ["fine_tune", "regenerate_table"]
    assert actions[0].window.days == 14 and actions[0].warm_start
    assert actions[1].use_knowledge is False
    assert weekly.knowledge_bound() is None


def test_static_fine_tunes_once_then_never_again() -> None:
    policy = StaticPolicy()
    assert kinds(policy.decide(state())) == ["fine_tune", "regenerate_table"]
    assert policy.decide(served(adapter_age=400)) == []


def test_static_serves_the_base_model_when_its_only_fine_tune_was_held() -> None:
    actions = StaticPolicy().decide(state(held_adapters=("a1",)))
    assert kinds(actions) == ["regenerate_table"]


def test_periodic_rag_fine_tunes_only_once_and_then_refreshes_on_its_period() -> None:
    policy = PeriodicRagPolicy()
    assert kinds(policy.decide(state())) == ["fine_tune", "refresh_knowledge", "regenerate_table"]
    assert kinds(policy.decide(served(adapter_age=300, knowledge_age=2))) == ["refresh_knowledge", "regenerate_table"]
    assert policy.decide(served(adapter_age=300, knowledge_age=1)) == []


def test_rag_once_builds_knowledge_once() -> None:
    policy = RagOncePolicy()
    assert kinds(policy.decide(state())) == ["fine_tune", "refresh_knowledge", "regenerate_table"]
    assert policy.decide(served(adapter_age=100, knowledge_age=100)) == []


def test_no_fine_tune_while_one_is_pending() -> None:
    for policy in (HybridPolicy(), PeriodicFineTunePolicy(), AdaptivePolicy()):
        actions = policy.decide(served(adapter_age=90, knowledge_age=5, pending_fine_tune=True))
        assert "fine_tune" not in kinds(actions), policy.name


def _held_fine_tune(days_ago: float) -> CostRecord:
    at = NOW - days_ago * DAY
    return CostRecord(action="fine_tune", at=at, estimate=CostEstimate(action="fine_tune"), status="held")


def test_a_held_fine_tune_is_not_retried_before_its_period() -> None:
    policy = PeriodicFineTunePolicy(PeriodicFineTunePolicy.Options(period_days=7))
    assert policy.decide(served(adapter_age=20, ledger=(_held_fine_tune(3),))) == []
    assert kinds(policy.decide(served(adapter_age=20, ledger=(_held_fine_tune(7),))))[0] == "fine_tune"


def _priced(**budget: float) -> dict[str, object]:
    return {
        "budget": Budget(period_days=30, **budget),
        "estimates": {
            "fine_tune": CostEstimate(action="fine_tune", flops=1000.0),
            "refresh_knowledge": CostEstimate(action="refresh_knowledge", flops=10.0),
            "regenerate_table": CostEstimate(action="regenerate_table", flops=100.0),
        },
    }


def test_hybrid_under_a_tight_budget_keeps_the_refresh_and_drops_the_fine_tune() -> None:
    actions = HybridPolicy().decide(served(adapter_age=30, knowledge_age=2, **_priced(flops=500.0)))
    assert kinds(actions) == ["refresh_knowledge", "regenerate_table"]
    assert HybridPolicy().decide(served(adapter_age=30, knowledge_age=2, **_priced(flops=50.0))) == []


def test_budget_counts_what_was_spent_in_the_period() -> None:
    spent = CostRecord(action="fine_tune", at=NOW - 5 * DAY, estimate=CostEstimate(action="fine_tune"), flops=1000.0)
    old = CostRecord(action="fine_tune", at=NOW - 40 * DAY, estimate=CostEstimate(action="fine_tune"), flops=1000.0)
    priced = _priced(flops=1500.0)
    assert kinds(HybridPolicy().decide(served(adapter_age=30, knowledge_age=2, ledger=(old,), **priced)))[0] == "fine_tune"
    assert kinds(HybridPolicy().decide(served(adapter_age=30, knowledge_age=2, ledger=(spent,), **priced))) == [
        "refresh_knowledge", "regenerate_table"]


def _drift_rule() -> AdaptivePolicy:
    return AdaptivePolicy(AdaptivePolicy.Options(rule="drift"))


@pytest.mark.parametrize(("jaccard", "fine_tunes"), [(0.1, True), (0.5, False), (None, False)])
def test_adaptive_fine_tunes_on_drift_after_the_minimum_interval(jaccard: float | None, fine_tunes: bool) -> None:
    drift = DriftStats(top5_jaccard=jaccard, pairs=100)
    policy = _drift_rule()
    actions = policy.decide(served(adapter_age=10, knowledge_age=0.5, drift=drift))
    assert ("fine_tune" in kinds(actions)) is fine_tunes
    assert "fine_tune" not in kinds(policy.decide(served(adapter_age=3, knowledge_age=0.5, drift=drift)))


def test_adaptive_fine_tunes_at_the_maximum_interval_without_drift() -> None:
    calm = DriftStats(top5_jaccard=0.9, pairs=100)
    assert kinds(_drift_rule().decide(served(adapter_age=60, knowledge_age=0.5, drift=calm)))[0] == "fine_tune"


def test_adaptive_fine_tunes_when_recent_recall_drops() -> None:
    drift = DriftStats(recall_recent=0.01, recall_at_training=0.05)
    assert kinds(_drift_rule().decide(served(adapter_age=10, knowledge_age=0.5, drift=drift)))[0] == "fine_tune"


def test_adaptive_refreshes_more_often_when_drift_is_higher() -> None:
    policy = _drift_rule()
    stormy = policy.rag_days(state(drift=DriftStats(top5_jaccard=0.05)))
    middling = policy.rag_days(state(drift=DriftStats(top5_jaccard=0.35)))
    calm = policy.rag_days(state(drift=DriftStats(top5_jaccard=0.95)))
    assert stormy == policy.options.min_rag_days < middling < calm == policy.options.max_rag_days
    assert policy.knowledge_bound() == policy.options.max_rag_days * DAY
    calm_state = served(adapter_age=5, knowledge_age=2.5, drift=DriftStats(top5_jaccard=0.95))
    stormy_state = served(adapter_age=5, knowledge_age=2.5, drift=DriftStats(top5_jaccard=0.3))
    assert policy.decide(calm_state) == []
    assert kinds(policy.decide(stormy_state)) == ["refresh_knowledge", "regenerate_table"]


def test_adaptive_keeps_headroom_for_a_refresh_after_a_fine_tune() -> None:
    drift = DriftStats(top5_jaccard=0.05, pairs=100)
    # fine-tune + refresh + regenerate = 1110 fits 1150 but not with one more refresh (110) to spare
    actions = _drift_rule().decide(served(adapter_age=10, knowledge_age=5, drift=drift, **_priced(flops=1150.0)))
    assert kinds(actions) == ["refresh_knowledge", "regenerate_table"]
    actions = _drift_rule().decide(served(adapter_age=10, knowledge_age=5, drift=drift, **_priced(flops=1250.0)))
    assert kinds(actions)[0] == "fine_tune"


def test_adaptive_rejects_inconsistent_options() -> None:
    with pytest.raises(ValueError, match="min_fine_tune_days"):
        AdaptivePolicy.Options(min_fine_tune_days=90, max_fine_tune_days=60)
    with pytest.raises(ValueError, match="extra"):
        HybridPolicy.Options(fine_tune_every_day=3)  # type: ignore[call-arg]


def test_windows_never_end_after_the_data_clock_even_when_it_lags_the_clock() -> None:
    lagging = state(data_until=NOW - 3 * DAY)
    for policy in (StaticPolicy(), PeriodicFineTunePolicy(), PeriodicRagPolicy(), RagOncePolicy(), HybridPolicy(), AdaptivePolicy()):
        for action in policy.decide(lagging):
            window = getattr(action, "window", None)
            assert window is None or window.end == lagging.data_until, policy.name


# -- the adaptive policy's benefit rule ---------------------------------------------------------


def _recall(recent: float, at_table: float | None, at_training: float | None) -> DriftStats:
    return DriftStats(recall_recent=recent, recall_at_table=at_table, recall_at_training=at_training)


def test_benefit_rule_waits_without_evidence_and_refreshes_once_initially() -> None:
    policy = AdaptivePolicy()
    assert policy.options.rule == "benefit" and policy.knowledge_bound() is None
    # Served, never refreshed: the one initial refresh.
    assert kinds(policy.decide(served(adapter_age=5))) == ["refresh_knowledge", "regenerate_table"]
    # Refreshed, no recall signal yet (or no loss): nothing, however old the knowledge.
    assert policy.decide(served(adapter_age=5, knowledge_age=40)) == []
    assert policy.decide(served(adapter_age=5, knowledge_age=40, drift=_recall(0.33, 0.33, 0.33))) == []


def test_benefit_rule_refreshes_when_the_table_lost_enough_per_unit_of_cost() -> None:
    policy = AdaptivePolicy(AdaptivePolicy.Options(min_gain_per_cost=0.01, refresh_evidence="recall"))
    priced = _priced()  # regenerate 100, refresh 10: a refresh group costs 1.1 regenerations
    lost = _recall(0.30, 0.33, 0.33)  # 0.03 lost since the table was built: 0.027 per unit
    assert kinds(policy.decide(served(adapter_age=5, knowledge_age=3, drift=lost, **priced))) == [
        "refresh_knowledge", "regenerate_table"]
    small = _recall(0.325, 0.33, 0.33)  # 0.005 lost: below the threshold
    assert policy.decide(served(adapter_age=5, knowledge_age=3, drift=small, **priced)) == []
    # Knowledge younger than min_rag_days is not refreshed, whatever the loss.
    assert policy.decide(served(adapter_age=5, knowledge_age=0.5, drift=lost, **priced)) == []


def _fresh(gain: float, se: float, **recall: float | None) -> DriftStats:
    return DriftStats(refresh_gain=gain, refresh_gain_se=se, **recall)  # type: ignore[arg-type]


def test_benefit_rule_refreshes_on_the_counterfactual_gain_once_it_clears_the_noise() -> None:
    policy = AdaptivePolicy()  # counterfactual evidence, z = 1.96, no price floor
    assert policy.options.refresh_evidence == "counterfactual"
    priced = _priced()
    refresh = ["refresh_knowledge", "regenerate_table"]
    # 0.004 gained with a standard error of 0.001: 0.004 - 1.96 * 0.001 > 0, a refresh.
    assert kinds(policy.decide(served(adapter_age=5, knowledge_age=6, drift=_fresh(0.004, 0.001), **priced))) == refresh
    # The same gain with a standard error of 0.003 is noise: nothing.
    assert policy.decide(served(adapter_age=5, knowledge_age=6, drift=_fresh(0.004, 0.003), **priced)) == []
    # Fresher counts that would have done worse: nothing; nor without the signal.
    assert policy.decide(served(adapter_age=5, knowledge_age=6, drift=_fresh(-0.01, 0.001), **priced)) == []
    assert policy.decide(served(adapter_age=5, knowledge_age=6, **priced)) == []
    # A large recall loss does not buy a refresh under counterfactual evidence (it is noise-prone).
    assert policy.decide(served(adapter_age=5, knowledge_age=6, drift=_recall(0.20, 0.40, None), **priced)) == []
    # The user's price of a point of HR@5: 0.004 - 0.00196 per 1.1 regenerations is below 0.01.
    dear = AdaptivePolicy(AdaptivePolicy.Options(min_refresh_gain_per_cost=0.01))
    assert dear.decide(served(adapter_age=5, knowledge_age=6, drift=_fresh(0.004, 0.001), **priced)) == []
    assert kinds(dear.decide(served(adapter_age=5, knowledge_age=6, drift=_fresh(0.02, 0.001), **priced))) == refresh
    # And a zero budget buys nothing.
    assert policy.decide(served(adapter_age=5, knowledge_age=6, drift=_fresh(0.02, 0.001), **_priced(flops=0.0))) == []


def test_benefit_rule_fine_tunes_when_refreshes_did_not_recover_the_loss() -> None:
    policy = AdaptivePolicy(AdaptivePolicy.Options(min_gain_per_cost=0.01, refresh_evidence="recall"))
    # Fine-tune group: 1000 + 10 + 100 = 11.1 regenerations. Lost 0.2 since training, 0 since
    # the last refresh: 0.018 per unit, above the threshold.
    drift = _recall(0.20, 0.40, 0.40).model_copy(update={"recall_at_table": 0.20})
    actions = policy.decide(served(adapter_age=10, knowledge_age=3, drift=drift, **_priced()))
    assert kinds(actions) == ["fine_tune", "refresh_knowledge", "regenerate_table"]
    # Too young an adapter: no fine-tune.
    assert policy.decide(served(adapter_age=3, knowledge_age=3, drift=drift, **_priced())) == []
    # A fine-tune that would gain as little as a refresh loses to the refresh (cheaper per gain).
    both = _recall(0.30, 0.35, 0.35)
    assert kinds(policy.decide(served(adapter_age=10, knowledge_age=3, drift=both, **_priced()))) == [
        "refresh_knowledge", "regenerate_table"]


def test_benefit_rule_respects_a_zero_budget_and_the_optional_knowledge_cap() -> None:
    lost = _recall(0.20, 0.40, 0.40)
    assert AdaptivePolicy().decide(served(adapter_age=10, knowledge_age=3, drift=lost, **_priced(flops=0.0))) == []
    capped = AdaptivePolicy(AdaptivePolicy.Options(max_knowledge_days=7))
    assert capped.knowledge_bound() == 7 * DAY
    assert kinds(capped.decide(served(adapter_age=5, knowledge_age=7))) == ["refresh_knowledge", "regenerate_table"]


def test_benefit_rule_can_regenerate_only_recently_observed_contexts() -> None:
    policy = AdaptivePolicy(AdaptivePolicy.Options(regenerate_recent_days=7))
    actions = policy.decide(served(adapter_age=5))
    regenerate = actions[-1]
    assert isinstance(regenerate, RegenerateTable) and regenerate.contexts == "observed"
    assert regenerate.observed_window is not None
    assert regenerate.observed_window.end == NOW and regenerate.observed_window.start == NOW - 7 * DAY


@pytest.mark.parametrize("policy", [
    PeriodicFineTunePolicy(PeriodicFineTunePolicy.Options(period_days=7, regenerate_recent_days=3)),
    PeriodicRagPolicy(PeriodicRagPolicy.Options(regenerate_recent_days=3)),
    HybridPolicy(HybridPolicy.Options(regenerate_recent_days=3)),
    AdaptivePolicy(AdaptivePolicy.Options(regenerate_recent_days=3, max_knowledge_days=2)),
    AdaptivePolicy(AdaptivePolicy.Options(rule="drift", regenerate_recent_days=3)),
])
def test_regenerate_recent_days_restricts_every_regeneration_once_a_table_is_served(policy) -> None:  # type: ignore[no-untyped-def]
    actions = policy.decide(served(adapter_age=40, knowledge_age=10))
    assert actions and isinstance(actions[-1], RegenerateTable)
    regenerate = actions[-1]
    assert regenerate.contexts == "observed" and regenerate.fallback == "previous"
    assert regenerate.observed_window is not None
    assert (regenerate.observed_window.start, regenerate.observed_window.end) == (NOW - 3 * DAY, NOW)
    # With no table served yet, the first table ranks every context.
    first = policy.decide(served(adapter_age=40, knowledge_age=10, table_version=None, table_built_at=None))
    assert isinstance(first[-1], RegenerateTable) and first[-1].contexts == "all"
    # The fallback can be the serving fallback instead ("backoff", its former name, still reads).
    for name in ("serving", "backoff"):
        options = type(policy.options).model_validate({**policy.options.model_dump(), "regenerate_fallback": name})
        assert options.regenerate_fallback == "serving"
        assert type(policy)(options).decide(served(adapter_age=40, knowledge_age=10))[-1].fallback == "serving"
    assert RegenerateTable(fallback="backoff").fallback == "serving"  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", [PeriodicFineTunePolicy(), PeriodicRagPolicy(), HybridPolicy(),
                                    AdaptivePolicy(AdaptivePolicy.Options(max_knowledge_days=2))])
def test_by_default_every_regeneration_ranks_every_context(policy) -> None:  # type: ignore[no-untyped-def]
    actions = policy.decide(served(adapter_age=40, knowledge_age=10))
    assert [a.contexts for a in actions if isinstance(a, RegenerateTable)] == ["all"]
