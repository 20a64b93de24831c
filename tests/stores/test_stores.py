"""The annoy and exact stores: agreement, borrowing, registration, options and the API edges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import stores_synthetic as syn
from hybridrec_stores import AnnoyStore, ExactStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hybridrec import plugins
from hybridrec.errors import DataError, HybridrecError
from hybridrec.generation import all_contexts
from hybridrec.interfaces import KnowledgeStore
from hybridrec.types import PROVENANCE_CODES, TransitionSet

EXACT, BORROWED = PROVENANCE_CODES["exact"], PROVENANCE_CODES["borrowed"]


def test_both_stores_are_registered_with_snapshot_capabilities() -> None:
    for name, cls in (("annoy", AnnoyStore), ("exact", ExactStore)):
        assert plugins.get("knowledge_store", name) is cls
        assert issubclass(cls, KnowledgeStore)
        caps = cls.capabilities
        assert (caps.immutable_snapshots, caps.incremental_add, caps.memory_mapped) == (
            True, False, True)
    assert "store" in plugins.registry().bench_suites


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="depth"):
        AnnoyStore.Options(m=3, depth=2)
    with pytest.raises(ValidationError):
        AnnoyStore.Options(trees=3)  # unknown option: the field is n_trees
    with pytest.raises(ValidationError):
        ExactStore.Options(scoring="recency")
    assert AnnoyStore.Options(m=7).stored_depth == 7


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_clusters=st.integers(5, 20), n=st.integers(50, 800), seed=st.integers(0, 9999),
       min_support=st.integers(1, 4), scoring=st.sampled_from(["frequency", "trend"]))
def test_annoy_and_exact_agree_on_well_supported_contexts(
    tmp_path: Path, n_clusters: int, n: int, seed: int, min_support: int, scoring: str
) -> None:
    rows = syn.transitions(n_clusters, n, seed)
    win = syn.window(20, 30)
    cat = syn.catalog(n_clusters)
    opts = {"min_support": min_support, "scoring": scoring, "depth": 4}
    tag = f"{n_clusters}-{n}-{seed}-{min_support}-{scoring}"
    a = AnnoyStore(AnnoyStore.Options(**opts), cat).build(rows, win, tmp_path / f"a{tag}")
    e = ExactStore(ExactStore.Options(**opts), cat).build(rows, win, tmp_path / f"e{tag}")
    ctx = all_contexts(n_clusters)
    ea, ee = a.evidence(ctx, m=4), e.evidence(ctx, m=4)
    counts = syn.recount(rows, win)
    supported = np.array([sum(counts.get((int(c1), int(c2)), {}).values()) >= min_support
                          for c1, c2 in ctx])
    for name in ("cluster", "support", "score", "last_seen", "provenance", "source"):
        np.testing.assert_array_equal(getattr(ea, name)[supported], getattr(ee, name)[supported])
    assert (ea.provenance[supported][ea.cluster[supported] >= 0] == EXACT).all()
    np.testing.assert_array_equal(a.index_keys, e.index_keys)


def test_annoy_neighbours_match_exact_when_the_search_is_exhaustive(tmp_path: Path) -> None:
    rows = syn.transitions(30, 3000, seed=11)
    win = syn.window(0, 60)
    cat = syn.catalog(30)
    a = AnnoyStore(AnnoyStore.Options(n_trees=20, search_k=100_000, borrow_search_k=-1), cat).build(
        rows, win, tmp_path / "a")
    e = ExactStore(ExactStore.Options(), cat).build(rows, win, tmp_path / "e")
    query = all_contexts(30)[::7]
    (ka, sa), (ke, se) = a.neighbours(query, 10), e.neighbours(query, 10)
    # similarities agree even where equal-similarity neighbours are listed in another order
    np.testing.assert_allclose(sa, se, atol=1e-5)
    assert ka.shape == ke.shape == (query.shape[0], 10, 2)
    # where both found the same neighbours to borrow from, they serve the same evidence
    ctx = all_contexts(30)
    k = a.manifest["options"]["neighbours"]
    (na, _), (ne, _) = a.neighbours(ctx, k), e.neighbours(ctx, k)
    same = np.array([sorted(map(tuple, x.tolist())) == sorted(map(tuple, y.tolist()))
                     for x, y in zip(na, ne, strict=True)])
    assert same.mean() > 0.5
    ea, ee = a.evidence(ctx[same], m=3), e.evidence(ctx[same], m=3)
    np.testing.assert_allclose(ea.support, ee.support, atol=1e-5)
    np.testing.assert_array_equal(ea.provenance, ee.provenance)
    assert (ea.cluster == ee.cluster).mean() > 0.99  # only near-equal scores may swap places


def _two_neighbourhoods() -> tuple[TransitionSet, object]:
    """Context (0, 1) is unseen; its close relatives (0, 2) and (3, 1) are busy."""
    t0 = int(syn.T0.timestamp())
    rows = [(0, 2, 5)] * 4 + [(3, 1, 6)] * 3 + [(0, 2, 1)] * 2 + [(4, 7, 0)] * 2
    ts = [t0 + 60 * i for i in range(len(rows))]
    c1, c2, c3 = (list(x) for x in zip(*rows, strict=True))
    return TransitionSet(c1, c2, c3, ts, [0] * len(rows), 8), syn.window(0, 1)


@pytest.mark.parametrize("store_cls", [AnnoyStore, ExactStore])
def test_unseen_contexts_borrow_from_their_neighbours_with_provenance(
    tmp_path: Path, store_cls: type
) -> None:
    rows, win = _two_neighbourhoods()
    store = store_cls(store_cls.Options(min_support=2, neighbours=3, depth=5), syn.catalog(8))
    snap = store.build(rows, win, tmp_path / "s")
    ev = snap.evidence(np.array([[0, 1]]), m=5)
    row = ev.row(0)
    assert row.items, "an unseen context borrows evidence"
    assert all(item.provenance == "borrowed" for item in row.items)
    assert all(item.cluster not in (0, 1) for item in row.items), "borrowed evidence is novel"
    donors = {(0, 2): {5: 4, 1: 2}, (3, 1): {6: 3}, (4, 7): {0: 2}}
    for item in row.items:
        assert item.source_context in donors and item.cluster in donors[item.source_context]
        assert 0.0 < (item.similarity or 0.0) <= 1.0
        assert 0.0 < item.support <= donors[item.source_context][item.cluster]
    # the similarity-weighted average over the neighbours that lend
    nb, sim = snap.neighbours(np.array([[0, 1]]), 3)
    lend = {tuple(int(v) for v in c): float(s) for c, s in zip(nb[0], sim[0], strict=True)
            if c[0] >= 0 and s > 0}
    total = sum(lend.values())
    expected_5 = lend.get((0, 2), 0.0) * 4 / total
    assert any(i.cluster == 5 and i.support == pytest.approx(expected_5) for i in row.items)
    # a busy context keeps its own, exact evidence
    busy = snap.evidence(np.array([[0, 2]]), m=5).row(0)
    assert [(i.cluster, i.provenance, i.support) for i in busy.items] == [
        (5, "exact", 4.0), (1, "exact", 2.0)]


def test_min_support_zero_disables_borrowing(tmp_path: Path) -> None:
    rows, win = _two_neighbourhoods()
    snap = AnnoyStore(AnnoyStore.Options(min_support=0), syn.catalog(8)).build(
        rows, win, tmp_path / "s")
    ev = snap.evidence(all_contexts(8))
    assert not (ev.provenance == BORROWED).any()
    assert int((ev.cluster[:, 0] >= 0).sum()) == 3


def test_builds_are_deterministic_and_evidence_has_the_contract_shape(tmp_path: Path) -> None:
    rows = syn.transitions(12, 1000, seed=5)
    win = syn.window(5, 20)
    store = AnnoyStore(AnnoyStore.Options(m=2), syn.catalog(12))
    one, two = store.build(rows, win, tmp_path / "1"), store.build(rows, win, tmp_path / "2")
    assert one.id == two.id
    assert (tmp_path / "1" / "index.ann").read_bytes() == (tmp_path / "2" / "index.ann").read_bytes()
    ctx = all_contexts(12)
    ev = one.evidence(ctx)
    assert ev.cluster.shape == (ctx.shape[0], 2) and ev.source.shape == (ctx.shape[0], 2, 2)
    assert ev.snapshot == one.id and ev.window == win
    wide = one.evidence(ctx[:3], m=9)  # wider than the stored depth (5): padded
    assert wide.width == 9 and (wide.cluster[:, 5:] == -1).all()
    assert one.evidence(np.zeros((0, 2), dtype=np.int64)).cluster.shape == (0, 2)


def test_bad_inputs_are_explained(tmp_path: Path) -> None:
    rows = syn.transitions(6, 100, seed=1)
    store = ExactStore(ExactStore.Options(), syn.catalog(6))
    snap = store.build(rows, syn.window(0, 30), tmp_path / "s")
    with pytest.raises(DataError, match=r"outside \[0, 6\)"):
        snap.evidence(np.array([[0, 6]]))
    with pytest.raises(DataError, match=r"\(n, 2\)"):
        snap.evidence(np.array([0, 1]))
    with pytest.raises(HybridrecError, match="not empty"):
        store.build(rows, syn.window(0, 30), tmp_path / "s")
    with pytest.raises(DataError, match=r"use 6 clusters but the catalog .* has 7"):
        ExactStore(ExactStore.Options(), syn.catalog(7)).build(rows, syn.window(0, 30), tmp_path / "x")
    with pytest.raises(DataError, match="catalog"):
        ExactStore(ExactStore.Options(), syn.catalog(7)).open(tmp_path / "s")


def test_workload_describes_the_index() -> None:
    store = AnnoyStore(AnnoyStore.Options(n_trees=7, embedding_dim=8), syn.catalog(5))
    w = store.workload(1000, 20)
    assert (w.transitions, w.contexts, w.index_items, w.index_dim, w.index_trees) == (
        1000, 20, 20, 16, 7)
    assert ExactStore(ExactStore.Options(), syn.catalog(5)).workload(1, 1).index_trees == 0
    serving = store.workload(0, 20)  # evidence is a gather: no index work
    assert (serving.contexts, serving.index_items, serving.index_trees) == (20, 0, 0)


def test_parallel_neighbour_queries_give_the_same_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybridrec_stores import neighbours

    rows = syn.transitions(25, 2000, seed=4)
    win = syn.window(0, 40)
    cat = syn.catalog(25)
    one = AnnoyStore(AnnoyStore.Options(workers=1), cat).build(rows, win, tmp_path / "1")
    monkeypatch.setattr(neighbours, "PARALLEL_MIN_QUERIES", 1)
    monkeypatch.setattr(neighbours.os, "cpu_count", lambda: 2)
    two = AnnoyStore(AnnoyStore.Options(workers=2), cat).build(rows, win, tmp_path / "2")
    assert one.manifest["counts"]["recipients"] > 100
    assert one.id == two.id  # the id covers content, not how many processes built it
    for stem in ("keys", "offsets", "cluster", "support", "source", "similarity"):
        assert (one.path / f"{stem}.npy").read_bytes() == (two.path / f"{stem}.npy").read_bytes()


@pytest.mark.integration
def test_minilm_cluster_embeddings_are_deterministic_and_semantic(tmp_path: Path) -> None:
    from hybridrec_stores.embeddings import cluster_embeddings, minilm_embeddings

    from hybridrec.types import ClusterCatalog

    cat = ClusterCatalog.from_descriptions(["war movies", "war films", "romantic comedy", "horror"])
    emb = cluster_embeddings(cat, 8, seed=0, kind="minilm")
    assert emb.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    full = minilm_embeddings(cat)
    sims = full @ full.T
    assert sims[0, 1] > sims[0, 2] and sims[0, 1] > sims[0, 3]
    rows = syn.transitions(4, 50, seed=1)
    store = AnnoyStore(AnnoyStore.Options(embedding="minilm"), cat)
    a, b = store.build(rows, syn.window(0, 30), tmp_path / "a"), store.build(
        rows, syn.window(0, 30), tmp_path / "b")
    assert a.id == b.id
