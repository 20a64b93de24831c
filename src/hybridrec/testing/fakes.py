"""Small, fast, deterministic fake plugins that follow the interface contracts exactly.

For plugin authors and for hybridrec's own tests: register them for one test with the
``hybridrec_plugin`` fixture (``hybridrec_plugin(hybridrec.testing.fakes)``), or in a process with
``hybridrec.plugins.register_plugin(hybridrec.testing.fakes)``; then name them in a config.

``fake-gen``
    Ranks the evidence clusters first (in evidence order), then clusters by the successor
    popularity its adapter learned (ties by lower id), never a context cluster. Its adapter is an
    ``adapter.json`` file written by ``fake-ft``.
``fake-prompt-gen``
    ``fake-gen`` that also offers :class:`~hybridrec.capabilities.PromptEncoder` (its prompt is
    the context then the evidence clusters), so table generation can reuse rows across states.
``fake-ft``
    Writes the successor popularity of the window as the adapter; reports the held-out metrics
    ``exact_match`` / ``recall`` from its options (default: :data:`METRICS`).
``fake-store``
    A snapshot holds each context's successor counts in its window (``counts.npz`` plus a
    checksummed ``manifest.json``); evidence is the top ``m`` successors by count.
``fake-cost``
    Flops from the workload by simple rules (fine-tune ``1000 × train_tokens``, refresh 10,
    regeneration one per context).

Every fake with a ``sleep`` option sleeps that long per call (crash tests kill an update in the
middle of a step). :data:`CALLS` counts the work done (tests reset it). :func:`write_log` writes a
synthetic interaction CSV for workspace tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from hybridrec.artifacts import atomic_write_json, checksums, verify
from hybridrec.hookspecs import hookimpl
from hybridrec.interfaces import (
    CostModel,
    FineTuner,
    FineTuneResult,
    Generator,
    KnowledgeSnapshot,
    KnowledgeStore,
)
from hybridrec.types import (
    ActionKind,
    ClusterCatalog,
    CostEstimate,
    EvidenceBatch,
    Rankings,
    TimeWindow,
    TransitionSet,
    Workload,
)

#: Work done by the fakes: fine-tunes, snapshot builds, ranked contexts.
CALLS: dict[str, int] = {"fine_tune": 0, "build": 0, "rank_contexts": 0}
#: Held-out metrics every ``fake-ft`` fine-tune reports unless its options say otherwise.
METRICS: dict[str, float] = {"exact_match_rate": 0.95, "recall": 0.2}


def reset_calls() -> None:
    """Zero :data:`CALLS`."""
    for key in CALLS:
        CALLS[key] = 0


class SleepOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep: float = 0.0


class FakeGenerator(Generator):
    """``fake-gen`` (see the module docstring)."""

    name: ClassVar[str] = "fake-gen"
    Options: ClassVar[type[BaseModel]] = SleepOptions
    # Guarded like the paper's generator (exact match and recall), so tests of the guardrails
    # can drive both metrics through fake-ft's options.
    serves_by: ClassVar[Literal["ranking", "generation"]] = "generation"

    def __init__(self, options: Any, catalog: ClusterCatalog) -> None:
        super().__init__(options, catalog)
        self._adapter: str | None = None
        self.popularity = np.zeros(len(catalog), dtype=np.float64)

    def load_adapter(self, path: Path | None) -> None:
        self._adapter = None if path is None else str(path)
        self.popularity = np.zeros(len(self.catalog), dtype=np.float64)
        if path is not None:
            raw = json.loads((Path(path) / "adapter.json").read_text())["popularity"]
            self.popularity = np.asarray(raw, dtype=np.float64)

    @property
    def adapter(self) -> str | None:
        return self._adapter

    def num_parameters(self) -> int:
        return 1000

    def workload(self, n_contexts: int, *, with_evidence: bool) -> Workload:
        """Ten prompt tokens per context (twelve with evidence)."""
        per = 12 if with_evidence else 10
        return Workload(model_parameters=1000, contexts=n_contexts, inference_tokens=per * n_contexts)

    def rank(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, k: int = 5, *,
             progress: bool = False) -> Rankings:
        time.sleep(self.options.sleep)
        contexts = np.asarray(contexts, dtype=np.int64)
        CALLS["rank_contexts"] += int(contexts.shape[0])
        n = len(self.catalog)
        order = np.argsort(-self.popularity, kind="stable")
        position = np.empty(n, dtype=np.float64)
        position[order] = np.arange(n)
        scores = np.broadcast_to(-position, (contexts.shape[0], n)).copy()
        if evidence is not None:
            for j in range(evidence.width):
                rows = np.flatnonzero(evidence.cluster[:, j] >= 0)
                scores[rows, evidence.cluster[rows, j]] = 2.0 * n * (evidence.width - j)
        rows = np.arange(contexts.shape[0])
        for j in range(contexts.shape[1]):
            scores[rows, contexts[:, j]] = -np.inf
        width = min(k, n - contexts.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :width]
        ids = np.full((contexts.shape[0], k), -1, dtype=np.int64)
        out = np.full((contexts.shape[0], k), -np.inf)
        ids[:, :width] = top
        out[:, :width] = np.take_along_axis(scores, top, axis=1)
        return Rankings(contexts=contexts, ids=ids, scores=out)

    def generate(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, *,
                 progress: bool = False) -> list[str]:
        return [self.catalog.description(int(r[0])) for r in self.rank(contexts, evidence, 1).ids]


@dataclass(frozen=True)
class FakePrompts:
    ids: np.ndarray
    lengths: np.ndarray


class PromptFakeOptions(SleepOptions):
    #: also render each evidence item's support count (as the rerank template renders numbers)
    render_support: bool = False


class PromptFakeGenerator(FakeGenerator):
    """``fake-prompt-gen``: ``fake-gen`` plus :class:`~hybridrec.capabilities.PromptEncoder`
    (prompts: the context and the evidence clusters; with ``render_support`` their counts too)."""

    name: ClassVar[str] = "fake-prompt-gen"
    Options: ClassVar[type[BaseModel]] = PromptFakeOptions

    def encode(self, contexts: np.ndarray, evidence: EvidenceBatch | None,
               as_of: np.ndarray | None) -> FakePrompts:
        parts = [np.asarray(contexts, dtype=np.int64)]
        if evidence is not None:
            parts.append(np.asarray(evidence.cluster, dtype=np.int64))
            if self.options.render_support:
                parts.append(np.asarray(evidence.support, dtype=np.int64))
        ids = np.concatenate(parts, axis=1)
        return FakePrompts(ids=ids, lengths=np.full(ids.shape[0], ids.shape[1], dtype=np.int64))


class FakeFineTunerOptions(SleepOptions):
    exact_match: float | None = None
    recall: float | None = None


class FakeFineTuner(FineTuner):
    """``fake-ft`` (see the module docstring)."""

    name: ClassVar[str] = "fake-ft"
    Options: ClassVar[type[BaseModel]] = FakeFineTunerOptions

    def fine_tune(self, generator: Generator, transitions: TransitionSet, window: TimeWindow,
                  out_dir: Path, *, previous_adapter: Path | None = None, evidence_fn: Any = None,
                  progress: bool = False) -> FineTuneResult:
        CALLS["fine_tune"] += 1
        rows = transitions.window(window)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        time.sleep(self.options.sleep)
        popularity = np.bincount(rows.c3, minlength=transitions.n_clusters).tolist()
        (out_dir / "adapter.json").write_text(json.dumps({"popularity": popularity}))
        manifest = {"window": window.model_dump(mode="json"), "rows": len(rows)}
        atomic_write_json(out_dir / "manifest.json", manifest)
        generator.load_adapter(out_dir)
        opts: FakeFineTunerOptions = self.options
        metrics = {
            "exact_match_rate": METRICS["exact_match_rate"] if opts.exact_match is None else opts.exact_match,
            "recall": METRICS["recall"] if opts.recall is None else opts.recall,
        }
        return FineTuneResult(adapter_path=out_dir, manifest=manifest, metrics=metrics,
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
        contexts = np.asarray(contexts, dtype=np.int64)
        n = self.counts.shape[0]
        rows = self.counts.reshape(n * n, n)[contexts[:, 0] * n + contexts[:, 1]]
        top = np.argsort(-rows, axis=1, kind="stable")[:, :m]
        support = np.take_along_axis(rows, top, axis=1).astype(np.float64)
        cluster = np.where(support > 0, top, -1)
        return EvidenceBatch(contexts=contexts, cluster=cluster, support=support, score=support,
                             last_seen=np.full(cluster.shape, -1),
                             provenance=np.zeros(cluster.shape, dtype=np.int8),
                             snapshot=self.id, window=self.window)


class FakeStore(KnowledgeStore):
    """``fake-store`` (see the module docstring)."""

    name: ClassVar[str] = "fake-store"
    Options: ClassVar[type[BaseModel]] = SleepOptions

    def build(self, transitions: TransitionSet, window: TimeWindow, out_dir: Path) -> KnowledgeSnapshot:
        CALLS["build"] += 1
        rows = transitions.window(window)
        n = transitions.n_clusters
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        time.sleep(self.options.sleep)
        counts = np.bincount((rows.c1 * n + rows.c2) * n + rows.c3, minlength=n * n * n).reshape(n, n, n)
        np.savez(out_dir / "counts.npz", counts=counts)
        atomic_write_json(out_dir / "manifest.json", {
            "id": f"snap-{window.start_ts}-{window.end_ts}", "window": window.model_dump(mode="json"),
            "files": checksums(out_dir),
        })
        return self.open(out_dir)

    def open(self, path: Path) -> KnowledgeSnapshot:
        return FakeSnapshot(Path(path))

    def workload(self, n_transitions: int, n_contexts: int) -> Workload:
        return Workload(transitions=n_transitions, contexts=n_contexts, index_items=50, index_dim=8,
                        index_trees=4)


class FakeCost(CostModel):
    """``fake-cost`` (see the module docstring)."""

    name: ClassVar[str] = "fake-cost"

    def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
        flops = {"fine_tune": 1000.0 * workload.train_tokens, "refresh_knowledge": 10.0,
                 "regenerate_table": 1.0 * workload.contexts, "noop": 0.0}[action]
        return CostEstimate(action=action, flops=flops, model=self.name)


@hookimpl
def register_generators(register: Any) -> None:
    register(FakeGenerator)
    register(PromptFakeGenerator)


@hookimpl
def register_fine_tuners(register: Any) -> None:
    register(FakeFineTuner)


@hookimpl
def register_knowledge_stores(register: Any) -> None:
    register(FakeStore)


@hookimpl
def register_cost_models(register: Any) -> None:
    register(FakeCost)


# -- synthetic interaction logs ------------------------------------------------------------------

def workspace_config(*, backend: str = "sqlite", sleeps: dict[str, float] | None = None) -> str:
    """A workspace config (TOML) running every role on these fakes with the ``hybrid`` policy,
    the local executor and ``backend`` serving; ``sleeps`` (role -> seconds per call) slows the
    ``generator``, ``fine_tuner`` and ``knowledge_store`` fakes down (fault benches need work
    long enough to be killed in)."""
    sleeps = sleeps or {}
    unknown = set(sleeps) - {"generator", "fine_tuner", "knowledge_store"}
    if unknown:
        raise ValueError(f"sleeps for unknown roles: {sorted(unknown)}")

    def role(name: str, plugin: str) -> str:
        options = f"options = {{ sleep = {sleeps[name]} }}\n" if name in sleeps else ""
        return f"[{name}]\nplugin = \"{plugin}\"\n{options}"

    return (
        role("generator", "fake-gen") + role("fine_tuner", "fake-ft")
        + role("knowledge_store", "fake-store")
        + "[update_policy]\nplugin = \"hybrid\"\n"
        + "[executor]\nplugin = \"local\"\noptions = { batch_size = 16 }\n"
        + f"[serving]\nbackend = \"{backend}\"\nk = 5\n"
    )


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
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


__all__ = [
    "CALLS",
    "GENRES",
    "METRICS",
    "FakeCost",
    "FakeFineTuner",
    "FakeGenerator",
    "FakeSnapshot",
    "FakeStore",
    "PromptFakeGenerator",
    "item_categories",
    "reset_calls",
    "write_log",
]
