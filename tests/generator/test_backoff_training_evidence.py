"""The lora fine-tuner's backoff training evidence: leak-free and the same as serving's."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hybridrec_lora.evidence import DAY, daily_backoff_successors
from hybridrec_stores import ExactStore

from hybridrec.generation import all_contexts
from hybridrec.types import TimeWindow, TransitionSet, ts_to_datetime

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stores"))
import stores_synthetic as syn


def test_training_evidence_equals_the_snapshot_served_at_that_day(tmp_path: Path) -> None:
    # A prompt trained on day d must carry what a backoff snapshot of everything before d serves.
    rows = syn.transitions(9, 900, 7)
    day = int(rows.ts[len(rows) // 2]) // DAY * DAY
    snap = ExactStore(
        ExactStore.Options(granularity="backoff", m=4, depth=4), syn.catalog(9)
    ).build(rows, TimeWindow(start=ts_to_datetime(int(rows.ts[0])), end=ts_to_datetime(day)), tmp_path / "snap")
    ctx = all_contexts(9)
    served = snap.evidence(ctx)
    trained = daily_backoff_successors(
        rows, ctx, np.full(ctx.shape[0], day + 3600), days=None, m=4, alpha=128.0,
        weights=(0.7, 0.3, 0.0),
    )
    np.testing.assert_allclose(trained.score, served.score)
    np.testing.assert_array_equal(trained.support, served.support)
    np.testing.assert_array_equal(trained.provenance, served.provenance)
    np.testing.assert_array_equal(trained.last_seen, served.last_seen)
    # the count evidence the rerank template renders: identical at training and serving
    assert trained.shares is not None and served.shares is not None
    np.testing.assert_allclose(trained.shares, served.shares)
    assert trained.context_support is not None and served.context_support is not None
    np.testing.assert_array_equal(trained.context_support, served.context_support)
    assert np.allclose(served.shares[..., 2].sum(axis=1) <= 1.0 + 1e-9, True)


def test_decayed_training_evidence_equals_the_decayed_snapshot_served_at_that_day(tmp_path: Path) -> None:
    # With a half-life the snapshot's counts decay to its end and a training example's to its
    # day: the same day, the same evidence (to float rounding: the two sum in another order).
    rows = syn.transitions(9, 900, 7)
    day = int(rows.ts[len(rows) // 2]) // DAY * DAY
    snap = ExactStore(
        ExactStore.Options(granularity="backoff", m=4, depth=4, half_life_days=3.0), syn.catalog(9)
    ).build(rows, TimeWindow(start=ts_to_datetime(int(rows.ts[0])), end=ts_to_datetime(day)), tmp_path / "snap")
    ctx = all_contexts(9)
    served = snap.evidence(ctx)
    trained = daily_backoff_successors(
        rows, ctx, np.full(ctx.shape[0], day + 3600), days=None, m=4, alpha=128.0,
        weights=(0.7, 0.3, 0.0), half_life_days=3.0,
    )
    undecayed = daily_backoff_successors(
        rows, ctx, np.full(ctx.shape[0], day + 3600), days=None, m=4, alpha=128.0,
        weights=(0.7, 0.3, 0.0),
    )
    np.testing.assert_array_equal(trained.cluster, served.cluster)
    np.testing.assert_allclose(trained.score, served.score, rtol=1e-9)
    np.testing.assert_allclose(trained.support, served.support, rtol=1e-9)
    np.testing.assert_array_equal(trained.provenance, served.provenance)
    assert trained.context_support is not None and served.context_support is not None
    np.testing.assert_allclose(trained.context_support, served.context_support, rtol=1e-9)
    assert trained.shares is not None and served.shares is not None
    np.testing.assert_allclose(trained.shares, served.shares, rtol=1e-9)
    # decay is not a no-op: old transitions weigh less than one, so the counts shrink
    assert undecayed.context_support is not None
    assert (trained.context_support <= undecayed.context_support + 1e-9).all()
    assert (trained.context_support < undecayed.context_support).any()


def test_training_evidence_never_reads_the_examples_day_or_later() -> None:
    rows = syn.transitions(9, 900, 11)
    as_of = int(rows.ts[600])
    day = as_of // DAY * DAY
    ctx = rows.contexts()[600:610]
    before = daily_backoff_successors(rows, ctx, np.full(10, as_of), days=None, m=3,
                                      alpha=16.0, weights=(0.5, 0.5, 0.0))
    # Plant 500 copies of one transition of the first context, from the example's day onwards.
    c1, c2 = int(ctx[0, 0]), int(ctx[0, 1])
    c3 = next(c for c in range(9) if c not in (c1, c2))
    ts = np.r_[rows.ts, np.linspace(day, int(rows.ts[-1]) + DAY, 500).astype(np.int64)]
    order = np.argsort(ts, kind="stable")
    planted = TransitionSet(
        c1=np.r_[rows.c1, np.full(500, c1)][order], c2=np.r_[rows.c2, np.full(500, c2)][order],
        c3=np.r_[rows.c3, np.full(500, c3)][order], ts=ts[order],
        user=np.r_[rows.user, np.zeros(500, dtype=rows.user.dtype)][order], n_clusters=9,
    )
    after = daily_backoff_successors(planted, ctx, np.full(10, as_of), days=None, m=3,
                                     alpha=16.0, weights=(0.5, 0.5, 0.0))
    np.testing.assert_array_equal(before.cluster, after.cluster)
    np.testing.assert_allclose(before.score, after.score)


def test_recent_window_evidence_is_the_same_at_training_and_serving(tmp_path: Path) -> None:
    # With recent_days, both sides add the counts of the last days before the snapshot's day.
    rows = syn.transitions(9, 900, 7)
    day = int(rows.ts[len(rows) * 3 // 4]) // DAY * DAY
    window = TimeWindow(start=ts_to_datetime(int(rows.ts[0])), end=ts_to_datetime(day))
    snap = ExactStore(
        ExactStore.Options(granularity="backoff", m=4, depth=4, recent_days=2), syn.catalog(9)
    ).build(rows, window, tmp_path / "snap")
    ctx = all_contexts(9)
    served = snap.evidence(ctx)
    trained = daily_backoff_successors(
        rows, ctx, np.full(ctx.shape[0], day + 3600), days=None, m=4, alpha=128.0,
        weights=(0.7, 0.3, 0.0), recent_days=2,
    )
    assert served.recent is not None and trained.recent is not None
    np.testing.assert_array_equal(trained.cluster, served.cluster)
    np.testing.assert_allclose(trained.recent, served.recent)
    # computed independently: the counts of the last two days before `day`
    last = (rows.ts >= day - 2 * DAY) & (rows.ts < day)
    assert last.sum() > 0
    for i in range(0, ctx.shape[0], 7):
        c1, c2 = ctx[i]
        mine = last & (rows.c1 == c1) & (rows.c2 == c2)
        assert served.recent[i, 0, 1] == mine.sum()  # the context's recent support
        for j in range(4):
            assert served.recent[i, j, 0] == (mine & (rows.c3 == served.cluster[i, j])).sum()
        pop = np.bincount(rows.c3[last], minlength=9) / last.sum()
        np.testing.assert_allclose(served.recent[i, :, 4], pop[served.cluster[i]])
    # the recent window is strictly inside the whole one: fewer counts, same items
    assert (served.recent[..., 0] <= served.support).all()
    assert (served.recent[..., 0] < served.support).any()


def test_without_recent_days_the_evidence_has_no_recent_counts(tmp_path: Path) -> None:
    rows = syn.transitions(9, 300, 3)
    day = int(rows.ts[-1]) // DAY * DAY
    snap = ExactStore(ExactStore.Options(granularity="backoff", m=3), syn.catalog(9)).build(
        rows, TimeWindow(start=ts_to_datetime(int(rows.ts[0])), end=ts_to_datetime(day)),
        tmp_path / "snap",
    )
    assert snap.evidence(all_contexts(9)).recent is None
    assert daily_backoff_successors(rows, all_contexts(9), np.full(72, day), days=None, m=3,
                                    alpha=16.0, weights=(0.5, 0.5, 0.0)).recent is None
