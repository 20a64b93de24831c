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
    assert report["verdict"]["claims"] == [] and report["claims"] == []  # the study claims nothing


def test_backtest_command_reports_bad_input_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["backtest", "--config", str(tmp_path / "missing.toml")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_every_plugin_option_is_checked_before_any_data_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_data_reads: None
) -> None:
    config = tmp_path / "study.toml"
    config.write_text(
        'dataset = "synthetic"\narms = ["hybrid", "markov-all"]\n'
        "dataset_options = { n_clusters = 1 }\n"
        '[llm]\ngenerator = { plugin = "hf", options = { template = "nope" } }\n'
        '[llm.policies.hybrid]\nplugin = "hybrid"\noptions = { rag_every_days = -1 }\n'
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["backtest", "--config", str(config), "--quiet", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{config}: invalid options for dataset plugin 'synthetic'" in err
    assert "[dataset_options] n_clusters" in err
    assert "[llm.generator.options] template" in err
    assert "[llm.policies.hybrid.options] rag_every_days" in err


def test_relative_dataset_paths_resolve_against_the_study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridrec.backtest.config import load_backtest_config

    folder = tmp_path / "studies"
    folder.mkdir()
    study_file = folder / "study.toml"
    study_file.write_text(
        'dataset = "file"\narms = ["markov-all"]\n'
        '[dataset_options]\ninteractions = "data/events.csv"\nitems = "/abs/items.csv"\n'
    )
    monkeypatch.chdir(tmp_path)
    config = load_backtest_config(study_file)
    assert config.dataset_options["interactions"] == str(folder / "data" / "events.csv")
    assert config.dataset_options["items"] == "/abs/items.csv"


@pytest.mark.parametrize("study", sorted([*(Path(__file__).parents[2] / "examples" / "studies").glob("*.toml"),
                                          *(Path(__file__).parents[2] / "research" / "studies").glob("*.toml")]),
                         ids=lambda p: p.name)
def test_every_example_study_validates(study: Path) -> None:
    from hybridrec.backtest.config import check_plugins, load_backtest_config

    check_plugins(load_backtest_config(study), str(study))


def test_the_full_fine_tune_study_is_the_demo_with_full_fine_tune() -> None:
    from hybridrec.backtest.config import FULL_FINE_TUNE, BacktestConfig, load_backtest_config

    study = Path(__file__).parents[2] / "examples" / "studies" / "demo-full-fine-tune.toml"
    config = load_backtest_config(study)
    assert config.llm.fine_tuner.options == FULL_FINE_TUNE
    demo = BacktestConfig()
    assert config.model_dump(exclude={"llm"}) == demo.model_dump(exclude={"llm"})
    assert config.llm.model_dump(exclude={"fine_tuner"}) == demo.llm.model_dump(exclude={"fine_tuner"})


def test_the_fine_tune_studies_change_only_the_fine_tune_and_differ_only_in_the_example_cap() -> None:
    """research/studies/fine-tune-epochs.toml and fine-tune-whole-window.toml are the demo's
    hybrid and rag-only with the full fine-tune (epochs chosen by held-out NLL), as
    docs/results.md reads them: nothing else of the demo's study changes, and the two differ only
    in how many of the window's examples a fine-tune reads."""
    from hybridrec.backtest.config import BacktestConfig, load_backtest_config

    folder = Path(__file__).parents[2] / "research" / "studies"
    capped = load_backtest_config(folder / "fine-tune-epochs.toml")
    whole = load_backtest_config(folder / "fine-tune-whole-window.toml")
    demo = BacktestConfig()
    assert list(capped.arms) == list(whole.arms) == ["hybrid", "rag-only"]
    assert capped.model_dump(exclude={"llm", "arms"}) == demo.model_dump(exclude={"llm", "arms"})
    assert capped.llm.model_dump(exclude={"fine_tuner"}) == demo.llm.model_dump(exclude={"fine_tuner"})
    options = capped.llm.fine_tuner.options
    assert (options["mode"], options["select_epoch"], options["epochs"]) == ("full", True, 3.0)
    assert whole.llm.model_dump(exclude={"fine_tuner"}) == capped.llm.model_dump(exclude={"fine_tuner"})
    assert {k: v for k, v in whole.llm.fine_tuner.options.items() if k != "max_examples"} == \
        {k: v for k, v in options.items() if k != "max_examples"}
    assert (options["max_examples"], whole.llm.fine_tuner.options["max_examples"]) == (30000, 1000000)
