"""The stores' ``backoff`` granularity: every context's evidence is the markov-backoff ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import stores_synthetic as syn
from hybridrec_lora.evidence import daily_backoff_successors
from hybridrec_stores import CountsStore, ExactStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hybridrec.estimators.counting import CountingConfig, CountTables, counting_scores, top_k
from hybridrec.generation import all_contexts
from hybridrec.types import PROVENANCE_CODES, TransitionSet


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_clusters=st.integers(5, 16), n=st.integers(30, 600), seed=st.integers(0, 9999),
       alpha=st.sampled_from([0.0, 4.0, 128.0]),
       weights=st.sampled_from([(0.7, 0.3, 0.0), (0.2, 0.3, 0.5), (0.0, 0.0, 1.0)]),
       half_life=st.sampled_from([None, 7.0]))
def test_evidence_is_the_backoff_baselines_ranked_list(
    tmp_path: Path, n_clusters: int, n: int, seed: int, alpha: float,
    weights: tuple[float, float, float], half_life: float | None,
) -> None:
    # Two independent implementations of one estimator: the store's snapshot (built once from
    # a window) and the backtest's counting arm (counts advanced to the window's end), decayed
    # to that end or not.
    rows = syn.transitions(n_clusters, n, seed)
    win = syn.window(0, 30)
    depth = n_clusters - 2
    store = ExactStore(ExactStore.Options(granularity="backoff", backoff_alpha=alpha,
                                          backoff_weights=weights, half_life_days=half_life,
                                          m=depth, depth=depth),
                       syn.catalog(n_clusters))
    snap = store.build(rows, win, tmp_path / f"b-{n_clusters}-{n}-{seed}-{alpha}-{weights}-{half_life}")
    ctx = all_contexts(n_clusters)
    ev = snap.evidence(ctx)

    tables = CountTables(rows.window(win), half_life_days=half_life)
    tables.advance(win.end_ts)
    config = CountingConfig(kind="backoff", alpha=alpha, w_last=weights[0], w_skip=weights[1],
                            w_pop=weights[2])
    scores, position = counting_scores(config, tables.components(ctx))
    expected = top_k(scores, position, ctx, depth)
    # One estimator: the same lists, ties included, and the same scores item by item.
    np.testing.assert_array_equal(ev.cluster, expected)
    got_scores = np.take_along_axis(scores, ev.cluster, axis=1)
    np.testing.assert_allclose(ev.score, got_scores, rtol=1e-9, atol=1e-9)
    assert not ((ev.cluster == ctx[:, :1]) | (ev.cluster == ctx[:, 1:])).any()
    exact = ev.support > 0
    assert (ev.provenance[exact] == PROVENANCE_CODES["exact"]).all()
    assert (ev.provenance[~exact] == PROVENANCE_CODES["borrowed"]).all()


def test_a_tie_between_an_observed_and_a_borrowed_successor_breaks_as_the_estimator_does(
        tmp_path: Path) -> None:
    # Context (0, 1) saw 2 once; contexts ending in 1 went to 3 three times. With alpha 2 and
    # all weight on the last cluster: score(2) = 1 + 2 * 1/4 = score(3) = 0 + 2 * 3/4. The tie
    # goes to the more popular 3, in the store as in the counting arms and the fine-tuner's
    # training evidence (serving and training prompts list the candidates in one order).
    c1, c2, c3 = np.array([0, 4, 4, 4]), np.array([1, 1, 1, 1]), np.array([2, 3, 3, 3])
    ts = np.array([syn.window(d, 1).start_ts for d in (1, 2, 3, 4)], dtype=np.int64)
    rows = TransitionSet(c1, c2, c3, ts, ts, 6)
    win = syn.window(0, 30)
    store = ExactStore(ExactStore.Options(granularity="backoff", backoff_alpha=2.0,
                                          backoff_weights=(1.0, 0.0, 0.0), m=4), syn.catalog(6))
    ev = store.build(rows, win, tmp_path / "tie").evidence(np.array([[0, 1]]))
    assert ev.cluster[0, :2].tolist() == [3, 2] and ev.score[0, 0] == ev.score[0, 1]
    assert ev.support[0, :2].tolist() == [0.0, 1.0]
    trained = daily_backoff_successors(rows, np.array([[0, 1]]), np.array([win.end_ts]), days=None,
                                       m=4, alpha=2.0, weights=(1.0, 0.0, 0.0))
    np.testing.assert_array_equal(trained.cluster, ev.cluster)


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


def test_the_counts_store_is_the_estimators_snapshot_without_an_index(tmp_path: Path) -> None:
    rows = syn.transitions(9, 400, 5)
    win = syn.window(0, 30)
    counts = CountsStore(CountsStore.Options(m=4, backoff_alpha=32.0), syn.catalog(9))
    exact = ExactStore(ExactStore.Options(granularity="backoff", m=4, backoff_alpha=32.0, min_support=0),
                       syn.catalog(9))
    ctx = all_contexts(9)
    got = counts.build(rows, win, tmp_path / "c").evidence(ctx)
    want = exact.build(rows, win, tmp_path / "e").evidence(ctx)
    for field in ("cluster", "support", "score", "shares", "context_support"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    assert not list((tmp_path / "c").glob("*.ann"))
    assert counts.workload(400, ctx.shape[0]).index_items == 0
    with pytest.raises(ValidationError, match="backoff"):
        CountsStore.Options(granularity="instance")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="min_support"):
        CountsStore.Options(min_support=2)
