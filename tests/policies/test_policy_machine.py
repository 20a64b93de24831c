"""Every built-in policy passes the stateful invariants of hybridrec.testing.policy_machine."""

from __future__ import annotations

from hybridrec_policies.policies import (
    AdaptivePolicy,
    HybridPolicy,
    PeriodicFineTunePolicy,
    PeriodicRagPolicy,
    RagOncePolicy,
    StaticPolicy,
)

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
