"""The replay loop: serve, score, then let every arm act on the day's data.

:func:`replay` is the whole protocol of docs/protocol.md for a list of :class:`Arm` objects; it keeps
one ``int8`` hit rank per scored transition and arm, per-day summaries and cumulative cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hybridrec.backtest.metrics import DayGroups, hit_ranks, summarize
from hybridrec.backtest.protocol import Arm, Day, prefix, replay_days
from hybridrec.errors import HybridrecError
from hybridrec.types import TransitionSet, datetime_to_ts


class ProtocolViolation(HybridrecError):
    """An arm served something the protocol forbids (a context cluster, a repeat)."""


@dataclass
class ArmRun:
    """Everything the replay recorded for one arm."""

    arm: Arm
    ranks: list[np.ndarray] = field(default_factory=list)
    covered: list[np.ndarray] = field(default_factory=list)
    per_day: list[dict[str, Any]] = field(default_factory=list)
    seconds_serving: float = 0.0
    seconds_updating: float = 0.0

    def all_ranks(self) -> np.ndarray:
        return np.concatenate(self.ranks) if self.ranks else np.zeros(0, dtype=np.int8)

    def all_covered(self) -> np.ndarray:
        return np.concatenate(self.covered) if self.covered else np.zeros(0, dtype=bool)


@dataclass
class ReplayResult:
    """The raw outcome of :func:`replay` (turned into a report by :mod:`hybridrec.backtest.report`)."""

    days: list[Day]
    groups: DayGroups
    runs: list[ArmRun]
    start: datetime
    end: datetime
    n_transitions: int
    seconds: float
    #: Why the replay stopped early (``keep_partial``): ``error``, ``type``, ``arm``, ``day``
    #: (the first day not completed), ``phase`` (``begin``, ``serve``, ``update``),
    #: ``completed_days``, ``planned_days``; None when every day completed.
    failure: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        return self.failure is not None

    def run(self, name: str) -> ArmRun:
        for r in self.runs:
            if r.arm.name == name:
                return r
        raise KeyError(name)


def check_served(name: str, contexts: np.ndarray, ids: np.ndarray, day: Day) -> None:
    """Raise :class:`ProtocolViolation` if any served list holds a context cluster or a repeat."""
    for j in range(contexts.shape[1]):
        clash = ids == contexts[:, j : j + 1]
        if clash.any():
            row = int(np.argwhere(clash)[0, 0])
            raise ProtocolViolation(
                f"arm {name!r} on {day.label} served {ids[row].tolist()} for context "
                f"{contexts[row].tolist()}: a served list must not contain c1 or c2"
            )
    ordered = np.sort(ids, axis=1)
    repeats = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeats.any():
        row = int(np.argwhere(repeats)[0, 0])
        raise ProtocolViolation(
            f"arm {name!r} on {day.label} served a list with a repeated cluster: {ids[row].tolist()}"
        )


def replay(
    transitions: TransitionSet,
    arms: Sequence[Arm],
    start: datetime,
    end: datetime,
    *,
    k: int = 5,
    progress: bool = False,
    on_day: Callable[[Day], None] | None = None,
    keep_partial: bool = False,
) -> ReplayResult:
    """Run the prequential daily replay of ``arms`` over the days in ``[start, end)``.

    With ``keep_partial``, an exception (or an interrupt) while an arm begins, serves or updates
    does not propagate: the replay stops and returns what finished, the days completed by every
    arm, with :attr:`ReplayResult.failure` saying what failed where. Without it the exception
    propagates.
    """
    started = time.perf_counter()
    days = replay_days(transitions, start, end)
    warmup = prefix(transitions, int(np.searchsorted(transitions.ts, datetime_to_ts(start))))
    runs = [ArmRun(arm) for arm in arms]
    where: dict[str, Any] = {"phase": "begin", "arm": None, "day": None}
    failure: dict[str, Any] | None = None
    completed = 0
    try:
        for run in runs:
            where["arm"] = run.arm.name
            t0 = time.perf_counter()
            run.arm.begin(warmup, start)
            run.seconds_updating += time.perf_counter() - t0
        bar = tqdm(days, desc="replay", unit="day", disable=not progress, leave=False)
        for day in bar:
            where["day"] = day.label
            _replay_day(transitions, runs, day, k, where)
            completed += 1
            if on_day is not None:
                on_day(day)
        bar.close()
    except (Exception, KeyboardInterrupt) as exc:
        if not keep_partial:
            raise
        failure = {
            "error": str(exc) or repr(exc),
            "type": type(exc).__name__,
            "arm": where["arm"],
            "day": where["day"],
            "phase": where["phase"],
            "completed_days": completed,
            "planned_days": len(days),
        }
        days = days[:completed]
        for run in runs:  # keep only the days every arm completed
            del run.ranks[completed:], run.covered[completed:], run.per_day[completed:]
    day_of = np.repeat(np.arange(len(days)), [d.n for d in days])
    return ReplayResult(
        days=days,
        groups=DayGroups(day_of=day_of, n_days=len(days)),
        runs=runs,
        start=start,
        end=end,
        n_transitions=int(day_of.shape[0]),
        seconds=time.perf_counter() - started,
        failure=failure,
    )


def _replay_day(
    transitions: TransitionSet, runs: list[ArmRun], day: Day, k: int, where: dict[str, Any]
) -> None:
    """Serve and score ``day`` for every arm, then let every arm act on the day's data."""
    contexts = np.stack([transitions.c1[day.lo : day.hi], transitions.c2[day.lo : day.hi]], 1)
    truth = transitions.c3[day.lo : day.hi]
    where["phase"] = "serve"
    for run in runs:
        where["arm"] = run.arm.name
        t0 = time.perf_counter()
        served = run.arm.serve(contexts, k)
        run.seconds_serving += time.perf_counter() - t0
        if served.ids.shape != (day.n, k):
            raise ProtocolViolation(
                f"arm {run.arm.name!r} served shape {served.ids.shape} for {day.n} contexts, "
                f"expected {(day.n, k)}"
            )
        check_served(run.arm.name, contexts, served.ids, day)
        ranks = hit_ranks(served.ids, truth)
        run.ranks.append(ranks)
        run.covered.append(np.asarray(served.covered, dtype=bool))
        run.per_day.append({"day": day.label, "n": day.n, **summarize(ranks),
                            "coverage": float(served.covered.mean()) if day.n else 0.0})
    seen = prefix(transitions, day.hi)
    where["phase"] = "update"
    for run in runs:
        where["arm"] = run.arm.name
        t0 = time.perf_counter()
        actions = run.arm.end_of_day(seen, day)
        run.seconds_updating += time.perf_counter() - t0
        run.per_day[-1]["actions"] = actions
        run.per_day[-1]["decisions"] = run.arm.last_decisions()
        run.per_day[-1]["cum_flops"] = float(run.arm.cost.flops)


__all__ = [
    "ArmRun",
    "ProtocolViolation",
    "ReplayResult",
    "check_served",
    "replay",
]
