"""Serving tables: both backends agree, the backoff contract, no context cluster is ever served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrec import plugins
from hybridrec.errors import HybridrecError
from hybridrec.generation import all_contexts
from hybridrec.serving import (
    MemoryBackend,
    MemoryTable,
    SqliteBackend,
    SuccessorFallback,
    get_backend,
)
from hybridrec.types import Rankings, TransitionSet

N = 8


def transitions() -> TransitionSet:
    # successors of c2: c2 + 1 mostly, c2 + 2 sometimes; globally cluster 5 is the most common
    rows = [(a, b, (b + 1) % N) for a in range(N) for b in range(N) if a != b and (b + 1) % N != a]
    rows += [(a, b, (b + 2) % N) for a in range(2) for b in range(N) if a != b and (b + 2) % N not in (a, b)]
    rows += [(0, 1, 5)] * 20
    c1, c2, c3 = (np.array(x) for x in zip(*rows, strict=True))
    return TransitionSet(c1, c2, c3, np.arange(len(rows)), np.zeros(len(rows), dtype=np.int64), N)


def partial_rankings() -> Rankings:
    """Rows only for contexts with c1 < c2, two clusters each (short rows)."""
    ctx = all_contexts(N)
    ctx = ctx[ctx[:, 0] < ctx[:, 1]]
    ids = np.stack([(ctx[:, 1] + 3) % N, (ctx[:, 1] + 4) % N], axis=1)
    ids = np.where((ids == ctx[:, :1]) | (ids == ctx[:, 1:]), -1, ids)
    return Rankings(ctx, ids, np.where(ids >= 0, 1.0, 0.0))


def write(backend_name: str, folder: Path, k: int = 2):
    backend = get_backend(backend_name)
    writer = backend.writer(folder, n_clusters=N, k=k)
    writer.write(partial_rankings())
    writer.set_backoff(SuccessorFallback.from_transitions(transitions(), k + 2))
    writer.commit({"note": "test"})
    return backend.reader(folder)


def test_builtin_backends_are_registered_through_the_hook() -> None:
    assert {"sqlite", "memory"} <= set(plugins.registry().table_backends)
    with pytest.raises(Exception, match="unknown serving backend"):
        get_backend("nope")


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_lookup_backs_off_pair_then_last_cluster_then_popularity(backend: str, tmp_path: Path) -> None:
    reader = write(backend, tmp_path)
    known = reader.lookup((1, 2), 2)
    assert known.level == "pair" and known.clusters == (5, 6)
    # no row for (2, 1); after 1 come 5 (20x), 2 (6x), 3 (1x); 2 is in the context
    unknown = reader.lookup((2, 1), 2)
    assert unknown.level == "last" and unknown.clusters == (5, 3)
    assert reader.metadata == {"note": "test"}


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_short_rows_are_filled_from_lower_levels_without_repeats(backend: str, tmp_path: Path) -> None:
    reader = write(backend, tmp_path)
    served = reader.lookup((1, 2), 5)
    assert served.level == "pair" and served.clusters[:2] == (5, 6) and len(served.clusters) == 5
    assert len(set(served.clusters)) == 5 and not {1, 2} & set(served.clusters)


def test_empty_backoff_and_unknown_pair_serves_nothing_at_level_none(tmp_path: Path) -> None:
    writer = SqliteBackend().writer(tmp_path, n_clusters=N, k=2)
    writer.commit({})
    served = SqliteBackend().reader(tmp_path).lookup((0, 1), 3)
    assert served.level == "none" and served.clusters == ()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, N - 1), st.integers(0, N - 1)).filter(lambda t: t[0] != t[1]),
                min_size=1, max_size=40), st.integers(1, 6))
def test_backends_agree_and_never_serve_a_context_cluster(pairs: list[tuple[int, int]], k: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        sqlite = write("sqlite", Path(a), k=2)
        memory = write("memory", Path(b), k=2)
        contexts = np.array(pairs, dtype=np.int64)
        got_s, lv_s = sqlite.lookup_batch_with_levels(contexts, k)
        got_m, lv_m = memory.lookup_batch_with_levels(contexts, k)
        np.testing.assert_array_equal(got_s.ids, got_m.ids)
        np.testing.assert_array_equal(lv_s, lv_m)
        got_s.validate()
        for row in got_s.ids:
            kept = row[row >= 0]
            assert len(set(kept.tolist())) == kept.size
        single = [sqlite.lookup(tuple(p), k).clusters for p in pairs]
        assert single == [tuple(int(x) for x in r[r >= 0]) for r in got_s.ids]
        sqlite.close()


@pytest.mark.parametrize("bad", [[(0, 0)], [(0, N)], [(-1, 2)]])
def test_invalid_contexts_are_rejected_with_the_row(bad: list[tuple[int, int]], tmp_path: Path) -> None:
    reader = write("memory", tmp_path)
    with pytest.raises(HybridrecError, match="row 0"):
        reader.lookup_batch(np.array(bad), 2)


def test_a_context_written_twice_is_an_error(tmp_path: Path) -> None:
    for backend, folder in ((SqliteBackend(), tmp_path / "s"), (MemoryBackend(), tmp_path / "m")):
        folder.mkdir()
        writer = backend.writer(folder, n_clusters=N, k=2)
        writer.write(partial_rankings())
        with pytest.raises(ValueError, match="twice"):
            writer.write(partial_rankings())
        writer.abort()


def test_memory_table_builds_from_rankings_in_memory() -> None:
    table = MemoryTable.build(partial_rankings(), SuccessorFallback.from_transitions(transitions(), 4), 2)
    assert table.rows == int((partial_rankings().ids[:, 0] >= 0).sum())
    assert table.lookup((1, 2), 2).clusters == (5, 6)


def test_the_serving_bench_suite_is_registered() -> None:
    suite = plugins.registry().bench_suites["serving"]
    assert "Serving table" in (suite.__doc__ or "")


def test_one_row_is_filled_exactly_as_a_batch_fills_it() -> None:
    # fill_rows has a loop for a single row (the service's path); it must equal the batch rule.
    from hybridrec.serving.base import fill_rows

    rng = np.random.default_rng(0)
    n = 12
    c1 = rng.integers(0, n, 400)
    c2 = (c1 + rng.integers(1, n - 1, 400)) % n
    c3 = np.array([next(x for x in rng.permutation(n) if x not in (a, b)) for a, b in zip(c1, c2, strict=True)])
    data = TransitionSet(c1, c2, c3, np.arange(400), np.zeros(400, dtype=np.int64), n)
    backoff = SuccessorFallback.from_transitions(data, 6)
    for _ in range(300):
        rows = 5
        contexts = np.stack([rng.integers(0, n, rows), rng.integers(0, n, rows)], axis=1)
        contexts[contexts[:, 0] == contexts[:, 1], 1] = (contexts[contexts[:, 0] == contexts[:, 1], 0] + 1) % n
        width = int(rng.integers(1, 6))
        ids = rng.integers(-1, n, (rows, width))
        scores = rng.random((rows, width))
        k = int(rng.integers(1, 8))
        batch, levels = fill_rows(contexts, ids, scores, backoff, k)
        for i in range(rows):
            one, level = fill_rows(contexts[i : i + 1], ids[i : i + 1], scores[i : i + 1], backoff, k)
            np.testing.assert_array_equal(one.ids[0], batch.ids[i])
            np.testing.assert_array_equal(one.scores[0], batch.scores[i])
            assert level[0] == levels[i]


def test_the_serving_bench_parts_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The suite's cheap parts in quick mode (its ML-1M update is a long benchmark).
    from hybridrec_policies.bench import _batch_lookup, _promote, _sqlite_latency

    assert _batch_lookup(True) > 0
    (tmp_path / "latency").mkdir()
    p50, p99 = _sqlite_latency(True, tmp_path / "latency")
    assert 0 < p50 <= p99
    promoted = _promote(True, tmp_path)
    assert promoted["mixed_batches"] == 0 and promoted["reader_errors"] == 0
    assert promoted["rows"] == 301 * 300


@pytest.mark.integration
def test_the_serving_bench_times_a_real_refresh_at_the_presets_cadence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The timed update must refresh and regenerate (once it came before the preset's next
    # refresh and timed an update that did nothing); exact delta serves the full table.
    from hybridrec_policies.bench import update_delta

    result = update_delta(True, tmp_path)
    assert "regenerate_table" in result["update_actions"].split(",")
    assert result["update_exact_tables_identical"]
    assert result["update_delta_ranked_contexts"] < result["update_contexts"]
