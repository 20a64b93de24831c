"""One update of a workspace: ingest -> state -> ``policy.decide`` -> execute -> promote.

:func:`run_update` performs one update of a :class:`~hybridrec.workspace.Workspace`:

1. **ingest** the new interaction file (:mod:`hybridrec.ingest`): bad rows, rows at or after the
   clock and rows whose cluster is not in the workspace catalog go to the workspace's
   ``quarantine.jsonl`` with file, row, field and reason. The first update fixes the cluster
   catalog; the accepted rows are committed as a ``data`` version (all versions together are the
   accumulated log);
2. **state**: transitions are extracted from the accumulated log, and a
   :class:`~hybridrec.types.SystemState` is built from the served versions
   (:mod:`hybridrec.engine.state`), the drift between the adapter's training window and recent
   data, the ledger and (when a budget is set) the cost model's price of each action kind;
3. **decide** with the configured :class:`~hybridrec.interfaces.UpdatePolicy`;
4. **execute** each action through :func:`hybridrec.engine.actions.execute` (estimate → run →
   guardrails → veto hook → record → promote or hold), each artifact written in staging and
   committed as a new version. A regeneration goes through :mod:`hybridrec.engine.tables`: with
   ``[serving] regenerate = "delta"`` (the default) it re-ranks only the contexts whose prompt
   changed since the served table (same adapter) and copies the other rows — the served rows are
   those of a full regeneration. A regeneration restricted to observed contexts with
   ``fallback = "previous"`` also keeps the served table's rows of the contexts it does not rank
   (charged nothing); with ``"serving"`` those contexts are served by the serving fallback;
5. **promote**: one atomic replacement of the workspace's ``state`` pointer names the new
   catalog, data, adapter, knowledge and table versions together; ``on_version_promoted`` is
   called for each kind that changed. A crash before this step leaves the previous versions
   served, complete; leftovers are cleaned by the next update.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hybridrec.capabilities import TrainableGenerator
from hybridrec.engine import pricing, work
from hybridrec.engine.actions import (
    ActionOutcome,
    check_window,
    decide_checked,
    execute,
    hooks,
    run_decision,
)
from hybridrec.engine.components import Pipeline
from hybridrec.engine.state import (
    ServedPeriod,
    drift_stats,
    fallback_history,
    fallback_width,
    freshness_signals,
    kept_periods,
    needed_signals,
    recall_signals,
    served_hits,
    system_state,
    warn_signal,
)
from hybridrec.engine.tables import (
    KeepRule,
    TableRows,
    regeneration_note,
    regeneration_plan,
    render_keys,
    run_plan,
    write_rows,
)
from hybridrec.errors import DataError, HybridrecError, PluginError
from hybridrec.generation import TableJob
from hybridrec.ingest import Batch, file_digest, read_batch, transitions_of
from hybridrec.interfaces import Generator
from hybridrec.plugins import build
from hybridrec.types import (
    UTC,
    Action,
    ClusterCatalog,
    CostEstimate,
    DriftStats,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
    TransitionSet,
    datetime_to_ts,
    list_problem,
    to_utc,
    ts_to_datetime,
)
from hybridrec.versions import Candidate, Served
from hybridrec.workspace import KIND_DIRS, Workspace, WorkspaceVersions


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


class _Update:
    def __init__(self, ws: Workspace, now: datetime, progress: bool,
                 data_until: datetime | None = None) -> None:
        self.ws = ws
        self.now = now
        self.declared_until = data_until
        #: the served periods the recall signals read (:meth:`record_served` sets them)
        self.periods: list[ServedPeriod] = []
        self.progress = progress
        self.config = ws.config
        self.current = ws.current() or {}
        self.versions: WorkspaceVersions = ws.versions()
        self.pipeline: Pipeline | None = None
        self.loaded_adapter: str | None = "unset"

    @property
    def entry(self) -> dict[str, Any]:
        return self.versions.entry

    # -- steps -------------------------------------------------------------------------------

    def ingest(self, data: Path, items: Path | None, report: UpdateReport) -> tuple[ClusterCatalog, Batch]:
        ws = self.ws
        catalog = ws.catalog() if self.versions.served("catalog") else None
        data_ids: list[str] = list(self.entry.get("data") or [])
        known = ws.known_items(data_ids)
        for path, what in ((data, "interaction"), (items, "item")):
            if path is not None and not Path(path).is_file():
                raise DataError(f"{path}: no such {what} file")
        digest = file_digest(data, items)
        already = [v for v in data_ids if ws.store.get("data", v).manifest.get("input_sha256") == digest]
        batch, catalog = read_batch(data, items=items, now=self.now, catalog=catalog, known_items=known)
        report.rows_read = batch.rows_read
        report.rows_quarantined = len(batch.quarantine)
        ws.append_quarantine(batch.quarantine)
        if catalog is not None and not self.versions.served("catalog"):
            staging = ws.store.stage("catalog")
            (staging.path / "catalog.json").write_text(catalog.model_dump_json(indent=1))
            version = ws.store.commit(staging, {"clusters": len(catalog), "hash": catalog.hash})
            self.entry["catalog"] = version.id
        if already:
            report.rows_ingested = 0
        elif len(batch):
            staging = ws.store.stage("data")
            batch.save(staging.path / "interactions.npz")
            version = ws.store.commit(staging, {
                "input": str(Path(data).resolve()), "input_sha256": digest, "rows": len(batch),
                "quarantined": len(batch.quarantine), "ingested_at": self.now.isoformat(),
            })
            self.entry["data"] = [*data_ids, version.id]
            report.rows_ingested = len(batch)
        return catalog, ws.load_batches(list(self.entry.get("data") or []))

    def state(self, transitions: TransitionSet, pipeline: Pipeline) -> SystemState:
        served = self.versions.describe()
        data_until = self.data_until(transitions)
        budget = self.config.budget
        # Priced whether or not a budget is set: a policy may weigh gains against cost (adaptive).
        estimates: dict[str, CostEstimate] = pricing.state_estimates(
            pipeline.cost_model, generator=pipeline.generator, fine_tuner=pipeline.fine_tuner,
            store=pipeline.knowledge_store,
            n_recent=len(transitions.window(TimeWindow.ending_at(data_until, pricing.PRICE_DAYS))),
            n_contexts=int(pipeline.contexts(transitions, RegenerateTable(), data_until).shape[0]),
            with_evidence=served.knowledge is not None,
        )
        return system_state(
            served,
            now=self.now,
            data_start=ts_to_datetime(int(transitions.ts[0])) if len(transitions) else None,
            data_until=data_until,
            drift=self.drift(transitions, served, data_until,
                             needed_signals(pipeline.policy, f"workspace {self.ws.root}")),
            budget=budget,
            ledger=self.versions.ledger(self.now - timedelta(days=budget.period_days)),
            estimates=estimates,
        )

    def drift(self, transitions: TransitionSet, served: Served, data_until: datetime,
              needs: frozenset[str] = frozenset()) -> DriftStats:
        """Drift of the data against the adapter's training window, what fresher knowledge
        would have bought (:func:`freshness_signals`), and the served lists' recall signals
        (:func:`~hybridrec.engine.state.recall_signals`) over the periods this workspace served
        (:meth:`record_served`). Every signal is measured whatever the policy ``needs`` (one
        policy; ``hybridrec status`` shows them); no adapter or table yet, or too few days
        seen, leaves a signal ``None``."""
        signals = self.config.signals
        stats = drift_stats(transitions, served.adapter_window, data_until, self.now,
                            recent_days=signals.drift_days, min_count=signals.drift_min_count)
        stats = stats.model_copy(update=freshness_signals(
            transitions, knowledge_until=served.knowledge_window.end if served.knowledge_window else None,
            data_until=data_until))
        return stats.model_copy(update=recall_signals(
            self.periods, data_until, days=signals.recall_days, table_built_at=served.table_built_at,
            adapter_trained_at=served.adapter_trained_at))

    def record_served(self, transitions: TransitionSet, data_until: datetime,
                      needs: frozenset[str]) -> None:
        """Score the data this update brings (after the previous update's ``data_until``) with
        the table served meanwhile, before anything changes, and keep it as a
        :class:`~hybridrec.engine.state.ServedPeriod` in the served state (the recall signals'
        evidence, out of sample). A served table that cannot be read records nothing (with a
        :class:`~hybridrec.engine.state.SignalWarning` when the policy needs ``recall``)."""
        served = self.versions.describe()
        signals = self.config.signals
        periods = [ServedPeriod.from_json(row) for row in self.entry.get("served_periods") or []]
        before = self.current.get("data_until")
        if served.table is not None and served.table_built_at is not None and before:
            since = _time(before)
            if data_until > since:
                rows = transitions.window(TimeWindow(start=since, end=data_until))
                try:
                    ids = (self.ws.lookup_batch(rows.contexts(), signals.recall_k).ids if len(rows)
                           else np.zeros((0, signals.recall_k), dtype=np.int64))
                except HybridrecError as exc:
                    if "recall" in needs:
                        warn_signal(f"workspace {self.ws.root}: the recall signals the policy needs "
                                    f"miss {since.isoformat()}..{data_until.isoformat()}: the served "
                                    f"table {served.table} cannot be read ({exc})")
                else:
                    periods.append(ServedPeriod(
                        since=since, until=data_until, n=len(rows),
                        hits=served_hits(ids, rows.c3, signals.recall_k),
                        table_built_at=served.table_built_at,
                        adapter_trained_at=served.adapter_trained_at))
        periods = kept_periods(periods, data_until, days=signals.recall_days,
                               table_built_at=served.table_built_at,
                               adapter_trained_at=served.adapter_trained_at)
        self.periods = periods
        self.entry["served_periods"] = [p.as_json() for p in periods]

    def data_until(self, transitions: TransitionSet) -> datetime:
        """Until when the data is complete: the ``data_until`` the caller declared (the end of
        the period the new file covers), else just after the last row (or the previous
        update's ``data_until`` when later)."""
        if self.declared_until is not None:
            last = int(transitions.ts[-1]) + 1 if len(transitions) else None
            if last is not None and datetime_to_ts(self.declared_until) < last:
                raise DataError(f"data_until {self.declared_until.isoformat()} is before the last "
                                f"transition ({ts_to_datetime(last - 1).isoformat()})")
            return self.declared_until
        batch_until = self.entry.get("data_until")
        last = int(transitions.ts[-1]) + 1 if len(transitions) else None
        candidates = [t for t in (last, datetime_to_ts(_time(batch_until)) if batch_until else None) if t]
        return ts_to_datetime(max(candidates)) if candidates else self.now

    def ensure_adapter(self, gen: Generator) -> None:
        version = self.versions.served("adapter")
        if self.loaded_adapter != version:
            gen.load_adapter(self.versions.path("adapter", version, "adapter"))
            self.loaded_adapter = version

    def fine_tune(self, action: FineTune, transitions: TransitionSet, data_until: datetime) -> ActionOutcome:
        assert self.pipeline is not None
        p, ws, served = self.pipeline, self.ws, self.versions
        current = served.served("adapter")
        window, ref, tuner = action.window, self.config.fine_tuner, p.fine_tuner
        initial = current is None
        if initial:  # the first fine-tune trains the base: [initial_fine_tune] (the backtest's setup)
            first = self.config.initial_fine_tune
            data_start = ts_to_datetime(int(transitions.ts[0])) if len(transitions) else None
            window = first.window(action.window, data_start)
            if first.options:
                ref = first.fine_tuner(ref)
                tuner = build("fine_tuner", ref, p.catalog, source=p.source)
        check_window(window, data_until, "fine_tune")
        gen = p.generator
        self.ensure_adapter(gen)
        n_window = len(transitions.window(window))
        estimate = pricing.price(p.cost_model, "fine_tune", tuner.workload(n_window, gen))
        previous = served.path("adapter", current, "adapter") if action.warm_start else None

        def run() -> Candidate:
            key = hashlib.sha256(json.dumps(
                [window.model_dump(mode="json"), current, action.warm_start,
                 ref.model_dump(mode="json")], sort_keys=True,
            ).encode()).hexdigest()[:12]
            staging = ws.resumable_staging("adapters", key)
            # The engine (single process by default, torchrun/accelerate on several GPUs) is config.
            trainer = work.Trainer(gen, tuner, self.config.generator, ref, p.catalog,
                                   self.config.distributed)
            result, seconds = work.fine_tune(trainer, transitions, window, staging.path / "adapter",
                                             previous_adapter=previous, progress=self.progress)
            manifest: dict[str, Any] = {
                "window": window.model_dump(mode="json"), "trained_at": self.now.isoformat(),
                "metrics": result.metrics, "train_tokens": result.train_tokens,
                "previous": current if action.warm_start else None, "initial": initial,
                "plugin": ref.model_dump(mode="json"),
                "generator": self.config.generator.model_dump(mode="json"),
                "fine_tuner_manifest": result.manifest, "reason": action.reason,
            }
            return Candidate(handle=staging, manifest=manifest, seconds=seconds,
                             metrics=dict(result.metrics))

        outcome = execute(served, p.cost_model, "fine_tune", estimate=estimate, run=run, now=self.now,
                          reason=action.reason, guardrails=self.config.guardrails,
                          budget=self.config.budget, checks=gen.guardrail_metrics())
        self.loaded_adapter = "unset"  # the fine-tuner left its adapter active: restore the served one
        return outcome

    def refresh(self, action: RefreshKnowledge, transitions: TransitionSet, data_until: datetime) -> ActionOutcome:
        assert self.pipeline is not None
        p, ws = self.pipeline, self.ws
        check_window(action.window, data_until, "refresh_knowledge")
        n_window = len(transitions.window(action.window))
        n_contexts = int(p.contexts(transitions, RegenerateTable(), data_until).shape[0])
        estimate = pricing.price(p.cost_model, "refresh_knowledge",
                                 p.knowledge_store.workload(n_window, n_contexts))

        def run() -> Candidate:
            staging = ws.store.stage("knowledge")
            try:
                snapshot, seconds = work.refresh(p.knowledge_store, transitions, action.window,
                                                 staging.path / "snapshot")
            except BaseException:
                ws.store.abort(staging)
                raise
            manifest: dict[str, Any] = {
                "window": action.window.model_dump(mode="json"), "built_at": self.now.isoformat(),
                "snapshot": snapshot.id, "transitions": n_window,
                "plugin": self.config.knowledge_store.model_dump(mode="json"), "reason": action.reason,
            }
            return Candidate(handle=staging, manifest=manifest, seconds=seconds)

        return execute(self.versions, p.cost_model, "refresh_knowledge", estimate=estimate, run=run,
                       now=self.now, reason=action.reason, guardrails=self.config.guardrails,
                       budget=self.config.budget)

    def regenerate(self, action: RegenerateTable, transitions: TransitionSet, data_until: datetime) -> ActionOutcome:
        from hybridrec.serving import SuccessorFallback, get_backend

        assert self.pipeline is not None
        p, ws, served = self.pipeline, self.ws, self.versions
        if action.observed_window is not None:
            check_window(action.observed_window, data_until, "regenerate_table")
        knowledge = served.served("knowledge") if action.use_knowledge else None
        adapter = served.served("adapter")
        served_table = served.manifest("table", served.served("table"))
        contexts = p.contexts(transitions, action, data_until)
        inputs = {"adapter": adapter, "knowledge": knowledge, "contexts": int(contexts.shape[0]),
                  "data_until": data_until.isoformat()}
        if served_table is not None and all(served_table.get(k) == v for k, v in inputs.items()):
            return ActionOutcome(kind="regenerate_table", status="skipped", reason=action.reason,
                                 note="the served table was built from the same inputs")
        gen = p.generator
        self.ensure_adapter(gen)  # the served adapter, or the plain base when none is
        if adapter is None and isinstance(gen, TrainableGenerator) and not gen.base_trained:
            # Never serve an untrained model: its lists are noise that look like a recommender's.
            held = list(self.entry.get("held_adapters") or [])
            return ActionOutcome(
                kind="regenerate_table", status="failed", reason=action.reason,
                note=f"no adapter has passed its guardrails and generator "
                     f"{self.config.generator.plugin!r} has an untrained base model, so no table "
                     "was built" + (f" (held for review: {', '.join(held)}; `hybridrec status` "
                                    "says why)" if held else ""))
        snapshot_path = served.path("knowledge", knowledge, "snapshot")
        snapshot = p.knowledge_store.open(snapshot_path) if snapshot_path is not None else None
        table_path = served.path("table", served.served("table"), "")
        serving = self.config.serving
        delta = serving.regenerate == "delta"
        restricted = action.contexts == "observed" or serving.contexts == "observed"
        previous = (TableRows.load(table_path)
                    if (delta or (restricted and action.fallback == "previous")) and table_path is not None
                    else None)
        store_name = self.config.knowledge_store.plugin
        default = KeepRule(serving.tolerance, serving.max_row_age_days)
        plan = regeneration_plan(
            action, contexts, len(p.catalog), adapter, previous, k=serving.k, delta=delta,
            default=default, now=self.now.timestamp(), restricted=restricted,
            render=lambda ctx, sig: render_keys(gen, ctx, snapshot, signature=sig, store=store_name),
        )
        contexts, rule = plan.contexts, plan.rule
        # Priced on what it ranks: the contexts whose prompt changed (all of them for a full one).
        work = p.workload("regenerate_table", transitions, n_window=0, n_contexts=plan.changed,
                          use_knowledge=knowledge is not None)
        estimate = pricing.price(p.cost_model, "regenerate_table", work)
        k = self.config.serving.k
        backend = get_backend(self.config.serving.backend)
        backoff = SuccessorFallback.from_transitions(
            fallback_history(transitions, data_until, self.config.signals.fallback_days), fallback_width(k))
        job = TableJob(
            generator=self.config.generator, catalog=p.catalog, contexts=contexts, k=k,
            adapter=served.path("adapter", adapter, "adapter"),
            knowledge_store=self.config.knowledge_store if knowledge else None,
            snapshot=snapshot_path,
        )

        def run() -> Candidate:
            staging = ws.store.stage("tables")
            writer = backend.writer(staging.path, n_clusters=len(p.catalog), k=k)
            started = time.perf_counter()
            try:
                ids, scores = run_plan(plan, p.executor, job, generator=gen, progress=self.progress)
                problem = list_problem(contexts, ids, len(p.catalog))
                if problem is not None:  # what would be served is checked, whoever ranked it
                    raise PluginError(
                        f"generator {self.config.generator.plugin!r} (executor "
                        f"{self.config.executor.plugin!r}) ranked an invalid list: {problem}; "
                        "the table was not promoted")
                rows = write_rows(contexts, ids, scores, writer.write)
                writer.set_backoff(backoff)
                manifest: dict[str, Any] = {
                    **inputs, "built_at": self.now.isoformat(), "rows": rows, "k": k,
                    "backend": backend.name, "n_clusters": len(p.catalog),
                    "catalog_hash": p.catalog.hash, "reason": action.reason,
                    "regenerate": {"mode": "delta" if plan.delta else "full",
                                   "ranked": int(plan.rank.size), "changed": plan.changed,
                                   "copied": plan.copied, "why": plan.counts(),
                                   "tolerance": rule.tolerance,
                                   "max_row_age_days": rule.max_age_days,
                                   **({"fallback": action.fallback, "kept": plan.n_kept}
                                      if restricted else {})},
                }
                writer.commit(manifest)
                plan.next_rows(adapter, ids, scores).save(staging.path)
            except BaseException:
                writer.abort()
                ws.store.abort(staging)
                raise
            if rows != contexts.shape[0]:
                ws.store.abort(staging)
                raise HybridrecError(
                    f"executor {self.config.executor.plugin!r} wrote {rows} rows for "
                    f"{contexts.shape[0]} contexts; the table was not promoted"
                )
            return Candidate(handle=staging, manifest=manifest, seconds=time.perf_counter() - started)

        outcome = execute(served, p.cost_model, "regenerate_table", estimate=estimate, run=run,
                          now=self.now, reason=action.reason, guardrails=self.config.guardrails,
                          budget=self.config.budget)
        if outcome.status == "ok":
            outcome.note = regeneration_note(plan)
        return outcome

    def run(self, data: Path | None, items: Path | None,
            decide: Callable[[SystemState], list[Action]] | None = None) -> UpdateReport:
        ws = self.ws
        report = UpdateReport(now=self.now, data_until=None)
        if data is not None:
            catalog, batch = self.ingest(data, items, report)
        elif self.versions.served("catalog"):
            catalog, batch = ws.catalog(), ws.load_batches(list(self.entry.get("data") or []))
        else:
            raise DataError(f"{ws.root}: no data yet; the first update needs --data FILE")
        transitions = transitions_of(batch, len(catalog), self.config.data.min_rating)
        report.transitions = len(transitions)
        self.pipeline = Pipeline(self.config, catalog, source=str(ws.config_path))
        data_until = self.data_until(transitions)
        report.data_until = data_until
        self.record_served(transitions, data_until,
                           needed_signals(self.pipeline.policy, f"workspace {ws.root}"))
        state = self.state(transitions, self.pipeline)
        actions: list[Action] = (decide_checked(self.pipeline.policy, state) if decide is None
                                 else decide(state))
        def run_one(action: Action) -> ActionOutcome:
            if isinstance(action, FineTune):
                return self.fine_tune(action, transitions, data_until)
            if isinstance(action, RefreshKnowledge):
                return self.refresh(action, transitions, data_until)
            if isinstance(action, RegenerateTable):
                return self.regenerate(action, transitions, data_until)
            return ActionOutcome(kind="noop", status="ok", reason=action.reason)

        report.actions.extend(run_decision(actions, run_one))
        self.entry.update({
            "data_until": data_until.isoformat(),
            "data_start": state.data_start.isoformat() if state.data_start else None,
            "updated_at": self.now.isoformat(),
            "policy": self.config.update_policy.plugin,
            "drift": state.drift.model_dump(mode="json"),
        })
        changed = {
            kind: self.versions.served(kind)
            for kind in ("catalog", "adapter", "knowledge", "table")
            if self.versions.served(kind) != (None if self.current.get(kind) is None else str(self.current[kind]))
        }
        if self.entry != self.current:
            ws.promote(self.entry)
            for kind, version in changed.items():
                if version is not None:
                    hooks().on_version_promoted(kind=kind, version=version,
                                                manifest=ws.store.get(KIND_DIRS[kind], version).manifest)
        report.promoted = changed
        report.held = list(self.entry.get("held_adapters") or [])
        report.served = dict(self.entry)
        ws.collect_garbage()
        return report


def run_update(ws: Workspace, data: Path | None, *, items: Path | None = None,
               now: datetime | None = None, data_until: datetime | None = None,
               decide: Callable[[SystemState], list[Action]] | None = None,
               progress: bool = False) -> UpdateReport:
    """One update of ``ws`` at clock ``now`` (default: the wall clock), holding its update lock.

    ``data_until`` declares the data complete until then (at most ``now``; default: just after
    its last row), as the backtest's day ends do. ``decide`` replaces the policy's decision (the
    replay's setup uses it to train the initial adapter as a backtest does)."""
    clock = to_utc(now) if now is not None else datetime.now(UTC).replace(microsecond=0)
    until = None if data_until is None else to_utc(data_until)
    if until is not None and until > clock:
        raise DataError(f"data_until {until.isoformat()} is after the clock {clock.isoformat()}")
    with ws.locked():
        ws.clean_staging()
        return _Update(ws, clock, progress, until).run(data, items, decide)


def _time(raw: Any) -> datetime:
    return to_utc(datetime.fromisoformat(str(raw)))


__all__ = ["UpdateReport", "run_update"]
