"""From a user's recent items to recommended interest clusters, through a served table.

The table answers for a context ``(c1, c2)``: the user's last two distinct interest clusters.
:func:`recommend` builds that context as the protocol does (docs/protocol.md): the items are
mapped to clusters (items the workspace has never seen are skipped and reported), consecutive
repeats are collapsed, and the last two entries are the context. It then looks the context up
and, by default, drops every cluster already in the user's history: the paper recommends the
user's next *novel* interest. A wider list is read so that ``k`` clusters remain after the drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from hybridrec.errors import HybridrecError
from hybridrec.serving.base import LEVELS, TableReader
from hybridrec.types import ClusterCatalog

Exclude = Literal["history", "context"]


class Recommendation(BaseModel):
    """What :func:`recommend` serves for one user."""

    model_config = ConfigDict(extra="forbid")

    items: list[str]
    unknown_items: list[str]
    history: list[int]
    context: tuple[int, int]
    clusters: list[int]
    scores: list[float]
    descriptions: list[str]
    level: str
    excluded: list[int]


def cluster_history(items: Sequence[str], item_cluster: Mapping[str, int]) -> tuple[list[int], list[str]]:
    """The collapsed cluster sequence of ``items`` (oldest first; consecutive repeats collapsed)
    and the items the map does not know."""
    history: list[int] = []
    unknown: list[str] = []
    for item in items:
        cluster = item_cluster.get(str(item))
        if cluster is None:
            unknown.append(str(item))
        elif not history or history[-1] != cluster:
            history.append(int(cluster))
    return history, unknown


def recommend(
    reader: TableReader, catalog: ClusterCatalog, item_cluster: Mapping[str, int],
    items: Sequence[str], k: int = 5, *, exclude: Exclude = "history",
) -> Recommendation:
    """The top ``k`` clusters for a user whose recent ``items`` (oldest first) are given (see
    the module docstring). ``exclude="history"`` drops every cluster of the user's history,
    ``"context"`` only the two context clusters (what the table never serves anyway).

    Raises :class:`~hybridrec.errors.HybridrecError` when fewer than two distinct clusters are
    known: the table holds no row for such a user (a cold start is the caller's to handle)."""
    if k < 1:
        raise HybridrecError(f"k must be at least 1, got {k}")
    history, unknown = cluster_history(items, item_cluster)
    if len(history) < 2:
        known = f"cluster {history[0]}" if history else "no known cluster"
        raise HybridrecError(
            f"the items give {known}: a recommendation needs items from at least two distinct "
            "interest clusters (the context is the last two)"
            + (f"; not in this workspace's data: {', '.join(unknown[:10])}" if unknown else ""))
    context = (history[-2], history[-1])
    dropped = sorted(set(history) - set(context)) if exclude == "history" else []
    width = min(k + len(dropped), len(catalog) - 2)
    rankings, levels = reader.lookup_batch_with_levels(np.asarray([context], dtype=np.int64), width)
    ids, scores = rankings.ids[0], rankings.scores[0]
    keep = (ids >= 0) & ~np.isin(ids, dropped)
    ids, scores = ids[keep][:k], scores[keep][:k]
    return Recommendation(
        items=[str(i) for i in items], unknown_items=unknown, history=history, context=context,
        clusters=[int(c) for c in ids], scores=[float(s) for s in scores],
        descriptions=[catalog.description(int(c)) for c in ids], level=LEVELS[int(levels[0])],
        excluded=dropped,
    )


__all__ = ["Exclude", "Recommendation", "cluster_history", "recommend"]
