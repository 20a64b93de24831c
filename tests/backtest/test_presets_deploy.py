"""What the backtest measures is what a workspace deploys: the shipped preset is the backtest's
shared stack and plain ``init``'s pipeline, and ``init --from-report`` deploys a report's arm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import fake_config

from hybridrec.backtest import run_backtest
from hybridrec.backtest.config import BacktestConfig
from hybridrec.config import load_config, load_preset, pipeline_from_report
from hybridrec.errors import ConfigError
from hybridrec.presets import preset_names
from hybridrec.testing.cli import run_cli as cli


def test_the_backtests_shared_stack_is_the_rerank_preset() -> None:
    preset, llm = load_preset("rerank"), BacktestConfig().llm
    assert "rerank" in preset_names() and preset.preset == "rerank"
    for role in ("generator", "fine_tuner", "knowledge_store", "cost_model"):
        assert getattr(preset, role) == getattr(llm, role), role
    assert preset.initial_fine_tune.options == llm.initial_fine_tune_options
    assert preset.initial_fine_tune.window_days == "all" and llm.warmup_days is None
    assert preset.serving.k == llm.table_k
    hybrid = llm.policies["hybrid"]
    assert preset.update_policy.plugin == hybrid.plugin
    assert preset.update_policy.options == hybrid.options


def test_plain_init_deploys_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "init", str(tmp_path / "ws"))
    assert code == 0, err
    assert "preset 'rerank'" in out
    code, shown, _ = cli(capsys, "config", "show", str(tmp_path / "ws"), "--json")
    assert code == 0
    deployed = json.loads(shown)
    code, preset, _ = cli(capsys, "config", "show", "--preset", "rerank", "--json")
    assert deployed == json.loads(preset)
    assert deployed["generator"]["options"] == BacktestConfig().llm.generator.options
    code, text, _ = cli(capsys, "config", "show", str(tmp_path / "ws"))
    assert code == 0 and "first fine-tune" in text and "all data before the clock" in text
    assert '"candidates": 10' in text.splitlines()[1]  # the evidence recipe, before the roles


def test_a_file_starting_from_the_preset_merges_or_replaces_roles(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text('preset = "rerank"\n'
                    '[generator.options]\nrerank_numeric = false\n'
                    '[update_policy]\nplugin = "adaptive"\noptions = { rule = "drift" }\n')
    config, preset = load_config(path), load_preset("rerank")
    assert config.generator.options == {**preset.generator.options, "rerank_numeric": False}
    # another plugin: replaced (its knowledge window from the preset's evidence recipe)
    assert config.update_policy.options == {"rule": "drift", "knowledge_days": 3650.0}
    assert config.fine_tuner == preset.fine_tuner and config.initial_fine_tune == preset.initial_fine_tune
    # the evidence recipe is a section like any other: the file's values merge over the preset's
    path.write_text('preset = "rerank"\n[evidence]\ncandidates = 16\n')
    more = load_config(path)
    assert more.evidence is not None and preset.evidence is not None
    assert more.evidence.alpha == preset.evidence.alpha
    assert more.generator.options["evidence_items"] == more.knowledge_store.options["m"] == 16
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "rernak"\n')
    with pytest.raises(ConfigError, match=r"unknown preset 'rernak'.*did you mean 'rerank'"):
        load_config(bad)


def test_initial_fine_tune_options_are_validated_at_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "init", str(tmp_path / "ws"), "--set", "initial_fine_tune.options.base_epochs=-1")
    assert code == 2 and "initial_fine_tune.options" in err and "base_epochs" in err
    assert not (tmp_path / "ws").exists()


def test_a_report_arm_deploys_exactly_what_it_ran(
    fake_stack: Any, catalog: Any, transitions: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = fake_config(arms=["hybrid", "adaptive", "markov-all"], seed=4)
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    for arm in ("hybrid", "adaptive"):
        recorded = next(a for a in report["arms"] if a["name"] == arm)["config"]["pipeline"]
        assert recorded["update_policy"] == next(
            a for a in report["arms"] if a["name"] == arm)["config"]["policy"]
        assert recorded["seed"] == 4 and recorded["generator"]["plugin"] == "fake-gen"
        assert recorded["initial_fine_tune"]["window_days"] == 10.0  # the study's warmup_days
        code, _, err = cli(capsys, "init", str(tmp_path / arm), "--from-report", str(path), "--arm", arm)
        assert code == 0, err
        code, shown, _ = cli(capsys, "config", "show", str(tmp_path / arm), "--json")
        assert json.loads(shown) == recorded
    with pytest.raises(ConfigError, match="counting arm"):
        pipeline_from_report(path, "markov-all")
    with pytest.raises(ConfigError, match=r"no arm 'hybird'.*did you mean 'hybrid'"):
        pipeline_from_report(path, "hybird")
    code, _, err = cli(capsys, "init", str(tmp_path / "x"), "--from-report", str(path))
    assert code == 2 and "--arm" in err
    code, _, err = cli(capsys, "init", str(tmp_path / "x"), "--preset", "rerank", "--from-report", str(path))
    assert code == 2 and "give one of" in err


def test_a_set_that_names_another_plugin_replaces_the_role(tmp_path: Path) -> None:
    config = load_preset("rerank", overrides=("update_policy.plugin=adaptive",
                                              "fine_tuner.options.max_examples=100"))
    assert config.update_policy.plugin == "adaptive"
    assert config.update_policy.options == {"knowledge_days": load_preset("rerank").evidence.history_days}  # type: ignore[union-attr]
    assert config.fine_tuner.options == {**load_preset("rerank").fine_tuner.options, "max_examples": 100}
