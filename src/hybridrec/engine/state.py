"""The policy's view of the world: a :class:`~hybridrec.types.SystemState` from what a version store
serves, plus drift and the ledger; and the constants both drivers share."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from hybridrec.config import SignalsConfig
from hybridrec.engine.freshness import FRESHNESS_DAYS, refresh_gain
from hybridrec.types import (
    SIGNALS,
    Budget,
    CostEstimate,
    CostRecord,
    DriftStats,
    SystemState,
    TimeWindow,
    TransitionSet,
    to_utc,
)
from hybridrec.versions import Served

#: The signal settings' defaults (:class:`~hybridrec.config.SignalsConfig`), for callers that
#: pass none: a workspace and a backtest both read their configuration's ``signals``.
SIGNALS_DEFAULTS = SignalsConfig()
#: Clusters kept per backoff list (successors of c2 alone, popularity).
FALLBACK_WIDTH = 16


def fallback_width(k: int) -> int:
    """SuccessorFallback lists long enough to fill a ``k``-wide row after dropping the context clusters."""
    return max(FALLBACK_WIDTH, k + 2)


def fallback_history(transitions: TransitionSet, data_until: datetime,
                    days: float | None = SIGNALS_DEFAULTS.fallback_days) -> TransitionSet:
    """The data behind the serving fallback at ``data_until``: the last ``days`` (all data before
    ``data_until`` when None, or when those days hold no transition)."""
    before = transitions.before(data_until)
    if days is None:
        return before
    recent = before.window(TimeWindow.ending_at(data_until, days))
    return recent if len(recent) else before



class SignalWarning(UserWarning):
    """A signal a policy needs (``UpdatePolicy.needs``) that the engine cannot measure: the
    policy's state carries it as ``None``."""


def warn_signal(message: str) -> None:
    """Issue a :class:`SignalWarning` (shown once per message by Python's default filter)."""
    warnings.warn(message, SignalWarning, stacklevel=3)


def needed_signals(policy: Any, who: str, also: Iterable[str] = ()) -> frozenset[str]:
    """The signals of :data:`~hybridrec.types.SIGNALS` the engine measures for ``policy``: its
    ``needs`` (every signal when it has no such attribute) plus ``also``. A needed name this
    engine does not know is dropped with a :class:`SignalWarning` naming ``who`` (the arm or
    workspace) and the known signals."""
    declared = getattr(policy, "needs", None)
    needs = frozenset(SIGNALS) if declared is None else frozenset(declared)
    needs |= frozenset(also)
    unknown = sorted(needs - set(SIGNALS))
    if unknown:
        warn_signal(
            f"{who}: policy {getattr(policy, 'name', type(policy).__name__)!r} needs "
            f"{', '.join(map(repr, unknown))}, which this engine cannot measure (signals: "
            f"{', '.join(SIGNALS)}); its state carries no such signal"
        )
    return needs & frozenset(SIGNALS)


@dataclass(frozen=True)
class ServedPeriod:
    """What the served lists scored on the data of one period ``[since, until)``: ``n``
    transitions, ``hits`` with their next cluster in the top ``recall_k``, served by the table
    built at ``table_built_at`` from the adapter promoted at ``adapter_trained_at``.

    Both drivers append one per update (the backtest: one per day), scored *before* the update
    acts, so every record is out of sample for the table that served it."""

    since: datetime
    until: datetime
    n: int
    hits: int
    table_built_at: datetime
    adapter_trained_at: datetime | None

    def as_json(self) -> list[Any]:
        return [self.since.isoformat(), self.until.isoformat(), self.n, self.hits,
                self.table_built_at.isoformat(),
                None if self.adapter_trained_at is None else self.adapter_trained_at.isoformat()]

    @classmethod
    def from_json(cls, row: Sequence[Any]) -> ServedPeriod:
        def when(raw: Any) -> datetime:
            return to_utc(datetime.fromisoformat(str(raw)))

        since, until, n, hits, built, trained = row
        return cls(since=when(since), until=when(until), n=int(n), hits=int(hits),
                   table_built_at=when(built), adapter_trained_at=None if trained is None else when(trained))


def served_hits(ids: np.ndarray, truth: np.ndarray, k: int) -> int:
    """How many rows of ``ids`` hold their ``truth`` in the first ``k`` places."""
    return int((ids[:, :k] == np.asarray(truth)[:, None]).any(axis=1).sum()) if ids.shape[0] else 0


def recall_signals(
    periods: Sequence[ServedPeriod], now: datetime, *, days: float,
    table_built_at: datetime | None, adapter_trained_at: datetime | None,
) -> dict[str, float | None]:
    """The recall signals of :class:`~hybridrec.types.DriftStats` at ``now`` from the served
    ``periods`` (oldest first), each over ``days`` days:

    * ``recall_recent``: the periods ending in the last ``days``, once the periods seen reach
      back that far;
    * ``recall_at_table``: the served table's first ``days`` (its periods ending by then),
      once ``days`` have passed since it was built;
    * ``recall_at_training``: the same for the served adapter, from when it was promoted.

    A signal is None until its days are seen or when its periods hold no transition. The one
    definition both drivers use (a workspace keeps its periods in the served state)."""

    def rate(rows: Iterable[ServedPeriod]) -> float | None:
        chosen = list(rows)
        n = sum(r.n for r in chosen)
        return sum(r.hits for r in chosen) / n if n else None

    span = timedelta(days=days)
    out: dict[str, float | None] = {"recall_recent": None, "recall_at_training": None,
                                    "recall_at_table": None}
    if periods and periods[0].since <= now - span:
        out["recall_recent"] = rate(r for r in periods if r.until > now - span)
    if table_built_at is not None and now - table_built_at >= span:
        out["recall_at_table"] = rate(r for r in periods if r.table_built_at == table_built_at
                                      and r.until <= table_built_at + span)
    if adapter_trained_at is not None and now - adapter_trained_at >= span:
        out["recall_at_training"] = rate(r for r in periods if r.adapter_trained_at == adapter_trained_at
                                         and r.until <= adapter_trained_at + span)
    return out


def kept_periods(periods: Sequence[ServedPeriod], now: datetime, *, days: float,
                 table_built_at: datetime | None, adapter_trained_at: datetime | None) -> list[ServedPeriod]:
    """The periods :func:`recall_signals` can still read at ``now`` or later (older ones are
    dropped, so a workspace's served state stays small)."""
    span = timedelta(days=days)
    anchors = [t for t in (table_built_at, adapter_trained_at) if t is not None]
    horizon = min([now - span, *anchors])
    return [r for r in periods if r.until > horizon]


def freshness_signals(
    transitions: TransitionSet, *, knowledge_until: datetime | None, data_until: datetime,
    days: float = FRESHNESS_DAYS,
) -> dict[str, float | None]:
    """The freshness signals of :class:`~hybridrec.types.DriftStats` (``refresh_gain`` and
    ``refresh_gain_se``, :func:`hybridrec.engine.freshness.refresh_gain`) for knowledge that
    covers the data before ``knowledge_until``; both None when unmeasurable."""
    measured = refresh_gain(transitions, knowledge_until=knowledge_until, data_until=data_until,
                            days=days)
    if measured is None:
        return {"refresh_gain": None, "refresh_gain_se": None}
    return {"refresh_gain": measured[0], "refresh_gain_se": measured[1]}


def drift_stats(
    transitions: TransitionSet, trained: TimeWindow | None, data_until: datetime, at: datetime,
    *, recent_days: float = SIGNALS_DEFAULTS.drift_days,
    min_count: int = SIGNALS_DEFAULTS.drift_min_count,
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


__all__ = [
    "FALLBACK_WIDTH",
    "SIGNALS_DEFAULTS",
    "Served",
    "ServedPeriod",
    "SignalWarning",
    "drift_stats",
    "fallback_history",
    "fallback_width",
    "freshness_signals",
    "kept_periods",
    "needed_signals",
    "recall_signals",
    "served_hits",
    "system_state",
    "warn_signal",
]
