"""A study that crashes mid-way writes a partial report of what finished, and says so."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from conftest import fake_config

from hybridrec.backtest import StudyInterrupted, run_backtest, write_report
from hybridrec.backtest.baselines import PopularityArm
from hybridrec.backtest.llm import PolicyArm
from hybridrec.cli import main
from hybridrec.types import UTC


def _fail_on(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, arm: str, day: str) -> None:
    original = getattr(cls, method)

    def failing(self, history, when):  # type: ignore[no-untyped-def]
        label = getattr(when, "label", None)
        if self.name == arm and label == day:
            raise RuntimeError("disk full")
        return original(self, history, when)

    monkeypatch.setattr(cls, method, failing)


def test_a_crash_mid_study_returns_the_days_every_arm_completed(fake_stack, catalog, transitions, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _fail_on(monkeypatch, PolicyArm, "end_of_day", "hybrid", "2000-01-25")
    config = fake_config(arms=["no-update", "hybrid", "markov-all"])
    with pytest.raises(StudyInterrupted, match="disk full") as info:
        run_backtest(config, data=(catalog, transitions), drift=False)
    report = info.value.report
    partial = report["partial"]
    assert partial["arm"] == "hybrid" and partial["phase"] == "update"
    assert partial["day"] == "2000-01-25" and partial["type"] == "RuntimeError"
    assert partial["completed_days"] == 4 and partial["planned_days"] == 40
    assert report["dataset"]["test_days"] == 4
    for arm in report["arms"]:
        assert [d["day"] for d in arm["per_day"]] == ["2000-01-21", "2000-01-22", "2000-01-23", "2000-01-24"]
        assert arm["metrics"]["hr@5"] is not None
    assert report["dataset"]["test_transitions"] == sum(d["n"] for d in report["arms"][0]["per_day"])
    paths = write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text())["partial"]["completed_days"] == 4
    assert "PARTIAL REPORT" in paths["markdown"].read_text()


def test_a_crash_on_the_first_day_still_gives_a_report(fake_stack, catalog, transitions, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    original = PolicyArm.serve

    def failing(self, contexts, k):  # type: ignore[no-untyped-def]
        raise ValueError("boom")

    monkeypatch.setattr(PolicyArm, "serve", failing)
    with pytest.raises(StudyInterrupted) as info:
        run_backtest(fake_config(arms=["hybrid", "markov-all"]), data=(catalog, transitions), drift=False)
    monkeypatch.setattr(PolicyArm, "serve", original)
    report = info.value.report
    assert report["partial"]["completed_days"] == 0 and report["partial"]["phase"] == "serve"
    assert all(arm["per_day"] == [] for arm in report["arms"])
    assert "PARTIAL REPORT" in write_report(report, tmp_path)["markdown"].read_text()


def test_the_cli_writes_the_partial_report_then_fails(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    original = PopularityArm.serve
    served: list[int] = []

    def failing(self, contexts, k):  # type: ignore[no-untyped-def]
        served.append(1)
        if len(served) == 6:
            raise RuntimeError("out of memory")
        return original(self, contexts, k)

    monkeypatch.setattr(PopularityArm, "serve", failing)
    config = tmp_path / "study.toml"
    config.write_text('dataset = "synthetic"\n'
                      "dataset_options = { n_interactions = 6000, days = 40, n_clusters = 10 }\n"
                      "bootstrap = 100\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["backtest", "--config", str(config), "--arms", "markov-all,popularity",
              "--start", "2000-01-21", "--end", "2000-02-05", "--quiet", "--out", str(out)])
    assert exit_info.value.code == 1
    assert "PARTIAL report" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["partial"]["completed_days"] == 5 and report["partial"]["arm"] == "popularity"
    assert all(len(a["per_day"]) == 5 for a in report["arms"])
    assert (out / "pareto.png").exists()


def _without_day(transitions, day: str):  # type: ignore[no-untyped-def]
    import numpy as np

    from hybridrec.types import datetime_to_ts

    lo = datetime_to_ts(datetime.fromisoformat(day).replace(tzinfo=UTC))
    return transitions.take(np.flatnonzero(~((transitions.ts >= lo) & (transitions.ts < lo + 86400))))


def test_the_reported_empty_day_crash_inside_an_arm_gives_a_partial_report_and_is_fixed(
    fake_stack, catalog, transitions, monkeypatch, tmp_path  # type: ignore[no-untyped-def]
) -> None:
    # Issue 14: on a day without transitions, an arm serving an adapter that had ranked nothing
    # yet crashed in AdapterRows.arrays (np.concatenate of no arrays). ft-weekly fine-tunes at
    # the end of 2000-01-27; 2000-01-28 has no transitions.
    import numpy as np

    from hybridrec.backtest.llm import AdapterRows, PolicyArm

    data = (catalog, _without_day(transitions, "2000-01-28"))
    config = fake_config(arms=["no-update", "ft-weekly", "markov-all"])

    def arrays_before_the_fix(self):  # type: ignore[no-untyped-def]
        if self.stacked is None:
            self.stacked = (np.concatenate(self.ids), np.concatenate(self.scores))
        return self.stacked

    def rows_before_the_fix(self, table, contexts, held=None):  # type: ignore[no-untyped-def]
        # the served rows read straight from the table's state, as then (even for no context)
        return self.cache.rows_for(table.adapter, table.snapshot, contexts)

    monkeypatch.setattr(AdapterRows, "arrays", arrays_before_the_fix)
    monkeypatch.setattr(PolicyArm, "table_rows", rows_before_the_fix)
    with pytest.raises(StudyInterrupted, match="need at least one array to concatenate") as info:
        run_backtest(config, data=data, drift=False)
    partial = info.value.report["partial"]
    assert (partial["arm"], partial["phase"], partial["day"]) == ("ft-weekly", "serve", "2000-01-28")
    assert partial["type"] == "ValueError" and partial["completed_days"] == 7
    assert all(len(arm["per_day"]) == 7 for arm in info.value.report["arms"])
    assert "PARTIAL REPORT" in write_report(info.value.report, tmp_path)["markdown"].read_text()

    monkeypatch.undo()  # the code as it is: the same data runs through
    report, _, _ = run_backtest(config, data=data, drift=False)
    assert "partial" not in report
    weekly = next(a for a in report["arms"] if a["name"] == "ft-weekly")
    assert next(d for d in weekly["per_day"] if d["day"] == "2000-01-28")["n"] == 0


@pytest.mark.parametrize(("method", "error", "phase"), [
    ("begin", OSError("no space left on device"), "begin"),
    ("end_of_day", KeyboardInterrupt(), "update"),
])
def test_an_error_in_any_phase_of_an_arm_gives_a_partial_report(
    fake_stack, catalog, transitions, method, error, phase  # type: ignore[no-untyped-def]
) -> None:
    original = getattr(PolicyArm, method)

    def failing(self, history, when):  # type: ignore[no-untyped-def]
        if self.name == "hybrid" and (method == "begin" or when.label == "2000-01-23"):
            raise error
        return original(self, history, when)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PolicyArm, method, failing)
        with pytest.raises(StudyInterrupted) as info:
            run_backtest(fake_config(arms=["hybrid", "markov-all"]), data=(catalog, transitions), drift=False)
    partial = info.value.report["partial"]
    assert partial["arm"] == "hybrid" and partial["phase"] == phase
    assert partial["type"] == type(error).__name__
    assert partial["completed_days"] == (0 if phase == "begin" else 2)
    assert all(len(arm["per_day"]) == partial["completed_days"] for arm in info.value.report["arms"])


def test_a_crash_in_a_later_training_seed_keeps_the_seeds_that_completed_and_says_so(
        fake_stack, catalog, transitions, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    original = PolicyArm.end_of_day
    seen: list[str] = []

    def failing(self, history, when):  # type: ignore[no-untyped-def]
        if self.name == "hybrid" and getattr(when, "label", None) == "2000-01-25":
            seen.append("hybrid")
            if len(seen) == 2:  # the second training seed's hybrid: the first one passed this day
                raise RuntimeError("disk full")
        return original(self, history, when)

    monkeypatch.setattr(PolicyArm, "end_of_day", failing)
    config = fake_config(arms=["hybrid", "markov-all"], seeds=2)
    with pytest.raises(StudyInterrupted, match="disk full") as info:
        run_backtest(config, data=(catalog, transitions), drift=False)
    report = info.value.report
    assert report["partial"]["seed"] == 1 and report["partial"]["completed_days"] == 4
    # seed 0 completed every day and is what the report holds
    assert report["seeds"]["training_seeds"] == [0]
    assert all(len(arm["per_day"]) == 40 for arm in report["arms"])
    text = write_report(report, tmp_path)["markdown"].read_text()
    assert ("Training seed 1 completed 4 of 40 test days and is left out: every number below "
            "covers all 40 test days of training seed 0.") in text
