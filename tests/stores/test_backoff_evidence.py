"""The stores' ``backoff`` granularity: every context's evidence is the markov-backoff ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import stores_synthetic as syn
from hybridrec_stores import ExactStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hybridrec.estimators.counting import CountingConfig, CountTables, counting_scores, top_k
from hybridrec.generation import all_contexts
from hybridrec.types import PROVENANCE_CODES


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_clusters=st.integers(5, 16), n=st.integers(30, 600), seed=st.integers(0, 9999),
       alpha=st.sampled_from([0.0, 4.0, 128.0]),
       weights=st.sampled_from([(0.7, 0.3, 0.0), (0.2, 0.3, 0.5), (0.0, 0.0, 1.0)]))
def test_evidence_is_the_backoff_baselines_ranked_list(
    tmp_path: Path, n_clusters: int, n: int, seed: int, alpha: float,
    weights: tuple[float, float, float],
) -> None:
    # Two independent implementations of one estimator: the store's snapshot (built once from
    # a window) and the backtest's counting arm (counts advanced to the window's end).
    rows = syn.transitions(n_clusters, n, seed)
    win = syn.window(0, 30)
    depth = n_clusters - 2
    store = ExactStore(ExactStore.Options(granularity="backoff", backoff_alpha=alpha,
                                          backoff_weights=weights, m=depth, depth=depth),
                       syn.catalog(n_clusters))
    snap = store.build(rows, win, tmp_path / f"b-{n_clusters}-{n}-{seed}-{alpha}-{weights}")
    ctx = all_contexts(n_clusters)
    ev = snap.evidence(ctx)

    tables = CountTables(rows.window(win))
    tables.advance(win.end_ts)
    config = CountingConfig(kind="backoff", alpha=alpha, w_last=weights[0], w_skip=weights[1],
                            w_pop=weights[2])
    scores, position = counting_scores(config, tables.components(ctx))
    expected = top_k(scores, position, ctx, depth)
    # Same scores item by item; the lists agree wherever scores are not tied.
    got_scores = np.take_along_axis(scores, ev.cluster, axis=1)
    np.testing.assert_allclose(ev.score, got_scores, rtol=1e-9, atol=1e-9)
    want_scores = np.take_along_axis(scores, expected, axis=1)
    np.testing.assert_allclose(ev.score, want_scores, rtol=1e-9, atol=1e-9)
    assert not ((ev.cluster == ctx[:, :1]) | (ev.cluster == ctx[:, 1:])).any()
    exact = ev.support > 0
    assert (ev.provenance[exact] == PROVENANCE_CODES["exact"]).all()
    assert (ev.provenance[~exact] == PROVENANCE_CODES["borrowed"]).all()


def test_every_context_gets_evidence_and_unseen_pairs_back_off(tmp_path: Path) -> None:
    rows = syn.transitions(8, 200, 3)
    win = syn.window(0, 30)
    store = ExactStore(ExactStore.Options(granularity="backoff", m=3), syn.catalog(8))
    snap = store.build(rows, win, tmp_path / "b")
    ctx = all_contexts(8)
    ev = snap.evidence(ctx)
    assert (ev.cluster >= 0).all()
    seen = set(zip(rows.window(win).c1.tolist(), rows.window(win).c2.tolist(), strict=True))
    unseen = np.array([(a, b) not in seen for a, b in ctx.tolist()])
    if unseen.any():
        assert (ev.support[unseen] == 0).all()
        assert (ev.provenance[unseen] == PROVENANCE_CODES["borrowed"]).all()


def test_backoff_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="frequency"):
        ExactStore.Options(granularity="backoff", scoring="trend")
    with pytest.raises(ValidationError, match="backoff_weights"):
        ExactStore.Options(granularity="backoff", backoff_weights=(0.0, 0.0, 0.0))
