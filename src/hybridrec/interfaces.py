"""The five interfaces of hybridrec (plus the Dataset and TableExecutor seams).

Every implementation is a class with two class attributes the core relies on:

* ``name`` — the registry name users put in configs (``"hf"``, ``"annoy"``, ``"hybrid"``);
* ``Options`` — a pydantic model of its options; the core validates config against it, so a wrong
  option is reported with the field and the plugin's name.

Implementations are registered through the ``hybridrec`` entry-point group (see
:mod:`hybridrec.hookspecs`). The docstrings below are the contract: inputs, outputs, invariants.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hybridrec.errors import ConfigError, format_validation_error
from hybridrec.types import (
    SIGNALS,
    Action,
    ActionKind,
    ClusterCatalog,
    CostEstimate,
    CostRecord,
    EvidenceBatch,
    InteractionData,
    Rankings,
    SystemState,
    TimeWindow,
    TransitionSet,
    Workload,
)

if TYPE_CHECKING:
    from hybridrec.plugin_refs import EvidenceConfig


class NoOptions(BaseModel):
    """Options model for implementations that take none."""

    model_config = ConfigDict(extra="forbid")


class Plugin(ABC):
    """What every registered implementation has: a ``name`` and an ``Options`` model."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: role key in the registry; set by each interface below.
    role: ClassVar[str]

    def __init__(self, options: BaseModel | Mapping[str, Any] | None = None) -> None:
        self.options: Any = type(self).validate_options(options)

    @classmethod
    def validate_options(
        cls,
        raw: BaseModel | Mapping[str, Any] | None,
        *,
        source: str | None = None,
        table: str | None = None,
        origins: Mapping[tuple[str, ...], str] | None = None,
    ) -> BaseModel:
        """``raw`` as this plugin's ``Options``: None gives the defaults, an ``Options`` instance
        is kept, a mapping (or another model's fields) is validated. A problem is a
        :class:`~hybridrec.errors.ConfigError` naming the role, the plugin and the field, the
        field under ``[table]`` (the config table the options came from; default
        ``<role>.options``), and, per field, where the value was set when ``origins`` says
        (option path -> "environment HYBRIDREC__...", "--set ...")."""
        if raw is None:
            return cls.Options()
        if isinstance(raw, cls.Options):
            return raw
        role = getattr(cls, "role", "plugin")
        name = getattr(cls, "name", cls.__name__)
        where = f"{source}: " if source else ""
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{where}options for {role} plugin {name!r} must be a mapping or a "
                f"{cls.Options.__name__}, got {type(raw).__name__}"
            )
        try:
            return cls.Options.model_validate(dict(raw))
        except ValidationError as exc:
            # When every bad value was set outside the file, the message leads with where.
            set_by = [_origin_of(tuple(str(p) for p in err["loc"]), origins) for err in exc.errors()]
            if set_by and all(set_by):
                where = ", ".join(dict.fromkeys(str(o) for o in set_by)) + ": "
            raise ConfigError(
                f"{where}invalid options for {role} plugin {name!r}:\n"
                + format_validation_error(
                    exc, f"[{table or role + '.options'}] ", origins, model=cls.Options
                )
            ) from None


    @classmethod
    def evidence_options(cls, recipe: EvidenceConfig, options: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        """The options this plugin takes from the pipeline's evidence recipe (``[evidence]``,
        :class:`~hybridrec.config.EvidenceConfig`), given the options written for it: option
        name -> (the recipe field it comes from, its value). The pipeline fills them in before
        the options are validated, and refuses an option written with another value, so a store,
        a fine-tuner and a generator that all declare theirs cannot disagree about the evidence.
        Default: none (the plugin reads no evidence, or only its own options)."""
        return {}


def _origin_of(loc: tuple[str, ...], origins: Mapping[tuple[str, ...], str] | None) -> str | None:
    """Where the value at ``loc`` (or a table above it) was set, if outside the file."""
    if not origins:
        return None
    return next((origins[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in origins), None)


# ---------------------------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------------------------


class Generator(Plugin):
    """Ranks the next novel cluster for batches of contexts, with optional evidence.

    Constructed as ``Generator(options, catalog)``. Contexts are ``(n, k)`` int arrays of cluster
    ids, oldest first. Contract of :meth:`rank`:

    * returns :class:`Rankings` with ``ids`` of shape ``(n, k)``, best first, scores descending;
    * a row never contains a cluster of its own context, and never repeats a cluster;
    * deterministic for equal inputs, adapter and options (no sampling);
    * ``evidence`` (if given) is aligned row for row with ``contexts`` and never contains labels.
    """

    role: ClassVar[str] = "generator"
    #: How served lists are made. ``"ranking"``: :meth:`rank` scores clusters, and the engine
    #: checks every list of a table it builds (catalog clusters, none twice, none of the context).
    #: ``"generation"``: free text mapped to clusters (the paper's system), so a fine-tune must
    #: also pass the exact-match guardrail on :meth:`generate`.
    serves_by: ClassVar[Literal["ranking", "generation"]] = "ranking"

    def __init__(self, options: BaseModel | Mapping[str, Any] | None, catalog: ClusterCatalog) -> None:
        super().__init__(options)
        self.catalog = catalog

    @classmethod
    def evidence_needs(cls, options: BaseModel) -> frozenset[str]:
        """The optional :class:`~hybridrec.types.EvidenceBatch` fields this generator reads with
        ``options`` (for example ``{"shares", "context_support"}``), so that a knowledge store
        that does not fill them is refused when the stack is configured, not at the first
        regeneration (see :meth:`KnowledgeStore.evidence_provides`). Default: none."""
        return frozenset()

    def guardrail_metrics(self) -> dict[str, str]:
        """The fine-tuner's held-out metrics that must clear a floor before an adapter of this
        generator is served, each with the :class:`~hybridrec.config.GuardrailConfig` field that
        holds its minimum. Default: ``recall`` (``min_recall``), plus ``exact_match_rate``
        (``min_exact_match``) when :attr:`serves_by` is ``"generation"``. A generator whose
        served prompts differ from the plain context (for example prompts with evidence) names
        the metric measured on those prompts."""
        checks = {"recall": "min_recall"}
        if self.serves_by == "generation":
            checks = {"exact_match_rate": "min_exact_match", **checks}
        return checks

    @abstractmethod
    def rank(
        self,
        contexts: np.ndarray,
        evidence: EvidenceBatch | None = None,
        k: int = 5,
        *,
        progress: bool = False,
    ) -> Rankings:
        """Top-``k`` clusters for each context (see the class contract)."""

    @abstractmethod
    def generate(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None = None, *, progress: bool = False
    ) -> list[str]:
        """Free (unconstrained, greedy) generation of one cluster description per context.

        Used by the exact-match guardrail: the share of outputs that equal a catalog description.
        """

    @abstractmethod
    def load_adapter(self, path: Path | None) -> None:
        """Activate the adapter saved at ``path``; ``None`` returns to the base model."""

    @property
    @abstractmethod
    def adapter(self) -> str | None:
        """The identifier (path or version) of the active adapter, or None for the base model."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Parameters used per forward pass (for cost models)."""

    def workload(self, n_contexts: int, *, with_evidence: bool) -> Workload:
        """What ranking ``n_contexts`` touches; the default knows only the parameter count."""
        return Workload(model_parameters=self.num_parameters(), contexts=n_contexts)


# ---------------------------------------------------------------------------------------------
# FineTuner
# ---------------------------------------------------------------------------------------------


class FineTuneResult(BaseModel):
    """What a fine-tune produced: the adapter folder, its manifest and its held-out metrics.

    ``metrics`` holds at least ``exact_match_rate`` and ``recall`` (held-out, for guardrails).
    """

    model_config = ConfigDict(extra="forbid")

    adapter_path: Path
    manifest: dict[str, Any]
    metrics: dict[str, float]
    train_tokens: int = Field(ge=0)
    seconds: float = Field(ge=0)


EvidenceFn = Callable[[np.ndarray, np.ndarray], EvidenceBatch]
"""``evidence_fn(contexts, as_of_ts)``: evidence for each context computed only from data
strictly before that row's ``as_of_ts``. Used for retrieval-augmented training without leakage."""


class FineTuner(Plugin):
    """Turns a window of transitions into a new adapter for a :class:`Generator`.

    Contract of :meth:`fine_tune`:

    * reads only ``transitions`` restricted to ``window`` (and ``evidence_fn`` for RAG prompts,
      which must itself respect each example's time);
    * writes a complete adapter plus ``manifest.json`` into ``out_dir`` (created if missing); if
      ``out_dir`` holds checkpoints of the same job it resumes from the latest one;
    * ``previous_adapter`` (if given and the options ask for a warm start) is the starting point;
    * leaves ``generator`` with the new adapter active, and measures held-out metrics;
    * never decides promotion: guardrails are applied by the caller on ``metrics``.
    """

    role: ClassVar[str] = "fine_tuner"

    @abstractmethod
    def fine_tune(
        self,
        generator: Generator,
        transitions: TransitionSet,
        window: TimeWindow,
        out_dir: Path,
        *,
        previous_adapter: Path | None = None,
        evidence_fn: EvidenceFn | None = None,
        progress: bool = False,
    ) -> FineTuneResult:
        """Train and save an adapter (see the class contract)."""

    @abstractmethod
    def workload(self, n_transitions: int, generator: Generator) -> Workload:
        """What fine-tuning on ``n_transitions`` touches (tokens, parameters, epochs)."""


# ---------------------------------------------------------------------------------------------
# KnowledgeStore
# ---------------------------------------------------------------------------------------------


class StoreCapabilities(BaseModel):
    """What a store can do, so policies and cost models can tell stores apart."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    immutable_snapshots: bool = True
    incremental_add: bool = False
    memory_mapped: bool = False


class KnowledgeSnapshot(ABC):
    """An immutable, built knowledge snapshot: evidence for contexts from one time window.

    Contract of :meth:`evidence`: rows align with ``contexts``; every item's support comes only
    from transitions inside :attr:`window` (borrowed items say so in their provenance); a context
    without evidence gets an all-``-1`` row; deterministic.
    """

    id: str
    window: TimeWindow
    manifest: dict[str, Any]

    @abstractmethod
    def evidence(self, contexts: np.ndarray, m: int | None = None) -> EvidenceBatch:
        """Top-``m`` evidence items per context (``m`` defaults to the store's option)."""


def evidence_mismatch(generator: type[Generator], generator_options: BaseModel,
                      store: type[KnowledgeStore], store_options: BaseModel) -> str | None:
    """Why the store cannot feed the generator (declared needs against declared provisions), or
    None when it can or the store does not declare what it provides."""
    needs = generator.evidence_needs(generator_options)
    provides = store.evidence_provides(store_options)
    if not needs or provides is None or needs <= provides:
        return None
    missing = ", ".join(sorted(needs - provides))
    return (f"generator {generator.name!r} reads evidence fields that knowledge store "
            f"{store.name!r} does not fill with these options: {missing} (it fills "
            f"{', '.join(sorted(provides)) or 'none of the optional fields'})")


def snapshot_evidence(snapshot: KnowledgeSnapshot, contexts: np.ndarray, m: int | None = None,
                      *, store: str | None = None) -> EvidenceBatch:
    """``snapshot.evidence(contexts, m)``, checked at the boundary: an
    :class:`~hybridrec.types.EvidenceBatch` with one row per context, for those contexts. A
    snapshot that breaks the contract raises :class:`~hybridrec.errors.PluginError` naming the
    store (``store``, else the snapshot's class) instead of failing later inside a generator."""
    from hybridrec.errors import PluginError

    who = f"knowledge store {store!r}" if store else f"knowledge snapshot {type(snapshot).__name__}"
    contexts = np.asarray(contexts)
    batch = snapshot.evidence(contexts, m)
    if not isinstance(batch, EvidenceBatch):
        raise PluginError(f"{who} returned {type(batch).__name__} from evidence(), not an EvidenceBatch")
    if len(batch) != contexts.shape[0]:
        raise PluginError(f"{who} returned {len(batch)} evidence rows for {contexts.shape[0]} "
                          "contexts (one row per context is the contract)")
    if batch.contexts.shape == contexts.shape and not np.array_equal(batch.contexts, contexts):
        raise PluginError(f"{who} returned evidence rows for other contexts than asked")
    return batch


class KnowledgeStore(Plugin):
    """Builds and opens knowledge snapshots. Constructed as ``KnowledgeStore(options, catalog)``.

    :meth:`build` writes a complete snapshot (data plus ``manifest.json`` with checksums) into
    ``out_dir`` and returns it opened. ``transitions`` may hold more than ``window``; the store
    reads only ``window`` (and, for trend scoring, the window of equal length just before it).
    :meth:`open` verifies checksums and raises :class:`~hybridrec.errors.CorruptArtifactError`
    on a truncated or corrupt snapshot.
    """

    role: ClassVar[str] = "knowledge_store"
    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities()

    @classmethod
    def evidence_provides(cls, options: BaseModel) -> frozenset[str] | None:
        """The optional :class:`~hybridrec.types.EvidenceBatch` fields this store fills with
        ``options`` (``shares``, ``context_support``, ``recent``, ``similarity``, ``source``), or
        None when it does not say (then only the run can tell). A generator whose
        :meth:`Generator.evidence_needs` it does not cover is refused at validation."""
        return None

    def __init__(self, options: BaseModel | Mapping[str, Any] | None, catalog: ClusterCatalog) -> None:
        super().__init__(options)
        self.catalog = catalog

    @abstractmethod
    def build(
        self, transitions: TransitionSet, window: TimeWindow, out_dir: Path
    ) -> KnowledgeSnapshot:
        """Build a snapshot of ``window`` into ``out_dir``."""

    @abstractmethod
    def open(self, path: Path) -> KnowledgeSnapshot:
        """Open (and verify) a snapshot previously built into ``path``."""

    def workload(self, n_transitions: int, n_contexts: int) -> Workload:
        """What building from ``n_transitions`` and serving ``n_contexts`` touches."""
        return Workload(transitions=n_transitions, contexts=n_contexts)


# ---------------------------------------------------------------------------------------------
# UpdatePolicy
# ---------------------------------------------------------------------------------------------


class UpdatePolicy(Plugin):
    """Decides what to do next from the :class:`SystemState` alone.

    Contract of :meth:`decide`:

    * **pure**: the result depends only on ``state`` and the options (no clock, no I/O, no
      randomness, no mutable attributes); equal states give equal decisions;
    * every action's data window ends at or before ``state.data_until`` (nothing from the future);
    * no ``fine_tune`` while ``state.pending_fine_tune``;
    * actions are executed in the order returned; an empty list means "nothing to do".

    ``needs`` names the measured signals :meth:`decide` reads (keys of
    :data:`hybridrec.types.SIGNALS`): ``"drift"`` fills ``state.drift.top5_jaccard`` and
    ``pairs``, ``"recall"`` the served lists' ``recall_recent``, ``recall_at_training`` and
    ``recall_at_table``, ``"freshness"`` the counterfactual ``refresh_gain`` and its
    ``refresh_gain_se``. The engine (workspace and backtest) measures every signal a policy
    needs and warns (:class:`hybridrec.engine.state.SignalWarning`) when it cannot; a signal
    not needed may be left unmeasured (``None``), so a policy must not read what it did not
    declare. The default, every signal, suits a policy that does not say; ``frozenset()``
    (reads none) saves the backtest the work.
    """

    role: ClassVar[str] = "update_policy"
    needs: ClassVar[frozenset[str]] = frozenset(SIGNALS)

    @abstractmethod
    def decide(self, state: SystemState) -> list[Action]:
        """The actions to run now (see the class contract)."""

    def knowledge_bound(self) -> timedelta | None:
        """The longest the served knowledge may lag ``data_until``; None if not bounded."""
        return None


# ---------------------------------------------------------------------------------------------
# CostModel
# ---------------------------------------------------------------------------------------------


class CostModel(Plugin):
    """Prices an action before it runs and records what it cost after.

    :meth:`estimate` is deterministic in ``(action, workload)``. :meth:`record` turns an estimate
    plus measurements into a ledger :class:`CostRecord`.
    """

    role: ClassVar[str] = "cost_model"

    @abstractmethod
    def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
        """Price ``action`` on ``workload``."""

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
        """A ledger record: flops and money as estimated, seconds as measured."""
        return CostRecord(
            action=action,
            at=at,
            estimate=estimate,
            flops=estimate.flops,
            seconds=max(0.0, seconds),
            money=estimate.money,
            versions_in=versions_in or {},
            versions_out=versions_out or {},
            status=status,  # type: ignore[arg-type]
            note=note,
        )


# ---------------------------------------------------------------------------------------------
# Dataset and TableExecutor
# ---------------------------------------------------------------------------------------------


class Dataset(Plugin):
    """Loads an interaction log and its item metadata.

    Contract of :meth:`load`: malformed rows never crash the load and are never silently dropped:
    each becomes a :class:`~hybridrec.types.QuarantineRecord` (file, row, field, reason) in the
    result and, if ``quarantine`` is given, a JSON line in that file. A missing file, missing
    columns or an empty file raise :class:`~hybridrec.errors.DataError` naming what is missing.
    """

    role: ClassVar[str] = "dataset"

    @abstractmethod
    def load(self, *, quarantine: Path | None = None, progress: bool = False) -> InteractionData:
        """Load the data set (see the class contract)."""


class TableExecutor(Plugin):
    """Runs bulk table generation: ranks every context of a job and streams rows to a sink.

    Contract of :meth:`run`: calls ``sink`` with :class:`Rankings` batches whose contexts,
    concatenated, are a permutation-free copy of ``job.contexts`` in order; each context exactly
    once (retries never duplicate rows); returns the number of rows written.
    """

    role: ClassVar[str] = "executor"

    @abstractmethod
    def run(
        self,
        job: Any,
        sink: Callable[[Rankings], None],
        *,
        generator: Generator | None = None,
        progress: bool = False,
    ) -> int:
        """Execute ``job`` (a :class:`hybridrec.generation.TableJob`)."""


ROLES: dict[str, type[Plugin]] = {
    "generator": Generator,
    "fine_tuner": FineTuner,
    "knowledge_store": KnowledgeStore,
    "update_policy": UpdatePolicy,
    "cost_model": CostModel,
    "dataset": Dataset,
    "executor": TableExecutor,
}

__all__ = [
    "ROLES",
    "Action",
    "CostModel",
    "Dataset",
    "EvidenceFn",
    "FineTuneResult",
    "FineTuner",
    "Generator",
    "KnowledgeSnapshot",
    "KnowledgeStore",
    "NoOptions",
    "Plugin",
    "StoreCapabilities",
    "TableExecutor",
    "UpdatePolicy",
    "snapshot_evidence",
]
