"""Table generation with delta regeneration and de-duplication, over a ``TableExecutor``.

A table row is a deterministic function of ``(adapter, prompt)`` when the generator offers
:class:`~hybridrec.capabilities.PromptEncoder` (its contract). Two consequences, used by the
workspace update and by the backtest alike:

* **delta regeneration**: a regeneration that keeps the adapter re-ranks only the contexts whose
  prompt changed since the previous table (or that it did not hold) and copies every other row;
* **de-duplication**: contexts with identical prompts are ranked once.

Both are exact: the rows are those a full regeneration would write. A generator without the
capability is always ranked in full.

Two rules trade exactness for work (:class:`KeepRule`, from ``RegenerateTable.tolerance`` and
``max_row_age_days``):

* **material change**: a context whose prompt changed is still kept when its evidence moved at
  most ``tolerance`` from the evidence its row was ranked from (:func:`evidence_distance` of
  their :class:`EvidenceSignature`); the kept row keeps that signature, so small moves add up
  until the row is ranked again;
* **staleness bound**: a row whose evidence was last confirmed current (ranked, or found
  identical) more than ``max_age_days`` ago is ranked whatever would have kept it.

A regeneration restricted to some contexts (``RegenerateTable(contexts="observed")``) may also
**keep the served rows** of the contexts it does not rank (``fallback="previous"``,
:func:`with_kept_rows`): those rows are copied as they are, whatever adapter or evidence they were
ranked with, and are charged nothing. A kept row keeps its prompt digest when it was ranked by
the new table's adapter (so a later delta compares it exactly) and gets :data:`STALE_DIGEST`
otherwise (a later regeneration that wants it ranks it).

:func:`plan_table` decides what to rank (cheap: prompts are rendered, nothing is ranked), so the
cost model can price the plan before it runs; :func:`run_plan` ranks what the plan says through
the executor and assembles the rows in context order. :class:`TableRows` are the rows of a built
table with their prompt digests, stored next to a workspace table (``rows.npz``) so the next
update can compare prompts. :class:`PromptRows` is the backtest's per-adapter row store keyed by
prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hybridrec.capabilities import PromptEncoder, prompt_matrix
from hybridrec.generation import TableJob, batches
from hybridrec.interfaces import Generator, KnowledgeSnapshot, TableExecutor, snapshot_evidence
from hybridrec.types import EvidenceBatch, Rankings, RegenerateTable

ROWS_FILE = "rows.npz"
DIGEST_BYTES = 16
#: The digest of a kept row ranked by another adapter: it never equals a rendered prompt's
#: (a 16-byte BLAKE2b digest of all zeros has probability 2**-128).
STALE_DIGEST = np.zeros(DIGEST_BYTES, dtype=np.uint8)


def digest_prompts(prompts: np.ndarray) -> np.ndarray:
    """A ``(m, 16)`` ``uint8`` BLAKE2b digest of each row of the rendered ``prompts`` (token ids
    then the length, :func:`~hybridrec.capabilities.prompt_matrix`): the one prompt digest of
    delta regeneration, in a workspace and in the backtest."""
    rows = np.ascontiguousarray(prompts, dtype=np.int64)
    return np.frombuffer(
        b"".join(hashlib.blake2b(r.tobytes(), digest_size=DIGEST_BYTES).digest() for r in rows),
        dtype=np.uint8,
    ).reshape(-1, DIGEST_BYTES)


def prompt_digests(
    generator: Generator, contexts: np.ndarray, snapshot: KnowledgeSnapshot | None,
    *, batch_size: int = 4096, evidence_m: int | None = None, store: str | None = None,
) -> np.ndarray | None:
    """A ``(n, 16)`` ``uint8`` digest of each context's rendered prompt (with the snapshot's
    evidence, as the executor renders it), or None when the generator cannot render prompts."""
    return render_keys(generator, contexts, snapshot, batch_size=batch_size,
                       evidence_m=evidence_m, store=store)[0]


@dataclass
class EvidenceSignature:
    """What the material-change rule compares of each context's evidence: its candidate clusters
    (``(n, m)`` ``int32``, ``-1`` none); each candidate's weight in ``W`` channels (``(n, m, W)``
    ``float32``, each channel a distribution over the row's candidates or all 0): the store's
    score, clipped at 0, over the row's sum (uniform over the candidates when every score is 0),
    then, with recent-window evidence, the candidates' recent pair counts and recent shares of
    the last cluster's successors, each over its row's sum; and ``S`` support channels
    (``(n, S)`` ``float32``): the context's ``log1p`` support, then its ``log1p`` recent support.
    ``NaN`` weights mark a row whose evidence is unknown, which every comparison finds changed."""

    clusters: np.ndarray
    weights: np.ndarray
    support: np.ndarray

    def __len__(self) -> int:
        return int(self.clusters.shape[0])

    @classmethod
    def of(cls, evidence: EvidenceBatch | None, n: int) -> EvidenceSignature:
        """The signature of ``evidence`` for ``n`` contexts (None: prompts without evidence, an
        empty candidate set)."""
        if evidence is None:
            return cls(clusters=np.full((n, 1), -1, dtype=np.int32),
                       weights=np.zeros((n, 1, 1), dtype=np.float32),
                       support=np.zeros((n, 1), dtype=np.float32))
        clusters = np.asarray(evidence.cluster, dtype=np.int32)
        present = clusters >= 0

        def shares(values: np.ndarray, *, uniform: bool) -> np.ndarray:
            v = np.where(present, np.maximum(np.asarray(values, dtype=np.float64), 0.0), 0.0)
            total = v.sum(axis=1, keepdims=True)
            fallback = present / np.maximum(present.sum(axis=1, keepdims=True), 1) if uniform else 0.0
            return np.where(total > 0, v / np.where(total > 0, total, 1.0), fallback)

        def log_support(values: np.ndarray | None) -> np.ndarray:
            return (np.zeros(n) if values is None
                    else np.log1p(np.maximum(np.asarray(values, dtype=np.float64), 0.0)))

        channels = [shares(evidence.score, uniform=True)]
        supports = [log_support(evidence.context_support)]
        if evidence.recent is not None:
            channels += [shares(evidence.recent[..., 0], uniform=False),
                         shares(evidence.recent[..., 2], uniform=False)]
            supports.append(log_support(evidence.recent[:, 0, 1] if evidence.width else None))
        return cls(clusters=clusters, weights=np.stack(channels, axis=2).astype(np.float32),
                   support=np.stack(supports, axis=1).astype(np.float32))

    def take(self, rows: np.ndarray) -> EvidenceSignature:
        return EvidenceSignature(self.clusters[rows], self.weights[rows], self.support[rows])

    def comparable(self, other: EvidenceSignature) -> bool:
        """Whether the two have the same channels (evidence of the same kind)."""
        return (self.weights.shape[2:] == other.weights.shape[2:]
                and self.support.shape[1:] == other.support.shape[1:])

    def stale(self, mask: np.ndarray) -> EvidenceSignature:
        """A copy whose ``mask`` rows are unknown (changed for every later comparison)."""
        weights = self.weights.copy()
        weights[mask] = np.nan
        return EvidenceSignature(self.clusters, weights, self.support)

    def widened(self, m: int) -> EvidenceSignature:
        """The same rows padded to ``m`` candidates (no candidate, weight 0)."""
        have = int(self.clusters.shape[1])
        if have >= m:
            return self
        return EvidenceSignature(np.pad(self.clusters, ((0, 0), (0, m - have)), constant_values=-1),
                                 np.pad(self.weights, ((0, 0), (0, m - have), (0, 0))), self.support)

    @staticmethod
    def merged(mask: np.ndarray, a: EvidenceSignature, b: EvidenceSignature) -> EvidenceSignature:
        """Row ``i`` of ``a`` where ``mask[i]``, of ``b`` elsewhere (signatures of the same
        channels)."""
        m = max(a.clusters.shape[1], b.clusters.shape[1])
        a, b = a.widened(m), b.widened(m)
        return EvidenceSignature(np.where(mask[:, None], a.clusters, b.clusters),
                                 np.where(mask[:, None, None], a.weights, b.weights),
                                 np.where(mask[:, None], a.support, b.support))


def evidence_distance(a: EvidenceSignature, b: EvidenceSignature, *, chunk: int = 4096) -> np.ndarray:
    """How far each context's evidence moved from ``a`` to ``b`` (``(n,)`` ``float64``, in
    ``[0, inf]``): the largest, over the weight channels, of the total-variation distance between
    the two candidate distributions (half the L1 distance of the weights matched by cluster: a
    candidate that enters or leaves moves its weight, a reordering of near-equal candidates moves
    almost nothing) and, over the support channels, of the absolute change of the context's
    ``log1p`` support (a context with ten times the traffic is another context). ``inf`` where
    either row is unknown or the two do not have the same channels."""
    n = len(a)
    if len(b) != n:
        raise ValueError(f"signatures of {n} and {len(b)} contexts")
    if not a.comparable(b):
        return np.full(n, np.inf)
    m = max(a.clusters.shape[1], b.clusters.shape[1])
    a, b = a.widened(m), b.widened(m)
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, chunk):
        part = slice(lo, min(n, lo + chunk))
        ca, cb = a.clusters[part], b.clusters[part]
        wa, wb = a.weights[part].astype(np.float64), b.weights[part].astype(np.float64)
        match = (ca[:, :, None] == cb[:, None, :]) & (ca[:, :, None] >= 0)  # (n, m, m)
        overlap = (np.minimum(wa[:, :, None, :], wb[:, None, :, :]) * match[..., None]).sum(axis=(1, 2))
        tv = np.clip(0.5 * (wa.sum(axis=1) + wb.sum(axis=1)) - overlap, 0.0, 1.0)  # (n, W)
        support = np.abs(a.support[part].astype(np.float64) - b.support[part].astype(np.float64))
        dist = np.maximum(tv.max(axis=1), support.max(axis=1))
        unknown = np.isnan(wa).any(axis=(1, 2)) | np.isnan(wb).any(axis=(1, 2))
        out[part] = np.where(unknown, np.inf, dist)
    return out


def _concat(parts: list[EvidenceSignature]) -> EvidenceSignature:
    if not parts:
        return EvidenceSignature.of(None, 0)
    m = max(p.clusters.shape[1] for p in parts)
    parts = [p.widened(m) for p in parts]
    return EvidenceSignature(np.concatenate([p.clusters for p in parts]),
                             np.concatenate([p.weights for p in parts]),
                             np.concatenate([p.support for p in parts]))


def render_keys(
    generator: Generator | None, contexts: np.ndarray, snapshot: KnowledgeSnapshot | None, *,
    signature: bool = False, batch_size: int = 4096, evidence_m: int | None = None,
    store: str | None = None,
) -> tuple[np.ndarray | None, EvidenceSignature | None]:
    """``(digests, signature)`` of ``contexts`` in ``snapshot``, from one pass over their
    evidence (as the executor renders it): the ``(n, 16)`` prompt digests (None when
    ``generator`` renders no prompts, or is None) and, with ``signature``, the
    :class:`EvidenceSignature`."""
    encoder = generator if isinstance(generator, PromptEncoder) else None
    digests = None if encoder is None else np.zeros((contexts.shape[0], DIGEST_BYTES), dtype=np.uint8)
    parts: list[EvidenceSignature] = []
    if digests is not None or signature:
        for part in batches(int(contexts.shape[0]), batch_size):
            ctx = contexts[part]
            evidence = (snapshot_evidence(snapshot, ctx, evidence_m, store=store)
                        if snapshot is not None else None)
            if digests is not None:
                assert encoder is not None
                digests[part] = digest_prompts(prompt_matrix(encoder, ctx, evidence))
            if signature:
                parts.append(EvidenceSignature.of(evidence, int(ctx.shape[0])))
    return digests, (_concat(parts) if signature else None)


def signature_of(
    contexts: np.ndarray, snapshot: KnowledgeSnapshot | None, *, batch_size: int = 16_384,
    evidence_m: int | None = None, store: str | None = None,
) -> EvidenceSignature:
    """The :class:`EvidenceSignature` of each context's evidence in ``snapshot`` (as the
    executor renders it)."""
    sig = render_keys(None, contexts, snapshot, signature=True, batch_size=batch_size,
                      evidence_m=evidence_m, store=store)[1]
    assert sig is not None
    return sig


@dataclass(frozen=True)
class KeepRule:
    """What a regeneration that keeps the adapter may keep without ranking: a row whose evidence
    moved at most ``tolerance`` (:func:`evidence_distance`; 0: only an identical prompt), and
    no row confirmed current longer ago than ``max_age_days`` (None: no bound). See
    :class:`~hybridrec.types.RegenerateTable`."""

    tolerance: float = 0.0
    max_age_days: float | None = None

    @classmethod
    def of(cls, action: RegenerateTable, default: KeepRule | None = None) -> KeepRule:
        """The rule of ``action``: its own values, else ``default``'s (the pipeline's
        ``[serving]`` ``tolerance`` and ``max_row_age_days``)."""
        base = default or cls()
        return cls(
            tolerance=base.tolerance if action.tolerance is None else float(action.tolerance),
            max_age_days=base.max_age_days if action.max_row_age_days is None else action.max_row_age_days,
        )

    @property
    def material(self) -> bool:
        """Whether rows are compared by evidence (a signature is needed)."""
        return self.tolerance > 0


@dataclass
class TableRows:
    """The rows of a table: context keys ``c1 * n + c2`` (ascending), ids and scores (None: not
    materialised, the backtest's lazy rows), the prompt digest each row was ranked from (None:
    the generator renders no prompts), the :class:`EvidenceSignature` of the evidence it was
    ranked from (None: not recorded, a regeneration with ``tolerance`` 0) and when its evidence
    was last confirmed current (``verified_at``, Unix seconds; None: unknown, as old)."""

    adapter: str | None
    keys: np.ndarray
    ids: np.ndarray | None
    scores: np.ndarray | None
    digests: np.ndarray | None
    signature: EvidenceSignature | None = None
    verified_at: np.ndarray | None = None
    width: int = 0

    def __post_init__(self) -> None:
        if self.ids is not None:
            self.width = int(self.ids.shape[1])

    def save(self, folder: Path) -> Path:
        path = Path(folder) / ROWS_FILE
        if self.ids is None or self.scores is None:
            raise ValueError("only materialised rows are saved")
        arrays = {"keys": self.keys.astype(np.int64), "ids": self.ids.astype(np.int32),
                  "scores": self.scores.astype(np.float32),
                  "adapter": np.array("" if self.adapter is None else self.adapter)}
        if self.digests is not None:
            arrays["digests"] = self.digests
        if self.signature is not None:
            arrays["sig_clusters"] = self.signature.clusters
            arrays["sig_weights"] = self.signature.weights
            arrays["sig_support"] = self.signature.support
        if self.verified_at is not None:
            arrays["verified_at"] = self.verified_at.astype(np.float64)
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, folder: Path) -> TableRows | None:
        path = Path(folder) / ROWS_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            adapter = str(data["adapter"]) or None
            signature = None
            if "sig_clusters" in data:
                signature = EvidenceSignature(data["sig_clusters"], data["sig_weights"],
                                              data["sig_support"])
            return cls(adapter=adapter, keys=data["keys"], ids=data["ids"], scores=data["scores"],
                       digests=data.get("digests"), signature=signature,
                       verified_at=data.get("verified_at"))

    @staticmethod
    def load_verified_at(folder: Path) -> np.ndarray | None:
        """Only the rows' ``verified_at`` of a stored table (None: none recorded), without reading
        its rows."""
        path = Path(folder) / ROWS_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return data.get("verified_at")



#: Why each context of a :class:`TablePlan` was ranked or kept (``TablePlan.why``).
RANKED_NEW, RANKED_CHANGED, RANKED_STALE, COPIED_SAME, KEPT_CLOSE, KEPT_FALLBACK = range(6)
WHY: tuple[str, ...] = (
    "ranked: not in the previous table (or another adapter, or a full regeneration)",
    "ranked: its prompt changed (by more than the tolerance)",
    "ranked: its row was older than the staleness bound",
    "copied: the same prompt",
    "kept: its evidence moved within the tolerance",
    "kept: not ranked by a restricted regeneration (fallback 'previous')",
)
WHY_KEYS: tuple[str, ...] = ("new", "changed", "stale", "same", "close", "fallback")


@dataclass
class TablePlan:
    """What a regeneration ranks: ``rank`` indexes the contexts to rank (one per distinct new
    prompt); ``source[i]`` is the row of context ``i`` in ``previous`` (copied) or ``-1``;
    ``same_as[i]`` the context whose ranking context ``i`` shares (itself when ranked);
    ``why[i]`` why context ``i`` is ranked or copied (:data:`WHY`); ``kept`` marks the contexts
    whose served row is kept without being compared (the fallback of a restricted
    regeneration); ``delta`` whether unchanged prompts were copied; ``now`` the regeneration's
    time (Unix seconds) and ``signature`` the contexts' current evidence (None unless the rule
    is material)."""

    contexts: np.ndarray
    keys: np.ndarray
    digests: np.ndarray | None
    previous: TableRows | None
    source: np.ndarray
    rank: np.ndarray
    same_as: np.ndarray
    why: np.ndarray
    kept: np.ndarray | None = None
    delta: bool = False
    now: float = 0.0
    signature: EvidenceSignature | None = None
    rule: KeepRule = field(default_factory=KeepRule)

    @property
    def changed(self) -> int:
        """Contexts it ranks, before de-duplication (what a regeneration is charged)."""
        return int((self.source < 0).sum())

    @property
    def copied(self) -> int:
        """Rows copied from the previous table (unchanged prompts and kept rows)."""
        return int((self.source >= 0).sum())

    @property
    def n_kept(self) -> int:
        """Rows kept as the fallback of a restricted regeneration (a part of :attr:`copied`)."""
        return int((self.why == KEPT_FALLBACK).sum())

    def counts(self) -> dict[str, int]:
        """How many contexts were ranked or copied for each reason (:data:`WHY_KEYS`)."""
        got = np.bincount(self.why, minlength=len(WHY_KEYS))
        return {key: int(got[i]) for i, key in enumerate(WHY_KEYS)}

    def row_digests(self, adapter: str | None) -> np.ndarray | None:
        """The digest to store with each row of the new table of ``adapter``: the rendered
        prompt's for a ranked or copied row; for a kept row, its digest in the previous table if
        that table's adapter is ``adapter`` (the prompt it was ranked from), else
        :data:`STALE_DIGEST`."""
        if self.digests is None:
            return None
        kept = np.flatnonzero((self.why == KEPT_CLOSE) | (self.why == KEPT_FALLBACK))
        if not kept.size:
            return self.digests
        out = self.digests.copy()
        prev = self.previous
        if prev is not None and prev.adapter == adapter and prev.digests is not None:
            out[kept] = prev.digests[self.source[kept]]
        else:
            out[kept] = STALE_DIGEST
        return out

    def next_rows(self, adapter: str | None, ids: np.ndarray | None = None,
                  scores: np.ndarray | None = None, *, width: int = 0) -> TableRows:
        """The new table's :class:`TableRows` (``ids``/``scores`` from :func:`run_plan`, or None
        for rows not materialised, ``width`` wide): digests (:meth:`row_digests`), the evidence
        each row stands for (the current evidence for a ranked or copied row, the previous
        row's for a kept one, unknown for a row kept from another adapter) and when it was
        last confirmed current (now for a ranked or copied row, the previous row's time for a
        kept one)."""
        n = int(self.contexts.shape[0])
        kept = np.flatnonzero((self.why == KEPT_CLOSE) | (self.why == KEPT_FALLBACK))
        prev = self.previous
        verified = np.full(n, self.now, dtype=np.float64)
        if kept.size:
            verified[kept] = (prev.verified_at[self.source[kept]]
                              if prev is not None and prev.verified_at is not None else 0.0)
        signature = None
        if self.signature is not None:
            signature = self.signature
            if kept.size:
                mask = np.zeros(n, dtype=bool)
                mask[kept] = True
                if (prev is not None and prev.signature is not None and prev.adapter == adapter
                        and prev.signature.comparable(signature)):
                    signature = EvidenceSignature.merged(
                        mask, prev.signature.take(np.maximum(self.source, 0)), signature)
                else:
                    signature = signature.stale(mask)
        return TableRows(adapter=adapter, keys=self.keys, ids=ids, scores=scores,
                         digests=self.row_digests(adapter), signature=signature,
                         verified_at=verified, width=width if ids is None else 0)


def _rows_of(previous: TableRows, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(found, row)``: whether ``previous`` holds each key, and its row there."""
    if previous.keys.shape[0] == 0:
        return np.zeros(keys.shape[0], dtype=bool), np.zeros(keys.shape[0], dtype=np.int64)
    order = np.argsort(previous.keys, kind="stable")
    sorted_keys = previous.keys[order]
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.shape[0] - 1)
    return sorted_keys[at] == keys, order[at]


def with_kept_rows(
    contexts: np.ndarray, n_clusters: int, previous: TableRows | None, *, k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The contexts of a restricted regeneration whose fallback is the served table: ``contexts``
    plus every context ``previous`` holds that is not among them, in key order, and the mask of
    the added (kept) ones. Nothing is added when there is no previous table or its rows are not
    ``k`` wide."""
    none = np.zeros(contexts.shape[0], dtype=bool)
    if previous is None or previous.keys.shape[0] == 0 or previous.width != k:
        return contexts, none
    keys = contexts[:, 0].astype(np.int64) * n_clusters + contexts[:, 1]
    extra = np.setdiff1d(previous.keys.astype(np.int64), keys)
    if extra.size == 0:
        return contexts, none
    all_keys = np.concatenate([keys, extra])
    order = np.argsort(all_keys, kind="stable")
    merged = np.stack([all_keys // n_clusters, all_keys % n_clusters], axis=1)[order]
    kept = np.concatenate([none, np.ones(extra.size, dtype=bool)])[order]
    return merged.astype(contexts.dtype, copy=False), kept


def plan_table(
    contexts: np.ndarray, n_clusters: int, digests: np.ndarray | None, adapter: str | None,
    previous: TableRows | None, *, k: int, delta: bool = True, kept: np.ndarray | None = None,
    signature: EvidenceSignature | None = None, rule: KeepRule = KeepRule(), now: float = 0.0,
) -> TablePlan:
    """Which contexts to rank and which rows to copy: the one delta planner of a workspace's
    update and of the backtest.

    With ``delta`` and a previous table of the same adapter and row width ``k``, a context it
    holds keeps its row when its prompt (``digests``) is the one the row was ranked from, or,
    with a material ``rule`` and ``signature`` (the contexts' current evidence), when its
    evidence moved at most ``rule.tolerance`` from the evidence the row was ranked from
    (:func:`evidence_distance`). The ``kept`` contexts (a mask, :func:`with_kept_rows`; each
    must be held by ``previous``) keep their previous row whatever it was ranked from. Under
    ``rule.max_age_days`` no row older than the bound is kept either way: it is ranked. Every
    other context is ranked (identical prompts once)."""
    n = int(contexts.shape[0])
    source = np.full(n, -1, dtype=np.int64)
    why = np.full(n, RANKED_NEW, dtype=np.int8)
    keys = contexts[:, 0].astype(np.int64) * n_clusters + contexts[:, 1]
    kept_mask = np.zeros(n, dtype=bool) if kept is None else kept.astype(bool)
    if kept_mask.any() and (previous is None or previous.width != k):
        raise ValueError("kept rows need a previous table with rows of the table's width")
    found = np.zeros(n, dtype=bool)
    rows = np.zeros(n, dtype=np.int64)
    stale = np.zeros(n, dtype=bool)
    if previous is not None and previous.width == k:
        found, rows = _rows_of(previous, keys)
        if rule.max_age_days is not None:
            if previous.verified_at is None:
                stale = found.copy()
            else:
                stale = found & (previous.verified_at[rows] < now - rule.max_age_days * 86400.0)
    if kept_mask.any() and not found[kept_mask].all():
        raise ValueError("every kept context must be held by the previous table")
    usable = (
        delta and previous is not None and previous.adapter == adapter
        and previous.keys.shape[0] > 0 and previous.width == k
    )
    material = (usable and rule.material and signature is not None and previous is not None
                and previous.signature is not None)
    exact = usable and digests is not None and previous is not None and previous.digests is not None
    if exact or material:
        assert previous is not None
        compare = found & ~kept_mask
        same = np.zeros(n, dtype=bool)
        if exact:
            assert previous.digests is not None and digests is not None
            same = compare & (previous.digests[rows] == digests).all(axis=1)
        source[same] = rows[same]
        why[same] = COPIED_SAME
        why[compare & ~same] = RANKED_CHANGED
        if material:
            assert previous.signature is not None and signature is not None
            candidates = np.flatnonzero(compare & ~same & ~stale)
            if candidates.size:
                dist = evidence_distance(previous.signature.take(rows[candidates]),
                                         signature.take(candidates))
                close = candidates[dist <= rule.tolerance]
                source[close] = rows[close]
                why[close] = KEPT_CLOSE
        why[compare & ~same & stale] = RANKED_STALE
    fallback = kept_mask & ~stale
    source[fallback] = rows[fallback]
    why[fallback] = KEPT_FALLBACK
    why[kept_mask & stale] = RANKED_STALE
    todo = np.flatnonzero(source < 0)
    same_as = np.arange(n, dtype=np.int64)
    if digests is not None and todo.size:
        first: dict[bytes, int] = {}
        for i in todo.tolist():
            same_as[i] = first.setdefault(digests[i].tobytes(), i)
        rank = np.array(sorted(set(first.values())), dtype=np.int64)
    else:
        rank = todo.astype(np.int64)
    return TablePlan(contexts=contexts, keys=keys, digests=digests,
                     previous=previous if (source >= 0).any() else None, source=source, rank=rank,
                     same_as=same_as, why=why, kept=kept_mask if kept_mask.any() else None,
                     delta=bool(exact or material), now=now, signature=signature, rule=rule)


def regeneration_plan(
    action: RegenerateTable, contexts: np.ndarray, n_clusters: int, adapter: str | None,
    previous: TableRows | None, *, k: int, delta: bool, default: KeepRule, now: float,
    restricted: bool,
    render: Callable[[np.ndarray, bool], tuple[np.ndarray | None, EvidenceSignature | None]],
) -> TablePlan:
    """The plan of a regeneration ``action`` over ``contexts`` (the contexts it wants), the same
    for a workspace's update and the backtest, which differ only in how they render the
    contexts' prompt digests and evidence signatures (``render(contexts, signature)``, see
    :func:`render_keys`) and where they keep rows: a ``restricted`` regeneration whose fallback
    is the served table keeps the served row of every context it does not rank
    (:func:`with_kept_rows`); then :func:`plan_table` with the action's rule (``default``: the
    pipeline's ``[serving]`` values)."""
    rule = KeepRule.of(action, default)
    keeping = restricted and action.fallback == "previous"
    kept = None
    if keeping:
        contexts, kept = with_kept_rows(contexts, n_clusters, previous, k=k)
    rendered, evidence = (render(contexts, delta and rule.material) if delta or keeping
                          else (None, None))
    return plan_table(contexts, n_clusters, rendered, adapter, previous, k=k, delta=delta,
                      kept=kept, signature=evidence, rule=rule, now=now)


def regeneration_note(plan: TablePlan) -> str:
    """One line saying how many contexts a regeneration re-ranked, copied and kept, and why."""
    c = plan.counts()
    n = int(plan.contexts.shape[0])
    ranked = c["new"] + c["changed"] + c["stale"]
    if plan.delta:
        parts = [f"delta: re-ranked {ranked:,} of {n:,} contexts ({c['new']:,} new, "
                 f"{c['changed']:,} changed, {c['stale']:,} past the staleness bound)"]
    else:
        parts = [f"full: ranked {ranked:,} of {n:,} contexts"
                 + (f" ({c['stale']:,} past the staleness bound)" if c["stale"] else "")]
    if c["same"]:
        parts.append(f"copied {c['same']:,} with the same prompt")
    if c["close"]:
        parts.append(f"kept {c['close']:,} whose evidence moved within the tolerance {plan.rule.tolerance:g}")
    if c["fallback"]:
        parts.append(f"kept the served row of {c['fallback']:,} contexts not ranked")
    return "; ".join(parts)


def run_plan(
    plan: TablePlan, executor: TableExecutor, job: TableJob, *,
    generator: Generator | None = None, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank ``plan.rank`` through ``executor`` (``job`` restricted to them) and assemble every
    context's row: ``(ids, scores)`` of shape ``(n, job.k)`` in context order."""
    n, k = int(plan.contexts.shape[0]), job.k
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float64)
    prev = plan.previous
    if prev is not None:
        if prev.ids is None or prev.scores is None:
            raise ValueError("copying rows needs a previous table with materialised rows")
        copied = np.flatnonzero(plan.source >= 0)
        width = min(k, prev.width)
        ids[copied, :width] = prev.ids[plan.source[copied], :width]
        scores[copied, :width] = prev.scores[plan.source[copied], :width]
    if plan.rank.size:
        got_ids: list[np.ndarray] = []
        got_scores: list[np.ndarray] = []

        def sink(rankings: Rankings) -> None:
            got_ids.append(np.asarray(rankings.ids[:, :k], dtype=np.int64))
            got_scores.append(np.asarray(rankings.scores[:, :k], dtype=np.float64))

        sub = dataclasses.replace(job, contexts=plan.contexts[plan.rank])
        written = executor.run(sub, sink, generator=generator, progress=progress)
        if written != plan.rank.size:
            raise RuntimeError(f"executor wrote {written} rows for {plan.rank.size} contexts")
        ranked_ids, ranked_scores = np.concatenate(got_ids), np.concatenate(got_scores)
        width = ranked_ids.shape[1]
        ids[plan.rank, :width] = ranked_ids
        scores[plan.rank, :width] = ranked_scores
        shared = np.flatnonzero((plan.source < 0) & (plan.same_as != np.arange(n)))
        ids[shared] = ids[plan.same_as[shared]]
        scores[shared] = scores[plan.same_as[shared]]
    return ids, scores


def write_rows(
    contexts: np.ndarray, ids: np.ndarray, scores: np.ndarray, write: Callable[[Rankings], None],
    *, batch_size: int = 4096,
) -> int:
    """Stream assembled rows to a table writer in context order; returns the rows written."""
    for part in batches(int(contexts.shape[0]), batch_size):
        write(Rankings(contexts=contexts[part], ids=ids[part], scores=scores[part]))
    return int(contexts.shape[0])


@dataclass
class PromptRows:
    """Every row ranked with one adapter, keyed by the digest (:func:`digest_prompts`) of the
    prompt it was ranked from (the backtest's store: a row is reused by every state of the
    adapter with the same prompt, as a workspace copies a row whose digest is unchanged); rows
    are ``width`` clusters wide (an adapter that has ranked nothing yet holds ``(0, width)``
    arrays)."""

    width: int
    by_prompt: dict[bytes, int] = field(default_factory=dict)
    ids: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    size: int = 0
    stacked: tuple[np.ndarray, np.ndarray] | None = None

    def append(self, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Store ranked rows; returns their row numbers."""
        at = np.arange(self.size, self.size + ids.shape[0], dtype=np.int32)
        self.ids.append(ids)
        self.scores.append(scores)
        self.size += ids.shape[0]
        self.stacked = None
        return at

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.stacked is None:
            if not self.ids:
                return np.empty((0, self.width), dtype=np.int64), np.empty((0, self.width))
            self.stacked = (np.concatenate(self.ids), np.concatenate(self.scores))
        return self.stacked


__all__ = [
    "COPIED_SAME",
    "DIGEST_BYTES",
    "KEPT_CLOSE",
    "KEPT_FALLBACK",
    "RANKED_CHANGED",
    "RANKED_NEW",
    "RANKED_STALE",
    "ROWS_FILE",
    "STALE_DIGEST",
    "WHY",
    "WHY_KEYS",
    "EvidenceSignature",
    "KeepRule",
    "PromptRows",
    "TablePlan",
    "TableRows",
    "digest_prompts",
    "evidence_distance",
    "plan_table",
    "prompt_digests",
    "regeneration_note",
    "regeneration_plan",
    "render_keys",
    "run_plan",
    "signature_of",
    "with_kept_rows",
    "write_rows",
]
