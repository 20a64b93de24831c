"""The configured plugins of a pipeline, built on first use through :func:`hybridrec.plugins.build`,
and the pricing of each action kind (what it would touch now)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from hybridrec.config import PipelineConfig
from hybridrec.engine import pricing
from hybridrec.errors import ConfigError
from hybridrec.generation import all_contexts, observed_contexts
from hybridrec.interfaces import (
    CostModel,
    FineTuner,
    Generator,
    KnowledgeStore,
    TableExecutor,
    UpdatePolicy,
    evidence_mismatch,
)
from hybridrec.plugins import ResolvedPlugin, build, resolve
from hybridrec.types import ActionKind, ClusterCatalog, RegenerateTable, TransitionSet, Workload

ESTIMATE_KINDS: tuple[ActionKind, ...] = ("fine_tune", "refresh_knowledge", "regenerate_table")




#: The roles an update uses (the ``dataset`` role is for backtests; a workspace ingests files).
PIPELINE_ROLES: tuple[str, ...] = (
    "generator", "fine_tuner", "knowledge_store", "update_policy", "cost_model", "executor",
)


def resolve_roles(config: PipelineConfig, roles: tuple[str, ...] = PIPELINE_ROLES,
                  source: str = "config") -> dict[str, ResolvedPlugin]:
    """Resolve the pipeline's ``roles`` of ``config`` (one :class:`ConfigError` for all problems)."""
    return resolve(config, source, roles)


def check_config(config: PipelineConfig, roles: tuple[str, ...] = PIPELINE_ROLES,
                 source: str = "config") -> dict[str, ResolvedPlugin]:
    """Everything ``hybridrec init`` checks before it writes a workspace, and ``hybridrec config
    validate`` checks too (the one code path): every plugin of ``roles`` exists and accepts its
    options, and the serving backend exists. Returns the resolved plugins; raises one
    :class:`~hybridrec.errors.HybridrecError` naming every problem's source."""
    from hybridrec.serving import get_backend

    resolved = resolve_roles(config, roles, source=source)
    get_backend(config.serving.backend)
    if "generator" in resolved and "knowledge_store" in resolved:
        gen, store = resolved["generator"], resolved["knowledge_store"]
        problem = evidence_mismatch(gen.cls, gen.options, store.cls, store.options)  # type: ignore[arg-type]
        if problem is not None:
            raise ConfigError(f"{source}: {problem}")
    return resolved


class Pipeline:
    """The configured plugins of a pipeline, instantiated on first use.

    ``Pipeline(config, catalog)`` resolves every role at once (a bad plugin name or option is one
    :class:`~hybridrec.errors.ConfigError` listing all problems); models load lazily.
    """

    def __init__(self, config: PipelineConfig, catalog: ClusterCatalog, *, source: str = "config") -> None:
        self.config = config
        self.catalog = catalog
        self.source = source
        self.resolved: dict[str, ResolvedPlugin] = resolve_roles(config, source=source)
        self._instances: dict[str, Any] = {}

    def _get(self, role: str) -> Any:
        if role not in self._instances:
            self._instances[role] = build(role, getattr(self.config, role), self.catalog,
                                          source=self.source)
        return self._instances[role]

    @property
    def policy(self) -> UpdatePolicy:
        policy: UpdatePolicy = self._get("update_policy")
        return policy

    @property
    def cost_model(self) -> CostModel:
        model: CostModel = self._get("cost_model")
        return model

    @property
    def generator(self) -> Generator:
        generator: Generator = self._get("generator")
        return generator

    @property
    def fine_tuner(self) -> FineTuner:
        tuner: FineTuner = self._get("fine_tuner")
        return tuner

    @property
    def knowledge_store(self) -> KnowledgeStore:
        store: KnowledgeStore = self._get("knowledge_store")
        return store

    @property
    def executor(self) -> TableExecutor:
        executor: TableExecutor = self._get("executor")
        return executor

    def contexts(self, transitions: TransitionSet, action: RegenerateTable, data_until: datetime) -> np.ndarray:
        """The contexts a regeneration ranks: all ordered pairs, or those observed.

        ``"observed"`` applies if either the action or ``[serving] contexts`` asks for it; the
        window is the action's (else all data before ``data_until``).
        """
        if action.contexts == "observed" or self.config.serving.contexts == "observed":
            window = action.observed_window
            if window is None:
                return observed_contexts(transitions.before(data_until))
            return observed_contexts(transitions, window)
        return all_contexts(len(self.catalog))

    def workload(self, kind: ActionKind, transitions: TransitionSet, *, n_window: int,
                 n_contexts: int, use_knowledge: bool = True) -> Workload:
        """What ``kind`` would touch now (instantiates the plugins it needs)."""
        if kind == "noop":
            return Workload()
        return pricing.workload(
            kind, generator=self.generator,
            fine_tuner=self.fine_tuner if kind == "fine_tune" else None,
            store=self.knowledge_store if kind == "refresh_knowledge" else None,
            n_window=n_window, n_contexts=n_contexts, with_evidence=use_knowledge,
        )


__all__ = ["ESTIMATE_KINDS", "PIPELINE_ROLES", "Pipeline", "resolve_roles"]
