"""LLM arms: an :class:`~hybridrec.interfaces.UpdatePolicy` driving a generator, a fine-tuner and a
knowledge store, with the work shared between arms.

Each arm keeps its own *system state* (adapter, knowledge snapshot, served table, ledger). At the
end of every day the arm builds a :class:`~hybridrec.types.SystemState`, asks its policy to
``decide``, and executes the actions through one :class:`WorkCache` shared by all arms:

* a **fine-tune** is identified by ``(parent adapter, window, warm_start)``: arms on the same
  warm-start chain that train on the same window get the same adapter, trained once;
* a **knowledge refresh** is identified by its window: one snapshot per window;
* a **table** is a deterministic function of ``(adapter, snapshot or none, context)``, so table
  rows are cached per ``(adapter, snapshot)`` *state* and shared by every arm serving that state.

Every arm's ledger is charged what the action would have cost it alone (the cost model's price
of the full action, and the measured seconds of the one real execution), whether or not the work
came from the cache.

**Lazy tables (an exact optimisation).** A regeneration is *priced* as ranking every catalog
context (``n (n-1)``, or the observed ones if the policy asks so), but rows are only
*materialised* for contexts that are actually scored, on the day they are first scored, and then
cached for that state. Because a row depends only on ``(adapter, snapshot, context)`` and ranking
is deterministic, the served lists, and so every metric, are identical to ranking the whole
catalog up front. Regeneration seconds are extrapolated from the measured seconds per ranked
context (documented in the report).

**Delta regeneration: the engine's planner.** What a regeneration ranks, copies and keeps is
decided by the engine's one delta planner, :func:`~hybridrec.engine.tables.plan_table`, the
function a workspace's update calls, over the arm's previous table described the same way (a
:class:`~hybridrec.engine.tables.TableRows` whose rows are not materialised: keys, prompt
digests, evidence signatures, times). A row is a deterministic function of ``(adapter,
prompt)``, and the prompt holds only the context and the evidence the generator renders, so rows
are stored per adapter *keyed by the digest of the rendered prompt*
(:func:`~hybridrec.capabilities.prompt_matrix`, numbers included;
:func:`~hybridrec.engine.tables.digest_prompts`) where the generator offers
:class:`~hybridrec.capabilities.PromptEncoder`: a copied row (the same prompt) is the row a full
regeneration ranks. With ``RegenerateTable.tolerance`` above 0 (the material-change rule) a row
whose evidence moved within the tolerance is *kept* as it was, ranked from older evidence, and
with ``max_row_age_days`` no row older than the bound is kept: each row of a
:class:`TableVersion` records the state it was ranked in, so a kept row is materialised from that
state, as a workspace copies it. A generator without the capability gets no copies (every
regeneration is charged in full unless rows are kept).

**Restricted regenerations.** ``RegenerateTable(contexts="observed")`` ranks (and is charged for)
only the contexts seen in its window. The table serves the other contexts by its ``fallback``:
``"serving"``, the serving fallback; ``"previous"``, the row the arm served before (kept, with the
state it was ranked in; the serving fallback where none was held), exactly as the workspace copies the
served table's rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.protocol import Arm, Day, Served
from hybridrec.capabilities import PromptEncoder, prompt_matrix
from hybridrec.config import (
    DistributedConfig,
    GuardrailConfig,
    InitialFineTuneConfig,
    PluginRef,
    SignalsConfig,
)
from hybridrec.engine import pricing, work
from hybridrec.engine.actions import (
    OVER_BUDGET,
    ActionOutcome,
    check_window,
    decide_checked,
    execute,
    guardrail_reasons,
    outcome_label,
    run_decision,
)
from hybridrec.engine.state import (
    ServedPeriod,
    drift_stats,
    fallback_history,
    fallback_width,
    freshness_signals,
    needed_signals,
    recall_signals,
    served_hits,
    system_state,
)
from hybridrec.engine.tables import (
    KEPT_CLOSE,
    KEPT_FALLBACK,
    RANKED_STALE,
    WHY_KEYS,
    EvidenceSignature,
    KeepRule,
    PromptRows,
    TablePlan,
    TableRows,
    digest_prompts,
    regeneration_plan,
    signature_of,
)
from hybridrec.engine.work import Trainer
from hybridrec.errors import PluginError
from hybridrec.generation import observed_contexts
from hybridrec.interfaces import (
    CostModel,
    FineTuner,
    Generator,
    KnowledgeSnapshot,
    KnowledgeStore,
    UpdatePolicy,
    snapshot_evidence,
)
from hybridrec.serving.base import LEVEL_PAIR, SuccessorFallback, fill_rows
from hybridrec.types import (
    SIGNALS,
    UTC,
    Action,
    ActionKind,
    Budget,
    ClusterCatalog,
    CostEstimate,
    CostRecord,
    DriftStats,
    EvidenceBatch,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
    TransitionSet,
    list_problem,
    ts_to_datetime,
)
from hybridrec.versions import Candidate
from hybridrec.versions import Served as ServedVersions

INITIAL = "initial"
#: contexts rendered at once when digesting every prompt of a state
PROMPT_CHUNK = 65_536


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]


@dataclass
class AdapterEntry:
    """A trained adapter in the cache, with what it cost to train (once)."""

    key: str
    path: Path | None
    window: TimeWindow | None
    metrics: dict[str, float]
    estimate: CostEstimate
    seconds: float
    held_reasons: list[str]

    @property
    def passed(self) -> bool:
        return not self.held_reasons


@dataclass
class SnapshotEntry:
    """A knowledge snapshot in the cache."""

    key: str
    snapshot: KnowledgeSnapshot
    window: TimeWindow
    estimate: CostEstimate
    seconds: float


#: Rows of one adapter keyed by prompt (:class:`hybridrec.engine.tables.PromptRows`).
AdapterRows = PromptRows


@dataclass
class StateRows:
    """Which stored row of its adapter serves each context in one ``(adapter, snapshot)`` state."""

    index: np.ndarray  # (n*n,) int32: row in the adapter's AdapterRows, -1 if not resolved yet


@dataclass
class LLMStack:
    """The plugins and settings every LLM arm shares."""

    generator: Generator
    fine_tuner: FineTuner
    store: KnowledgeStore
    cost_model: CostModel
    guardrails: GuardrailConfig
    workdir: Path
    #: the catalog and the references the generator and fine-tuner were built from (a launched
    #: fine-tune rebuilds them in its processes)
    catalog: ClusterCatalog
    refs: dict[str, PluginRef]
    table_k: int = 10
    evidence_m: int | None = None
    budget: Budget = field(default_factory=Budget)
    signals: SignalsConfig = field(default_factory=SignalsConfig)
    training_evidence: str = "fine_tuner"
    training_knowledge_days: int = 14
    regenerate: str = "delta"
    #: what a regeneration may keep when its action does not say (``[serving]`` of a pipeline)
    keep: KeepRule = field(default_factory=KeepRule)
    #: the fine-tunes' engine (a study runs them in this process, as a workspace does by default)
    engine: DistributedConfig = field(default_factory=DistributedConfig)

    def training(self, fine_tuner: FineTuner | None = None, ref: PluginRef | None = None) -> Trainer:
        """What a fine-tune runs with (the engine's :class:`~hybridrec.engine.work.Trainer`):
        this stack's generator and fine-tuner, or ``fine_tuner`` (configured by ``ref``; by
        default its own name and options)."""
        trainer = Trainer(self.generator, self.fine_tuner, self.refs["generator"],
                          self.refs["fine_tuner"], self.catalog, self.engine)
        if fine_tuner is not None:
            ref = ref or PluginRef(plugin=fine_tuner.name, options=fine_tuner.options.model_dump(mode="json"))
            trainer = trainer.with_fine_tuner(ref, fine_tuner)
        return trainer


class WorkCache:
    """Work shared between arms: adapters, snapshots and table rows (see the module docstring)."""

    def __init__(self, stack: LLMStack, transitions: TransitionSet) -> None:
        self.stack = stack
        self.transitions = transitions
        self.n = transitions.n_clusters
        self.adapters: dict[str, AdapterEntry] = {}
        self.snapshots: dict[str, SnapshotEntry] = {}
        self.rows: dict[tuple[str, str | None], StateRows] = {}
        self.adapter_rows: dict[str, AdapterRows] = {}
        self._all_prompts: dict[str | None, np.ndarray | None] = {}
        self._signatures: dict[str | None, tuple[np.ndarray, EvidenceSignature]] = {}
        self._contexts_all: np.ndarray | None = None
        #: the ``(adapter, snapshot)`` states rows are ranked in (:meth:`state_id`)
        self.states: list[tuple[str, str | None]] = []
        self._state_ids: dict[tuple[str, str | None], int] = {}
        self.reused_rows = 0
        self.loaded_adapter: str | None = None
        self.rank_seconds = 0.0
        self.ranked_contexts = 0
        self.executed: dict[str, int] = {"fine_tune": 0, "refresh_knowledge": 0, "rank_batches": 0}
        self._drift: dict[tuple[Any, ...], DriftStats] = {}
        self._freshness: dict[tuple[Any, ...], dict[str, float | None]] = {}
        self._backoff: tuple[tuple[int, datetime | None], SuccessorFallback] | None = None

    def backoff(self, history: TransitionSet, now: datetime) -> SuccessorFallback:
        """The serving fallback (successors of the last cluster, popularity) at ``now`` from the
        data ``signals.fallback_days`` selects (:func:`~hybridrec.engine.state.fallback_history`);
        shared by every arm regenerating on the same data."""
        key = (len(history), now if self.stack.signals.fallback_days is not None else None)
        if self._backoff is None or self._backoff[0] != key:
            data = fallback_history(history, now, self.stack.signals.fallback_days)
            self._backoff = (key, SuccessorFallback.from_transitions(data, fallback_width(self.stack.table_k)))
        return self._backoff[1]

    # -- adapters ---------------------------------------------------------------------------

    def fine_tune_estimate(self, n_transitions: int, cost_model: CostModel | None = None) -> CostEstimate:
        """The price of a fine-tune on ``n_transitions`` (by ``cost_model``, default the stack's)."""
        return pricing.estimate(cost_model or self.stack.cost_model, "fine_tune",
                                generator=self.stack.generator, fine_tuner=self.stack.fine_tuner,
                                n_window=n_transitions)

    def fine_tune_key(self, parent: str | None, window: TimeWindow, *, warm_start: bool) -> str:
        """The cache key of a fine-tune from ``parent`` (if warm-starting) on ``window``."""
        return _key("ft", parent if warm_start else None, window.start_ts, window.end_ts)

    def fine_tune(
        self,
        history: TransitionSet,
        parent: str | None,
        window: TimeWindow,
        *,
        warm_start: bool,
        key: str | None = None,
        fine_tuner: FineTuner | None = None,
        fine_tuner_ref: PluginRef | None = None,
        progress: bool = False,
    ) -> AdapterEntry:
        """The adapter trained from ``parent`` (or the base model) on ``window`` of ``history``
        (by the engine's :func:`~hybridrec.engine.work.fine_tune`, as a workspace trains; with
        ``fine_tuner``, configured by ``fine_tuner_ref``, instead of the stack's).

        Cached by ``(starting adapter, window)``; ``key`` names the entry explicitly (the shared
        initial adapter).
        """
        key = key or self.fine_tune_key(parent, window, warm_start=warm_start)
        start = parent if warm_start else None
        if key in self.adapters:
            return self.adapters[key]
        data = history.window(window)
        estimate = pricing.estimate(self.stack.cost_model, "fine_tune", generator=self.stack.generator,
                                    fine_tuner=fine_tuner or self.stack.fine_tuner, n_window=len(data))
        out_dir = self.stack.workdir / "adapters" / key
        evidence_fn = (
            self._training_evidence(history, window) if self.stack.training_evidence == "store" else None
        )
        previous = self.adapters[start].path if start is not None else None
        result, seconds = work.fine_tune(self.stack.training(fine_tuner, fine_tuner_ref), history,
                                         window, out_dir, previous_adapter=previous,
                                         evidence_fn=evidence_fn, progress=progress)
        self.loaded_adapter = key
        self.executed["fine_tune"] += 1
        entry = AdapterEntry(
            key=key, path=result.adapter_path, window=window, metrics=dict(result.metrics),
            estimate=estimate, seconds=seconds,
            held_reasons=guardrail_reasons(dict(result.metrics), self.stack.guardrails,
                                           self.stack.generator.guardrail_metrics()),
        )
        self.adapters[key] = entry
        return entry

    def _training_evidence(
        self, history: TransitionSet, window: TimeWindow
    ) -> Callable[[np.ndarray, np.ndarray], EvidenceBatch]:
        # Evidence for training prompts comes from a snapshot of the days just before the training
        # window, so every example's evidence is strictly older than the example itself.
        days = self.stack.training_knowledge_days
        ev_window = TimeWindow(start=window.start - timedelta(days=days), end=window.start)
        entry = self.snapshot(history, ev_window)

        def evidence_fn(contexts: np.ndarray, as_of_ts: np.ndarray) -> EvidenceBatch:
            batch = snapshot_evidence(entry.snapshot, contexts, self.stack.evidence_m,
                                      store=self.stack.store.name)
            too_old = np.asarray(as_of_ts) < entry.window.end_ts
            if too_old.any():  # never let an example see evidence from its own future
                hide = too_old[:, None]
                batch = dataclasses.replace(
                    batch,
                    cluster=np.where(hide, -1, batch.cluster),
                    support=np.where(hide, 0.0, batch.support),
                    score=np.where(hide, 0.0, batch.score),
                )
            return batch

        return evidence_fn

    # -- knowledge --------------------------------------------------------------------------

    def refresh_estimate(self, n_transitions: int, cost_model: CostModel | None = None) -> CostEstimate:
        """The price of a knowledge refresh (by ``cost_model``, default the stack's)."""
        return pricing.estimate(cost_model or self.stack.cost_model, "refresh_knowledge",
                                generator=self.stack.generator, store=self.stack.store,
                                n_window=n_transitions, n_contexts=self.n * (self.n - 1))

    def snapshot_key(self, window: TimeWindow) -> str:
        return _key("kn", window.start_ts, window.end_ts)

    def snapshot(self, history: TransitionSet, window: TimeWindow) -> SnapshotEntry:
        key = self.snapshot_key(window)
        if key in self.snapshots:
            return self.snapshots[key]
        n_rows = len(history.window(window))
        estimate = self.refresh_estimate(n_rows)
        snap, seconds = work.refresh(self.stack.store, history, window, self.stack.workdir / "knowledge" / key)
        self.executed["refresh_knowledge"] += 1
        entry = SnapshotEntry(key=key, snapshot=snap, window=window, estimate=estimate, seconds=seconds)
        self.snapshots[key] = entry
        return entry

    # -- tables -----------------------------------------------------------------------------

    def regenerate_estimate(self, n_contexts: int, *, with_evidence: bool,
                            cost_model: CostModel | None = None) -> CostEstimate:
        """The price of ranking ``n_contexts`` (by ``cost_model``, default the stack's)."""
        return pricing.estimate(cost_model or self.stack.cost_model, "regenerate_table",
                                generator=self.stack.generator, n_contexts=n_contexts,
                                with_evidence=with_evidence)

    def seconds_per_context(self) -> float:
        """Measured seconds per ranked context so far (0 before any ranking)."""
        return self.rank_seconds / self.ranked_contexts if self.ranked_contexts else 0.0

    def prompts(self, snapshot: str | None, contexts: np.ndarray) -> np.ndarray | None:
        """The rendered prompt of each context in this state, one row per context (token ids
        then the prompt length), or None when the generator does not offer
        :class:`~hybridrec.capabilities.PromptEncoder`."""
        generator = self.stack.generator
        if not isinstance(generator, PromptEncoder):
            return None
        evidence = None
        if snapshot is not None:
            evidence = snapshot_evidence(self.snapshots[snapshot].snapshot, contexts, self.stack.evidence_m,
                                         store=self.stack.store.name)
        return prompt_matrix(generator, contexts, evidence)

    def all_prompts(self, snapshot: str | None) -> np.ndarray | None:
        """The digest of :meth:`prompts` (:func:`~hybridrec.engine.tables.digest_prompts`, the
        workspace's) for every catalog context key ``c1 * n + c2`` (``(n*n, 16)`` uint8; rows
        with ``c1 == c2`` are never used), cached per snapshot while a table may use it, or None
        without :class:`~hybridrec.capabilities.PromptEncoder`.

        The pricing of a delta regeneration compares these (which contexts' prompts changed),
        and served rows are keyed by the same digests (:meth:`rows_for`), as a workspace's delta
        copies a row whose digest is unchanged: two different prompts collide with probability
        about 2**-128. Digests keep the cache at 16 bytes per context whatever the prompt length,
        and prompts are rendered in chunks."""
        if snapshot not in self._all_prompts:
            keys = np.arange(self.n * self.n)
            digests: list[np.ndarray] = []
            for lo in range(0, keys.size, PROMPT_CHUNK):
                part = keys[lo : lo + PROMPT_CHUNK]
                ctx = np.stack([part // self.n, part % self.n], axis=1)
                loop = ctx[:, 0] == ctx[:, 1]
                ctx[loop, 1] = (ctx[loop, 0] + 1) % self.n
                prompts = self.prompts(snapshot, ctx)
                if prompts is None:
                    self._all_prompts[snapshot] = None
                    return None
                digests.append(digest_prompts(prompts))
            self._all_prompts[snapshot] = np.concatenate(digests)
        return self._all_prompts[snapshot]

    def contexts_all(self) -> np.ndarray:
        """Every catalog context (``c1 != c2``) in key order ``c1 * n + c2``."""
        if self._contexts_all is None:
            keys = np.arange(self.n * self.n)
            ctx = np.stack([keys // self.n, keys % self.n], axis=1)
            self._contexts_all = ctx[ctx[:, 0] != ctx[:, 1]]
        return self._contexts_all

    def digests(self, snapshot: str | None, contexts: np.ndarray) -> np.ndarray | None:
        """The prompt digest of each of ``contexts`` in ``snapshot`` (:meth:`all_prompts`)."""
        every = self.all_prompts(snapshot)
        return None if every is None else every[contexts[:, 0] * self.n + contexts[:, 1]]

    def signature(self, snapshot: str | None, contexts: np.ndarray) -> EvidenceSignature:
        """The :class:`~hybridrec.engine.tables.EvidenceSignature` of each of ``contexts`` in
        ``snapshot``, as a workspace computes it (cached per snapshot for every context)."""
        if snapshot not in self._signatures:
            every = self.contexts_all()
            snap = self.snapshots[snapshot].snapshot if snapshot is not None else None
            sig = signature_of(every, snap, evidence_m=self.stack.evidence_m,
                               store=self.stack.store.name)
            index = np.full(self.n * self.n, -1, dtype=np.int64)
            index[every[:, 0] * self.n + every[:, 1]] = np.arange(every.shape[0])
            self._signatures[snapshot] = (index, sig)
        index, sig = self._signatures[snapshot]
        return sig.take(index[contexts[:, 0] * self.n + contexts[:, 1]])

    def state_id(self, adapter: str, snapshot: str | None) -> int:
        """A small integer naming the state ``(adapter, snapshot)`` (:attr:`states`)."""
        state = (adapter, snapshot)
        if state not in self._state_ids:
            self._state_ids[state] = len(self.states)
            self.states.append(state)
        return self._state_ids[state]

    def plan(
        self, adapter: str, snapshot: str | None, contexts: np.ndarray, previous: TableRows | None,
        *, action: RegenerateTable | None = None, restricted: bool = False,
        default: KeepRule = KeepRule(), now: float = 0.0,
    ) -> TablePlan:
        """The engine's regeneration plan (:func:`~hybridrec.engine.tables.regeneration_plan`, a
        workspace's) of a table of ``(adapter, snapshot)`` over ``contexts`` after ``previous``,
        with prompts and evidence rendered from this cache."""
        return regeneration_plan(
            action or RegenerateTable(), contexts, self.n, adapter, previous, k=self.stack.table_k,
            delta=self.stack.regenerate == "delta", default=default, now=now,
            restricted=restricted,
            render=lambda ctx, sig: (self.digests(snapshot, ctx),
                                     self.signature(snapshot, ctx) if sig else None),
        )

    def rows_for(
        self, adapter: str, snapshot: str | None, contexts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Table rows ``(ids, scores)`` (``(m, table_k)``) for ``contexts`` in this state."""
        state = (adapter, snapshot)
        rows = self.rows.get(state)
        if rows is None:
            rows = StateRows(index=np.full(self.n * self.n, -1, dtype=np.int32))
            self.rows[state] = rows
        store = self.adapter_rows.setdefault(adapter, AdapterRows(width=self.stack.table_k))
        keys = contexts[:, 0] * self.n + contexts[:, 1]
        missing = np.unique(keys[rows.index[keys] < 0])
        if missing.size:
            todo = np.stack([missing // self.n, missing % self.n], axis=1)
            prompts = self.prompts(snapshot, todo)
            if prompts is None:
                # No way to tell prompts apart: rank every new context of this state afresh.
                ids, scores = self._rank(adapter, snapshot, todo)
                rows.index[missing] = store.append(ids, scores)
            else:
                prompt_keys = [bytes(d) for d in digest_prompts(prompts)]
                found = np.array([store.by_prompt.get(p, -1) for p in prompt_keys], dtype=np.int32)
                new = found < 0
                if new.any():
                    # Identical prompts among the new contexts are ranked once.
                    first: dict[bytes, int] = {}
                    for i in np.flatnonzero(new):
                        first.setdefault(prompt_keys[i], int(i))
                    rank_at = np.fromiter(first.values(), dtype=np.int64, count=len(first))
                    ids, scores = self._rank(adapter, snapshot, todo[rank_at])
                    for p, row in zip(first, store.append(ids, scores), strict=True):
                        store.by_prompt[p] = int(row)
                    found[new] = [store.by_prompt[prompt_keys[i]] for i in np.flatnonzero(new)]
                self.reused_rows += int((~new).sum())
                rows.index[missing] = found
        ids_all, scores_all = store.arrays()
        at = rows.index[keys]
        return ids_all[at], scores_all[at]

    def _rank(self, adapter: str, snapshot: str | None, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gen = self.stack.generator
        if self.loaded_adapter != adapter:
            gen.load_adapter(self.adapters[adapter].path)
            self.loaded_adapter = adapter
        evidence = None
        if snapshot is not None:
            evidence = snapshot_evidence(self.snapshots[snapshot].snapshot, contexts, self.stack.evidence_m,
                                         store=self.stack.store.name)
        t0 = time.perf_counter()
        rankings = gen.rank(contexts, evidence, self.stack.table_k)
        self.rank_seconds += time.perf_counter() - t0
        self.ranked_contexts += int(contexts.shape[0])
        self.executed["rank_batches"] += 1
        problem = list_problem(contexts, rankings.ids, self.n)
        if problem is not None:
            raise PluginError(f"generator {gen.name!r} served an invalid list: {problem}")
        return rankings.ids.astype(np.int64), rankings.scores.astype(np.float64)

    def retain(self, live: set[tuple[str, str | None]]) -> None:
        """Forget cached rows of states no arm can serve any more (bounded memory)."""
        for state in list(self.rows):
            if state not in live:
                del self.rows[state]
        adapters = {a for a, _ in live}
        for adapter in list(self.adapter_rows):
            if adapter not in adapters:
                del self.adapter_rows[adapter]
        snapshots = {s for _, s in live}
        for snapshot in list(self._all_prompts):
            if snapshot not in snapshots:
                del self._all_prompts[snapshot]
        for snapshot in list(self._signatures):
            if snapshot not in snapshots:
                del self._signatures[snapshot]

    # -- drift ------------------------------------------------------------------------------

    def freshness(self, history: TransitionSet, knowledge_until: datetime | None,
                  now: datetime) -> dict[str, float | None]:
        """The freshness signals (:func:`~hybridrec.engine.state.freshness_signals`) of
        knowledge covering the data before ``knowledge_until``, at ``now``; shared by arms."""
        key = (knowledge_until, now)
        cached = self._freshness.get(key)
        if cached is None:
            cached = freshness_signals(history, knowledge_until=knowledge_until, data_until=now)
            self._freshness[key] = cached
        return cached

    def drift(self, history: TransitionSet, trained: TimeWindow | None, now: datetime) -> DriftStats:
        """Top-5 Jaccard between the adapter's training window and the last ``drift_days``."""
        if trained is None:
            return DriftStats()
        signals = self.stack.signals
        recent = TimeWindow(start=now - timedelta(days=signals.drift_days), end=now)
        key = (trained.start_ts, trained.end_ts, recent.start_ts, recent.end_ts)
        cached = self._drift.get(key)
        if cached is None:
            cached = drift_stats(history, trained, now, now, recent_days=signals.drift_days,
                                 min_count=signals.drift_min_count)
            self._drift[key] = cached
        return cached


@dataclass
class TableVersion:
    """What an arm serves: the rows of ``rows`` (the engine's
    :class:`~hybridrec.engine.tables.TableRows` of the contexts it holds, not materialised),
    row ``i`` ranked in the state ``states[i]`` (an index of :attr:`WorkCache.states`: the
    table's own ``(adapter, snapshot)`` for a ranked or copied row, an earlier state for a row it
    kept); a context it does not hold is left to the serving fallback, and rows are filled up by
    the serving fallback computed at build time."""

    adapter: str
    snapshot: str | None
    built_at: datetime
    backoff: SuccessorFallback
    rows: TableRows
    states: np.ndarray

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(found, at)``: whether the table holds each context key, and its row."""
        held = self.rows.keys
        if held.shape[0] == 0:
            return np.zeros(keys.shape[0], dtype=bool), np.zeros(keys.shape[0], dtype=np.int64)
        at = np.minimum(np.searchsorted(held, keys), held.shape[0] - 1)
        return held[at] == keys, at


class ArmVersions:
    """One arm's in-memory :class:`~hybridrec.versions.VersionStore`: versions are cache keys of
    the shared :class:`WorkCache`; what is served is the arm's adapter, knowledge and table."""

    def __init__(self, arm: PolicyArm) -> None:
        self.arm = arm
        self.now: datetime | None = None
        self.pending_table: TableVersion | None = None

    def served(self, kind: str) -> str | None:
        arm = self.arm
        if kind == "adapter":
            return arm.adapter
        if kind == "knowledge":
            return arm.knowledge
        if kind == "table" and arm.table is not None:
            return _key(arm.table.adapter, arm.table.snapshot, arm.table.built_at)
        return None

    def manifest(self, kind: str, version: str | None) -> dict[str, Any] | None:
        if version is None:
            return None
        cache = self.arm.cache
        if kind == "adapter" and version in cache.adapters:
            entry = cache.adapters[version]
            window = entry.window.model_dump(mode="json") if entry.window else None
            return {"window": window, "metrics": dict(entry.metrics), "key": version}
        if kind == "knowledge" and version in cache.snapshots:
            snap = cache.snapshots[version]
            return {"window": snap.window.model_dump(mode="json"), "snapshot": snap.snapshot.id,
                    "key": version}
        return {"key": version}

    def commit(self, kind: str, candidate: Candidate) -> str:
        return str(candidate.handle)

    def promote(self, kind: str, version: str) -> None:
        arm = self.arm
        if kind == "adapter":
            arm.adapter = version
            arm.adapter_trained_at = self.now
        elif kind == "knowledge":
            arm.knowledge = version
            arm.knowledge_built_at = self.now
        elif kind == "table":
            arm.table = self.pending_table

    def hold(self, kind: str, version: str) -> None:
        if kind == "adapter":
            self.arm.held.append(version)
            self.arm.cost.held_adapters += 1

    def record(self, record: CostRecord) -> None:
        cost = self.arm.cost
        self.arm.ledger.append(record)
        cost.flops += record.flops
        cost.seconds += record.seconds
        cost.money += record.money
        cost.by_action[record.action] = cost.by_action.get(record.action, 0.0) + record.flops
        cost.seconds_by_action[record.action] = cost.seconds_by_action.get(record.action, 0.0) + record.seconds

    def ledger(self, since: datetime | None = None) -> list[CostRecord]:
        return [r for r in self.arm.ledger if since is None or r.at >= since]

    def describe(self) -> ServedVersions:
        arm, cache = self.arm, self.arm.cache
        adapter = cache.adapters[arm.adapter]
        knowledge = cache.snapshots[arm.knowledge] if arm.knowledge is not None else None
        return ServedVersions(
            adapter=adapter.key,
            adapter_window=adapter.window,
            adapter_trained_at=arm.adapter_trained_at,
            knowledge=arm.knowledge,
            knowledge_window=knowledge.window if knowledge is not None else None,
            knowledge_built_at=arm.knowledge_built_at,
            table=self.served("table"),
            table_built_at=None if arm.table is None else arm.table.built_at,
            table_uses_knowledge=arm.table is not None and arm.table.snapshot is not None,
            held=tuple(arm.held),
        )


class PolicyArm(Arm):
    """An LLM arm: a policy deciding actions on a shared :class:`WorkCache`.

    ``signals`` are the state signals measured for the policy (keys of
    :data:`~hybridrec.types.SIGNALS`; default: what ``policy.needs``, see
    :func:`~hybridrec.engine.state.needed_signals`); the others stay ``None`` in its state.
    ``cost_model`` prices and records this arm's actions (default: the stack's); the work is
    still shared through ``cache``. ``config`` is what the report shows as the arm's
    configuration (its plugins and options)."""

    llm = True

    def __init__(
        self,
        name: str,
        policy: UpdatePolicy,
        cache: WorkCache,
        *,
        measure_rag_agreement: bool = True,
        signals: Iterable[str] | None = None,
        cost_model: CostModel | None = None,
        config: dict[str, Any] | None = None,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(name)
        #: the arm's budget (default: the stack's, the study-wide one)
        self.budget = budget or cache.stack.budget
        self.policy = policy
        self.signals = (needed_signals(policy, f"arm {name!r}") if signals is None
                        else frozenset(signals) & frozenset(SIGNALS))
        self.cost_model = cost_model or cache.stack.cost_model
        self.config = config
        #: the actions decided at the last :meth:`begin` / :meth:`end_of_day`, with reasons
        self.decisions: list[dict[str, Any]] = []
        self.cache = cache
        self.measure_rag_agreement = measure_rag_agreement
        self.adapter = INITIAL
        self.adapter_trained_at: datetime | None = None
        self.knowledge: str | None = None
        self.knowledge_built_at: datetime | None = None
        self.table: TableVersion | None = None
        self.held: list[str] = []
        self.ledger: list[CostRecord] = []
        self.data_start: datetime | None = None
        self._em_weighted = 0.0
        self._em_n = 0
        self._rag_same = 0
        self._rag_n = 0
        self._no_rag_top1_same_list = 0
        #: what the arm's regenerations would have cost as full regenerations (for the report).
        self.full_regeneration_flops = 0.0
        self.full_regenerated_contexts = 0
        #: the arm as a version store (the engine executes its actions against it)
        self.versions = ArmVersions(self)
        #: per served day, what its lists scored, for the recall signals of the policy's state
        self.served_days: list[ServedPeriod] = []
        self._served_ids: np.ndarray | None = None
        #: the arm's clock: the start, then each day's end (what the served rows' ages count from)
        self.clock: datetime = datetime.min.replace(tzinfo=UTC)
        #: contexts the arm's regenerations ranked or copied, by reason (TablePlan.counts)
        self.regenerated_why: dict[str, int] = {}
        self._row_ages: list[np.ndarray] = []
        self._rows_current = 0
        self._rows_scored = 0

    # -- state ------------------------------------------------------------------------------

    def state(self, history: TransitionSet, now: datetime) -> SystemState:
        """The policy's view of this arm at ``now`` (data until ``now``, exclusive)."""
        adapter = self.cache.adapters[self.adapter]
        budget = self.budget
        stack = self.cache.stack
        estimates = pricing.state_estimates(
            self.cost_model, generator=stack.generator, fine_tuner=stack.fine_tuner,
            store=stack.store,
            n_recent=len(history.window(TimeWindow.ending_at(now, pricing.PRICE_DAYS))),
            n_contexts=self.cache.n * (self.cache.n - 1), with_evidence=self.knowledge is not None,
        )
        drift = DriftStats(measured_at=now) if self.signals else DriftStats()
        if "drift" in self.signals:
            drift = self.cache.drift(history, adapter.window, now)
        if "recall" in self.signals:
            drift = drift.model_copy(update=self.recall_signals(now, self.cache.stack.signals.recall_days))
        served = self.versions.describe()
        if "freshness" in self.signals:
            drift = drift.model_copy(update=self.cache.freshness(
                history, served.knowledge_window.end if served.knowledge_window else None, now))
        return system_state(
            served,
            now=now,
            data_start=self.data_start,
            data_until=now,
            drift=drift,
            budget=budget,
            ledger=self.versions.ledger(now - timedelta(days=budget.period_days)),
            estimates=estimates,
        )

    def recall_signals(self, now: datetime, days: float) -> dict[str, float | None]:
        """The recall signals (:func:`~hybridrec.engine.state.recall_signals`) of the days this
        arm served, each over ``days`` days."""
        return recall_signals(self.served_days, now, days=days,
                              table_built_at=None if self.table is None else self.table.built_at,
                              adapter_trained_at=self.adapter_trained_at)

    # -- actions ----------------------------------------------------------------------------

    def execute(self, action: Action, history: TransitionSet, now: datetime) -> ActionOutcome:
        """Run one action for this arm through the engine (the work through the cache)."""
        self.versions.now = now
        if isinstance(action, FineTune):
            self._check_window(action.window, now)
            parent = self.adapter
            key = self.cache.fine_tune_key(parent, action.window, warm_start=action.warm_start)
            cached = self.cache.adapters.get(key)
            estimate = cached.estimate if cached is not None and self._shared_prices() else \
                self.cache.fine_tune_estimate(len(history.window(action.window)), self.cost_model)

            def train() -> Candidate:
                entry = self.cache.fine_tune(history, parent, action.window, warm_start=action.warm_start)
                return Candidate(handle=entry.key, seconds=entry.seconds, metrics=dict(entry.metrics),
                                 manifest={"window": action.window.model_dump(mode="json"),
                                           "trained_at": now.isoformat(), "reason": action.reason})

            outcome = self._settle("fine_tune", estimate, train, now, action.reason)
            if outcome.status != "skipped":
                self.cost.fine_tunes += 1
            return outcome
        if isinstance(action, RefreshKnowledge):
            self._check_window(action.window, now)
            key = self.cache.snapshot_key(action.window)
            cached_snap = self.cache.snapshots.get(key)
            estimate = cached_snap.estimate if cached_snap is not None and self._shared_prices() else \
                self.cache.refresh_estimate(len(history.window(action.window)), self.cost_model)

            def build() -> Candidate:
                snap = self.cache.snapshot(history, action.window)
                return Candidate(handle=snap.key, seconds=snap.seconds,
                                 manifest={"window": action.window.model_dump(mode="json"),
                                           "built_at": now.isoformat(), "reason": action.reason})

            outcome = self._settle("refresh_knowledge", estimate, build, now, action.reason)
            if outcome.status != "skipped":
                self.cost.knowledge_refreshes += 1
            return outcome
        if isinstance(action, RegenerateTable):
            return self._regenerate(action, history, now)
        return ActionOutcome(kind="noop", status="ok", reason=action.reason)

    def _settle(self, kind: ActionKind, estimate: CostEstimate, run: Callable[[], Candidate],
                now: datetime, reason: str) -> ActionOutcome:
        """The engine's :func:`~hybridrec.engine.actions.execute` with this arm's cost model,
        guardrails and budget."""
        stack = self.cache.stack
        return execute(self.versions, self.cost_model, kind, estimate=estimate, run=run, now=now,
                       reason=reason, guardrails=stack.guardrails, budget=self.budget,
                       checks=stack.generator.guardrail_metrics())

    def _shared_prices(self) -> bool:
        """Whether this arm prices with its stack's cost model (so cached estimates apply)."""
        return self.cost_model is self.cache.stack.cost_model

    def _check_window(self, window: TimeWindow, now: datetime) -> None:
        check_window(window, now, "an action", who=f"policy {self.policy.name!r} of arm {self.name!r}")

    def _regenerate(self, action: RegenerateTable, history: TransitionSet, now: datetime) -> ActionOutcome:
        cache = self.cache
        snapshot = self.knowledge if action.use_knowledge else None
        observed = action.contexts == "observed"
        if observed:
            window = action.observed_window
            if window is not None:
                self._check_window(window, now)
            contexts = observed_contexts(history, window)
        else:
            contexts = cache.contexts_all()
        n_wanted = int(contexts.shape[0])
        previous = None if self.table is None else self.table.rows
        # The engine's regeneration plan, a workspace's: what is ranked, copied, kept, charged.
        plan = cache.plan(self.adapter, snapshot, contexts, previous, action=action,
                          restricted=observed, default=cache.stack.keep, now=now.timestamp())
        n_contexts = plan.changed
        # What it would rank copying and keeping nothing: the wanted contexts, and the rows a
        # restricted regeneration ranks because they are past the staleness bound.
        kept = plan.kept if plan.kept is not None else np.zeros(plan.why.shape[0], dtype=bool)
        n_full = n_wanted + int(((plan.why == RANKED_STALE) & kept).sum())
        full = cache.regenerate_estimate(n_full, with_evidence=snapshot is not None,
                                         cost_model=self.cost_model)
        self.full_regeneration_flops += full.flops
        self.full_regenerated_contexts += n_full
        estimate = cache.regenerate_estimate(n_contexts, with_evidence=snapshot is not None,
                                             cost_model=self.cost_model)
        rate = cache.seconds_per_context()
        seconds = rate * n_contexts if rate > 0 else estimate.seconds
        self.versions.pending_table = self._table_of(plan, snapshot, now, history)

        def regenerate() -> Candidate:
            # Rows are materialised lazily when scored (see the module docstring).
            key = _key(self.adapter, snapshot, now)
            return Candidate(handle=key, seconds=seconds, versions_out={"table": key},
                             manifest={"built_at": now.isoformat(), "knowledge": snapshot,
                                       "adapter": self.adapter, "reason": action.reason})

        outcome = self._settle("regenerate_table", estimate, regenerate, now, action.reason)
        if outcome.status == "skipped":
            self.versions.pending_table = None
            self.full_regeneration_flops -= full.flops
            self.full_regenerated_contexts -= n_full
            return outcome
        self.cost.regenerated_contexts += n_contexts
        self.cost.table_regenerations += 1
        for why, count in plan.counts().items():
            self.regenerated_why[why] = self.regenerated_why.get(why, 0) + count
        return outcome

    def _table_of(self, plan: TablePlan, snapshot: str | None, now: datetime,
                  history: TransitionSet) -> TableVersion:
        """The table a regeneration planned by ``plan`` serves: its rows' metadata and, for each
        row, the state it is ranked in (a kept row's is the previous table's)."""
        cache = self.cache
        rows = plan.next_rows(self.adapter, width=cache.stack.table_k)
        states = np.full(rows.keys.shape[0], cache.state_id(self.adapter, snapshot), dtype=np.int32)
        kept = np.flatnonzero((plan.why == KEPT_CLOSE) | (plan.why == KEPT_FALLBACK))
        if kept.size:
            assert self.table is not None  # a kept row is a row of the served table
            states[kept] = self.table.states[plan.source[kept]]
        return TableVersion(adapter=self.adapter, snapshot=snapshot, built_at=now,
                            backoff=cache.backoff(history, now), rows=rows, states=states)

    def table_rows(self, table: TableVersion, contexts: np.ndarray,
                   held: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``(ids, scores)`` ``table`` serves for ``contexts``: each held context's row from
        the state it was ranked in, ``-1`` where the table holds none (``held``: the table's
        :meth:`TableVersion.lookup` of the contexts, when already made)."""
        cache = self.cache
        found, at = held or table.lookup(contexts[:, 0] * cache.n + contexts[:, 1])
        width = cache.stack.table_k
        ids = np.full((contexts.shape[0], width), -1, dtype=np.int64)
        scores = np.full((contexts.shape[0], width), -np.inf, dtype=np.float64)
        state = np.where(found, table.states[at], -1)
        for sid in np.unique(state[state >= 0]).tolist():
            sel = np.flatnonzero(state == sid)
            adapter, snapshot = cache.states[sid]
            ids[sel], scores[sel] = cache.rows_for(adapter, snapshot, contexts[sel])
        return ids, scores

    # -- the Arm contract -------------------------------------------------------------------

    def begin(self, history: TransitionSet, start: datetime) -> None:
        """Serve the shared initial adapter's no-knowledge table, then let the policy act."""
        self.data_start = ts_to_datetime(int(history.ts[0])) if len(history) else None
        self.clock = start
        plan = self.cache.plan(INITIAL, None, self.cache.contexts_all(), None, now=start.timestamp())
        self.table = self._table_of(plan, None, start, history)
        self.adapter_trained_at = start
        self.initial_actions = self._act(history, start)
        self.initial_decisions = list(self.decisions)

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        if "recall" in self.signals and self._served_ids is not None and self.table is not None:
            # The day's outcome of the lists this arm served (data it has now seen).
            truth = history.c3[day.lo : day.hi]
            ids = self._served_ids
            hits = served_hits(ids, truth, self.cache.stack.signals.recall_k) \
                if ids.shape[0] == truth.shape[0] else 0
            self.served_days.append(ServedPeriod(
                since=day.start, until=day.end, n=int(truth.shape[0]), hits=hits,
                table_built_at=self.table.built_at, adapter_trained_at=self.adapter_trained_at))
        self._served_ids = None
        self.clock = day.end
        return self._act(history, day.end)

    def _act(self, history: TransitionSet, now: datetime) -> list[str]:
        """Ask the policy, run its decision (:func:`~hybridrec.engine.actions.run_decision`);
        the labels of what ran (and :attr:`decisions`)."""
        actions = decide_checked(self.policy, self.state(history, now))
        with_knowledge: list[bool] = []

        def run(action: Action) -> ActionOutcome:
            with_knowledge.append(isinstance(action, RegenerateTable) and action.use_knowledge
                                  and self.knowledge is not None)
            return self.execute(action, history, now)

        outcomes = run_decision(actions, run)
        with_knowledge += [False] * (len(outcomes) - len(with_knowledge))
        labels = [outcome_label(o, with_knowledge=rag) for o, rag in zip(outcomes, with_knowledge, strict=True)]
        self.decisions = [{"action": a.kind, "reason": a.reason, "outcome": label}
                          for a, label in zip(actions, labels, strict=True)]
        return labels

    def last_decisions(self) -> list[dict[str, Any]]:
        return list(self.decisions)

    def describe(self) -> dict[str, Any] | None:
        return {**(self.config or {"policy": {"plugin": self.policy.name}}),
                "signals": sorted(self.signals)}

    def live_states(self) -> set[tuple[str, str | None]]:
        if self.table is None:
            return set()
        states = {self.cache.states[i] for i in np.unique(self.table.states).tolist()}
        if self.measure_rag_agreement and self.table.snapshot is not None:
            states.add((self.table.adapter, None))
        return states

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        if self.table is None:
            raise RuntimeError(f"arm {self.name!r} has no table; begin() was not called")
        table = self.table
        found, at = table.lookup(contexts[:, 0] * self.cache.n + contexts[:, 1])
        ids, scores = self.table_rows(table, contexts, (found, at))
        if found.any() and table.rows.verified_at is not None:
            verified = table.rows.verified_at[at[found]]
            self._row_ages.append(((self.clock.timestamp() - verified) / 86400.0).astype(np.float32))
            self._rows_current += int((verified >= table.built_at.timestamp()).sum())
            self._rows_scored += int(found.sum())
        rankings, levels = fill_rows(contexts, ids, scores, table.backoff, k)
        em = self.cache.adapters[table.adapter].metrics.get("exact_match_rate")
        if em is not None:
            self._em_weighted += float(em) * contexts.shape[0]
            self._em_n += int(contexts.shape[0])
        if self.measure_rag_agreement and table.snapshot is not None and contexts.shape[0]:
            plain, _ = self.cache.rows_for(table.adapter, None, contexts)
            self._rag_same += int((plain[:, 0] == ids[:, 0]).sum())
            self._no_rag_top1_same_list += int((plain[:, :k] == ids[:, :k]).all(axis=1).sum())
            self._rag_n += int(contexts.shape[0])
        if "recall" in self.signals:
            self._served_ids = rankings.ids
        return Served(ids=rankings.ids, covered=levels == LEVEL_PAIR)

    def finalize_seconds(self, seconds_per_context: float) -> None:
        """Re-price regeneration seconds with the run's final measured seconds per context."""
        regen = seconds_per_context * self.cost.regenerated_contexts
        self.cost.seconds += regen - self.cost.seconds_by_action.get("regenerate_table", 0.0)
        self.cost.seconds_by_action["regenerate_table"] = regen

    def exact_match_rate(self) -> float | None:
        return self._em_weighted / self._em_n if self._em_n else None

    def row_age_metrics(self) -> dict[str, float | None]:
        """How old the served rows were when scored, over every scored lookup a table row
        served: the age of the evidence each was ranked from (days since it was last confirmed
        current) at the start of the day it served, as quantiles, and the share of lookups served
        by a row the serving table's own regeneration ranked or confirmed."""
        ages = np.concatenate(self._row_ages) if self._row_ages else np.zeros(0)
        out: dict[str, float | None] = {
            f"row_age_days_{name}": (float(np.quantile(ages, q)) if ages.size else None)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        }
        out["rows_current_share"] = self._rows_current / self._rows_scored if self._rows_scored else None
        return out

    def extra_metrics(self) -> dict[str, float | int | None]:
        return {
            "rag_equals_no_rag_top1": self._rag_same / self._rag_n if self._rag_n else None,
            "rag_equals_no_rag_list": self._no_rag_top1_same_list / self._rag_n if self._rag_n else None,
            "rag_scored": self._rag_n,
            "held_adapters": len(self.held),
            "regenerated_contexts": self.cost.regenerated_contexts,
            "regenerated_contexts_if_full": self.full_regenerated_contexts,
            **{f"regenerate_{why}": self.regenerated_why.get(why, 0) for why in WHY_KEYS},
            **self.row_age_metrics(),
            "regenerate_flops_if_full": self.full_regeneration_flops,
            "flops_if_full_regeneration": (
                self.cost.flops - self.cost.by_action.get("regenerate_table", 0.0)
                + self.full_regeneration_flops
            ),
        }


def initial_adapter(
    cache: WorkCache,
    history: TransitionSet,
    start: datetime,
    warmup_days: int | None,
    fine_tuner: FineTuner | None = None,
    *,
    fine_tuner_ref: PluginRef | None = None,
    progress: bool = False,
) -> AdapterEntry:
    """Fine-tune the shared initial adapter on the ``warmup_days`` before ``start``, or on all
    of ``history`` before it when ``None`` (with ``fine_tuner``, configured by
    ``fine_tuner_ref``, if given: e.g. one with a larger example budget; its ``max_examples``
    keeps the most recent examples)."""
    # The same rule as a workspace's first fine-tune (InitialFineTuneConfig.window).
    rule = InitialFineTuneConfig(window_days="all" if warmup_days is None else float(warmup_days))
    window = rule.window(TimeWindow(start=start - timedelta(days=1), end=start),
                         ts_to_datetime(int(history.ts[0])) if len(history) else None)
    return cache.fine_tune(
        history, None, window, warm_start=False, key=INITIAL, fine_tuner=fine_tuner,
        fine_tuner_ref=fine_tuner_ref, progress=progress,
    )


__all__ = [
    "INITIAL",
    "OVER_BUDGET",
    "AdapterEntry",
    "AdapterRows",
    "LLMStack",
    "PolicyArm",
    "SnapshotEntry",
    "WorkCache",
    "initial_adapter",
]
