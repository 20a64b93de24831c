"""Delta regeneration: rows are reused across knowledge snapshots only where the rendered prompt
is identical, so a delta table equals a full regeneration row for row, and only changed contexts
are charged."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_config

from hybridrec.backtest import run_backtest
from hybridrec.backtest.llm import INITIAL, WorkCache, initial_adapter
from hybridrec.backtest.study import build_stack
from hybridrec.config import PluginRef
from hybridrec.generation import all_contexts
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet


def _prompt_config(**updates: object):  # type: ignore[no-untyped-def]
    config = fake_config(**updates)
    llm = config.llm.model_copy(update={"generator": PluginRef(plugin="fake-prompt-gen")})
    return config.model_copy(update={"llm": llm})


def _changed(cache: WorkCache, adapter_before: str, snapshot_before: str | None, held: np.ndarray | None,
             adapter: str, snapshot: str | None, wanted: np.ndarray | None = None) -> int:
    """Contexts the engine's delta plan ranks for a table of ``(adapter, snapshot)`` after one of
    ``(adapter_before, snapshot_before)`` holding ``held``, over ``wanted`` (masks over context
    keys; None: every context)."""
    everything = cache.contexts_all()
    keys = everything[:, 0] * cache.n + everything[:, 1]
    mine = everything if held is None else everything[held[keys]]
    before = cache.plan(adapter_before, snapshot_before, mine, None)
    previous = before.next_rows(adapter_before, width=cache.stack.table_k)
    want = everything if wanted is None else everything[wanted[keys]]
    return cache.plan(adapter, snapshot, want, previous).changed


def _cache(config, catalog: ClusterCatalog, transitions: TransitionSet, tmp: Path) -> WorkCache:  # type: ignore[no-untyped-def]
    cache = WorkCache(build_stack(config, catalog, tmp), transitions)
    initial_adapter(cache, transitions.before(config.start_dt), config.start_dt, 10)
    return cache


def test_delta_table_equals_full_regeneration(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = _prompt_config(arms=["rag-only"])
    start = config.start_dt
    first = TimeWindow(start=start - timedelta(days=2), end=start)
    second = TimeWindow(start=start, end=start + timedelta(days=2))
    everything = all_contexts(len(catalog))
    n = len(catalog)

    delta = _cache(config, catalog, transitions, tmp_path / "delta")
    s1 = delta.snapshot(transitions, first).key
    s2 = delta.snapshot(transitions, second).key
    delta.rows_for(INITIAL, s1, everything)
    before = fake_stack["rank_contexts"]
    delta_ids, delta_scores = delta.rows_for(INITIAL, s2, everything)
    ranked_by_delta = fake_stack["rank_contexts"] - before

    full = _cache(config, catalog, transitions, tmp_path / "full")
    full.snapshot(transitions, second)
    full_ids, full_scores = full.rows_for(INITIAL, s2, everything)
    # And straight from the generator, with no cache at all.
    gen = full.stack.generator
    gen.load_adapter(full.adapters[INITIAL].path)
    direct = gen.rank(everything, full.snapshots[s2].snapshot.evidence(everything), full.stack.table_k)

    np.testing.assert_array_equal(delta_ids, full_ids)
    np.testing.assert_array_equal(delta_scores, full_scores)
    np.testing.assert_array_equal(delta_ids, direct.ids)

    changed = _changed(delta, INITIAL, s1, None, INITIAL, s2, None)
    ev1 = delta.snapshots[s1].snapshot.evidence(everything).cluster
    ev2 = delta.snapshots[s2].snapshot.evidence(everything).cluster
    assert changed == int((ev1 != ev2).any(axis=1).sum())
    assert 0 < changed < n * (n - 1)  # the synthetic data changes some evidence, not all
    assert ranked_by_delta == changed  # unchanged rows were copied, not re-ranked
    assert delta.reused_rows == n * (n - 1) - changed
    # A new adapter, or a table that did not hold a context, forces a re-rank.
    assert _changed(delta, "other", s1, None, INITIAL, s2, None) == n * (n - 1)
    held = np.zeros(n * n, dtype=bool)
    assert _changed(delta, INITIAL, s2, held, INITIAL, s2, None) == n * (n - 1)
    assert _changed(delta, INITIAL, s2, None, INITIAL, s2, None) == 0


def test_a_generator_without_prompts_is_charged_in_full(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["rag-only"])
    cache = _cache(config, catalog, transitions, tmp_path)
    start = config.start_dt
    s1 = cache.snapshot(transitions, TimeWindow(start=start - timedelta(days=2), end=start)).key
    s2 = cache.snapshot(transitions, TimeWindow(start=start, end=start + timedelta(days=2))).key
    n = len(catalog)
    assert _changed(cache, INITIAL, s1, None, INITIAL, s2, None) == n * (n - 1)


@pytest.mark.parametrize("arms", [["rag-only", "hybrid", "ft-weekly"]])
def test_delta_and_full_backtests_serve_the_same_lists(fake_stack, catalog, transitions, arms) -> None:  # type: ignore[no-untyped-def]
    reports = {}
    for mode in ("delta", "full"):
        config = _prompt_config(arms=arms)
        config = config.model_copy(update={"llm": config.llm.model_copy(update={"regenerate": mode})})
        reports[mode], _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    delta = {a["name"]: a for a in reports["delta"]["arms"]}
    full = {a["name"]: a for a in reports["full"]["arms"]}
    n = len(catalog)
    for name in arms:
        for key in ("hr@1", "hr@5", "ndcg@5", "rag_equals_no_rag_top1"):
            assert delta[name]["metrics"][key] == full[name]["metrics"][key]
        assert [d["hr@5"] for d in delta[name]["per_day"]] == [d["hr@5"] for d in full[name]["per_day"]]
        f = full[name]
        assert f["metrics"]["regenerated_contexts"] == f["cost"]["table_regenerations"] * n * (n - 1)
        assert delta[name]["metrics"]["flops_if_full_regeneration"] == pytest.approx(f["cost"]["flops"])
    # RAG refreshes with an unchanged adapter re-rank only what changed...
    rag = delta["rag-only"]
    assert rag["metrics"]["regenerated_contexts"] < full["rag-only"]["metrics"]["regenerated_contexts"]
    assert rag["cost"]["flops"] < full["rag-only"]["cost"]["flops"]
    # ...while ft-weekly's regenerations all follow a new adapter and stay full.
    assert delta["ft-weekly"]["cost"]["flops"] == pytest.approx(full["ft-weekly"]["cost"]["flops"])
    detail = reports["delta"]
    assert detail["setup"]["llm"]["regenerate"] == "delta"


def _arm(name: str, hr5: float, flops: float, fine_tunes: int, regens: int, regen_flops: float,
         full_regen_flops: float, rag_share: float | None = None) -> dict:
    ft_flops = flops - regen_flops
    return {
        "name": name, "llm": True,
        "metrics": {"hr@5": hr5, "rag_equals_no_rag_top1": rag_share,
                    "regenerated_contexts": 10 * regens, "regenerated_contexts_if_full": 100 * regens,
                    "regenerate_flops_if_full": full_regen_flops,
                    "flops_if_full_regeneration": ft_flops + full_regen_flops},
        "cost": {"flops": flops, "fine_tunes": fine_tunes, "table_regenerations": regens,
                 "flops_by_action": {"fine_tune": ft_flops, "regenerate_table": regen_flops}},
    }


def test_verdict_reports_both_regeneration_modes() -> None:
    from hybridrec.backtest.report import verdict

    # A fine-tune costs 1, a full regeneration 10; hybrid: 1 FT + 10 regenerations (one full
    # after its fine-tune, nine deltas at 1 each); ft-weekly: 4 FT + 4 full regenerations.
    report = {
        "arms": [
            _arm("hybrid", 0.36, 1 + 19, 1, 10, 19, 100, rag_share=0.4),
            _arm("ft-weekly", 0.32, 4 + 40, 4, 4, 40, 40),
        ],
        "paired": [],
    }
    from hybridrec.backtest.config import DEMO_CLAIMS

    v = verdict(report, list(DEMO_CLAIMS))
    detail = v["claims"][0]["detail"]
    assert detail["cost_ratio"] == pytest.approx(20 / 44, abs=1e-6)
    assert detail["cost_ratio_if_full_regeneration"] == pytest.approx(101 / 44, abs=1e-6)
    assert detail["cost_ok"] is False  # cheaper than full, but not a quarter of ft-weekly
    notes = " ".join(v["notes"])
    assert "RAG is used" in notes and "40.0%" in notes
    assert "ranked 100 contexts against 1,000" in notes
    assert "only if a fine-tune" not in notes
    # hybrid <= weekly / 4 needs F * (4 - 4) >= ...: no fine-tune price can do it, so no
    # break-even sentence; with ft-weekly fine-tuning 8 times it needs F >= (4*19 - 40) / 4 = 9,
    # i.e. 0.9 full regenerations.
    report["arms"][1] = _arm("ft-weekly", 0.32, 8 + 40, 8, 4, 40, 40)
    notes = " ".join(verdict(report)["notes"])
    assert "at least 0.9x a full-table regeneration (it costs 0.10x)" in notes
