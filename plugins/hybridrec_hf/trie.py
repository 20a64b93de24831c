"""Constrained scoring over cluster descriptions with a prefix trie and tree attention.

Every cluster's answer (its description's tokens then end-of-sequence) is a path in a prefix trie.
All trie nodes are appended to the prompt *once* and scored in a single forward pass: a 4-D
attention mask lets each node see the prompt and its own ancestors only, and its position id is
``prompt length + depth - 1``, so each node's logits are exactly those of teacher forcing that one
candidate. The score of a cluster is the sum of the log-probabilities of its path's tokens
(including end-of-sequence, so a description that is a prefix of another is not favoured).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class CandidateTrie:
    """The prefix trie of ``targets`` (one token list per cluster, by cluster id)."""

    def __init__(self, targets: list[list[int]]) -> None:
        index: dict[tuple[int, int], int] = {}
        tokens: list[int] = []
        parent: list[int] = []
        depth: list[int] = []
        paths: list[list[int]] = []
        for target in targets:
            node, path = -1, []
            for token in target:
                key = (node, token)
                if key not in index:
                    index[key] = len(tokens)
                    tokens.append(token)
                    parent.append(node)
                    depth.append(1 if node < 0 else depth[node] + 1)
                node = index[key]
                path.append(node)
            paths.append(path)
        self.tokens = np.array(tokens, dtype=np.int64)
        self.parent = np.array(parent, dtype=np.int64)
        self.depth = np.array(depth, dtype=np.int64)
        n = len(tokens)
        self.ancestors = np.zeros((n, n), dtype=bool)
        for j in range(n):
            a = j
            while a >= 0:
                self.ancestors[j, a] = True
                a = int(self.parent[a])
        self.membership = np.zeros((len(targets), n), dtype=np.float32)
        for cluster, path in enumerate(paths):
            self.membership[cluster, path] = 1.0
        # positions whose logits are needed: the prompt's last token (-1) and every inner node
        self.inner = np.unique(self.parent)
        self.query_of_node = np.searchsorted(self.inner, self.parent)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def tree_scores(
    model: Any,
    trie: CandidateTrie,
    prompt_ids: np.ndarray,
    prompt_lengths: np.ndarray,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``(b, n_clusters)`` float32 log-probabilities of every candidate for each prompt row.

    ``prompt_ids`` is left-padded ``(b, P)``; ``prompt_lengths`` the true lengths.
    """
    b, p = prompt_ids.shape
    n = len(trie)
    total = p + n
    real = np.arange(p)[None, :] >= (p - prompt_lengths)[:, None]  # (b, P)
    allowed = np.zeros((b, total, total), dtype=bool)
    causal = np.tril(np.ones((p, p), dtype=bool))
    allowed[:, :p, :p] = causal[None] & real[:, None, :]
    allowed[:, p:, :p] = real[:, None, :]
    allowed[:, p:, p:] = trie.ancestors[None]
    allowed[:, np.arange(total), np.arange(total)] = True  # no fully masked row (padding)
    start = p - prompt_lengths
    positions = np.concatenate(
        [
            np.maximum(np.arange(p)[None, :] - start[:, None], 0),
            prompt_lengths[:, None] + trie.depth[None, :] - 1,
        ],
        axis=1,
    )
    ids = np.concatenate([prompt_ids, np.broadcast_to(trie.tokens, (b, n))], axis=1)
    mask = torch.zeros((b, 1, total, total), dtype=dtype, device=device)
    mask.masked_fill_(~torch.from_numpy(allowed).to(device)[:, None], torch.finfo(dtype).min)
    keep = np.where(trie.inner < 0, p - 1, p + trie.inner)
    out = model(
        input_ids=torch.from_numpy(ids).to(device),
        attention_mask=mask,
        position_ids=torch.from_numpy(positions).to(device),
        logits_to_keep=torch.from_numpy(keep).to(device),
        use_cache=False,
    )
    logprobs = torch.log_softmax(out.logits.float(), dim=-1)  # (b, Q, V)
    query = torch.from_numpy(trie.query_of_node).to(device)
    tokens = torch.from_numpy(trie.tokens).to(device)
    node_lp = logprobs[:, query, tokens]  # (b, N)
    membership = torch.from_numpy(trie.membership).to(device)
    return node_lp @ membership.T
