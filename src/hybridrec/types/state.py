"""The policy's view of the world: drift statistics and the system state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import (
    Field,
    NonNegativeInt,
    model_validator,
)

from hybridrec.types.base import (
    Model,
    to_utc,
)
from hybridrec.types.costs import (
    Budget,
    CostEstimate,
    CostRecord,
)

#: The signals an engine measures for a policy's state, by name, with the :class:`DriftStats`
#: fields each fills. A policy declares the ones it reads in ``UpdatePolicy.needs``.
SIGNALS: dict[str, tuple[str, ...]] = {
    "drift": ("top5_jaccard", "pairs"),
    "recall": ("recall_recent", "recall_at_training", "recall_at_table"),
    "freshness": ("refresh_gain", "refresh_gain_se"),
}


class DriftStats(Model):
    """Drift between the adapter's training data and recent data (None when not measured).

    The recall signals are the served lists' hit rate (HR@5, the share of transitions whose next
    cluster was in the served top 5), always on days *after* the table that served them was
    built (out of sample): ``recall_recent`` over the last days seen, ``recall_at_training``
    over the first days served after the current adapter was trained, ``recall_at_table`` over
    the first days the current table served. ``refresh_gain`` is what fresher knowledge would
    have bought: on the last days seen, the HR@5 of a counting proxy built from all data before
    those days minus the same proxy built from the data the served knowledge covers, paired on
    the same transitions, with its standard error ``refresh_gain_se``
    (:func:`hybridrec.engine.freshness.refresh_gain`). None until enough days were seen, or when
    the engine did not measure the signal (``drift``, ``recall`` and ``freshness`` in
    :data:`SIGNALS`: the engine measures those the policy declares in ``UpdatePolicy.needs``).
    """

    top5_jaccard: float | None = Field(default=None, ge=0.0, le=1.0)
    pairs: NonNegativeInt = 0
    recall_recent: float | None = Field(default=None, ge=0.0, le=1.0)
    recall_at_training: float | None = Field(default=None, ge=0.0, le=1.0)
    recall_at_table: float | None = Field(default=None, ge=0.0, le=1.0)
    refresh_gain: float | None = Field(default=None, ge=-1.0, le=1.0)
    refresh_gain_se: float | None = Field(default=None, ge=0.0)
    measured_at: datetime | None = None


class SystemState(Model):
    """Everything a policy may look at. Immutable; the policy must not look anywhere else.

    ``data_until`` is the end (exclusive) of the data the system has seen; ``now`` is the clock.
    The ``*_until`` fields are the (exclusive) ends of the windows each artifact was built from.
    ``ledger`` holds the executed actions of at least the current budget period, oldest first.
    ``estimates`` prices each action kind as the configured cost model would right now.
    """

    now: datetime
    data_start: datetime | None = None
    data_until: datetime
    adapter_version: str | None = None
    adapter_trained_until: datetime | None = None
    adapter_trained_at: datetime | None = None
    knowledge_version: str | None = None
    knowledge_until: datetime | None = None
    knowledge_built_at: datetime | None = None
    table_version: str | None = None
    table_built_at: datetime | None = None
    table_uses_knowledge: bool = False
    pending_fine_tune: bool = False
    held_adapters: tuple[str, ...] = ()
    drift: DriftStats = Field(default_factory=DriftStats)
    budget: Budget = Field(default_factory=Budget)
    ledger: tuple[CostRecord, ...] = ()
    estimates: dict[str, CostEstimate] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _times(self) -> SystemState:
        for name in (
            "now", "data_start", "data_until", "adapter_trained_until", "adapter_trained_at",
            "knowledge_until", "knowledge_built_at", "table_built_at",
        ):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, to_utc(value))
        if self.data_until > self.now:
            raise ValueError(f"data_until {self.data_until} is after the clock {self.now}")
        return self

    def spent(self, unit: Literal["flops", "seconds", "money"], since: datetime) -> float:
        """Total actual cost in ``unit`` of ledger records at or after ``since``."""
        return float(sum(getattr(r, unit) for r in self.ledger if r.at >= to_utc(since)))

    def budget_left(self, unit: Literal["flops", "seconds", "money"]) -> float:
        """What remains of the budget in ``unit`` for the period ending now (inf if unlimited)."""
        limit = getattr(self.budget, unit)
        if limit is None:
            return float("inf")
        since = self.now - timedelta(days=self.budget.period_days)
        return float(limit) - self.spent(unit, since)


__all__ = [
    "SIGNALS",
    "DriftStats",
    "SystemState",
]
