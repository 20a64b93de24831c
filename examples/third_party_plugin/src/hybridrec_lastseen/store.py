"""The ``lastseen`` knowledge store.

Snapshot layout (one folder): ``keys.npy`` (sorted context keys ``c1 * n + c2``), ``offsets.npy``
(CSR offsets into the successor arrays), ``succ.npy``, ``support.npy``, ``last.npy`` and
``manifest.json`` with checksums (written by :mod:`hybridrec.artifacts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hybridrec.artifacts import atomic_write_json, checksums, verify
from hybridrec.config import EvidenceConfig
from hybridrec.interfaces import KnowledgeSnapshot, KnowledgeStore, StoreCapabilities
from hybridrec.types import EvidenceBatch, TimeWindow, TransitionSet

ARRAYS = ("keys", "offsets", "succ", "support", "last")


class LastSeenOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    m: int = Field(default=1, ge=1, le=50, description="successors returned per context")


class LastSeenSnapshot(KnowledgeSnapshot):
    def __init__(self, path: Path, manifest: dict[str, Any], m: int) -> None:
        self.path = path
        self.manifest = manifest
        self.id = str(manifest["snapshot_id"])
        self.window = TimeWindow.model_validate(manifest["window"])
        self.n = int(manifest["n_clusters"])
        self.m = m
        self.arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}

    def evidence(self, contexts: np.ndarray, m: int | None = None) -> EvidenceBatch:
        m = m or self.m
        contexts = np.asarray(contexts, dtype=np.int64)
        out = EvidenceBatch.empty(contexts, width=m)
        keys, offsets = self.arrays["keys"], self.arrays["offsets"]
        query = contexts[:, 0] * self.n + contexts[:, 1]
        pos = np.searchsorted(keys, query)
        if keys.shape[0] == 0:  # an empty window: no context has evidence
            found = np.zeros(query.shape[0], dtype=bool)
        else:
            found = (pos < keys.shape[0]) & (keys[np.minimum(pos, keys.shape[0] - 1)] == query)
        for row in np.flatnonzero(found):  # at most m items per row: cheap
            lo, hi = int(offsets[pos[row]]), int(offsets[pos[row] + 1])
            take = min(m, hi - lo)
            out.cluster[row, :take] = self.arrays["succ"][lo : lo + take]
            out.support[row, :take] = self.arrays["support"][lo : lo + take]
            out.last_seen[row, :take] = self.arrays["last"][lo : lo + take]
            out.score[row, :take] = self.arrays["last"][lo : lo + take]
        return EvidenceBatch(
            contexts=out.contexts, cluster=out.cluster, support=out.support, score=out.score,
            last_seen=out.last_seen, provenance=out.provenance, snapshot=self.id,
            window=self.window,
        )


class LastSeenStore(KnowledgeStore):
    """Evidence = the successors of each context ordered by when they were last seen."""

    name: ClassVar[str] = "lastseen"
    Options: ClassVar[type[BaseModel]] = LastSeenOptions
    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities(
        immutable_snapshots=True, incremental_add=False, memory_mapped=True
    )

    @classmethod
    def evidence_options(cls, recipe: EvidenceConfig, options: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        """The pipeline's evidence recipe sets ``m``: as many successors as the prompt has
        candidate slots (the generator's count comes from the same field)."""
        return {"m": ("candidates", recipe.candidates)}

    def build(self, transitions: TransitionSet, window: TimeWindow, out_dir: Path) -> LastSeenSnapshot:
        rows = transitions.window(window)
        n = transitions.n_clusters
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        pair = (rows.c1 * n + rows.c2) * n + rows.c3
        uniq, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
        last = np.zeros(uniq.shape[0], dtype=np.int64)
        np.maximum.at(last, inverse, rows.ts)
        ctx, succ = uniq // n, uniq % n
        order = np.lexsort((succ, -last, ctx))  # per context: most recent first, ties by id
        ctx, succ, last, counts = ctx[order], succ[order], last[order], counts[order]
        keys, starts = np.unique(ctx, return_index=True)
        offsets = np.append(starts, ctx.shape[0]).astype(np.int64)
        for name, array in zip(ARRAYS, (keys, offsets, succ, counts.astype(np.float64), last), strict=True):
            np.save(out_dir / f"{name}.npy", array)
        manifest = {
            "snapshot_id": f"lastseen-{window.start_ts}-{window.end_ts}-{len(rows)}",
            "store": self.name,
            "window": window.model_dump(mode="json"),
            "n_clusters": n,
            "catalog_hash": self.catalog.hash,
            "transitions": len(rows),
            "files": checksums(out_dir),
        }
        atomic_write_json(out_dir / "manifest.json", manifest)
        return LastSeenSnapshot(out_dir, manifest, self.options.m)

    def open(self, path: Path) -> LastSeenSnapshot:
        manifest = verify(Path(path))
        return LastSeenSnapshot(Path(path), manifest, self.options.m)
