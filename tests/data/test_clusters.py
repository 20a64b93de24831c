"""Cluster assignment: category combinations, balanced k-means, unique TF-IDF descriptions."""

from __future__ import annotations

import numpy as np
import pytest

from hybridrec.data.clusters import (
    _capacitated_assign,
    balanced_kmeans,
    cluster_by_categories,
    cluster_by_embeddings,
    cluster_items,
    tfidf_descriptions,
)
from hybridrec.errors import DataError
from hybridrec.types import ItemTable


def items(categories: list[tuple[str, ...]], titles: list[str] | None = None) -> ItemTable:
    n = len(categories)
    return ItemTable(
        item_ids=np.array([f"i{k}" for k in range(n)], dtype=object),
        titles=tuple(titles or [f"title {k}" for k in range(n)]),
        categories=tuple(categories),
    )


def test_categories_cluster_on_the_sorted_combination() -> None:
    table = items([("Drama", "Comedy"), ("Comedy", "Drama"), ("Action",), (), ("Comedy",)])
    result = cluster_by_categories(table, name="t")
    descriptions = [c.description for c in result.catalog.clusters]
    assert descriptions == ["Action", "Comedy", "Comedy Drama", "uncategorized"]
    assert result.item_cluster.tolist() == [2, 2, 0, 3, 1]
    assert result.catalog.clusters[2].keywords == ("Comedy", "Drama")
    assert result.catalog.version == "categories/1"


def test_category_catalog_is_independent_of_item_order_and_hashed() -> None:
    cats = [("b",), ("a", "c"), ("a",), ("c", "a")]
    one = cluster_by_categories(items(cats))
    two = cluster_by_categories(items(cats[::-1]))
    assert one.catalog.hash == two.catalog.hash
    assert len(one.catalog.hash) == 64
    assert one.item_cluster.tolist() == two.item_cluster.tolist()[::-1]


def test_capacitated_assignment_respects_the_cap_and_prefers_near_columns() -> None:
    rng = np.random.default_rng(0)
    d = rng.random((50, 4))
    labels = _capacitated_assign(d, capacity=13)
    assert (labels >= 0).all() and np.bincount(labels, minlength=4).max() <= 13
    free = _capacitated_assign(d, capacity=50)
    assert (free == d.argmin(axis=1)).all(), "without a binding cap it is nearest-centre"


def test_balanced_kmeans_is_balanced_and_seeded() -> None:
    rng = np.random.default_rng(1)
    # One huge blob and two small ones: plain k-means would leave clusters very unequal.
    x = np.concatenate([rng.normal(0, 0.1, (80, 3)), rng.normal(5, 0.1, (10, 3)), rng.normal(-5, 0.1, (10, 3))])
    labels = balanced_kmeans(x, 4, seed=3, slack=0.25)
    assert np.bincount(labels, minlength=4).max() <= 32
    assert (labels == balanced_kmeans(x, 4, seed=3, slack=0.25)).all()


def test_tfidf_descriptions_are_unique_even_for_equal_documents() -> None:
    docs = ["space alien war", "space alien war", "love paris romance", "space alien war"]
    out = tfidf_descriptions(docs, words=2)
    assert len({d.lower() for d in out}) == 4
    assert set(out[0].split()) <= {"space", "alien", "war"}


def test_embedding_clusters_with_precomputed_vectors() -> None:
    rng = np.random.default_rng(2)
    centers = np.eye(3) * 4
    x = np.concatenate([centers[k] + rng.normal(0, 0.05, (6, 3)) for k in range(3)])
    titles = [f"{w} story {k}" for w in ("space", "love", "crime") for k in range(6)]
    result = cluster_by_embeddings(items([()] * 18, titles), n_clusters=3, embeddings=x)
    assert result.item_cluster.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert [c.description.split()[0] for c in result.catalog.clusters] == ["space", "love", "crime"]
    assert result.catalog.version.startswith("embeddings/1")


def test_cluster_items_rejects_bad_requests() -> None:
    table = items([("a",), ("b",)])
    with pytest.raises(DataError, match="n_clusters"):
        cluster_items(table, "categories", n_clusters=3)
    with pytest.raises(DataError, match="unknown clustering"):
        cluster_items(table, "genres")
    with pytest.raises(DataError, match=r"\[2, 2\]"):
        cluster_by_embeddings(table, n_clusters=5, embeddings=np.zeros((2, 3)))


@pytest.mark.integration
def test_real_minilm_embeddings_load_offline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hybridrec.data.clusters import embed_texts

    vectors = embed_texts(["Toy Story. Animation Comedy", "Heat. Action Crime", "Toy Story 2. Animation Comedy"], cache_dir=tmp_path)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[2] > vectors[0] @ vectors[1]
    again = embed_texts(["Toy Story. Animation Comedy", "Heat. Action Crime", "Toy Story 2. Animation Comedy"], cache_dir=tmp_path)
    np.testing.assert_array_equal(vectors, again)
