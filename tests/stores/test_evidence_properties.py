"""Properties of the evidence a snapshot serves: exact counts, window discipline, trend scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import stores_synthetic as syn
from hybridrec_stores import AnnoyStore, ExactStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridrec.generation import all_contexts
from hybridrec.types import PROVENANCE_CODES, TimeWindow

EXACT, BORROWED, GLOBAL = (PROVENANCE_CODES[k] for k in ("exact", "borrowed", "global"))
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _build(store_cls: type, tmp: Path, rows: object, win: TimeWindow, **options: object) -> object:
    n = rows.n_clusters  # type: ignore[attr-defined]
    store = store_cls(store_cls.Options(**options), syn.catalog(n))
    out = tmp / f"snap-{len(list(tmp.iterdir()))}"
    return store.build(rows, win, out)


cases = st.fixed_dictionaries(
    {
        "n_clusters": st.integers(4, 14),
        "n": st.integers(0, 400),
        "seed": st.integers(0, 10_000),
        "start_day": st.floats(0, 40),
        "days": st.floats(0.5, 30),
        "min_support": st.integers(0, 4),
        "depth": st.integers(1, 6),
    }
)


@SETTINGS
@given(case=cases, scoring=st.sampled_from(["frequency", "trend"]))
def test_exact_items_equal_a_brute_force_recount(tmp_path: Path, case: dict, scoring: str) -> None:
    rows = syn.transitions(case["n_clusters"], case["n"], case["seed"])
    win = syn.window(case["start_day"], case["days"])
    snap = _build(
        ExactStore, tmp_path, rows, win, scoring=scoring, min_support=case["min_support"],
        depth=case["depth"],
    )
    counts = syn.recount(rows, win)
    previous = syn.recount(rows, TimeWindow(start=win.start - (win.end - win.start), end=win.start))
    seen = syn.last_seen(rows, win)
    ctx = all_contexts(case["n_clusters"])
    ev = snap.evidence(ctx, m=case["depth"])
    for i, (c1, c2) in enumerate(ctx.tolist()):
        own = counts.get((c1, c2), {})
        support = sum(own.values())
        exact = ev.provenance[i] == EXACT
        exact &= ev.cluster[i] >= 0
        for j in np.flatnonzero(exact):
            s = int(ev.cluster[i, j])
            assert ev.support[i, j] == own[s]
            expected_score = own[s] - (previous.get((c1, c2), {}).get(s, 0) if scoring == "trend" else 0)
            assert ev.score[i, j] == expected_score
            assert ev.last_seen[i, j] == seen[(c1, c2, s)]
        if support >= max(case["min_support"], 1):
            # well-supported contexts serve exactly their own top successors, best first
            ranked = sorted(
                own,
                key=lambda s, c1=c1, c2=c2: (
                    -(own[s] - (previous.get((c1, c2), {}).get(s, 0) if scoring == "trend" else 0)),
                    -own[s], -seen[(c1, c2, s)], s,
                ),
            )[: case["depth"]]
            assert ev.cluster[i, : len(ranked)].tolist() == ranked
            assert (ev.provenance[i, : len(ranked)] == EXACT).all()
            assert (ev.cluster[i, len(ranked):] == -1).all()
        elif case["min_support"] == 0 or support == 0:
            assert not exact.any()


@SETTINGS
@given(case=cases, scoring=st.sampled_from(["frequency", "trend"]),
       granularity=st.sampled_from(["instance", "global"]))
def test_evidence_never_comes_from_outside_the_window(
    tmp_path: Path, case: dict, scoring: str, granularity: str
) -> None:
    rows = syn.transitions(case["n_clusters"], case["n"], case["seed"])
    win = syn.window(case["start_day"], case["days"])
    options = {"scoring": scoring, "granularity": granularity, "min_support": case["min_support"],
               "depth": case["depth"]}
    full = _build(AnnoyStore, tmp_path, rows, win, **options)
    # the only rows a snapshot may read: the window, plus the previous window for trends
    reads_from = win.start - (win.end - win.start) if scoring == "trend" else win.start
    only = rows.window(TimeWindow(start=reads_from, end=win.end))
    restricted = _build(AnnoyStore, tmp_path, only, win, **options)
    ctx = all_contexts(case["n_clusters"])
    a, b = full.evidence(ctx, m=case["depth"]), restricted.evidence(ctx, m=case["depth"])
    for name in ("cluster", "support", "score", "last_seen", "provenance", "source"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert full.id == restricted.id

    counts = syn.recount(rows, win)
    item = a.cluster >= 0
    assert ((a.last_seen[item] >= win.start_ts) & (a.last_seen[item] < win.end_ts)).all()
    # every served successor was observed, in this window, in the context it is credited to
    for i, j in zip(*np.nonzero(item), strict=True):
        src = tuple(a.source[i, j]) if a.provenance[i, j] != EXACT else tuple(ctx[i])
        assert counts[src][int(a.cluster[i, j])] > 0
        if a.provenance[i, j] != GLOBAL:
            assert a.cluster[i, j] not in ctx[i], "instance evidence must be novel"


def test_trend_prefers_the_rising_successor(tmp_path: Path) -> None:
    """(0, 1) -> 2 falls from 5 to 3; (0, 1) -> 3 rises from 0 to 2: trend ranks 3 first."""
    day = 86400
    t0 = int(syn.T0.timestamp())
    c3 = [2] * 5 + [2] * 3 + [3] * 2
    ts = [t0 + i * 3600 for i in range(5)] + [t0 + 10 * day + i * 3600 for i in range(5)]
    from hybridrec.types import TransitionSet

    rows = TransitionSet([0] * 10, [1] * 10, c3, ts, [0] * 10, 5)
    win = syn.window(10, 10)
    freq = _build(ExactStore, tmp_path, rows, win, scoring="frequency", depth=2)
    trend = _build(ExactStore, tmp_path, rows, win, scoring="trend", depth=2)
    ctx = np.array([[0, 1]])
    f, t = freq.evidence(ctx, m=2), trend.evidence(ctx, m=2)
    assert f.cluster[0].tolist() == [2, 3] and f.score[0].tolist() == [3.0, 2.0]
    assert t.cluster[0].tolist() == [3, 2] and t.score[0].tolist() == [2.0, -2.0]
    assert t.support[0].tolist() == [2.0, 3.0]  # support stays the in-window count
    assert trend.manifest["previous_window"]["end"] == win.start.isoformat()


@pytest.mark.parametrize("store_cls", [AnnoyStore, ExactStore])
def test_global_granularity_serves_the_top_transitions_to_everyone(
    tmp_path: Path, store_cls: type
) -> None:
    rows = syn.transitions(8, 300, seed=3)
    win = syn.window(0, 30)
    snap = _build(store_cls, tmp_path, rows, win, granularity="global", m=3)
    ctx = all_contexts(8)
    ev = snap.evidence(ctx)
    assert ev.width == 3 and (ev.provenance == GLOBAL).all()
    assert (ev.cluster == ev.cluster[0]).all() and (ev.source == ev.source[0]).all()
    counts = syn.recount(rows, win)
    triples = sorted(((n, c, s) for c, succ in counts.items() for s, n in succ.items()),
                     key=lambda x: -x[0])
    assert ev.support[0].tolist() == [float(n) for n, _, _ in triples[:3]]
    for j in range(3):
        c = tuple(int(x) for x in ev.source[0, j])
        assert counts[c][int(ev.cluster[0, j])] == ev.support[0, j]


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 300), groups=st.integers(1, 40),
       depth=st.integers(1, 6), uneven=st.booleans())
def test_top_per_group_matches_a_full_sort(
    seed: int, n: int, groups: int, depth: int, uneven: bool
) -> None:
    from hybridrec_stores.stats import rank_order, rank_within, top_per_group

    rng = np.random.default_rng(seed)
    group = np.sort(rng.integers(0, groups, n))
    if uneven and n:
        group[: n // 2] = 0  # one huge group: takes the full-sort fallback
        group = np.sort(group)
    score = rng.integers(-3, 4, n).astype(np.float64) / 2
    support = rng.integers(0, 3, n).astype(np.float64)
    last_seen = rng.integers(0, 5, n) + 10**9
    cluster = rng.integers(0, 8, n)
    prov = rng.integers(0, 2, n).astype(np.int8)
    order = rank_order(group, score, support, last_seen, cluster, prov)
    expected = order[rank_within(group[order]) < depth]
    got = top_per_group(group, depth, score, support, last_seen, cluster, prov)
    np.testing.assert_array_equal(got, expected)
