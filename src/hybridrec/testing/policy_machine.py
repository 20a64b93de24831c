"""A hypothesis state machine that checks any :class:`~hybridrec.interfaces.UpdatePolicy`.

Use it on your own policy in one line::

    from hybridrec.testing.policy_machine import make_policy_machine

    TestMyPolicy = make_policy_machine(lambda: MyPolicy(MyPolicy.Options(period_days=3)))

The machine simulates the system around the policy: the clock and the data clock advance by
random amounts (with stretches of days without data, when only the clock moves), drift
changes, fine-tunes run elsewhere (``pending_fine_tune``) and finish or are
held by guardrails, a budget (sometimes zero) and per-action cost estimates are drawn. At every step it asks the
policy to decide, checks the decision, then executes it (each action costs its estimate, at the
clock). Checked invariants:

* **budget** — the ledger's spend in every limited unit over the rolling budget period never
  exceeds the limit (actions are charged their ``state.estimates``; kinds without an estimate
  are free);
* **pending** — no ``FineTune`` while ``state.pending_fine_tune``;
* **regeneration follows** — every ``FineTune`` and ``RefreshKnowledge`` of a decision is
  followed, later in the same decision, by a ``RegenerateTable`` (a new adapter or snapshot is
  served only through a new table; ``make_policy_machine(..., regenerate_in_decision=False)``
  drops this check for a policy that regenerates in a later decision);
* **knowledge bound** — if ``policy.knowledge_bound()`` is set, after each step the served
  knowledge lags ``data_until`` by at most the bound, unless a refresh plus a regeneration did
  not fit the budget left at that step;
* **determinism** — the same state (and a copy rebuilt from its JSON, with a fresh policy from the
  factory) gives the same decision;
* **no future** — every action's window ends at or before ``state.data_until`` (which is never
  after the clock);
* **needs** — the decision is the same when the signals the policy does not declare in
  ``needs`` are unmeasured (an engine measures only the declared ones).
"""

from __future__ import annotations

import unittest
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hybridrec.interfaces import UpdatePolicy
from hybridrec.types import (
    SIGNALS,
    UTC,
    Action,
    Budget,
    CostEstimate,
    CostRecord,
    DriftStats,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
)

START = datetime(2000, 1, 1, tzinfo=UTC)
UNITS = ("flops", "seconds", "money")
_TOLERANCE = 1e-6

budgets = st.one_of(
    st.just(Budget()),
    st.builds(
        Budget,
        period_days=st.sampled_from([7.0, 30.0]),
        flops=st.none() | st.floats(1e3, 1e6),
        seconds=st.none() | st.floats(10.0, 1e4),
    ),
    # A budget of zero: only actions priced at zero (or not priced at all) may run.
    st.builds(
        Budget,
        period_days=st.sampled_from([7.0, 30.0]),
        flops=st.just(0.0),
        seconds=st.none() | st.just(0.0),
        money=st.none() | st.just(0.0),
    ),
)


@st.composite
def estimate_tables(draw: st.DrawFn) -> dict[str, CostEstimate]:
    """Prices per action kind; sometimes missing (the policy cannot price that kind)."""
    table: dict[str, CostEstimate] = {}
    for kind, scale in (("fine_tune", 1e5), ("refresh_knowledge", 1e3), ("regenerate_table", 1e4)):
        if draw(st.booleans()) or draw(st.booleans()):
            table[kind] = CostEstimate(
                action=kind,  # type: ignore[arg-type]
                flops=draw(st.floats(0, scale)),
                seconds=draw(st.floats(0, scale / 100)),
            )
    return table


class PolicyMachine(RuleBasedStateMachine):
    """The simulation; subclassed by :func:`make_policy_machine` with a policy factory."""

    policy_factory: Callable[[], UpdatePolicy]
    #: check that every fine-tune and refresh is followed by a regeneration in its decision
    regenerate_in_decision: bool = True

    def __init__(self) -> None:
        super().__init__()
        self.policy = type(self).policy_factory()
        self.now = START
        self.data_until = START
        self.adapter: str | None = None
        self.adapter_until: datetime | None = None
        self.adapter_at: datetime | None = None
        self.knowledge: str | None = None
        self.knowledge_until: datetime | None = None
        self.knowledge_at: datetime | None = None
        self.table: str | None = None
        self.table_at: datetime | None = None
        self.table_knowledge = False
        self.pending = False
        self.held: list[str] = []
        self.ledger: list[CostRecord] = []
        self.drift = DriftStats()
        self.budget = Budget()
        self.estimates: dict[str, CostEstimate] = {}
        self.counter = 0

    # -- the world ---------------------------------------------------------------------------

    @initialize(budget=budgets, estimates=estimate_tables(), lead_days=st.integers(1, 90))
    def setup(self, budget: Budget, estimates: dict[str, CostEstimate], lead_days: int) -> None:
        self.budget = budget
        self.estimates = estimates
        self.now = START + timedelta(days=lead_days)
        self.data_until = self.now

    @rule(hours=st.integers(1, 24 * 12), lag_hours=st.integers(0, 36))
    def advance(self, hours: int, lag_hours: int) -> None:
        self.now += timedelta(hours=hours)
        self.data_until = max(self.data_until, self.now - timedelta(hours=lag_hours))

    @rule(days=st.integers(1, 45))
    def quiet_days(self, days: int) -> None:
        """Days without any transitions: the clock moves, the data clock does not."""
        self.now += timedelta(days=days)

    @rule(
        jaccard=st.none() | st.floats(0, 1),
        recall=st.none() | st.tuples(st.floats(0, 0.2), st.floats(0.001, 0.2),
                                     st.none() | st.floats(0, 0.2)),
        fresh=st.none() | st.tuples(st.floats(-0.05, 0.05), st.floats(0, 0.02)),
    )
    def drift_changes(
        self, jaccard: float | None, recall: tuple[float, float, float | None] | None,
        fresh: tuple[float, float] | None = None,
    ) -> None:
        self.drift = DriftStats(
            top5_jaccard=jaccard, pairs=0 if jaccard is None else 50,
            recall_recent=None if recall is None else recall[0],
            recall_at_training=None if recall is None else recall[1],
            recall_at_table=None if recall is None else recall[2],
            refresh_gain=None if fresh is None else fresh[0],
            refresh_gain_se=None if fresh is None else fresh[1],
            measured_at=self.now,
        )

    @rule()
    def fine_tune_starts_elsewhere(self) -> None:
        self.pending = True

    @rule(held=st.booleans())
    def pending_fine_tune_finishes(self, held: bool) -> None:
        if not self.pending:
            return
        self.pending = False
        self._finish_fine_tune(self.data_until, held, cost=None)

    # -- the policy step -----------------------------------------------------------------------

    def state(self) -> SystemState:
        return SystemState(
            now=self.now,
            data_start=START,
            data_until=self.data_until,
            adapter_version=self.adapter,
            adapter_trained_until=self.adapter_until,
            adapter_trained_at=self.adapter_at,
            knowledge_version=self.knowledge,
            knowledge_until=self.knowledge_until,
            knowledge_built_at=self.knowledge_at,
            table_version=self.table,
            table_built_at=self.table_at,
            table_uses_knowledge=self.table_knowledge,
            pending_fine_tune=self.pending,
            held_adapters=tuple(self.held),
            drift=self.drift,
            budget=self.budget,
            ledger=tuple(self.ledger),
            estimates=dict(self.estimates),
        )

    @rule(held=st.booleans())
    def step(self, held: bool) -> None:
        state = self.state()
        actions = self.policy.decide(state)
        self._check_decision(state, actions)
        rag_affordable = self._affordable(state, ["refresh_knowledge", "regenerate_table"])
        for action in actions:
            self._execute(action, held)
        bound = self.policy.knowledge_bound()
        if bound is not None and rag_affordable:
            assert self.knowledge_until is not None, (
                f"{self.policy.name}: no knowledge served after a step although a refresh was affordable"
            )
            lag = self.data_until - self.knowledge_until
            assert lag <= bound, (
                f"{self.policy.name}: knowledge lags data by {lag} after a step, bound is {bound}"
            )

    def _check_decision(self, state: SystemState, actions: list[Action]) -> None:
        name = self.policy.name
        again = self.policy.decide(state)
        assert again == actions, f"{name}: two calls on one state decided differently"
        copy = SystemState.model_validate_json(state.model_dump_json())
        fresh = type(self).policy_factory().decide(copy)
        assert fresh == actions, f"{name}: an equal state (rebuilt from JSON) decided differently"
        needs = frozenset(getattr(self.policy, "needs", SIGNALS))
        unmeasured = {f: 0 if f == "pairs" else None
                      for signal, fields in SIGNALS.items() if signal not in needs for f in fields}
        if unmeasured:
            blank = state.model_copy(update={"drift": state.drift.model_copy(update=unmeasured)})
            assert self.policy.decide(blank) == actions, (
                f"{name}: decided differently when {', '.join(sorted(unmeasured))} were unmeasured; "
                f"it reads a signal it does not declare (needs = {sorted(needs)})"
            )
        if state.pending_fine_tune:
            assert not any(isinstance(a, FineTune) for a in actions), (
                f"{name}: started a fine-tune while one is pending"
            )
        for i, action in enumerate(actions):
            if self.regenerate_in_decision and isinstance(action, FineTune | RefreshKnowledge):
                assert any(isinstance(a, RegenerateTable) for a in actions[i + 1 :]), (
                    f"{name}: {action.kind} is not followed by a regeneration in {actions}"
                )
        for action in actions:
            window = getattr(action, "window", None) or getattr(action, "observed_window", None)
            if window is not None:
                assert window.end <= state.data_until <= state.now, (
                    f"{name}: {action.kind} reads data until {window.end}, after data_until "
                    f"{state.data_until}"
                )
        for unit in UNITS:
            if getattr(state.budget, unit) is None:
                continue
            cost = sum(self._cost(a.kind, unit) for a in actions)
            assert cost <= state.budget_left(unit) + _TOLERANCE * max(1.0, cost), (  # type: ignore[arg-type]
                f"{name}: decided actions costing {cost} {unit}, budget left {state.budget_left(unit)}"  # type: ignore[arg-type]
            )

    def _cost(self, kind: str, unit: str) -> float:
        estimate = self.estimates.get(kind)
        return 0.0 if estimate is None else float(getattr(estimate, unit))

    def _affordable(self, state: SystemState, kinds: list[str]) -> bool:
        for unit in UNITS:
            if getattr(state.budget, unit) is None:
                continue
            if sum(self._cost(k, unit) for k in kinds) > state.budget_left(unit):  # type: ignore[arg-type]
                return False
        return True

    def _charge(self, kind: str, status: str = "ok") -> None:
        estimate = self.estimates.get(kind) or CostEstimate(action=kind)  # type: ignore[arg-type]
        self.ledger.append(CostRecord(
            action=kind, at=self.now, estimate=estimate, flops=estimate.flops,  # type: ignore[arg-type]
            seconds=estimate.seconds, money=estimate.money, status=status,  # type: ignore[arg-type]
        ))

    def _finish_fine_tune(self, until: datetime, held: bool, cost: str | None) -> None:
        self.counter += 1
        version = f"a{self.counter}"
        if cost is not None:
            self._charge(cost, "held" if held else "ok")
        if held:
            self.held.append(version)
            return
        self.adapter, self.adapter_until, self.adapter_at = version, until, self.now

    def _execute(self, action: Action, held: bool) -> None:
        self.counter += 1
        if isinstance(action, FineTune):
            self._finish_fine_tune(action.window.end, held, cost="fine_tune")
        elif isinstance(action, RefreshKnowledge):
            self._charge("refresh_knowledge")
            self.knowledge = f"k{self.counter}"
            self.knowledge_until, self.knowledge_at = action.window.end, self.now
        elif isinstance(action, RegenerateTable):
            self._charge("regenerate_table")
            self.table, self.table_at = f"t{self.counter}", self.now
            self.table_knowledge = action.use_knowledge and self.knowledge is not None

    @invariant()
    def budget_never_exceeded(self) -> None:
        since = self.now - timedelta(days=self.budget.period_days)
        for unit in UNITS:
            limit = getattr(self.budget, unit)
            if limit is None:
                continue
            spent = sum(getattr(r, unit) for r in self.ledger if r.at >= since)
            assert spent <= limit + _TOLERANCE * max(1.0, limit), (
                f"{self.policy.name}: spent {spent} {unit} in the last {self.budget.period_days} "
                f"days, budget {limit}"
            )


def make_policy_machine(
    policy_factory: Callable[[], UpdatePolicy],
    *,
    max_examples: int = 40,
    steps: int = 40,
    regenerate_in_decision: bool = True,
    **settings_kwargs: Any,
) -> type[unittest.TestCase]:
    """A ``unittest.TestCase`` class that runs :class:`PolicyMachine` on ``policy_factory()``.

    Assign it to a module-level name starting with ``Test`` for pytest to collect it.
    ``regenerate_in_decision=False`` drops the "regeneration follows" check (for a policy that
    serves a new adapter or snapshot through a regeneration in a later decision).
    ``settings_kwargs`` go to :func:`hypothesis.settings` (e.g. ``derandomize=True``).
    """
    name = f"PolicyMachine_{policy_factory().name.replace('-', '_')}"
    machine: Any = type(name, (PolicyMachine,), {"policy_factory": staticmethod(policy_factory),
                                                 "regenerate_in_decision": regenerate_in_decision})
    machine.TestCase.settings = settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        **settings_kwargs,
    )
    return machine.TestCase  # type: ignore[no-any-return]


__all__ = ["PolicyMachine", "budgets", "estimate_tables", "make_policy_machine"]
