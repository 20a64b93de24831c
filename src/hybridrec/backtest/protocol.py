"""The prequential daily replay protocol (docs/protocol.md), independent of any arm.

* Day ``d`` is the UTC calendar day ``[d 00:00, d+1 00:00)``.
* The list served on day ``d`` comes from a table built only from transitions strictly before
  day ``d``; every transition whose time falls on day ``d`` is scored against it.
* After scoring, each arm sees the data up to the end of day ``d`` and may update itself.
* A served list never contains ``c1`` or ``c2``; a context without a table entry is scored with
  what the system serves for it (its backoff), never skipped.

This module holds the pieces every arm shares: day slicing, the :class:`Arm` contract, the
popularity backoff, and :func:`prefix` (the data an arm may see).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

import numpy as np

from hybridrec.estimators.counting import DAY, popularity_order
from hybridrec.types import UTC, TransitionSet, to_utc


def day_start(value: date | datetime) -> datetime:
    """Midnight UTC of ``value``'s calendar day."""
    if isinstance(value, datetime):
        value = to_utc(value).date()
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


@dataclass(frozen=True)
class Day:
    """One replay day: ``[start, end)`` and the slice ``[lo, hi)`` of its transitions."""

    index: int
    start: datetime
    lo: int
    hi: int

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)

    @property
    def n(self) -> int:
        return self.hi - self.lo

    @property
    def label(self) -> str:
        return self.start.date().isoformat()


def replay_days(transitions: TransitionSet, start: datetime, end: datetime) -> list[Day]:
    """Every calendar day in ``[start, end)`` (days without transitions included)."""
    first, last = day_start(start), to_utc(end)
    days: list[Day] = []
    current = first
    while current < last:
        lo, hi = np.searchsorted(
            transitions.ts, [int(current.timestamp()), int(current.timestamp()) + DAY], side="left"
        )
        days.append(Day(index=len(days), start=current, lo=int(lo), hi=int(hi)))
        current = current + timedelta(days=1)
    return days


def prefix(transitions: TransitionSet, hi: int) -> TransitionSet:
    """The first ``hi`` rows as a zero-copy view: exactly the data an arm may see."""
    return TransitionSet(
        transitions.c1[:hi], transitions.c2[:hi], transitions.c3[:hi], transitions.ts[:hi],
        transitions.user[:hi], transitions.n_clusters,
    )


def fill_lists(ids: np.ndarray, contexts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Replace the ``-1`` slots of ``ids`` (``(m, K)``) from ``order``, left to right.

    A filler is never a context cluster nor a cluster already in its row; real entries keep their
    positions. Rows stay ``-1``-padded only if ``order`` runs out of candidates.
    """
    ids = np.array(ids, dtype=np.int64, copy=True)
    m, k = ids.shape
    if m == 0 or not (ids < 0).any():
        return ids
    width = min(order.shape[0], 2 * k + contexts.shape[1])
    cand = np.broadcast_to(order[:width], (m, width))
    bad = np.zeros((m, width), dtype=bool)
    for j in range(contexts.shape[1]):
        bad |= cand == contexts[:, j : j + 1]
    for j in range(k):
        bad |= cand == ids[:, j : j + 1]
    ok = ~bad
    ordinal = np.cumsum(ok, axis=1) - 1
    empty = ids < 0
    slot = np.cumsum(empty, axis=1) - 1
    for j in range(k):
        rows = np.nonzero(empty[:, j])[0]
        if rows.size == 0:
            continue
        want = slot[rows, j]
        hit = ok[rows] & (ordinal[rows] == want[:, None])
        has = hit.any(axis=1)
        ids[rows[has], j] = cand[rows[has], hit[has].argmax(axis=1)]
    return ids


@dataclass(frozen=True)
class Served:
    """What an arm serves for a batch of contexts: ``ids`` ``(m, K)`` best first, and
    ``covered[i]`` = the row came from a real table entry rather than the backoff."""

    ids: np.ndarray
    covered: np.ndarray


@dataclass
class CostTotals:
    """What an arm has spent so far (as if it ran alone)."""

    flops: float = 0.0
    seconds: float = 0.0
    money: float = 0.0
    fine_tunes: int = 0
    knowledge_refreshes: int = 0
    table_regenerations: int = 0
    held_adapters: int = 0
    regenerated_contexts: int = 0
    by_action: dict[str, float] = field(default_factory=dict)
    seconds_by_action: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "flops": float(self.flops),
            "seconds": float(self.seconds),
            "money": float(self.money),
            "fine_tunes": int(self.fine_tunes),
            "knowledge_refreshes": int(self.knowledge_refreshes),
            "table_regenerations": int(self.table_regenerations),
            "held_adapters": int(self.held_adapters),
        }


class Arm(ABC):
    """One system under test. The replay calls, for each day in order:

    1. :meth:`serve` with that day's contexts (built from data before the day only);
    2. :meth:`end_of_day` with everything up to the end of the day; it returns the names of the
       actions the arm took (for the per-day report) and charges :attr:`cost`.
    """

    llm: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.cost = CostTotals()
        #: actions taken in :meth:`begin`, before the first test day (reported separately).
        self.initial_actions: list[str] = []
        #: the built-in arm this one was built from (``[arms.<name>] preset``), if any.
        self.preset: str | None = None
        #: the decisions behind :attr:`initial_actions` (see :meth:`last_decisions`).
        self.initial_decisions: list[dict[str, Any]] = []

    def begin(self, history: TransitionSet, start: datetime) -> None:  # noqa: B027 - optional hook
        """Prepare from the warm-up data (everything strictly before ``start``)."""

    @abstractmethod
    def serve(self, contexts: np.ndarray, k: int) -> Served:
        """The lists served for ``contexts`` (see :class:`Served`)."""

    @abstractmethod
    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        """Observe ``history`` (all data before ``day.end``); update; return action names."""

    def exact_match_rate(self) -> float | None:
        """Exact-match rate of what this arm served (None for arms without an LLM)."""
        return None

    def extra_metrics(self) -> dict[str, float | int | None]:
        """Arm-specific metrics added to the report."""
        return {}

    def describe(self) -> dict[str, Any] | None:
        """The arm's configuration for the report (``arm["config"]``), or None."""
        return None

    def last_decisions(self) -> list[dict[str, Any]]:
        """The actions decided at the last :meth:`end_of_day`, each ``{"action": kind,
        "reason": why, "outcome": the label returned for it}`` (the report's
        ``per_day[].decisions``); ``[]`` for an arm without a policy."""
        return []


__all__ = [
    "DAY",
    "Arm",
    "CostTotals",
    "Day",
    "Served",
    "day_start",
    "fill_lists",
    "popularity_order",
    "prefix",
    "replay_days",
]
