"""Every built-in policy on generated states (hybridrec.testing.strategies.system_states: every
signal present or missing, estimates in every unit, budgets at or near what the ledger spent):
only actions, nothing read past ``data_until``, the budget kept, and the same decision twice."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from hybridrec.plugins import build
from hybridrec.testing import strategies as hst
from hybridrec.types import FineTune, Noop, RefreshKnowledge, RegenerateTable, SystemState

POLICIES = ("static", "periodic-finetune", "periodic-rag", "rag-once", "hybrid", "adaptive")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=hst.system_states())
def test_built_in_policies_keep_their_contract_on_any_state(state: SystemState) -> None:
    for name in POLICIES:
        policy = build("update_policy", name)
        actions = policy.decide(state)
        assert actions == policy.decide(state), name  # a pure function of the state
        for action in actions:
            assert isinstance(action, FineTune | RefreshKnowledge | RegenerateTable | Noop), name
            window = getattr(action, "window", None)
            if window is not None:
                assert window.end <= state.data_until, (name, action)
        for unit in ("flops", "seconds", "money"):
            if getattr(state.budget, unit) is None:
                continue
            cost = sum(float(getattr(state.estimates[a.kind], unit))
                       for a in actions if a.kind in state.estimates)
            left = max(0.0, state.budget_left(unit))  # an overspent period allows free actions only
            assert cost <= left + 1e-9 * max(1.0, cost), (name, unit, actions)
