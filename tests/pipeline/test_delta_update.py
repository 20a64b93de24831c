"""``hybridrec update`` regenerates by delta: only contexts whose prompt changed are re-ranked, and
the served table is exactly the one a full regeneration serves."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hybridrec.config import load_config
from hybridrec.engine import run_update
from hybridrec.generation import all_contexts
from hybridrec.types import UTC
from hybridrec.workspace import Workspace

JAN = datetime(2000, 1, 1, tzinfo=UTC)
FEB = datetime(2000, 2, 1, tzinfo=UTC)


def _workspace(tmp_path: Path, config_file: Path, name: str, *overrides: str) -> Workspace:
    config = load_config(config_file, environ={}, overrides=["generator.plugin=fake-prompt-gen", *overrides])
    return Workspace.init(tmp_path / name, config)


def _table(ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    rankings = ws.lookup_batch(all_contexts(len(ws.catalog())), 5)
    return rankings.ids, rankings.scores


def test_a_refresh_that_keeps_the_adapter_reranks_only_changed_prompts(
    fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    jan = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    spaces = {mode: _workspace(tmp_path, config_file, mode, f"serving.regenerate={mode}")
              for mode in ("delta", "full")}
    ranked: dict[str, int] = {}
    for mode, ws in spaces.items():
        run_update(ws, jan, now=FEB)
        adapter = ws.current()["adapter"]  # type: ignore[index]
        fake_plugins.reset_calls()
        report = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
        assert [a.kind for a in report.actions] == ["refresh_knowledge", "regenerate_table"]
        assert ws.current()["adapter"] == adapter  # type: ignore[index]
        ranked[mode] = fake_plugins.CALLS["rank_contexts"]
        manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
        assert manifest["regenerate"]["mode"] == mode
        assert report.actions[-1].note.startswith(f"{mode}:")

    n = len(spaces["full"].catalog())
    delta_manifest = spaces["delta"].store.get("tables", spaces["delta"].current()["table"]).manifest  # type: ignore[index]
    changed = delta_manifest["regenerate"]["changed"]
    assert ranked["full"] == n * (n - 1)
    assert 0 < ranked["delta"] == changed < n * (n - 1)
    assert delta_manifest["regenerate"]["copied"] == n * (n - 1) - changed

    full_ids, full_scores = _table(spaces["full"])
    delta_ids, delta_scores = _table(spaces["delta"])
    np.testing.assert_array_equal(delta_ids, full_ids)
    np.testing.assert_array_equal(delta_scores, full_scores)

    # Charged for what it ranked: the delta regeneration's record is cheaper, same otherwise.
    full_regen = spaces["full"].ledger.records()[-1]
    delta_regen = spaces["delta"].ledger.records()[-1]
    assert full_regen.action == delta_regen.action == "regenerate_table"
    assert 0 < delta_regen.flops < full_regen.flops


def test_a_new_adapter_is_always_ranked_in_full(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    ws = _workspace(tmp_path, config_file, "ws", "update_policy.options.fine_tune_every_days=2")
    run_update(ws, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    report = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    assert report.actions[0].kind == "fine_tune"
    manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
    n = len(ws.catalog())
    regen = manifest["regenerate"]
    assert {k: regen[k] for k in ("mode", "ranked", "changed", "copied")} == {
        "mode": "full", "ranked": n * (n - 1), "changed": n * (n - 1), "copied": 0}
    assert regen["why"]["new"] == n * (n - 1)  # another adapter: no row is comparable


def test_a_changed_row_width_is_regenerated_in_full(fake_plugins: Any, tmp_path: Path, config_file: Path) -> None:
    import json

    ws = _workspace(tmp_path, config_file, "ws")
    run_update(ws, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    raw = json.loads((ws.root / "config.json").read_text())
    raw["serving"]["k"] = 7  # a table of another width cannot lend its rows
    (ws.root / "config.json").write_text(json.dumps(raw))
    ws = Workspace(ws.root)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    report = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    assert report.actions[-1].kind == "regenerate_table" and report.actions[-1].note.startswith("full:")
    manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
    assert manifest["regenerate"]["mode"] == "full" and manifest["k"] == 7


def _observed(ws: Workspace, data_until: datetime, days: float) -> np.ndarray:
    """The contexts seen in the last ``days`` before ``data_until`` (mask over all contexts)."""
    from hybridrec.generation import observed_contexts
    from hybridrec.ingest import transitions_of
    from hybridrec.types import TimeWindow

    n = len(ws.catalog())
    transitions = transitions_of(ws.load_batches(list(ws.current()["data"])), n,  # type: ignore[index]
                                 ws.config.data.min_rating)
    seen = observed_contexts(transitions, TimeWindow.ending_at(data_until, days))
    everything = all_contexts(n)
    return np.isin(everything[:, 0] * n + everything[:, 1], seen[:, 0] * n + seen[:, 1])


def test_regenerating_recent_contexts_keeps_the_other_served_rows(
    fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    jan = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    ws = _workspace(tmp_path, config_file, "recent", "update_policy.options.regenerate_recent_days=1")
    ref = _workspace(tmp_path, config_file, "reference")
    for space in (ws, ref):
        run_update(space, jan, now=FEB)
    first_manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
    assert "fallback" not in first_manifest["regenerate"]  # no table yet: every context ranked
    first_ids, first_scores = _table(ws)
    run_update(ref, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    fake_plugins.reset_calls()
    report = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    assert [a.kind for a in report.actions] == ["refresh_knowledge", "regenerate_table"]
    assert report.data_until is not None
    recent = _observed(ws, report.data_until, 1)
    n = len(ws.catalog())
    assert 0 < recent.sum() < n * (n - 1)

    manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
    regen = manifest["regenerate"]
    assert regen["fallback"] == "previous" and regen["kept"] == int((~recent).sum())
    assert manifest["rows"] == n * (n - 1) and manifest["contexts"] == int(recent.sum())
    # Only recent contexts whose prompt changed were ranked, and only they were charged.
    assert fake_plugins.CALLS["rank_contexts"] == regen["ranked"] <= regen["changed"] <= recent.sum()
    ref_regen = ref.store.get("tables", ref.current()["table"]).manifest["regenerate"]  # type: ignore[index]
    per_context = ref.ledger.records()[-1].flops / ref_regen["changed"]
    assert ws.ledger.records()[-1].flops == pytest.approx(regen["changed"] * per_context)
    ids, scores = _table(ws)
    ref_ids, ref_scores = _table(ref)
    np.testing.assert_array_equal(ids[recent], ref_ids[recent])  # as a full regeneration ranks them
    np.testing.assert_array_equal(scores[recent], ref_scores[recent])
    np.testing.assert_array_equal(ids[~recent], first_ids[~recent])  # kept as served
    np.testing.assert_array_equal(scores[~recent], first_scores[~recent])


def test_regenerating_recent_contexts_with_the_serving_fallback_drops_the_others(
    fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    ws = _workspace(tmp_path, config_file, "recent", "update_policy.options.regenerate_recent_days=1",
                    "update_policy.options.regenerate_fallback=serving")
    run_update(ws, fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31), now=FEB)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    report = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC))
    assert report.data_until is not None
    recent = _observed(ws, report.data_until, 1)
    manifest = ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
    assert manifest["regenerate"]["fallback"] == "serving" and manifest["regenerate"]["kept"] == 0
    assert manifest["rows"] == int(recent.sum())
    _, levels = ws.reader().lookup_batch_with_levels(all_contexts(len(ws.catalog())), 5)
    from hybridrec.serving.base import LEVEL_PAIR

    assert (levels[recent] == LEVEL_PAIR).all() and not (levels[~recent] == LEVEL_PAIR).any()


def test_a_restricted_regeneration_without_traffic_keeps_every_served_row() -> None:
    from types import SimpleNamespace

    from hybridrec.engine.tables import (
        STALE_DIGEST,
        TableRows,
        plan_table,
        run_plan,
        with_kept_rows,
    )

    n, k = 4, 3
    everything = all_contexts(n)
    rng = np.random.default_rng(0)
    previous = TableRows(adapter="a1", keys=everything[:, 0] * n + everything[:, 1],
                         ids=rng.integers(0, n, (len(everything), k)), scores=rng.random((len(everything), k)),
                         digests=rng.integers(1, 255, (len(everything), 16)).astype(np.uint8))
    contexts, kept = with_kept_rows(np.zeros((0, 2), dtype=np.int64), n, previous, k=k)
    np.testing.assert_array_equal(contexts, everything)
    assert kept.all()
    plan = plan_table(contexts, n, np.zeros((len(contexts), 16), dtype=np.uint8), "a1", previous, k=k, kept=kept)
    assert plan.changed == 0 and plan.rank.size == 0 and plan.n_kept == plan.copied == len(everything)
    ids, scores = run_plan(plan, executor=None, job=SimpleNamespace(k=k))  # type: ignore[arg-type]
    np.testing.assert_array_equal(ids, previous.ids)
    np.testing.assert_array_equal(scores, previous.scores)
    # A kept row keeps its digest under the same adapter; under another it is stale.
    np.testing.assert_array_equal(plan.row_digests("a1"), previous.digests)  # type: ignore[arg-type]
    assert (plan.row_digests("a2") == STALE_DIGEST).all()  # type: ignore[operator]
    # Part of the contexts ranked, the rest kept: the ranked ones are never taken from `previous`.
    some = everything[:3]
    contexts, kept = with_kept_rows(some, n, previous, k=k)
    assert len(contexts) == len(everything) and int((~kept).sum()) == 3
    plan = plan_table(contexts, n, None, "a1", previous, k=k, kept=kept)
    assert plan.changed == 3 and plan.n_kept == len(everything) - 3
    # No previous table (or rows of another width): nothing to keep.
    assert not with_kept_rows(some, n, None, k=k)[1].any()
    assert not with_kept_rows(some, n, previous, k=k + 1)[1].any()


def test_the_material_change_rule_keeps_rows_whose_evidence_barely_moved_and_says_so(
    fake_plugins: Any, tmp_path: Path, config_file: Path
) -> None:
    from hybridrec.engine.tables import TableRows

    jan = fake_plugins.write_log(tmp_path / "jan.csv", JAN, 31)
    feb = fake_plugins.write_log(tmp_path / "feb.csv", FEB, 3, seed=1)
    spaces = {
        "exact": _workspace(tmp_path, config_file, "exact", "generator.options.render_support=true"),
        "material": _workspace(tmp_path, config_file, "material", "generator.options.render_support=true",
                               "update_policy.options.regenerate_tolerance=0.5",
                               "update_policy.options.regenerate_max_age_days=20"),
    }
    notes = {}
    for name, ws in spaces.items():
        run_update(ws, jan, now=FEB)
        notes[name] = run_update(ws, feb, now=datetime(2000, 2, 4, tzinfo=UTC)).actions[-1].note
    manifests = {name: ws.store.get("tables", ws.current()["table"]).manifest  # type: ignore[index]
                 for name, ws in spaces.items()}
    exact, material = manifests["exact"]["regenerate"], manifests["material"]["regenerate"]
    assert exact["why"]["close"] == 0 and exact["tolerance"] == 0.0
    assert material["tolerance"] == 0.5 and material["max_row_age_days"] == 20
    assert material["why"]["close"] > 0  # kept within the tolerance, charged nothing
    assert material["changed"] == exact["changed"] - material["why"]["close"]
    last = spaces["material"].status()
    note = notes["material"]
    assert note.startswith("delta: re-ranked") and "whose evidence moved within the tolerance 0.5" in note
    # the kept rows still stand for the evidence and the time they were ranked from
    rows = TableRows.load(spaces["material"].store.get("tables", spaces["material"].current()["table"]).path)  # type: ignore[index]
    assert rows is not None and rows.verified_at is not None and rows.signature is not None
    assert set(np.unique(rows.verified_at).tolist()) == {FEB.timestamp(), datetime(2000, 2, 4, tzinfo=UTC).timestamp()}
    ages = last["staleness"]["table_row_age_days"]
    assert ages["p50"] >= 0.0 and ages["max"] == pytest.approx(3.0)
    # The served lists differ from exact delta only where a row was kept.
    changed = (_table(spaces["material"])[0] != _table(spaces["exact"])[0]).any(axis=1)
    assert changed.sum() <= material["why"]["close"]
    # Past the staleness bound nothing is kept: a later update ranks those rows again.
    late = fake_plugins.write_log(tmp_path / "mar.csv", datetime(2000, 2, 23, tzinfo=UTC), 2, seed=2)
    run_update(spaces["material"], late, now=datetime(2000, 2, 25, tzinfo=UTC))
    latest = spaces["material"].store.get("tables", spaces["material"].current()["table"]).manifest  # type: ignore[index]
    assert latest["regenerate"]["why"]["close"] == 0, latest["regenerate"]
    assert latest["regenerate"]["why"]["stale"] > 0, latest["regenerate"]
