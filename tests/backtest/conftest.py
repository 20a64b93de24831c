"""Fixtures for the backtest tests: a small drifting synthetic data set and the fake LLM stack."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest

from hybridrec.backtest.config import BacktestConfig, LLMSettings
from hybridrec.config import EvidenceConfig, GuardrailConfig, PluginRef
from hybridrec.testing import fakes
from hybridrec.types import UTC, ClusterCatalog, TransitionSet

N_CLUSTERS = 8
START = datetime(2000, 1, 1, tzinfo=UTC)


def drifting_transitions(days: int = 60, per_day: int = 40, seed: int = 0) -> TransitionSet:
    """Transitions over 8 clusters whose favourite successor of each pair changes every 10 days."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        phase = day // 10
        for _ in range(per_day):
            c1, c2 = rng.choice(N_CLUSTERS, size=2, replace=False)
            options = [c for c in range(N_CLUSTERS) if c not in (c1, c2)]
            favourite = options[(c1 + c2 + phase) % len(options)]
            c3 = favourite if rng.random() < 0.7 else rng.choice(options)
            ts = int(START.timestamp()) + day * 86400 + int(rng.integers(0, 86400))
            rows.append((ts, c1, c2, c3))
    rows.sort()
    arr = np.array(rows, dtype=np.int64)
    return TransitionSet(arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 0], np.full(len(arr), -1), N_CLUSTERS)


@pytest.fixture
def catalog() -> ClusterCatalog:
    return ClusterCatalog.from_descriptions([f"genre{i}" for i in range(N_CLUSTERS)])


@pytest.fixture
def transitions() -> TransitionSet:
    return drifting_transitions()


@pytest.fixture
def no_data_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes any read of a study's data fail: for checks that must refuse a study before it."""
    import hybridrec.backtest.study as study

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was read before the study was checked")

    monkeypatch.setattr(study, "load_data", no_data)


@pytest.fixture
def fake_stack(hybridrec_plugin) -> Iterator[dict[str, int]]:  # type: ignore[no-untyped-def]
    """Registers the fake generator, fine-tuner, store and cost model; yields the call counters."""
    hybridrec_plugin(fakes, name="backtest-fakes")
    fakes.reset_calls()
    yield fakes.CALLS


def fake_config(**updates: object) -> BacktestConfig:
    llm = LLMSettings(
        generator=PluginRef(plugin="fake-gen"),
        fine_tuner=PluginRef(plugin="fake-ft"),
        knowledge_store=PluginRef(plugin="fake-store"),
        cost_model=PluginRef(plugin="fake-cost"),
        warmup_days=10,
        initial_fine_tune_options={},
        guardrails=GuardrailConfig(enabled=False),
        # The synthetic data drifts every 10 days, so its RAG arms read the last 14 days (the
        # demo's all-history window suits ML-1M, whose pair-level drift is near noise).
        evidence=EvidenceConfig(history_days=14.0),
        # and refresh every 2 days (its drift is faster than ML-1M's, for which the preset's
        # cadence was chosen)
        policies={"hybrid": PluginRef(plugin="hybrid", options={"fine_tune_every_days": 30, "rag_every_days": 2}),
                  "rag-only": PluginRef(plugin="periodic-rag", options={"period_days": 2})},
    )
    base = {
        "dataset": "synthetic",
        "start": datetime(2000, 1, 21).date(),
        "end": datetime(2000, 3, 1).date(),
        "bootstrap": 100,
        "llm": llm,
    }
    base.update(updates)
    return BacktestConfig.model_validate(base)
