"""The in-memory backend: a dense array indexed by ``c1 * n + c2``.

On disk a version is one ``table.npz`` (so it is versioned and promoted like any other table);
:class:`MemoryReader` loads it whole, and a batch lookup is a gather plus the vectorised backoff.
Memory is ``n² · k · 8`` bytes (about 7 MB for 301 clusters and k = 10). :meth:`MemoryTable.build`
makes one straight from :class:`Rankings` without any file (for the backtest's daily replay).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hybridrec.errors import CorruptArtifactError
from hybridrec.serving.base import (
    SuccessorFallback,
    TableBackend,
    TableReader,
    TableWriter,
    check_contexts,
    fill_rows,
)
from hybridrec.types import Rankings

FILE_NAME = "table.npz"


class MemoryTable(TableReader):
    """A complete table held in numpy arrays (thread-safe: never mutated after construction)."""

    backoff: SuccessorFallback

    def __init__(
        self,
        ids: np.ndarray,
        scores: np.ndarray,
        backoff: SuccessorFallback,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        n = backoff.n_clusters
        if ids.shape[0] != n * n or ids.shape != scores.shape:
            raise ValueError(f"dense table must be ({n * n}, k) for {n} clusters, got {ids.shape}")
        self.n_clusters = n
        self.k = int(ids.shape[1])
        self.ids = ids
        self.scores = scores
        self.backoff = backoff
        self.metadata = dict(metadata or {})

    @classmethod
    def build(
        cls,
        rankings: Rankings | list[Rankings],
        backoff: SuccessorFallback,
        k: int,
        metadata: dict[str, Any] | None = None,
    ) -> MemoryTable:
        """A table from rankings in memory (later rows for the same context win)."""
        n = backoff.n_clusters
        ids = np.full((n * n, k), -1, dtype=np.int64)
        scores = np.zeros((n * n, k), dtype=np.float64)
        for part in rankings if isinstance(rankings, list) else [rankings]:
            ctx = check_contexts(part.contexts, n)
            keys = ctx[:, 0] * n + ctx[:, 1]
            width = min(k, part.ids.shape[1])
            ids[keys, :width] = part.ids[:, :width]
            scores[keys, :width] = part.scores[:, :width]
        return cls(ids, scores, backoff, metadata)

    @property
    def rows(self) -> int:
        """Contexts whose row serves at least one cluster."""
        return int((self.ids[:, 0] >= 0).sum())

    def lookup_batch_with_levels(self, contexts: np.ndarray, k: int) -> tuple[Rankings, np.ndarray]:
        ctx = check_contexts(contexts, self.n_clusters)
        keys = ctx[:, 0] * self.n_clusters + ctx[:, 1]
        return fill_rows(ctx, self.ids[keys], self.scores[keys], self.backoff, k)


class MemoryWriter(TableWriter):
    def __init__(self, folder: Path, *, n_clusters: int, k: int) -> None:
        self.path = Path(folder) / FILE_NAME
        self.n_clusters = n_clusters
        self.k = k
        self._ids = np.full((n_clusters * n_clusters, k), -1, dtype=np.int32)
        self._scores = np.zeros((n_clusters * n_clusters, k), dtype=np.float32)
        self._written = np.zeros(n_clusters * n_clusters, dtype=bool)
        self._backoff: SuccessorFallback | None = None

    @property
    def rows(self) -> int:
        return int(self._written.sum())

    def write(self, rankings: Rankings) -> None:
        ctx = check_contexts(rankings.contexts, self.n_clusters)
        keys = ctx[:, 0] * self.n_clusters + ctx[:, 1]
        if self._written[keys].any() or np.unique(keys).shape[0] != keys.shape[0]:
            raise ValueError(f"{self.path}: a context was written twice")
        width = min(self.k, rankings.ids.shape[1])
        self._ids[keys, :width] = rankings.ids[:, :width]
        self._scores[keys, :width] = rankings.scores[:, :width]
        self._written[keys] = True

    def set_backoff(self, backoff: SuccessorFallback) -> None:
        if backoff.n_clusters != self.n_clusters:
            raise ValueError(
                f"backoff covers {backoff.n_clusters} clusters, the table {self.n_clusters}"
            )
        self._backoff = backoff

    def commit(self, manifest: dict[str, Any]) -> None:
        backoff = self._backoff or SuccessorFallback.empty(self.n_clusters, self.k + 2)
        buffer = io.BytesIO()
        np.savez(
            buffer,
            ids=self._ids,
            scores=self._scores,
            by_last=backoff.by_last.astype(np.int32),
            by_last_scores=backoff.by_last_scores.astype(np.float32),
            popular=backoff.popular.astype(np.int32),
            popular_scores=backoff.popular_scores.astype(np.float32),
            meta=np.frombuffer(
                json.dumps({"n_clusters": self.n_clusters, "k": self.k, "rows": self.rows,
                            "metadata": manifest}, default=str).encode(),
                dtype=np.uint8,
            ),
        )
        self.path.write_bytes(buffer.getvalue())

    def abort(self) -> None:
        self._backoff = None


class MemoryBackend(TableBackend):
    """Dense numpy arrays, loaded whole into memory (fastest batch lookup)."""

    name: ClassVar[str] = "memory"

    def writer(self, folder: Path, *, n_clusters: int, k: int) -> TableWriter:
        return MemoryWriter(folder, n_clusters=n_clusters, k=k)

    def reader(self, folder: Path) -> TableReader:
        path = Path(folder) / FILE_NAME
        try:
            with np.load(path) as data:
                meta = json.loads(bytes(data["meta"]).decode())
                backoff = SuccessorFallback(
                    by_last=data["by_last"].astype(np.int64),
                    by_last_scores=data["by_last_scores"].astype(np.float64),
                    popular=data["popular"].astype(np.int64),
                    popular_scores=data["popular_scores"].astype(np.float64),
                )
                return MemoryTable(
                    data["ids"].astype(np.int64),
                    data["scores"].astype(np.float64),
                    backoff,
                    meta.get("metadata"),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise CorruptArtifactError(f"{path}: not a complete memory table ({exc})") from None


__all__ = [
    "FILE_NAME",
    "MemoryBackend",
    "MemoryTable",
    "MemoryWriter",
]
