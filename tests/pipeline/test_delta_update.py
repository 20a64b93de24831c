"""``hybridrec update`` regenerates by delta: only contexts whose prompt changed are re-ranked, and
the served table is exactly the one a full regeneration serves."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

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
    assert manifest["regenerate"] == {"mode": "full", "ranked": n * (n - 1), "changed": n * (n - 1), "copied": 0}


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
