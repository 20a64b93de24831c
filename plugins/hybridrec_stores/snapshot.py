"""The on-disk snapshot layout and its memory-mapped reader.

A snapshot folder is self-contained (it can be copied or served from anywhere)::

    manifest.json        schema, store, options, window, catalog hash, counts, files + sha256
    keys.npy             int64 (C,)   sorted context keys c1 * n + c2 that hold evidence
    offsets.npy          int64 (C+1,) items of keys[i] are [offsets[i], offsets[i+1])
    context_support.npy  int64 (C,)   exact transitions of the context in the window (float64:
                         their decayed count, backoff granularity with half_life_days)
    cluster.npy          int32 (I,)   successor cluster, best first within a context
    support.npy          float64 (I,) count (similarity-weighted average when borrowed)
    score.npy            float64 (I,) frequency or trend score
    last_seen.npy        int64 (I,)   Unix seconds of the latest observation
    provenance.npy       int8 (I,)    0 exact, 1 borrowed, 2 global
    source.npy           int64 (I,)   context key lent from (-1: the context itself)
    similarity.npy       float32 (I,) similarity of the source context (1: itself)
    shares.npy           float64 (I, 3) (backoff granularity only) share among the successors
                         of the context's last cluster, first cluster, and of all contexts
    recent.npy           float64 (I, 5) (backoff granularity with recent_days only) the same
                         count evidence over the window's last days (hybridrec.types.RECENT_COLUMNS)
    index_keys.npy       int64 (D,)   context keys in the neighbour index (the donors)
    cluster_embeddings.npy float32    the catalog's cluster embeddings
    index.ann            (annoy only) the Annoy index over the donors' context embeddings

In ``global`` granularity the table holds one pseudo-context (key ``-1``) whose items every
context receives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.artifacts import verify
from hybridrec.errors import CorruptArtifactError, DataError
from hybridrec.interfaces import KnowledgeSnapshot
from hybridrec.types import RECENT_COLUMNS, EvidenceBatch, TimeWindow
from hybridrec_stores.embeddings import context_embeddings
from hybridrec_stores.neighbours import NeighbourIndex

SCHEMA = "hybridrec.knowledge/1"
TABLE_FILES = (
    "keys", "offsets", "context_support", "cluster", "support", "score", "last_seen",
    "provenance", "source", "similarity",
)
ITEM_FILES = ("cluster", "support", "score", "last_seen", "provenance", "source", "similarity")
#: optional item file (written by the ``backoff`` granularity)
SHARES_FILE = "shares"
#: optional item file (written by the ``backoff`` granularity with ``recent_days``)
RECENT_FILE = "recent"


def load_array(folder: Path, stem: str) -> np.ndarray:
    """``np.load`` a snapshot array memory-mapped, turning format errors into corruption."""
    path = folder / f"{stem}.npy"
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise CorruptArtifactError(f"{path}: missing; the snapshot is incomplete") from None
    except (ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{path}: not a readable numpy array ({exc})") from None


def open_manifest(path: Path, *, store: str, catalog_hash: str, deep: bool) -> dict[str, Any]:
    """Verify ``path`` against its manifest and check it is a snapshot for this catalog."""
    path = Path(path)
    if not path.is_dir():
        raise CorruptArtifactError(f"{path}: no knowledge snapshot folder here")
    manifest = verify(path, deep=deep)
    if manifest.get("schema") != SCHEMA:
        raise CorruptArtifactError(
            f"{path}: manifest schema {manifest.get('schema')!r} is not {SCHEMA!r}; "
            "not a knowledge snapshot (or written by an incompatible version)"
        )
    if manifest.get("store") != store:
        raise CorruptArtifactError(
            f"{path}: snapshot was built by knowledge store {manifest.get('store')!r}; "
            f"open it with that store, not {store!r}"
        )
    built_for = manifest.get("catalog", {}).get("hash")
    if built_for != catalog_hash:
        raise DataError(
            f"{path}: snapshot was built for catalog {built_for!r}, this store has catalog "
            f"{catalog_hash!r}; rebuild the snapshot for the current catalog"
        )
    return manifest


class MmapSnapshot(KnowledgeSnapshot):
    """A snapshot opened from disk; arrays are memory-mapped, evidence is a vectorised gather.

    ``evidence`` costs one ``searchsorted`` over the stored keys plus one gather per array, so
    it is ``O(n log C + n m)`` for ``n`` contexts and never touches the neighbour index.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        *,
        default_m: int,
        index_loader: Any,
    ) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.id = str(manifest["snapshot_id"])
        window = manifest["window"]
        self.window = TimeWindow(start=window["start"], end=window["end"])
        self.n_clusters = int(manifest["catalog"]["size"])
        self.granularity = str(manifest["options"]["granularity"])
        self.default_m = default_m
        self._arrays = {stem: load_array(self.path, stem) for stem in TABLE_FILES}
        for optional in (SHARES_FILE, RECENT_FILE):
            if (self.path / f"{optional}.npy").exists():
                self._arrays[optional] = load_array(self.path, optional)
        self._index_loader = index_loader
        self._index: NeighbourIndex | None = None
        self._check_layout()

    def _check_layout(self) -> None:
        a = self._arrays
        n_keys, n_items = a["keys"].shape[0], a["cluster"].shape[0]
        problems = []
        if a["offsets"].shape != (n_keys + 1,):
            problems.append(f"offsets has shape {a['offsets'].shape}, expected ({n_keys + 1},)")
        elif n_keys and (int(a["offsets"][0]) != 0 or int(a["offsets"][-1]) != n_items):
            problems.append("offsets do not span the item arrays")
        if a["context_support"].shape != (n_keys,):
            problems.append("context_support does not match keys")
        for stem in ITEM_FILES:
            if a[stem].shape != (n_items,):
                problems.append(f"{stem} has {a[stem].shape[0]} items, cluster has {n_items}")
        if SHARES_FILE in a and a[SHARES_FILE].shape != (n_items, 3):
            problems.append(f"shares has shape {a[SHARES_FILE].shape}, expected ({n_items}, 3)")
        if RECENT_FILE in a and a[RECENT_FILE].shape != (n_items, len(RECENT_COLUMNS)):
            problems.append(
                f"recent has shape {a[RECENT_FILE].shape}, expected ({n_items}, {len(RECENT_COLUMNS)})"
            )
        if problems:
            raise CorruptArtifactError(f"{self.path}: inconsistent snapshot: {'; '.join(problems)}")

    # -- evidence ----------------------------------------------------------------------------

    def _validate_contexts(self, contexts: np.ndarray) -> np.ndarray:
        ctx = np.asarray(contexts)
        if ctx.ndim != 2 or ctx.shape[1] != 2:
            raise DataError(f"contexts must be an (n, 2) array of cluster ids, got shape {ctx.shape}")
        ctx = ctx.astype(np.int64, copy=False)
        if ctx.size and (ctx.min() < 0 or ctx.max() >= self.n_clusters):
            raise DataError(
                f"contexts hold cluster ids outside [0, {self.n_clusters}) "
                f"(found [{int(ctx.min())}, {int(ctx.max())}])"
            )
        return ctx

    def rows_of(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in the table, whether found) for each context."""
        ctx = self._validate_contexts(contexts)
        keys = self._arrays["keys"]
        if self.granularity == "global":
            return np.zeros(ctx.shape[0], dtype=np.int64), np.ones(ctx.shape[0], dtype=bool)
        query = ctx[:, 0] * self.n_clusters + ctx[:, 1]
        if keys.shape[0] == 0:
            return np.zeros(query.shape, dtype=np.int64), np.zeros(query.shape, dtype=bool)
        pos = np.minimum(np.searchsorted(keys, query), keys.shape[0] - 1)
        return pos, np.asarray(keys[pos]) == query

    def evidence(self, contexts: np.ndarray, m: int | None = None) -> EvidenceBatch:
        """Top-``m`` items per context (the store's ``m`` by default); see the class docstring.

        Rows align with ``contexts``; a context without evidence gets an all ``-1`` row. At most
        the snapshot's stored depth is available (``manifest["options"]["depth"]``); wider
        requests are padded.
        """
        width = self.default_m if m is None else int(m)
        if width < 1:
            raise DataError(f"evidence width m must be >= 1, got {width}")
        ctx = self._validate_contexts(contexts)
        n = ctx.shape[0]
        pos, found = self.rows_of(ctx)
        a = self._arrays
        offsets = a["offsets"]
        if offsets.shape[0] > 1:
            start = np.asarray(offsets[pos])
            length = np.where(found, np.asarray(offsets[pos + 1]) - start, 0)
        else:
            start = length = np.zeros(n, dtype=np.int64)
        slot = np.arange(width)
        present = slot[None, :] < length[:, None]
        item = np.where(present, start[:, None] + slot[None, :], 0)

        def gather(stem: str, pad: Any, dtype: Any) -> np.ndarray:
            if a[stem].shape[0] == 0:
                return np.full((n, width), pad, dtype=dtype)
            return np.where(present, np.asarray(a[stem])[item], pad).astype(dtype, copy=False)

        source_key = gather("source", -1, np.int64)
        source = np.full((n, width, 2), -1, dtype=np.int64)
        lent = source_key >= 0
        source[lent, 0] = source_key[lent] // self.n_clusters
        source[lent, 1] = source_key[lent] % self.n_clusters
        similarity = None
        if self.granularity != "global":
            similarity = gather("similarity", 0.0, np.float64)
        shares = context_support = None
        if SHARES_FILE in a:
            shares = np.zeros((n, width, 3))
            table = np.asarray(a[SHARES_FILE])
            if table.shape[0]:
                shares[present] = table[item[present]]
            support_of = np.asarray(a["context_support"])
            context_support = np.where(found, support_of[pos] if support_of.size else 0, 0)
            context_support = context_support.astype(np.float64)
        recent = None
        if RECENT_FILE in a:
            recent = np.zeros((n, width, len(RECENT_COLUMNS)))
            table = np.asarray(a[RECENT_FILE])
            if table.shape[0]:
                recent[present] = table[item[present]]
        return EvidenceBatch(
            contexts=ctx,
            cluster=gather("cluster", -1, np.int64),
            support=gather("support", 0.0, np.float64),
            score=gather("score", 0.0, np.float64),
            last_seen=gather("last_seen", -1, np.int64),
            provenance=gather("provenance", 0, np.int8),
            similarity=similarity,
            source=source,
            snapshot=self.id,
            window=self.window,
            shares=shares,
            context_support=context_support,
            recent=recent,
        )

    # -- neighbours --------------------------------------------------------------------------

    @property
    def index_keys(self) -> np.ndarray:
        """Context keys in the neighbour index (the donors), in index order."""
        return load_array(self.path, "index_keys")

    def context_embeddings(self, contexts: np.ndarray) -> np.ndarray:
        """The unit context embeddings this snapshot's index uses."""
        ctx = self._validate_contexts(contexts)
        emb = load_array(self.path, "cluster_embeddings")
        weight = float(self.manifest["options"]["recent_weight"])
        keys = ctx[:, 0] * self.n_clusters + ctx[:, 1]
        return context_embeddings(np.asarray(emb), keys, self.n_clusters, weight)

    def neighbours(self, contexts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed contexts of each context: ``(n, k, 2)`` ids and ``(n, k)``
        cosine similarities, best first (``-1`` / ``nan`` padded)."""
        if self._index is None:
            self._index = self._index_loader(self)
        idx, sim = self._index.query(self.context_embeddings(contexts), k)
        keys = np.asarray(self.index_keys)
        out = np.full((*idx.shape, 2), -1, dtype=np.int64)
        ok = idx >= 0
        out[ok, 0] = keys[idx[ok]] // self.n_clusters
        out[ok, 1] = keys[idx[ok]] % self.n_clusters
        return out, sim

    def __repr__(self) -> str:
        return f"MmapSnapshot(id={self.id!r}, window={self.window.start}..{self.window.end}, path={self.path})"
