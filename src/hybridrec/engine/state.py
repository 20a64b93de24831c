"""The policy's view of the world: a :class:`~hybridrec.types.SystemState` from what a version store
serves, plus drift and the ledger; and the constants both drivers share."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
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
)
from hybridrec.versions import Served

#: The signal settings' defaults (:class:`~hybridrec.config.SignalsConfig`), for callers that
#: pass none: a workspace and a backtest both read their configuration's ``signals``.
SIGNALS_DEFAULTS = SignalsConfig()
#: Clusters kept per backoff list (successors of c2 alone, popularity).
BACKOFF_WIDTH = 16


def backoff_width(k: int) -> int:
    """Backoff lists long enough to fill a ``k``-wide row after dropping the context clusters."""
    return max(BACKOFF_WIDTH, k + 2)


def backoff_history(transitions: TransitionSet, data_until: datetime,
                    days: float | None = SIGNALS_DEFAULTS.backoff_days) -> TransitionSet:
    """The data behind the serving backoff at ``data_until``: the last ``days`` (all data before
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


def table_recall(
    transitions: TransitionSet,
    lookup: Callable[[np.ndarray, int], np.ndarray],
    *,
    data_until: datetime,
    table_data_until: datetime | None,
    table_adapter: str | None,
    adapter: str | None,
    adapter_trained_until: datetime | None,
    days: float = SIGNALS_DEFAULTS.recall_days,
    k: int = SIGNALS_DEFAULTS.recall_k,
) -> dict[str, float | None]:
    """The recall signals of :class:`~hybridrec.types.DriftStats` for a served table that was
    built from the data before ``table_data_until``, measured only on later transitions (out of
    sample) with ``lookup(contexts, k) -> ids`` (the served table):

    * ``recall_recent``: the last ``days`` before ``data_until``, if the table served all of them;
    * ``recall_at_table``: the first ``days`` after the table was built, once all were seen;
    * ``recall_at_training``: the first ``days`` after the current adapter's training window, if
      this table, built from that adapter no later than then, served them.

    A signal is None when its days are not all seen yet, the table did not serve them, or they
    hold no transition."""
    out: dict[str, float | None] = {"recall_recent": None, "recall_at_table": None,
                                    "recall_at_training": None}
    if table_data_until is None:
        return out
    span = timedelta(days=days)

    def rate(start: datetime) -> float | None:
        rows = transitions.window(TimeWindow(start=start, end=start + span))
        if not len(rows):
            return None
        ids = lookup(rows.contexts(), k)
        return float((ids[:, :k] == rows.c3[:, None]).any(axis=1).mean())

    if data_until - span >= table_data_until:
        out["recall_recent"] = rate(data_until - span)
    if data_until >= table_data_until + span:
        out["recall_at_table"] = rate(table_data_until)
    trained = adapter_trained_until
    if (trained is not None and adapter is not None and table_adapter == adapter
            and table_data_until <= trained and data_until >= trained + span):
        out["recall_at_training"] = rate(trained)
    return out


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
    "BACKOFF_WIDTH",
    "SIGNALS_DEFAULTS",
    "Served",
    "SignalWarning",
    "backoff_history",
    "backoff_width",
    "drift_stats",
    "freshness_signals",
    "needed_signals",
    "system_state",
    "table_recall",
    "warn_signal",
]
