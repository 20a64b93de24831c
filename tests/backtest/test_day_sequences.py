"""Property: every arm and the backtest handle any sequence of days, including days and whole
windows without transitions, a budget of zero or a tight one, and regenerations restricted to
recent traffic: no exception, decisions within the budget over every rolling period, and every
fine-tune and refresh followed by a regeneration."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest
from conftest import N_CLUSTERS, START, fake_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrec.backtest import run_backtest
from hybridrec.backtest.config import ALL_ARMS
from hybridrec.backtest.llm import OVER_BUDGET, PolicyArm
from hybridrec.config import PluginRef
from hybridrec.errors import DataError
from hybridrec.types import Budget, TransitionSet

WARMUP_DAYS = 20
TEST_START = date(2000, 1, 21)


def day_counts(lengths: list[tuple[int, int]], total: int) -> list[int]:
    """Runs ``(transitions per day, days)`` flattened and cut or padded (with empty days) to
    ``total`` days."""
    counts = [c for c, n in lengths for _ in range(n)][:total]
    return counts + [0] * (total - len(counts))


def transitions_for(counts: list[int], seed: int) -> TransitionSet:
    rng = np.random.default_rng(seed)
    rows = []
    for day, count in enumerate(counts):
        for _ in range(count):
            c1, c2 = rng.choice(N_CLUSTERS, size=2, replace=False)
            options = [c for c in range(N_CLUSTERS) if c not in (c1, c2)]
            c3 = options[(c1 + c2 + day // 10) % len(options)] if rng.random() < 0.7 else rng.choice(options)
            rows.append((int(START.timestamp()) + day * 86400 + int(rng.integers(0, 86400)), c1, c2, c3))
    rows.sort()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return TransitionSet(arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 0], np.full(len(arr), -1), N_CLUSTERS)


# Runs of days: many empty, some long enough (>= 14 days) to leave a knowledge window empty.
runs = st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 5, 30]), st.integers(1, 16)), min_size=1, max_size=6)


#: Restricted regenerations on the arms that take them, both fallbacks; the adaptive arm acts on
#: any measured gain and refreshes at least every 3 days, so empty windows are exercised.
RECENT = {
    "ft-weekly": {"regenerate_recent_days": 2.0},
    "rag-only": {"regenerate_recent_days": 1.0, "regenerate_fallback": "serving"},
    "hybrid": {"regenerate_recent_days": 1.0},
    "adaptive": {"regenerate_recent_days": 1.0, "min_gain_per_cost": 0.0, "max_knowledge_days": 3.0},
}
#: A budget of zero (nothing priced may run) or one that fits a few refreshes and regenerations
#: of the fake stack per period, never a fine-tune.
BUDGETS = [None, Budget(flops=0.0), Budget(period_days=7.0, flops=150.0)]


def regenerations_follow(labels: list[str]) -> bool:
    """Every fine-tune and refresh that ran is followed by a regeneration (or by the skipped
    rest of a decision that ran out of budget)."""
    return all(
        any(later.startswith(("regenerate_table", OVER_BUDGET)) for later in labels[i + 1 :])
        for i, label in enumerate(labels) if label.startswith(("fine_tune", "refresh_knowledge"))
    )


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(warmup=runs, test=runs, test_days=st.integers(1, 30), budget=st.sampled_from(BUDGETS),
       recent=st.booleans(), seed=st.integers(0, 3))
def test_every_arm_handles_any_day_sequence(fake_stack, catalog, warmup, test, test_days, budget, recent, seed) -> None:  # type: ignore[no-untyped-def]
    counts = day_counts(warmup, WARMUP_DAYS) + day_counts(test, test_days)
    counts[0] = max(counts[0], 1)  # the warm-up needs at least one transition
    transitions = transitions_for(counts, seed)
    config = fake_config(start=TEST_START, end=TEST_START + timedelta(days=test_days))
    llm: dict[str, object] = {}
    if budget is not None:
        llm["budget"] = budget
    if recent:
        llm["policies"] = {**config.llm.policies, **{
            arm: PluginRef(plugin=config.llm.policies[arm].plugin,
                           options={**config.llm.policies[arm].options, **options})
            for arm, options in RECENT.items()}}
    config = config.model_copy(update={"llm": config.llm.model_copy(update=llm)})
    zero_budget = budget is not None and budget.flops == 0.0
    validation_days = config.markov_best.validation_days
    if sum(counts[WARMUP_DAYS:]) == 0 or sum(counts[WARMUP_DAYS - validation_days : WARMUP_DAYS]) == 0:
        # nothing to score, or nothing to choose the tunables on: refused, naming the data's range
        with pytest.raises(DataError, match="the data runs from"):
            run_backtest(config, data=(catalog, transitions), drift=False)
        return
    report, result, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    assert "partial" not in report
    assert report["dataset"]["test_days"] == test_days
    assert report["dataset"]["test_transitions"] == sum(counts[WARMUP_DAYS:])
    assert [a["name"] for a in report["arms"]] == list(ALL_ARMS)
    for arm in report["arms"]:
        assert [d["n"] for d in arm["per_day"]] == counts[WARMUP_DAYS:], arm["name"]
        cum = [d["cum_flops"] for d in arm["per_day"]]
        assert cum == sorted(cum), arm["name"]
        hr5 = arm["metrics"]["hr@5"]
        assert hr5 is None or 0.0 <= hr5 <= 1.0
        if zero_budget and arm["llm"]:
            # Nothing priced above zero may run on a budget of zero.
            assert arm["cost"]["flops"] == 0.0, arm["name"]
            assert arm["cost"]["table_regenerations"] == 0, arm["name"]
        served = result.run(arm["name"]).arm
        if not isinstance(served, PolicyArm):
            continue
        decisions = [served.initial_actions, *(d["actions"] for d in arm["per_day"])]
        assert all(regenerations_follow(labels) for labels in decisions), (arm["name"], decisions)
        if budget is not None and budget.flops is not None:
            # What the ledger spent in every rolling budget period fits the limit.
            period = timedelta(days=budget.period_days)
            for record in served.ledger:
                spent = sum(r.flops for r in served.ledger if record.at - period <= r.at <= record.at)
                assert spent <= budget.flops + 1e-9, (arm["name"], record.at, spent)
    assert set(report["pareto"]["frontier"]) <= {a["name"] for a in report["arms"]}


def test_a_file_dataset_with_empty_days_and_an_empty_window_runs_end_to_end(fake_stack, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A log read through the `file` dataset plugin and the CLI, every arm, the adaptive arm on
    # recent-only regenerations: no transitions on three test days and none for 16 days in a
    # row (longer than the 14-day knowledge window), then traffic again.
    import json

    from hybridrec.cli import main

    genres = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]
    items = [f"m{i}" for i in range(18)]
    (tmp_path / "items.csv").write_text("item,title,categories\n" + "".join(
        f"{item},Movie {item},{genres[i % len(genres)]}\n" for i, item in enumerate(items)))
    quiet = {24, 25, 28, *range(32, 48)}  # days after 2000-01-01 without any interaction
    rng = np.random.default_rng(0)
    rows = []
    for user in range(30):
        for day in range(60):
            if day in quiet or rng.random() < 0.5:
                continue
            for _ in range(2):
                ts = int(START.timestamp()) + day * 86400 + int(rng.integers(0, 86400))
                rows.append(f"u{user},{items[int(rng.integers(0, len(items)))]},{ts},5")
    (tmp_path / "events.csv").write_text("user,item,timestamp,rating\n" + "\n".join(rows) + "\n")
    study = tmp_path / "study.toml"
    study.write_text(
        'dataset = "file"\nstart = 2000-01-21\nend = 2000-02-25\nbootstrap = 100\n'
        '[dataset_options]\ninteractions = "events.csv"\nitems = "items.csv"\n'
        '[llm]\nwarmup_days = 10\ninitial_fine_tune_options = {}\n'
        'generator = { plugin = "fake-prompt-gen" }\nfine_tuner = { plugin = "fake-ft" }\n'
        'knowledge_store = { plugin = "fake-store" }\ncost_model = { plugin = "fake-cost" }\n'
        'guardrails = { enabled = false }\n'
        '[llm.policies.adaptive]\nplugin = "adaptive"\n'
        'options = { regenerate_recent_days = 1, min_gain_per_cost = 0.0, max_knowledge_days = 3 }\n'
    )
    out = tmp_path / "out"
    main(["backtest", "--config", str(study), "--quiet", "--out", str(out)])
    report = json.loads((out / "report.json").read_text())
    assert "partial" not in report
    assert [a["name"] for a in report["arms"]] == list(ALL_ARMS)
    for arm in report["arms"]:
        per_day = {d["day"]: d for d in arm["per_day"]}
        assert len(per_day) == 35
        assert all(per_day[d]["n"] == 0 for d in ("2000-01-25", "2000-01-26", "2000-01-29", "2000-02-10"))
        assert per_day["2000-02-20"]["n"] > 0 and arm["metrics"]["hr@5"] is not None
    adaptive = next(a for a in report["arms"] if a["name"] == "adaptive")
    assert adaptive["cost"]["knowledge_refreshes"] >= 10  # kept refreshing through the gap
    assert adaptive["metrics"]["regenerated_contexts"] <= adaptive["metrics"]["regenerated_contexts_if_full"]
