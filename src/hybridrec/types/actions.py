"""The actions an update policy returns."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
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
    ``"backoff"``, the serving backoff (successors of ``c2``, then popularity); ``"previous"``, the
    served table's row for it, as it is (the backoff where the served table has none). Only ranked
    contexts are charged either way.
    """

    kind: Literal["regenerate_table"] = "regenerate_table"
    contexts: Literal["all", "observed"] = "all"
    observed_window: TimeWindow | None = None
    use_knowledge: bool = True
    fallback: Literal["backoff", "previous"] = "backoff"
    reason: str = ""


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
