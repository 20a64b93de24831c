"""Small, fast, deterministic fake plugins for pipeline and workspace tests.

The fake generator ranks clusters by the successor counts its "adapter" (a JSON file written by
the fake fine-tuner) learned, boosted by evidence; the fake store counts successors per pair.
Registered in tests with ``hybridrec_plugin(fakes)``; ``sleep`` options slow them down so crash
tests can kill an update in the middle of any step.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from hybridrec import hookimpl
from hybridrec.artifacts import atomic_write_json, checksums, verify
from hybridrec.interfaces import (
    FineTuner,
    FineTuneResult,
    Generator,
    KnowledgeSnapshot,
    KnowledgeStore,
)
from hybridrec.types import EvidenceBatch, Rankings, TimeWindow, TransitionSet, Workload


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep: float = 0.0


class FakeGenerator(Generator):
    name: ClassVar[str] = "fake-gen"
    Options: ClassVar[type[BaseModel]] = _Opts

    def __init__(self, options: BaseModel | None, catalog: Any) -> None:
        super().__init__(options, catalog)
        self._adapter: str | None = None
        self.weights = np.zeros(len(catalog), dtype=np.float64)

    def load_adapter(self, path: Path | None) -> None:
        self._adapter = None if path is None else str(path)
        self.weights = np.zeros(len(self.catalog), dtype=np.float64)
        if path is not None:
            self.weights = np.asarray(json.loads((Path(path) / "adapter.json").read_text())["popularity"], dtype=np.float64)

    @property
    def adapter(self) -> str | None:
        return self._adapter

    def num_parameters(self) -> int:
        return 1000

    def rank(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, k: int = 5, *, progress: bool = False) -> Rankings:
        time.sleep(self.options.sleep)
        n = len(self.catalog)
        scores = np.broadcast_to(self.weights - np.arange(n) * 1e-6, (contexts.shape[0], n)).copy()
        if evidence is not None:
            for j in range(evidence.width):
                rows = np.flatnonzero(evidence.cluster[:, j] >= 0)
                scores[rows, evidence.cluster[rows, j]] += 1000.0 * (evidence.width - j)
        rows = np.arange(contexts.shape[0])
        scores[rows, contexts[:, 0]] = -np.inf
        scores[rows, contexts[:, 1]] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return Rankings(contexts=contexts, ids=top.astype(np.int64), scores=np.take_along_axis(scores, top, axis=1))

    def generate(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, *, progress: bool = False) -> list[str]:
        return [self.catalog.description(int(r[0])) for r in self.rank(contexts, evidence, 1).ids]


class FakeFineTunerOptions(_Opts):
    exact_match: float = 1.0
    recall: float = 0.5


class FakeFineTuner(FineTuner):
    name: ClassVar[str] = "fake-ft"
    Options: ClassVar[type[BaseModel]] = FakeFineTunerOptions

    def fine_tune(self, generator: Generator, transitions: TransitionSet, window: TimeWindow, out_dir: Path, *,
                  previous_adapter: Path | None = None, evidence_fn: Any = None, progress: bool = False) -> FineTuneResult:
        rows = transitions.window(window)
        out_dir.mkdir(parents=True, exist_ok=True)
        time.sleep(self.options.sleep)
        popularity = np.bincount(rows.c3, minlength=transitions.n_clusters).tolist()
        (out_dir / "adapter.json").write_text(json.dumps({"popularity": popularity}))
        manifest = {"window": window.model_dump(mode="json"), "rows": len(rows)}
        atomic_write_json(out_dir / "manifest.json", manifest)
        generator.load_adapter(out_dir)
        return FineTuneResult(adapter_path=out_dir, manifest=manifest,
                              metrics={"exact_match_rate": self.options.exact_match, "recall": self.options.recall},
                              train_tokens=20 * len(rows), seconds=0.0)

    def workload(self, n_transitions: int, generator: Generator) -> Workload:
        return Workload(model_parameters=1000, trainable_parameters=10, train_tokens=20 * n_transitions,
                        inference_tokens=100, generated_tokens=10)


class FakeSnapshot(KnowledgeSnapshot):
    def __init__(self, path: Path) -> None:
        self.manifest = verify(path)
        self.id = self.manifest["id"]
        self.window = TimeWindow.model_validate(self.manifest["window"])
        with np.load(path / "counts.npz") as data:
            self.counts = data["counts"]

    def evidence(self, contexts: np.ndarray, m: int | None = None) -> EvidenceBatch:
        m = m or 1
        n = self.counts.shape[0]
        rows = self.counts.reshape(n * n, n)[contexts[:, 0] * n + contexts[:, 1]]
        top = np.argsort(-rows, axis=1, kind="stable")[:, :m]
        support = np.take_along_axis(rows, top, axis=1).astype(np.float64)
        cluster = np.where(support > 0, top, -1)
        return EvidenceBatch(contexts=contexts, cluster=cluster, support=support, score=support,
                             last_seen=np.full(cluster.shape, -1), provenance=np.zeros(cluster.shape, dtype=np.int8),
                             snapshot=self.id, window=self.window)


class FakeStore(KnowledgeStore):
    name: ClassVar[str] = "fake-store"
    Options: ClassVar[type[BaseModel]] = _Opts

    def build(self, transitions: TransitionSet, window: TimeWindow, out_dir: Path) -> KnowledgeSnapshot:
        rows = transitions.window(window)
        n = transitions.n_clusters
        out_dir.mkdir(parents=True, exist_ok=True)
        time.sleep(self.options.sleep)
        counts = np.bincount((rows.c1 * n + rows.c2) * n + rows.c3, minlength=n * n * n).reshape(n, n, n)
        np.savez(out_dir / "counts.npz", counts=counts)
        atomic_write_json(out_dir / "manifest.json", {"id": f"snap-{window.end_ts}", "window": window.model_dump(mode="json"),
                                                      "files": checksums(out_dir)})
        return self.open(out_dir)

    def open(self, path: Path) -> KnowledgeSnapshot:
        return FakeSnapshot(path)

    def workload(self, n_transitions: int, n_contexts: int) -> Workload:
        return Workload(transitions=n_transitions, contexts=n_contexts, index_items=50, index_dim=8, index_trees=4)


@hookimpl
def register_generators(register: Any) -> None:
    register(FakeGenerator)


@hookimpl
def register_fine_tuners(register: Any) -> None:
    register(FakeFineTuner)


@hookimpl
def register_knowledge_stores(register: Any) -> None:
    register(FakeStore)


# -- synthetic interaction logs ------------------------------------------------------------------

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance")


def item_categories(n_items: int = 30) -> dict[str, str]:
    """Items whose category combinations give 10 clusters (5 single genres + 5 pairs)."""
    combos = [*GENRES, *(f"{a}|{b}" for a, b in zip(GENRES, GENRES[1:] + GENRES[:1], strict=True))]
    return {f"i{j}": combos[j % len(combos)] for j in range(n_items)}


def write_log(path: Path, start: datetime, days: int, *, seed: int = 0, users: int = 40,
              per_user: int = 25, extra_rows: list[str] | None = None) -> Path:
    """A CSV log (user,item,timestamp,rating,categories) spread over ``days`` from ``start``."""
    rng = np.random.default_rng(seed)
    cats = item_categories()
    items = list(cats)
    t0 = int(start.timestamp())
    lines = ["user,item,timestamp,rating,categories"]
    rows = []
    for u in range(users):
        ts = np.sort(rng.integers(t0, t0 + days * 86400, per_user))
        for t in ts:
            item = items[int(rng.integers(0, len(items)))]
            rows.append((int(t), f"u{u}", item, int(rng.integers(3, 6))))
    for t, user, item, rating in sorted(rows):
        lines.append(f"{user},{item},{t},{rating},{cats[item]}")
    lines.extend(extra_rows or [])
    path.write_text("\n".join(lines) + "\n")
    return path
