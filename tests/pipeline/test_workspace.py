"""The workspace and the update pipeline with fast fake plugins (docs/architecture.md)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec import hookimpl
from hybridrec.cli import main
from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.engine.state import ServedPeriod
from hybridrec.errors import HybridrecError
from hybridrec.generation import all_contexts
from hybridrec.types import UTC, CostRecord
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


def make_workspace(tmp_path: Path, config_file: Path, *overrides: str) -> Workspace:
    return Workspace.init(tmp_path / "ws", load_config(config_file, overrides=overrides))


def first_update(ws: Workspace, fakes: Any, tmp_path: Path, **kwargs: Any):
    log = fakes.write_log(tmp_path / "jan.csv", JAN, 31, **kwargs)
    return run_update(ws, log, now=FEB)


def test_first_update_fine_tunes_refreshes_regenerates_and_serves(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    report = first_update(ws, fake_plugins, tmp_path)
    assert [(a.kind, a.status) for a in report.actions] == [
        ("fine_tune", "ok"), ("refresh_knowledge", "ok"), ("regenerate_table", "ok")]
    current = ws.current()
    assert current is not None and current["table"] == report.actions[2].version
    catalog = ws.catalog()
    assert len(catalog) == 10
    served = ws.lookup(0, 1, 5)
    assert served.level == "pair" and len(served.clusters) == 5 and not {0, 1} & set(served.clusters)
    everything = ws.lookup_batch(all_contexts(len(catalog)), 5)
    everything.validate()
    records = ws.ledger.records()
    assert [r.action for r in records] == ["fine_tune", "refresh_knowledge", "regenerate_table"]
    assert records[2].versions_out == {"table": current["table"]}
    assert records[2].versions_in["knowledge"] == current["knowledge"]
    assert all(r.flops > 0 for r in records)


def test_later_updates_refresh_on_schedule_and_skip_when_nothing_is_due(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    first = first_update(ws, fake_plugins, tmp_path)
    adapter = ws.current()["adapter"]  # type: ignore[index]
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    second = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    assert [a.kind for a in second.actions] == ["refresh_knowledge", "regenerate_table"]
    assert ws.current()["adapter"] == adapter  # type: ignore[index]
    assert second.rows_ingested > 0 and len(ws.current()["data"]) == 2  # type: ignore[index]
    again = run_update(ws, feb, now=datetime(2000, 2, 4, 6, tzinfo=UTC))
    assert again.actions == [] and again.rows_ingested == 0
    assert first.promoted["table"] != second.promoted["table"]


def test_bad_rows_are_quarantined_with_file_row_field_and_reason(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    extra = ["u1,,949000000,4,Action", "u2,i1,notatime,4,Action", "u3,i2,1000000000,4,Drama"]
    report = first_update(ws, fake_plugins, tmp_path, extra_rows=extra)
    assert report.rows_quarantined == 3
    rows = [json.loads(line) for line in ws.quarantine_path.read_text().splitlines()]
    by_field = {r["field"]: r for r in rows}
    assert set(by_field) == {"item", "timestamp"} and len(rows) == 3
    assert all(r["file"].endswith("jan.csv") and r["row"] > 1000 and r["reason"] for r in rows)
    # a later file with a category combination the catalog does not know
    late = tmp_path / "late.csv"
    late.write_text("user,item,timestamp,rating,categories\nu1,zz,949400000,5,Western\nu1,i3,949400001,5,Comedy\n")
    report = run_update(ws, late, now=datetime(2000, 2, 2, tzinfo=UTC))
    assert report.rows_ingested == 1 and report.rows_quarantined == 1
    last = json.loads(ws.quarantine_path.read_text().splitlines()[-1])
    assert last["field"] == "categories" and last["row"] == 2 and "catalog" in last["reason"]


class HookRecorder:
    def __init__(self, veto_kind: str | None = None) -> None:
        self.veto_kind = veto_kind
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def veto_promotion(self, kind: str, candidate: dict[str, Any], current: dict[str, Any] | None) -> str | None:
        self.events.append(("veto?", kind))
        return "not on my watch" if kind == self.veto_kind else None

    @hookimpl
    def on_action_executed(self, record: CostRecord) -> None:
        self.events.append(("executed", record.action))

    @hookimpl
    def on_version_promoted(self, kind: str, version: str, manifest: dict[str, Any]) -> None:
        self.events.append(("promoted", kind))

    @hookimpl
    def on_guardrail_failed(self, version: str, reasons: list[str], manifest: dict[str, Any]) -> None:
        self.events.append(("held", reasons))


def test_hooks_see_every_action_and_promotion(fake_plugins: Any, hybridrec_plugin: Any, tmp_path: Path, config_file: Path) -> None:
    recorder = HookRecorder()
    hybridrec_plugin(recorder, "recorder")
    ws = make_workspace(tmp_path, config_file)
    first_update(ws, fake_plugins, tmp_path)
    assert [e for e in recorder.events if e[0] == "executed"] == [
        ("executed", "fine_tune"), ("executed", "refresh_knowledge"), ("executed", "regenerate_table")]
    assert {e[1] for e in recorder.events if e[0] == "veto?"} == {"adapter", "knowledge", "table"}
    assert {e[1] for e in recorder.events if e[0] == "promoted"} == {"catalog", "adapter", "knowledge", "table"}


def test_a_failed_guardrail_holds_the_adapter_for_review(fake_plugins: Any, hybridrec_plugin: Any, tmp_path: Path, config_file: Path) -> None:
    recorder = HookRecorder()
    hybridrec_plugin(recorder, "recorder")
    ws = make_workspace(tmp_path, config_file, "fine_tuner.options.recall=0.001")
    report = first_update(ws, fake_plugins, tmp_path)
    assert (report.actions[0].kind, report.actions[0].status) == ("fine_tune", "held")
    held = report.actions[0].version
    current = ws.current()
    assert current["adapter"] is None and current["held_adapters"] == [held]  # type: ignore[index]
    assert current["table"] is not None  # served with the base model and fresh knowledge  # type: ignore[index]
    status = ws.status()
    assert status["guardrail_holds"][0]["version"] == held
    assert "recall" in status["guardrail_holds"][0]["reasons"][0]
    assert ws.store.get("adapters", held).manifest["status"] == "needs_review"
    assert any(e[0] == "held" for e in recorder.events)
    assert ws.ledger.records()[0].status == "held"


def test_a_vetoed_table_is_not_served(fake_plugins: Any, hybridrec_plugin: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    first_update(ws, fake_plugins, tmp_path)
    served = ws.current()["table"]  # type: ignore[index]
    hybridrec_plugin(HookRecorder(veto_kind="table"), "vetoer")
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    report = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    assert report.actions[-1].status == "held" and report.actions[-1].note == "not on my watch"
    assert ws.current()["table"] == served  # type: ignore[index]


def test_rollback_serves_the_previous_versions_and_keeps_the_data(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    first_update(ws, fake_plugins, tmp_path)
    before = dict(ws.current())  # type: ignore[arg-type]
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    after = ws.current()
    entry = ws.rollback()
    assert entry["table"] == before["table"] and entry["knowledge"] == before["knowledge"]
    assert entry["data"] == after["data"]  # type: ignore[index]
    assert ws.lookup(0, 1, 3).clusters  # the rolled-back table serves
    with pytest.raises(HybridrecError, match="no previous version"):
        ws.rollback()


def test_a_budget_limits_what_the_policy_may_do(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file, "budget.flops=1000.0")
    report = first_update(ws, fake_plugins, tmp_path)
    assert report.actions == []  # nothing fits 1000 FLOPs
    assert ws.current() is not None and ws.current().get("table") is None  # type: ignore[union-attr]
    with pytest.raises(HybridrecError, match="no table has been promoted"):
        ws.lookup(0, 1)


def test_memory_backend_workspace_serves_the_same_as_sqlite(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    a = Workspace.init(tmp_path / "a", load_config(config_file))
    b = Workspace.init(tmp_path / "b", load_config(config_file, overrides=["serving.backend=memory"]))
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    run_update(a, log, now=FEB)
    run_update(b, log, now=FEB)
    contexts = all_contexts(len(a.catalog()))
    np.testing.assert_array_equal(a.lookup_batch(contexts, 5).ids, b.lookup_batch(contexts, 5).ids)


def test_concurrent_readers_never_see_a_mixed_table(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    first_update(ws, fake_plugins, tmp_path)
    contexts = all_contexts(len(ws.catalog()))
    versions: dict[str, np.ndarray] = {ws.current()["table"]: ws.lookup_batch(contexts, 5).ids}  # type: ignore[index]
    seen: list[np.ndarray] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        reader = Workspace(ws.root)
        while not stop.is_set():
            try:
                seen.append(reader.lookup_batch(contexts, 5).ids)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for day in range(3):
            log = fake_plugins.write_log(tmp_path / f"d{day}.csv", datetime(2000, 2, 1 + 3 * day, tzinfo=UTC), 3, seed=day + 5)
            run_update(ws, log, now=datetime(2000, 2, 4 + 3 * day, tzinfo=UTC))
            versions[ws.current()["table"]] = ws.lookup_batch(contexts, 5).ids  # type: ignore[index]
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    assert len(versions) == 4 and len(seen) > 0
    for ids in seen:
        assert any(np.array_equal(ids, v) for v in versions.values())


def test_cli_init_update_lookup_status_rollback(fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = str(tmp_path / "ws")
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    main(["init", ws, "--config", str(config_file)])
    main(["update", ws, "--data", str(log), "--now", "2000-02-01", "--json"])
    capsys.readouterr()
    main(["lookup", ws, "0", "1", "-k", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert len(out["clusters"]) == 3 and out["level"] == "pair" and len(out["descriptions"]) == 3
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    main(["update", ws, "--data", str(feb), "--now", "2000-02-04"])
    assert "refresh_knowledge" in capsys.readouterr().out
    main(["status", ws, "--json"])
    status = json.loads(capsys.readouterr().out)
    assert status["costs"]["by_action"]["refresh_knowledge"]["count"] == 2
    assert status["staleness"]["knowledge_lag_days"] == 0.0
    main(["status", ws])
    assert "adapter" in capsys.readouterr().out
    main(["rollback", ws])
    assert "now serving table" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["lookup", ws, "0", "0"])
    assert exit_info.value.code == 2
    assert "repeats a cluster" in capsys.readouterr().err


def test_init_refuses_unknown_plugins_and_existing_workspaces(tmp_path: Path, config_file: Path, fake_plugins: Any) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[update_policy]\nplugin = "sometimes"\n')
    with pytest.raises(HybridrecError, match="sometimes"):
        main_raising(["init", str(tmp_path / "x"), "--config", str(bad)])
    make_workspace(tmp_path, config_file)
    with pytest.raises(HybridrecError, match="already"):
        Workspace.init(tmp_path / "ws", load_config(config_file))
    with pytest.raises(HybridrecError, match="not a hybridrec workspace"):
        Workspace(tmp_path)


def main_raising(argv: list[str]) -> None:
    from hybridrec.cli import _install_commands, cli

    _install_commands()
    cli.main(args=argv, prog_name="hybridrec", standalone_mode=False)


def test_an_item_without_categories_is_quarantined_unless_known(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file)
    first_update(ws, fake_plugins, tmp_path)
    later = tmp_path / "later.csv"
    later.write_text("user,item,timestamp,rating,categories\nu1,i3,949400000,5,\nu1,new,949400001,5,\n")
    report = run_update(ws, later, now=datetime(2000, 2, 2, tzinfo=UTC))
    assert report.rows_ingested == 1 and report.rows_quarantined == 1
    last = json.loads(ws.quarantine_path.read_text().splitlines()[-1])
    assert last["row"] == 3 and last["field"] == "item" and "no row of this file" in last["reason"]


def test_garbage_collection_keeps_what_rollback_needs(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = make_workspace(tmp_path, config_file, "serving.keep_versions=1")
    first_update(ws, fake_plugins, tmp_path)
    for step in range(3):
        log = fake_plugins.write_log(tmp_path / f"s{step}.csv", datetime(2000, 2, 1 + 3 * step, tzinfo=UTC), 3, seed=step)
        run_update(ws, log, now=datetime(2000, 2, 4 + 3 * step, tzinfo=UTC))
    tables = [v.id for v in ws.store.versions("tables")]
    assert len(tables) == 2 and ws.current()["table"] == tables[-1]  # type: ignore[index]
    rolled = ws.rollback()
    assert rolled["table"] == tables[0]
    assert ws.lookup(0, 1).clusters
    with pytest.raises(HybridrecError, match="garbage-collected"):
        ws.rollback()


def test_the_ledger_survives_a_torn_last_line(tmp_path: Path) -> None:
    from hybridrec.ledger import Ledger
    from hybridrec.types import CostEstimate

    ledger = Ledger(tmp_path / "ledger.jsonl")
    record = CostRecord(action="fine_tune", at=FEB, estimate=CostEstimate(action="fine_tune"), flops=1.0)
    ledger.append(record)
    with open(ledger.path, "a") as fh:
        fh.write('{"action": "refresh_kno')  # a crash in the middle of an append
    ledger.append(record.model_copy(update={"flops": 2.0}))
    assert [r.flops for r in ledger.records()] == [1.0, 2.0] and ledger.skipped == 1
    assert ledger.records(since=datetime(2000, 3, 1, tzinfo=UTC)) == []


def test_the_served_tables_recall_signals_reach_the_policy(
    fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The workspace fills recall_recent / recall_at_table like the backtest: the served lists'
    # HR@5 on the data each update brings, scored before the update acts (out of sample).
    ws = make_workspace(tmp_path, config_file)
    first_update(ws, fake_plugins, tmp_path)
    assert ws.current()["drift"]["recall_recent"] is None  # type: ignore[index]  # nothing served yet
    for day in range(4):  # one update per day, each with that day's data
        start = FEB + timedelta(days=day)
        log = fake_plugins.write_log(tmp_path / f"feb{day}.csv", start, 1, seed=day + 1)
        run_update(ws, log, now=start + timedelta(days=1), data_until=start + timedelta(days=1))
    served = ws.current()
    assert served is not None
    periods = [ServedPeriod.from_json(row) for row in served["served_periods"]]
    # each period runs from the previous update's data_until to this one's
    assert [p.until for p in periods] == [FEB + timedelta(days=d + 1) for d in range(4)]
    assert [p.since for p in periods[1:]] == [p.until for p in periods[:-1]]
    drift = served["drift"]
    assert drift["recall_recent"] is not None and 0.0 <= drift["recall_recent"] <= 1.0
    assert drift["recall_recent"] == pytest.approx(
        sum(p.hits for p in periods[-3:]) / sum(p.n for p in periods[-3:]))
    # And what fresher knowledge would have bought (the same function the backtest calls).
    assert served["knowledge"] is not None
    assert drift["refresh_gain"] is not None and drift["refresh_gain_se"] is not None
    assert -1.0 <= drift["refresh_gain"] <= 1.0 and drift["refresh_gain_se"] >= 0.0
    # `hybridrec status` shows both.
    capsys.readouterr()
    main(["status", str(ws.root)])
    out = capsys.readouterr().out
    assert f"served lists' HR@5 {drift['recall_recent']:.4f}" in out
    assert f"a refresh would have gained {drift['refresh_gain']:+.4f} HR@5" in out


def test_recall_signals_read_only_the_periods_each_table_served() -> None:
    from hybridrec.engine.state import kept_periods, recall_signals

    day = timedelta(days=1)
    built, trained = JAN + 10 * day, JAN + 10 * day
    # Ten daily periods after the table was built: the first three all hits, then misses.
    periods = [ServedPeriod(since=built + i * day, until=built + (i + 1) * day, n=10,
                            hits=10 if i < 3 else 0, table_built_at=built, adapter_trained_at=trained)
               for i in range(10)]
    until = built + 10 * day
    got = recall_signals(periods, until, days=3, table_built_at=built, adapter_trained_at=trained)
    assert got == {"recall_recent": 0.0, "recall_at_table": 1.0, "recall_at_training": 1.0}
    # Another adapter is served now: its first days are not seen yet.
    later = recall_signals(periods, until, days=3, table_built_at=built, adapter_trained_at=until)
    assert later["recall_at_training"] is None
    early = recall_signals(periods[:2], built + 2 * day, days=3, table_built_at=built,
                           adapter_trained_at=trained)
    assert early == {"recall_recent": None, "recall_at_table": None, "recall_at_training": None}
    # Pruning keeps what the signals can still read.
    kept = kept_periods(periods, until, days=3, table_built_at=until, adapter_trained_at=until)
    assert kept == periods[-3:]
    assert kept_periods(periods, until, days=3, table_built_at=built, adapter_trained_at=trained) == periods


class NeedsCtrPlugin:
    """``hybrid-ctr``: the hybrid policy, declaring a signal no engine measures besides recall."""

    @hookimpl
    def register_update_policies(self, register: Any) -> None:
        from typing import ClassVar

        from hybridrec_policies.policies import HybridPolicy

        class HybridCtr(HybridPolicy):
            name: ClassVar[str] = "hybrid-ctr"
            needs: ClassVar[frozenset[str]] = frozenset({"recall", "ctr"})

        register(HybridCtr)


@pytest.mark.filterwarnings("ignore:.*needs 'ctr'")
def test_a_needed_signal_the_workspace_cannot_measure_is_warned_about(
        fake_plugins: Any, hybridrec_plugin: Any, tmp_path: Path, config_file: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from hybridrec.engine.state import SignalWarning

    hybridrec_plugin(NeedsCtrPlugin(), "needs-ctr")
    ws = make_workspace(tmp_path, config_file, "update_policy.plugin=hybrid-ctr")
    with pytest.warns(SignalWarning, match=r"policy 'hybrid-ctr' needs 'ctr'.*signals: drift, recall"):
        first_update(ws, fake_plugins, tmp_path)

    def unreadable(*args: Any, **kwargs: Any) -> Any:
        raise HybridrecError("the table file is truncated")

    monkeypatch.setattr(Workspace, "lookup_batch", unreadable)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 6, seed=1)
    with pytest.warns(SignalWarning, match=r"recall signals the policy needs miss .*truncated"):
        run_update(ws, feb, now=datetime(2000, 2, 8, tzinfo=UTC))
    assert ws.current()["drift"]["recall_recent"] is None  # type: ignore[index]


def test_update_takes_the_declared_end_of_the_data(
        fake_plugins: Any, tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybridrec.testing.cli import run_cli

    ws = make_workspace(tmp_path, config_file)
    log = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    code, out, err = run_cli(capsys, "update", str(ws.root), "--data", str(log), "--now", "2000-02-02",
                             "--data-until", "2000-02-01T12:00:00+00:00")
    assert code == 0, err
    assert "data until 2000-02-01T12:00:00+00:00" in out
    assert ws.current()["data_until"] == "2000-02-01T12:00:00+00:00"  # type: ignore[index]
    # After the clock, or before the data's last row: refused, naming the field.
    code, _, err = run_cli(capsys, "update", str(ws.root), "--now", "2000-02-03",
                           "--data-until", "2000-02-04")
    assert code == 2 and "data_until 2000-02-04T00:00:00+00:00 is after the clock" in err
    code, _, err = run_cli(capsys, "update", str(ws.root), "--now", "2000-02-03",
                           "--data-until", "2000-01-15")
    assert code == 2 and "is before the last transition" in err
    code, _, err = run_cli(capsys, "update", str(ws.root), "--data-until", "soon")
    assert code == 2 and "--data-until 'soon' is not an ISO 8601 time" in err
