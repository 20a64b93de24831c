"""Table generation with delta regeneration and de-duplication, over a ``TableExecutor``.

A table row is a deterministic function of ``(adapter, prompt)`` when the generator offers
:class:`~hybridrec.capabilities.PromptEncoder` (its contract). Two consequences, used by the
workspace update and by the backtest alike:

* **delta regeneration**: a regeneration that keeps the adapter re-ranks only the contexts whose
  prompt changed since the previous table (or that it did not hold) and copies every other row;
* **de-duplication**: contexts with identical prompts are ranked once.

Both are exact: the rows are those a full regeneration would write. A generator without the
capability is always ranked in full.

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
from hybridrec.types import Rankings

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
    if not isinstance(generator, PromptEncoder):
        return None
    out = np.zeros((contexts.shape[0], DIGEST_BYTES), dtype=np.uint8)
    for part in batches(int(contexts.shape[0]), batch_size):
        ctx = contexts[part]
        evidence = (snapshot_evidence(snapshot, ctx, evidence_m, store=store)
                    if snapshot is not None else None)
        out[part] = digest_prompts(prompt_matrix(generator, ctx, evidence))
    return out


@dataclass
class TableRows:
    """The ranked rows of a table: context keys ``c1 * n + c2`` (ascending), ids, scores and the
    prompt digest each row was ranked from (None: the generator renders no prompts)."""

    adapter: str | None
    keys: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    digests: np.ndarray | None

    def save(self, folder: Path) -> Path:
        path = Path(folder) / ROWS_FILE
        arrays = {"keys": self.keys.astype(np.int64), "ids": self.ids.astype(np.int32),
                  "scores": self.scores.astype(np.float32),
                  "adapter": np.array("" if self.adapter is None else self.adapter)}
        if self.digests is not None:
            arrays["digests"] = self.digests
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, folder: Path) -> TableRows | None:
        path = Path(folder) / ROWS_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            adapter = str(data["adapter"]) or None
            return cls(adapter=adapter, keys=data["keys"], ids=data["ids"], scores=data["scores"],
                       digests=data.get("digests"))


@dataclass
class TablePlan:
    """What a regeneration ranks: ``rank`` indexes the contexts to rank (one per distinct new
    prompt); ``source[i]`` is the row of context ``i`` in ``previous`` (copied) or ``-1``;
    ``same_as[i]`` the context whose ranking context ``i`` shares (itself when ranked);
    ``kept`` marks the contexts whose served row is kept without being compared (the fallback of
    a restricted regeneration); ``delta`` whether unchanged prompts were copied."""

    contexts: np.ndarray
    digests: np.ndarray | None
    previous: TableRows | None
    source: np.ndarray
    rank: np.ndarray
    same_as: np.ndarray
    kept: np.ndarray | None = None
    delta: bool = False

    @property
    def changed(self) -> int:
        """Contexts whose prompt is new since the previous table (what a delta is charged)."""
        return int((self.source < 0).sum())

    @property
    def copied(self) -> int:
        """Rows copied from the previous table (unchanged prompts and kept rows)."""
        return int((self.source >= 0).sum())

    @property
    def n_kept(self) -> int:
        """Rows kept as the fallback of a restricted regeneration (a part of :attr:`copied`)."""
        return 0 if self.kept is None else int(self.kept.sum())

    def row_digests(self, adapter: str | None) -> np.ndarray | None:
        """The digest to store with each row of the new table of ``adapter``: the rendered
        prompt's for a ranked or delta-copied row; for a kept row, its digest in the previous
        table if that table's adapter is ``adapter``, else :data:`STALE_DIGEST`."""
        if self.digests is None:
            return None
        if self.kept is None or not self.kept.any():
            return self.digests
        out = self.digests.copy()
        kept = np.flatnonzero(self.kept)
        prev = self.previous
        if prev is not None and prev.adapter == adapter and prev.digests is not None:
            out[kept] = prev.digests[self.source[kept]]
        else:
            out[kept] = STALE_DIGEST
        return out


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
    if previous is None or previous.keys.shape[0] == 0 or previous.ids.shape[1] != k:
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
) -> TablePlan:
    """Which contexts to rank and which rows to copy (see the module docstring). Rows are copied
    only from a previous table of the same adapter and row width ``k`` whose prompts are known,
    except the ``kept`` contexts (a mask; :func:`with_kept_rows`), whose previous row is copied
    whatever it was ranked from (each must be held by ``previous``)."""
    n = int(contexts.shape[0])
    source = np.full(n, -1, dtype=np.int64)
    keys = contexts[:, 0].astype(np.int64) * n_clusters + contexts[:, 1]
    keeping = kept is not None and bool(kept.any())
    usable = (
        delta and digests is not None and previous is not None and previous.digests is not None
        and previous.adapter == adapter and previous.keys.shape[0] > 0
        and previous.ids.shape[1] == k
    )
    if usable:
        assert previous is not None and previous.digests is not None and digests is not None
        found, rows = _rows_of(previous, keys)
        same = found & (previous.digests[rows] == digests).all(axis=1)
        if keeping:
            assert kept is not None
            same &= ~kept
        source[same] = rows[same]
    if keeping:
        assert kept is not None
        if previous is None or previous.ids.shape[1] != k:
            raise ValueError("kept rows need a previous table with rows of the table's width")
        found, rows = _rows_of(previous, keys[kept])
        if not found.all():
            raise ValueError("every kept context must be held by the previous table")
        source[kept] = rows
    todo = np.flatnonzero(source < 0)
    same_as = np.arange(n, dtype=np.int64)
    if digests is not None and todo.size:
        first: dict[bytes, int] = {}
        for i in todo.tolist():
            same_as[i] = first.setdefault(digests[i].tobytes(), i)
        rank = np.array(sorted(set(first.values())), dtype=np.int64)
    else:
        rank = todo.astype(np.int64)
    return TablePlan(contexts=contexts, digests=digests,
                     previous=previous if usable or keeping else None, source=source, rank=rank,
                     same_as=same_as, kept=kept if keeping else None, delta=usable)


def run_plan(
    plan: TablePlan, executor: TableExecutor, job: TableJob, *,
    generator: Generator | None = None, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank ``plan.rank`` through ``executor`` (``job`` restricted to them) and assemble every
    context's row: ``(ids, scores)`` of shape ``(n, job.k)`` in context order."""
    n, k = int(plan.contexts.shape[0]), job.k
    ids = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), -np.inf, dtype=np.float64)
    if plan.previous is not None:
        copied = np.flatnonzero(plan.source >= 0)
        width = min(k, plan.previous.ids.shape[1])
        ids[copied, :width] = plan.previous.ids[plan.source[copied], :width]
        scores[copied, :width] = plan.previous.scores[plan.source[copied], :width]
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


def changed_count(
    want: np.ndarray, held_before: np.ndarray, same_prompt: np.ndarray | None, same_adapter: bool,
) -> int:
    """Contexts (masks over context keys) a regeneration must rank: every wanted one if the
    adapter changed or prompts cannot be compared, else those whose prompt changed or that the
    previous table did not hold."""
    if not same_adapter or same_prompt is None:
        return int(want.sum())
    return int((want & ~(same_prompt & held_before)).sum())


__all__ = [
    "DIGEST_BYTES",
    "ROWS_FILE",
    "STALE_DIGEST",
    "PromptRows",
    "TablePlan",
    "TableRows",
    "changed_count",
    "digest_prompts",
    "plan_table",
    "prompt_digests",
    "run_plan",
    "with_kept_rows",
    "write_rows",
]
