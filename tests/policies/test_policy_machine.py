"""Every built-in policy passes the stateful invariants of hybridrec.testing.policy_machine."""

from __future__ import annotations

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
from hybridrec.testing.policy_machine import make_policy_machine

TestStatic = make_policy_machine(lambda: StaticPolicy())
TestFtMonthly = make_policy_machine(lambda: PeriodicFineTunePolicy())
TestFtWeekly = make_policy_machine(lambda: PeriodicFineTunePolicy(PeriodicFineTunePolicy.Options(period_days=7)))
TestRagOnly = make_policy_machine(lambda: PeriodicRagPolicy())
TestRagOnce = make_policy_machine(lambda: RagOncePolicy())
TestHybrid = make_policy_machine(lambda: HybridPolicy())
TestAdaptive = make_policy_machine(lambda: AdaptivePolicy())
TestAdaptiveCapped = make_policy_machine(
    lambda: AdaptivePolicy(AdaptivePolicy.Options(max_knowledge_days=3, min_gain_per_cost=0.0,
                                                  min_fine_tune_days=1, max_fine_tune_days=10))
)
TestAdaptiveDrift = make_policy_machine(lambda: AdaptivePolicy(AdaptivePolicy.Options(rule="drift")))
TestAdaptiveTight = make_policy_machine(
    lambda: AdaptivePolicy(AdaptivePolicy.Options(rule="drift", min_rag_days=0.5, max_rag_days=1.5, default_rag_days=1.0,
                                                  min_fine_tune_days=1, max_fine_tune_days=10))
)
TestHybridRecentOnly = make_policy_machine(
    lambda: HybridPolicy(HybridPolicy.Options(regenerate_recent_days=3))
)
TestRagOnlyRecentBackoff = make_policy_machine(
    lambda: PeriodicRagPolicy(PeriodicRagPolicy.Options(regenerate_recent_days=1,
                                                        regenerate_fallback="serving"))
)
TestFtWeeklyRecentOnly = make_policy_machine(
    lambda: PeriodicFineTunePolicy(PeriodicFineTunePolicy.Options(period_days=7, regenerate_recent_days=7))
)
TestAdaptiveRecentOnly = make_policy_machine(
    lambda: AdaptivePolicy(AdaptivePolicy.Options(regenerate_recent_days=2, min_gain_per_cost=0.0,
                                                  max_knowledge_days=3))
)


@pytest.mark.parametrize("name", sorted(plugins.registry().names("update_policy")))
def test_every_registered_policy_passes_the_machine_with_default_options(name: str) -> None:
    # Whatever is registered (built-in or installed): budget, zero budgets, stretches without
    # data, a regeneration after every change, determinism, no future data.
    cls = plugins.get("update_policy", name)
    case = make_policy_machine(lambda: cls(), max_examples=15, steps=25, derandomize=True)
    case("runTest").runTest()
