"""Fixtures: a catalog, synthetic streams with planted rules, a pre-trained tiny model."""

from __future__ import annotations

import numpy as np
import pytest
from generator_support import DAY, N_CLUSTERS, START, novel, rule_a, stream, tiny, tuner, window_of
from hybridrec_hf import HFGenerator

from hybridrec.interfaces import FineTuneResult
from hybridrec.types import ClusterCatalog, TransitionSet


@pytest.fixture(scope="session")
def catalog() -> ClusterCatalog:
    names = ["action", "comedy", "drama", "horror", "romance", "thriller", "western",
             "musical", "war", "crime", "fantasy", "animation"]
    return ClusterCatalog.from_descriptions(
        [f"{names[i]} {names[(i + 3) % N_CLUSTERS]}" for i in range(N_CLUSTERS)]
    )


@pytest.fixture(scope="session")
def planted() -> TransitionSet:
    """A stationary stream: the successor of (c1, c2) is always ``rule_a``."""
    return stream(1500, 30, lambda c1, c2, ts: rule_a(c1, c2))


@pytest.fixture(scope="session")
def drifting() -> TransitionSet:
    """Each context's successor changes every 3 days (a pseudo-random favourite), so only fresh
    evidence predicts it: a model trained on this stream must learn to read the evidence."""

    def rule(c1: np.ndarray, c2: np.ndarray, ts: np.ndarray) -> np.ndarray:
        phase = (ts - int(START.timestamp())) // (3 * DAY)
        return novel(c1, c2, c1 * 7 + c2 * 3 + phase * 5 + (c1 * c2 * phase) % 11, N_CLUSTERS)

    return stream(2000, 30, rule, seed=1)


@pytest.fixture(scope="session")
def pretrained_planted(
    catalog: ClusterCatalog, planted: TransitionSet, tmp_path_factory: pytest.TempPathFactory
) -> tuple[HFGenerator, FineTuneResult]:
    """The tiny model after one fine-tune (whole-base pre-training) on the planted stream."""
    gen = tiny(catalog)
    out = tmp_path_factory.mktemp("adapter-planted")
    result = tuner(rag_fraction=0.0).fine_tune(gen, planted, window_of(planted), out)
    return gen, result
