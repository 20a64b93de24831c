"""The pieces of a configuration the plugin registry and the interfaces read: a plugin reference,
the roles, and the evidence recipe. They sit below :mod:`hybridrec.config` (which re-exports
them) so the registry can fill a recipe into plugin options without importing the config."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The roles of a pipeline config, each a :class:`PluginRef`.
PLUGIN_ROLES: tuple[str, ...] = (
    "dataset",
    "generator",
    "fine_tuner",
    "knowledge_store",
    "update_policy",
    "cost_model",
    "executor",
)
#: The roles whose plugins may read the evidence recipe.
EVIDENCE_ROLES: tuple[str, ...] = ("generator", "fine_tuner", "knowledge_store", "update_policy")


class PluginRef(BaseModel):
    """A plugin chosen by name, with its raw options (validated later by the plugin)."""

    model_config = ConfigDict(extra="forbid")

    plugin: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class EvidenceConfig(BaseModel):
    """The evidence recipe, declared once: how every prompt's candidates and their evidence are
    built. The knowledge store serves it, the fine-tuner trains with it and the generator renders
    it; each plugin that reads evidence declares which of its options the recipe sets
    (:meth:`hybridrec.interfaces.Plugin.evidence_options`), and the pipeline fills them from this
    section, so training and serving prompts cannot be configured apart. A plugin option the
    recipe sets may be written in the plugin's table only with the same value.
    (docs/roles.md, "The evidence recipe")."""

    model_config = ConfigDict(extra="forbid")

    estimator: Literal["backoff", "pair"] = Field(
        default="backoff",
        description="backoff: every context's candidates ranked by the smoothed-count estimator "
        "(pair counts backed off to its last and first clusters' successor shares); pair: the "
        "context's own most frequent successors (the paper's instance evidence).")
    candidates: int = Field(
        default=10, ge=1, le=100,
        description="Candidate slots per prompt: the store's m, the generator's evidence_items.")
    alpha: float = Field(
        default=128.0, ge=0.0,
        description="backoff: smoothing strength (pseudo-counts of the backoff distribution).")
    weights: tuple[float, float, float] = Field(
        default=(0.7, 0.3, 0.0),
        description="backoff: weights of the last cluster's successor shares, the first "
        "cluster's (skip-gram) successor shares and popularity.")
    half_life_days: float | None = Field(
        default=None, gt=0,
        description="backoff: decay the counts, a transition a days old weighing "
        "2**(-a / half_life_days) at the snapshot's end (serving) or the example's day "
        "(training); None (or inf, which TOML can write over a preset's value): every "
        "transition in the history window counts 1.")
    recent_days: int | None = Field(
        default=None, ge=1,
        description="backoff: also count each candidate over the knowledge's last recent_days "
        "(rendered by a generator that reads them); None: no recent window.")
    history_days: float = Field(
        default=3650.0, gt=0,
        description="The evidence's history window: a knowledge refresh counts this many days "
        "(a policy's knowledge_days), and so does a training example's evidence (the lora "
        "fine-tuner's evidence_days).")

    @field_validator("half_life_days")
    @classmethod
    def _infinite_is_none(cls, value: float | None) -> float | None:
        # TOML has no null: `half_life_days = inf` is how a file or --set turns a preset's decay off
        return None if value is not None and math.isinf(value) else value

    @model_validator(mode="after")
    def _consistent(self) -> EvidenceConfig:
        if self.estimator != "backoff" and self.recent_days is not None:
            raise ValueError("recent_days is a window of the backoff estimator; set estimator = 'backoff'")
        if self.estimator != "backoff" and self.half_life_days is not None:
            raise ValueError("half_life_days decays the backoff estimator's counts; set estimator = "
                             "'backoff', or half_life_days = inf (no decay)")
        if min(self.weights) < 0 or sum(self.weights) <= 0:
            raise ValueError(f"weights must be non-negative with a positive sum, got {list(self.weights)}")
        return self


__all__ = ["EVIDENCE_ROLES", "PLUGIN_ROLES", "EvidenceConfig", "PluginRef"]
