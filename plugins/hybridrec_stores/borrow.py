"""Similarity-weighted evidence borrowing for contexts with too little support of their own.

A *donor* is a context whose exact support in the window reaches ``min_support``; every other
ordered pair of the catalog is a *recipient*. For each recipient the nearest donors (by context
embedding; Annoy or exact) lend their top successors:

* ``support(s) = sum_j w_j * count_j(s) / sum_j w_j`` and likewise ``score(s)`` over the
  recipient's neighbours ``j`` with weight ``w_j = similarity_j`` (neighbours with similarity at
  or below ``min_similarity`` are ignored). This is a similarity-weighted *average*, so a
  borrowed support is on the scale of one context's count;
* successors that are in the recipient's own context are dropped (evidence stays novel);
* ``source`` is the most similar neighbour that observed ``s``, ``similarity`` its similarity,
  ``last_seen`` the latest observation among the lending neighbours;
* a recipient's own (exact) items are kept and compete with borrowed ones on score; a successor
  that is both keeps only its exact item.
"""

from __future__ import annotations

import numpy as np

from hybridrec_stores.stats import SuccessorTable, segment_starts, top_per_group


def all_pair_keys(n_clusters: int) -> np.ndarray:
    """Sorted keys ``c1 * n + c2`` of every ordered pair with ``c1 != c2``."""
    keys = np.arange(n_clusters * n_clusters, dtype=np.int64)
    return keys[keys // n_clusters != keys % n_clusters]


def support_of(table: SuccessorTable, keys: np.ndarray) -> np.ndarray:
    """Exact support of each context key (0 where the table has none)."""
    if table.keys.size == 0:
        return np.zeros(keys.shape, dtype=np.int64)
    pos = np.minimum(np.searchsorted(table.keys, keys), table.keys.size - 1)
    return np.where(table.keys[pos] == keys, table.context_support[pos], 0)


def _expand_ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ranges ``[starts[i], starts[i] + lengths[i])``: (owner ``i``, position) per element."""
    owner = np.repeat(np.arange(starts.size), lengths)
    within = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, np.repeat(starts, lengths) + within


def items_of(table: SuccessorTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row number in ``rows``, item position) for every item of table rows ``rows``."""
    starts = table.offsets[rows]
    return _expand_ranges(starts, table.offsets[rows + 1] - starts)


def borrow(
    exact: SuccessorTable,
    donor_rows: np.ndarray,
    recipient_keys: np.ndarray,
    neighbour: np.ndarray,
    similarity: np.ndarray,
    *,
    depth: int,
    min_similarity: float,
) -> SuccessorTable:
    """Evidence for ``recipient_keys`` (sorted) from their neighbours (see the module docstring).

    ``donor_rows`` maps an index position to its row in ``exact``; ``neighbour`` and
    ``similarity`` are ``(len(recipient_keys), k)`` from a :class:`NeighbourIndex` over donors.
    """
    n = exact.n_clusters
    n_rec = int(recipient_keys.size)
    valid = (neighbour >= 0) & np.isfinite(similarity) & (similarity > min_similarity)
    weight = np.where(valid, similarity, 0.0).astype(np.float64)
    total = weight.sum(axis=1)

    rec, col = np.nonzero(valid)  # row-major: recipients in order, neighbours best first
    table_rows = donor_rows[neighbour[rec, col]]
    pair, item = items_of(exact, table_rows)
    r = rec[pair]
    s = exact.cluster[item].astype(np.int64)
    c1, c2 = recipient_keys[r] // n, recipient_keys[r] % n
    novel = (s != c1) & (s != c2)
    pair, item, r, s = pair[novel], item[novel], r[novel], s[novel]
    w = weight[rec[pair], col[pair]]

    # the neighbour column breaks ties, so the first row of a group is the nearest lender
    k = max(int(neighbour.shape[1]), 1)
    group = r * n + s
    if (n_rec + 1) * n * k < 2**62:
        order = np.argsort(group * k + col[pair])
    else:
        order = np.argsort(group, kind="stable")
    group = group[order]
    starts = segment_starts(group)
    b_support = np.add.reduceat((w * exact.support[item])[order], starts) if starts.size else w
    b_score = np.add.reduceat((w * exact.score[item])[order], starts) if starts.size else w
    b_seen = (
        np.maximum.reduceat(exact.last_seen[item][order], starts) if starts.size else group
    )
    first = order[starts]
    b_rec = r[first]
    b_cluster = s[first]
    b_source = exact.keys[table_rows[pair[first]]]
    b_similarity = similarity[rec[pair[first]], col[pair[first]]]
    b_support = b_support / total[b_rec]
    b_score = b_score / total[b_rec]

    # the recipients' own exact items (contexts seen in the window below min_support)
    if exact.keys.size:
        own_pos = np.minimum(np.searchsorted(exact.keys, recipient_keys), exact.keys.size - 1)
        own_rec = np.flatnonzero(exact.keys[own_pos] == recipient_keys)
    else:
        own_pos = own_rec = np.zeros(0, dtype=np.int64)
    o_owner, o_item = items_of(exact, own_pos[own_rec])
    o_rec = own_rec[o_owner]
    o_cluster = exact.cluster[o_item].astype(np.int64)
    duplicate = np.isin(b_rec * n + b_cluster, o_rec * n + o_cluster)
    keep_b = ~duplicate

    rec_all = np.concatenate([o_rec, b_rec[keep_b]])
    cluster = np.concatenate([o_cluster, b_cluster[keep_b]])
    support = np.concatenate([exact.support[o_item], b_support[keep_b]])
    score = np.concatenate([exact.score[o_item], b_score[keep_b]])
    last_seen = np.concatenate([exact.last_seen[o_item], b_seen[keep_b]])
    provenance = np.concatenate(
        [np.zeros(o_rec.size, dtype=np.int8), np.ones(int(keep_b.sum()), dtype=np.int8)]
    )
    source = np.concatenate([np.full(o_rec.size, -1, dtype=np.int64), b_source[keep_b]])
    sim = np.concatenate([np.ones(o_rec.size, dtype=np.float32), b_similarity[keep_b]])

    # two sorted runs: a stable sort merges them in linear time, keeping exact items first
    grouped = np.argsort(rec_all, kind="stable")
    best = top_per_group(
        rec_all[grouped], depth, score[grouped], support[grouped], last_seen[grouped],
        cluster[grouped], provenance[grouped],
    )
    keep = grouped[best]
    kept_rec = rec_all[keep]
    present = np.unique(kept_rec)
    offsets = np.searchsorted(kept_rec, np.r_[present, n_rec])
    context_support = support_of(exact, recipient_keys[present])
    return SuccessorTable(
        n_clusters=n,
        keys=recipient_keys[present],
        offsets=np.asarray(offsets, dtype=np.int64),
        context_support=context_support.astype(np.int64),
        cluster=cluster[keep].astype(np.int32),
        support=support[keep].astype(np.float64),
        score=score[keep].astype(np.float64),
        last_seen=last_seen[keep].astype(np.int64),
        provenance=provenance[keep],
        source=source[keep],
        similarity=sim[keep].astype(np.float32),
    )


def merge_disjoint(a: SuccessorTable, b: SuccessorTable) -> SuccessorTable:
    """One table holding the rows of ``a`` and ``b`` (their key sets must be disjoint)."""
    keys = np.concatenate([a.keys, b.keys])
    order = np.argsort(keys, kind="stable")
    la, lb = a.lengths(), b.lengths()
    starts = np.concatenate([a.offsets[:-1], b.offsets[:-1] + a.n_items])
    lengths = np.concatenate([la, lb])
    _, item = _expand_ranges(starts[order], lengths[order])
    offsets = np.r_[0, np.cumsum(lengths[order])].astype(np.int64)

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(a, name), getattr(b, name)])[item]

    return SuccessorTable(
        n_clusters=a.n_clusters,
        keys=keys[order],
        offsets=offsets,
        context_support=np.concatenate([a.context_support, b.context_support])[order],
        cluster=cat("cluster"),
        support=cat("support"),
        score=cat("score"),
        last_seen=cat("last_seen"),
        provenance=cat("provenance"),
        source=cat("source"),
        similarity=cat("similarity"),
    )


def select_rows(table: SuccessorTable, rows: np.ndarray) -> SuccessorTable:
    """The sub-table of ``rows`` (sorted row numbers)."""
    _, item = items_of(table, rows)
    lengths = table.offsets[rows + 1] - table.offsets[rows]
    return SuccessorTable(
        n_clusters=table.n_clusters,
        keys=table.keys[rows],
        offsets=np.r_[0, np.cumsum(lengths)].astype(np.int64),
        context_support=table.context_support[rows],
        cluster=table.cluster[item],
        support=table.support[item],
        score=table.score[item],
        last_seen=table.last_seen[item],
        provenance=table.provenance[item],
        source=table.source[item],
        similarity=table.similarity[item],
    )
