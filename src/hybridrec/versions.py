"""The version-store protocol: the little the update engine needs from where versions live.

:mod:`hybridrec.engine` executes actions against a :class:`VersionStore`; the workspace (on disk,
:class:`hybridrec.workspace.WorkspaceVersions`) and the backtest (in memory, one per arm,
:class:`hybridrec.backtest.llm.ArmVersions`) implement it. This module imports neither side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from hybridrec.types import CostRecord, TimeWindow

#: The kinds of versions actions produce.
KINDS: tuple[str, ...] = ("adapter", "knowledge", "table")


@dataclass
class Candidate:
    """A built, not yet committed, result of an action.

    ``handle`` is the store's own (a staging folder, a cache key); ``metrics`` are the held-out
    metrics the guardrails check (fine-tunes only); ``versions_out`` overrides the record's
    output versions (default: the committed version).
    """

    handle: Any
    manifest: dict[str, Any]
    seconds: float
    metrics: dict[str, float] | None = None
    versions_out: dict[str, str | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class VersionStore(Protocol):
    """What the engine needs from where versions live (see the module docstring)."""

    def served(self, kind: str) -> str | None:
        """The served version of ``kind`` (``adapter``, ``knowledge``, ``table``), or None."""
        ...

    def manifest(self, kind: str, version: str | None) -> dict[str, Any] | None:
        """The manifest of a version of ``kind`` (None for None)."""
        ...

    def commit(self, kind: str, candidate: Candidate) -> str:
        """Make ``candidate`` a version of ``kind`` (its manifest carries ``status``); its id."""
        ...

    def promote(self, kind: str, version: str) -> None:
        """Serve ``version`` of ``kind`` from now on."""
        ...

    def hold(self, kind: str, version: str) -> None:
        """Keep ``version`` of ``kind`` for review, not served."""
        ...

    def record(self, record: CostRecord) -> None:
        """Append ``record`` to the ledger."""
        ...

    def ledger(self, since: datetime | None = None) -> Sequence[CostRecord]:
        """Ledger records at or after ``since`` (all if None), oldest first."""
        ...

    def describe(self) -> Served:
        """What is served now, as the policy sees it."""
        ...


@dataclass(frozen=True)
class Served:
    """What a version store serves, as the policy sees it."""

    adapter: str | None = None
    adapter_window: TimeWindow | None = None
    adapter_trained_at: datetime | None = None
    knowledge: str | None = None
    knowledge_window: TimeWindow | None = None
    knowledge_built_at: datetime | None = None
    table: str | None = None
    table_built_at: datetime | None = None
    table_uses_knowledge: bool = False
    held: tuple[str, ...] = ()


__all__ = ["KINDS", "Candidate", "Served", "VersionStore"]
