"""Transition extraction follows docs/protocol.md exactly; windows partition the data."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrec.data.transitions import (
    daily_counts,
    day_windows,
    extract_transitions_arrays,
    lexicographic_order,
    month_windows,
    pair_successor_counts,
    positive_mask,
    window_counts,
)
from hybridrec.types import TimeWindow, TransitionSet

N_CLUSTERS = 5
N_ITEMS = 8
T0 = 946_684_800  # 2000-01-01


@st.composite
def logs(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """Small interaction logs with many timestamp ties, duplicates and unclustered items."""
    n = draw(st.integers(0, 60))
    ints = lambda lo, hi: np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), dtype=np.int64)  # noqa: E731
    item_cluster = np.array(
        draw(st.lists(st.integers(-1, N_CLUSTERS - 1), min_size=N_ITEMS, max_size=N_ITEMS)),
        dtype=np.int64,
    )
    return {
        "user": ints(0, 3),
        "item": ints(0, N_ITEMS - 1),
        # Few distinct seconds across a few days: ties are the rule, not the exception.
        "ts": T0 + ints(0, 5) * 43_200 + ints(0, 2),
        "rating": ints(1, 5).astype(np.float64),
        "item_cluster": item_cluster,
    }


def extract(log: dict[str, np.ndarray], min_rating: float | None = 4.0) -> TransitionSet:
    return extract_transitions_arrays(
        log["user"], log["item"], log["ts"], log["rating"], log["item_cluster"], N_CLUSTERS,
        min_rating=min_rating,
    )


def reference(log: dict[str, np.ndarray], min_rating: float | None) -> list[tuple[int, ...]]:
    """The protocol written the slow, obvious way, one user at a time."""
    rows = [
        (int(u), int(t), int(i), float(r))
        for u, i, t, r in zip(log["user"], log["item"], log["ts"], log["rating"], strict=True)
        if min_rating is None or r >= min_rating
    ]
    out = []
    for user in sorted({r[0] for r in rows}):
        events = sorted((t, i) for u, t, i, _ in rows if u == user)
        seq: list[tuple[int, int]] = []  # (cluster, ts), consecutive repeats collapsed
        for t, i in events:
            c = int(log["item_cluster"][i])
            if c < 0:
                continue
            if not seq or seq[-1][0] != c:
                seq.append((c, t))
        for (c1, _), (c2, _), (c3, t3) in zip(seq, seq[1:], seq[2:], strict=False):
            if c3 not in (c1, c2):
                out.append((t3, user, c1, c2, c3))
    return sorted(out)


def rows_of(ts: TransitionSet) -> list[tuple[int, ...]]:
    return list(zip(ts.ts.tolist(), ts.user.tolist(), ts.c1.tolist(), ts.c2.tolist(), ts.c3.tolist(), strict=True))


@settings(max_examples=80, deadline=None)
@given(logs(), st.sampled_from([None, 3.0, 4.0]))
def test_extraction_matches_the_protocol_reference(log: dict[str, np.ndarray], min_rating: float | None) -> None:
    assert rows_of(extract(log, min_rating)) == reference(log, min_rating)


@settings(max_examples=80, deadline=None)
@given(logs(), st.randoms(use_true_random=False))
def test_extraction_is_invariant_to_input_row_order(log: dict[str, np.ndarray], rnd: object) -> None:
    perm = np.array(rnd.sample(range(log["user"].shape[0]), log["user"].shape[0]), dtype=np.int64)  # type: ignore[attr-defined]
    shuffled = {k: (v[perm] if k != "item_cluster" else v) for k, v in log.items()}
    a, b = extract(log), extract(shuffled)
    for name in ("c1", "c2", "c3", "ts", "user"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@settings(max_examples=80, deadline=None)
@given(logs())
def test_every_triple_satisfies_the_protocol(log: dict[str, np.ndarray]) -> None:
    ts = extract(log, None)
    assert (ts.c1 != ts.c2).all()
    assert ((ts.c3 != ts.c1) & (ts.c3 != ts.c2)).all()
    keys = rows_of(ts)
    assert keys == sorted(keys), "sorted by (ts, user, c1, c2, c3)"
    # Each transition's time is the time of some interaction of that user with a c3 item.
    seen = {(int(u), int(t), int(log["item_cluster"][i])) for u, t, i in zip(log["user"], log["ts"], log["item"], strict=True)}
    assert all((u, t, c3) in seen for t, u, _, _, c3 in keys)


@settings(max_examples=50, deadline=None)
@given(logs(), st.integers(1, 3))
def test_window_counts_add_up_and_windows_hold_only_their_own_time(log: dict[str, np.ndarray], days: int) -> None:
    ts = extract(log, None)
    windows = day_windows(datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 6, tzinfo=UTC), days)
    counts = window_counts(ts, windows)
    assert int(counts.sum()) == len(ts)
    for window, count in zip(windows, counts, strict=True):
        part = ts.window(window)
        assert len(part) == count
        assert (part.ts >= window.start_ts).all() and (part.ts < window.end_ts).all()
        earlier = ts.before(window.end)
        assert (earlier.ts < window.end_ts).all()
        assert len(earlier) == int(counts[: windows.index(window) + 1].sum())
    assert int(daily_counts(ts).counts.sum()) == len(ts)


def test_ties_are_ordered_by_item_code() -> None:
    # One user, three interactions in the same second: order is item 0, 1, 2 whatever the input.
    log = {
        "user": np.zeros(3, dtype=np.int64),
        "item": np.array([2, 0, 1]),
        "ts": np.full(3, T0),
        "rating": np.full(3, 5.0),
        "item_cluster": np.array([0, 1, 2]),
    }
    ts = extract_transitions_arrays(log["user"], log["item"], log["ts"], log["rating"], log["item_cluster"], 3)
    assert rows_of(ts) == [(T0, 0, 0, 1, 2)]


def test_repeats_collapse_and_returns_are_not_novel() -> None:
    # Clusters A A B A C: collapsed A B A C; (A, B, A) is not novel, (B, A, C) is.
    cl = np.array([0, 0, 1, 0, 2])
    ts = extract_transitions_arrays(
        np.zeros(5, dtype=np.int64), np.arange(5), T0 + np.arange(5), None, cl, 3
    )
    assert rows_of(ts) == [(T0 + 4, 0, 1, 0, 2)]


def test_positive_filter_keeps_unrated_rows_and_none_keeps_all() -> None:
    rating = np.array([5.0, 3.0, np.nan])
    assert positive_mask(rating, 4.0).tolist() == [True, False, True]
    assert positive_mask(rating, None).tolist() == [True, True, True]


def test_rejects_item_codes_outside_the_cluster_map() -> None:
    with pytest.raises(ValueError, match="item codes"):
        extract_transitions_arrays(np.zeros(1), np.array([5]), np.zeros(1), None, np.zeros(3, dtype=np.int64), 1)


def test_month_windows_cover_calendar_months() -> None:
    months = month_windows(datetime(2000, 11, 15, tzinfo=UTC), datetime(2001, 2, 1, tzinfo=UTC))
    assert [w.start.strftime("%Y-%m") for w in months] == ["2000-11", "2000-12", "2001-01"]
    assert months[1] == TimeWindow(start=datetime(2000, 12, 1, tzinfo=UTC), end=datetime(2001, 1, 1, tzinfo=UTC))


def test_pair_successor_counts() -> None:
    ts = TransitionSet(
        c1=np.array([0, 0, 0, 1]), c2=np.array([1, 1, 1, 2]), c3=np.array([2, 2, 3, 0]),
        ts=np.arange(4), user=np.zeros(4, dtype=np.int64), n_clusters=4,
    )
    pairs, succ, counts = pair_successor_counts(ts)
    assert pairs.tolist() == [[0, 1], [0, 1], [1, 2]]
    assert succ.tolist() == [2, 3, 0]
    assert counts.tolist() == [2, 1, 1]


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-(2**40), 2**40), st.integers(0, 3), st.integers(-(2**30), 2**30)),
        max_size=40,
    )
)
def test_packed_order_equals_lexsort(rows: list[tuple[int, int, int]]) -> None:
    a, b, c = (np.array(col, dtype=np.int64) for col in zip(*rows, strict=True)) if rows else (np.zeros(0, dtype=np.int64),) * 3
    np.testing.assert_array_equal(lexicographic_order(a, b, c), np.lexsort((c, b, a)))
