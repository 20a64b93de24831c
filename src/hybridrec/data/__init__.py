"""The data layer: interaction logs, interest clusters, transitions and drift.

The one call most code needs::

    from hybridrec.data import load_prepared
    prepared = load_prepared("ml-1m")          # catalog, item -> cluster, transitions, raw data
    prepared.transitions.window(window)        # a time window of (c1, c2) -> c3 transitions

Modules: :mod:`~hybridrec.data.io` (reading and validating files, quarantine),
:mod:`~hybridrec.data.clusters`, :mod:`~hybridrec.data.transitions` (the protocol of docs/protocol.md),
:mod:`~hybridrec.data.drift`, :mod:`~hybridrec.data.synthetic`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridrec.data.clusters import Clustering, cluster_items
from hybridrec.data.transitions import extract_transitions
from hybridrec.types import ClusterCatalog, InteractionData, TransitionSet

__all__ = ["PreparedData", "load_dataset", "load_prepared", "prepare"]


@dataclass(frozen=True)
class PreparedData:
    """A data set ready for the pipeline.

    ``item_cluster[item_code]`` is the cluster id of each item of ``data.items`` (``-1`` if none);
    ``transitions`` were extracted from ``data`` with that mapping; ``quarantine_count`` is the
    number of input rows the loader rejected (the records are in ``data.quarantine``);
    ``min_rating`` is the positive-engagement threshold the transitions were extracted with.
    """

    catalog: ClusterCatalog
    item_cluster: np.ndarray
    transitions: TransitionSet
    data: InteractionData
    quarantine_count: int
    min_rating: float | None = 4.0


def prepare(
    data: InteractionData,
    *,
    min_rating: float | None = 4.0,
    clustering: str = "categories",
    n_clusters: int | None = None,
    seed: int = 0,
) -> PreparedData:
    """Cluster ``data``'s items and extract its transitions (docs/protocol.md)."""
    clusters: Clustering = cluster_items(
        data.items, clustering, n_clusters=n_clusters, seed=seed, name=data.name or "catalog"
    )
    transitions = extract_transitions(
        data.interactions, clusters.item_cluster, len(clusters.catalog), min_rating=min_rating
    )
    return PreparedData(
        catalog=clusters.catalog,
        item_cluster=clusters.item_cluster,
        transitions=transitions,
        data=data,
        quarantine_count=len(data.quarantine),
        min_rating=min_rating,
    )


def load_dataset(dataset: str = "ml-1m", *, options: dict[str, Any] | None = None) -> InteractionData:
    """Load a data set by plugin name (resolved through the registry, options validated)."""
    from hybridrec.plugins import build

    return build("dataset", {"plugin": dataset, "options": options or {}}).load()


# Package data never changes under a running process, so ml-1m is memoised per argument set.
_MEMO_DATASETS = frozenset({"ml-1m"})
_memo: dict[str, PreparedData] = {}
_memo_lock = threading.Lock()


def load_prepared(
    dataset: str = "ml-1m",
    *,
    options: dict[str, Any] | None = None,
    min_rating: float | None = 4.0,
    clustering: str = "categories",
    n_clusters: int | None = None,
) -> PreparedData:
    """:func:`load_dataset` then :func:`prepare`; memoised in-process for ``ml-1m``.

    Callers must treat the result as read-only (its arrays are shared between callers).
    """
    key = json.dumps(
        [dataset, options or {}, min_rating, clustering, n_clusters], sort_keys=True, default=str
    )
    if dataset in _MEMO_DATASETS:
        with _memo_lock:
            hit = _memo.get(key)
        if hit is not None:
            return hit
    prepared = prepare(
        load_dataset(dataset, options=options),
        min_rating=min_rating,
        clustering=clustering,
        n_clusters=n_clusters,
    )
    if dataset in _MEMO_DATASETS:
        with _memo_lock:
            _memo.setdefault(key, prepared)
            return _memo[key]
    return prepared
