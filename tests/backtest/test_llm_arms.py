"""Policy-driven LLM arms on the fake stack: actions, work sharing, charging, determinism."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_config

from hybridrec.backtest import SCHEMA, run_backtest, verdict, write_report
from hybridrec.backtest.config import ALL_ARMS
from hybridrec.backtest.llm import INITIAL, WorkCache, initial_adapter
from hybridrec.backtest.study import build_arms, build_stack
from hybridrec.generation import all_contexts
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet, ts_to_datetime


def _run(catalog: ClusterCatalog, transitions: TransitionSet, **updates: object) -> dict:
    config = fake_config(**updates)
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    return report


def test_all_arms_run_and_follow_their_policies(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    report = _run(catalog, transitions)
    arms = {a["name"]: a for a in report["arms"]}
    assert list(arms) == list(ALL_ARMS)
    days = report["dataset"]["test_days"]
    assert days == 40
    c = {n: a["cost"] for n, a in arms.items()}
    assert c["no-update"]["fine_tunes"] == 0 and c["no-update"]["table_regenerations"] == 0
    assert c["ft-weekly"]["fine_tunes"] == days // 7
    assert c["ft-monthly"]["fine_tunes"] == days // 30
    assert c["rag-only"]["fine_tunes"] == 0 and c["rag-only"]["knowledge_refreshes"] == days // 2 + 1
    assert c["rag-once"]["knowledge_refreshes"] == 1
    assert c["hybrid"]["fine_tunes"] == days // 30
    assert c["hybrid"]["knowledge_refreshes"] >= days // 2
    for name in ("markov-all", "markov-recent", "popularity"):
        assert arms[name]["metrics"]["exact_match_rate"] is None
        assert c[name]["flops"] == 0
    for name in ("no-update", "ft-weekly", "hybrid"):
        assert arms[name]["metrics"]["exact_match_rate"] == pytest.approx(0.95)
    # Fresh evidence beats a frozen table on drifting data.
    assert arms["hybrid"]["metrics"]["hr@5"] > arms["no-update"]["metrics"]["hr@5"]
    assert arms["rag-only"]["metrics"]["rag_equals_no_rag_top1"] is not None


def test_shared_work_is_done_once_but_charged_to_each_arm(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    report = _run(catalog, transitions, arms=["ft-monthly", "hybrid", "ft-weekly"])
    arms = {a["name"]: a for a in report["arms"]}
    llm = report["setup"]["llm"]
    # hybrid and ft-monthly fine-tune on the same days from the same chain: one adapter each time.
    assert llm["charged_fine_tunes"] == sum(a["cost"]["fine_tunes"] for a in arms.values())
    assert llm["executed_fine_tunes"] == 1 + arms["ft-weekly"]["cost"]["fine_tunes"] + arms["ft-monthly"]["cost"]["fine_tunes"]
    ft_flops = arms["ft-monthly"]["cost"]["flops_by_action"]["fine_tune"]
    assert arms["hybrid"]["cost"]["flops_by_action"]["fine_tune"] == pytest.approx(ft_flops)
    # Regeneration is charged for the whole catalog even though rows are materialised lazily.
    n = len(catalog)
    regen = arms["ft-monthly"]["cost"]["flops_by_action"]["regenerate_table"]
    assert regen == pytest.approx(arms["ft-monthly"]["cost"]["table_regenerations"] * n * (n - 1))
    assert fake_stack["rank_contexts"] <= 3 * 40 * n * (n - 1)


def test_lazy_tables_equal_full_tables(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["no-update"])
    with tempfile.TemporaryDirectory() as tmp:
        cache = WorkCache(build_stack(config, catalog, Path(tmp)), transitions)
        initial_adapter(cache, transitions.before(config.start_dt), config.start_dt, 10)
        everything = all_contexts(len(catalog))
        rng = np.random.default_rng(0)
        part = everything[rng.permutation(len(everything))[:9]]
        lazy_ids, _ = cache.rows_for(INITIAL, None, part)
        full_ids, _ = cache.rows_for(INITIAL, None, everything)
        keys = everything[:, 0] * len(catalog) + everything[:, 1]
        lookup = dict(zip(keys.tolist(), full_ids.tolist(), strict=True))
        for ctx, row in zip(part.tolist(), lazy_ids.tolist(), strict=True):
            assert lookup[ctx[0] * len(catalog) + ctx[1]] == row
        assert build_arms(config, transitions, cache)[0].name == "no-update"


def test_a_fine_tune_with_another_fine_tuner_trains_with_that_one(fake_stack, catalog) -> None:  # type: ignore[no-untyped-def]
    # the shared initial fine-tune trains with its own options: the engine's trainer carries that
    # fine-tuner and a reference a launched process would rebuild it from
    from hybridrec.plugins import build

    config = fake_config(arms=["no-update"])
    with tempfile.TemporaryDirectory() as tmp:
        stack = build_stack(config, catalog, Path(tmp))
        assert stack.training().fine_tuner is stack.fine_tuner
        assert stack.training().fine_tuner_ref == config.llm.fine_tuner
        other = build("fine_tuner", "fake-ft")
        trainer = stack.training(other)
        assert trainer.fine_tuner is other and trainer.fine_tuner_ref.plugin == "fake-ft"
        assert trainer.generator is stack.generator and trainer.catalog is catalog


def test_the_initial_adapter_trains_on_all_history_unless_warmup_days_is_set(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["no-update"])
    start = config.start_dt
    history = transitions.before(start)
    first = ts_to_datetime(int(history.ts[0]))
    with tempfile.TemporaryDirectory() as tmp:
        cache = WorkCache(build_stack(config, catalog, Path(tmp)), transitions)
        everything = initial_adapter(cache, history, start, None)
        assert everything.window == TimeWindow(start=first, end=start)
    with tempfile.TemporaryDirectory() as tmp:
        cache = WorkCache(build_stack(config, catalog, Path(tmp)), transitions)
        recent = initial_adapter(cache, history, start, 10)
        assert recent.window == TimeWindow(start=start - timedelta(days=10), end=start)
    assert first < start - timedelta(days=10)
    # The study's default is all history, and the report says which window the base trained on.
    llm = config.llm.model_copy(update={"warmup_days": None})
    report = _run(catalog, transitions, arms=["no-update"], llm=llm)
    assert report["setup"]["initial_adapter"]["window"] == [first.isoformat(), start.isoformat()]


def test_report_has_the_contract_schema_and_is_deterministic(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    arms = ["no-update", "hybrid", "markov-all", "popularity"]
    first = _run(catalog, transitions, arms=arms)
    second = _run(catalog, transitions, arms=arms)
    for a, b in zip(first["arms"], second["arms"], strict=True):
        assert a["metrics"] == b["metrics"] and a["ci95"] == b["ci95"]
        assert a["cost"]["flops"] == b["cost"]["flops"]
    assert first["paired"] == second["paired"]

    first["verdict"] = verdict(first)
    paths = write_report(first, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["schema"] == SCHEMA
    assert set(data["dataset"]) >= {"name", "clusters", "k", "test_start", "test_end", "test_transitions"}
    for arm in data["arms"]:
        assert set(arm) >= {"name", "llm", "metrics", "ci95", "cost", "per_day"}
        assert set(arm["metrics"]) >= {"hr@1", "hr@5", "ndcg@5", "exact_match_rate", "coverage"}
        assert set(arm["ci95"]) >= {"hr@5"}
        assert set(arm["cost"]) >= {"flops", "seconds", "fine_tunes", "knowledge_refreshes", "table_regenerations"}
        for day in arm["per_day"]:
            assert set(day) >= {"day", "n", "hr@5", "cum_flops", "actions"}
        cum = [d["cum_flops"] for d in arm["per_day"]]
        assert cum == sorted(cum)
    for pair in data["paired"]:
        assert set(pair) >= {"a", "b", "metric", "delta", "ci95"}
        assert pair["a"] == "hybrid"
    assert {p["b"] for p in data["paired"]} == {"no-update", "markov-all", "popularity"}
    markdown = (tmp_path / "report.md").read_text()
    assert markdown.startswith("# hybridrec backtest")
    assert "## Regeneration: what was ranked, copied and kept" in markdown
    for arm in data["arms"]:
        if arm["llm"]:  # the cost split adds up to the arm's cost, in flops and in seconds
            assert sum(arm["cost"]["flops_split"].values()) == pytest.approx(arm["cost"]["flops"])
            assert sum(arm["cost"]["seconds_split"].values()) == pytest.approx(arm["cost"]["seconds"])
            m = arm["metrics"]
            assert m["regenerated_contexts"] == m["regenerate_new"] + m["regenerate_changed"] + m["regenerate_stale"]
    documented = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    keys = set(data) | {k for arm in data["arms"] for part in ("", "metrics", "cost")
                        for k in (arm[part] if part else arm)}
    keys |= set(data["dataset"]) | set(data["bootstrap"]) | set(data["paired"][0])
    missing = sorted(k for k in keys if f"`{k}`" not in documented)
    assert not missing, f"report keys missing from docs/protocol.md: {missing}"
    assert (tmp_path / "hr5_over_time.png").stat().st_size > 0
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_an_adapter_failing_the_guardrails_is_charged_but_never_served(fake_stack, catalog, transitions, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.config import GuardrailConfig
    from hybridrec.testing import fakes

    config = fake_config(arms=["ft-weekly", "no-update"])
    config = config.model_copy(update={"llm": config.llm.model_copy(update={"guardrails": GuardrailConfig()})})
    monkeypatch.setitem(fakes.METRICS, "exact_match_rate", 0.5)
    report, result, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    weekly = {a["name"]: a for a in report["arms"]}["ft-weekly"]
    assert weekly["cost"]["fine_tunes"] >= 1
    assert weekly["cost"]["held_adapters"] == weekly["cost"]["fine_tunes"]
    assert weekly["cost"]["flops_by_action"]["fine_tune"] > 0
    assert result.run("ft-weekly").arm.adapter == INITIAL  # type: ignore[attr-defined]
    assert report["setup"]["initial_adapter"]["held_by_guardrails"]


def test_days_without_transitions_are_served_and_scored(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    # Three test days with no transitions at all, among them the first one: every arm must still
    # serve (an empty list of contexts), act on the day and report it with n = 0.
    from hybridrec.types import datetime_to_ts

    day = 86400
    gaps = [datetime_to_ts(datetime(2000, 1, d)) for d in (21, 25, 26)]
    keep = np.ones(len(transitions), dtype=bool)
    for lo in gaps:
        keep &= ~((transitions.ts >= lo) & (transitions.ts < lo + day))
    report = _run(catalog, transitions.take(np.flatnonzero(keep)))
    for arm in report["arms"]:
        empty = [d for d in arm["per_day"] if d["day"] in ("2000-01-21", "2000-01-25", "2000-01-26")]
        assert [d["n"] for d in empty] == [0, 0, 0], arm["name"]
        assert 0.0 < arm["metrics"]["hr@5"] <= 1.0


def test_a_several_seed_study_writes_its_report_and_plots(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # With several training seeds an arm's HR@5 is the mean over seeds, which the first seed's
    # CI need not contain; the quality-vs-cost plot draws the min-max over seeds instead.
    report = _run(catalog, transitions, arms=["no-update", "rag-once", "hybrid", "markov-all"], seeds=2)
    hybrid = next(a for a in report["arms"] if a["name"] == "hybrid")
    lo, hi = hybrid["ci95"]["hr@5"]
    # as with real seeds: a mean above the first seed's CI, inside the seeds' min-max
    hybrid["metrics"]["hr@5"] = hi + 0.01
    hybrid["seeds"]["min"]["hr@5"], hybrid["seeds"]["max"]["hr@5"] = lo, hi + 0.02
    paths = write_report(report, tmp_path)
    written = json.loads(paths["json"].read_text())
    assert written["seeds"]["training_seeds"] == [0, 1]
    assert paths["quality vs cost"].exists() and paths["HR@5 over time"].exists()


def test_a_figure_that_fails_does_not_lose_the_report(fake_stack, catalog, transitions, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.backtest import report as report_module

    def broken(report: dict, path: Path) -> Path:
        raise ValueError("cannot draw")

    monkeypatch.setattr(report_module, "plot_pareto", broken)
    report = _run(catalog, transitions, arms=["no-update", "markov-all"])
    with pytest.raises(ValueError, match="cannot draw"):
        write_report(report, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text())["schema"] == SCHEMA
    assert (tmp_path / "report.md").exists()


def test_the_backtest_engine_skips_what_does_not_fit_the_budget(fake_stack, catalog, transitions, hybridrec_plugin) -> None:  # type: ignore[no-untyped-def]
    # A policy that ignores its budget: the engine, not the policy, keeps the arm within it.
    from typing import ClassVar

    from pydantic import BaseModel

    from hybridrec import hookimpl
    from hybridrec.config import PluginRef
    from hybridrec.interfaces import UpdatePolicy
    from hybridrec.types import Budget, FineTune, RegenerateTable, TimeWindow

    class NoOptions(BaseModel):
        pass

    class Greedy(UpdatePolicy):
        name: ClassVar[str] = "test-greedy"
        Options: ClassVar[type[BaseModel]] = NoOptions

        def decide(self, state):  # type: ignore[no-untyped-def]
            return [FineTune(window=TimeWindow.ending_at(state.data_until, 7), reason="always"),
                    RegenerateTable(reason="always")]

    class Plugin:
        @hookimpl
        def register_update_policies(self, register):  # type: ignore[no-untyped-def]
            register(Greedy)

    hybridrec_plugin(Plugin(), name="greedy")
    config = fake_config(arms=["hybrid"], end=datetime(2000, 1, 25).date())
    llm = config.llm.model_copy(update={"budget": Budget(flops=1.0),
                                        "policies": {**config.llm.policies, "hybrid": PluginRef(plugin="test-greedy")}})
    report, _, _ = run_backtest(config.model_copy(update={"llm": llm}), data=(catalog, transitions), drift=False)
    arm = report["arms"][0]
    assert arm["cost"]["fine_tunes"] == 0 and arm["cost"]["table_regenerations"] == 0
    assert arm["cost"]["flops"] == 0
    assert all(label.startswith("skipped(over budget):") for label in arm["initial_actions"])


def test_an_arm_keeps_a_budget_of_its_own_and_reports_money(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.backtest import run_backtest
    from hybridrec.backtest.config import ArmSpec
    from hybridrec.types import Budget

    config = fake_config(arms={"hybrid": ArmSpec(), "frugal": ArmSpec(preset="hybrid",
                                                                      budget=Budget(period_days=30.0, flops=0.0))})
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    arms = {a["name"]: a for a in report["arms"]}
    assert arms["frugal"]["config"]["budget"]["flops"] == 0.0 and "budget" not in arms["hybrid"]["config"]
    assert arms["frugal"]["cost"]["flops"] == 0.0 < arms["hybrid"]["cost"]["flops"]
    assert all(label.startswith("skipped(over budget):") for d in arms["frugal"]["per_day"]
               for label in d["actions"])
    assert arms["frugal"]["config"]["pipeline"]["budget"]["flops"] == 0.0  # what init --from-report deploys
    assert "money" in arms["hybrid"]["cost"]
