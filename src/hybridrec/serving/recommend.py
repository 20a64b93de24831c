"""From a user's recent items to recommended interest clusters, through a served table.

The table answers for a context ``(c1, c2)``: the user's last two distinct interest clusters.
:func:`recommend` builds that context as the protocol does (docs/protocol.md): the items are
mapped to clusters (items the workspace has never seen are skipped and reported), consecutive
repeats are collapsed, and the last two entries are the context. It then looks the context up
and, by default, drops every cluster already in the user's history: the paper recommends the
user's next *novel* interest. A wider list is read so that ``k`` clusters remain after the drop.
A user with fewer than two known clusters gets the table's backoff (see :func:`recommend`).
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


class BadItems(HybridrecError):
    """The items cannot support a recommendation (``k`` below 1, or a table without backoff
    lists for a user with fewer than two known clusters)."""


class Recommendation(BaseModel):
    """What :func:`recommend` serves for one user."""

    model_config = ConfigDict(extra="forbid")

    items: list[str]
    unknown_items: list[str]
    history: list[int]
    context: list[int]
    clusters: list[int]
    scores: list[float]
    descriptions: list[str]
    level: str
    excluded: list[int]
    #: with ``top_items``: each recommended cluster's most popular items
    popular_items: dict[int, list[str]] | None = None


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
    ``"context"`` only the context's clusters (what the table never serves anyway).

    With fewer than two distinct known clusters there is no context for the table: the user is
    served the table's own backoff, the successors of their one cluster (level ``last``) or, with
    none known, the most popular clusters (``popularity``), as a lookup of an unknown pair is."""
    if k < 1:
        raise BadItems(f"k must be at least 1, got {k}")
    history, unknown = cluster_history(items, item_cluster)
    context = history[-2:]
    dropped = sorted(set(history) - set(context)) if exclude == "history" else []
    if len(context) == 2:
        width = min(k + len(dropped), len(catalog) - 2)
        rankings, levels = reader.lookup_batch_with_levels(np.asarray([context], dtype=np.int64), width)
        ids, scores, level = rankings.ids[0], rankings.scores[0], LEVELS[int(levels[0])]
    else:
        backoff = reader.backoff
        if backoff is None:
            raise BadItems(
                "a recommendation needs items from at least two distinct interest clusters with "
                f"this table backend (it keeps no backoff lists); got {len(history)}")
        if context:
            ids, scores, level = backoff.by_last[context[-1]], backoff.by_last_scores[context[-1]], "last"
            if not (ids >= 0).any():
                ids, scores, level = backoff.popular, backoff.popular_scores, "popularity"
        else:
            ids, scores, level = backoff.popular, backoff.popular_scores, "popularity"
    drop = {*dropped, *context}
    pairs = [(int(c), float(x)) for c, x in zip(ids.tolist(), scores.tolist(), strict=True)
             if c >= 0 and c not in drop][:k]
    ids = np.asarray([c for c, _ in pairs], dtype=np.int64)
    scores = np.asarray([x for _, x in pairs], dtype=np.float64)
    return Recommendation(
        items=[str(i) for i in items], unknown_items=unknown, history=history, context=context,
        clusters=[int(c) for c in ids], scores=[float(x) for x in scores],
        descriptions=[catalog.description(int(c)) for c in ids], level=level, excluded=dropped,
    )


__all__ = ["BadItems", "Exclude", "Recommendation", "cluster_history", "recommend"]
