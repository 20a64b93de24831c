"""Freshness must not hurt: with the real learned stack (rerank template, backoff store, lora),
refreshing the knowledge with strictly more data never lowers HR@5 beyond noise, and helps when
the world has moved (a planted shift in the synthetic dataset)."""

from __future__ import annotations

from typing import Any

import pytest

from hybridrec.backtest import run_backtest
from hybridrec.backtest.config import BacktestConfig


def _study(**world: Any) -> dict[str, dict[str, Any]]:
    options = {"n_interactions": 20_000, "n_clusters": 16, "days": 44, "transitions_per_day": 400,
               "concentration": 3.0, "seed": 3, **world}
    config = BacktestConfig.model_validate({
        "dataset": "synthetic", "dataset_options": options,
        "start": "2000-01-31", "end": "2000-02-12", "arms": ["rag-once", "rag-only", "markov-all"],
        "bootstrap": 200, "threads": 1,
        "llm": {
            "warmup_days": 30,
            "evidence": {"candidates": 4},
            "generator": {"plugin": "hf", "options": {
                "preset": "tiny", "template": "rerank", "num_threads": 1,
                "tiny": {"hidden_size": 32, "intermediate_size": 64}}},
            "knowledge_store": {"plugin": "exact", "options": {"min_support": 0}},
            "fine_tuner": {"plugin": "lora", "options": {
                "max_examples": 3000, "holdout_max": 200, "guardrail_samples": 16,
                "balance": "none", "rag_fraction": 0.8, "base_epochs": 3}},
            "measure_rag_agreement": False,
        },
    })
    report, _, _ = run_backtest(config, drift=False)
    return {a["name"]: a["metrics"] for a in report["arms"]}


@pytest.mark.integration
@pytest.mark.parametrize("world", [{"drift_rate": 0.0}, {"drift_rate": 0.0, "shift_days": [32]}],
                         ids=["stationary", "shifted"])
def test_a_refresh_with_strictly_more_data_does_not_lower_quality(world: dict[str, Any]) -> None:
    # rag-only refreshes its all-history knowledge every 2 days; rag-once keeps the first
    # snapshot. Same adapter, so the only difference is more (and fresher) evidence. Measured on
    # this machine: stationary HR@5 0.6253 vs 0.6137, shifted 0.5240 vs 0.5182; the tolerance
    # absorbs floating-point differences between CPUs, far below the ~0.02 CI half-width.
    arms = _study(**world)
    assert arms["rag-only"]["hr@5"] >= arms["rag-once"]["hr@5"] - 0.003
    assert arms["rag-only"]["hr@1"] >= arms["rag-once"]["hr@1"] - 0.003
