"""Core domain types.

Two families live here:

* **pydantic models** for everything that crosses an edge (config, manifests, files, user input,
  the policy's view of the world). They validate and explain what is wrong.
* **array containers** (frozen dataclasses over numpy arrays) for the bulk paths: hundreds of
  thousands of transitions or contexts are never turned into one Python object each.

All times are UTC. Timestamps in arrays are integer seconds since the Unix epoch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    field_validator,
    model_validator,
)

UTC = UTC
ClusterId = NonNegativeInt


def to_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def ts_to_datetime(ts: int | float) -> datetime:
    """Unix seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(int(ts), tz=UTC)


def datetime_to_ts(value: datetime) -> int:
    """Aware or naive (UTC) datetime to integer Unix seconds."""
    return int(to_utc(value).timestamp())


class Model(BaseModel):
    """Base for hybridrec's pydantic models: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------------------------------------
# Interactions and clusters
# ---------------------------------------------------------------------------------------------


class Interaction(Model):
    """One logged engagement: ``user`` touched ``item`` at ``timestamp`` (optionally rated it)."""

    user: str = Field(min_length=1)
    item: str = Field(min_length=1)
    timestamp: datetime
    rating: float | None = None

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)


class Cluster(Model):
    """An interest cluster: a dense integer id and a keyword description.

    The description is what the LLM reads and writes; it must be unique within a catalog so that a
    generated string maps back to exactly one cluster (the exact-match guardrail).
    """

    id: ClusterId
    description: str = Field(min_length=1)
    keywords: tuple[str, ...] = ()

    @field_validator("description")
    @classmethod
    def _strip(cls, value: str) -> str:
        stripped = " ".join(value.split())
        if not stripped:
            raise ValueError("cluster description is blank")
        return stripped


class ClusterCatalog(Model):
    """The versioned set of clusters: ids ``0..n-1``, unique descriptions, a content hash.

    Invariants: ids are exactly ``range(len(clusters))`` in order; descriptions are unique
    (case-insensitive). ``hash`` depends only on ids, descriptions and keywords.
    """

    name: str = "catalog"
    version: str = "1"
    clusters: tuple[Cluster, ...]

    @model_validator(mode="after")
    def _check(self) -> ClusterCatalog:
        if not self.clusters:
            raise ValueError("a cluster catalog needs at least one cluster")
        seen: dict[str, int] = {}
        for position, cluster in enumerate(self.clusters):
            if cluster.id != position:
                raise ValueError(
                    f"cluster ids must be 0..n-1 in order; position {position} has id {cluster.id}"
                )
            key = cluster.description.lower()
            if key in seen:
                raise ValueError(
                    f"clusters {seen[key]} and {cluster.id} share the description "
                    f"{cluster.description!r}; descriptions must be unique"
                )
            seen[key] = cluster.id
        return self

    @classmethod
    def from_descriptions(
        cls, descriptions: Sequence[str], *, name: str = "catalog", version: str = "1"
    ) -> ClusterCatalog:
        """Build a catalog whose cluster ``i`` is described by ``descriptions[i]``."""
        return cls(
            name=name,
            version=version,
            clusters=tuple(
                Cluster(id=i, description=d, keywords=tuple(d.split()))
                for i, d in enumerate(descriptions)
            ),
        )

    def __len__(self) -> int:
        return len(self.clusters)

    @property
    def size(self) -> int:
        return len(self.clusters)

    @property
    def hash(self) -> str:
        """sha256 over the canonical JSON of ids, descriptions and keywords."""
        payload = [[c.id, c.description, list(c.keywords)] for c in self.clusters]
        blob = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def description(self, cluster_id: int) -> str:
        return self.clusters[cluster_id].description

    def lookup_description(self, text: str) -> int | None:
        """The id whose description equals ``text`` (whitespace- and case-normalised), or None."""
        index = self._description_index()
        return index.get(" ".join(text.split()).lower())

    def _description_index(self) -> dict[str, int]:
        cached = self.__dict__.get("_desc_index")
        if cached is None:
            cached = {c.description.lower(): c.id for c in self.clusters}
            object.__setattr__(self, "_desc_index", cached)  # frozen model: cache by hand
        return cached  # type: ignore[no-any-return]


class Context(Model):
    """The last ``k`` distinct clusters of a user, oldest first (the paper uses k = 2)."""

    clusters: tuple[ClusterId, ...] = Field(min_length=1)

    @field_validator("clusters")
    @classmethod
    def _distinct(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"context clusters must be distinct, got {value}")
        return value

    @property
    def k(self) -> int:
        return len(self.clusters)


class Transition(Model):
    """A triple of consecutive distinct clusters: context ``(c1, c2)`` then novel ``next``.

    ``time`` is the timestamp of the interaction that produced ``next``.
    """

    context: tuple[ClusterId, ClusterId]
    next: ClusterId
    time: datetime
    user: str | None = None

    @model_validator(mode="after")
    def _novel(self) -> Transition:
        c1, c2 = self.context
        if c1 == c2:
            raise ValueError(f"context clusters must differ, got ({c1}, {c2})")
        if self.next in self.context:
            raise ValueError(
                f"next cluster {self.next} is not novel: it is in the context {self.context}"
            )
        object.__setattr__(self, "time", to_utc(self.time))
        return self


class TimeWindow(Model):
    """A half-open interval of time ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _order(self) -> TimeWindow:
        object.__setattr__(self, "start", to_utc(self.start))
        object.__setattr__(self, "end", to_utc(self.end))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} must be after its start {self.start}")
        return self

    @classmethod
    def ending_at(cls, end: datetime, days: float) -> TimeWindow:
        end = to_utc(end)
        return cls(start=end - timedelta(days=days), end=end)

    @property
    def start_ts(self) -> int:
        return datetime_to_ts(self.start)

    @property
    def end_ts(self) -> int:
        return datetime_to_ts(self.end)

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400.0

    def contains(self, when: datetime) -> bool:
        return self.start <= to_utc(when) < self.end


# ---------------------------------------------------------------------------------------------
# Bulk containers
# ---------------------------------------------------------------------------------------------


def _as_int64(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


@dataclass(frozen=True)
class TransitionSet:
    """Transitions as parallel arrays, sorted by ``(ts, user, c1, c2, c3)``.

    Invariants checked on construction: equal lengths; ``c1 != c2``; ``c3 not in {c1, c2}``;
    non-negative cluster ids; sorted by time. ``user`` holds dense user codes (``-1`` if unknown).
    """

    c1: np.ndarray
    c2: np.ndarray
    c3: np.ndarray
    ts: np.ndarray
    user: np.ndarray
    n_clusters: int

    def __post_init__(self) -> None:
        arrays = {}
        for name in ("c1", "c2", "c3", "ts", "user"):
            arrays[name] = _as_int64(name, getattr(self, name))
            object.__setattr__(self, name, arrays[name])
        n = {a.shape[0] for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"transition arrays differ in length: { {k: v.shape[0] for k, v in arrays.items()} }")
        c1, c2, c3 = arrays["c1"], arrays["c2"], arrays["c3"]
        if c1.size:
            if (c1 == c2).any():
                raise ValueError("transition with c1 == c2")
            if ((c3 == c1) | (c3 == c2)).any():
                raise ValueError("transition whose next cluster is not novel (c3 in {c1, c2})")
            low = min(int(c1.min()), int(c2.min()), int(c3.min()))
            high = max(int(c1.max()), int(c2.max()), int(c3.max()))
            if low < 0 or high >= self.n_clusters:
                raise ValueError(
                    f"cluster ids must lie in [0, {self.n_clusters}), found [{low}, {high}]"
                )
            if (np.diff(arrays["ts"]) < 0).any():
                raise ValueError("transitions must be sorted by time")

    def __len__(self) -> int:
        return int(self.c1.shape[0])

    @classmethod
    def empty(cls, n_clusters: int) -> TransitionSet:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, z, n_clusters)

    @classmethod
    def from_transitions(
        cls, transitions: Sequence[Transition], n_clusters: int
    ) -> TransitionSet:
        """Build from pydantic transitions (users are coded in order of first appearance)."""
        rows = sorted(
            transitions,
            key=lambda t: (datetime_to_ts(t.time), t.user or "", t.context, t.next),
        )
        codes: dict[str | None, int] = {}
        user = [codes.setdefault(t.user, len(codes)) if t.user is not None else -1 for t in rows]
        return cls(
            c1=np.array([t.context[0] for t in rows], dtype=np.int64),
            c2=np.array([t.context[1] for t in rows], dtype=np.int64),
            c3=np.array([t.next for t in rows], dtype=np.int64),
            ts=np.array([datetime_to_ts(t.time) for t in rows], dtype=np.int64),
            user=np.array(user, dtype=np.int64),
            n_clusters=n_clusters,
        )

    def take(self, index: np.ndarray) -> TransitionSet:
        """Rows at ``index`` (a boolean mask or sorted integer positions)."""
        return TransitionSet(
            self.c1[index], self.c2[index], self.c3[index], self.ts[index], self.user[index],
            self.n_clusters,
        )

    def window(self, window: TimeWindow) -> TransitionSet:
        """Rows whose time lies in ``[window.start, window.end)``; uses the sort order."""
        lo = int(np.searchsorted(self.ts, window.start_ts, side="left"))
        hi = int(np.searchsorted(self.ts, window.end_ts, side="left"))
        return self.take(np.arange(lo, hi))

    def before(self, when: datetime) -> TransitionSet:
        """Rows strictly before ``when``."""
        hi = int(np.searchsorted(self.ts, datetime_to_ts(when), side="left"))
        return self.take(np.arange(0, hi))

    def contexts(self) -> np.ndarray:
        """The ``(n, 2)`` array of contexts."""
        return np.stack([self.c1, self.c2], axis=1)

    def __iter__(self) -> Iterator[Transition]:
        for i in range(len(self)):
            yield Transition(
                context=(int(self.c1[i]), int(self.c2[i])),
                next=int(self.c3[i]),
                time=ts_to_datetime(int(self.ts[i])),
                user=str(int(self.user[i])) if self.user[i] >= 0 else None,
            )


# ---------------------------------------------------------------------------------------------
# Evidence (RAG)
# ---------------------------------------------------------------------------------------------

Provenance = Literal["exact", "borrowed", "global"]
PROVENANCE_CODES: dict[str, int] = {"exact": 0, "borrowed": 1, "global": 2}


class EvidenceItem(Model):
    """One retrieved successor for a context, with where it came from.

    ``support`` is the (possibly similarity-weighted) count behind it in the snapshot's window;
    ``last_seen`` is the time of its most recent observation; ``source_context`` and
    ``similarity`` are set when the evidence is borrowed from a neighbouring context.
    """

    cluster: ClusterId
    support: NonNegativeFloat
    score: float
    last_seen: datetime | None = None
    provenance: Provenance = "exact"
    source_context: tuple[ClusterId, ...] | None = None
    similarity: float | None = None


class Evidence(Model):
    """The evidence a knowledge snapshot returns for one context (possibly none)."""

    context: tuple[ClusterId, ...]
    items: tuple[EvidenceItem, ...] = ()
    snapshot: str | None = None
    window: TimeWindow | None = None


@dataclass(frozen=True)
class EvidenceBatch:
    """Evidence for ``n`` contexts as padded arrays of width ``m`` (``-1`` marks no item).

    ``cluster``, ``support``, ``score``, ``last_seen`` (Unix seconds, ``-1`` unknown),
    ``provenance`` (codes of :data:`PROVENANCE_CODES`) and ``source`` (the ``(n, m, k)`` source
    contexts, ``-1`` when exact) are all shaped ``(n, m)`` except ``source``. Items in a row are
    ordered best first.
    """

    contexts: np.ndarray
    cluster: np.ndarray
    support: np.ndarray
    score: np.ndarray
    last_seen: np.ndarray
    provenance: np.ndarray
    similarity: np.ndarray | None = None
    source: np.ndarray | None = None
    snapshot: str | None = None
    window: TimeWindow | None = None

    def __post_init__(self) -> None:
        n, m = self.cluster.shape
        for name in ("support", "score", "last_seen", "provenance"):
            shape = getattr(self, name).shape
            if shape != (n, m):
                raise ValueError(f"evidence {name} has shape {shape}, expected {(n, m)}")
        if self.contexts.shape[0] != n:
            raise ValueError("evidence rows must match the number of contexts")

    def __len__(self) -> int:
        return int(self.cluster.shape[0])

    @property
    def width(self) -> int:
        return int(self.cluster.shape[1])

    @classmethod
    def empty(cls, contexts: np.ndarray, width: int = 1) -> EvidenceBatch:
        n = int(np.asarray(contexts).shape[0])
        return cls(
            contexts=np.asarray(contexts, dtype=np.int64),
            cluster=np.full((n, width), -1, dtype=np.int64),
            support=np.zeros((n, width), dtype=np.float64),
            score=np.zeros((n, width), dtype=np.float64),
            last_seen=np.full((n, width), -1, dtype=np.int64),
            provenance=np.zeros((n, width), dtype=np.int8),
        )

    def take(self, index: np.ndarray | slice) -> EvidenceBatch:
        return EvidenceBatch(
            contexts=self.contexts[index],
            cluster=self.cluster[index],
            support=self.support[index],
            score=self.score[index],
            last_seen=self.last_seen[index],
            provenance=self.provenance[index],
            similarity=None if self.similarity is None else self.similarity[index],
            source=None if self.source is None else self.source[index],
            snapshot=self.snapshot,
            window=self.window,
        )

    def row(self, i: int) -> Evidence:
        """Row ``i`` as a validated :class:`Evidence` model."""
        names = {v: k for k, v in PROVENANCE_CODES.items()}
        items = []
        for j in range(self.width):
            cluster = int(self.cluster[i, j])
            if cluster < 0:
                continue
            seen = int(self.last_seen[i, j])
            src = None
            if self.source is not None and self.source[i, j, 0] >= 0:
                src = tuple(int(x) for x in self.source[i, j])
            items.append(
                EvidenceItem(
                    cluster=cluster,
                    support=float(self.support[i, j]),
                    score=float(self.score[i, j]),
                    last_seen=ts_to_datetime(seen) if seen >= 0 else None,
                    provenance=names[int(self.provenance[i, j])],  # type: ignore[arg-type]
                    source_context=src,
                    similarity=None if self.similarity is None else float(self.similarity[i, j]),
                )
            )
        return Evidence(
            context=tuple(int(x) for x in self.contexts[i]),
            items=tuple(items),
            snapshot=self.snapshot,
            window=self.window,
        )


# ---------------------------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------------------------


class RankedPrediction(Model):
    """Top clusters for one context, best first, never containing a context cluster."""

    context: tuple[ClusterId, ...]
    clusters: tuple[ClusterId, ...]
    scores: tuple[float, ...]

    @model_validator(mode="after")
    def _check(self) -> RankedPrediction:
        if len(self.clusters) != len(self.scores):
            raise ValueError("clusters and scores differ in length")
        if len(set(self.clusters)) != len(self.clusters):
            raise ValueError(f"ranked clusters repeat: {self.clusters}")
        leaked = set(self.clusters) & set(self.context)
        if leaked:
            raise ValueError(f"ranked clusters {sorted(leaked)} are in the context {self.context}")
        return self


@dataclass(frozen=True)
class Rankings:
    """Top-``k`` predictions for ``n`` contexts as arrays: ``ids`` and ``scores`` are ``(n, k)``.

    Invariant: no row of ``ids`` contains a cluster of its context; ``-1`` pads rows that have
    fewer than ``k`` candidates.
    """

    contexts: np.ndarray
    ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.ids.shape != self.scores.shape or self.ids.shape[0] != self.contexts.shape[0]:
            raise ValueError(
                f"rankings shapes disagree: contexts {self.contexts.shape}, ids {self.ids.shape}, "
                f"scores {self.scores.shape}"
            )

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def validate(self) -> None:
        """Raise if any row contains one of its context clusters."""
        for j in range(self.contexts.shape[1]):
            clash = self.ids == self.contexts[:, j : j + 1]
            if clash.any():
                row = int(np.argwhere(clash)[0, 0])
                raise ValueError(
                    f"ranking for context {tuple(int(x) for x in self.contexts[row])} contains a context cluster"
                )

    def row(self, i: int) -> RankedPrediction:
        keep = self.ids[i] >= 0
        return RankedPrediction(
            context=tuple(int(x) for x in self.contexts[i]),
            clusters=tuple(int(x) for x in self.ids[i][keep]),
            scores=tuple(float(x) for x in self.scores[i][keep]),
        )

    def __iter__(self) -> Iterator[RankedPrediction]:
        for i in range(len(self)):
            yield self.row(i)


# ---------------------------------------------------------------------------------------------
# Actions, cost and state
# ---------------------------------------------------------------------------------------------


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
    """

    kind: Literal["regenerate_table"] = "regenerate_table"
    contexts: Literal["all", "observed"] = "all"
    observed_window: TimeWindow | None = None
    use_knowledge: bool = True
    reason: str = ""


class Noop(Model):
    """Do nothing (the reason is logged)."""

    kind: Literal["noop"] = "noop"
    reason: str = ""


Action = Annotated[FineTune | RefreshKnowledge | RegenerateTable | Noop, Field(discriminator="kind")]
ActionKind = Literal["fine_tune", "refresh_knowledge", "regenerate_table", "noop"]
ACTION_KINDS: tuple[str, ...] = ("fine_tune", "refresh_knowledge", "regenerate_table", "noop")


class Workload(Model):
    """What an action will touch, so a cost model can price it before it runs."""

    model_parameters: NonNegativeInt = 0
    trainable_parameters: NonNegativeInt = 0
    train_tokens: NonNegativeInt = 0
    train_epochs: NonNegativeFloat = 1.0
    inference_tokens: NonNegativeInt = 0
    generated_tokens: NonNegativeInt = 0
    contexts: NonNegativeInt = 0
    transitions: NonNegativeInt = 0
    guardrail_samples: NonNegativeInt = 0
    index_items: NonNegativeInt = 0
    index_dim: NonNegativeInt = 0
    index_trees: NonNegativeInt = 0
    device: str = "cpu"


class CostEstimate(Model):
    """A cost model's price of an action before it runs."""

    action: ActionKind
    flops: NonNegativeFloat = 0.0
    seconds: NonNegativeFloat = 0.0
    money: NonNegativeFloat = 0.0
    model: str = ""
    details: dict[str, float] = Field(default_factory=dict)


class CostRecord(Model):
    """One executed action in the ledger: what it was priced at and what it cost."""

    action: ActionKind
    at: datetime
    estimate: CostEstimate
    flops: NonNegativeFloat = 0.0
    seconds: NonNegativeFloat = 0.0
    money: NonNegativeFloat = 0.0
    versions_in: dict[str, str | None] = Field(default_factory=dict)
    versions_out: dict[str, str | None] = Field(default_factory=dict)
    status: Literal["ok", "held", "failed", "skipped"] = "ok"
    note: str = ""


class Budget(Model):
    """A spending limit per rolling period; ``None`` means unlimited for that unit."""

    period_days: float = Field(default=30.0, gt=0)
    flops: NonNegativeFloat | None = None
    seconds: NonNegativeFloat | None = None
    money: NonNegativeFloat | None = None


class DriftStats(Model):
    """Drift between the adapter's training data and recent data (None when not measured)."""

    top5_jaccard: float | None = Field(default=None, ge=0.0, le=1.0)
    pairs: NonNegativeInt = 0
    recall_recent: float | None = None
    recall_at_training: float | None = None
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


# ---------------------------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------------------------


class QuarantineRecord(Model):
    """An input row that was rejected, with where it was and why."""

    file: str
    row: int
    field: str
    reason: str
    value: str | None = None


@dataclass(frozen=True)
class InteractionTable:
    """Interactions as arrays: dense ``user`` and ``item`` codes, Unix-second ``ts``, ``rating``.

    ``rating`` is float with NaN for unrated rows. ``user_ids`` / ``item_ids`` map codes back to the
    source's identifiers.
    """

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    rating: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass(frozen=True)
class ItemTable:
    """Item metadata aligned with ``InteractionTable.item`` codes: title and categories."""

    item_ids: np.ndarray
    titles: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


@dataclass(frozen=True)
class InteractionData:
    """What a :class:`~hybridrec.interfaces.Dataset` loads."""

    name: str
    interactions: InteractionTable
    items: ItemTable
    quarantine: tuple[QuarantineRecord, ...] = ()
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "ACTION_KINDS",
    "PROVENANCE_CODES",
    "UTC",
    "Action",
    "ActionKind",
    "Budget",
    "Cluster",
    "ClusterCatalog",
    "ClusterId",
    "Context",
    "CostEstimate",
    "CostRecord",
    "DriftStats",
    "Evidence",
    "EvidenceBatch",
    "EvidenceItem",
    "FineTune",
    "Interaction",
    "InteractionData",
    "InteractionTable",
    "ItemTable",
    "Model",
    "Noop",
    "Provenance",
    "QuarantineRecord",
    "RankedPrediction",
    "Rankings",
    "RefreshKnowledge",
    "RegenerateTable",
    "SystemState",
    "TimeWindow",
    "Transition",
    "TransitionSet",
    "Workload",
    "datetime_to_ts",
    "to_utc",
    "ts_to_datetime",
]
