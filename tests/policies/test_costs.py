"""The built-in cost models: documented formulas, determinism, ledger records."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hybridrec_costs.models import FlopsCostModel, MeasuredCostModel, PriceOptions
from hypothesis import given
from hypothesis import strategies as st

from hybridrec import plugins
from hybridrec.types import UTC, Workload

N = 135_000_000


def test_both_cost_models_are_registered() -> None:
    assert {"flops", "measured"} <= set(plugins.registry().names("cost_model"))


def test_lora_training_is_four_n_plus_two_trainable_per_token_and_full_training_six_n() -> None:
    model = FlopsCostModel()
    lora = model.estimate("fine_tune", Workload(model_parameters=N, trainable_parameters=1_000_000,
                                                 train_tokens=10_000, train_epochs=2))
    assert lora.details["train"] == pytest.approx(2 * 10_000 * (4 * N + 2 * 1_000_000))
    full = model.estimate("fine_tune", Workload(model_parameters=N, trainable_parameters=0, train_tokens=10_000))
    assert full.details["train"] == pytest.approx(6 * N * 10_000)


def test_inference_is_two_n_per_prompt_and_generated_token() -> None:
    est = FlopsCostModel().estimate("regenerate_table", Workload(model_parameters=N, inference_tokens=900,
                                                                 generated_tokens=100))
    assert est.flops == pytest.approx(2 * N * 1000)
    assert est.details["train"] == 0


def test_index_build_and_retrieval_follow_the_annoy_formulas() -> None:
    work = Workload(index_items=1024, index_dim=384, index_trees=10, contexts=500, transitions=7)
    build = FlopsCostModel().estimate("refresh_knowledge", work)
    assert build.details["index_build"] == pytest.approx(1024 * 10 * 10 * 384)
    assert build.details["retrieval"] == pytest.approx(500 * 10 * 10 * 384)
    assert build.details["counting"] == 7
    regen = FlopsCostModel().estimate("regenerate_table", work)
    assert regen.details["index_build"] == 0 and regen.details["retrieval"] > 0


def test_seconds_and_money_come_from_the_device_tables() -> None:
    model = FlopsCostModel(PriceOptions(throughput_flops_per_s={"cpu": 1e9, "cuda": 1e12},
                                        price_per_hour={"cpu": 0.05, "cuda": 3.6}, units={"cpu": 4}))
    cpu = model.estimate("regenerate_table", Workload(model_parameters=500, inference_tokens=1_000_000))
    assert cpu.seconds == pytest.approx(1.0)
    assert cpu.money == pytest.approx(1.0 / 3600 * 0.05 * 4)
    gpu = model.estimate("regenerate_table", Workload(model_parameters=500, inference_tokens=1_000_000, device="cuda:0"))
    assert gpu.seconds == pytest.approx(1e-3) and gpu.money == pytest.approx(1e-3 / 3600 * 3.6)


def test_measured_bills_wall_clock_and_flops_keeps_the_estimate() -> None:
    work = Workload(model_parameters=N, train_tokens=1000)
    at = datetime(2000, 7, 1, tzinfo=UTC)
    prices = PriceOptions(price_per_hour={"cpu": 0.36}, units={"cpu": 1})
    measured = MeasuredCostModel(prices)
    estimate = measured.estimate("fine_tune", work)
    record = measured.record("fine_tune", estimate, at=at, seconds=100.0, versions_out={"adapter": "v2"})
    assert record.money == pytest.approx(100.0 / 3600 * 0.36)
    assert record.seconds == 100.0 and record.flops == estimate.flops
    assert record.versions_out == {"adapter": "v2"}
    flops = FlopsCostModel(prices)
    kept = flops.record("fine_tune", flops.estimate("fine_tune", work), at=at, seconds=100.0)
    assert kept.money == pytest.approx(estimate.money)


def test_noop_is_free() -> None:
    assert FlopsCostModel().estimate("noop", Workload(model_parameters=N, inference_tokens=10)).flops == 0


@given(st.builds(Workload, model_parameters=st.integers(0, 10**10), trainable_parameters=st.integers(0, 10**9),
                 train_tokens=st.integers(0, 10**9), inference_tokens=st.integers(0, 10**9),
                 index_items=st.integers(0, 10**6), index_dim=st.integers(0, 1024), index_trees=st.integers(0, 100),
                 contexts=st.integers(0, 10**6)),
       st.sampled_from(["fine_tune", "refresh_knowledge", "regenerate_table", "noop"]))
def test_estimates_are_deterministic_finite_and_non_negative(work: Workload, kind: str) -> None:
    a = FlopsCostModel().estimate(kind, work)  # type: ignore[arg-type]
    assert a == FlopsCostModel().estimate(kind, work)  # type: ignore[arg-type]
    assert all(math.isfinite(v) and v >= 0 for v in (a.flops, a.seconds, a.money))


def test_evidence_tokens_are_their_own_term_and_the_total_is_unchanged() -> None:
    model = FlopsCostModel()
    plain = model.estimate("regenerate_table", Workload(model_parameters=N, inference_tokens=500))
    rag = model.estimate("regenerate_table", Workload(model_parameters=N, inference_tokens=500, evidence_tokens=200))
    assert rag.flops == plain.flops == 2 * N * 500
    assert rag.details["evidence"] == 2 * N * 200 and rag.details["inference"] == 2 * N * 300


def test_a_fine_tune_pays_for_its_evaluation_and_guardrails_but_a_regeneration_does_not() -> None:
    work = Workload(model_parameters=N, train_tokens=1000, evaluation_tokens=300, guardrail_tokens=50)
    ft = FlopsCostModel().estimate("fine_tune", work)
    assert ft.details["evaluation"] == 2 * N * 300 and ft.details["guardrails"] == 2 * N * 50
    assert ft.flops == ft.details["train"] + 2 * N * 350
    assert FlopsCostModel().estimate("regenerate_table", work).details["evaluation"] == 0
