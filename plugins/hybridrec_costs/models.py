"""The built-in cost models: ``flops`` (deterministic) and ``measured`` (wall-clock × price).

Notation, all from the :class:`~hybridrec.types.Workload`: ``N`` = ``model_parameters``,
``Nt`` = ``trainable_parameters``, ``T`` = ``train_tokens`` (per epoch), ``E`` =
``train_epochs``, ``P`` = ``inference_tokens`` (prompt tokens processed), ``G`` =
``generated_tokens``, ``I`` = ``index_items``, ``D`` = ``index_dim``, ``R`` = ``index_trees``,
``C`` = ``contexts``, ``X`` = ``transitions``, ``V`` = ``evidence_tokens`` (of ``P``), ``H`` =
``evaluation_tokens``, ``Q`` = ``guardrail_tokens``, ``S`` = ``scored_candidates``.

FLOP formulas (a multiply-add counts as 2 FLOPs; attention's sequence-length term is ignored,
which is accurate for short prompts like ours):

* **train** = ``E · T · (4·N + 2·Nt)`` when ``0 < Nt < N`` (LoRA/adapters): the forward pass is
  ``2·N`` per token and the backward pass still flows through the whole frozen base to reach the
  adapters (``2·N`` for activation gradients) but computes weight gradients only for the
  trainable parameters (``2·Nt``). With ``Nt = 0`` or ``Nt ≥ N`` (full fine-tuning) it is the
  standard ``6 · N · T · E``.
* **inference** = ``2 · N · (P - V + G)`` and **evidence** = ``2 · N · V``: prompt prefill plus
  greedy decoding, with the evidence tokens of RAG prompts as their own term (a regeneration with
  evidence pays for them; their sum is ``2 · N · (P + G)``).
* **evaluation** = ``2 · N · H`` and **guardrails** = ``2 · N · Q``: the rest of a fine-tune, its
  held-out evaluation (ranking the held-out examples with and without evidence) and its guardrail
  generations (free generation of one answer per sample, prompt and generated tokens), so a
  fine-tune is priced as the whole action, not only its training steps.
* **index_build** = ``I · R · log2(I) · D`` (Annoy: every tree splits its items ``log2 I``
  times, each split a ``D``-dimensional dot product per item).
* **retrieval** = ``C · R · log2(I) · D`` (one descent per tree per context).
* **counting** = ``X`` (one update per transition when counting successors).
* **scoring** = ``SCORE_FLOPS · S``: a counting estimator scoring every candidate of every
  context to rank the evidence (the backoff estimator mixes a smoothed pair share with the last
  cluster's, the first cluster's and the popularity shares: about five multiply-adds per pair;
  choosing the top ``m`` is not counted). This is the price of *building* the evidence a RAG
  refresh serves, next to the price of ranking with it (``inference`` and ``evidence``).

``flops`` is the sum; ``seconds`` = ``flops / throughput[device]``; ``money`` =
``seconds / 3600 · price_per_hour[device] · units[device]``. A device string such as
``"cuda:0"`` matches the key ``"cuda"``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hybridrec.interfaces import CostModel
from hybridrec.types import ActionKind, CostEstimate, CostRecord, Workload


class PriceOptions(BaseModel):
    """Device throughput and prices shared by both cost models."""

    model_config = ConfigDict(extra="forbid")

    throughput_flops_per_s: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 5.0e10, "cuda": 1.0e14, "mps": 5.0e12},
        description="Sustained FLOP/s per device, for the seconds estimate.",
    )
    price_per_hour: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 0.05, "cuda": 2.50, "mps": 0.50},
        description="Price of one unit (a CPU core, one GPU) for one hour.",
    )
    units: dict[str, float] = Field(
        default_factory=lambda: {"cpu": 1.0},
        description="Units billed per device (e.g. CPU cores); missing devices bill 1 unit.",
    )

    def lookup(self, table: dict[str, float], device: str, default: float) -> float:
        if device in table:
            return float(table[device])
        family = device.split(":", 1)[0]
        return float(table.get(family, default))

    def hourly(self, device: str) -> float:
        return self.lookup(self.price_per_hour, device, 0.0) * self.lookup(self.units, device, 1.0)

    def throughput(self, device: str) -> float:
        return self.lookup(self.throughput_flops_per_s, device, self.throughput_flops_per_s.get("cpu", 5.0e10))


#: FLOPs per (context, candidate) pair a counting estimator scores (five multiply-adds).
SCORE_FLOPS = 10.0


def flop_breakdown(action: ActionKind, w: Workload) -> dict[str, float]:
    """The FLOP terms of the module docstring for ``action`` on ``w`` (all non-negative)."""
    n, nt = float(w.model_parameters), float(w.trainable_parameters)
    terms = {"train": 0.0, "inference": 0.0, "evidence": 0.0, "evaluation": 0.0, "guardrails": 0.0,
             "index_build": 0.0, "retrieval": 0.0, "counting": 0.0, "scoring": 0.0}
    if action == "noop":
        return terms
    if action == "fine_tune":
        per_token = 4.0 * n + 2.0 * nt if 0 < nt < n else 6.0 * n
        terms["train"] = w.train_epochs * w.train_tokens * per_token
        terms["evaluation"] = 2.0 * n * w.evaluation_tokens
        terms["guardrails"] = 2.0 * n * w.guardrail_tokens
    evidence = min(w.evidence_tokens, w.inference_tokens)
    terms["inference"] = 2.0 * n * (w.inference_tokens - evidence + w.generated_tokens)
    terms["evidence"] = 2.0 * n * evidence
    if w.index_items > 1 and w.index_dim > 0 and w.index_trees > 0:
        depth = math.log2(w.index_items)
        if action == "refresh_knowledge":
            terms["index_build"] = w.index_items * w.index_trees * depth * w.index_dim
        terms["retrieval"] = w.contexts * w.index_trees * depth * w.index_dim
    terms["counting"] = float(w.transitions)
    terms["scoring"] = SCORE_FLOPS * float(w.scored_candidates)
    return terms


class FlopsCostModel(CostModel):
    """Deterministic FLOP counts (formulas in :mod:`hybridrec_costs.models`); seconds and money
    derived from a throughput and price table. Records keep the estimated FLOPs and money and
    the measured seconds."""

    name: ClassVar[str] = "flops"
    Options: ClassVar[type[BaseModel]] = PriceOptions

    def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
        o: PriceOptions = self.options
        terms = flop_breakdown(action, workload)
        flops = float(sum(terms.values()))
        seconds = flops / o.throughput(workload.device)
        hourly = o.hourly(workload.device)
        details = dict(terms)
        details["price_per_hour"] = hourly
        return CostEstimate(
            action=action, flops=flops, seconds=seconds, money=seconds / 3600.0 * hourly,
            model=self.name, details=details,
        )


class MeasuredCostModel(FlopsCostModel):
    """Wall-clock × price: estimates as ``flops`` does (to budget before running); records bill
    the *measured* seconds at the device's ``price_per_hour × units``."""

    name: ClassVar[str] = "measured"

    def record(
        self,
        action: ActionKind,
        estimate: CostEstimate,
        *,
        at: datetime,
        seconds: float,
        versions_in: dict[str, str | None] | None = None,
        versions_out: dict[str, str | None] | None = None,
        status: str = "ok",
        note: str = "",
    ) -> CostRecord:
        record = super().record(
            action, estimate, at=at, seconds=seconds, versions_in=versions_in,
            versions_out=versions_out, status=status, note=note,
        )
        hourly = float(estimate.details.get("price_per_hour", 0.0))
        return record.model_copy(update={"money": record.seconds / 3600.0 * hourly})
