"""The recall signals of the adaptive arm's state are the served lists' own hit rate, measured
on days after the table that served them was built."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import fake_config

from hybridrec.backtest import run_backtest
from hybridrec.backtest.llm import PolicyArm


def test_recall_signals_are_the_served_hit_rate_on_seen_days(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["adaptive", "hybrid"])
    report, result, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    arm = result.run("adaptive").arm
    assert isinstance(arm, PolicyArm)
    per_day = {a["name"]: a for a in report["arms"]}["adaptive"]["per_day"]
    days = int(config.llm.signals.recall_days)
    assert len(arm.served_days) == len(per_day)
    # recall_recent at the end: the arm's scored HR@5 over its last `days` days.
    end = result.days[-1].end
    signals = arm.recall_signals(end, days)
    last = per_day[-days:]
    expected = sum(d["hr@5"] * d["n"] for d in last) / sum(d["n"] for d in last)
    assert signals["recall_recent"] == pytest.approx(expected)
    # Too early: nothing measured yet.
    assert arm.recall_signals(result.days[0].end, days)["recall_recent"] is None
    # At the table's build time + days: the table's first days.
    table = arm.table
    assert table is not None
    if end - table.built_at >= timedelta(days=days):
        first = [d for d in arm.served_days if d.table_built_at == table.built_at][:days]
        assert signals["recall_at_table"] == pytest.approx(sum(d.hits for d in first) / sum(d.n for d in first))
    # Arms that do not read drift record nothing.
    assert result.run("hybrid").arm.served_days == []  # type: ignore[attr-defined]


def test_regenerating_only_recent_contexts_is_charged_for_those_contexts(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.config import PluginRef

    config = fake_config(arms=["adaptive"])
    full_report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    ref = config.llm.policies["adaptive"]
    policies = {**config.llm.policies, "adaptive": PluginRef(
        plugin=ref.plugin, options={**ref.options, "regenerate_recent_days": 1.0})}
    recent = config.model_copy(update={"llm": config.llm.model_copy(update={"policies": policies})})
    report, _, _ = run_backtest(recent, data=(catalog, transitions), drift=False)
    part = report["arms"][0]
    assert full_report["arms"][0]["metrics"]["regenerated_contexts_if_full"] == \
        full_report["arms"][0]["cost"]["table_regenerations"] * len(catalog) * (len(catalog) - 1)
    regenerations = part["cost"]["table_regenerations"]
    assert regenerations >= 1
    # Each regeneration is charged for the contexts seen in the last day, fewer than n (n - 1).
    n = len(catalog)
    assert part["metrics"]["regenerated_contexts_if_full"] < regenerations * n * (n - 1)


def test_the_adaptive_arm_reads_the_counterfactual_refresh_gain(fake_stack, catalog, transitions) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.engine.state import freshness_signals

    config = fake_config(arms=["adaptive"])
    _, result, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    arm = result.run("adaptive").arm
    assert isinstance(arm, PolicyArm)
    end = result.days[-1].end
    state = arm.state(transitions.before(end), end)
    assert state.knowledge_until is not None
    expected = freshness_signals(transitions.before(end), knowledge_until=state.knowledge_until, data_until=end)
    assert expected["refresh_gain"] is not None
    assert (state.drift.refresh_gain, state.drift.refresh_gain_se) == (
        expected["refresh_gain"], expected["refresh_gain_se"])
