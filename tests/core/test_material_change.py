"""The material-change rule and the staleness bound of the engine's one delta planner
(``hybridrec.engine.tables.plan_table``): tolerance 0 is exact delta, a row is kept while its
evidence stays within the tolerance of the evidence it was ranked from (so drift accumulated over
several refreshes re-ranks it), and no row older than the bound is kept by any rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrec.engine.tables import (
    COPIED_SAME,
    KEPT_CLOSE,
    KEPT_FALLBACK,
    RANKED_CHANGED,
    RANKED_NEW,
    RANKED_STALE,
    EvidenceSignature,
    KeepRule,
    TableRows,
    evidence_distance,
    plan_table,
    regeneration_note,
    with_kept_rows,
)
from hybridrec.types import EvidenceBatch, RegenerateTable

N = 6  # clusters
DAY = 86400.0


def _contexts() -> np.ndarray:
    keys = np.arange(N * N)
    ctx = np.stack([keys // N, keys % N], axis=1)
    return ctx[ctx[:, 0] != ctx[:, 1]]


def _evidence(contexts: np.ndarray, clusters: np.ndarray, scores: np.ndarray,
              support: np.ndarray | None = None) -> EvidenceBatch:
    n, m = clusters.shape
    return EvidenceBatch(contexts=contexts, cluster=clusters, support=np.ones((n, m)),
                         score=scores, last_seen=np.full((n, m), -1), provenance=np.zeros((n, m), dtype=np.int8),
                         context_support=support)


def _signature(contexts: np.ndarray, scores: np.ndarray, support: np.ndarray | None = None) -> EvidenceSignature:
    n = contexts.shape[0]
    clusters = np.tile(np.arange(scores.shape[1]), (n, 1))
    return EvidenceSignature.of(_evidence(contexts, clusters, scores, support), n)


def _digests(values: np.ndarray) -> np.ndarray:
    """A prompt digest per context standing for its exact evidence."""
    out = np.zeros((values.shape[0], 16), dtype=np.uint8)
    out[:, :8] = np.ascontiguousarray(values[:, :1].astype(np.float64)).view(np.uint8)
    return out


def _previous(contexts: np.ndarray, scores: np.ndarray, at: float, adapter: str = "a") -> TableRows:
    n = contexts.shape[0]
    return TableRows(adapter=adapter, keys=contexts[:, 0] * N + contexts[:, 1],
                     ids=np.zeros((n, 3), dtype=np.int64), scores=np.zeros((n, 3)),
                     digests=_digests(scores), signature=_signature(contexts, scores),
                     verified_at=np.full(n, at))


def test_distance_is_total_variation_of_the_candidates_or_the_support_change() -> None:
    ctx = _contexts()[:4]
    a = EvidenceSignature.of(_evidence(ctx, np.array([[0, 1], [0, 1], [0, 1], [0, 1]]),
                                       np.array([[3.0, 1.0], [3.0, 1.0], [3.0, 1.0], [3.0, 1.0]]),
                                       np.array([10.0, 10.0, 10.0, 10.0])), 4)
    b = EvidenceSignature.of(_evidence(ctx, np.array([[1, 0], [0, 1], [2, 3], [0, 1]]),
                                       np.array([[1.0, 3.0], [1.0, 1.0], [1.0, 1.0], [3.0, 1.0]]),
                                       np.array([10.0, 10.0, 10.0, 100.0])), 4)
    d = evidence_distance(a, b)
    assert d[0] == pytest.approx(0.0)                   # the same candidates, reordered
    assert d[1] == pytest.approx(0.25)                   # 3:1 against 1:1
    assert d[2] == pytest.approx(1.0)                    # disjoint candidates
    assert d[3] == pytest.approx(np.log1p(100) - np.log1p(10))  # ten times the traffic
    assert evidence_distance(a, a.stale(np.array([True, False, False, False])))[0] == np.inf


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_distance_is_a_symmetric_bounded_comparison(data: st.DataObject) -> None:
    n, m = 5, 4
    ctx = _contexts()[:n]
    def one() -> EvidenceSignature:
        clusters = np.array(data.draw(st.lists(st.lists(st.integers(-1, 6), min_size=m, max_size=m),
                                               min_size=n, max_size=n)))
        scores = np.array(data.draw(st.lists(st.lists(st.floats(0, 100), min_size=m, max_size=m),
                                             min_size=n, max_size=n)))
        return EvidenceSignature.of(_evidence(ctx, clusters, scores), n)
    a, b = one(), one()
    ab, ba = evidence_distance(a, b), evidence_distance(b, a)
    np.testing.assert_allclose(ab, ba, atol=1e-6)
    assert ((ab >= 0) & (ab <= 1 + 1e-6)).all()
    np.testing.assert_allclose(evidence_distance(a, a), 0.0, atol=1e-6)


def test_tolerance_zero_is_exact_delta() -> None:
    ctx = _contexts()
    rng = np.random.default_rng(0)
    before = rng.random((ctx.shape[0], 3))
    after = before.copy()
    after[::3] *= 1.01  # a third of the contexts' evidence moves a little
    previous = _previous(ctx, before, at=0.0)
    exact = plan_table(ctx, N, _digests(after), "a", previous, k=3, now=DAY)
    zero = plan_table(ctx, N, _digests(after), "a", previous, k=3, now=DAY,
                      signature=_signature(ctx, after), rule=KeepRule(tolerance=0.0))
    np.testing.assert_array_equal(exact.source, zero.source)
    assert exact.changed == zero.changed == len(range(0, ctx.shape[0], 3))
    assert set(np.unique(zero.why)) == {COPIED_SAME, RANKED_CHANGED}
    # A tolerance above the move keeps those rows, charged nothing.
    loose = plan_table(ctx, N, _digests(after), "a", previous, k=3, now=DAY,
                       signature=_signature(ctx, after), rule=KeepRule(tolerance=0.05))
    assert loose.changed == 0 and (loose.why[::3] == KEPT_CLOSE).all()
    assert "kept 10 whose evidence moved within the tolerance 0.05" in regeneration_note(loose)


def test_drift_accumulated_over_refreshes_is_compared_with_the_evidence_a_row_was_ranked_from() -> None:
    ctx = _contexts()[:1]
    scores = np.array([[5.0, 5.0, 0.0]])
    rule = KeepRule(tolerance=0.08)
    previous = _previous(ctx, scores, at=0.0)
    kept_steps = 0
    for step in range(1, 6):  # each step moves 0.05 of the weight from candidate 0 to 2
        now_scores = np.array([[5.0 - 0.5 * step, 5.0, 0.5 * step]])
        plan = plan_table(ctx, N, _digests(now_scores), "a", previous, k=3, now=step * DAY,
                          signature=_signature(ctx, now_scores), rule=rule)
        rows = plan.next_rows("a", previous.ids, previous.scores)
        if plan.why[0] == KEPT_CLOSE:
            kept_steps += 1
            assert rows.verified_at[0] == previous.verified_at[0]  # type: ignore[index]
            # the kept row still stands for the evidence it was ranked from
            np.testing.assert_array_equal(rows.signature.weights, previous.signature.weights)  # type: ignore[union-attr]
        else:
            assert plan.why[0] == RANKED_CHANGED and rows.verified_at[0] == step * DAY  # type: ignore[index]
        previous = rows
    assert 0 < kept_steps < 5  # kept while within 0.08 of the anchor, ranked once beyond it


def test_no_row_older_than_the_bound_is_kept_by_any_rule() -> None:
    ctx = _contexts()
    scores = np.ones((ctx.shape[0], 3))
    previous = _previous(ctx, scores, at=0.0)
    previous.verified_at[: ctx.shape[0] // 2] = 5 * DAY  # type: ignore[index]
    rule = KeepRule(tolerance=0.5, max_age_days=3.0)
    # material: the same evidence moved a little; the older half is ranked again
    moved = scores * np.array([1.01, 1.0, 1.0])
    plan = plan_table(ctx, N, _digests(moved), "a", previous, k=3, now=6 * DAY,
                      signature=_signature(ctx, moved), rule=rule)
    half = ctx.shape[0] // 2
    assert (plan.why[:half] == KEPT_CLOSE).all() and (plan.why[half:] == RANKED_STALE).all()
    # an identical prompt is current whatever its age: copied, and confirmed now
    same = plan_table(ctx, N, _digests(scores), "a", previous, k=3, now=6 * DAY,
                      signature=_signature(ctx, scores), rule=rule)
    assert (same.why == COPIED_SAME).all()
    assert (same.next_rows("a", previous.ids, previous.scores).verified_at == 6 * DAY).all()  # type: ignore[union-attr]
    # the fallback of a restricted regeneration: old kept rows are ranked too
    some = ctx[:2]
    contexts, kept = with_kept_rows(some, N, previous, k=3)
    fallback = plan_table(contexts, N, _digests(np.ones((contexts.shape[0], 3))), "a", previous,
                          k=3, kept=kept, now=6 * DAY, rule=KeepRule(max_age_days=3.0))
    old = kept & (previous.verified_at[np.arange(contexts.shape[0])] < 3 * DAY)  # type: ignore[index]
    assert (fallback.why[old] == RANKED_STALE).all()
    assert (fallback.why[kept & ~old] == KEPT_FALLBACK).all()
    assert fallback.changed == int((~kept).sum() - (fallback.why[~kept] == COPIED_SAME).sum() + old.sum())


def test_another_adapter_ranks_everything_and_unknown_evidence_is_never_close() -> None:
    ctx = _contexts()
    scores = np.ones((ctx.shape[0], 3))
    previous = _previous(ctx, scores, at=0.0)
    plan = plan_table(ctx, N, _digests(scores), "b", previous, k=3, now=DAY,
                      signature=_signature(ctx, scores), rule=KeepRule(tolerance=1.0))
    assert (plan.why == RANKED_NEW).all() and plan.changed == ctx.shape[0]
    stale = TableRows(adapter="a", keys=previous.keys, ids=previous.ids, scores=previous.scores,
                      digests=None, signature=previous.signature.stale(np.ones(ctx.shape[0], dtype=bool)),  # type: ignore[union-attr]
                      verified_at=previous.verified_at)
    plan = plan_table(ctx, N, None, "a", stale, k=3, now=DAY,
                      signature=_signature(ctx, scores), rule=KeepRule(tolerance=1.0))
    assert plan.changed == ctx.shape[0]


def test_the_action_carries_the_rule() -> None:
    rule = KeepRule.of(RegenerateTable(tolerance=0.1, max_row_age_days=7.0))
    assert rule == KeepRule(tolerance=0.1, max_age_days=7.0) and rule.material
    with pytest.raises(ValueError):
        RegenerateTable(tolerance=-0.1)
    with pytest.raises(ValueError):
        RegenerateTable(max_row_age_days=0.0)


def test_evidence_of_another_kind_is_never_close_and_kept_rows_become_unknown() -> None:
    ctx = _contexts()
    scores = np.ones((ctx.shape[0], 3))
    previous = _previous(ctx, scores, at=0.0)
    # the store now fills recent-window evidence: a third weight channel and a second support
    n = ctx.shape[0]
    batch = _evidence(ctx, np.tile(np.arange(3), (n, 1)), scores, None)
    import dataclasses
    recent = dataclasses.replace(batch, recent=np.ones((n, 3, 5)))
    sig = EvidenceSignature.of(recent, n)
    assert sig.weights.shape[2] == 3 and not sig.comparable(previous.signature)  # type: ignore[arg-type]
    assert np.isinf(evidence_distance(previous.signature, sig)).all()  # type: ignore[arg-type]
    some = ctx[:3]
    contexts, kept = with_kept_rows(some, N, previous, k=3)
    plan = plan_table(contexts, N, _digests(np.ones((contexts.shape[0], 3))), "a", previous, k=3,
                      kept=kept, signature=EvidenceSignature.of(recent.take(np.arange(contexts.shape[0])), contexts.shape[0]),
                      rule=KeepRule(tolerance=0.5), now=DAY)
    rows = plan.next_rows("a", previous.ids, previous.scores)
    assert rows.signature is not None and np.isnan(rows.signature.weights[kept]).all()
