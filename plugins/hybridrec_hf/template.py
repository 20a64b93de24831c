"""The prompt template (versioned) and the two codecs that turn it into token ids.

``TEMPLATE_VERSION`` is recorded in every adapter manifest; a change to anything below that alters
the token ids of a prompt or a target must bump it, because adapters are trained on exact ids.

Template, version 1
-------------------
A prompt holds the context (the user's last ``k`` distinct clusters, oldest first) and, when
evidence is given, up to ``evidence_items`` retrieved successors, each with its *recency* (age
of its last observation relative to the evidence's as-of time) and *support* (how often it was
seen). The label never appears in a prompt. The answer is one cluster description followed by
the end-of-sequence token.

**Text form** (any tokenizer)::

    Recent interests: <description c1>; <description c2>.
    Evidence: after these interests people recently moved to <description e> (seen 12 times, 3 days ago).
    Next interest:

followed by the target `` <description c3><eos>``. Without evidence the ``Evidence:`` line is
absent; with evidence but nothing retrieved it reads ``Evidence: none.``; a borrowed item says
``(from similar interests)``.

**Cluster-token form** (a tokenizer with one token per cluster, such as the ``tiny`` preset's)::

    <|c{c1}|> <|c{c2}|> [<|c{e}|> <|ev:{provenance}:r{recency}:s{support}|>]*m <|ans|>

with the target ``<|c{c3}|> <|eos|>``. Evidence slots without an item hold ``<|noev|> <|noev|>``,
so every prompt of a batch has the same length (no padding in the hot path). ``recency`` and
``support`` are the bucket indices of :data:`RECENCY_EDGES_DAYS` and :data:`SUPPORT_EDGES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hybridrec.types import PROVENANCE_CODES, ClusterCatalog, EvidenceBatch

TEMPLATE_VERSION = "1"

#: recency buckets: age < 1 day, < 3, < 7, < 30, older; the last bucket is "unknown".
RECENCY_EDGES_DAYS: tuple[float, ...] = (1.0, 3.0, 7.0, 30.0)
N_RECENCY = len(RECENCY_EDGES_DAYS) + 2
#: support buckets: < 2, < 5, < 10, < 50, 50 or more.
SUPPORT_EDGES: tuple[float, ...] = (2.0, 5.0, 10.0, 50.0)
N_SUPPORT = len(SUPPORT_EDGES) + 1
PROVENANCES: tuple[str, ...] = tuple(sorted(PROVENANCE_CODES, key=PROVENANCE_CODES.__getitem__))

PAD, EOS, UNK, ANS, NOEV = "<|pad|>", "<|eos|>", "<|unk|>", "<|ans|>", "<|noev|>"


def cluster_token(cluster_id: int) -> str:
    return f"<|c{cluster_id}|>"


def evidence_meta_token(provenance: str, recency: int, support: int) -> str:
    return f"<|ev:{provenance}:r{recency}:s{support}|>"


def all_meta_tokens() -> list[str]:
    return [
        evidence_meta_token(p, r, s)
        for p in PROVENANCES
        for r in range(N_RECENCY)
        for s in range(N_SUPPORT)
    ]


def recency_buckets(last_seen: np.ndarray, as_of: np.ndarray | None) -> np.ndarray:
    """Bucket index per item; unknown (``last_seen < 0`` or no as-of time) is the last bucket."""
    unknown = N_RECENCY - 1
    if as_of is None:
        return np.full(last_seen.shape, unknown, dtype=np.int64)
    age_days = (as_of.reshape(-1, *([1] * (last_seen.ndim - 1))) - last_seen) / 86400.0
    buckets = np.searchsorted(np.asarray(RECENCY_EDGES_DAYS), np.maximum(age_days, 0.0), side="right")
    return np.where(last_seen >= 0, buckets, unknown).astype(np.int64)


def support_buckets(support: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(SUPPORT_EDGES), support, side="right").astype(np.int64)


def evidence_as_of(evidence: EvidenceBatch, as_of: np.ndarray | None) -> np.ndarray | None:
    """The per-row time recency is measured against: ``as_of`` if given, else the end of the
    evidence's snapshot window, else unknown (None)."""
    if as_of is not None:
        return np.asarray(as_of, dtype=np.int64)
    if evidence.window is not None:
        return np.full(len(evidence), evidence.window.end_ts, dtype=np.int64)
    return None


@dataclass(frozen=True)
class EncodedPrompts:
    """Left-padded prompt ids ``(n, L)`` and each row's true length."""

    ids: np.ndarray
    lengths: np.ndarray

    @property
    def padded(self) -> bool:
        return bool((self.lengths != self.ids.shape[1]).any())


class PromptCodec(Protocol):
    """Turns contexts (+ evidence) into prompt ids and clusters into target ids."""

    kind: str
    eos_id: int
    pad_id: int

    def encode_prompts(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts: ...

    def target_ids(self) -> list[list[int]]:
        """Token ids of every cluster's answer (description then end-of-sequence), by id."""
        ...

    def single_token_ids(self) -> np.ndarray | None:
        """One distinct token per cluster (by id) for single-forward scoring, or None."""
        ...

    def decode(self, ids: list[int]) -> str:
        """Generated ids (up to, excluding, end-of-sequence) back to text."""
        ...


def _left_pad(rows: list[list[int]], pad_id: int) -> EncodedPrompts:
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    width = int(lengths.max()) if len(rows) else 0
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = row
    return EncodedPrompts(ids, lengths)


class ClusterTokenCodec:
    """The cluster-token form of the template (see the module docstring); fully vectorised."""

    kind = "cluster_tokens"

    def __init__(self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int) -> None:
        vocab: dict[str, int] = tokenizer.get_vocab()
        needed = [cluster_token(c.id) for c in catalog.clusters] + [EOS, ANS, NOEV, PAD]
        needed += all_meta_tokens()
        missing = [t for t in needed if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks cluster-template tokens, e.g. {missing[:3]}")
        self.catalog = catalog
        self.evidence_items = evidence_items
        self.cluster_ids = np.array([vocab[cluster_token(c.id)] for c in catalog.clusters], dtype=np.int64)
        self.eos_id, self.ans_id, self.noev_id, self.pad_id = (
            vocab[EOS], vocab[ANS], vocab[NOEV], vocab[PAD],
        )
        self.meta_ids = np.array(
            [vocab[t] for t in all_meta_tokens()], dtype=np.int64
        ).reshape(len(PROVENANCES), N_RECENCY, N_SUPPORT)
        self._id_to_text: dict[int, str] = {v: k for k, v in vocab.items()}
        for c in catalog.clusters:
            self._id_to_text[int(self.cluster_ids[c.id])] = c.description

    @staticmethod
    def supports(tokenizer: Any, catalog: ClusterCatalog) -> bool:
        vocab = tokenizer.get_vocab()
        return all(cluster_token(c.id) in vocab for c in catalog.clusters) and ANS in vocab

    def encode_prompts(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts:
        n = contexts.shape[0]
        parts = [self.cluster_ids[contexts]]
        if evidence is not None and self.evidence_items > 0:
            m = self.evidence_items
            cluster = np.full((n, m), -1, dtype=np.int64)
            width = min(m, evidence.width)
            cluster[:, :width] = evidence.cluster[:, :width]
            support = np.zeros((n, m))
            support[:, :width] = evidence.support[:, :width]
            last_seen = np.full((n, m), -1, dtype=np.int64)
            last_seen[:, :width] = evidence.last_seen[:, :width]
            prov = np.zeros((n, m), dtype=np.int64)
            prov[:, :width] = evidence.provenance[:, :width]
            present = cluster >= 0
            recency = recency_buckets(last_seen, evidence_as_of(evidence, as_of))
            meta = self.meta_ids[prov, recency, support_buckets(support)]
            block = np.empty((n, 2 * m), dtype=np.int64)
            block[:, 0::2] = np.where(present, self.cluster_ids[np.maximum(cluster, 0)], self.noev_id)
            block[:, 1::2] = np.where(present, meta, self.noev_id)
            parts.append(block)
        parts.append(np.full((n, 1), self.ans_id, dtype=np.int64))
        ids = np.concatenate(parts, axis=1)
        return EncodedPrompts(ids, np.full(n, ids.shape[1], dtype=np.int64))

    def target_ids(self) -> list[list[int]]:
        return [[int(t), self.eos_id] for t in self.cluster_ids]

    def single_token_ids(self) -> np.ndarray | None:
        return self.cluster_ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(self._id_to_text.get(int(i), "") for i in ids).strip()


def _age_phrase(days: float | None) -> str:
    if days is None:
        return "at an unknown time"
    whole = int(days)
    if whole <= 0:
        return "today"
    return "1 day ago" if whole == 1 else f"{whole} days ago"


def render_text_prompt(
    catalog: ClusterCatalog,
    context: np.ndarray,
    evidence: EvidenceBatch | None,
    row: int,
    as_of: np.ndarray | None,
    evidence_items: int,
) -> str:
    """One prompt in the text form of the template."""
    described = "; ".join(catalog.description(int(c)) for c in context)
    lines = [f"Recent interests: {described}."]
    if evidence is not None and evidence_items > 0:
        items = []
        names = {v: k for k, v in PROVENANCE_CODES.items()}
        for j in range(min(evidence_items, evidence.width)):
            cluster = int(evidence.cluster[row, j])
            if cluster < 0:
                continue
            seen = int(evidence.last_seen[row, j])
            age = None if as_of is None or seen < 0 else max(0.0, (int(as_of[row]) - seen) / 86400.0)
            support = float(evidence.support[row, j])
            times = "1 time" if support == 1 else f"{support:.3g} times"
            borrowed = names[int(evidence.provenance[row, j])] != "exact"
            origin = ", from similar interests" if borrowed else ""
            items.append(f"{catalog.description(cluster)} (seen {times}, {_age_phrase(age)}{origin})")
        body = "; ".join(items) if items else "none"
        lines.append(f"Evidence: after these interests people recently moved to {body}.")
    lines.append("Next interest:")
    return "\n".join(lines)


class TextCodec:
    """The text form of the template, for any tokenizer (candidates may span many tokens)."""

    kind = "text"

    def __init__(self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no end-of-sequence token")
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.evidence_items = evidence_items
        self.eos_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id
        self._targets = [
            [int(t) for t in tokenizer(" " + c.description, add_special_tokens=False)["input_ids"]]
            + [self.eos_id]
            for c in catalog.clusters
        ]

    def encode_prompts(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts:
        when = evidence_as_of(evidence, as_of) if evidence is not None else None
        texts = [
            render_text_prompt(self.catalog, contexts[i], evidence, i, when, self.evidence_items)
            for i in range(contexts.shape[0])
        ]
        rows = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        return _left_pad([list(r) for r in rows], self.pad_id)

    def target_ids(self) -> list[list[int]]:
        return [list(t) for t in self._targets]

    def single_token_ids(self) -> np.ndarray | None:
        first = np.array([t[0] for t in self._targets], dtype=np.int64)
        return first if len(np.unique(first)) == len(first) else None

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True)).strip()
