"""Executing one action, once, the same way everywhere: estimate → run → guardrails → veto hook →
record in the ledger → promote (or hold).

The engine depends only on a :class:`VersionStore`: what is served now, how a built candidate is
committed as a version, how a version is promoted or held, and where ledger records go. The
workspace (versions on disk, one atomic pointer) and the backtest (one in-memory store per arm)
implement it; neither is imported here.

:func:`execute` takes the action's estimate (priced before the run) and a ``run`` callable that
builds the candidate (staged, not yet a version). First, with a ``budget`` that sets limits, an
action whose estimate does not fit what is left of the budget period (limit minus the ledger's
spending since ``now - period_days``) is **skipped**: not run, not recorded, status ``skipped``
with the reason; the callers then skip the rest of that decision, since its later actions were
planned on top of this one. Then, in order:

1. **guardrails** (fine-tunes): :func:`guardrail_reasons` on the candidate's held-out metrics
   (``checks``: the generator's guarded metrics);
2. **veto**: the ``veto_promotion`` hook may stop any candidate (it sees the candidate's manifest
   and the served one's);
3. **commit** the candidate as a version with ``status`` ``ok`` or ``needs_review``;
4. **record** a :class:`~hybridrec.types.CostRecord` (compute spent is spent, promoted or not)
   and call ``on_action_executed``;
5. **promote** the version (served from now on) or **hold** it for review
   (``on_guardrail_failed`` for adapters).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from hybridrec.config import GuardrailConfig
from hybridrec.errors import HybridrecError
from hybridrec.interfaces import CostModel
from hybridrec.types import Action, ActionKind, Budget, CostEstimate, TimeWindow
from hybridrec.versions import Candidate, VersionStore

#: The kind of version each action produces.
PRODUCES: dict[str, str] = {
    "fine_tune": "adapter", "refresh_knowledge": "knowledge", "regenerate_table": "table",
}


class FutureDataError(HybridrecError):
    """A policy asked for data after the data it may see."""


def check_window(window: TimeWindow, data_until: datetime, kind: str, who: str = "the policy") -> None:
    """Raise :class:`FutureDataError` if ``window`` ends after ``data_until``."""
    if window.end > data_until:
        raise FutureDataError(
            f"{who} asked for {kind} on data until {window.end.isoformat()}, after the data seen "
            f"({data_until.isoformat()}); policies must not read the future"
        )


def guardrail_reasons(metrics: dict[str, float], config: GuardrailConfig,
                      checks: Mapping[str, str] | None = None) -> list[str]:
    """Why an adapter must be held (empty: it may be promoted): :mod:`hybridrec.guardrails`
    with the guarded metrics ``checks`` (the generator's
    :meth:`~hybridrec.interfaces.Generator.guardrail_metrics`; default the paper's)."""
    from hybridrec.guardrails import check_guardrails

    return [str(reason) for reason in check_guardrails(metrics, config, checks)]


def hooks() -> Any:
    from hybridrec.plugins import get_plugin_manager

    return get_plugin_manager().hook


def veto(kind: str, candidate: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    """The first plugin's reason to stop ``candidate`` from being promoted, or None."""
    reason = hooks().veto_promotion(kind=kind, candidate=candidate, current=current)
    return None if reason is None else str(reason)


class ActionOutcome(BaseModel):
    """What happened to one action."""

    model_config = ConfigDict(extra="forbid")

    kind: ActionKind
    status: Literal["ok", "held", "failed", "skipped"]
    reason: str = ""
    version: str | None = None
    seconds: float = 0.0
    note: str = ""


#: label prefix of an action skipped because it (or an earlier action of its decision) did not
#: fit the budget
OVER_BUDGET = "skipped(over budget):"


def decide_checked(policy: Any, state: Any) -> list[Action]:
    """``policy.decide(state)``, checked at the boundary: an exception inside the policy, or
    anything in its decision that is not an action, becomes a
    :class:`~hybridrec.errors.PluginError` naming the plugin (the original exception is its
    cause: set ``HYBRIDREC_TRACEBACK=1`` to see the plugin's traceback from the CLI)."""
    from hybridrec.errors import PluginError
    from hybridrec.types import FineTune, Noop, RefreshKnowledge, RegenerateTable

    name = getattr(policy, "name", type(policy).__name__)
    try:
        actions = list(policy.decide(state))
    except HybridrecError:
        raise
    except Exception as exc:
        raise PluginError(f"update policy {name!r} raised {type(exc).__name__} in decide(): {exc}") from exc
    for i, action in enumerate(actions):
        if not isinstance(action, FineTune | RefreshKnowledge | RegenerateTable | Noop):
            raise PluginError(
                f"update policy {name!r} decided {type(action).__name__} {action!r:.80} at "
                f"position {i}: a decision is a list of FineTune, RefreshKnowledge, "
                "RegenerateTable or Noop actions")
    return actions


def run_decision(actions: Sequence[Action], run: Callable[[Action], ActionOutcome]) -> list[ActionOutcome]:
    """Execute a policy's decision in order with ``run`` (one action → its outcome). Once an
    action is skipped over budget, the rest of the decision is skipped too: it was planned on top
    of that action. The one decision loop of both drivers."""
    outcomes: list[ActionOutcome] = []
    over: ActionOutcome | None = None
    for action in actions:
        if over is not None:
            outcomes.append(ActionOutcome(
                kind=action.kind, status="skipped", reason=action.reason,
                note=f"not run: an earlier action of this decision was {over.note}"))
            continue
        outcome = run(action)
        outcomes.append(outcome)
        if outcome.status == "skipped" and outcome.note.startswith("over budget"):
            over = outcome
    return outcomes


def outcome_label(outcome: ActionOutcome, *, with_knowledge: bool = False) -> str:
    """The backtest report's label of one action's outcome (``per_day[].actions``):
    ``fine_tune``, ``fine_tune(held)``, ``regenerate_table+rag`` (``with_knowledge``: the table
    serves knowledge), ``skipped(over budget):<kind>`` ..."""
    if outcome.status == "skipped":
        if "over budget" in outcome.note:
            return OVER_BUDGET + outcome.kind
        return f"{outcome.kind}(skipped)"
    if outcome.status != "ok":
        return f"{outcome.kind}({outcome.status})"
    return outcome.kind + ("+rag" if outcome.kind == "regenerate_table" and with_knowledge else "")


def served_versions(store: VersionStore) -> dict[str, str | None]:
    return {kind: store.served(kind) for kind in ("adapter", "knowledge", "table")}


def over_budget(
    store: VersionStore, budget: Budget | None, estimate: CostEstimate, now: datetime
) -> str | None:
    """Why ``estimate`` does not fit what is left of ``budget`` at ``now`` (None if it fits or
    nothing is limited)."""
    if budget is None:
        return None
    limited = [u for u in ("flops", "seconds", "money") if getattr(budget, u) is not None]
    if not limited:
        return None
    records = store.ledger(now - timedelta(days=budget.period_days))
    for unit in limited:
        limit = float(getattr(budget, unit))
        left = limit - sum(float(getattr(r, unit)) for r in records)
        cost = float(getattr(estimate, unit))
        if cost > left:
            return (f"over budget: needs {cost:.3g} {unit}, {max(0.0, left):.3g} of {limit:.3g} "
                    f"left in the {budget.period_days:g}-day budget period")
    return None


def execute(
    store: VersionStore,
    cost_model: CostModel,
    kind: ActionKind,
    *,
    estimate: CostEstimate,
    run: Callable[[], Candidate],
    now: datetime,
    reason: str,
    guardrails: GuardrailConfig,
    versions_in: dict[str, str | None] | None = None,
    budget: Budget | None = None,
    checks: Mapping[str, str] | None = None,
) -> ActionOutcome:
    """Run one action and settle it (see the module docstring)."""
    too_dear = over_budget(store, budget, estimate, now)
    if too_dear is not None:
        return ActionOutcome(kind=kind, status="skipped", reason=reason, note=too_dear)
    candidate = run()
    produced = PRODUCES[kind]
    reasons: list[str] = []
    if candidate.metrics is not None:
        reasons = guardrail_reasons(candidate.metrics, guardrails, checks)
    vetoed: str | None = None
    if not reasons:
        vetoed = veto(produced, candidate.manifest, store.manifest(produced, store.served(produced)))
        if vetoed and produced == "adapter":
            reasons = [f"vetoed by a plugin: {vetoed}"]
    held = bool(reasons or vetoed)
    candidate.manifest["status"] = "needs_review" if held else "ok"
    if candidate.metrics is not None:
        candidate.manifest["guardrail_reasons"] = reasons
    version = store.commit(produced, candidate)
    if reasons:
        note = outcome_note = "; ".join(reasons)
    elif vetoed:
        note, outcome_note = f"vetoed: {vetoed}", vetoed
    else:
        note, outcome_note = reason, ""
    try:
        record = cost_model.record(
            kind, estimate, at=now, seconds=candidate.seconds,
            versions_in=served_versions(store) if versions_in is None else versions_in,
            versions_out=candidate.versions_out or {produced: version},
            status="held" if held else "ok", note=note,
        )
    except ValidationError as exc:
        from hybridrec.errors import PluginError, format_validation_error

        name = getattr(cost_model, "name", type(cost_model).__name__)
        raise PluginError(f"cost model {name!r} recorded {kind} with an invalid record: "
                          f"{format_validation_error(exc)}") from None
    store.record(record)
    hooks().on_action_executed(record=record)
    if held:
        store.hold(produced, version)
        if produced == "adapter":
            hooks().on_guardrail_failed(version=version, reasons=reasons, manifest=candidate.manifest)
        return ActionOutcome(kind=kind, status="held", reason=reason, version=version,
                             seconds=candidate.seconds, note=outcome_note)
    store.promote(produced, version)
    return ActionOutcome(kind=kind, status="ok", reason=reason, version=version, seconds=candidate.seconds)


__all__ = [
    "OVER_BUDGET",
    "PRODUCES",
    "ActionOutcome",
    "Candidate",
    "FutureDataError",
    "VersionStore",
    "check_window",
    "decide_checked",
    "execute",
    "guardrail_reasons",
    "hooks",
    "outcome_label",
    "over_budget",
    "run_decision",
    "served_versions",
    "veto",
]
