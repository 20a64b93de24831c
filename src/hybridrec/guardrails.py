"""Fine-tune guardrails: decide whether an adapter's held-out metrics allow promotion.

The paper halts a fine-tune for review unless free generation maps exactly to a cluster
description in at least 90% of held-out samples (``exact_match_rate``) and held-out recall is at
least 0.015 (``recall``). The thresholds come from :class:`~hybridrec.config.GuardrailConfig`.
Which metrics are checked is the generator's to say
(:meth:`hybridrec.interfaces.Generator.guardrail_metrics`): the exact-match rate only for a
generator that serves by free generation, recall on the prompts it serves.

This module only *checks*; the pipeline holds a failing adapter (status ``needs_review`` with the
reasons) and keeps the previous one served.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from hybridrec.config import GuardrailConfig

#: metric name -> GuardrailConfig field holding its minimum
GUARDED_METRICS: dict[str, str] = {
    "exact_match_rate": "min_exact_match",
    "recall": "min_recall",
}


class GuardrailReport(BaseModel):
    """The outcome of :func:`evaluate_guardrails`: pass/fail, reasons, and what was compared."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    passed: bool
    reasons: tuple[str, ...] = ()
    metrics: dict[str, float | None] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    enabled: bool = True

    @property
    def status(self) -> str:
        """``"ok"`` when the adapter may be promoted, else ``"needs_review"``."""
        return "ok" if self.passed else "needs_review"


def check_guardrails(metrics: Mapping[str, float], config: GuardrailConfig,
                     checks: Mapping[str, str] | None = None) -> list[str]:
    """Reasons the adapter must not be promoted; an empty list means it passes.

    ``checks`` maps each guarded metric to the ``config`` field of its minimum (default
    :data:`GUARDED_METRICS`, the paper's two; a generator's
    :meth:`~hybridrec.interfaces.Generator.guardrail_metrics`). A guarded metric that is missing,
    not a number or NaN fails (an adapter is never promoted on metrics nobody measured). With
    ``config.enabled`` false nothing is checked.
    """
    if not config.enabled:
        return []
    reasons: list[str] = []
    for metric, field in (GUARDED_METRICS if checks is None else checks).items():
        minimum = float(getattr(config, field))
        value = metrics.get(metric)
        if value is None or not isinstance(value, int | float) or math.isnan(float(value)):
            reasons.append(
                f"{metric} was not measured (got {value!r}); the guardrail needs it >= {minimum:g}"
            )
        elif float(value) < minimum:
            reasons.append(f"{metric} {float(value):.4g} is below the minimum {minimum:g}")
    return reasons


def evaluate_guardrails(metrics: Mapping[str, float], config: GuardrailConfig,
                        checks: Mapping[str, str] | None = None) -> GuardrailReport:
    """:func:`check_guardrails` as a report (for manifests and ledgers)."""
    checks = GUARDED_METRICS if checks is None else checks
    reasons = check_guardrails(metrics, config, checks)
    shown: dict[str, float | None] = {}
    for metric in checks:
        value = metrics.get(metric)
        shown[metric] = float(value) if isinstance(value, int | float) else None
    return GuardrailReport(
        passed=not reasons,
        reasons=tuple(reasons),
        metrics=shown,
        thresholds={m: float(getattr(config, f)) for m, f in checks.items()},
        enabled=config.enabled,
    )


__all__ = [
    "GUARDED_METRICS",
    "GuardrailReport",
    "check_guardrails",
    "evaluate_guardrails",
]
