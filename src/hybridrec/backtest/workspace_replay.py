"""The study's test days through a real workspace: the check that the two drivers agree.

:func:`replay_workspace` runs one LLM arm of a study (:class:`~hybridrec.backtest.config.BacktestConfig`)
the way a deployment would, and scores it with the study's own protocol
(:func:`~hybridrec.backtest.runner.replay`, docs/protocol.md):

* the workspace is initialised with the arm's pipeline (:meth:`BacktestConfig.arm_pipeline`,
  after the validation choices and the first training seed are applied, as
  ``hybridrec init --from-report`` deploys it);
* the interactions before the start are written in the ``file`` dataset's format and ingested
  by ``hybridrec update``'s code (:func:`~hybridrec.engine.update.run_update`); the setup
  update trains the initial adapter (the pipeline's ``[initial_fine_tune]``) and builds its
  table without knowledge, as the backtest's shared initial adapter is set up (its cost is setup,
  charged to no arm); then the policy decides at the start;
* each test day's transitions are scored by lookups through the workspace's table reader;
  then the day's interactions are written to a file and ingested by an update at the day's
  end (``data_until`` the day's end, the backtest's clock), where the policy decides and the
  engine executes on the disk store;
* the arm's cost is the workspace ledger's, after the setup.

Nothing of the backtest's in-memory path (:mod:`hybridrec.backtest.llm`) is used, so the
replay's report equals the backtest's per day only if the drivers agree;
:func:`parity_differences` lists where they do not.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.config import BacktestConfig
from hybridrec.backtest.protocol import Arm, Day, Served
from hybridrec.backtest.report import build_report
from hybridrec.backtest.runner import ReplayResult, replay
from hybridrec.backtest.study import (
    scored_pair_support,
    seed_everything,
    with_training_seed,
    with_validated_candidates,
)
from hybridrec.config import PipelineConfig
from hybridrec.data.io import write_interaction_file, write_item_file
from hybridrec.engine.actions import outcome_label
from hybridrec.engine.update import UpdateReport, run_update
from hybridrec.errors import ConfigError
from hybridrec.serving.base import LEVEL_PAIR
from hybridrec.types import (
    Action,
    FineTune,
    InteractionData,
    RegenerateTable,
    SystemState,
    TimeWindow,
    TransitionSet,
    datetime_to_ts,
)
from hybridrec.workspace import Workspace

#: the per-day fields that must agree between the two drivers
PARITY_FIELDS = ("n", "hr@1", "hr@5", "cum_flops")


class WorkspaceArm(Arm):
    """One LLM arm served by a workspace on disk (see the module docstring)."""

    llm = True

    def __init__(self, name: str, workspace: Workspace, data: InteractionData, inputs: Path,
                 *, progress: bool = False) -> None:
        super().__init__(name)
        self.ws = workspace
        self.data = data
        self.inputs = inputs
        self.progress = progress
        self.setup_flops = self.setup_money = self.setup_seconds = 0.0
        self.decisions: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        inter = data.interactions
        self._order = np.argsort(inter.ts, kind="stable")
        self._sorted_ts = np.asarray(inter.ts)[self._order]
        self._items = self._write_items()

    # -- input files ----------------------------------------------------------------------------

    def _write_items(self) -> Path:
        # Coded ids: the workspace's transitions order ties exactly as the study's.
        return write_item_file(self.data, self.inputs / "items.csv", coded_ids=True)

    def _write_interactions(self, start: datetime | None, end: datetime, name: str) -> Path | None:
        """The interactions in ``[start, end)`` (all before ``end`` when ``start`` is None) as a
        CSV for ``hybridrec update --data``; None when there are none."""
        lo = 0 if start is None else int(np.searchsorted(self._sorted_ts, datetime_to_ts(start)))
        hi = int(np.searchsorted(self._sorted_ts, datetime_to_ts(end)))
        if hi <= lo:
            return None
        return write_interaction_file(self.data, self.inputs / f"{name}.csv",
                                      rows=self._order[lo:hi], coded_ids=True)

    # -- the Arm contract -------------------------------------------------------------------------

    def _update(self, data: Path | None, now: datetime, decide: Any = None) -> UpdateReport:
        report = run_update(self.ws, data, items=self._items if data is not None else None,
                            now=now, data_until=now, decide=decide, progress=self.progress)
        self.updates.append({"now": now.isoformat(), "rows_ingested": report.rows_ingested,
                             "rows_quarantined": report.rows_quarantined,
                             "actions": [a.model_dump(mode="json") for a in report.actions]})
        if data is not None:
            data.unlink()  # the workspace holds the rows now (its data versions)
        return report

    def _settle(self, report: UpdateReport) -> list[str]:
        versions = self.ws.versions()
        labels = [outcome_label(a, with_knowledge=a.kind == "regenerate_table" and a.version is not None
                                and bool((versions.manifest("table", a.version) or {}).get("knowledge")))
                  for a in report.actions]
        self.decisions = [{"action": a.kind, "reason": a.reason, "outcome": label}
                          for a, label in zip(report.actions, labels, strict=True)]
        records = self.ws.ledger.records()
        cost = self.cost
        cost.flops = sum(r.flops for r in records) - self.setup_flops
        cost.money = sum(r.money for r in records) - self.setup_money
        cost.seconds = sum(r.seconds for r in records) - self.setup_seconds
        for action in report.actions:
            if action.status == "skipped":
                continue
            if action.kind == "fine_tune":
                cost.fine_tunes += 1
                cost.held_adapters += action.status == "held"
            elif action.kind == "refresh_knowledge":
                cost.knowledge_refreshes += 1
            elif action.kind == "regenerate_table":
                cost.table_regenerations += 1
        return labels

    def begin(self, history: TransitionSet, start: datetime) -> None:
        """Ingest the data before ``start``, set up the initial adapter and its table (setup,
        charged to no arm), then let the policy decide at ``start``."""
        first = self._write_interactions(None, start, "before-start")
        if first is None:
            raise ConfigError(f"no interactions before the start {start.isoformat()}")

        def setup(state: SystemState) -> list[Action]:
            # The backtest's initial adapter: the [initial_fine_tune] rule on the asked window
            # (all data before the start by default), then its table without knowledge.
            asked = TimeWindow(start=start - timedelta(days=1), end=start)
            return [FineTune(window=asked, warm_start=False, reason="initial adapter (setup)"),
                    RegenerateTable(use_knowledge=False, reason="initial table (setup)")]

        report = self._update(first, start, setup)
        failed = [a for a in report.actions if a.status != "ok"]
        if failed:
            raise ConfigError("the replay's setup did not serve an initial table: " + "; ".join(
                f"{a.kind} {a.status}: {a.note}" for a in failed))
        spent = self.ws.ledger.records()
        self.setup_flops = sum(r.flops for r in spent)
        self.setup_money = sum(r.money for r in spent)
        self.setup_seconds = sum(r.seconds for r in spent)
        self.initial_actions = self._settle(self._update(None, start))
        self.initial_decisions = list(self.decisions)

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        rankings, levels = self.ws.reader().lookup_batch_with_levels(contexts, k)
        return Served(ids=rankings.ids, covered=levels == LEVEL_PAIR)

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        data = self._write_interactions(day.start, day.end, day.label)
        return self._settle(self._update(data, day.end))

    def last_decisions(self) -> list[dict[str, Any]]:
        return list(self.decisions)

    def describe(self) -> dict[str, Any] | None:
        return {"workspace": str(self.ws.root),
                "pipeline": self.ws.config.model_dump(mode="json")}


def arm_pipeline(config: BacktestConfig, arm: str, history: TransitionSet) -> tuple[BacktestConfig, PipelineConfig]:
    """The study for its first training seed with the validation choices made on ``history``
    (the data before the start), and arm ``arm``'s pipeline in it (what the backtest runs)."""
    if arm not in config.arms:
        raise ConfigError(f"arm {arm!r} is not in the study (its arms: {', '.join(config.arms)})")
    seeded = with_training_seed(config, config.seed_list()[0])
    seeded, _ = with_validated_candidates(seeded, history)
    return seeded, seeded.arm_pipeline(arm)


def replay_workspace(
    config: BacktestConfig, arm: str, workspace: Path, *, progress: bool = False,
) -> tuple[dict[str, Any], ReplayResult]:
    """Replay the study's test days for LLM arm ``arm`` through a new workspace at
    ``workspace`` (see the module docstring); returns ``(report, result)``, the report in the
    schema of ``report.json`` with the one arm."""
    from hybridrec.data import load_prepared

    if config.clustering != "categories":
        raise ConfigError(
            f"the replay needs clustering = 'categories' (the study has {config.clustering!r}): a "
            "workspace builds its catalog from the items' categories")
    started = time.perf_counter()
    seed_everything(config.seed, config.threads)
    prepared = load_prepared(config.dataset, options=config.dataset_options or None,
                             min_rating=config.min_rating, clustering=config.clustering,
                             n_clusters=config.n_clusters)
    transitions = prepared.transitions
    start, end = config.start_dt, config.end_dt
    warm = int(np.searchsorted(transitions.ts, datetime_to_ts(start)))
    seeded, pipeline = arm_pipeline(config, arm, transitions.take(np.arange(warm)))
    workspace = Path(workspace)
    if workspace.exists() and any(workspace.iterdir()):
        raise ConfigError(f"{workspace}: the replay needs a new or empty workspace folder")
    ws = Workspace.init(workspace, pipeline)
    inputs = workspace.parent / f".{workspace.name}-inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    os.chmod(inputs, 0o700)
    runner = WorkspaceArm(arm, ws, prepared.data, inputs, progress=progress)
    runner.preset = seeded.arm_plan(arm).preset
    try:
        result = replay(transitions, [runner], start, end, k=seeded.k, progress=progress)
    finally:
        ws.close()
        for leftover in inputs.glob("*.csv"):
            leftover.unlink()
        inputs.rmdir()
    catalog = ws.catalog()
    dataset = {"name": seeded.dataset, "clusters": catalog.size, "k": 2,
               "test_start": seeded.start.isoformat(), "test_end": seeded.end.isoformat(),
               "transitions": len(transitions), "min_rating": seeded.min_rating,
               "clustering": seeded.clustering}
    setup = {"driver": "workspace", "workspace": str(workspace), "arm": arm, "seed": seeded.seed,
             "setup_flops": runner.setup_flops, "updates": len(runner.updates),
             "wall_seconds": round(time.perf_counter() - started, 2)}
    report = build_report(result, dataset=dataset, reference=arm, seed=seeded.seed,
                          n_boot=seeded.bootstrap, extra={"setup": setup},
                          pair_support=scored_pair_support(transitions, result))
    return report, result


def parity_differences(ours: dict[str, Any], theirs: dict[str, Any], arm: str,
                       fields: tuple[str, ...] = PARITY_FIELDS) -> list[str]:
    """Where arm ``arm``'s per-day ``fields`` differ between two reports (as the report rounds
    them), one line each; empty when the drivers agree."""
    def days(report: dict[str, Any]) -> list[dict[str, Any]]:
        for entry in report.get("arms", []):
            if entry["name"] == arm:
                return list(entry["per_day"])
        raise ConfigError(f"the report has no arm {arm!r}")

    a, b = days(ours), days(theirs)
    out: list[str] = []
    if [d["day"] for d in a] != [d["day"] for d in b]:
        out.append(f"days differ: {len(a)} against {len(b)}")
    for x, y in zip(a, b, strict=False):
        for key in fields:
            if x.get(key) != y.get(key):
                out.append(f"{x['day']} {key}: {x.get(key)} against {y.get(key)}")
    return out


#: The quick parity world: a small drifting synthetic log, the demo's stack made tiny, a
#: fine-tune every 3 days so the 7 test days hold fine-tunes, refreshes and regenerations.
PARITY_QUICK: dict[str, Any] = {
    "dataset": "synthetic", "start": "2000-01-26", "end": "2000-02-02", "bootstrap": 100,
    "dataset_options": {"n_interactions": 20_000, "days": 35, "n_clusters": 8, "drift_rate": 0.8,
                        "seed": 0},
    "llm": {
        "initial_fine_tune_options": {"max_examples": 2000, "base_epochs": 1},
        "evidence": {"candidates": 6},
        "generator": {"plugin": "hf", "options": {
            "preset": "tiny", "template": "rerank",
            "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1}}},
        "knowledge_store": {"plugin": "annoy", "options": {"min_support": 0}},
        "fine_tuner": {"plugin": "lora", "options": {
            "max_examples": 300, "holdout_max": 100, "guardrail_samples": 16, "balance": "none",
            "rag_fraction": 0.8}},
        "policies": {"hybrid": {"plugin": "hybrid", "options": {
            "fine_tune_every_days": 3, "rag_every_days": 1}}},
    },
}
#: The full parity check: the demo's stack (the default study) on ML-1M's first 7 test days.
PARITY_FULL: dict[str, Any] = {"start": "2000-06-01", "end": "2000-06-08", "bootstrap": 100}
#: ``hybrid`` runs the preset's regeneration (the material-change rule, tolerance 0.1, and the
#: staleness bound); ``hybrid-exact`` regenerates by exact delta (tolerance 0) and
#: ``hybrid-stale`` with a bound short enough to rank rows for it within the days, so both
#: drivers' delta planner is compared on copied, kept and stale rows.
PARITY_ARMS = ("hybrid", "adaptive", "hybrid-exact", "hybrid-stale")
PARITY_VARIANTS: dict[str, dict[str, Any]] = {
    "hybrid-exact": {"regenerate_tolerance": 0.0},
    "hybrid-stale": {"regenerate_tolerance": 0.1, "regenerate_max_age_days": 1.5},
}


def parity_study(quick: bool = False) -> BacktestConfig:
    """The parity check's study (:data:`PARITY_QUICK` or :data:`PARITY_FULL`) with the arms of
    :data:`PARITY_ARMS`."""
    base = BacktestConfig.model_validate({**(PARITY_QUICK if quick else PARITY_FULL),
                                          "arms": ["hybrid", "adaptive"]})
    hybrid = base.llm.policies["hybrid"]
    arms: dict[str, Any] = {"hybrid": {}, "adaptive": {}}
    for name, options in PARITY_VARIANTS.items():
        arms[name] = {"policy": {"plugin": hybrid.plugin, "options": {**hybrid.options, **options}}}
    return BacktestConfig.model_validate({**(PARITY_QUICK if quick else PARITY_FULL), "arms": arms})


def parity_suite(quick: bool = False, workdir: Path | None = None) -> dict[str, Any]:
    """The ``parity`` bench suite: for ``hybrid`` and ``adaptive``, the backtest and
    :func:`replay_workspace` over the same days; ``<arm>_differences`` counts the per-day
    :data:`PARITY_FIELDS` that differ (0 when the drivers agree). Quick: the small synthetic
    world (:data:`PARITY_QUICK`); full: ML-1M's first 7 test days with the demo's stack."""
    import tempfile

    from hybridrec.backtest.study import run_backtest

    config = parity_study(quick)
    out: dict[str, Any] = {"world": "synthetic" if quick else "ml-1m",
                           "days": f"{config.start.isoformat()}..{config.end.isoformat()}"}
    with tempfile.TemporaryDirectory(prefix="hybridrec-parity-", dir=workdir) as tmp:
        t0 = time.perf_counter()
        backtest, _, _ = run_backtest(config, drift=False)
        out["backtest_seconds"] = round(time.perf_counter() - t0, 1)
        for arm in PARITY_ARMS:
            t0 = time.perf_counter()
            replayed, _ = replay_workspace(config, arm, Path(tmp) / arm)
            differences = parity_differences(replayed, backtest, arm)
            entry = next(a for a in replayed["arms"] if a["name"] == arm)
            measured = next(a for a in backtest["arms"] if a["name"] == arm)["metrics"]
            out.update({f"{arm}_differences": len(differences),
                        f"{arm}_kept_close": measured.get("regenerate_close"),
                        f"{arm}_ranked_stale": measured.get("regenerate_stale"),
                        f"{arm}_hr@5": entry["metrics"]["hr@5"],
                        f"{arm}_flops": entry["cost"]["flops"],
                        f"{arm}_replay_seconds": round(time.perf_counter() - t0, 1)})
            if differences:
                out[f"{arm}_first_difference"] = differences[0]
    return out


__all__ = [
    "PARITY_ARMS",
    "PARITY_FIELDS",
    "PARITY_FULL",
    "PARITY_QUICK",
    "PARITY_VARIANTS",
    "WorkspaceArm",
    "parity_differences",
    "parity_study",
    "parity_suite",
    "replay_workspace",
]
