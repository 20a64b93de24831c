"""Tiny, deterministic stand-ins for the generator, fine-tuner, store and cost model.

They follow the interface contracts exactly, so the backtest's own logic (work sharing, charging,
protocol) is tested without a language model:

* an *adapter* is a JSON file holding a cluster ordering: the successor popularity of its training
  window (so fine-tuning on recent data really helps);
* a *snapshot* holds each context's most frequent successor in its window (top-1 evidence);
* the generator ranks evidence first, then the adapter's ordering, never a context cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel

from hybridrec import hookimpl
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
    CostEstimate,
    EvidenceBatch,
    Rankings,
    TimeWindow,
    TransitionSet,
    Workload,
)

CALLS: dict[str, int] = {"fine_tune": 0, "build": 0, "rank_contexts": 0}
#: Held-out metrics every fake fine-tune reports (tests lower them to trip the guardrails).
METRICS: dict[str, float] = {"exact_match_rate": 0.95, "recall": 0.2}


class FakeGenerator(Generator):
    name: ClassVar[str] = "bt-fake-gen"

    def __init__(self, options: BaseModel | None, catalog: Any) -> None:
        super().__init__(options, catalog)
        self.order = np.arange(catalog.size, dtype=np.int64)
        self._adapter: str | None = None

    def rank(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, k: int = 5,
             *, progress: bool = False) -> Rankings:
        CALLS["rank_contexts"] += int(contexts.shape[0])
        n = contexts.shape[0]
        ids = np.full((n, k), -1, dtype=np.int64)
        for i in range(n):
            row: list[int] = []
            if evidence is not None:
                row += [int(c) for c in evidence.cluster[i] if c >= 0]
            row += [int(c) for c in self.order]
            seen: set[int] = set(int(c) for c in contexts[i])
            out = []
            for c in row:
                if c not in seen:
                    seen.add(c)
                    out.append(c)
                if len(out) == k:
                    break
            ids[i, : len(out)] = out
        scores = -np.tile(np.arange(k, dtype=np.float64), (n, 1))
        return Rankings(contexts=contexts, ids=ids, scores=scores)

    def generate(self, contexts: np.ndarray, evidence: EvidenceBatch | None = None,
                 *, progress: bool = False) -> list[str]:
        top = self.rank(contexts, evidence, 1).ids[:, 0]
        return [self.catalog.description(int(c)) for c in top]

    def load_adapter(self, path: Path | None) -> None:
        if path is None:
            self.order = np.arange(self.catalog.size, dtype=np.int64)
            self._adapter = None
        else:
            self.order = np.array(json.loads((Path(path) / "order.json").read_text()), dtype=np.int64)
            self._adapter = str(path)

    @property
    def adapter(self) -> str | None:
        return self._adapter

    def num_parameters(self) -> int:
        return 1000


@dataclass(frozen=True)
class FakePrompts:
    ids: np.ndarray
    lengths: np.ndarray


class PromptFakeGenerator(FakeGenerator):
    """The fake generator that also renders prompts (context, then the evidence clusters it
    reads), so the backtest can reuse rows across states (delta regeneration)."""

    name: ClassVar[str] = "bt-fake-prompt-gen"

    def encode(self, contexts: np.ndarray, evidence: EvidenceBatch | None,
               as_of: np.ndarray | None) -> FakePrompts:
        parts = [np.asarray(contexts, dtype=np.int64)]
        if evidence is not None:
            parts.append(np.asarray(evidence.cluster, dtype=np.int64))
        ids = np.concatenate(parts, axis=1)
        return FakePrompts(ids=ids, lengths=np.full(ids.shape[0], ids.shape[1], dtype=np.int64))


class FakeFineTuner(FineTuner):
    name: ClassVar[str] = "bt-fake-ft"

    def fine_tune(self, generator: Generator, transitions: TransitionSet, window: TimeWindow,
                  out_dir: Path, *, previous_adapter: Path | None = None, evidence_fn: Any = None,
                  progress: bool = False) -> FineTuneResult:
        CALLS["fine_tune"] += 1
        rows = transitions.window(window)
        assert rows.ts.size == 0 or rows.ts.max() < window.end_ts
        counts = np.bincount(rows.c3, minlength=transitions.n_clusters)
        order = np.argsort(-counts, kind="stable")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "order.json").write_text(json.dumps(order.tolist()))
        (out_dir / "manifest.json").write_text("{}")
        generator.load_adapter(out_dir)
        return FineTuneResult(adapter_path=out_dir, manifest={}, metrics=dict(METRICS),
                              train_tokens=len(rows) * 10, seconds=0.0)

    def workload(self, n_transitions: int, generator: Generator) -> Workload:
        return Workload(model_parameters=generator.num_parameters(), train_tokens=10 * n_transitions)


class FakeSnapshot(KnowledgeSnapshot):
    def __init__(self, top: dict[int, int], n: int, window: TimeWindow) -> None:
        self.top, self.n, self.window = top, n, window
        self.id = f"snap-{window.start_ts}-{window.end_ts}"
        self.manifest = {}

    def evidence(self, contexts: np.ndarray, m: int | None = None) -> EvidenceBatch:
        batch = EvidenceBatch.empty(contexts, 1)
        for i, (a, b) in enumerate(contexts):
            c = self.top.get(int(a) * self.n + int(b))
            if c is not None:
                batch.cluster[i, 0] = c
                batch.support[i, 0] = 1.0
        return batch


class FakeStore(KnowledgeStore):
    name: ClassVar[str] = "bt-fake-store"

    def build(self, transitions: TransitionSet, window: TimeWindow, out_dir: Path) -> KnowledgeSnapshot:
        CALLS["build"] += 1
        rows = transitions.window(window)
        n = transitions.n_clusters
        key = (rows.c1 * n + rows.c2) * n + rows.c3
        uniq, counts = np.unique(key, return_counts=True)
        top: dict[int, tuple[int, int]] = {}
        for u, c in zip(uniq.tolist(), counts.tolist(), strict=True):
            pair, succ = divmod(u, n)
            if pair not in top or c > top[pair][1]:
                top[pair] = (succ, c)
        return FakeSnapshot({p: s for p, (s, _) in top.items()}, n, window)

    def open(self, path: Path) -> KnowledgeSnapshot:
        raise NotImplementedError("the fake store keeps snapshots in memory")


class FakeCost(CostModel):
    name: ClassVar[str] = "bt-fake-cost"

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
