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

**Described cluster-token form** (a pretrained tokenizer extended with one token per cluster,
see :func:`hybridrec_hf.models.add_template_tokens`): the text form's words with each cluster's
token written right after its description, so the model reads what the cluster means and the
token it answers with::

    Recent interests: <description c1> <|c{c1}|>; <description c2> <|c{c2}|>.
    Evidence: people then chose <description e> <|c{e}|> (seen 12 times, 3 days ago).
    Next interest:

followed by the target ``<|c{c3}|><eos>`` (the tokenizer's own end-of-sequence token). Several
evidence items are separated by ``;``; with evidence but nothing retrieved it reads
``Evidence: none.``; a borrowed item adds ``, from similar interests``. Prompts are assembled
from pieces tokenised once (each description with a leading space), so the ids do not depend on
how a tokenizer would merge across a cluster token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

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
    """Left-padded prompt ids ``(n, L)`` and each row's true length; the rerank form adds
    ``features`` ``(n, L, F)``, numeric evidence per position (zero where there is none)."""

    ids: np.ndarray
    lengths: np.ndarray
    features: np.ndarray | None = None

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


class _ClusterVocabulary:
    """What the cluster-token forms share: one token per cluster, the special tokens, and the
    answer ``<|c{c3}|> <|eos|>``; a form adds its own template tokens (``extra``)."""

    form = "cluster"

    def __init__(
        self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int, extra: list[str]
    ) -> None:
        vocab: dict[str, int] = tokenizer.get_vocab()
        needed = [cluster_token(c.id) for c in catalog.clusters] + [EOS, ANS, NOEV, PAD] + extra
        missing = [t for t in needed if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks {self.form}-template tokens, e.g. {missing[:3]}")
        self.vocab = vocab
        self.catalog = catalog
        self.evidence_items = evidence_items
        self.cluster_ids = np.array([vocab[cluster_token(c.id)] for c in catalog.clusters], dtype=np.int64)
        self.eos_id, self.ans_id, self.noev_id, self.pad_id = (
            vocab[EOS], vocab[ANS], vocab[NOEV], vocab[PAD],
        )
        self._id_to_text: dict[int, str] = {v: k for k, v in vocab.items()}
        for c in catalog.clusters:
            self._id_to_text[int(self.cluster_ids[c.id])] = c.description

    def target_ids(self) -> list[list[int]]:
        return [[int(t), self.eos_id] for t in self.cluster_ids]

    def single_token_ids(self) -> np.ndarray | None:
        return self.cluster_ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(self._id_to_text.get(int(i), "") for i in ids).strip()


class ClusterTokenCodec(_ClusterVocabulary):
    """The cluster-token form of the template (see the module docstring); fully vectorised."""

    kind = "cluster_tokens"

    def __init__(self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int) -> None:
        super().__init__(tokenizer, catalog, evidence_items, all_meta_tokens())
        self.meta_ids = np.array(
            [self.vocab[t] for t in all_meta_tokens()], dtype=np.int64
        ).reshape(len(PROVENANCES), N_RECENCY, N_SUPPORT)

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



def _age_phrase(days: float | None) -> str:
    if days is None:
        return "at an unknown time"
    whole = int(days)
    if whole <= 0:
        return "today"
    return "1 day ago" if whole == 1 else f"{whole} days ago"


def evidence_notes(
    evidence: EvidenceBatch, row: int, as_of: np.ndarray | None, evidence_items: int
) -> list[tuple[int, str]]:
    """``(cluster, " (seen N times, D days ago[, from similar interests])")`` for each filled
    evidence item of ``row``, in order: the phrase every text-rendering template shows."""
    names = {v: k for k, v in PROVENANCE_CODES.items()}
    notes: list[tuple[int, str]] = []
    for j in range(min(evidence_items, evidence.width)):
        cluster = int(evidence.cluster[row, j])
        if cluster < 0:
            continue
        seen = int(evidence.last_seen[row, j])
        age = None if as_of is None or seen < 0 else max(0.0, (int(as_of[row]) - seen) / 86400.0)
        support = float(evidence.support[row, j])
        times = "1 time" if support == 1 else f"{support:.3g} times"
        origin = ", from similar interests" if names[int(evidence.provenance[row, j])] != "exact" else ""
        notes.append((cluster, f" (seen {times}, {_age_phrase(age)}{origin})"))
    return notes


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
        items = [f"{catalog.description(cluster)}{note}"
                 for cluster, note in evidence_notes(evidence, row, as_of, evidence_items)]
        body = "; ".join(items) if items else "none"
        lines.append(f"Evidence: after these interests people recently moved to {body}.")
    lines.append("Next interest:")
    return "\n".join(lines)


class _TokenizerCodec:
    """What every codec over a pretrained tokenizer holds: the tokenizer, catalog and evidence
    width, and its end-of-sequence and padding ids (padding falls back to end-of-sequence)."""

    tokenizer: Any
    catalog: ClusterCatalog
    evidence_items: int
    eos_id: int
    pad_id: int

    def __init__(self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no end-of-sequence token")
        self.tokenizer = tokenizer
        self.catalog = catalog
        self.evidence_items = evidence_items
        self.eos_id = int(tokenizer.eos_token_id)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else self.eos_id


class TextCodec(_TokenizerCodec):
    """The text form of the template, for any tokenizer (candidates may span many tokens)."""

    kind = "text"

    def __init__(self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int) -> None:
        super().__init__(tokenizer, catalog, evidence_items)
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


class DescribedClusterCodec(_TokenizerCodec):
    """The described cluster-token form (see the module docstring): natural-language prompts for
    a pretrained tokenizer extended with one token per cluster; one token per answer, so a single
    forward pass scores every cluster."""

    kind = "described_cluster_tokens"

    def __init__(self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int) -> None:
        super().__init__(tokenizer, catalog, evidence_items)
        vocab: dict[str, int] = tokenizer.get_vocab()
        missing = [cluster_token(c.id) for c in catalog.clusters if cluster_token(c.id) not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks cluster tokens, e.g. {missing[:3]}")
        self.cluster_ids = np.array([vocab[cluster_token(c.id)] for c in catalog.clusters], dtype=np.int64)
        # each cluster as it appears in a prompt: its description (leading space) then its token
        self._described = [
            [*self._ids(" " + c.description), int(self.cluster_ids[c.id])] for c in catalog.clusters
        ]
        self._head = self._ids("Recent interests:")
        self._sep = self._ids(";")
        self._stop = self._ids(".")
        self._evidence_head = self._ids("\nEvidence: people then chose")
        self._evidence_none = self._ids("\nEvidence: none.")
        self._tail = self._ids("\nNext interest:")
        self._phrases: dict[str, list[int]] = {}
        self._id_to_cluster = {int(t): i for i, t in enumerate(self.cluster_ids)}

    def _ids(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def _phrase(self, text: str) -> list[int]:
        ids = self._phrases.get(text)
        if ids is None:
            ids = self._phrases[text] = self._ids(text)
        return ids

    def _evidence_part(
        self, evidence: EvidenceBatch, row: int, when: np.ndarray | None
    ) -> list[int]:
        items = [self._described[cluster] + self._phrase(note)
                 for cluster, note in evidence_notes(evidence, row, when, self.evidence_items)]
        if not items:
            return list(self._evidence_none)
        out = list(self._evidence_head)
        for i, item in enumerate(items):
            out += (self._sep if i else []) + item
        return out + self._stop

    def encode_prompts(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts:
        when = evidence_as_of(evidence, as_of) if evidence is not None else None
        use_evidence = evidence is not None and self.evidence_items > 0
        rows: list[list[int]] = []
        for i in range(contexts.shape[0]):
            row = list(self._head)
            for j, cluster in enumerate(contexts[i]):
                row += (self._sep if j else []) + self._described[int(cluster)]
            row += self._stop
            if use_evidence:
                assert evidence is not None
                row += self._evidence_part(evidence, i, when)
            rows.append(row + self._tail)
        return _left_pad(rows, self.pad_id)

    def target_ids(self) -> list[list[int]]:
        return [[int(t), self.eos_id] for t in self.cluster_ids]

    def single_token_ids(self) -> np.ndarray | None:
        return self.cluster_ids

    def decode(self, ids: list[int]) -> str:
        parts: list[str] = []
        pending: list[int] = []
        for t in ids:
            cluster = self._id_to_cluster.get(int(t))
            if cluster is None:
                pending.append(int(t))
                continue
            if pending:
                parts.append(str(self.tokenizer.decode(pending, skip_special_tokens=True)))
                pending = []
            parts.append(self.catalog.description(cluster))
        if pending:
            parts.append(str(self.tokenizer.decode(pending, skip_special_tokens=True)))
        return " ".join(p.strip() for p in parts if p.strip())


# -- the re-ranking form -----------------------------------------------------------------------

#: share buckets (an item's share of a successor distribution): 0 no item, 1 share 0, then
#: edges 1%, 2%, 3.5%, 5%, 7.5%, 10%, 15%, 20%, 30%, 45%.
RERANK_SHARE_EDGES: tuple[float, ...] = (0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.45)
#: pair-count buckets of an item: 0, 1, 2-3, 4-7, ..., 64 or more.
RERANK_COUNT_EDGES: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)
#: context-support buckets (transitions of the exact context): 0, 1-2, 3-9, ..., 1000 or more.
RERANK_SUPPORT_EDGES: tuple[float, ...] = (1, 3, 10, 30, 100, 300, 1000)
#: the evidence features of a candidate slot, each a bucket token: the item's share of the
#: context's pair successors, of its last cluster's, of its first cluster's, of all successors;
#: its pair count; the context's pair support.
RERANK_FEATURES: tuple[tuple[str, int], ...] = (
    ("pair", len(RERANK_SHARE_EDGES) + 2),
    ("last", len(RERANK_SHARE_EDGES) + 2),
    ("first", len(RERANK_SHARE_EDGES) + 2),
    ("pop", len(RERANK_SHARE_EDGES) + 2),
    ("count", len(RERANK_COUNT_EDGES) + 1),
    ("support", len(RERANK_SUPPORT_EDGES) + 1),
)
#: The numeric evidence of a candidate slot (``RerankCodec(numeric=True)``): each value is mapped
#: by a fixed affine map ``(x - center) / scale`` (the same evidence always gives the same input,
#: in training and serving; the constants put ML-1M's values in a unit range, any dataset's
#: values stay finite). Shares are floored at 1e-4 before the log.
RERANK_NUMERIC: tuple[tuple[str, float, float], ...] = (
    ("log1p pair count", 0.5, 1.0),
    ("pair share", 0.05, 0.15),
    ("log last-cluster share", -4.5, 2.5),
    ("log first-cluster share", -4.5, 2.5),
    ("log popularity share", -4.5, 1.5),
    ("log1p context support", 2.0, 1.5),
    ("log1p estimator score", 2.0, 1.0),
)
#: The recent-window evidence of a candidate slot (``RerankCodec(recent=True)``), appended to
#: :data:`RERANK_NUMERIC`: the same counts and shares over the knowledge's last days
#: (:attr:`hybridrec.types.EvidenceBatch.recent`), by the same kind of fixed affine maps.
RERANK_NUMERIC_RECENT: tuple[tuple[str, float, float], ...] = (
    ("log1p recent pair count", 0.3, 1.0),
    ("recent pair share", 0.05, 0.15),
    ("log recent last-cluster share", -4.5, 2.5),
    ("log recent first-cluster share", -4.5, 2.5),
    ("log recent popularity share", -4.5, 1.5),
    ("log1p recent context support", 1.0, 1.5),
)
MAX_SLOTS = 16
FIRST, SECOND = "<|first|>", "<|second|>"


def slot_token(j: int) -> str:
    return f"<|slot{j}|>"


def feature_token(name: str, bucket: int) -> str:
    return f"<|f:{name}:{bucket}|>"


def rerank_tokens() -> list[str]:
    """Template tokens of the re-ranking form (added to the tiny vocabulary when it is used)."""
    tokens = [FIRST, SECOND] + [slot_token(j) for j in range(MAX_SLOTS)]
    return tokens + [feature_token(name, b) for name, size in RERANK_FEATURES for b in range(size)]


def _share_buckets(share: np.ndarray, present: np.ndarray) -> np.ndarray:
    buckets = np.searchsorted(np.asarray(RERANK_SHARE_EDGES), share, side="right") + 1
    return np.where(present, np.where(share > 0, buckets, 1), 0).astype(np.int64)


class RerankCodec(_ClusterVocabulary):
    """The re-ranking form: the model re-ranks the evidence's candidates (retrieve-then-rerank).

    A prompt has one *position* per context cluster, one per candidate slot and one answer cue;
    each position carries ``channels`` tokens whose embeddings are summed (as BERT sums token,
    segment and position embeddings), so the ids are ``(n, positions, channels)``::

        [<|c{c1}|> + <|first|>] [<|c{c2}|> + <|second|>]
        [<|c{e_j}|> + <|slot{j}|> + <|f:pair:b|> + <|f:last:b|> + <|f:first:b|> + <|f:pop:b|>
         + <|f:count:b|> + <|f:support:b|>]  for j < evidence_items
        [<|ans|>]

    The evidence must carry ``shares`` and ``context_support`` (a knowledge store of granularity
    ``backoff``, and the ``lora`` option ``evidence_ranking="backoff"`` for training prompts).
    Without evidence the prompt is the two context positions and the cue.

    The answer is ``<|slot{j}|>`` when the next cluster is the ``j``-th candidate, else its
    cluster token, then ``<|eos|>``. A cluster's score is the probability of its cluster token
    plus, when it is a candidate, of its slot token, so one forward pass ranks the candidates
    and every other cluster.

    ``readout`` says where the slot tokens' logits come from. ``"answer"``: the answer cue's
    position, like every other answer token, so one position must compare all candidates through
    attention. ``"slots"``: slot ``j``'s logit is read at slot ``j``'s own position (the logit of
    ``<|ans|>`` there) and replaces ``<|slot{j}|>``'s logit at the answer position; the answer
    distribution is still one softmax over the slot and cluster tokens, but each candidate is
    scored where its evidence is, which is how a per-candidate scorer learns to weigh evidence
    (an empty slot's logit is ``-inf``).

    ``numeric`` adds the slot's evidence as numbers (:data:`RERANK_NUMERIC`: its log pair count,
    pair share, log shares of the last cluster's, first cluster's and all successors, the
    context's log support and the estimator's log score), in :attr:`EncodedPrompts.features`;
    the generator adds a fixed projection of them to the slot's input embedding. The buckets
    only say which of a dozen ranges a value falls in; the numbers let the model weigh
    candidates whose evidence falls in the same bucket.

    ``recent`` (with ``numeric``) appends the same evidence over the knowledge's recent window
    (:data:`RERANK_NUMERIC_RECENT`, from ``EvidenceBatch.recent``), so the model can weigh what
    changed lately against all of history; the evidence must carry it (the store's and the
    fine-tuner's ``recent_days``).

    The codec ``kind`` names the readout and the numeric evidence, so an adapter trained with one
    form is refused by a generator with another.
    """

    form = "rerank"

    def __init__(
        self, tokenizer: Any, catalog: ClusterCatalog, evidence_items: int,
        readout: Literal["answer", "slots"] = "answer", numeric: bool = False,
        recent: bool = False,
    ) -> None:
        if recent and not numeric:
            raise ValueError("the rerank template renders recent evidence as numbers: set rerank_numeric")
        if not 1 <= evidence_items <= MAX_SLOTS:
            raise ValueError(f"the rerank template needs 1 to {MAX_SLOTS} evidence_items, got {evidence_items}")
        if readout not in ("answer", "slots"):
            raise ValueError(f"the rerank readout is 'answer' or 'slots', got {readout!r}")
        super().__init__(tokenizer, catalog, evidence_items, rerank_tokens())
        self.readout = readout
        self.numeric = numeric
        self.recent = recent
        self.numeric_features = (RERANK_NUMERIC + RERANK_NUMERIC_RECENT) if recent else (
            RERANK_NUMERIC if numeric else ()
        )
        self.kind = (
            "rerank" + ("-slots" if readout == "slots" else "") + ("-numeric" if numeric else "")
            + ("-recent" if recent else "")
        )
        vocab = self.vocab
        self.channels = 2 + len(RERANK_FEATURES)
        self.first_id, self.second_id = vocab[FIRST], vocab[SECOND]
        self.slot_ids = np.array([vocab[slot_token(j)] for j in range(evidence_items)], dtype=np.int64)
        self.feature_ids = [
            np.array([vocab[feature_token(name, b)] for b in range(size)], dtype=np.int64)
            for name, size in RERANK_FEATURES
        ]

    @staticmethod
    def supports(tokenizer: Any, catalog: ClusterCatalog) -> bool:
        vocab = tokenizer.get_vocab()
        return ClusterTokenCodec.supports(tokenizer, catalog) and all(t in vocab for t in rerank_tokens())

    def candidates(self, evidence: EvidenceBatch | None, n: int) -> np.ndarray:
        """``(n, evidence_items)`` candidate cluster per slot (``-1``: empty slot)."""
        out = np.full((n, self.evidence_items), -1, dtype=np.int64)
        if evidence is not None:
            width = min(self.evidence_items, evidence.width)
            out[:, :width] = evidence.cluster[:, :width]
        return out

    def encode_prompts(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts:
        n, k = contexts.shape
        m = self.evidence_items if evidence is not None else 0
        ids = np.full((n, k + m + 1, self.channels), self.pad_id, dtype=np.int64)
        ids[:, :k, 0] = self.cluster_ids[contexts]
        ids[:, :k, 1] = self.first_id
        ids[:, k - 1, 1] = self.second_id
        ids[:, -1, 0] = self.ans_id
        if evidence is not None:
            if evidence.shares is None or evidence.context_support is None:
                from hybridrec.errors import PluginError

                raise PluginError(
                    "the hf generator's rerank template reads count evidence: the knowledge "
                    "store's EvidenceBatch must fill shares (n, m, 3) and context_support (n,). "
                    "The built-in annoy and exact stores do with granularity = 'backoff' (with "
                    "the lora option evidence_ranking = 'backoff' for training prompts); a store "
                    "of your own must fill them, or serve a generator template that reads "
                    "clusters only ('auto', 'cluster_tokens', 'text')"
                )
            width = min(m, evidence.width)
            cand = self.candidates(evidence, n)
            present = cand >= 0
            support = np.zeros((n, m))
            support[:, :width] = evidence.support[:, :width]
            shares = np.zeros((n, m, 3))
            shares[:, :width] = evidence.shares[:, :width]
            total = np.asarray(evidence.context_support, dtype=np.float64)[:, None]
            pair_share = np.where(total > 0, support / np.where(total > 0, total, 1.0), 0.0)
            buckets = [
                _share_buckets(pair_share, present),
                _share_buckets(shares[..., 0], present),
                _share_buckets(shares[..., 1], present),
                _share_buckets(shares[..., 2], present),
                np.searchsorted(np.asarray(RERANK_COUNT_EDGES), support, side="right"),
                np.repeat(np.searchsorted(np.asarray(RERANK_SUPPORT_EDGES), total, side="right"), m, axis=1),
            ]
            body = ids[:, k : k + m]
            body[..., 0] = np.where(present, self.cluster_ids[np.maximum(cand, 0)], self.noev_id)
            body[..., 1] = self.slot_ids[None, :]
            for f, bucket in enumerate(buckets):
                body[..., 2 + f] = self.feature_ids[f][bucket]
            if self.numeric:
                score = np.zeros((n, m))
                score[:, :width] = evidence.score[:, :width]
                values = [
                    np.log1p(np.maximum(support, 0.0)),
                    pair_share,
                    np.log(np.maximum(shares[..., 0], 1e-4)),
                    np.log(np.maximum(shares[..., 1], 1e-4)),
                    np.log(np.maximum(shares[..., 2], 1e-4)),
                    np.repeat(np.log1p(np.maximum(total, 0.0)), m, axis=1),
                    np.log1p(np.maximum(score, 0.0)),
                ]
                if self.recent:
                    values += self._recent_values(evidence, n, m, width)
                features = np.zeros((n, ids.shape[1], len(self.numeric_features)), dtype=np.float32)
                for f, ((_, center, scale), value) in enumerate(zip(self.numeric_features, values, strict=True)):
                    features[:, k : k + m, f] = np.where(present, (value - center) / scale, 0.0)
                return EncodedPrompts(ids, np.full(n, ids.shape[1], dtype=np.int64), features)
        return EncodedPrompts(ids, np.full(n, ids.shape[1], dtype=np.int64))

    @staticmethod
    def _recent_values(evidence: EvidenceBatch, n: int, m: int, width: int) -> list[np.ndarray]:
        """The values of :data:`RERANK_NUMERIC_RECENT` for each slot, ``(n, m)`` each."""
        if evidence.recent is None:
            raise ValueError(
                "rerank_recent needs evidence with recent-window counts: set the knowledge "
                "store's recent_days (granularity 'backoff') and the lora option "
                "evidence_recent_days to the same number of days"
            )
        recent = np.zeros((n, m, evidence.recent.shape[2]))
        recent[:, :width] = evidence.recent[:, :width]
        count, total = np.maximum(recent[..., 0], 0.0), np.maximum(recent[..., 1], 0.0)
        share = np.where(total > 0, count / np.where(total > 0, total, 1.0), 0.0)
        return [
            np.log1p(count),
            share,
            np.log(np.maximum(recent[..., 2], 1e-4)),
            np.log(np.maximum(recent[..., 3], 1e-4)),
            np.log(np.maximum(recent[..., 4], 1e-4)),
            np.log1p(total),
        ]

    def answer_ids(self, labels: np.ndarray, evidence: EvidenceBatch | None) -> np.ndarray:
        """``(n, 2)`` answer of each row: its slot token if the label is a candidate, else its
        cluster token; then end-of-sequence."""
        labels = np.asarray(labels, dtype=np.int64)
        first = self.cluster_ids[labels]
        if evidence is not None:
            cand = self.candidates(evidence, labels.shape[0])
            hit = cand == labels[:, None]
            found = hit.any(axis=1)
            first = np.where(found, self.slot_ids[hit.argmax(axis=1)], first)
        return np.stack([first, np.full_like(first, self.eos_id)], axis=1)

    def slot_readout(self, ids: np.ndarray) -> dict[str, np.ndarray] | None:
        """With ``readout="slots"`` and a prompt with candidate slots: the slot positions
        ``(m,)`` of these ``(n, L, channels)`` ids, each position's slot token ``(m,)``, which
        slots are empty ``(n, m)`` and the token read at each slot (``<|ans|>``); else None."""
        if self.readout != "slots" or ids.ndim != 3 or ids.shape[0] == 0:
            return None
        positions = np.flatnonzero(np.isin(ids[0, :, 1], self.slot_ids))
        if positions.size == 0:
            return None
        return {
            "slot_positions": positions.astype(np.int64),
            "slot_tokens": ids[0, positions, 1].astype(np.int64),
            "slot_empty": ids[:, positions, 0] == self.noev_id,
            "readout_token": np.array([self.ans_id], dtype=np.int64),
        }

    def resolve_slots(self, ids: np.ndarray, evidence: EvidenceBatch | None) -> np.ndarray:
        """Generated ``(n, T)`` ids with every slot token replaced by its candidate's cluster
        token (an empty slot stays a slot token, which decodes to no description)."""
        out = np.asarray(ids).copy()
        cand = self.candidates(evidence, out.shape[0])
        for j, slot in enumerate(self.slot_ids):
            rows, cols = np.nonzero(out == slot)
            ok = cand[rows, j] >= 0
            out[rows[ok], cols[ok]] = self.cluster_ids[cand[rows[ok], j]]
        return out
