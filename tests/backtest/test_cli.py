"""``hybridrec backtest`` from a TOML config on the synthetic data set (baseline arms only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridrec.cli import main


def test_backtest_command_writes_the_report(tmp_path: Path) -> None:
    config = tmp_path / "study.toml"
    config.write_text(
        'dataset = "synthetic"\n'
        "dataset_options = { n_interactions = 6000, days = 40, n_clusters = 10 }\n"
        "bootstrap = 100\n"
    )
    out = tmp_path / "out"
    main(["backtest", "--config", str(config), "--arms", "markov-all,markov-recent,popularity",
          "--start", "2000-01-21", "--end", "2000-02-05", "--seed", "3", "--quiet", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["name"] == "synthetic"
    assert report["dataset"]["test_start"] == "2000-01-21"
    assert report["reference"] == "markov-all"
    assert report["bootstrap"]["seed"] == 3
    assert [a["name"] for a in report["arms"]] == ["markov-all", "markov-recent", "popularity"]
    assert len(report["arms"][0]["per_day"]) == 15
    assert report["verdict"]["goal_1"] is None


def test_backtest_command_reports_bad_input_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["backtest", "--config", str(tmp_path / "missing.toml")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
