"""The policy's view of the world: a :class:`~hybridrec.types.SystemState` from what a version store
serves, plus drift and the ledger; and the constants both drivers share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hybridrec.types import (
    Budget,
    CostEstimate,
    CostRecord,
    DriftStats,
    SystemState,
    TimeWindow,
    TransitionSet,
)
from hybridrec.versions import Served

#: Days of recent transitions behind the serving backoff (successors of c2 alone, popularity).
BACKOFF_DAYS = 30.0
#: Clusters kept per backoff list (successors of c2 alone, popularity).
BACKOFF_WIDTH = 16


def backoff_width(k: int) -> int:
    """Backoff lists long enough to fill a ``k``-wide row after dropping the context clusters."""
    return max(BACKOFF_WIDTH, k + 2)

#: Days of recent data the drift statistic compares the adapter's training window with.
DRIFT_DAYS = 14.0
#: Minimum observations of a pair in both windows for it to count in the drift statistic.
DRIFT_MIN_COUNT = 2


def drift_stats(
    transitions: TransitionSet, trained: TimeWindow | None, data_until: datetime, at: datetime,
    *, recent_days: float = DRIFT_DAYS, min_count: int = DRIFT_MIN_COUNT,
) -> DriftStats:
    """Top-5 successor Jaccard between the adapter's training window and the last
    ``recent_days`` before ``data_until`` (:func:`hybridrec.data.drift.top5_jaccard`)."""
    from hybridrec.data.drift import top5_jaccard

    if trained is None:
        return DriftStats(measured_at=at)
    recent = TimeWindow.ending_at(data_until, recent_days)
    value, pairs = top5_jaccard(
        transitions.window(trained), transitions.window(recent), k=5, min_count=min_count
    )
    return DriftStats(
        top5_jaccard=None if value is None else min(1.0, max(0.0, value)), pairs=pairs, measured_at=at
    )


def system_state(
    served: Served,
    *,
    now: datetime,
    data_start: datetime | None,
    data_until: datetime,
    drift: DriftStats,
    budget: Budget,
    ledger: Sequence[CostRecord],
    estimates: dict[str, CostEstimate],
) -> SystemState:
    """The :class:`SystemState` a policy decides on."""
    return SystemState(
        now=now,
        data_start=data_start,
        data_until=data_until,
        adapter_version=served.adapter,
        adapter_trained_until=served.adapter_window.end if served.adapter_window else None,
        adapter_trained_at=served.adapter_trained_at,
        knowledge_version=served.knowledge,
        knowledge_until=served.knowledge_window.end if served.knowledge_window else None,
        knowledge_built_at=served.knowledge_built_at,
        table_version=served.table,
        table_built_at=served.table_built_at,
        table_uses_knowledge=served.table_uses_knowledge,
        pending_fine_tune=False,
        held_adapters=tuple(served.held),
        drift=drift,
        budget=budget,
        ledger=tuple(ledger),
        estimates=estimates,  # type: ignore[arg-type]
    )


__all__ = ["BACKOFF_DAYS", "BACKOFF_WIDTH", "DRIFT_DAYS", "DRIFT_MIN_COUNT", "Served", "backoff_width", "drift_stats", "system_state"]
