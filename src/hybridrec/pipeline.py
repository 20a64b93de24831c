"""The update pipeline: ingest -> state -> ``policy.decide`` -> execute -> promote -> ledger.

:class:`Pipeline` composes the configured plugins (built lazily: a model is only loaded when an
action needs it). :func:`run_update` performs one update of a
:class:`~hybridrec.workspace.Workspace`:

1. **ingest** the new interaction file: rows are validated by :mod:`hybridrec.data.io`; bad rows,
   rows at or after the clock and rows whose cluster is not in the workspace catalog go to the
   workspace's ``quarantine.jsonl`` with file, row, field and reason. The first update fixes the
   cluster catalog (one cluster per category combination, docs/protocol.md); the accepted rows are
   committed as a ``data`` version (all versions together are the accumulated log);
2. **state**: transitions are extracted from the accumulated log (:mod:`hybridrec.data`), and a
   :class:`~hybridrec.types.SystemState` is built from the served versions, the drift between
   the adapter's training window and recent data, the ledger and (when a budget is set) the cost
   model's price of each action kind;
3. **decide** with the configured :class:`~hybridrec.interfaces.UpdatePolicy`;
4. **execute** each action in order, each artifact written in staging and committed as a new
   version: a fine-tune is checked by the guardrails (:mod:`hybridrec.guardrails`) and the
   ``veto_promotion`` hook, and becomes the candidate adapter or is kept with status
   ``needs_review``; a refresh builds a knowledge snapshot; a regeneration ranks every context
   through the configured executor into a new serving table. Every executed action appends a
   :class:`~hybridrec.types.CostRecord` to the ledger at once (compute spent is spent, promoted
   or not) and calls ``on_action_executed``;
5. **promote**: one atomic replacement of the workspace's ``state`` pointer names the new
   catalog, data, adapter, knowledge and table versions together; ``on_version_promoted`` is
   called for each kind that changed. A crash before this step leaves the previous versions
   served, complete; leftovers are cleaned by the next update.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hybridrec import distributed
from hybridrec.artifacts import MANIFEST, read_json
from hybridrec.config import GuardrailConfig, PipelineConfig
from hybridrec.errors import DataError, HybridrecError
from hybridrec.generation import TableJob, all_contexts, observed_contexts
from hybridrec.interfaces import (
    CostModel,
    FineTuner,
    Generator,
    KnowledgeStore,
    TableExecutor,
    UpdatePolicy,
)
from hybridrec.plugins import ResolvedPlugin, build, resolve
from hybridrec.types import (
    UTC,
    Action,
    ActionKind,
    ClusterCatalog,
    CostEstimate,
    CostRecord,
    DriftStats,
    FineTune,
    QuarantineRecord,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
    TransitionSet,
    Workload,
    datetime_to_ts,
    to_utc,
    ts_to_datetime,
)

if TYPE_CHECKING:
    from hybridrec.workspace import Workspace

#: The pointer entry before anything was promoted (every key is always present).
EMPTY_ENTRY: dict[str, Any] = {
    "catalog": None, "data": [], "adapter": None, "knowledge": None, "table": None,
    "held_adapters": [],
}
#: Pointer keys and the artifact folder of each kind.
KIND_DIRS: dict[str, str] = {
    "catalog": "catalog", "data": "data", "adapter": "adapters", "knowledge": "knowledge",
    "table": "tables",
}

#: Days of recent transitions behind the serving backoff (successors of c2 alone, popularity).
BACKOFF_DAYS = 30.0
#: Days of recent data the drift statistic compares the adapter's training window with.
DRIFT_DAYS = 14.0
#: Minimum observations of a pair in both windows for it to count in the drift statistic.
DRIFT_MIN_COUNT = 2
ESTIMATE_KINDS: tuple[ActionKind, ...] = ("fine_tune", "refresh_knowledge", "regenerate_table")


# ---------------------------------------------------------------------------------------------
# Ledger
# ---------------------------------------------------------------------------------------------


class Ledger:
    """The cost/action ledger: one :class:`CostRecord` per JSON line, append-only.

    An append is one ``write`` of a whole line followed by ``fsync``; a crash can at worst leave a
    torn last line, which :meth:`records` skips (and counts in :attr:`skipped`) and the next
    append terminates first, so later records are never glued to it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.skipped = 0

    def append(self, record: CostRecord) -> None:
        line = json.dumps(record.model_dump(mode="json"), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def records(self, since: datetime | None = None) -> list[CostRecord]:
        """Records (oldest first) whose ``at`` is at or after ``since`` (all if None)."""
        self.skipped = 0
        if not self.path.is_file():
            return []
        out: list[CostRecord] = []
        bound = None if since is None else to_utc(since)
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = CostRecord.model_validate_json(line)
                except ValueError:
                    self.skipped += 1
                    continue
                if bound is None or record.at >= bound:
                    out.append(record)
        return out


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------


#: The roles an update uses (the ``dataset`` role is for backtests; a workspace ingests files).
PIPELINE_ROLES: tuple[str, ...] = (
    "generator", "fine_tuner", "knowledge_store", "update_policy", "cost_model", "executor",
)


def resolve_roles(config: PipelineConfig, roles: tuple[str, ...] = PIPELINE_ROLES,
                  source: str = "config") -> dict[str, ResolvedPlugin]:
    """Resolve the pipeline's ``roles`` of ``config`` (one :class:`ConfigError` for all problems)."""
    return resolve(config, source, roles)


class Pipeline:
    """The configured plugins of a pipeline, instantiated on first use.

    ``Pipeline(config, catalog)`` resolves every role at once (a bad plugin name or option is one
    :class:`~hybridrec.errors.ConfigError` listing all problems); models load lazily.
    """

    def __init__(self, config: PipelineConfig, catalog: ClusterCatalog, *, source: str = "config") -> None:
        self.config = config
        self.catalog = catalog
        self.source = source
        self.resolved: dict[str, ResolvedPlugin] = resolve_roles(config, source=source)
        self._instances: dict[str, Any] = {}

    def _get(self, role: str) -> Any:
        if role not in self._instances:
            self._instances[role] = build(role, getattr(self.config, role), self.catalog,
                                          source=self.source)
        return self._instances[role]

    @property
    def policy(self) -> UpdatePolicy:
        policy: UpdatePolicy = self._get("update_policy")
        return policy

    @property
    def cost_model(self) -> CostModel:
        model: CostModel = self._get("cost_model")
        return model

    @property
    def generator(self) -> Generator:
        generator: Generator = self._get("generator")
        return generator

    @property
    def fine_tuner(self) -> FineTuner:
        tuner: FineTuner = self._get("fine_tuner")
        return tuner

    @property
    def knowledge_store(self) -> KnowledgeStore:
        store: KnowledgeStore = self._get("knowledge_store")
        return store

    @property
    def executor(self) -> TableExecutor:
        executor: TableExecutor = self._get("executor")
        return executor

    def contexts(self, transitions: TransitionSet, action: RegenerateTable, data_until: datetime) -> np.ndarray:
        """The contexts a regeneration ranks: all ordered pairs, or those observed.

        ``"observed"`` applies if either the action or ``[serving] contexts`` asks for it; the
        window is the action's (else all data before ``data_until``).
        """
        if action.contexts == "observed" or self.config.serving.contexts == "observed":
            window = action.observed_window
            if window is None:
                return observed_contexts(transitions.before(data_until))
            return observed_contexts(transitions, window)
        return all_contexts(len(self.catalog))

    def workload(self, kind: ActionKind, transitions: TransitionSet, *, n_window: int,
                 n_contexts: int, use_knowledge: bool = True) -> Workload:
        """What ``kind`` would touch now (instantiates the plugins it needs)."""
        if kind == "fine_tune":
            return self.fine_tuner.workload(n_window, self.generator)
        if kind == "refresh_knowledge":
            return self.knowledge_store.workload(n_window, n_contexts)
        if kind == "regenerate_table":
            work = self.generator.workload(n_contexts, with_evidence=use_knowledge)
            if use_knowledge:
                index = self.knowledge_store.workload(0, n_contexts)
                work = work.model_copy(update={
                    "index_items": index.index_items, "index_dim": index.index_dim,
                    "index_trees": index.index_trees,
                })
            return work
        return Workload()


# ---------------------------------------------------------------------------------------------
# Guardrails and hooks
# ---------------------------------------------------------------------------------------------


def guardrail_reasons(metrics: dict[str, float], config: GuardrailConfig) -> list[str]:
    """Why an adapter must be held (empty: it may be promoted): :mod:`hybridrec.guardrails`."""
    from hybridrec.guardrails import check_guardrails

    return [str(reason) for reason in check_guardrails(metrics, config)]


def _hook() -> Any:
    from hybridrec.plugins import get_plugin_manager

    return get_plugin_manager().hook


def veto(kind: str, candidate: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    """The first plugin's reason to stop ``candidate`` from being promoted, or None."""
    reason = _hook().veto_promotion(kind=kind, candidate=candidate, current=current)
    return None if reason is None else str(reason)


# ---------------------------------------------------------------------------------------------
# Ingest
# ---------------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Rows accepted from one input file (identifiers as strings, cluster ids resolved)."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    rating: np.ndarray
    cluster: np.ndarray
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    rows_read: int = 0

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def save(self, path: Path) -> None:
        np.savez(
            path, user=self.user.astype(str), item=self.item.astype(str), ts=self.ts,
            rating=self.rating, cluster=self.cluster,
        )

    @classmethod
    def load(cls, path: Path) -> Batch:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                user=data["user"], item=data["item"], ts=data["ts"].astype(np.int64),
                rating=data["rating"].astype(np.float64), cluster=data["cluster"].astype(np.int64),
            )

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        if not batches:
            return cls(np.zeros(0, dtype=str), np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64),
                       np.zeros(0), np.zeros(0, dtype=np.int64))
        return cls(
            user=np.concatenate([b.user.astype(str) for b in batches]),
            item=np.concatenate([b.item.astype(str) for b in batches]),
            ts=np.concatenate([b.ts for b in batches]),
            rating=np.concatenate([b.rating for b in batches]),
            cluster=np.concatenate([b.cluster for b in batches]),
        )


def _timestamp_unit(path: Path, column: str) -> Literal["s", "iso"]:
    import pandas as pd

    head = pd.read_csv(path, nrows=50, dtype=str, keep_default_na=False)
    values = [v for v in head.get(column, pd.Series(dtype=str)).tolist() if v.strip()]
    for value in values:
        try:
            float(value)
        except ValueError:
            return "iso"
    return "s"


def read_batch(
    data: Path,
    *,
    items: Path | None,
    now: datetime,
    catalog: ClusterCatalog | None,
    known_items: dict[str, int],
) -> tuple[Batch, ClusterCatalog]:
    """Read and validate one interaction file (see the module docstring).

    Without ``items`` the file itself carries a ``categories`` column (``|``-separated); an item
    takes the categories of its first row that has any, else the cluster it had in earlier data.
    Returns the accepted rows and the catalog (built from this file's items when ``catalog`` is
    None).
    """
    import pandas as pd

    from hybridrec.data.clusters import UNCATEGORIZED, cluster_by_categories
    from hybridrec.data.io import ValidationOptions, load_interaction_files

    data = Path(data)
    if not data.is_file():
        raise DataError(f"{data}: no such interaction file (give --data a CSV with user,item,timestamp[,rating][,categories])")
    with tempfile.TemporaryDirectory(prefix="hybridrec-ingest-") as tmp:
        items_path = items
        if items_path is None:
            frame = pd.read_csv(data, dtype=str, keep_default_na=False, on_bad_lines="skip")
            if "categories" not in frame.columns:
                raise DataError(
                    f"{data}: no 'categories' column (found {', '.join(frame.columns)}); add one "
                    "(categories separated by '|') or pass --items FILE with item,categories"
                )
            frame = frame[["item", "categories"]] if "item" in frame.columns else frame.iloc[0:0]
            frame = frame.assign(item=frame["item"].str.strip(), categories=frame["categories"].str.strip())
            described = frame[frame["categories"] != ""].drop_duplicates("item")
            known_rows = pd.DataFrame(
                {"item": [i for i in known_items if i not in set(described["item"])], "categories": ""}
            )
            table = pd.concat([described, known_rows], ignore_index=True)
            table = table[table["item"] != ""]
            if table.empty:
                raise DataError(f"{data}: no row names an item with categories; nothing to ingest")
            items_path = Path(tmp) / "items.csv"
            table.to_csv(items_path, index=False)
        loaded = load_interaction_files(
            name="workspace", interactions=data, items=items_path,
            timestamp_unit=_timestamp_unit(data, "timestamp"),
            validation=ValidationOptions(max_timestamp=datetime_to_ts(now)),
        )
    derived = None if items is not None else str(Path(tmp) / "items.csv")
    quarantine = [
        r.model_copy(update={"reason": "unknown item: no row of this file gives its categories "
                                       "and earlier data does not know it"})
        if derived is not None and derived in r.reason else r
        for r in loaded.quarantine
    ]
    table_items = loaded.items
    if catalog is None:
        catalog = cluster_by_categories(table_items).catalog
    # Map each item of this file to the workspace catalog (frozen after the first update).
    item_cluster = np.full(len(table_items), -1, dtype=np.int64)
    for code, (item_id, cats) in enumerate(zip(table_items.item_ids.tolist(), table_items.categories, strict=True)):
        if cats:
            found = catalog.lookup_description(" ".join(sorted(set(cats))))
            item_cluster[code] = -1 if found is None else found
        elif str(item_id) in known_items:
            item_cluster[code] = known_items[str(item_id)]
        else:
            found = catalog.lookup_description(UNCATEGORIZED)
            item_cluster[code] = -1 if found is None else found

    inter = loaded.interactions
    row_numbers = _row_numbers(quarantine, str(data), len(inter))
    cluster = item_cluster[inter.item] if len(inter) else np.zeros(0, dtype=np.int64)
    uncataloged = cluster < 0
    keep = ~uncataloged
    for index in np.flatnonzero(uncataloged):
        item_id = str(inter.item_ids[inter.item[index]])
        quarantine.append(QuarantineRecord(
            file=str(data), row=row_numbers[index], field="categories",
            reason="the item's category combination is not a cluster of this workspace's catalog "
                   "(the catalog is fixed by the first update)",
            value=item_id,
        ))
    batch = Batch(
        user=inter.user_ids[inter.user[keep]].astype(str),
        item=inter.item_ids[inter.item[keep]].astype(str),
        ts=inter.ts[keep].astype(np.int64),
        rating=inter.rating[keep].astype(np.float64),
        cluster=cluster[keep].astype(np.int64),
        quarantine=quarantine,
        rows_read=int(loaded.metadata.get("counts", {}).get("rows_read", len(inter) + len(loaded.quarantine))),
    )
    return batch, catalog


def _row_numbers(quarantine: list[QuarantineRecord], file: str, n: int) -> list[int]:
    """File line numbers of the ``n`` accepted rows: the lines after the header that the loader
    did not quarantine, in file order (the loader keeps rows in file order)."""
    rejected = {r.row for r in quarantine if r.file == file}
    rows: list[int] = []
    line = 2
    while len(rows) < n:
        if line not in rejected:
            rows.append(line)
        line += 1
    return rows


def transitions_of(batch: Batch, n_clusters: int, min_rating: float | None) -> TransitionSet:
    """Transitions (docs/protocol.md) of an accumulated log, via :mod:`hybridrec.data.transitions`."""
    from hybridrec.data.transitions import extract_transitions_arrays

    if len(batch) == 0:
        return TransitionSet.empty(n_clusters)
    _, user = np.unique(batch.user, return_inverse=True)
    _, first, item = np.unique(batch.item, return_index=True, return_inverse=True)
    item_cluster = batch.cluster[first]
    return extract_transitions_arrays(
        user.reshape(-1), item.reshape(-1), batch.ts, batch.rating, item_cluster, n_clusters,
        min_rating=min_rating,
    )


def drift_stats(
    transitions: TransitionSet, trained: TimeWindow | None, data_until: datetime, at: datetime,
    *, recent_days: float = DRIFT_DAYS, min_count: int = DRIFT_MIN_COUNT,
) -> DriftStats:
    """Top-5 successor Jaccard between the adapter's training window and the last
    ``recent_days`` before ``data_until`` (:func:`hybridrec.data.drift.top5_jaccard`)."""
    from hybridrec.data.drift import top5_jaccard

    if trained is None:
        return DriftStats(measured_at=at)
    recent = TimeWindow.ending_at(data_until, recent_days)
    value, pairs = top5_jaccard(
        transitions.window(trained), transitions.window(recent), k=5, min_count=min_count
    )
    return DriftStats(top5_jaccard=value, pairs=pairs, measured_at=at)


# ---------------------------------------------------------------------------------------------
# The update
# ---------------------------------------------------------------------------------------------


class ActionOutcome(BaseModel):
    """What happened to one action of an update."""

    model_config = ConfigDict(extra="forbid")

    kind: ActionKind
    status: Literal["ok", "held", "failed", "skipped"]
    reason: str = ""
    version: str | None = None
    seconds: float = 0.0
    note: str = ""


class UpdateReport(BaseModel):
    """The result of one :func:`run_update`."""

    model_config = ConfigDict(extra="forbid")

    now: datetime
    data_until: datetime | None
    rows_read: int = 0
    rows_ingested: int = 0
    rows_quarantined: int = 0
    transitions: int = 0
    actions: list[ActionOutcome] = Field(default_factory=list)
    promoted: dict[str, str | None] = Field(default_factory=dict)
    held: list[str] = Field(default_factory=list)
    served: dict[str, Any] = Field(default_factory=dict)


@dataclass
class _Served:
    """The versions an update builds on, updated as actions succeed (promoted at the end)."""

    entry: dict[str, Any]

    def get(self, kind: str) -> str | None:
        value = self.entry.get(kind)
        return None if value is None else str(value)


class _Update:
    def __init__(self, ws: Workspace, now: datetime, progress: bool) -> None:
        self.ws = ws
        self.now = now
        self.progress = progress
        self.config = ws.config
        self.current = ws.current() or {}
        self.served = _Served({**EMPTY_ENTRY, **self.current})
        self.pipeline: Pipeline | None = None
        self.loaded_adapter: str | None = "unset"

    # -- manifests of served versions --------------------------------------------------------

    def manifest(self, kind: str, version: str | None) -> dict[str, Any] | None:
        if version is None:
            return None
        return dict(read_json(self.ws.store.get(kind, version).path / MANIFEST))

    def path(self, kind: str, version: str | None, sub: str) -> Path | None:
        if version is None:
            return None
        return self.ws.store.get(kind, version).path / sub

    # -- steps -------------------------------------------------------------------------------

    def ingest(self, data: Path, items: Path | None, report: UpdateReport) -> tuple[ClusterCatalog, Batch]:
        ws = self.ws
        catalog = ws.catalog() if self.served.get("catalog") else None
        data_ids: list[str] = list(self.served.entry.get("data") or [])
        known = ws.known_items(data_ids)
        for path, what in ((data, "interaction"), (items, "item")):
            if path is not None and not Path(path).is_file():
                raise DataError(f"{path}: no such {what} file")
        digest = _file_digest(data, items)
        already = [v for v in data_ids if ws.store.get("data", v).manifest.get("input_sha256") == digest]
        batch, catalog = read_batch(data, items=items, now=self.now, catalog=catalog, known_items=known)
        report.rows_read = batch.rows_read
        report.rows_quarantined = len(batch.quarantine)
        ws.append_quarantine(batch.quarantine)
        if catalog is not None and not self.served.get("catalog"):
            staging = ws.store.stage("catalog")
            (staging.path / "catalog.json").write_text(catalog.model_dump_json(indent=1))
            version = ws.store.commit(staging, {"clusters": len(catalog), "hash": catalog.hash})
            self.served.entry["catalog"] = version.id
        if already:
            report.rows_ingested = 0
        elif len(batch):
            staging = ws.store.stage("data")
            batch.save(staging.path / "interactions.npz")
            version = ws.store.commit(staging, {
                "input": str(Path(data).resolve()), "input_sha256": digest, "rows": len(batch),
                "quarantined": len(batch.quarantine), "ingested_at": self.now.isoformat(),
            })
            self.served.entry["data"] = [*data_ids, version.id]
            report.rows_ingested = len(batch)
        return catalog, ws.load_batches(list(self.served.entry.get("data") or []))

    def state(self, transitions: TransitionSet, pipeline: Pipeline) -> SystemState:
        served = self.served
        adapter = self.manifest("adapters", served.get("adapter"))
        knowledge = self.manifest("knowledge", served.get("knowledge"))
        table = self.manifest("tables", served.get("table"))
        data_until = self.data_until(transitions)
        data_start = ts_to_datetime(int(transitions.ts[0])) if len(transitions) else None
        trained = _window(adapter.get("window")) if adapter else None
        budget = self.config.budget
        since = self.now - timedelta(days=budget.period_days)
        estimates: dict[str, CostEstimate] = {}
        if any(getattr(budget, u) is not None for u in ("flops", "seconds", "money")):
            contexts = int(pipeline.contexts(transitions, RegenerateTable(), data_until).shape[0])
            for kind in ESTIMATE_KINDS:
                n_window = len(transitions.before(data_until))
                work = pipeline.workload(kind, transitions, n_window=n_window, n_contexts=contexts)
                estimates[kind] = pipeline.cost_model.estimate(kind, work)
        return SystemState(
            now=self.now,
            data_start=data_start,
            data_until=data_until,
            adapter_version=served.get("adapter"),
            adapter_trained_until=trained.end if trained else None,
            adapter_trained_at=_time(adapter.get("trained_at")) if adapter else None,
            knowledge_version=served.get("knowledge"),
            knowledge_until=_window(knowledge["window"]).end if knowledge else None,
            knowledge_built_at=_time(knowledge.get("built_at")) if knowledge else None,
            table_version=served.get("table"),
            table_built_at=_time(table.get("built_at")) if table else None,
            table_uses_knowledge=bool(table.get("knowledge")) if table else False,
            pending_fine_tune=False,
            held_adapters=tuple(served.entry.get("held_adapters") or ()),
            drift=drift_stats(transitions, trained, data_until, self.now),
            budget=budget,
            ledger=tuple(self.ws.ledger.records(since)),
            estimates=estimates,
        )

    def data_until(self, transitions: TransitionSet) -> datetime:
        batch_until = self.served.entry.get("data_until")
        last = int(transitions.ts[-1]) + 1 if len(transitions) else None
        candidates = [t for t in (last, datetime_to_ts(_time(batch_until)) if batch_until else None) if t]
        return ts_to_datetime(max(candidates)) if candidates else self.now

    def record(self, kind: ActionKind, estimate: CostEstimate, seconds: float, status: str,
               versions_in: dict[str, str | None], versions_out: dict[str, str | None], note: str) -> None:
        assert self.pipeline is not None
        record = self.pipeline.cost_model.record(
            kind, estimate, at=self.now, seconds=seconds, versions_in=versions_in,
            versions_out=versions_out, status=status, note=note,
        )
        self.ws.ledger.append(record)
        _hook().on_action_executed(record=record)

    def versions(self) -> dict[str, str | None]:
        return {k: self.served.get(k) for k in ("adapter", "knowledge", "table")}

    def ensure_adapter(self, gen: Generator) -> None:
        version = self.served.get("adapter")
        if self.loaded_adapter != version:
            gen.load_adapter(self.path("adapters", version, "adapter"))
            self.loaded_adapter = version

    def fine_tune(self, action: FineTune, transitions: TransitionSet, data_until: datetime) -> ActionOutcome:
        assert self.pipeline is not None
        p, ws = self.pipeline, self.ws
        _check_window(action.window, data_until, "fine_tune")
        gen = p.generator
        self.ensure_adapter(gen)
        n_window = len(transitions.window(action.window))
        estimate = p.cost_model.estimate("fine_tune", p.fine_tuner.workload(n_window, gen))
        previous = self.path("adapters", self.served.get("adapter"), "adapter") if action.warm_start else None
        key = hashlib.sha256(json.dumps(
            [action.window.model_dump(mode="json"), self.served.get("adapter"), action.warm_start,
             self.config.fine_tuner.model_dump(mode="json")], sort_keys=True,
        ).encode()).hexdigest()[:12]
        staging = ws.resumable_staging("adapters", key)
        started = time.perf_counter()
        # The engine (single process by default, torchrun/accelerate on several GPUs) is config.
        result = distributed.fine_tune(
            self.config.distributed, generator_ref=self.config.generator,
            fine_tuner_ref=self.config.fine_tuner, catalog=p.catalog, transitions=transitions,
            window=action.window, out_dir=staging.path / "adapter", previous_adapter=previous,
            generator=gen, fine_tuner=p.fine_tuner, progress=self.progress,
        )
        seconds = time.perf_counter() - started
        reasons = guardrail_reasons(result.metrics, self.config.guardrails)
        manifest: dict[str, Any] = {
            "window": action.window.model_dump(mode="json"), "trained_at": self.now.isoformat(),
            "metrics": result.metrics, "train_tokens": result.train_tokens,
            "previous": self.served.get("adapter") if action.warm_start else None,
            "plugin": self.config.fine_tuner.model_dump(mode="json"),
            "generator": self.config.generator.model_dump(mode="json"),
            "fine_tuner_manifest": result.manifest, "reason": action.reason,
        }
        if not reasons:
            vetoed = veto("adapter", manifest, self.manifest("adapters", self.served.get("adapter")))
            if vetoed:
                reasons = [f"vetoed by a plugin: {vetoed}"]
        manifest["status"] = "needs_review" if reasons else "ok"
        manifest["guardrail_reasons"] = reasons
        version = ws.store.commit(staging, manifest)
        versions_in = self.versions()
        if reasons:
            held = [*(self.served.entry.get("held_adapters") or []), version.id]
            self.served.entry["held_adapters"] = held
            self.loaded_adapter = "unset"  # the fine-tuner left its adapter active: restore ours
            self.record("fine_tune", estimate, seconds, "held", versions_in, {"adapter": version.id},
                        "; ".join(reasons))
            _hook().on_guardrail_failed(version=version.id, reasons=reasons, manifest=version.manifest)
            return ActionOutcome(kind="fine_tune", status="held", reason=action.reason,
                                 version=version.id, seconds=seconds, note="; ".join(reasons))
        self.served.entry["adapter"] = version.id
        self.loaded_adapter = "unset"
        self.record("fine_tune", estimate, seconds, "ok", versions_in, {"adapter": version.id}, action.reason)
        return ActionOutcome(kind="fine_tune", status="ok", reason=action.reason, version=version.id, seconds=seconds)

    def refresh(self, action: RefreshKnowledge, transitions: TransitionSet, data_until: datetime) -> ActionOutcome:
        assert self.pipeline is not None
        p, ws = self.pipeline, self.ws
        _check_window(action.window, data_until, "refresh_knowledge")
        n_window = len(transitions.window(action.window))
        n_contexts = int(p.contexts(transitions, RegenerateTable(), data_until).shape[0])
        estimate = p.cost_model.estimate("refresh_knowledge", p.knowledge_store.workload(n_window, n_contexts))
        staging = ws.store.stage("knowledge")
        started = time.perf_counter()
        try:
            snapshot = p.knowledge_store.build(transitions, action.window, staging.path / "snapshot")
        except BaseException:
            ws.store.abort(staging)
            raise
        seconds = time.perf_counter() - started
        manifest: dict[str, Any] = {
            "window": action.window.model_dump(mode="json"), "built_at": self.now.isoformat(),
            "snapshot": snapshot.id, "transitions": n_window,
            "plugin": self.config.knowledge_store.model_dump(mode="json"), "reason": action.reason,
        }
        vetoed = veto("knowledge", manifest, self.manifest("knowledge", self.served.get("knowledge")))
        manifest["status"] = "needs_review" if vetoed else "ok"
        version = ws.store.commit(staging, manifest)
        versions_in = self.versions()
        if vetoed:
            self.record("refresh_knowledge", estimate, seconds, "held", versions_in,
                        {"knowledge": version.id}, f"vetoed: {vetoed}")
            return ActionOutcome(kind="refresh_knowledge", status="held", version=version.id,
                                 seconds=seconds, note=vetoed, reason=action.reason)
        self.served.entry["knowledge"] = version.id
        self.record("refresh_knowledge", estimate, seconds, "ok", versions_in,
                    {"knowledge": version.id}, action.reason)
        return ActionOutcome(kind="refresh_knowledge", status="ok", version=version.id,
                             seconds=seconds, reason=action.reason)

    def regenerate(self, action: RegenerateTable, transitions: TransitionSet, data_until: datetime) -> ActionOutcome:
        from hybridrec.serving import Backoff, get_backend

        assert self.pipeline is not None
        p, ws = self.pipeline, self.ws
        if action.observed_window is not None:
            _check_window(action.observed_window, data_until, "regenerate_table")
        knowledge = self.served.get("knowledge") if action.use_knowledge else None
        adapter = self.served.get("adapter")
        served_table = self.manifest("tables", self.served.get("table"))
        contexts = p.contexts(transitions, action, data_until)
        inputs = {"adapter": adapter, "knowledge": knowledge, "contexts": int(contexts.shape[0]),
                  "data_until": data_until.isoformat()}
        if served_table is not None and all(served_table.get(k) == v for k, v in inputs.items()):
            return ActionOutcome(kind="regenerate_table", status="skipped", reason=action.reason,
                                 note="the served table was built from the same inputs")
        gen = p.generator
        self.ensure_adapter(gen)
        work = p.workload("regenerate_table", transitions, n_window=0, n_contexts=int(contexts.shape[0]),
                          use_knowledge=knowledge is not None)
        estimate = p.cost_model.estimate("regenerate_table", work)
        k = self.config.serving.k
        backend = get_backend(self.config.serving.backend)
        recent = transitions.window(TimeWindow.ending_at(data_until, BACKOFF_DAYS))
        backoff = Backoff.from_transitions(recent if len(recent) else transitions.before(data_until), k + 2)
        staging = ws.store.stage("tables")
        writer = backend.writer(staging.path, n_clusters=len(p.catalog), k=k)
        job = TableJob(
            generator=self.config.generator, catalog=p.catalog, contexts=contexts, k=k,
            adapter=self.path("adapters", adapter, "adapter"),
            knowledge_store=self.config.knowledge_store if knowledge else None,
            snapshot=self.path("knowledge", knowledge, "snapshot"),
        )
        started = time.perf_counter()
        try:
            rows = p.executor.run(job, writer.write, generator=gen, progress=self.progress)
            writer.set_backoff(backoff)
            manifest: dict[str, Any] = {
                **inputs, "built_at": self.now.isoformat(), "rows": rows, "k": k,
                "backend": backend.name, "n_clusters": len(p.catalog),
                "catalog_hash": p.catalog.hash, "reason": action.reason,
            }
            writer.commit(manifest)
        except BaseException:
            writer.abort()
            ws.store.abort(staging)
            raise
        seconds = time.perf_counter() - started
        if rows != contexts.shape[0]:
            ws.store.abort(staging)
            raise HybridrecError(
                f"executor {self.config.executor.plugin!r} wrote {rows} rows for "
                f"{contexts.shape[0]} contexts; the table was not promoted"
            )
        vetoed = veto("table", manifest, served_table)
        manifest["status"] = "needs_review" if vetoed else "ok"
        version = ws.store.commit(staging, manifest)
        versions_in = self.versions()
        if vetoed:
            self.record("regenerate_table", estimate, seconds, "held", versions_in,
                        {"table": version.id}, f"vetoed: {vetoed}")
            return ActionOutcome(kind="regenerate_table", status="held", version=version.id,
                                 seconds=seconds, note=vetoed, reason=action.reason)
        self.served.entry["table"] = version.id
        self.record("regenerate_table", estimate, seconds, "ok", versions_in, {"table": version.id},
                    action.reason)
        return ActionOutcome(kind="regenerate_table", status="ok", version=version.id,
                             seconds=seconds, reason=action.reason)

    def run(self, data: Path | None, items: Path | None) -> UpdateReport:
        ws = self.ws
        report = UpdateReport(now=self.now, data_until=None)
        if data is not None:
            catalog, batch = self.ingest(data, items, report)
        elif self.served.get("catalog"):
            catalog, batch = ws.catalog(), ws.load_batches(list(self.served.entry.get("data") or []))
        else:
            raise DataError(f"{ws.root}: no data yet; the first update needs --data FILE")
        transitions = transitions_of(batch, len(catalog), self.config.data.min_rating)
        report.transitions = len(transitions)
        self.pipeline = Pipeline(self.config, catalog, source=str(ws.config_path))
        data_until = self.data_until(transitions)
        report.data_until = data_until
        state = self.state(transitions, self.pipeline)
        actions: list[Action] = self.pipeline.policy.decide(state)
        for action in actions:
            if isinstance(action, FineTune):
                outcome = self.fine_tune(action, transitions, data_until)
            elif isinstance(action, RefreshKnowledge):
                outcome = self.refresh(action, transitions, data_until)
            elif isinstance(action, RegenerateTable):
                outcome = self.regenerate(action, transitions, data_until)
            else:
                outcome = ActionOutcome(kind="noop", status="ok", reason=action.reason)
            report.actions.append(outcome)
        self.served.entry.update({
            "data_until": data_until.isoformat(),
            "data_start": state.data_start.isoformat() if state.data_start else None,
            "updated_at": self.now.isoformat(),
            "policy": self.config.update_policy.plugin,
            "drift": state.drift.model_dump(mode="json"),
        })
        changed = {
            kind: self.served.get(kind)
            for kind in ("catalog", "adapter", "knowledge", "table")
            if self.served.get(kind) != (None if self.current.get(kind) is None else str(self.current[kind]))
        }
        if self.served.entry != self.current:
            ws.promote(self.served.entry)
            for kind, version in changed.items():
                if version is not None:
                    _hook().on_version_promoted(kind=kind, version=version,
                                                manifest=ws.store.get(KIND_DIRS[kind], version).manifest)
        report.promoted = changed
        report.held = list(self.served.entry.get("held_adapters") or [])
        report.served = dict(self.served.entry)
        ws.collect_garbage()
        return report


def run_update(ws: Workspace, data: Path | None, *, items: Path | None = None,
               now: datetime | None = None, progress: bool = False) -> UpdateReport:
    """One update of ``ws`` at clock ``now`` (default: the wall clock), holding its update lock."""
    clock = to_utc(now) if now is not None else datetime.now(UTC).replace(microsecond=0)
    with ws.locked():
        ws.clean_staging()
        return _Update(ws, clock, progress).run(data, items)


# ---------------------------------------------------------------------------------------------


def _file_digest(data: Path, items: Path | None) -> str:
    digest = hashlib.sha256()
    for path in (data, items):
        if path is not None:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def _window(raw: Any) -> TimeWindow:
    return TimeWindow.model_validate(raw)


def _time(raw: Any) -> datetime:
    return to_utc(datetime.fromisoformat(str(raw)))


def _check_window(window: TimeWindow, data_until: datetime, kind: str) -> None:
    if window.end > data_until:
        raise HybridrecError(
            f"the policy asked for {kind} on data until {window.end.isoformat()}, after the "
            f"data seen ({data_until.isoformat()}); policies must not read the future"
        )


__all__ = [
    "BACKOFF_DAYS",
    "DRIFT_DAYS",
    "ActionOutcome",
    "Batch",
    "Ledger",
    "Pipeline",
    "UpdateReport",
    "drift_stats",
    "guardrail_reasons",
    "read_batch",
    "run_update",
    "transitions_of",
    "veto",
]
