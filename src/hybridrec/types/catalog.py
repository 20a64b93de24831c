"""Interactions, clusters and the cluster catalog, contexts and transitions (pydantic)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from hybridrec.types.base import (
    ClusterId,
    Model,
    to_utc,
)


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


__all__ = [
    "Cluster",
    "ClusterCatalog",
    "Context",
    "Interaction",
    "Transition",
]
