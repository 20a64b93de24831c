"""Free-named arms (``[arms.<name>]``): presets, per-arm policy / cost model / stack, the report's
plugins, options and decided actions with reasons, and signals measured on demand."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import fake_config
from hybridrec_policies.policies import PeriodicRagPolicy

from hybridrec.backtest import run_backtest
from hybridrec.backtest.config import BacktestConfig, load_backtest_config
from hybridrec.backtest.llm import WorkCache
from hybridrec.backtest.report import render_markdown
from hybridrec.backtest.study import build_arms, build_stack
from hybridrec.config import PluginRef
from hybridrec.engine.state import SignalWarning
from hybridrec.errors import ConfigError
from hybridrec.hookspecs import hookimpl
from hybridrec.testing.fakes import FakeCost
from hybridrec.types import ActionKind, CostEstimate, DriftStats, SystemState, Workload

#: the drift each probe policy saw, by policy name
SEEN: dict[str, list[DriftStats]] = defaultdict(list)


class RecallProbe(PeriodicRagPolicy):
    """``periodic-rag`` that needs the recall signals and records what its state carried."""

    name: ClassVar[str] = "recall-probe"
    needs: ClassVar[frozenset[str]] = frozenset({"recall"})

    def decide(self, state: SystemState) -> list[Any]:
        SEEN[self.name].append(state.drift)
        return super().decide(state)


class DriftProbe(RecallProbe):
    name: ClassVar[str] = "drift-probe"
    needs: ClassVar[frozenset[str]] = frozenset({"drift"})


class UnknownSignalProbe(RecallProbe):
    name: ClassVar[str] = "ctr-probe"
    needs: ClassVar[frozenset[str]] = frozenset({"recall", "ctr"})


class DoubleCost(FakeCost):
    """``fake-cost`` at twice the price."""

    name: ClassVar[str] = "double-cost"

    def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
        single = super().estimate(action, workload)
        return single.model_copy(update={"flops": 2 * single.flops, "model": self.name})


class _TestPlugins:
    @hookimpl
    def register_update_policies(self, register: Any) -> None:
        for cls in (RecallProbe, DriftProbe, UnknownSignalProbe):
            register(cls)

    @hookimpl
    def register_cost_models(self, register: Any) -> None:
        register(DoubleCost)


@pytest.fixture
def probes(fake_stack, hybridrec_plugin) -> None:  # type: ignore[no-untyped-def]
    hybridrec_plugin(_TestPlugins(), name="free-arms-test")
    SEEN.clear()


def _arms(config: BacktestConfig) -> dict[str, Any]:
    hybrid = config.llm.policies["hybrid"]
    return {
        "recall-gate": {"policy": {"plugin": "recall-probe", "options": {"knowledge_days": 14.0}}},
        "drift-gate": {"policy": {"plugin": "drift-probe", "options": {"knowledge_days": 14.0}}},
        "hybrid": {},
        "my-hybrid": {"policy": hybrid.model_dump()},
        "dear-hybrid": {"preset": "hybrid", "cost_model": {"plugin": "double-cost"}},
        "own-generator": {"preset": "hybrid", "generator": {"plugin": "fake-prompt-gen"}},
        "backoff-60d": {"preset": "markov-backoff", "options": {"half_life_days": 60.0}},
        "markov-all": {},
    }


def test_free_named_arms_run_with_their_own_plugins_and_are_reported(probes, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    base = fake_config(end=date(2000, 2, 10))
    llm = base.llm.model_copy(update={"drift_arms": ["my-hybrid"]})
    config = fake_config(end=date(2000, 2, 10), arms=_arms(base), llm=llm)
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    arms = {a["name"]: a for a in report["arms"]}
    assert list(arms) == list(_arms(base))

    def hr(name: str) -> list[float]:
        return [d["hr@5"] for d in arms[name]["per_day"]]

    # A free-named arm with the preset's policy is that preset, day by day and flop by flop.
    assert hr("my-hybrid") == hr("hybrid")
    assert arms["my-hybrid"]["cost"] == arms["hybrid"]["cost"]
    # A per-arm cost model prices (and records) the same shared work differently.
    assert hr("dear-hybrid") == hr("hybrid")
    assert arms["dear-hybrid"]["cost"]["flops"] == pytest.approx(2 * arms["hybrid"]["cost"]["flops"])
    # A per-arm generator gets a stack of its own, with its own initial adapter.
    assert [s["arms"] for s in report["setup"]["stacks"]] == [["own-generator"]]
    assert report["setup"]["stacks"][0]["generator"]["plugin"] == "fake-prompt-gen"
    assert hr("own-generator") == hr("hybrid")

    # Each arm's plugins and options.
    gate = arms["recall-gate"]["config"]
    assert gate["policy"] == {"plugin": "recall-probe", "options": {"knowledge_days": 14.0}}
    assert gate["preset"] is None and gate["generator"]["plugin"] == "fake-gen"
    assert gate["shared"] == ["generator", "fine_tuner", "knowledge_store", "cost_model"]
    dear = arms["dear-hybrid"]["config"]
    assert dear["preset"] == "hybrid" and dear["cost_model"]["plugin"] == "double-cost"
    assert "cost_model" not in dear["shared"]
    assert arms["backoff-60d"]["config"]["preset"] == "markov-backoff"
    assert arms["backoff-60d"]["config"]["half_life_days"] == 60.0
    assert arms["backoff-60d"]["config"]["alpha"] == config.markov_backoff.alpha  # the study's, kept

    # Every day's decided actions, with the policy's reasons and what came of them.
    decided = [d for day in arms["hybrid"]["per_day"] for d in day["decisions"]]
    assert decided and all(set(d) == {"action", "reason", "outcome"} and d["reason"] for d in decided)
    assert [d["outcome"] for day in arms["hybrid"]["per_day"] for d in day["decisions"]] == [
        a for day in arms["hybrid"]["per_day"] for a in day["actions"]]
    assert {d["action"] for d in arms["hybrid"]["initial_decisions"]} >= {"regenerate_table"}
    assert "decisions" not in arms["markov-all"]["per_day"][0]

    # Signals on demand: each policy's state carries what it needs, nothing else.
    assert arms["recall-gate"]["config"]["signals"] == ["recall"]
    assert arms["drift-gate"]["config"]["signals"] == ["drift"]
    assert arms["hybrid"]["config"]["signals"] == []
    assert arms["my-hybrid"]["config"]["signals"] == ["drift", "freshness", "recall"]  # llm.drift_arms
    recall_seen = SEEN["recall-probe"]
    assert any(d.recall_recent is not None for d in recall_seen)
    assert any(d.recall_at_training is not None for d in recall_seen)
    assert all(d.top5_jaccard is None and d.pairs == 0 for d in recall_seen)
    drift_seen = SEEN["drift-probe"]
    assert any(d.pairs > 0 for d in drift_seen)
    assert all(d.recall_recent is None and d.recall_at_training is None for d in drift_seen)

    # report.md names every arm in the summary and shows its plugins and options.
    text = render_markdown(report, {})
    for name in arms:
        assert f"| {name} |" in text
    assert "| recall-gate | – | `recall-probe` | `{\"knowledge_days\": 14.0}` | shared | recall |" in text
    assert "cost_model `double-cost`" in text
    assert "Own stack of own-generator: generator `fake-prompt-gen`" in text


def test_a_needed_signal_the_engine_cannot_measure_is_warned_about(probes, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms={"ctr": {"policy": {"plugin": "ctr-probe"}}})
    with tempfile.TemporaryDirectory() as tmp:
        cache = WorkCache(build_stack(config, catalog, Path(tmp)), transitions)
        with pytest.warns(SignalWarning, match=r"arm 'ctr'.*'ctr-probe' needs 'ctr'.*drift, recall"):
            [arm] = build_arms(config, transitions, cache)
    assert arm.describe()["signals"] == ["recall"]  # type: ignore[index]


def test_the_list_form_is_the_table_form_of_presets() -> None:
    listed = BacktestConfig(arms=["hybrid", "markov-all"])
    tabled = BacktestConfig.model_validate({"arms": {"hybrid": {}, "markov-all": {}}})
    assert listed == tabled and listed.llm_arms() == ["hybrid"]
    assert listed.arm_plan("hybrid").policy == listed.llm.policies["hybrid"]
    # [llm.policies.<arm>] still replaces a preset's policy, also for arms built from it
    custom = PluginRef(plugin="periodic-rag", options={"period_days": 3.0})
    legacy = BacktestConfig.model_validate({
        "arms": {"hybrid": {}, "twin": {"preset": "hybrid"}},
        "llm": {"policies": {"hybrid": custom.model_dump()}}})
    # (its knowledge window from the study's evidence recipe)
    expected = PluginRef(plugin="periodic-rag", options={
        "period_days": 3.0, "knowledge_days": legacy.llm.evidence.history_days})
    assert legacy.arm_plan("hybrid").policy == legacy.arm_plan("twin").policy == expected


def _study(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text('dataset = "synthetic"\nstart = 2000-01-31\nend = 2000-02-05\n' + text)
    return path


@pytest.mark.parametrize(("table", "message"), [
    ('[arms.gate]\n', r"\[arms\.gate\] needs a policy"),
    ('[arms.gate]\npreset = "hybird"\n', r"preset 'hybird' is not a built-in arm \(did you mean 'hybrid'\?\)"),
    ('[arms.hybird]\n', r"\[arms\.hybird\] needs a policy.*did you mean 'hybrid'"),
    ('[arms.counts]\npreset = "markov-all"\npolicy = { plugin = "hybrid" }\n', r"counting arm: it takes no policy"),
    ('[arms.counts]\npreset = "markov-recent"\ngenerator = { plugin = "hf" }\n', r"takes no generator"),
    ('[arms.counts]\npreset = "markov-backoff"\noptions = { alpha = -1 }\n', r"options of 'markov-backoff': alpha"),
    ('[arms.gate]\npreset = "hybrid"\noptions = { x = 1 }\n', r"options apply to counting presets only"),
    ('[arms.gate]\npolicy = { plugin = "hybrid", options = { rag_every_days = "often" } }\n',
     r"(?s)study\.toml.*\[arms\.gate\.policy\.options\] rag_every_days"),
    ('[arms.gate]\npolicy = { plugin = "hybrid" }\ncost_model = { plugin = "flops", options = { nope = 1 } }\n',
     r"(?s)\[arms\.gate\.cost_model\.options\] nope"),
    ('[arms.gate]\npolicy = { plugin = "no-such-policy" }\n', r"unknown update_policy 'no-such-policy'"),
])
def test_arm_tables_are_validated_before_any_data_is_read(tmp_path, table: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=message) as caught:
        load_backtest_config(_study(tmp_path, table))
    assert str(tmp_path / "study.toml") in str(caught.value)


def test_arms_on_the_command_line_pick_among_the_studys_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = _study(tmp_path, '[arms.gate]\npolicy = { plugin = "adaptive", options = { rule = "drift" } }\n'
                            '[arms.markov-all]\n')
    picked = load_backtest_config(path, arms=["gate", "popularity"])
    assert list(picked.arms) == ["gate", "popularity"]
    assert picked.arm_plan("gate").policy == PluginRef(plugin="adaptive", options={
        "rule": "drift", "knowledge_days": picked.llm.evidence.history_days})
    with pytest.raises(ConfigError, match=r"--arms names \['gaet'\].*its arms are gate, markov-all"):
        load_backtest_config(path, arms=["gaet"])
