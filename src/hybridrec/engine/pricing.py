"""Pricing: what an action would touch (a :class:`~hybridrec.types.Workload`) and what the cost
model says it costs, the same for the workspace update and the backtest.

* a **fine-tune** touches the fine-tuner's workload on ``n_window`` transitions;
* a **knowledge refresh** touches the store's workload on ``n_window`` transitions serving
  ``n_contexts`` contexts;
* a **regeneration** touches the generator's workload on the ``n_contexts`` contexts it ranks
  (with or without evidence in the prompt).
"""

from __future__ import annotations

from hybridrec.interfaces import CostModel, FineTuner, Generator, KnowledgeStore
from hybridrec.types import ActionKind, CostEstimate, Workload


def workload(
    kind: ActionKind, *, generator: Generator, fine_tuner: FineTuner | None = None,
    store: KnowledgeStore | None = None, n_window: int = 0, n_contexts: int = 0,
    with_evidence: bool = True,
) -> Workload:
    """What ``kind`` would touch (see the module docstring)."""
    if kind == "fine_tune":
        assert fine_tuner is not None, "pricing a fine-tune needs the fine-tuner"
        return fine_tuner.workload(n_window, generator)
    if kind == "refresh_knowledge":
        assert store is not None, "pricing a refresh needs the knowledge store"
        return store.workload(n_window, n_contexts)
    if kind == "regenerate_table":
        return generator.workload(n_contexts, with_evidence=with_evidence)
    return Workload()


def estimate(cost_model: CostModel, kind: ActionKind, **kwargs: object) -> CostEstimate:
    """``cost_model``'s price of :func:`workload` (same keyword arguments)."""
    return price(cost_model, kind, workload(kind, **kwargs))  # type: ignore[arg-type]


def price(cost_model: CostModel, kind: ActionKind, work: Workload) -> CostEstimate:
    """``cost_model.estimate(kind, work)``, checked at the boundary: a cost model whose estimate
    is not a valid :class:`~hybridrec.types.CostEstimate` (a negative cost, say) raises a
    :class:`~hybridrec.errors.PluginError` naming the plugin and the field."""
    from pydantic import ValidationError

    from hybridrec.errors import PluginError, format_validation_error

    name = getattr(cost_model, "name", type(cost_model).__name__)
    try:
        got = cost_model.estimate(kind, work)
        if not isinstance(got, CostEstimate):
            raise PluginError(f"cost model {name!r} returned {type(got).__name__} for {kind}, "
                              "not a CostEstimate")
        return CostEstimate.model_validate(got.model_dump())
    except ValidationError as exc:
        raise PluginError(f"cost model {name!r} priced {kind} with an invalid estimate: "
                          f"{format_validation_error(exc)}") from None


#: Days of recent transitions a fine-tune or a refresh is priced on in the policy's state.
PRICE_DAYS = 30.0


def state_estimates(
    cost_model: CostModel, *, generator: Generator, fine_tuner: FineTuner, store: KnowledgeStore,
    n_recent: int, n_contexts: int, with_evidence: bool,
) -> dict[str, CostEstimate]:
    """The price of each action kind as the policy sees it (``SystemState.estimates``): a
    fine-tune and a refresh on the last :data:`PRICE_DAYS` of transitions (``n_recent``), a full
    regeneration of ``n_contexts`` contexts (with evidence if knowledge is served)."""
    return {
        "fine_tune": estimate(cost_model, "fine_tune", generator=generator, fine_tuner=fine_tuner,
                              n_window=n_recent),
        "refresh_knowledge": estimate(cost_model, "refresh_knowledge", generator=generator,
                                      store=store, n_window=n_recent, n_contexts=n_contexts),
        "regenerate_table": estimate(cost_model, "regenerate_table", generator=generator,
                                     n_contexts=n_contexts, with_evidence=with_evidence),
    }


__all__ = ["PRICE_DAYS", "estimate", "price", "state_estimates", "workload"]
