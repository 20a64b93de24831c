"""Validation chooses the LLM stack (``[tune]``, ``hybridrec tune``, ``backtest --tune``): every
candidate scored on the days before the start, markov-best's rule, and a pipeline file a
workspace deploys."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import N_CLUSTERS, drifting_transitions, fake_config

from hybridrec.backtest import run_backtest
from hybridrec.backtest.config import BacktestConfig, TuneConfig
from hybridrec.backtest.metrics import DayGroups
from hybridrec.backtest.tune import Candidate, _choose, candidates, tune_stack, with_change
from hybridrec.config import load_config, load_preset, pipeline_toml
from hybridrec.errors import ConfigError
from hybridrec.testing.cli import run_cli as cli
from hybridrec.toml_text import dumps
from hybridrec.types import ClusterCatalog

SPACE = {"fine_tune": {"strict": {"recall": 0.5}}, "recent_days": [0, 3], "candidates": [10, 4]}


def _catalog() -> ClusterCatalog:
    return ClusterCatalog.from_descriptions([f"genre{i}" for i in range(N_CLUSTERS)])


def _study(**tune: object) -> BacktestConfig:
    return fake_config(arms=["hybrid", "rag-only", "markov-best"], tune={**SPACE, **tune})


def test_every_candidate_is_scored_on_the_days_before_the_start_and_no_later(fake_stack) -> None:  # type: ignore[no-untyped-def]
    config, data = _study(), drifting_transitions()
    tuned = tune_stack(config, _catalog(), data, run=run_backtest)
    entry = tuned.report
    assert entry["window"] == ["2000-01-07", "2000-01-21"] and entry["days"] == 14
    labels = [c["label"] for c in entry["candidates"]]
    assert labels == ["configured", "rag_every_days=1", "rag_every_days=4", "fine_tune=configured",
                      "fine_tune=strict", "recent_days=3", "candidates=4"]
    assert all(c["scored"] and 0 <= c["hr@5"] <= 1 for c in entry["candidates"])
    # the policy candidates share the incumbent's replay; every other stack has its own
    assert [c["run"] for c in entry["candidates"]] == [0, 0, 0, 0, 1, 2, 3] and entry["runs"] == 4
    assert set(entry["choices"]) == {"policy.rag_every_days", "fine_tune", "recent_days", "candidates"}
    assert entry["markov_best"]["hr@5"] is not None
    assert tuned.config.tune.enabled is False
    # Test days are never read: rows after the start change nothing.
    cut = data.take(np.flatnonzero(data.ts < int(config.start_dt.timestamp())))
    again = tune_stack(config, _catalog(), cut, run=run_backtest).report
    assert {k: v for k, v in again.items() if k not in ("seconds", "run_seconds")} == \
        {k: v for k, v in entry.items() if k not in ("seconds", "run_seconds")}


def test_the_budget_leaves_candidates_out_and_says_so(fake_stack) -> None:  # type: ignore[no-untyped-def]
    entry = tune_stack(_study(max_runs=2), _catalog(), drifting_transitions(), run=run_backtest).report
    assert entry["runs"] == 2
    assert entry["not_run"] == ["recent_days=3", "candidates=4"]
    assert [c["scored"] for c in entry["candidates"]][-2:] == [False, False]


def test_the_rule_prefers_the_best_unless_a_cheaper_candidate_ties() -> None:
    days = np.repeat(np.arange(20), 50)
    groups = DayGroups(day_of=days, n_days=20)
    rng = np.random.default_rng(0)
    base = (rng.random(days.size) < 0.4).astype(float)
    config = BacktestConfig()

    def cand(label: str, values: np.ndarray, flops: float) -> Candidate:
        return Candidate(label, "x", label, config, values=values, flops=flops)

    better = base.copy()
    better[np.flatnonzero(base == 0)[::4]] = 1.0  # clearly better on every day
    incumbent = cand("incumbent", base, 10.0)
    assert _choose([incumbent, cand("better", better, 20.0)], groups, config).label == "better"
    # a hair better but not on the days: the cheaper one is a tie and wins
    hair = base.copy()
    hair[np.flatnonzero(base == 0)[:2]] = 1.0
    assert _choose([incumbent, cand("hair", hair, 20.0)], groups, config).label == "incumbent"
    assert _choose([cand("hair", hair, 5.0), incumbent], groups, config).label == "hair"
    # equal cost (within 1%): the earlier candidate, the incumbent first
    assert _choose([incumbent, cand("same", base, 10.05)], groups, config).label == "incumbent"


def test_changes_reach_the_roles_the_way_a_study_file_would() -> None:
    config = BacktestConfig(arms=["hybrid", "rag-only", "ft-monthly", "markov-best"])
    recent = with_change(config, "recent_days", 3)
    assert recent.llm.evidence.recent_days == 3
    assert recent.llm.knowledge_store.options["recent_days"] == 3
    assert recent.llm.generator.options["rerank_recent"] is True
    assert recent.llm.fine_tuner.options["evidence_recent_days"] == 3
    assert with_change(recent, "recent_days", 0).llm.evidence.recent_days is None
    slots = with_change(config, "candidates", 16).llm
    assert slots.generator.options["evidence_items"] == 16 and slots.knowledge_store.options["m"] == 16
    # a cadence of hybrid's: rag-only (which followed the preset's) follows it
    faster = with_change(config, "policy.rag_every_days", 1.0)
    assert faster.arm_plan("hybrid").policy.options["rag_every_days"] == 1.0  # type: ignore[union-attr]
    assert faster.arm_plan("rag-only").policy.options["period_days"] == 1.0  # type: ignore[union-attr]
    assert faster.arm_plan("ft-monthly").policy == config.arm_plan("ft-monthly").policy
    # a fine-tune recipe changes the periodic fine-tunes, never the base model
    full = with_change(config, "fine_tune", "full").llm
    assert full.fine_tuner.options["mode"] == "full"
    first = full.initial_fine_tune().fine_tuner(full.fine_tuner).options
    before = config.llm.initial_fine_tune().fine_tuner(config.llm.fine_tuner).options
    assert first["mode"] == "lora" and first["holdout_max"] == before["holdout_max"] == 500
    assert first["max_examples"] == before["max_examples"] == 40000


def test_the_default_search_space_and_its_checks() -> None:
    config = BacktestConfig()
    labels = [c.label for c in candidates(config)]
    assert labels == ["configured", "rag_every_days=1", "rag_every_days=2", "fine_tune=configured",
                      "fine_tune=full", "fine_tune=window", "recent_days=3", "candidates=16",
                      "candidates=5"]
    with pytest.raises(ValueError, match="configured"):
        TuneConfig(fine_tune={"configured": {}})
    with pytest.raises(ConfigError, match="not in the study"):
        tune_stack(BacktestConfig(arms=["rag-only"]), _catalog(), drifting_transitions(), run=run_backtest)
    with pytest.raises(ConfigError, match="counting arm"):
        tune_stack(BacktestConfig(arms=["markov-all"], tune={"arm": "markov-all"}), _catalog(),
                   drifting_transitions(), run=run_backtest)


def test_the_pipeline_file_reads_back_as_the_same_pipeline(tmp_path: Path) -> None:
    preset = load_preset("rerank")
    text = pipeline_toml(preset, header="tuned on validation\nsecond line")
    assert text.startswith("# tuned on validation\n# second line\n")
    path = tmp_path / "p.toml"
    path.write_text(text)
    back = load_config(path)
    assert back.model_dump(exclude={"preset"}) == preset.model_dump(exclude={"preset"})
    assert dumps({"a b": 1, "t": {"x": [1.5, "q\""], "inner": {"k": True}, "empty": {}}}) == (
        '"a b" = 1\n\n[t]\nx = [1.5, "q\\""]\nempty = {}\n\n[t.inner]\nk = true\n')
    with pytest.raises(ValueError, match="None"):
        dumps({"a": [1, None]})


def test_tune_writes_a_pipeline_a_workspace_deploys(
    fake_stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    study = tmp_path / "study.toml"
    config = _study(candidates=[10], recent_days=[0], fine_tune={})
    data = config.model_dump(mode="json", exclude_none=True, exclude={"claims"})
    data["arms"] = list(config.arms)
    study.write_text(dumps(data))
    out, as_json = tmp_path / "tuned.toml", tmp_path / "tuning.json"
    code, text, err = cli(capsys, "tune", "--config", str(study), "--out", str(out), "--json", str(as_json))
    assert code == 0, err
    entry = json.loads(as_json.read_text())
    assert "chosen:" in text and "against markov-best" in text and str(out) in text
    written = tomllib.loads(out.read_text())
    assert out.read_text().startswith("# Written by `hybridrec tune`")
    chosen = entry["chosen_config"]["policy"]["options"]["rag_every_days"]
    assert written["update_policy"]["options"]["rag_every_days"] == chosen
    assert written.get("evidence") == {k: v for k, v in entry["chosen_config"]["evidence"].items() if v is not None}
    assert written["generator"] == {"plugin": "fake-gen", "options": {}}
    code, _, err = cli(capsys, "init", str(tmp_path / "ws"), "--config", str(out))
    assert code == 0, err
    code, shown, _ = cli(capsys, "config", "show", str(tmp_path / "ws"), "--json")
    assert json.loads(shown)["update_policy"] == written["update_policy"]


def test_backtest_tune_runs_the_test_days_with_the_choice(fake_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = _study(enabled=True, candidates=[10], recent_days=[0], fine_tune={},
                    policy={"rag_every_days": [2.0, 4.0]})
    report, _, _ = run_backtest(config, data=(_catalog(), drifting_transitions()), drift=False)
    entry = report["tuning"]
    hybrid = next(a for a in report["arms"] if a["name"] == "hybrid")
    assert hybrid["config"]["pipeline"]["update_policy"]["options"]["rag_every_days"] == \
        entry["choices"]["policy.rag_every_days"]
    # the report's chosen stack is the one the test days ran, its evidence as chosen for the start
    assert entry["chosen_config"]["evidence"] == hybrid["config"]["pipeline"]["evidence"]
    from hybridrec.backtest.report import render_markdown

    assert "## Tuning: the LLM stack chosen on the validation days" in render_markdown(report, {})


def test_a_tuned_arm_with_its_own_stack_is_refused() -> None:
    config = BacktestConfig.model_validate({
        "arms": {"mine": {"preset": "hybrid", "knowledge_store": {"plugin": "exact"}}},
        "tune": {"arm": "mine"}})
    with pytest.raises(ConfigError, match="its own knowledge_store"):
        tune_stack(config, _catalog(), drifting_transitions(), run=run_backtest)


def test_the_dimensions_choices_apply_together(fake_stack, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import hybridrec.backtest.tune as tune

    # every dimension changes: each pool's last candidate is "chosen"
    monkeypatch.setattr(tune, "_choose", lambda pool, groups, config, ties=True: pool[-1])
    tuned = tune_stack(_study(), _catalog(), drifting_transitions(), run=run_backtest)
    entry = tuned.report
    assert entry["choices"] == {"policy.rag_every_days": 4.0, "fine_tune": "strict", "recent_days": 3,
                                "candidates": 4}
    combined = entry["candidates"][-1]
    assert combined["dimension"] == "combined" and combined["scored"] and combined["run"] == 4
    assert combined["value"] == ["rag_every_days=4", "recent_days=3", "candidates=4"]
    # the combination is kept unless the best single change beats it; either way the chosen study
    # carries the fine-tune recipe chosen under the probe
    assert entry["chosen"] == combined["label"] or entry["chosen"] in combined["value"]
    assert tuned.config.llm.fine_tuner.options["recall"] == 0.5
    if entry["chosen"] == combined["label"]:
        assert tuned.config.llm.evidence.recent_days == 3 and tuned.config.llm.evidence.candidates == 4
        assert tuned.config.arm_plan("hybrid").policy.options["rag_every_days"] == 4.0  # type: ignore[union-attr]


def test_a_choice_that_loses_to_markov_best_falls_back_to_each_dimensions_best_mean(
        fake_stack, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import hybridrec.backtest.tune as tune

    # The cheaper ties keep the incumbent in every dimension, the best means change each one,
    # and every stack loses to markov-best on the validation days.
    monkeypatch.setattr(tune, "_choose", lambda pool, groups, config, ties=True: pool[0] if ties else pool[-1])
    monkeypatch.setattr(tune, "_paired", lambda a, b, groups, config: {
        "delta": -0.01, "ci95": [-0.02, -0.005], "excludes_zero": True})
    tuned = tune_stack(_study(), _catalog(), drifting_transitions(), run=run_backtest)
    entry = tuned.report
    floor = entry["floor"]
    best = entry["candidates"][-1]
    assert best["label"] == floor["candidate"] and best["label"].startswith("best means: ")
    assert best["value"] == ["rag_every_days=4", "recent_days=3", "candidates=4"]
    assert best["scored"] and best["run"] == 4 and entry["runs"] == 5
    configured = entry["candidates"][0]
    # it replaces the choice exactly when it scores higher on the validation days
    assert floor["applied"] == (best["hr@5"] > configured["hr@5"])
    if floor["applied"]:
        assert entry["chosen"] == best["label"]
        assert tuned.config.llm.evidence.recent_days == 3 and tuned.config.llm.evidence.candidates == 4
        assert entry["choices"]["fine_tune"] == "strict"  # the best mean under the probe too
    else:
        assert entry["chosen"] == "configured" and tuned.config.llm.evidence.candidates == 10
    # a choice that does not lose to markov-best is left alone
    monkeypatch.setattr(tune, "_paired", lambda a, b, groups, config: {
        "delta": 0.0, "ci95": [-0.01, 0.01], "excludes_zero": False})
    calm = tune_stack(_study(), _catalog(), drifting_transitions(), run=run_backtest).report
    assert calm["floor"] == {"applied": False, "candidate": None} and calm["chosen"] == "configured"
    assert calm["runs"] == 4


def test_demo_and_backtest_take_tune_as_a_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hybridrec.cli.backtest_cmd as cmd
    from hybridrec.cli import main

    seen: list[BacktestConfig] = []
    monkeypatch.setattr(cmd, "_run", lambda config, out, quiet=False: seen.append(config))
    main(["demo", "--tune", "--quiet", "--out", str(tmp_path / "d")])
    main(["demo", "--quiet", "--out", str(tmp_path / "e")])
    study = tmp_path / "s.toml"
    study.write_text('arms = ["hybrid", "markov-best"]\n')
    main(["backtest", "--config", str(study), "--tune", "--quiet", "--out", str(tmp_path / "f")])
    assert [c.tune.enabled for c in seen] == [True, False, True]
    assert seen[0].tune == TuneConfig(enabled=True)  # the default search space


def test_a_bad_tune_table_is_refused_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_data_reads: None
) -> None:
    path = tmp_path / "study.toml"
    path.write_text('arms = ["hybrid", "markov-best"]\n[tune]\npolicy = { nope = [1.0] }\n')
    code, _, err = cli(capsys, "tune", "--config", str(path), "--out", str(tmp_path / "p.toml"))
    assert code == 2 and f"{path}: invalid options for update_policy plugin 'hybrid'" in err
    assert "tune.policy.nope" in err and not (tmp_path / "p.toml").exists()
    code, _, err = cli(capsys, "backtest", "--config", str(path), "--tune", "--out", str(tmp_path / "r"))
    assert code == 2 and "tune.policy.nope" in err
