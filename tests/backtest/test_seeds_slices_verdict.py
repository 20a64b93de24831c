"""Report slices by pair support, aggregation over training seeds, and the verdict rule."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from conftest import fake_config

from hybridrec.backtest.baselines import MarkovArm, PopularityArm
from hybridrec.backtest.config import DEMO_CLAIMS, Claim
from hybridrec.backtest.metrics import pair_support_before_day, support_slices
from hybridrec.backtest.protocol import Arm, Day, Served, fill_lists
from hybridrec.backtest.report import build_report, paired_claim, verdict, write_report
from hybridrec.backtest.runner import replay
from hybridrec.backtest.study import run_backtest, scored_pair_support, with_training_seed
from hybridrec.cli import main
from hybridrec.types import UTC, TransitionSet

T0 = datetime(2000, 1, 21, tzinfo=UTC)
T1 = datetime(2000, 2, 10, tzinfo=UTC)
DATASET = {"name": "synthetic", "clusters": 8, "k": 2, "test_start": "2000-01-21",
           "test_end": "2000-02-10"}


# -- slices -------------------------------------------------------------------------------------


def test_pair_support_counts_earlier_days_of_the_exact_pair() -> None:
    day = 86_400
    c1 = np.array([0, 0, 1, 0, 0, 0])
    c2 = np.array([1, 1, 0, 1, 1, 2])
    ts = np.array([0, 10, 20, day + 5, day + 6, day + 7])
    # Rows 3-5 are scored on day 1: (0,1) had two rows before the day (row 4 does not count
    # row 3, of the same day); (0,2) none; (1,0) is a different pair.
    support = pair_support_before_day(c1, c2, ts, 3, np.array([3, 4, 5]), np.array([day] * 3))
    assert support.tolist() == [2, 2, 0]


def test_slices_sum_to_totals(transitions: TransitionSet) -> None:
    result = replay(transitions, [MarkovArm("markov-all", transitions),
                                  PopularityArm("popularity", transitions)], T0, T1)
    support = scored_pair_support(transitions, result)
    assert support.shape == (result.n_transitions,)
    report = build_report(result, dataset=DATASET, reference="markov-all", seed=0, n_boot=100,
                          pair_support=support)
    assert report["slices"]["buckets"] == ["0", "1-4", "5-49", ">=50"]
    for arm in report["arms"]:
        slices = arm["slices"]
        assert [s["bucket"] for s in slices] == ["0", "1-4", "5-49", ">=50"]
        assert sum(s["n"] for s in slices) == result.n_transitions
        for metric in ("hr@1", "hr@5"):
            total = sum(s["n"] * s[metric] for s in slices) / result.n_transitions
            assert total == pytest.approx(arm["metrics"][metric], abs=1e-5)
    ranks = np.array([0, -1, 3, 1], dtype=np.int8)
    assert support_slices(ranks, np.array([0, 0, 7, 70])) == [
        {"bucket": "0", "n": 2, "hr@1": 0.5, "hr@5": 0.5},
        {"bucket": "1-4", "n": 0, "hr@1": 0.0, "hr@5": 0.0},
        {"bucket": "5-49", "n": 1, "hr@1": 0.0, "hr@5": 1.0},
        {"bucket": ">=50", "n": 1, "hr@1": 0.0, "hr@5": 1.0},
    ]


# -- seeds --------------------------------------------------------------------------------------


class OracleArm(Arm):
    """Serves the true successor first for the rows where ``hit(row)``; a wrong list otherwise."""

    llm: ClassVar[bool] = True

    def __init__(self, name: str, transitions: TransitionSet, every: int) -> None:
        super().__init__(name)
        self.t = transitions
        self.every = every
        self.pos = 0

    def begin(self, history: TransitionSet, start: datetime) -> None:
        self.pos = len(history)

    def serve(self, contexts: np.ndarray, k: int) -> Served:
        m = contexts.shape[0]
        truth = self.t.c3[self.pos : self.pos + m]
        index = np.arange(self.pos, self.pos + m)
        ids = np.full((m, k), -1, dtype=np.int64)
        hit = index % self.every != 0
        ids[hit, 0] = truth[hit]
        avoid = np.concatenate([contexts, truth[:, None]], axis=1)
        filled = fill_lists(ids[:, :], avoid, np.arange(self.t.n_clusters))
        return Served(ids=filled, covered=np.ones(m, dtype=bool))

    def end_of_day(self, history: TransitionSet, day: Day) -> list[str]:
        self.pos = day.hi
        return []

    def exact_match_rate(self) -> float | None:
        return 1.0


def _seeded_report(transitions: TransitionSet, everies: list[int]) -> dict[str, Any]:
    """hybrid (an oracle hitting all rows but every ``every``-th, per seed) against
    markov-all; seed i of hybrid uses ``everies[i]``."""
    first = replay(transitions, [OracleArm("hybrid", transitions, everies[0]),
                                 MarkovArm("markov-all", transitions)], T0, T1)
    extra = [(i, replay(transitions, [OracleArm("hybrid", transitions, e)], T0, T1))
             for i, e in enumerate(everies[1:], start=1)]
    return build_report(first, dataset=DATASET, reference="hybrid", seed=0, n_boot=100,
                        extra_seeds=extra, pair_support=scored_pair_support(transitions, first))


def test_seeds_aggregate_mean_and_range_and_pair_per_seed(transitions: TransitionSet) -> None:
    report = _seeded_report(transitions, [2, 3, 50])
    hybrid = {a["name"]: a for a in report["arms"]}["hybrid"]
    per_seed = [p["metrics"]["hr@1"] for p in hybrid["seeds"]["per_seed"]]
    assert [p["seed"] for p in hybrid["seeds"]["per_seed"]] == [0, 1, 2]
    assert per_seed[0] < per_seed[1] < per_seed[2]
    assert hybrid["metrics"]["hr@1"] == pytest.approx(np.mean(per_seed), abs=1e-6)
    assert hybrid["seeds"]["min"]["hr@1"] == min(per_seed)
    assert hybrid["seeds"]["max"]["hr@1"] == max(per_seed)
    assert hybrid["slices"][0]["hr@1"] == pytest.approx(
        np.mean([p["slices"][0]["hr@1"] for p in hybrid["seeds"]["per_seed"]]), abs=1e-6)
    markov = {a["name"]: a for a in report["arms"]}["markov-all"]
    assert "seeds" not in markov  # counting arms run once
    pair = next(p for p in report["paired"] if p["b"] == "markov-all" and p["metric"] == "hr@1")
    assert [q["seed"] for q in pair["per_seed"]] == [0, 1, 2]
    assert pair["delta"] == pytest.approx(np.mean([q["delta"] for q in pair["per_seed"]]), abs=1e-6)
    assert pair["ci95"][0] == min(q["ci95"][0] for q in pair["per_seed"])
    assert report["seeds"]["training_seeds"] == [0, 1, 2]


def test_a_claim_holds_only_if_it_holds_for_every_seed(transitions: TransitionSet) -> None:
    # The oracle missing every 2nd row (HR@1 0.5) beats markov-all; missing all rows does not.
    good = _seeded_report(transitions, [3, 4])
    assert paired_claim(good, "hybrid", "markov-all", "hr@1") is True
    assert paired_claim(good, "markov-all", "hybrid", "hr@1") is False
    mixed = _seeded_report(transitions, [3, 1])  # seed 1 never hits
    pair = next(p for p in mixed["paired"] if p["b"] == "markov-all" and p["metric"] == "hr@1")
    assert pair["per_seed"][0]["excludes_zero"] and pair["per_seed"][0]["delta"] > 0
    assert pair["per_seed"][1]["delta"] < 0
    assert pair["excludes_zero"] is False
    assert paired_claim(mixed, "hybrid", "markov-all", "hr@1") is False
    assert paired_claim(mixed, "hybrid", "popularity") is None


def test_run_backtest_replays_llm_arms_per_seed(fake_stack, catalog, transitions, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = fake_config(arms=["no-update", "markov-all"], seeds=2)
    report, _, _ = run_backtest(config, data=(catalog, transitions), drift=False)
    arms = {a["name"]: a for a in report["arms"]}
    assert [p["seed"] for p in arms["no-update"]["seeds"]["per_seed"]] == [0, 1]
    assert "seeds" not in arms["markov-all"]
    assert report["setup"]["seeds"] == [0, 1]
    assert [p["seed"] for p in report["setup"]["per_seed"]] == [1]
    # what the numbers were computed on, for comparing reports across machines
    machine = report["setup"]["machine"]
    assert machine["cpu"] and set(machine) >= {"torch_cpu_capability", "ATEN_CPU_CAPABILITY", "MKL_CBWR"}
    assert fake_stack["fine_tune"] >= 2  # one initial fine-tune per seed
    paths = write_report({**report, "verdict": verdict(report)}, tmp_path)
    text = paths["markdown"].read_text()
    assert "## Training seeds" in text and "## HR@5 by pair support" in text
    assert json.loads(paths["json"].read_text())["seeds"]["training_seeds"] == [0, 1]


def test_training_seed_reaches_plugins_that_take_one() -> None:
    from hybridrec.backtest.config import BacktestConfig

    config = BacktestConfig(arms=["hybrid"])
    seeded = with_training_seed(config, 7, offset=2)
    assert seeded.seed == 7
    assert seeded.llm.generator.options["seed"] == 7
    assert seeded.llm.fine_tuner.options["seed"] == 7
    explicit = config.model_copy(update={"llm": config.llm.model_copy(update={
        "fine_tuner": config.llm.fine_tuner.model_copy(update={"options": {**config.llm.fine_tuner.options, "seed": 40}})})})
    assert with_training_seed(explicit, 7, offset=2).llm.fine_tuner.options["seed"] == 42
    counting = BacktestConfig(arms=["markov-all"])
    assert with_training_seed(counting, 3).llm == counting.llm


# -- verdict ------------------------------------------------------------------------------------


def _arm(name: str, flops: float = 0.0, llm: bool = True) -> dict[str, Any]:
    return {"name": name, "llm": llm, "metrics": {"hr@5": 0.3},
            "cost": {"flops": flops, "fine_tunes": 0, "table_regenerations": 0,
                     "knowledge_refreshes": 0, "flops_by_action": {}}}


def _pair(b: str, cis: list[tuple[float, float]]) -> dict[str, Any]:
    lo, hi = min(c[0] for c in cis), max(c[1] for c in cis)
    entry: dict[str, Any] = {"a": "hybrid", "b": b, "metric": "hr@5", "delta": (lo + hi) / 2,
                             "ci95": [lo, hi], "excludes_zero": lo > 0 or hi < 0}
    if len(cis) > 1:
        entry["per_seed"] = [{"seed": i, "delta": (c[0] + c[1]) / 2, "ci95": list(c),
                              "excludes_zero": c[0] > 0 or c[1] < 0} for i, c in enumerate(cis)]
    return entry


def _report(names: list[str], cis: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    arms = [_arm("hybrid", 1.0)] + [
        _arm(n, 8.0 if n == "ft-weekly" else 1.0, llm=not n.startswith("markov")) for n in names
    ]
    return {"arms": arms, "paired": [_pair(n, cis.get(n, [(0.01, 0.02), (0.01, 0.03)])) for n in names]}


def _claims(v: dict[str, Any]) -> list[tuple[bool | None, str, str]]:
    return [(c["met"], c["status"], c["reason"]) for c in v["claims"]]


def test_claim_met_only_if_every_arm_ran_and_every_seed_excludes_zero() -> None:
    demo = list(DEMO_CLAIMS)
    everyone = [*DEMO_CLAIMS[0].beats, "markov-all", "markov-best"]
    v = verdict(_report(everyone, {}), demo)
    (m1, s1, _), (m2, s2, _), _ = _claims(v)
    assert (m1, s1) == (True, "met") and (m2, s2) == (True, "met")
    assert v["claims"][2]["detail"]["deltas"]["markov-best"]["seeds"] == 2

    # One seed's CI includes zero: not met, and the reason names the arm.
    v = verdict(_report(everyone, {"rag-once": [(0.01, 0.02), (-0.001, 0.02)],
                                   "markov-best": [(0.01, 0.02), (-0.03, -0.01)]}), demo)
    first, second, third = _claims(v)
    assert first[:2] == (False, "not met") and "rag-once" in first[2]
    assert second[1] == "met" and third[1] == "not met"

    # An arm did not run: not measured, with the reason.
    v = verdict(_report([n for n in everyone if n not in ("adaptive", "markov-best")], {}), demo)
    first, _, third = _claims(v)
    assert first[:2] == (None, "not measured") and "adaptive" in first[2]
    assert third[1] == "not measured" and "markov-best" in third[2]

    # ... unless a comparison that did run already fails.
    v = verdict(_report([n for n in everyone if n != "adaptive"], {"no-update": [(-0.01, 0.01)]}), demo)
    assert _claims(v)[0][1] == "not met"

    # Cost above a quarter of ft-weekly's fails the first claim even when every CI excludes zero.
    report = _report(everyone, {})
    report["arms"][0]["cost"]["flops"] = 4.0
    first = _claims(verdict(report, demo))[0]
    assert first[1] == "not met" and "0.500x" in first[2]

    # The cost bound holds on seed 0 but not on seed 1: not met, each seed's ratio named.
    report = _report(everyone, {})
    hybrid, weekly = report["arms"][0], next(a for a in report["arms"] if a["name"] == "ft-weekly")
    hybrid["seeds"] = {"per_seed": [{"seed": 0, "cost": {"flops": 1.0}}, {"seed": 1, "cost": {"flops": 3.0}}]}
    weekly["seeds"] = {"per_seed": [{"seed": 0, "cost": {"flops": 8.0}}, {"seed": 1, "cost": {"flops": 8.0}}]}
    first = verdict(report, demo)["claims"][0]
    assert first["status"] == "not met" and "0.375x" in first["reason"]
    assert first["detail"]["cost_ratio_per_seed"] == {"0": 0.125, "1": 0.375}

    # Nothing LLM ran: not measured.
    v = verdict({"arms": [_arm("markov-all", llm=False)], "paired": []}, demo)
    assert [c["status"] for c in v["claims"]] == ["not measured"] * 3


def test_a_study_declares_its_own_claims_or_none(tmp_path: Path) -> None:
    from hybridrec.backtest.config import load_backtest_config
    from hybridrec.errors import ConfigError

    study = tmp_path / "study.toml"
    study.write_text('dataset = "synthetic"\n'
                     '[[claims]]\narm = "hybrid"\nbeats = ["markov-all"]\nmetric = "hr@1"\n'
                     '[[claims]]\nname = "cheap"\narm = "hybrid"\nbeats = ["ft-weekly"]\n'
                     'max_cost_ratio = 0.5\ncost_reference = "ft-weekly"\n')
    config = load_backtest_config(study)
    assert [c.metric for c in config.claims] == ["hr@1", "hr@5"]
    assert config.claims[0].label().startswith("hybrid beats markov-all on HR@1")
    assert load_backtest_config(None).claims == []  # a study claims nothing unless it says so
    # The report records the claims and the verdict reads them from it.
    report = _report(["markov-all", "ft-weekly"], {})
    report["paired"].append({**_pair("markov-all", [(0.01, 0.02)]), "metric": "hr@1"})
    report["claims"] = [c.model_dump(mode="json") for c in config.claims]
    got = verdict(report)["claims"]
    assert [c["status"] for c in got] == ["met", "met"] and got[1]["claim"] == "cheap"
    assert got[1]["detail"]["cost_ratio"] == pytest.approx(1 / 8)
    assert verdict({**report, "claims": []})["claims"] == []
    bad = tmp_path / "bad.toml"
    bad.write_text('[[claims]]\narm = "hybrid"\nbeats = ["x"]\nmax_cost_ratio = 0.5\n')
    with pytest.raises(ConfigError, match="max_cost_ratio and cost_reference go together"):
        load_backtest_config(bad)
    assert Claim(arm="a", beats=["b"]).metric == "hr@5"


def test_cli_prints_every_claim_with_its_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "study.toml"
    config.write_text(
        'dataset = "synthetic"\n'
        "dataset_options = { n_interactions = 6000, days = 40, n_clusters = 10 }\n"
        "bootstrap = 100\n"
        '[[claims]]\nname = "Goal 2 (hybrid beats markov-all)"\narm = "hybrid"\nbeats = ["markov-all"]\n'
    )
    out = tmp_path / "out"
    main(["backtest", "--config", str(config), "--arms", "markov-all,markov-backoff,markov-best",
          "--start", "2000-01-21", "--end", "2000-02-01", "--seeds", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "Goal 2 (hybrid beats markov-all" in printed and "not measured (not run: hybrid)" in printed
    assert "markov-best: " in printed
    report = json.loads((out / "report.json").read_text())
    assert report["seeds"]["training_seeds"] == [0]  # no LLM arm: counting arms run once
    assert report["validation"]["window"] == ["2000-01-07", "2000-01-21"]
    arms = {a["name"]: a for a in report["arms"]}
    assert arms["markov-best"]["config"]["label"] == report["validation"]["chosen"]["label"]
    assert arms["markov-backoff"]["config"]["kind"] == "backoff"
    assert "## Counting configurations" in (out / "report.md").read_text()


def test_counting_section_lists_counting_arms_only() -> None:
    from hybridrec.backtest.report import _counting_section

    report = {"arms": [
        {"name": "hybrid", "llm": True, "config": {"policy": {"plugin": "hybrid", "options": {}}}},
        {"name": "markov-backoff", "llm": False, "config": {"kind": "backoff", "label": "backoff (alpha 128)"}},
    ]}
    lines = _counting_section(report)
    assert "- markov-backoff: backoff (alpha 128)" in lines
    assert not any(line.startswith("- hybrid") for line in lines)
