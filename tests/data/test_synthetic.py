"""The synthetic generator: seeded, novel, with the truth it claims and the drift it is told."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from hybridrec.data.synthetic import (
    SyntheticConfig,
    build_truth,
    generate_interactions,
    generate_transitions,
    planted_successor,
)
from hybridrec.data.transitions import extract_transitions


def test_generation_is_seeded() -> None:
    config = SyntheticConfig(days=5, transitions_per_day=50, drift_rate=0.2, seed=4)
    a, b = generate_transitions(config), generate_transitions(config)
    np.testing.assert_array_equal(a.transitions.c3, b.transitions.c3)
    other = generate_transitions(config.model_copy(update={"seed": 5}))
    assert not np.array_equal(a.transitions.c3, other.transitions.c3)


def test_truth_is_novel_and_normalised() -> None:
    truth = build_truth(SyntheticConfig(n_clusters=6, days=4, support=4, swap_rate=0.5, shift_days=(2,)))
    assert (truth.candidates != truth.contexts[None, :, :1]).all()
    assert (truth.candidates != truth.contexts[None, :, 1:]).all()
    np.testing.assert_allclose(truth.probs.sum(axis=2), 1.0)
    rows = truth.context_index(truth.contexts[:, 0], truth.contexts[:, 1])
    assert rows.tolist() == list(range(30))


def test_sampled_successors_follow_the_truth() -> None:
    config = SyntheticConfig(n_clusters=5, days=1, transitions_per_day=20_000, support=3, concentration=1.5)
    sample = generate_transitions(config)
    t = sample.transitions
    c1, c2 = int(t.c1[0]), int(t.c2[0])
    mine = (t.c1 == c1) & (t.c2 == c2)
    truth = sample.truth.distribution(c1, c2, 0)
    for cluster, p in truth.items():
        assert np.mean(t.c3[mine] == cluster) == pytest.approx(p, abs=0.05)


def test_shift_replaces_the_distribution_and_zero_drift_keeps_it() -> None:
    truth = build_truth(SyntheticConfig(n_clusters=8, days=6, drift_rate=0.0, shift_days=(3,)))
    np.testing.assert_array_equal(truth.candidates[0], truth.candidates[2])
    assert not np.array_equal(truth.top_k(2, 1), truth.top_k(3, 1))


def test_planted_rule_is_deterministic_and_novel() -> None:
    c1, c2 = np.meshgrid(np.arange(7), np.arange(7))
    keep = c1 != c2
    out = planted_successor(c1[keep], c2[keep], 7, 3, 5, 1)
    assert ((out != c1[keep]) & (out != c2[keep])).all()
    sample = generate_transitions(SyntheticConfig(mode="planted", n_clusters=7, days=3, transitions_per_day=200))
    t = sample.transitions
    expected = sample.truth.candidates[0, sample.truth.context_index(t.c1, t.c2), 0]
    assert (t.c3 == expected).all()
    noisy = generate_transitions(SyntheticConfig(mode="planted", n_clusters=7, days=3, transitions_per_day=2000, planted_noise=0.3))
    nt = noisy.transitions
    hit = nt.c3 == noisy.truth.candidates[0, noisy.truth.context_index(nt.c1, nt.c2), 0]
    assert 0.6 < hit.mean() < 0.8


def test_raw_interactions_extract_into_transitions() -> None:
    generated = generate_interactions(20_000, SyntheticConfig(n_clusters=10, days=30, n_users=200))
    table = generated.interactions
    assert len(table) == 20_000
    assert (np.unique(table.ts, return_counts=True)[1] > 1).any(), "ties are exercised"
    ts = extract_transitions(table, generated.item_cluster, 10, min_rating=None)
    assert len(ts) > 5_000
    assert ((ts.c3 != ts.c1) & (ts.c3 != ts.c2)).all()


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="support"):
        SyntheticConfig(n_clusters=5, support=4)
    with pytest.raises(ValidationError, match="shift_days"):
        SyntheticConfig(days=3, shift_days=(3,))


def test_synthetic_dataset_plugin_recovers_the_generator_clusters() -> None:
    from hybridrec.data import load_prepared

    prepared = load_prepared(
        "synthetic", options={"n_clusters": 6, "days": 20, "n_users": 50, "n_interactions": 3_000, "mode": "planted"},
        min_rating=None,
    )
    assert len(prepared.catalog) == 6 and prepared.quarantine_count == 0
    t = prepared.transitions
    assert len(t) > 500
    from hybridrec.data.synthetic import SyntheticConfig, build_truth

    truth = build_truth(SyntheticConfig(n_clusters=6, days=20, n_users=50, mode="planted"))
    # Walk steps follow the planted rule; collapse and tie-reordering only perturb a few triples.
    planted = truth.candidates[0, truth.context_index(t.c1, t.c2), 0]
    assert (t.c3 == planted).mean() > 0.6
