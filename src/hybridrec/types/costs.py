"""Workloads, cost estimates, ledger records and budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
)

from hybridrec.types.actions import (
    ActionKind,
)
from hybridrec.types.base import (
    Model,
)

#: a cost: non-negative and finite (an infinite or NaN price would poison every budget sum)
Cost = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Workload(Model):
    """What an action will touch, so a cost model can price it before it runs."""

    model_parameters: NonNegativeInt = 0
    trainable_parameters: NonNegativeInt = 0
    train_tokens: NonNegativeInt = 0
    train_epochs: NonNegativeFloat = 1.0
    inference_tokens: NonNegativeInt = 0
    generated_tokens: NonNegativeInt = 0
    contexts: NonNegativeInt = 0
    transitions: NonNegativeInt = 0
    guardrail_samples: NonNegativeInt = 0
    #: Tokens a fine-tune's held-out evaluation processes (ranking the held-out examples).
    evaluation_tokens: NonNegativeInt = 0
    #: Prompt and generated tokens of a fine-tune's guardrail generations (``guardrail_samples``
    #: free generations of one answer each).
    guardrail_tokens: NonNegativeInt = 0
    #: Of ``inference_tokens``, those that render evidence (RAG prompts).
    evidence_tokens: NonNegativeInt = 0
    #: (context, candidate) pairs a counting estimator scores to rank evidence (a store that
    #: ranks every context's successors by an estimator, such as the stores' ``backoff``).
    scored_candidates: NonNegativeInt = 0
    index_items: NonNegativeInt = 0
    index_dim: NonNegativeInt = 0
    index_trees: NonNegativeInt = 0
    device: str = "cpu"


class CostEstimate(Model):
    """A cost model's price of an action before it runs."""

    action: ActionKind
    flops: Cost = 0.0
    seconds: Cost = 0.0
    money: Cost = 0.0
    model: str = ""
    details: dict[str, float] = Field(default_factory=dict)


class CostRecord(Model):
    """One executed action in the ledger: what it was priced at and what it cost."""

    action: ActionKind
    at: datetime
    estimate: CostEstimate
    flops: Cost = 0.0
    seconds: Cost = 0.0
    money: Cost = 0.0
    versions_in: dict[str, str | None] = Field(default_factory=dict)
    versions_out: dict[str, str | None] = Field(default_factory=dict)
    status: Literal["ok", "held", "failed", "skipped"] = "ok"
    note: str = ""


class Budget(Model):
    """A spending limit per rolling period; ``None`` means unlimited for that unit."""

    period_days: float = Field(default=30.0, gt=0)
    flops: NonNegativeFloat | None = None
    seconds: NonNegativeFloat | None = None
    money: NonNegativeFloat | None = None


__all__ = [
    "Budget",
    "CostEstimate",
    "CostRecord",
    "Workload",
]
