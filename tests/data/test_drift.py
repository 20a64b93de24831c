"""Drift statistics: the paper's top-5 Jaccard, its noise baseline and decay."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hybridrec.data.drift import (
    drift_report,
    plot_drift,
    random_halves,
    top5_jaccard,
    top_k_jaccard_per_pair,
)
from hybridrec.data.synthetic import SyntheticConfig, generate_transitions
from hybridrec.types import TransitionSet


def ts_of(triples: list[tuple[int, int, int]], n: int = 10, start: int = 0) -> TransitionSet:
    arr = np.array(triples, dtype=np.int64).reshape(-1, 3)
    m = arr.shape[0]
    return TransitionSet(arr[:, 0], arr[:, 1], arr[:, 2], start + np.arange(m), np.zeros(m, dtype=np.int64), n)


def test_identical_periods_score_one_and_disjoint_zero() -> None:
    a = ts_of([(0, 1, 2)] * 5 + [(0, 1, 3)] * 2)
    assert top5_jaccard(a, a) == (1.0, 1)
    b = ts_of([(0, 1, 4)] * 5)
    assert top5_jaccard(a, b) == (0.0, 1)


def test_hand_computed_jaccard_and_min_count() -> None:
    a = ts_of([(0, 1, 2)] * 3 + [(0, 1, 3)] * 2 + [(5, 6, 7)] * 4)
    b = ts_of([(0, 1, 2)] * 4 + [(0, 1, 4)] * 1 + [(5, 6, 7)] * 9)
    # (0,1): {2,3} vs {2,4} -> 1/3; (5,6) has only 4 observations in a.
    mean, pairs = top5_jaccard(a, b, min_count=5)
    assert pairs == 1 and mean == pytest.approx(1 / 3)
    mean, pairs = top5_jaccard(a, b, min_count=4)
    assert pairs == 2 and mean == pytest.approx((1 / 3 + 1) / 2)
    assert top5_jaccard(a, b, min_count=100) == (None, 0)


def test_ties_in_the_top_k_break_by_cluster_id() -> None:
    # Successors 2..7 each once: the top-5 is {2,3,4,5,6}; 7 is cut by the tie rule.
    a = ts_of([(0, 1, c) for c in range(2, 8)])
    b = ts_of([(0, 1, c) for c in (2, 3, 4, 5, 6)])
    assert top5_jaccard(a, b, min_count=1) == (1.0, 1)
    c = ts_of([(0, 1, c) for c in (3, 4, 5, 6, 7)])
    assert top5_jaccard(a, c, min_count=1) == (pytest.approx(4 / 6), 1)


def test_per_pair_values_and_catalog_mismatch() -> None:
    a = ts_of([(0, 1, 2)] * 5 + [(2, 1, 0)] * 5)
    pairs, values = top_k_jaccard_per_pair(a, a, k=1)
    assert pairs.tolist() == [[0, 1], [2, 1]] and values.tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="catalogs"):
        top5_jaccard(a, ts_of([(0, 1, 2)], n=11))


def test_random_halves_partition_and_are_seeded() -> None:
    data = generate_transitions(SyntheticConfig(days=2, transitions_per_day=101)).transitions
    one, two = random_halves(data, 7)
    assert len(one) + len(two) == len(data) and abs(len(one) - len(two)) <= 1
    again, _ = random_halves(data, 7)
    np.testing.assert_array_equal(one.ts, again.ts)


def _month_report(config: SyntheticConfig) -> float:
    data = generate_transitions(config).transitions
    report = drift_report(data, dataset="synthetic", decay_ks=(5,), max_lag=2)
    assert report.mean is not None
    return report.mean


def test_the_statistic_sees_planted_drift_and_noise_does_not() -> None:
    base = dict(n_clusters=12, start="2000-01-01", days=90, transitions_per_day=1500, concentration=2.0)
    stable = _month_report(SyntheticConfig(**base, drift_rate=0.0))
    drifting = _month_report(SyntheticConfig(**base, drift_rate=0.4))
    shifted = _month_report(SyntheticConfig(**base, drift_rate=0.0, shift_days=(31, 60)))
    assert stable > drifting > shifted
    report = drift_report(generate_transitions(SyntheticConfig(**base, drift_rate=0.0)).transitions)
    assert report.noise_mean is not None and report.matched_mean is not None
    assert abs(report.noise_mean - report.matched_mean) < 0.05, "no drift: like-for-like MoM ~ noise"
    shifted_report = drift_report(
        generate_transitions(SyntheticConfig(**base, drift_rate=0.0, shift_days=(31, 60))).transitions
    )
    assert shifted_report.matched_mean is not None and shifted_report.noise_mean is not None
    assert shifted_report.matched_mean < shifted_report.noise_mean - 0.2


def test_report_json_contract_and_plot(tmp_path: Path) -> None:
    data = generate_transitions(SyntheticConfig(n_clusters=10, days=75, transitions_per_day=300)).transitions
    report = drift_report(
        data, dataset="synthetic", start=datetime(2000, 2, 1, tzinfo=UTC), end=datetime(2000, 4, 1, tzinfo=UTC)
    )
    payload = report.model_dump(mode="json")
    assert payload["statistic"] == "top5_successor_jaccard"
    for key in ("mean", "variance", "noise_mean", "months", "decay"):
        assert key in payload
    assert [m["month"] for m in payload["months"]] == ["2000-02", "2000-03"]
    for month in payload["months"]:
        assert {"month", "mean", "pairs", "noise_mean"} <= set(month)
    assert {(d["k"], d["lag_months"]) for d in payload["decay"]} >= {(5, 1), (1, 2)}
    png = plot_drift(report, tmp_path / "drift.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
