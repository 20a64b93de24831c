"""One pipeline, two drivers: the study's test days run through a real workspace on disk give the
backtest's per-day numbers exactly (real plugins: the tiny hf re-ranker, lora, the backoff store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hybridrec.backtest import BacktestConfig, load_backtest_config, run_backtest
from hybridrec.backtest.workspace_replay import (
    PARITY_ARMS,
    PARITY_QUICK,
    parity_differences,
    parity_suite,
    replay_workspace,
)
from hybridrec.errors import ConfigError
from hybridrec.plugins import registry
from hybridrec.testing.cli import run_cli


def quick_study(*arms: str) -> BacktestConfig:
    return BacktestConfig.model_validate({**PARITY_QUICK, "arms": list(arms or ("hybrid", "adaptive"))})


def test_the_workspace_replay_equals_the_backtest_for_hybrid_and_adaptive(tmp_path: Path) -> None:
    result = parity_suite(quick=True, workdir=tmp_path)
    assert "parity" in registry().bench_suites
    for arm in PARITY_ARMS:
        assert result[f"{arm}_differences"] == 0, result.get(f"{arm}_first_difference")
        assert 0.0 < result[f"{arm}_hr@5"] <= 1.0 and result[f"{arm}_flops"] > 0
    # The arms exercised every rule the drivers must agree on: rows kept within the tolerance
    # (the preset's), none kept by exact delta, rows ranked past the staleness bound.
    assert result["hybrid_kept_close"] > 0 and result["hybrid-exact_kept_close"] == 0
    assert result["hybrid-stale_ranked_stale"] > 0


def test_the_replay_drives_the_workspace_not_the_backtests_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridrec.backtest import llm

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the replay used the backtest's in-memory path")

    monkeypatch.setattr(llm.WorkCache, "__init__", forbidden)
    monkeypatch.setattr(llm.PolicyArm, "__init__", forbidden)
    report, _ = replay_workspace(quick_study("hybrid"), "hybrid", tmp_path / "ws")
    entry = report["arms"][0]
    assert entry["name"] == "hybrid" and len(entry["per_day"]) == 7
    # every action of the days ran in the workspace: its ledger holds them (and the setup)
    ledger = (tmp_path / "ws" / "ledger.jsonl").read_text().splitlines()
    actions = sum(len(d["actions"]) for d in entry["per_day"]) + len(entry["initial_actions"])
    assert len(ledger) == actions + 2  # + the setup's initial fine-tune and table
    assert entry["per_day"][-1]["cum_flops"] == pytest.approx(
        sum(json.loads(line)["flops"] for line in ledger[2:]))
    assert not list(tmp_path.glob(".ws-inputs*"))  # the day files are cleaned up


def test_parity_differences_name_each_disagreeing_day_field() -> None:
    days = [{"day": f"2000-01-0{i}", "n": 10, "hr@1": 0.1, "hr@5": 0.5, "cum_flops": float(i)}
            for i in range(1, 4)]
    ours = {"arms": [{"name": "hybrid", "per_day": days}]}
    theirs = {"arms": [{"name": "hybrid", "per_day": [dict(d) for d in days]}]}
    assert parity_differences(ours, theirs, "hybrid") == []
    theirs["arms"][0]["per_day"][1]["hr@5"] = 0.6
    assert parity_differences(ours, theirs, "hybrid") == ["2000-01-02 hr@5: 0.5 against 0.6"]
    with pytest.raises(ConfigError, match="no arm 'adaptive'"):
        parity_differences(ours, theirs, "adaptive")


def test_the_replay_refuses_what_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not in the study"):
        replay_workspace(quick_study("hybrid"), "adaptive", tmp_path / "a")
    with pytest.raises(ConfigError, match="counting arm"):
        replay_workspace(quick_study("hybrid", "markov-all"), "markov-all", tmp_path / "b")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    with pytest.raises(ConfigError, match="new or empty workspace"):
        replay_workspace(quick_study("hybrid"), "hybrid", busy)


def test_replay_from_the_shell_checks_parity_against_a_backtest_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.toml"
    study.write_text(STUDY)
    assert load_backtest_config(study) == quick_study("hybrid")
    code, _, err = run_cli(capsys, "backtest", "--config", str(study), "--out", str(tmp_path / "bt"),
                           "--quiet")
    assert code == 0, err
    code, out, err = run_cli(capsys, "replay", "--config", str(study), "--arm", "hybrid",
                             "--workspace", str(tmp_path / "ws"), "--out", str(tmp_path / "rp"),
                             "--quiet", "--check", str(tmp_path / "bt" / "report.json"))
    assert code == 0, err
    assert "parity: hybrid's n, HR@1, HR@5 and cumulative flops equal" in out
    report = json.loads((tmp_path / "rp" / "report.json").read_text())
    assert report["setup"]["driver"] == "workspace"
    # The workspace is a normal one afterwards: status and lookups work.
    code, out, err = run_cli(capsys, "lookup", str(tmp_path / "ws"), "0", "1")
    assert code == 0, err
    # A report that disagrees fails the check, naming the day.
    tampered = json.loads((tmp_path / "bt" / "report.json").read_text())
    tampered["arms"][0]["per_day"][3]["cum_flops"] += 1.0
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    code, out, err = run_cli(capsys, "replay", "--config", str(study), "--arm", "hybrid",
                             "--workspace", str(tmp_path / "ws2"), "--out", str(tmp_path / "rp2"),
                             "--quiet", "--check", str(tmp_path / "bad.json"))
    assert code != 0 and "disagree for 'hybrid' on 1 day fields" in err
    assert f"{tampered['arms'][0]['per_day'][3]['day']} cum_flops" in err


STUDY = """
dataset = "synthetic"
start = 2000-01-26
end = 2000-02-02
arms = ["hybrid"]
bootstrap = 100
dataset_options = { n_interactions = 20000, days = 35, n_clusters = 8, drift_rate = 0.8, seed = 0 }
[llm]
initial_fine_tune_options = { max_examples = 2000, base_epochs = 1 }
evidence = { candidates = 6 }
generator = { plugin = "hf", options = { preset = "tiny", template = "rerank", tiny = { hidden_size = 32, intermediate_size = 64, num_layers = 1 } } }
knowledge_store = { plugin = "annoy", options = { min_support = 0 } }
fine_tuner = { plugin = "lora", options = { max_examples = 300, holdout_max = 100, guardrail_samples = 16, balance = "none", rag_fraction = 0.8 } }
[llm.policies.hybrid]
plugin = "hybrid"
options = { fine_tune_every_days = 3, rag_every_days = 1 }
"""


def test_backtest_alone_gives_the_same_arm_numbers_as_with_other_arms() -> None:
    # The parity check compares an arm of a backtest with several arms; an arm's numbers do not
    # depend on which other arms share its work cache.
    both, _, _ = run_backtest(quick_study(), drift=False)
    alone, _, _ = run_backtest(quick_study("adaptive"), drift=False)
    assert parity_differences(alone, both, "adaptive") == []
