"""Built-in cost models: ``flops`` (deterministic FLOP counts) and ``measured`` (wall-clock ×
price table). Formulas: :mod:`hybridrec_costs.models`."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_costs.models import FlopsCostModel, MeasuredCostModel, PriceOptions, flop_breakdown


@hookimpl
def register_cost_models(register: Any) -> None:
    register(FlopsCostModel)
    register(MeasuredCostModel)


__all__ = ["FlopsCostModel", "MeasuredCostModel", "PriceOptions", "flop_breakdown"]
