"""The ``annoy`` and ``exact`` knowledge stores.

Both build the same snapshot (see :mod:`hybridrec_stores.snapshot`) from a window of
transitions:

1. exact per-context successor statistics of the window, scored by ``frequency`` (count) or by
   ``trend`` (count minus the count in the previous window of equal length), top-``depth`` per
   context: the paper's instance-level retrieval (served top-``m``, default 1);
2. ``instance`` granularity: every ordered pair of the catalog whose own support is below
   ``min_support`` borrows from its nearest donor contexts (:mod:`hybridrec_stores.borrow`);
   ``annoy`` finds neighbours with an Annoy index, ``exact`` by brute force (the oracle);
3. ``global`` granularity: the top transitions of the whole window, the same for every context;
4. ``backoff`` granularity: every ordered pair's successors ranked by pair counts smoothed toward
   its last and first clusters' successor shares (the ``markov-backoff`` estimator, options
   ``backoff_alpha`` and ``backoff_weights``), so every context gets evidence without a neighbour
   index; pair it with the ``lora`` option ``evidence_ranking="backoff"`` so training prompts
   carry the same evidence. On ML-1M's validation days (2000-05-18 to 2000-06-01) the ``tiny``
   model's ``rag-once`` arm scored HR@5 0.3199 with it against 0.3241 with ``instance``
   evidence, so the demo keeps ``instance`` (``research/studies/validation-*.toml``).

Everything is precomputed at build time, so serving evidence for any number of contexts is a
memory-mapped gather. Snapshots are immutable; a refresh builds a new one (see
:class:`hybridrec_stores.manager.SnapshotManager` for staging, promotion and rollback).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hybridrec.artifacts import MANIFEST, atomic_write_json, checksums
from hybridrec.errors import DataError, HybridrecError
from hybridrec.interfaces import KnowledgeStore, StoreCapabilities
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet, Workload
from hybridrec_stores.borrow import all_pair_keys, borrow, merge_disjoint, select_rows, support_of
from hybridrec_stores.embeddings import cluster_embeddings, context_embeddings
from hybridrec_stores.neighbours import AnnoyIndexFile, ExactIndex, NeighbourIndex
from hybridrec_stores.snapshot import SCHEMA, MmapSnapshot, load_array, open_manifest
from hybridrec_stores.stats import (
    SuccessorTable,
    TripleCounts,
    backoff_table,
    check_catalog_size,
    count_triples,
    exact_table,
    global_table,
)

if TYPE_CHECKING:
    from hybridrec.plugin_refs import EvidenceConfig

#: What an Annoy-style store can do. An incremental store (one that takes upserts, e.g. a
#: vector database) would set ``immutable_snapshots=False, incremental_add=True`` and usually
#: ``memory_mapped=False``; policies and cost models read these flags instead of store names.
SNAPSHOT_CAPABILITIES = StoreCapabilities(
    immutable_snapshots=True, incremental_add=False, memory_mapped=True
)

#: Options that change how fast a snapshot is built or opened, never its content; they are
#: left out of the snapshot id so equal content gets an equal id.
RUNTIME_OPTIONS = frozenset({"verify", "workers", "block", "search_k"})


class SnapshotStoreOptions(BaseModel):
    """Options shared by the snapshot stores."""

    model_config = ConfigDict(extra="forbid")

    granularity: Literal["instance", "global", "backoff"] = Field(
        default="instance",
        description="instance: evidence per context (the paper's winner); global: the top "
        "transitions of the window, the same for every context; backoff: every context's "
        "successors by pair counts smoothed toward its last and first clusters' successor "
        "shares (the markov-backoff ranking; every context gets evidence, no neighbour index).",
    )
    backoff_alpha: float = Field(
        default=128.0, ge=0.0,
        description="backoff granularity: smoothing strength (pseudo-counts of the backoff).",
    )
    backoff_weights: tuple[float, float, float] = Field(
        default=(0.7, 0.3, 0.0),
        description="backoff granularity: weights of the last cluster's successor shares, the "
        "first cluster's (skip-gram) successor shares and popularity. Defaults: the "
        "configuration markov-best chose on ML-1M's validation days (before the test window).",
    )
    half_life_days: float | None = Field(
        default=None, gt=0,
        description="backoff granularity: decay the counts to the window's end, a transition a "
        "days old weighing 2**(-a / half_life_days) (the counting arms' decay); give the lora "
        "fine-tuner the same evidence_half_life_days. None: every transition counts 1.",
    )
    recent_days: int | None = Field(
        default=None, ge=1,
        description="backoff granularity: also store each item's counts and shares over the "
        "window's last recent_days (EvidenceBatch.recent), for a generator that renders them "
        "(hf rerank_recent); give the lora fine-tuner the same evidence_recent_days.",
    )
    scoring: Literal["frequency", "trend"] = Field(
        default="frequency",
        description="frequency: count in the window; trend: count increase against the "
        "previous window of equal length.",
    )
    m: int = Field(default=1, ge=1, le=100, description="Evidence items served per context.")
    depth: int | None = Field(
        default=None, ge=1, le=100,
        description="Items stored per context (evidence may ask for up to this many); "
        "default max(m, 5).",
    )
    window_days: float = Field(
        default=30.0, gt=0,
        description="Window length a pipeline should build from (see window_ending); build() "
        "always uses the window it is given.",
    )
    min_support: int = Field(
        default=2, ge=0,
        description="Contexts with fewer exact transitions in the window borrow from their "
        "nearest contexts (0 disables borrowing).",
    )
    neighbours: int = Field(default=5, ge=1, le=100, description="Contexts to borrow from.")
    min_similarity: float = Field(
        default=0.0, ge=-1.0, lt=1.0,
        description="Neighbours at or below this cosine similarity lend nothing.",
    )
    embedding: Literal["keywords", "minilm"] = Field(
        default="keywords",
        description="Cluster embeddings: TF-IDF of the keywords (fast, no model) or "
        "all-MiniLM-L6-v2 sentence embeddings of the descriptions (loads a model, ~seconds).",
    )
    embedding_dim: int = Field(
        default=8, ge=2, le=1024,
        description="Cluster embedding size (context embeddings are twice this).",
    )
    recent_weight: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Weight of c2 (the more recent cluster) in context similarity.",
    )
    seed: int = Field(default=0, ge=0, description="Seed of embeddings and the index.")
    verify: Literal["size", "sha256"] = Field(
        default="sha256",
        description="What open() checks: file sizes only, or sizes and sha256 of every file.",
    )

    @model_validator(mode="after")
    def _depth(self) -> SnapshotStoreOptions:
        if self.depth is not None and self.depth < self.m:
            raise ValueError(f"depth ({self.depth}) must be at least m ({self.m})")
        if self.granularity == "backoff":
            if self.scoring != "frequency":
                raise ValueError("backoff granularity smooths frequency counts; use scoring='frequency'")
            if min(self.backoff_weights) < 0 or sum(self.backoff_weights) <= 0:
                raise ValueError(
                    f"backoff_weights must be non-negative with a positive sum, got {self.backoff_weights}"
                )
        else:
            for name in ("recent_days", "half_life_days"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} is an option of the backoff granularity")
        return self

    @property
    def stored_depth(self) -> int:
        return self.depth if self.depth is not None else max(self.m, 5)


class AnnoyStoreOptions(SnapshotStoreOptions):
    """Options of the ``annoy`` store."""

    n_trees: int = Field(default=10, ge=1, le=1000, description="Annoy trees.")
    search_k: int = Field(
        default=500, ge=-1,
        description="Annoy nodes inspected per neighbours() query; -1 means n_trees * k. "
        "500 with 10 trees gives neighbour recall@10 >= 0.95 on ML-1M contexts "
        "(`hybridrec bench store`).",
    )
    borrow_search_k: int = Field(
        default=50, ge=-1,
        description="Annoy nodes inspected per borrowing query at build time (one query per "
        "context below min_support, ~80k on ML-1M, so this dominates build time); -1: as "
        "search_k. Borrowed evidence averages several neighbours, so it tolerates a cheaper "
        "search than neighbours() (annoy_borrow_recall_at_5 in `hybridrec bench store`).",
    )
    workers: int = Field(
        default=0, ge=0,
        description="Processes answering the build's neighbour queries (they share the "
        "memory-mapped index); 0: one per CPU, at most 8. Results do not depend on it.",
    )

    @property
    def query_workers(self) -> int:
        return self.workers or min(8, os.cpu_count() or 1)


class ExactStoreOptions(SnapshotStoreOptions):
    """Options of the ``exact`` store."""

    block: int = Field(default=2048, ge=1, description="Queries per brute-force block.")


class CountsStoreOptions(SnapshotStoreOptions):
    """Options of the ``counts`` store: snapshots of the counting estimator alone."""

    granularity: Literal["backoff"] = Field(  # type: ignore[assignment]
        default="backoff",
        description="Always backoff: every context's candidates ranked by the smoothed-count "
        "estimator (hybridrec.estimators.counting) over the window, with their count evidence.",
    )
    min_support: int = Field(
        default=0, ge=0, le=0,
        description="Always 0: every context gets the estimator's evidence, none is borrowed.",
    )


class SnapshotStore(KnowledgeStore):
    """Shared build/open logic; subclasses supply the neighbour index."""

    capabilities: ClassVar[StoreCapabilities] = SNAPSHOT_CAPABILITIES
    options: SnapshotStoreOptions

    def __init__(self, options: BaseModel | None, catalog: ClusterCatalog) -> None:
        super().__init__(options, catalog)
        check_catalog_size(len(catalog))
        self._cluster_emb: np.ndarray | None = None

    @classmethod
    def evidence_options(cls, recipe: EvidenceConfig, options: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        """From the evidence recipe: ``m`` (its candidates); with the backoff estimator also the
        granularity, the estimator's alpha, weights and decay, and its recent window; with pair
        evidence a granularity other than backoff (instance, unless global is written)."""
        out: dict[str, tuple[str, Any]] = {"m": ("candidates", recipe.candidates)}
        if recipe.estimator == "backoff":
            out.update(granularity=("estimator", "backoff"), backoff_alpha=("alpha", recipe.alpha),
                       backoff_weights=("weights", recipe.weights),
                       half_life_days=("half_life_days", recipe.half_life_days),
                       recent_days=("recent_days", recipe.recent_days))
        elif options.get("granularity", cls.Options.model_fields["granularity"].default) == "backoff":
            out["granularity"] = ("estimator", "instance")
        return out

    @classmethod
    def evidence_provides(cls, options: BaseModel) -> frozenset[str]:
        """``backoff``: the count evidence (``shares``, ``context_support``, and ``recent`` with
        ``recent_days``); ``instance``: each item's neighbour ``similarity`` and ``source``
        context; ``global``: ``source`` only."""
        granularity = getattr(options, "granularity", "instance")
        if granularity == "backoff":
            recent = {"recent"} if getattr(options, "recent_days", None) else set()
            return frozenset({"shares", "context_support", "source", "similarity", *recent})
        if granularity == "global":
            return frozenset({"source"})
        return frozenset({"similarity", "source"})

    # -- hooks for subclasses ----------------------------------------------------------------

    @abstractmethod
    def _build_index(self, items: np.ndarray, folder: Path) -> NeighbourIndex:
        """Index the donor context embeddings ``items`` (files go into ``folder``)."""

    @abstractmethod
    def _load_index(self, snapshot: MmapSnapshot) -> NeighbourIndex:
        """Re-open the neighbour index of an opened snapshot."""

    def borrow_query_effort(self) -> int | None:
        """Search effort of the build's borrowing queries (None: the index's default)."""
        return None

    # -- helpers -----------------------------------------------------------------------------

    def window_ending(self, end: datetime) -> TimeWindow:
        """The window of ``window_days`` ending (exclusive) at ``end``."""
        return TimeWindow.ending_at(end, self.options.window_days)

    def cluster_embeddings(self) -> np.ndarray:
        """The catalog's cluster embeddings (deterministic in catalog, dim and seed)."""
        if self._cluster_emb is None:
            self._cluster_emb = cluster_embeddings(
                self.catalog, self.options.embedding_dim, self.options.seed,
                self.options.embedding,
            )
        return self._cluster_emb

    def context_embeddings(self, keys: np.ndarray) -> np.ndarray:
        return context_embeddings(
            self.cluster_embeddings(), keys, len(self.catalog), self.options.recent_weight
        )

    def workload(self, n_transitions: int, n_contexts: int) -> Workload:
        """A build counts ``n_transitions`` and indexes and queries up to ``n_contexts``
        contexts (an upper bound: only supported contexts are indexed, only the others query).
        Serving (``n_transitions == 0``) is a memory-mapped gather that touches no index."""
        if n_transitions == 0:
            return Workload(contexts=n_contexts)
        if self.options.granularity == "backoff":  # scores every context, no neighbour index
            # the estimator scores every catalog cluster as a candidate of every context
            return Workload(transitions=n_transitions, contexts=n_contexts,
                            scored_candidates=n_contexts * len(self.catalog))
        return Workload(
            transitions=n_transitions,
            contexts=n_contexts,
            index_items=n_contexts,
            index_dim=2 * self.options.embedding_dim,
            index_trees=int(getattr(self.options, "n_trees", 0)),
        )

    # -- build -------------------------------------------------------------------------------

    def build(
        self, transitions: TransitionSet, window: TimeWindow, out_dir: Path
    ) -> MmapSnapshot:
        """Build the snapshot of ``window`` into ``out_dir`` (created; must be empty).

        Reads only ``window`` (and, for trend scoring, the window of equal length before it).
        The manifest is written last, so a folder without one is an interrupted build.
        """
        out_dir = Path(out_dir)
        if transitions.n_clusters != len(self.catalog):
            raise DataError(
                f"transitions use {transitions.n_clusters} clusters but the catalog "
                f"{self.catalog.name!r} has {len(self.catalog)}; build both from the same catalog"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        if any(out_dir.iterdir()):
            raise HybridrecError(
                f"{out_dir} is not empty; build each snapshot into a new folder "
                "(SnapshotManager.refresh does this for you)"
            )
        opts = self.options
        timings: dict[str, float] = {}
        started = clock = time.perf_counter()

        rows = transitions.window(window)
        previous_window = None
        previous = None
        if opts.scoring == "trend":
            length = window.end - window.start
            previous_window = TimeWindow(start=window.start - length, end=window.start)
            previous = count_triples(transitions.window(previous_window))
        decay = opts.half_life_days if opts.granularity == "backoff" else None
        current = count_triples(rows, half_life_days=decay, as_of=window.end_ts)
        timings["count_seconds"] = time.perf_counter() - clock

        counts: dict[str, int] = {"transitions": len(rows)}
        if opts.granularity == "global":
            table = global_table(current, previous, opts.scoring, opts.stored_depth)
            index_keys = np.zeros(0, dtype=np.int64)
            counts.update(exact_contexts=int(np.unique(current.context).size), donors=0,
                          recipients=0)
        elif opts.granularity == "backoff":
            clock = time.perf_counter()
            recent = None
            if opts.recent_days is not None:
                since = max(window.start, window.end - timedelta(days=opts.recent_days))
                recent = count_triples(transitions.window(TimeWindow(start=since, end=window.end)))
            table = backoff_table(
                current, opts.stored_depth, alpha=opts.backoff_alpha, weights=opts.backoff_weights,
                recent=recent,
            )
            timings["stats_seconds"] = time.perf_counter() - clock
            index_keys = np.zeros(0, dtype=np.int64)
            counts.update(exact_contexts=int(np.unique(current.context).size), donors=0,
                          recipients=0)
        else:
            table, index_keys, extra = self._instance_table(current, previous, out_dir, timings)
            counts.update(extra)
        counts["stored_contexts"] = int(table.keys.size)
        counts["stored_items"] = table.n_items

        clock = time.perf_counter()
        for stem, array in table.arrays().items():
            np.save(out_dir / f"{stem}.npy", np.ascontiguousarray(array))
        np.save(out_dir / "index_keys.npy", index_keys)
        np.save(out_dir / "cluster_embeddings.npy", self.cluster_embeddings())
        files = checksums(out_dir)
        timings["write_seconds"] = time.perf_counter() - clock
        timings["build_seconds"] = time.perf_counter() - started

        manifest = self._manifest(window, previous_window, files, counts, timings)
        atomic_write_json(out_dir / MANIFEST, manifest)
        return self._open_verified(out_dir, manifest)

    def _instance_table(
        self,
        current: TripleCounts,
        previous: TripleCounts | None,
        out_dir: Path,
        timings: dict[str, float],
    ) -> tuple[SuccessorTable, np.ndarray, dict[str, int]]:
        opts = self.options
        n = len(self.catalog)
        clock = time.perf_counter()
        exact = exact_table(current, previous, opts.scoring, opts.stored_depth)
        timings["stats_seconds"] = time.perf_counter() - clock
        donor_rows = np.flatnonzero(exact.context_support >= max(opts.min_support, 1))
        index_keys = exact.keys[donor_rows]
        extra = {"exact_contexts": int(exact.keys.size), "donors": int(donor_rows.size)}
        if opts.min_support == 0:
            extra["recipients"] = 0
            return exact, index_keys, extra

        clock = time.perf_counter()
        index = self._build_index(self.context_embeddings(index_keys), out_dir)
        timings["index_seconds"] = time.perf_counter() - clock

        clock = time.perf_counter()
        pairs = all_pair_keys(n)
        recipients = pairs[support_of(exact, pairs) < opts.min_support]
        neighbour, similarity = index.query(
            self.context_embeddings(recipients), opts.neighbours, self.borrow_query_effort()
        )
        timings["neighbour_seconds"] = time.perf_counter() - clock

        clock = time.perf_counter()
        lent = borrow(
            exact, donor_rows, recipients, neighbour, similarity,
            depth=opts.stored_depth, min_similarity=opts.min_similarity,
        )
        table = merge_disjoint(select_rows(exact, donor_rows), lent)
        timings["borrow_seconds"] = time.perf_counter() - clock
        extra["recipients"] = int(recipients.size)
        return table, index_keys, extra

    def _manifest(
        self,
        window: TimeWindow,
        previous_window: TimeWindow | None,
        files: dict[str, dict[str, Any]],
        counts: dict[str, int],
        timings: dict[str, float],
    ) -> dict[str, Any]:
        options = self.options.model_dump(mode="json")
        options["depth"] = self.options.stored_depth
        identity = {
            "store": self.name,
            "options": {k: v for k, v in options.items() if k not in RUNTIME_OPTIONS},
            "window": [window.start.isoformat(), window.end.isoformat()],
            "catalog": self.catalog.hash,
            "files": {k: v["sha256"] for k, v in files.items()},
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return {
            "schema": SCHEMA,
            "store": self.name,
            "snapshot_id": f"{self.name}-{digest[:16]}",
            "options": options,
            "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
            "previous_window": None if previous_window is None else {
                "start": previous_window.start.isoformat(),
                "end": previous_window.end.isoformat(),
            },
            "catalog": {
                "name": self.catalog.name,
                "version": self.catalog.version,
                "hash": self.catalog.hash,
                "size": len(self.catalog),
            },
            "capabilities": self.capabilities.model_dump(),
            "counts": counts,
            "timings": {k: round(v, 6) for k, v in timings.items()},
            "files": files,
        }

    # -- open --------------------------------------------------------------------------------

    def open(self, path: Path) -> MmapSnapshot:
        """Open ``path``, verifying sizes (and sha256 unless ``verify="size"``).

        Raises :class:`~hybridrec.errors.CorruptArtifactError` on a missing, truncated or
        changed file, or a manifest of another store or schema.
        """
        manifest = open_manifest(
            Path(path), store=self.name, catalog_hash=self.catalog.hash,
            deep=self.options.verify == "sha256",
        )
        return self._open_verified(Path(path), manifest)

    def _open_verified(self, path: Path, manifest: dict[str, Any]) -> MmapSnapshot:
        return MmapSnapshot(
            path, manifest, default_m=self.options.m, index_loader=self._load_index
        )


class AnnoyStore(SnapshotStore):
    """Knowledge store with an Annoy index over donor context embeddings (see module doc)."""

    name: ClassVar[str] = "annoy"
    Options: ClassVar[type[BaseModel]] = AnnoyStoreOptions
    options: AnnoyStoreOptions

    INDEX_FILE: ClassVar[str] = "index.ann"

    def _build_index(self, items: np.ndarray, folder: Path) -> NeighbourIndex:
        return AnnoyIndexFile.build(
            items, folder / self.INDEX_FILE, n_trees=self.options.n_trees,
            seed=self.options.seed + 1, search_k=self.options.search_k,
            workers=self.options.query_workers,
        )

    def borrow_query_effort(self) -> int | None:
        opts = self.options
        return opts.search_k if opts.borrow_search_k == -1 else opts.borrow_search_k

    def _load_index(self, snapshot: MmapSnapshot) -> NeighbourIndex:
        path = snapshot.path / self.INDEX_FILE
        if not path.is_file():
            return ExactIndex(np.zeros((0, 2 * self.options.embedding_dim), dtype=np.float32))
        dim = 2 * int(snapshot.manifest["options"]["embedding_dim"])
        return AnnoyIndexFile(path, dim, self.options.search_k, self.options.query_workers)


class ExactStore(SnapshotStore):
    """Same snapshot as ``annoy`` with brute-force cosine neighbours: the test oracle."""

    name: ClassVar[str] = "exact"
    Options: ClassVar[type[BaseModel]] = ExactStoreOptions
    options: ExactStoreOptions

    def _build_index(self, items: np.ndarray, folder: Path) -> NeighbourIndex:
        return ExactIndex(items, block=self.options.block)

    def _load_index(self, snapshot: MmapSnapshot) -> NeighbourIndex:
        keys = np.asarray(load_array(snapshot.path, "index_keys"))
        emb = np.asarray(load_array(snapshot.path, "cluster_embeddings"))
        weight = float(snapshot.manifest["options"]["recent_weight"])
        items = context_embeddings(emb, keys, snapshot.n_clusters, weight)
        return ExactIndex(items, block=self.options.block)


class CountsStore(SnapshotStore):
    """Snapshots of the counting estimator: every context's candidates ranked by smoothed pair
    counts (the ``markov-backoff`` ranking) with their count evidence, and no neighbour index
    (the rerank preset's store; ``annoy`` with ``granularity = "backoff"`` builds the same
    snapshot)."""

    name: ClassVar[str] = "counts"
    Options: ClassVar[type[BaseModel]] = CountsStoreOptions
    options: CountsStoreOptions

    def _build_index(self, items: np.ndarray, folder: Path) -> NeighbourIndex:
        return ExactIndex(items)  # never called: the estimator borrows nothing

    def _load_index(self, snapshot: MmapSnapshot) -> NeighbourIndex:
        return ExactIndex(np.zeros((0, 2 * self.options.embedding_dim), dtype=np.float32))


__all__ = [
    "SNAPSHOT_CAPABILITIES",
    "AnnoyStore",
    "AnnoyStoreOptions",
    "CountsStore",
    "CountsStoreOptions",
    "ExactStore",
    "ExactStoreOptions",
    "SnapshotStore",
    "SnapshotStoreOptions",
]
