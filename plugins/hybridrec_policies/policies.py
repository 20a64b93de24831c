"""The built-in update policies: pure functions of :class:`~hybridrec.types.SystemState`.

Backtest arms (docs/protocol.md) map to policies and options as follows (the cadences are the
rerank preset's)::

    no-update   static
    ft-monthly  periodic-finetune  period_days=30
    ft-weekly   periodic-finetune  period_days=7
    rag-only    periodic-rag       period_days=4   (fine-tunes once if there is no adapter yet)
    rag-once    rag-once
    hybrid      hybrid             fine_tune_every_days=30, rag_every_days=4
    adaptive    adaptive           rule="benefit" (acts on measured gain per unit of cost; a refresh
                                   on the counterfactual gain of fresher counts)

Shared rules (every policy here):

* **Windows.** A fine-tune trains on the last ``train_days`` ending at ``state.data_until``; a
  knowledge refresh reads the last ``knowledge_days`` ending at ``state.data_until``. Nothing ever
  reads past ``data_until``.
* **Ages are data time.** "Every T days" compares the end of an artifact's window with
  ``data_until``: with no new data nothing becomes due, and in a daily replay it is the calendar.
* **Pending fine-tunes.** No ``FineTune`` while ``state.pending_fine_tune``.
* **Held fine-tunes.** A fine-tune whose adapter was held by the guardrails (ledger status
  ``held`` or ``failed``) is not retried until its period has passed since that attempt.
* **Budget.** When ``state.budget`` sets a limit and ``state.estimates`` prices an action kind,
  the actions returned cost at most ``state.budget_left(unit)`` in every limited unit. A policy
  lists alternatives in preference order (e.g. fine-tune + refresh + regenerate, else refresh +
  regenerate) and returns the first that fits. An action kind without an estimate counts as
  free.
* **Regeneration.** Every change of adapter or knowledge is followed by ``RegenerateTable``
  (with knowledge for the RAG policies, without for the pure fine-tuning ones), in the same
  decision.
* **Regenerating recent contexts only** (opt-in; ``periodic-finetune``, ``periodic-rag``,
  ``hybrid``, ``adaptive``). With ``regenerate_recent_days = D`` a regeneration ranks only the
  contexts with traffic in the last ``D`` days before ``data_until``
  (``RegenerateTable(contexts="observed")``) and is charged for those only; every other context
  is served by ``regenerate_fallback``: ``"previous"`` (default) keeps the served table's row as
  it is (possibly from an older adapter or snapshot), ``"serving"`` drops it for the serving
  backoff. While there is no table yet the regeneration ranks every context. Unset (the default),
  every regeneration ranks every catalog context.
* **What a regeneration may keep** (the same policies). ``regenerate_tolerance`` (the
  material-change rule) and ``regenerate_max_age_days`` (the staleness bound) pass to every
  ``RegenerateTable`` they return (:class:`~hybridrec.types.RegenerateTable`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hybridrec.interfaces import UpdatePolicy
from hybridrec.types import (
    Action,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
)

if TYPE_CHECKING:
    from hybridrec.plugin_refs import EvidenceConfig

Unit = Literal["flops", "seconds", "money"]
UNITS: tuple[Unit, ...] = ("flops", "seconds", "money")
_EPS = timedelta(seconds=1)


class _ReadsKnowledgeWindow:
    """A policy whose refreshes count ``knowledge_days``: the evidence recipe's history window."""

    Options: ClassVar[type[BaseModel]]

    @classmethod
    def evidence_options(cls, recipe: EvidenceConfig, options: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        """From the evidence recipe: ``knowledge_days`` (its history window)."""
        return {"knowledge_days": ("history_days", recipe.history_days)}


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _RegenerateOptions(_Options):
    """The regeneration lever shared by the policies that regenerate repeatedly."""

    regenerate_recent_days: float | None = Field(
        default=None, gt=0,
        description="Regenerate only the contexts with traffic in the last this many days "
                    "(RegenerateTable contexts='observed'; charged for those only); the others "
                    "are served by regenerate_fallback. None: every catalog context.",
    )
    regenerate_fallback: Literal["previous", "serving"] = Field(
        default="previous",
        description="With regenerate_recent_days, what serves a context the regeneration does not "
                    "rank: 'previous' keeps the served table's row, 'serving' the serving fallback "
                    "(successors of the last cluster, then popularity; formerly 'backoff', still "
                    "accepted).",
    )
    regenerate_tolerance: float | None = Field(
        default=None, ge=0.0, le=1.0,
        description="The material-change rule (RegenerateTable.tolerance): a context whose "
                    "evidence moved at most this far from the evidence its row was ranked from "
                    "keeps its row; 0: only an identical prompt (exact delta). None: the "
                    "pipeline's serving.tolerance.",
    )
    regenerate_max_age_days: float | None = Field(
        default=None, gt=0,
        description="The staleness bound (RegenerateTable.max_row_age_days): a row whose evidence "
                    "was last confirmed current longer ago than this is ranked again, whatever "
                    "kept it. None: the pipeline's serving.max_row_age_days.",
    )

    @field_validator("regenerate_fallback", mode="before")
    @classmethod
    def _former_name(cls, value: object) -> object:
        return "serving" if value == "backoff" else value


def regeneration(state: SystemState, options: BaseModel, *, use_knowledge: bool,
                 reason: str) -> RegenerateTable:
    """The ``RegenerateTable`` a policy with ``options`` asks for: every catalog context, or
    (``options.regenerate_recent_days`` set and a table served) the contexts with traffic in that
    many days before ``state.data_until``, the others served by ``options.regenerate_fallback``."""
    days = getattr(options, "regenerate_recent_days", None)
    keep = {"tolerance": getattr(options, "regenerate_tolerance", None),
            "max_row_age_days": getattr(options, "regenerate_max_age_days", None)}
    if days is None or state.table_version is None:
        return RegenerateTable(use_knowledge=use_knowledge, reason=reason, **keep)
    return RegenerateTable(
        use_knowledge=use_knowledge, contexts="observed",
        observed_window=TimeWindow.ending_at(state.data_until, float(days)),
        fallback=getattr(options, "regenerate_fallback", "previous"),
        reason=f"{reason} (contexts seen in the last {float(days):g} days)", **keep,
    )


def _days(value: float) -> timedelta:
    return timedelta(days=value)


def _age(state: SystemState, until: datetime | None) -> timedelta | None:
    """How far ``until`` (the end of an artifact's window) lags ``data_until``; None if absent."""
    return None if until is None else state.data_until - until


def _due(state: SystemState, until: datetime | None, every_days: float) -> bool:
    age = _age(state, until)
    return age is None or age + _EPS >= _days(every_days)


def last_fine_tune_attempt(state: SystemState) -> datetime | None:
    """When the most recent fine-tune in the ledger ran (any status), or None."""
    times = [r.at for r in state.ledger if r.action == "fine_tune"]
    return max(times) if times else None


def fine_tune_blocked(state: SystemState, retry_days: float) -> bool:
    """True while a fine-tune is pending, or the last attempt was held less than ``retry_days`` ago."""
    if state.pending_fine_tune:
        return True
    held = [r.at for r in state.ledger if r.action == "fine_tune" and r.status in ("held", "failed")]
    if not held:
        return False
    last_ok = [r.at for r in state.ledger if r.action == "fine_tune" and r.status == "ok"]
    last_held = max(held)
    if last_ok and max(last_ok) > last_held:
        return False
    return state.now - last_held + _EPS < _days(retry_days)


def fine_tune_window(state: SystemState, train_days: float) -> TimeWindow:
    return TimeWindow.ending_at(state.data_until, train_days)


def knowledge_window(state: SystemState, knowledge_days: float) -> TimeWindow:
    return TimeWindow.ending_at(state.data_until, knowledge_days)


def action_cost(state: SystemState, actions: Sequence[Action], unit: Unit) -> float:
    """The estimated cost of ``actions`` in ``unit`` (kinds without an estimate count as 0)."""
    total = 0.0
    for action in actions:
        estimate = state.estimates.get(action.kind)
        if estimate is not None:
            total += float(getattr(estimate, unit))
    return total


def affordable(state: SystemState, actions: Sequence[Action], reserve: float = 0.0) -> bool:
    """Whether ``actions`` (plus ``reserve`` times their cost as headroom) fit the budget left."""
    for unit in UNITS:
        if getattr(state.budget, unit) is None:
            continue
        cost = action_cost(state, actions, unit)
        if cost * (1.0 + reserve) > state.budget_left(unit) + 1e-9 * max(1.0, cost):
            return False
    return True


def first_affordable(state: SystemState, alternatives: Sequence[Sequence[Action]]) -> list[Action]:
    """The first alternative (in preference order) whose cost fits the budget left, or ``[]``."""
    for option in alternatives:
        if option and affordable(state, option):
            return list(option)
    return []


# ---------------------------------------------------------------------------------------------


class StaticOptions(_Options):
    train_days: float = Field(default=30.0, gt=0, description="Fine-tune window length.")


class StaticPolicy(UpdatePolicy):
    """Fine-tune once, regenerate once (without knowledge), then never update (``no-update``).

    If the single fine-tune is held by the guardrails the table is generated with the base model.
    """

    name: ClassVar[str] = "static"
    Options: ClassVar[type[BaseModel]] = StaticOptions
    needs: ClassVar[frozenset[str]] = frozenset()  # decides on ages and the budget only

    def decide(self, state: SystemState) -> list[Action]:
        o: StaticOptions = self.options
        regenerate = RegenerateTable(use_knowledge=False, reason="initial table")
        initial = _initial_fine_tune(state, o.train_days)
        alternatives: list[list[Action]] = []
        if initial is not None:
            alternatives.append([initial, regenerate])
        if state.table_version is None and not state.pending_fine_tune:
            alternatives.append([regenerate])
        return first_affordable(state, alternatives)


class PeriodicFineTuneOptions(_RegenerateOptions):
    period_days: float = Field(default=30.0, gt=0, description="Fine-tune every this many days.")
    train_days: float = Field(default=30.0, gt=0, description="Fine-tune window length.")
    warm_start: bool = Field(default=True, description="Continue from the current adapter.")


class PeriodicFineTunePolicy(UpdatePolicy):
    """Fine-tune every ``period_days`` on the last ``train_days``; regenerate without knowledge.

    Arms ``ft-monthly`` (30) and ``ft-weekly`` (7).
    """

    name: ClassVar[str] = "periodic-finetune"
    Options: ClassVar[type[BaseModel]] = PeriodicFineTuneOptions
    needs: ClassVar[frozenset[str]] = frozenset()  # decides on ages and the budget only

    def decide(self, state: SystemState) -> list[Action]:
        o: PeriodicFineTuneOptions = self.options
        regenerate = regeneration(state, o, use_knowledge=False, reason="new adapter")
        if _due(state, state.adapter_trained_until, o.period_days) and not fine_tune_blocked(
            state, o.period_days
        ):
            ft = FineTune(
                window=fine_tune_window(state, o.train_days),
                warm_start=o.warm_start and state.adapter_version is not None,
                reason=f"adapter older than {o.period_days:g} days",
            )
            alternatives: list[list[Action]] = [[ft, regenerate]]
        else:
            alternatives = []
        if state.table_version is None and not state.pending_fine_tune:
            alternatives.append([regeneration(state, o, use_knowledge=False, reason="no table")])
        return first_affordable(state, alternatives)


class PeriodicRagOptions(_RegenerateOptions):
    period_days: float = Field(default=2.0, gt=0, description="Refresh knowledge every this many days.")
    knowledge_days: float = Field(default=14.0, gt=0, description="Knowledge window length.")
    train_days: float = Field(default=30.0, gt=0, description="Window of the one initial fine-tune.")


class PeriodicRagPolicy(_ReadsKnowledgeWindow, UpdatePolicy):
    """Refresh knowledge and regenerate every ``period_days`` on a fixed adapter (``rag-only``).

    With no adapter yet it fine-tunes once first; it never fine-tunes again.
    """

    name: ClassVar[str] = "periodic-rag"
    Options: ClassVar[type[BaseModel]] = PeriodicRagOptions
    needs: ClassVar[frozenset[str]] = frozenset()  # decides on ages and the budget only

    def decide(self, state: SystemState) -> list[Action]:
        o: PeriodicRagOptions = self.options
        alternatives: list[list[Action]] = []
        initial = _initial_fine_tune(state, o.train_days)
        rag = _rag_group(state, o.knowledge_days, f"knowledge older than {o.period_days:g} days", o)
        if initial is not None:
            alternatives.append([initial, *rag])
        if initial is not None or _due(state, state.knowledge_until, o.period_days):
            alternatives.append(rag)
        if state.table_version is None:
            alternatives.append([regeneration(state, o, use_knowledge=True, reason="no table")])
        return first_affordable(state, alternatives)

    def knowledge_bound(self) -> timedelta | None:
        return _days(self.options.period_days)


class RagOnceOptions(_Options):
    knowledge_days: float = Field(default=14.0, gt=0, description="Knowledge window length.")
    train_days: float = Field(default=30.0, gt=0, description="Window of the one initial fine-tune.")


class RagOncePolicy(_ReadsKnowledgeWindow, UpdatePolicy):
    """Fine-tune once, build knowledge once, regenerate once (``rag-once``)."""

    name: ClassVar[str] = "rag-once"
    Options: ClassVar[type[BaseModel]] = RagOnceOptions
    needs: ClassVar[frozenset[str]] = frozenset()  # decides on ages and the budget only

    def decide(self, state: SystemState) -> list[Action]:
        o: RagOnceOptions = self.options
        initial = _initial_fine_tune(state, o.train_days)
        rag = _rag_group(state, o.knowledge_days, "initial knowledge")
        alternatives: list[list[Action]] = []
        if initial is not None:
            alternatives.append([initial, *rag])
        if state.knowledge_version is None and not _has_refreshed(state):
            alternatives.append(rag)
        if state.table_version is None:
            alternatives.append([regeneration(state, o, use_knowledge=True, reason="no table")])
        return first_affordable(state, alternatives)


class HybridOptions(_RegenerateOptions):
    fine_tune_every_days: float = Field(default=30.0, gt=0)
    rag_every_days: float = Field(default=2.0, gt=0)
    train_days: float = Field(default=30.0, gt=0, description="Fine-tune window length.")
    knowledge_days: float = Field(default=14.0, gt=0, description="Knowledge window length.")
    warm_start: bool = True


class HybridPolicy(_ReadsKnowledgeWindow, UpdatePolicy):
    """The paper's hybrid: fine-tune every 30 days, refresh knowledge + regenerate every 2 days.

    A fine-tune always comes with a refresh and a regeneration. Under a budget, the refresh group
    has priority over the fine-tune (it is what keeps the knowledge within :meth:`knowledge_bound`).
    """

    name: ClassVar[str] = "hybrid"
    Options: ClassVar[type[BaseModel]] = HybridOptions
    needs: ClassVar[frozenset[str]] = frozenset()  # decides on ages and the budget only

    def decide(self, state: SystemState) -> list[Action]:
        o: HybridOptions = self.options
        ft_due = _due(state, state.adapter_trained_until, o.fine_tune_every_days) and not (
            fine_tune_blocked(state, o.fine_tune_every_days)
        )
        rag_due = _due(state, state.knowledge_until, o.rag_every_days)
        rag = _rag_group(state, o.knowledge_days, f"knowledge older than {o.rag_every_days:g} days", o)
        ft = FineTune(
            window=fine_tune_window(state, o.train_days),
            warm_start=o.warm_start and state.adapter_version is not None,
            reason=f"adapter older than {o.fine_tune_every_days:g} days",
        )
        alternatives: list[list[Action]] = []
        if ft_due:
            alternatives.append([ft, *rag])
        if rag_due:
            alternatives.append(rag)
        if state.table_version is None:
            alternatives.append([regeneration(state, o, use_knowledge=True, reason="no table")])
        return first_affordable(state, alternatives)

    def knowledge_bound(self) -> timedelta | None:
        return _days(self.options.rag_every_days)


class AdaptiveOptions(_RegenerateOptions):
    train_days: float = Field(default=30.0, gt=0, description="Fine-tune window length.")
    knowledge_days: float = Field(default=14.0, gt=0, description="Knowledge window length.")
    jaccard_threshold: float = Field(
        default=0.25, ge=0, le=1,
        description="Fine-tune when the top-5 Jaccard of training vs recent data falls below this.",
    )
    recall_drop: float = Field(
        default=0.7, gt=0, le=1,
        description="Fine-tune when recent recall < recall_drop × recall at training time.",
    )
    min_fine_tune_days: float = Field(default=7.0, gt=0)
    max_fine_tune_days: float = Field(default=60.0, gt=0)
    min_rag_days: float = Field(default=1.0, gt=0, description="RAG cadence at high drift.")
    max_rag_days: float = Field(default=4.0, gt=0, description="RAG cadence at low drift (the knowledge bound).")
    default_rag_days: float = Field(default=2.0, gt=0, description="RAG cadence when drift is unmeasured.")
    calm_jaccard: float = Field(default=0.6, ge=0, le=1, description="Jaccard at or above which drift counts as none.")
    stormy_jaccard: float = Field(default=0.1, ge=0, le=1, description="Jaccard at or below which drift is maximal.")
    reserve_refreshes: float = Field(
        default=1.0, ge=0,
        description="Budget headroom kept after a fine-tune, in refresh+regenerate costs.",
    )
    warm_start: bool = True
    rule: Literal["benefit", "drift"] = Field(
        default="benefit",
        description="benefit: act when the measured gain per unit of cost clears min_gain_per_cost; "
                    "drift: the drift-driven cadence (see the class docstring).",
    )
    min_gain_per_cost: float = Field(
        default=0.01, ge=0,
        description="benefit rule: the least HR@5 gain per full-regeneration-equivalent of cost "
                    "a group measured by the recall signals must promise (a fine-tune; a refresh "
                    "with refresh_evidence='recall').",
    )
    refresh_evidence: Literal["counterfactual", "recall"] = Field(
        default="counterfactual",
        description="benefit rule: what a refresh's gain is measured by. counterfactual: "
                    "refresh_gain, fresher counts against the served knowledge's on the same "
                    "recent transitions (the 'freshness' signal); recall: what the served table "
                    "lost since it was built.",
    )
    confidence_z: float = Field(
        default=1.96, ge=0,
        description="benefit rule, counterfactual evidence: a refresh's gain counts only by what "
                    "exceeds this many standard errors (refresh_gain - z * refresh_gain_se).",
    )
    min_refresh_gain_per_cost: float = Field(
        default=0.0, ge=0,
        description="benefit rule, counterfactual evidence: the least (refresh_gain - z * se) per "
                    "full-regeneration-equivalent a refresh must promise; it must exceed zero "
                    "in any case. The user's price of a point of HR@5.",
    )
    max_knowledge_days: float | None = Field(
        default=None, gt=0,
        description="benefit rule: refresh anyway once the knowledge is this old (None: never; "
                    "then knowledge_bound() is None).",
    )

    @model_validator(mode="after")
    def _ranges(self) -> AdaptiveOptions:
        if self.min_fine_tune_days > self.max_fine_tune_days:
            raise ValueError("min_fine_tune_days must not exceed max_fine_tune_days")
        if not self.min_rag_days <= self.default_rag_days <= self.max_rag_days:
            raise ValueError("need min_rag_days <= default_rag_days <= max_rag_days")
        if self.stormy_jaccard >= self.calm_jaccard:
            raise ValueError("stormy_jaccard must be below calm_jaccard")
        return self


class AdaptivePolicy(_ReadsKnowledgeWindow, UpdatePolicy):
    """Acts on evidence of benefit, under a budget (beyond the paper).

    **The benefit rule** (``rule = "benefit"``, the default) reads the recall signals of
    :class:`~hybridrec.types.DriftStats`, the served lists' hit rate measured on days after the
    table that served them was built:

    * the **gain** of a refresh + regeneration is, by default (``refresh_evidence =
      "counterfactual"``), what fresher knowledge would have bought on the last days: the
      paired ``drift.refresh_gain`` of a counting proxy, less ``confidence_z`` standard errors,
      so that a refresh is bought on evidence rather than on noise (a few days of traffic move a
      hit rate by a point on their own); it must be positive and clear
      ``min_refresh_gain_per_cost`` per cost. With ``refresh_evidence = "recall"`` it is what
      the served table lost since it was built, ``recall_at_table - recall_recent``, against
      ``min_gain_per_cost``. The gain of a fine-tune + refresh + regeneration is what the
      served lists lost since the adapter was trained, ``recall_at_training - recall_recent``
      (at least the recall-measured refresh gain, as a fine-tune refreshes too), against
      ``min_gain_per_cost``;
    * the **cost** of a group is its price in ``state.estimates`` over the price of one full
      regeneration (full-regeneration equivalents; one per action when nothing is priced);
    * the groups whose gain per cost is at least ``min_gain_per_cost`` are candidates (a refresh
      only once the knowledge is ``min_rag_days`` old, a fine-tune once the adapter is
      ``min_fine_tune_days`` old and none is pending or recently held); the best candidate that
      fits the budget is taken (a fine-tune keeps ``reserve_refreshes`` refresh+regenerate costs
      to spare). A missing signal (fewer days seen than the arm measures over) promises nothing.
    * With ``regenerate_recent_days`` set (either rule), a regeneration ranks only the contexts
      with traffic in that many recent days (``RegenerateTable(contexts="observed")``, priced on
      those contexts); every other context keeps its served row (``regenerate_fallback =
      "previous"``) or is served by the serving fallback (``"serving"``). The gain per cost is
      still reckoned on a full regeneration's price (the state's estimate), a conservative cost.
    * Always, budget permitting: a fine-tune when there is no adapter or it is
      ``max_fine_tune_days`` old; one initial refresh when there never was knowledge; a refresh
      when the knowledge is ``max_knowledge_days`` old (if set; it is then the knowledge bound);
      a regeneration when there is no table.

    **The drift rule** (``rule = "drift"``), a cadence driven by measured drift:

    * **Fine-tune** when the adapter is at least ``min_fine_tune_days`` old and drift is high
      (``drift.top5_jaccard < jaccard_threshold``, or ``drift.recall_recent <
      recall_drop × drift.recall_at_training``), or unconditionally once it is
      ``max_fine_tune_days`` old, or when there is no adapter. Only if the fine-tune, a refresh
      and a regeneration fit the budget with ``reserve_refreshes`` refresh+regenerate costs to
      spare.
    * **RAG cadence** ``rag_days`` interpolates linearly from ``max_rag_days`` at
      ``calm_jaccard`` down to ``min_rag_days`` at ``stormy_jaccard`` (``default_rag_days`` when
      drift is unmeasured). Refresh + regenerate when the knowledge is ``rag_days`` old; the
      refresh has budget priority over the fine-tune. :meth:`knowledge_bound` is ``max_rag_days``.
    """

    name: ClassVar[str] = "adaptive"
    Options: ClassVar[type[BaseModel]] = AdaptiveOptions
    needs: ClassVar[frozenset[str]] = frozenset({"drift", "recall", "freshness"})

    # -- the benefit rule (default) ----------------------------------------------------------

    def refresh_gain(self, state: SystemState) -> float | None:
        """The counterfactual gain of refresh + regenerate that clears the noise:
        ``refresh_gain - confidence_z * refresh_gain_se``; None when unmeasured."""
        d = state.drift
        if d.refresh_gain is None:
            return None
        return d.refresh_gain - self.options.confidence_z * (d.refresh_gain_se or 0.0)

    @staticmethod
    def gains(state: SystemState) -> tuple[float | None, float | None]:
        """``(gain of refresh + regenerate, gain of fine-tune + refresh + regenerate)`` in HR@5:
        what the served table lost since it was built (``recall_at_table - recall_recent``) and
        what it lost since the adapter was trained (``recall_at_training - recall_recent``, at
        least the former); None where a signal is missing."""
        d = state.drift
        if d.recall_recent is None:
            return None, None
        rag = None if d.recall_at_table is None else d.recall_at_table - d.recall_recent
        ft = None if d.recall_at_training is None else d.recall_at_training - d.recall_recent
        if ft is not None and rag is not None:
            ft = max(ft, rag)
        elif ft is None:
            ft = rag
        return rag, ft

    @staticmethod
    def cost_units(state: SystemState, actions: Sequence[Action]) -> float:
        """The cost of ``actions`` in full-regeneration equivalents (flops, else seconds, else
        money of ``state.estimates``; one per action when nothing is priced)."""
        regen = state.estimates.get("regenerate_table")
        for unit in UNITS:
            base = 0.0 if regen is None else float(getattr(regen, unit))
            if base > 0:
                return action_cost(state, actions, unit) / base
        return float(len(actions))

    def _decide_benefit(self, state: SystemState) -> list[Action]:
        o: AdaptiveOptions = self.options
        rag = _rag_group(state, o.knowledge_days, "", o)
        age = _age(state, state.adapter_trained_until)
        blocked = fine_tune_blocked(state, o.min_fine_tune_days)
        ft = FineTune(window=fine_tune_window(state, o.train_days),
                      warm_start=o.warm_start and state.adapter_version is not None, reason="")
        regenerate = rag[1]

        def group(reason: str, with_ft: bool) -> list[Action]:
            head: list[Action] = [ft.model_copy(update={"reason": reason})] if with_ft else []
            return [*head, rag[0].model_copy(update={"reason": reason}), regenerate]

        candidates: list[tuple[float, list[Action]]] = []
        if age is None and not blocked:  # no adapter at all
            candidates.append((math.inf, group("no adapter", True)))
        if age is not None and age + _EPS >= _days(o.max_fine_tune_days) and not blocked:
            candidates.append((math.inf, group(f"adapter older than {o.max_fine_tune_days:g} days", True)))
        if state.knowledge_version is None and not _has_refreshed(state):
            candidates.append((math.inf, group("initial knowledge", False)))
        if o.max_knowledge_days is not None and _due(state, state.knowledge_until, o.max_knowledge_days):
            candidates.append((math.inf, group(f"knowledge older than {o.max_knowledge_days:g} days", False)))
        gain_rag, gain_ft = self.gains(state)
        rag_due = _due(state, state.knowledge_until, o.min_rag_days)
        if o.refresh_evidence == "counterfactual":
            fresh = self.refresh_gain(state)
            if fresh is not None and fresh > 0 and rag_due:
                per_cost = fresh / max(self.cost_units(state, rag), 1e-12)
                if per_cost >= o.min_refresh_gain_per_cost:
                    candidates.append((per_cost, group(
                        f"fresh counts would have gained {state.drift.refresh_gain:.4f} HR@5 "
                        f"(± {state.drift.refresh_gain_se or 0.0:.4f}) on the last days", False)))
        elif gain_rag is not None and rag_due:
            per_cost = gain_rag / max(self.cost_units(state, rag), 1e-12)
            if per_cost >= o.min_gain_per_cost:
                candidates.append((per_cost, group(
                    f"table lost {gain_rag:.4f} HR@5 since it was built ({per_cost:.4f} per "
                    "regeneration-equivalent)", False)))
        if (gain_ft is not None and age is not None and not blocked
                and age + _EPS >= _days(o.min_fine_tune_days)):
            full = group("", True)
            per_cost = gain_ft / max(self.cost_units(state, full), 1e-12)
            if per_cost >= o.min_gain_per_cost:
                candidates.append((per_cost, group(
                    f"served lists lost {gain_ft:.4f} HR@5 since the adapter was trained "
                    f"({per_cost:.4f} per regeneration-equivalent)", True)))
        candidates.sort(key=lambda c: -c[0])  # best gain per cost first (stable)
        alternatives: list[list[Action]] = []
        for _, actions in candidates:
            if any(isinstance(a, FineTune) for a in actions):
                reserve = o.reserve_refreshes * _group_share(state, actions, actions[1:])
                if not affordable(state, actions, reserve=reserve):
                    continue
            alternatives.append(actions)
        if state.table_version is None:
            alternatives.append([regeneration(state, o, use_knowledge=True, reason="no table")])
        return first_affordable(state, alternatives)

    # -- the drift rule ----------------------------------------------------------------------

    def rag_days(self, state: SystemState) -> float:
        o: AdaptiveOptions = self.options
        jaccard = state.drift.top5_jaccard
        if jaccard is None:
            return o.default_rag_days
        calmness = (jaccard - o.stormy_jaccard) / (o.calm_jaccard - o.stormy_jaccard)
        calmness = min(1.0, max(0.0, calmness))
        return o.min_rag_days + calmness * (o.max_rag_days - o.min_rag_days)

    def drifted(self, state: SystemState) -> bool:
        o: AdaptiveOptions = self.options
        drift = state.drift
        if drift.top5_jaccard is not None and drift.top5_jaccard < o.jaccard_threshold:
            return True
        return (
            drift.recall_recent is not None
            and drift.recall_at_training is not None
            and drift.recall_at_training > 0
            and drift.recall_recent < o.recall_drop * drift.recall_at_training
        )

    def decide(self, state: SystemState) -> list[Action]:
        o: AdaptiveOptions = self.options
        if o.rule == "benefit":
            return self._decide_benefit(state)
        rag_days = self.rag_days(state)
        rag = _rag_group(state, o.knowledge_days, f"knowledge older than {rag_days:.3g} days (drift)", o)
        rag_due = _due(state, state.knowledge_until, rag_days)
        age = _age(state, state.adapter_trained_until)
        if age is None:
            wants_ft, why = True, "no adapter"
        elif age + _EPS >= _days(o.max_fine_tune_days):
            wants_ft, why = True, f"adapter older than {o.max_fine_tune_days:g} days"
        elif age + _EPS >= _days(o.min_fine_tune_days) and self.drifted(state):
            wants_ft, why = True, "drift above threshold"
        else:
            wants_ft, why = False, ""
        if wants_ft and not fine_tune_blocked(state, o.min_fine_tune_days):
            ft = FineTune(
                window=fine_tune_window(state, o.train_days),
                warm_start=o.warm_start and state.adapter_version is not None,
                reason=why,
            )
            reserve = o.reserve_refreshes * _group_share(state, [ft, *rag], rag)
            if affordable(state, [ft, *rag], reserve=reserve):
                return [ft, *rag]
        alternatives: list[list[Action]] = [rag] if rag_due else []
        if state.table_version is None:
            alternatives.append([regeneration(state, o, use_knowledge=True, reason="no table")])
        return first_affordable(state, alternatives)

    def knowledge_bound(self) -> timedelta | None:
        o: AdaptiveOptions = self.options
        if o.rule == "benefit":
            return None if o.max_knowledge_days is None else _days(o.max_knowledge_days)
        return _days(o.max_rag_days)


# ---------------------------------------------------------------------------------------------


def _rag_group(state: SystemState, knowledge_days: float, reason: str,
               options: BaseModel | None = None) -> list[Action]:
    """A refresh on the last ``knowledge_days`` and the regeneration that serves it (see
    :func:`regeneration` for ``options``)."""
    return [
        RefreshKnowledge(window=knowledge_window(state, knowledge_days), reason=reason),
        regeneration(state, options if options is not None else _Options(), use_knowledge=True,
                     reason="new knowledge"),
    ]


def _initial_fine_tune(state: SystemState, train_days: float) -> FineTune | None:
    """The one fine-tune of the RAG-on-a-fixed-adapter policies, if it is still to be done."""
    if state.adapter_version is not None or state.held_adapters or state.pending_fine_tune:
        return None
    if last_fine_tune_attempt(state) is not None:
        return None
    return FineTune(window=fine_tune_window(state, train_days), warm_start=False,
                    reason="initial fine-tune")


def _has_refreshed(state: SystemState) -> bool:
    return any(r.action == "refresh_knowledge" for r in state.ledger)


def _group_share(state: SystemState, total: Sequence[Action], part: Sequence[Action]) -> float:
    """``cost(part) / cost(total)`` in the tightest limited unit (0 when nothing is limited)."""
    share = 0.0
    for unit in UNITS:
        if getattr(state.budget, unit) is None:
            continue
        whole = action_cost(state, total, unit)
        if whole > 0 and math.isfinite(whole):
            share = max(share, action_cost(state, part, unit) / whole)
    return share


BUILTIN_POLICIES: tuple[type[UpdatePolicy], ...] = (
    StaticPolicy,
    PeriodicFineTunePolicy,
    PeriodicRagPolicy,
    RagOncePolicy,
    HybridPolicy,
    AdaptivePolicy,
)
