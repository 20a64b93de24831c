"""The actions an update policy returns."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
)

from hybridrec.types.base import (
    Model,
    TimeWindow,
)


class FineTune(Model):
    """Train a new adapter on ``window``; ``warm_start`` continues the current adapter."""

    kind: Literal["fine_tune"] = "fine_tune"
    window: TimeWindow
    warm_start: bool = True
    reason: str = ""


class RefreshKnowledge(Model):
    """Build a new knowledge snapshot from the transitions in ``window``."""

    kind: Literal["refresh_knowledge"] = "refresh_knowledge"
    window: TimeWindow
    reason: str = ""


class RegenerateTable(Model):
    """Regenerate the serving table with the current adapter and knowledge snapshot.

    ``contexts``: ``"all"`` ordered pairs of the catalog, or ``"observed"`` in ``observed_window``.
    ``use_knowledge``: whether prompts carry evidence from the current snapshot.
    ``fallback`` (with ``"observed"``): what serves a context the regeneration does not rank:
    ``"serving"``, the serving fallback (successors of ``c2``, then popularity; ``"backoff"``,
    its former name, is accepted); ``"previous"``, the served table's row for it, as it is (the
    serving fallback where the served table has none). Only ranked contexts are charged either
    way.

    What a regeneration that keeps the adapter may keep without ranking (the engine's one delta
    planner, :func:`hybridrec.engine.tables.plan_table`, in a workspace and in the backtest);
    None takes the pipeline's ``[serving]`` value of the same name:

    * ``tolerance`` (the **material-change rule**): ``0`` keeps a row only when the context's
      rendered prompt is exactly the one it was ranked from (exact delta: the rows are those a
      full regeneration writes). Above ``0``, a row is also kept when the context's evidence moved
      at most ``tolerance`` from the evidence it was ranked from
      (:func:`hybridrec.engine.tables.evidence_distance`: the total-variation distance between
      the two candidate distributions, or the change of the context's log support, whichever is
      larger), so drift accumulated over several refreshes still re-ranks it.
    * ``max_row_age_days`` (the **staleness bound**): a row whose evidence was last confirmed
      current (ranked, or found identical) longer ago than this is ranked again, whichever rule
      kept it (the material-change rule, or ``fallback="previous"``). None: no bound.
    """

    kind: Literal["regenerate_table"] = "regenerate_table"
    contexts: Literal["all", "observed"] = "all"
    observed_window: TimeWindow | None = None
    use_knowledge: bool = True
    fallback: Literal["serving", "previous"] = "serving"
    tolerance: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    max_row_age_days: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    reason: str = ""

    @field_validator("fallback", mode="before")
    @classmethod
    def _former_name(cls, value: object) -> object:
        return "serving" if value == "backoff" else value


class Noop(Model):
    """Do nothing (the reason is logged)."""

    kind: Literal["noop"] = "noop"
    reason: str = ""


Action = Annotated[FineTune | RefreshKnowledge | RegenerateTable | Noop, Field(discriminator="kind")]
ActionKind = Literal["fine_tune", "refresh_knowledge", "regenerate_table", "noop"]
ACTION_KINDS: tuple[str, ...] = ("fine_tune", "refresh_knowledge", "regenerate_table", "noop")


__all__ = [
    "ACTION_KINDS",
    "Action",
    "ActionKind",
    "FineTune",
    "Noop",
    "RefreshKnowledge",
    "RegenerateTable",
]
