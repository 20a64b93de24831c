"""The cost-quality frontier of the report: which arms no other arm dominates, in JSON, Markdown
and the plot."""

from __future__ import annotations

import pytest
from conftest import fake_config

from hybridrec.backtest import run_backtest, write_report
from hybridrec.backtest.report import mark_frontier, pareto_frontier, render_markdown


def _arm(name: str, flops: float, hr5: float, llm: bool = True) -> dict:
    return {"name": name, "llm": llm, "metrics": {"hr@5": hr5}, "cost": {"flops": flops},
            "ci95": {"hr@5": [hr5 - 0.01, hr5 + 0.01]}}


def test_an_arm_is_dominated_only_by_one_no_dearer_and_no_worse_and_strictly_better_once() -> None:
    dominated = pareto_frontier({"cheap": (1.0, 0.30), "dear": (4.0, 0.35), "worse": (2.0, 0.29),
                                 "twin": (1.0, 0.30), "waste": (4.0, 0.30)})
    assert dominated["cheap"] == [] and dominated["twin"] == []  # equal points: neither dominates
    assert dominated["dear"] == []
    assert sorted(dominated["worse"]) == ["cheap", "twin"]
    assert sorted(dominated["waste"]) == ["cheap", "dear", "twin"]


def test_mark_frontier_over_all_arms_and_over_llm_arms() -> None:
    arms = [_arm("rag-once", 2.0, 0.34), _arm("hybrid", 30.0, 0.338), _arm("ft-weekly", 33.0, 0.30),
            _arm("markov-all", 0.0, 0.3398, llm=False)]
    pareto = mark_frontier(arms)
    assert pareto["frontier"] == ["markov-all", "rag-once"]
    assert pareto["frontier_llm"] == ["rag-once"]
    by = {a["name"]: a["pareto"] for a in arms}
    assert by["hybrid"]["dominated_by"] == ["markov-all", "rag-once"]
    assert by["markov-all"]["on_llm_frontier"] is None and by["markov-all"]["on_frontier"]
    assert by["rag-once"]["on_frontier"] and by["rag-once"]["on_llm_frontier"]
    assert not by["ft-weekly"]["on_frontier"]


def test_the_report_marks_lists_and_draws_the_frontier(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["no-update", "hybrid", "ft-weekly", "rag-once", "markov-all"])
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    pareto = report["pareto"]
    arms = {a["name"]: a for a in report["arms"]}
    assert pareto["frontier"] and set(pareto["frontier"]) <= set(arms)
    for name, arm in arms.items():
        assert arm["pareto"]["on_frontier"] == (name in pareto["frontier"])
        for other in arm["pareto"]["dominated_by"]:
            assert arms[other]["cost"]["flops"] <= arm["cost"]["flops"]
            assert arms[other]["metrics"]["hr@5"] >= arm["metrics"]["hr@5"]
    # The cheapest arm among those with the best HR@5 is always on the frontier.
    best = max(a["metrics"]["hr@5"] for a in arms.values())
    cheapest_best = min((a for a in arms.values() if a["metrics"]["hr@5"] == best),
                        key=lambda a: a["cost"]["flops"])
    assert cheapest_best["name"] in pareto["frontier"]
    paths = write_report(report, tmp_path)
    markdown = paths["markdown"].read_text()
    assert "## Cost-quality frontier" in markdown
    assert all(name in markdown.split("## Cost-quality frontier")[1] for name in pareto["frontier"])
    assert (tmp_path / "pareto.png").stat().st_size > 0
    # A report written before the frontier existed still renders (computed on the fly for the plot).
    old = {k: v for k, v in report.items() if k != "pareto"}
    assert "Cost-quality frontier" not in render_markdown(old, {})


def test_break_even_ranges_follow_from_linear_costs() -> None:
    from hybridrec.backtest.report import break_even

    def arm(name: str, ft: float, other: float, hr5: float) -> dict:
        return {"name": name, "llm": True, "metrics": {"hr@5": hr5},
                "cost": {"flops": ft + other, "flops_by_action": {"fine_tune": ft}}}

    # One fine-tune costs 10 flops now, one full regeneration 100 (ratio 0.1).
    arms = [arm("ft-heavy", ft=40.0, other=100.0, hr5=0.35),   # 4 fine-tunes + 1 regeneration
            arm("rag-heavy", ft=0.0, other=500.0, hr5=0.35),   # 5 regenerations
            arm("worse", ft=10.0, other=50.0, hr5=0.30)]
    be = break_even(arms, full_regeneration_flops=100.0, fine_tune_flops=10.0)
    assert be is not None and be["ratio_now"] == 0.1
    heavy = be["arms"]["ft-heavy"]
    assert heavy["fine_tune_equivalents"] == 4.0 and heavy["other_in_full_regenerations"] == 1.0
    # ft-heavy costs 4r + 1, rag-heavy 5: equal at r = 1; the fine-tuning arm wins below it.
    assert heavy["on_frontier_for_ratio"] == [0.0, 1.0]
    assert be["arms"]["rag-heavy"]["on_frontier_for_ratio"] == [1.0, None]
    assert heavy["rivals"] == [{"arm": "rag-heavy", "ratio": 1.0, "wins_when": "below"}]
    # "worse" (r + 0.5) is on the frontier only while it is the cheapest: rag-heavy costs 5.
    assert be["arms"]["worse"]["on_frontier_for_ratio"] == [0.0, 4.5]
    assert break_even(arms, full_regeneration_flops=0.0, fine_tune_flops=10.0) is None


def test_the_study_reports_the_break_even(fake_stack, catalog, transitions, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["ft-weekly", "rag-only", "hybrid", "markov-all"])
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    be = report["break_even"]
    assert set(be["arms"]) == {"ft-weekly", "rag-only", "hybrid"}
    assert be["full_regeneration_flops"] == report["setup"]["llm"]["full_regeneration_flops"] > 0
    for name, a in be["arms"].items():
        cost = {x["name"]: x["cost"]["flops"] for x in report["arms"]}[name]
        assert a["cost_in_full_regenerations_now"] * be["full_regeneration_flops"] == \
            pytest.approx(cost, rel=1e-4)
    assert be["arms"]["rag-only"]["fine_tune_equivalents"] == 0
    assert "## Break-even" in write_report(report, tmp_path)["markdown"].read_text()
