"""What a backtest runs: the data, the window, the arms and the LLM stack (a pydantic model).

A ``--config`` TOML file holds these fields at top level (or under ``[backtest]``)::

    dataset = "ml-1m"
    start = 2000-06-01
    end = 2001-01-01          # exclusive
    arms = ["hybrid", "markov-all"]   # built-in arms by name, or [arms.<name>] tables (below)
    seeds = 3                 # training seeds of the LLM arms (counting arms run once)
    tie_break = "popularity"  # markov-all / markov-recent: ties by successor popularity or "id"

    [markov_backoff]          # see hybridrec.backtest.baselines
    alpha = 128.0
    w_last = 0.7
    w_skip = 0.3
    w_pop = 0.0
    window_days = 30          # omit for all history
    half_life_days = 60.0     # omit for no decay

    [markov_best]
    validation_days = 14      # the days before start the configuration is chosen on

    [llm]
    regenerate = "delta"      # or "full": how regenerations with an unchanged adapter are charged

    [llm.evidence]            # the evidence recipe the store, fine-tuner and generator share
    candidates = 10
    recent_days = 3           # omit for no recent window

    [llm.generator]
    plugin = "hf"
    options = { preset = "tiny", template = "rerank" }

    [llm.policies.hybrid]
    plugin = "hybrid"
    options = { fine_tune_every_days = 30, rag_every_days = 4 }

    [tune]                    # the LLM stack's search space on the validation days
    candidates = [10, 16, 5]  # (hybridrec tune; backtest --tune)

Arms may instead be declared as tables, each a free name (the report's name for it)::

    [arms.drift-gated]                    # an LLM arm: a policy plugin and its options
    policy = { plugin = "adaptive", options = { rule = "drift" } }
    cost_model = { plugin = "flops" }     # optional per-arm generator, fine_tuner,
                                          # knowledge_store, cost_model (see ArmSpec)
    [arms.hybrid]                         # a built-in arm: its preset, as in the list form
    [arms.backoff-60d]                    # a counting preset with its own options
    preset = "markov-backoff"
    options = { half_life_days = 60.0 }

The built-in arm names (:data:`ALL_ARMS`) are presets of the same mechanism: ``arms = ["hybrid"]``
is ``[arms.hybrid]``, whose policy is ``llm.policies["hybrid"]`` (:data:`DEFAULT_POLICIES`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybridrec.config import (
    DataConfig,
    EvidenceConfig,
    GuardrailConfig,
    InitialFineTuneConfig,
    PipelineConfig,
    PluginRef,
    ServingConfig,
    SignalsConfig,
)
from hybridrec.errors import ConfigError, did_you_mean, field_names
from hybridrec.plugins import apply_recipe
from hybridrec.presets import DEFAULT_PRESET, preset_data
from hybridrec.types import UTC, Budget

LLM_ARMS: tuple[str, ...] = (
    "no-update", "ft-monthly", "ft-weekly", "rag-only", "rag-once", "hybrid", "adaptive",
)
BASELINE_ARMS: tuple[str, ...] = (
    "markov-all", "markov-recent", "markov-backoff", "markov-best", "popularity",
)
ALL_ARMS: tuple[str, ...] = LLM_ARMS + BASELINE_ARMS

#: The stack the LLM arms share by default: the shipped ``rerank`` preset
#: (``src/hybridrec/presets/rerank.toml``; each value's validation is in docs/backtest.md,
#: "The rerank preset's choices"). The names below are views of that file, kept for scripts.
_PRESET = preset_data(DEFAULT_PRESET)
#: The preset's evidence recipe (``[evidence]``): the store, the fine-tuner, the generator and the
#: RAG policies take their evidence options from it.
DEMO_EVIDENCE: dict[str, Any] = dict(_PRESET["evidence"])
#: Knowledge window of the preset's RAG arms and of its fine-tuner's training evidence (ten
#: years: all history on ML-1M): the recipe's ``history_days``.
ALL_HISTORY_DAYS = float(DEMO_EVIDENCE["history_days"])
#: Candidate slots per prompt (generator ``evidence_items`` and store ``m``): the recipe's.
DEMO_EVIDENCE_ITEMS = int(DEMO_EVIDENCE["candidates"])
_CADENCE: dict[str, Any] = dict(_PRESET["update_policy"]["options"])

#: The policy behind each LLM arm (docs/protocol.md; see :mod:`hybridrec_policies.policies`):
#: ``hybrid`` is the preset's policy; the baselines run its cadences alone (fine-tunes every
#: ``fine_tune_every_days`` or weekly; refreshes every ``rag_every_days``). Each RAG policy's
#: ``knowledge_days`` comes from the evidence recipe (``[llm.evidence] history_days``).
DEFAULT_POLICIES: dict[str, PluginRef] = {
    "no-update": PluginRef(plugin="static"),
    "ft-monthly": PluginRef(plugin="periodic-finetune",
                            options={"period_days": _CADENCE["fine_tune_every_days"]}),
    "ft-weekly": PluginRef(plugin="periodic-finetune", options={"period_days": 7}),
    "rag-only": PluginRef(plugin="periodic-rag", options={"period_days": _CADENCE["rag_every_days"]}),
    "rag-once": PluginRef(plugin="rag-once"),
    "hybrid": PluginRef(plugin=_PRESET["update_policy"]["plugin"], options=dict(_CADENCE)),
    "adaptive": PluginRef(plugin="adaptive"),
}

#: The preset's generator, fine-tuner and store options as written (the recipe not applied);
#: ``DEMO_GENERATOR``, ``DEMO_FINE_TUNE`` and ``DEMO_STORE`` (module attributes, resolved on first
#: use: resolving loads the plugins) are the same with the recipe's options filled in.
_WRITTEN: dict[str, dict[str, Any]] = {
    role: dict(_PRESET[role].get("options", {})) for role in ("generator", "fine_tuner", "knowledge_store")
}
_RESOLVED_VIEWS = {"DEMO_GENERATOR": "generator", "DEMO_FINE_TUNE": "fine_tuner", "DEMO_STORE": "knowledge_store"}


def __getattr__(name: str) -> Any:
    # DEMO_GENERATOR, DEMO_FINE_TUNE, DEMO_STORE and FULL_FINE_TUNE: resolving the preset loads
    # the plugins (and torch), which importing this module must not do.
    if name in _RESOLVED_VIEWS:
        return dict(_preset_resolved()[_RESOLVED_VIEWS[name]])
    if name == "FULL_FINE_TUNE":
        return _full_fine_tune()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _preset_resolved() -> dict[str, dict[str, Any]]:
    from hybridrec.config import load_preset

    config = load_preset(DEFAULT_PRESET)
    return {role: dict(getattr(config, role).options) for role in _WRITTEN}


def _full_fine_tune() -> dict[str, Any]:
    """The stronger fine-tune (``FULL_FINE_TUNE``): every weight of the warm-started tiny model,
    one epoch over the window's most recent 30,000 examples, and the result kept only if the
    held-out tail's answer NLL (1,000 transitions, never trained on) is lower than the starting
    model's (``select_epoch``); the preset's other fine-tune options."""
    return {**_preset_resolved()["fine_tuner"], **TUNE_FINE_TUNES["full"]}


#: Overrides for the one shared initial fine-tune (the preset's ``[initial_fine_tune]``): it
#: trains the base model from scratch on all history before the start.
DEMO_INITIAL_FINE_TUNE: dict[str, Any] = dict(_PRESET["initial_fine_tune"]["options"])
#: ``--quick``: a smaller initial fine-tune (about 4x cheaper) so the smoke study stays under 3 min.
QUICK_INITIAL_FINE_TUNE: dict[str, Any] = {"max_examples": 6000, "base_epochs": 6}


#: The shared roles the evidence recipe fills (besides each arm's policy).
_RECIPE_ROLES: tuple[str, ...] = ("generator", "fine_tuner", "knowledge_store")


class LLMSettings(BaseModel):
    """The plugins and knobs shared by every LLM arm."""

    model_config = ConfigDict(extra="forbid")

    evidence: EvidenceConfig = Field(
        default_factory=lambda: EvidenceConfig.model_validate(DEMO_EVIDENCE),
        description="The evidence recipe of every LLM arm (a pipeline's [evidence]): the "
        "store's, the fine-tuner's, the generator's and the RAG policies' evidence options come "
        "from it, and may be written in their tables only with the same values.")
    generator: PluginRef = Field(
        default_factory=lambda: PluginRef(plugin=_PRESET["generator"]["plugin"],
                                          options=dict(_WRITTEN["generator"]))
    )
    fine_tuner: PluginRef = Field(
        default_factory=lambda: PluginRef(plugin=_PRESET["fine_tuner"]["plugin"],
                                          options=dict(_WRITTEN["fine_tuner"])),
        description="Cost knobs chosen so the whole default study fits 20 minutes on 2 CPU cores.",
    )
    knowledge_store: PluginRef = Field(
        default_factory=lambda: PluginRef(plugin=_PRESET["knowledge_store"]["plugin"],
                                          options=dict(_WRITTEN["knowledge_store"])),
        description="The preset's counts store: every context's candidates ranked by the counting estimator over the knowledge window (the evidence recipe's), with the count evidence the rerank template renders (no neighbour index).",
    )
    cost_model: PluginRef = Field(default_factory=lambda: PluginRef(**_PRESET["cost_model"]))
    initial_fine_tune_options: dict[str, Any] = Field(
        default_factory=lambda: dict(DEMO_INITIAL_FINE_TUNE),
        description="Fine-tuner options merged over fine_tuner.options for the shared initial adapter.",
    )
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)
    policies: dict[str, PluginRef] = Field(default_factory=lambda: dict(DEFAULT_POLICIES))
    budget: Budget = Field(default_factory=Budget)
    table_k: int = Field(default=int(_PRESET["serving"]["k"]), ge=5, le=100, description="Width of a generated table row.")
    evidence_m: int | None = Field(default=None, ge=1, description="Evidence items per context (store default if unset).")
    warmup_days: int | None = Field(
        default=None, ge=1,
        description="Days before the test window the shared initial adapter trains on; None: all "
        "history before it (the initial fine-tune's max_examples keeps the most recent examples).",
    )
    signals: SignalsConfig = Field(
        default_factory=SignalsConfig,
        description="The signals the engine measures for policies and the serving fallback's data "
        "(the [signals] section of a pipeline config, with the same defaults).")
    training_evidence: Literal["fine_tuner", "store"] = Field(
        default="fine_tuner",
        description="Evidence in training prompts: the fine-tuner's own (leak-free, per example), "
        "or a knowledge snapshot of the training_knowledge_days before the training window.",
    )
    training_knowledge_days: int = Field(default=14, ge=1)
    regenerate: Literal["delta", "full"] = Field(
        default="delta",
        description="How a regeneration that keeps the adapter is charged: 'delta' ranks (and "
        "charges) only the contexts whose rendered prompt changed since the arm's previous table, "
        "copying the other rows (exact: a row is a function of adapter and prompt); 'full' "
        "re-ranks every context. Served lists are identical either way.",
    )
    regenerate_tolerance: float = Field(
        default=float(_PRESET["serving"].get("tolerance", 0.0)), ge=0.0, le=1.0,
        description="The material-change rule of every LLM arm's delta regenerations (a pipeline's "
        "serving.tolerance; a policy's regenerate_tolerance overrides it for its arm).",
    )
    max_row_age_days: float | None = Field(
        default=_PRESET["serving"].get("max_row_age_days"), gt=0,
        description="The staleness bound of every LLM arm's regenerations (a pipeline's "
        "serving.max_row_age_days; a policy's regenerate_max_age_days overrides it).",
    )
    candidate_estimator: Literal["validation", "configured"] = Field(
        default="validation",
        description="validation: when the knowledge store ranks by the backoff estimator "
        "(granularity 'backoff'), its smoothing, weights, window and decay, and the "
        "fine-tuner's matching evidence options, are chosen like markov-best's, on the "
        "validation days before the test start, among markov-best's backoff configurations; "
        "configured: the options as written.",
    )
    drift_arms: list[str] = Field(default_factory=list, description="Arms whose state carries every signal (drift, recall and freshness) whatever their policy's `needs`; every other arm gets the signals its policy declares (UpdatePolicy.needs).")
    measure_rag_agreement: bool = Field(default=True, description="Also rank RAG arms' contexts without evidence, to report how often RAG changes the output.")

    def initial_fine_tune(self) -> InitialFineTuneConfig:
        """The shared initial fine-tune as a pipeline's ``[initial_fine_tune]`` section."""
        return InitialFineTuneConfig(
            options=dict(self.initial_fine_tune_options),
            window_days="all" if self.warmup_days is None else float(self.warmup_days))

    @field_validator("policies")
    @classmethod
    def _known_arms(cls, value: dict[str, PluginRef]) -> dict[str, PluginRef]:
        unknown = sorted(set(value) - set(LLM_ARMS))
        if unknown:
            raise ValueError(f"policies for unknown arms {unknown}; LLM arms are {list(LLM_ARMS)}")
        return {**DEFAULT_POLICIES, **value}

    @model_validator(mode="after")
    def _evidence(self) -> LLMSettings:
        # the recipe sets every side (evidence_problems is for configs without one)
        for name, value in self._with_recipe(self.evidence, strict=True).items():
            setattr(self, name, value)
        return self

    def with_evidence(self, recipe: EvidenceConfig) -> LLMSettings:
        """These settings with another evidence recipe (a choice made in code, e.g. on the
        validation days): its options replace the ones the current recipe filled."""
        return self.model_copy(update={"evidence": recipe, **self._with_recipe(recipe, strict=False)})

    def _with_recipe(self, recipe: EvidenceConfig, *, strict: bool) -> dict[str, Any]:
        """The shared roles and the policies with ``recipe`` filled in (see
        :func:`hybridrec.plugins.apply_recipe`)."""
        tables = {f"llm.{role}.options": (role, getattr(self, role)) for role in _RECIPE_ROLES}
        tables.update({f"llm.policies.{arm}.options": ("update_policy", ref)
                       for arm, ref in self.policies.items()})
        applied = apply_recipe(recipe, tables, strict=strict, section="[llm.evidence]")
        return {**{role: applied[f"llm.{role}.options"] for role in _RECIPE_ROLES},
                "policies": {arm: applied[f"llm.policies.{arm}.options"] for arm in self.policies}}


class BackoffOptions(BaseModel):
    """``markov-backoff``: Dirichlet-smoothed pair counts backed off to last-cluster shares,
    first-cluster skip-gram shares and popularity (see :mod:`hybridrec.backtest.baselines`).

    The defaults are what ``markov-best``'s validation chose on ML-1M (the 14 days before
    2000-06-01, scored prequentially) among the all-history, undecayed backoff configurations of
    its grid; no test day was looked at.
    """

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(default=128.0, ge=0, description="Smoothing strength (pseudo-counts of the backoff distribution).")
    w_last: float = Field(default=0.7, ge=0, description="Weight of P(c3 | last context cluster c2).")
    w_skip: float = Field(default=0.3, ge=0, description="Weight of P(c3 | first context cluster c1) (skip-gram).")
    w_pop: float = Field(default=0.0, ge=0, description="Weight of successor popularity.")
    window_days: int | None = Field(default=None, ge=1, description="Trailing count window in days (None: all history).")
    half_life_days: float | None = Field(default=None, gt=0, description="Exponential decay half-life in days (None: no decay).")

    @model_validator(mode="after")
    def _weights(self) -> BackoffOptions:
        if self.w_last + self.w_skip + self.w_pop <= 0:
            raise ValueError("the backoff weights w_last, w_skip, w_pop must not all be zero")
        return self

    def counting_config(self) -> Any:
        from hybridrec.estimators.counting import CountingConfig

        return CountingConfig(
            kind="backoff", alpha=self.alpha, w_last=self.w_last, w_skip=self.w_skip,
            w_pop=self.w_pop, window_days=self.window_days, half_life_days=self.half_life_days,
        )


class MarkovBestOptions(BaseModel):
    """``markov-best``: which validation days choose the counting configuration (the grid is
    :data:`hybridrec.estimators.counting.COUNTING_GRID`)."""

    model_config = ConfigDict(extra="forbid")

    validation_days: int = Field(default=14, ge=1, description="The days before start the choice is scored on.")
    metric: Literal["hr@5", "hr@1", "ndcg@5"] = "hr@5"


#: The fine-tune recipes ``[tune]`` compares by default besides the study's own: the full
#: fine-tune (:data:`FULL_FINE_TUNE`'s changes over the preset's fine-tuner options), and the
#: same examples drawn evenly over the whole window since the last fine-tune instead of its
#: last days (``sample = "window"``, at the same cost).
TUNE_FINE_TUNES: dict[str, dict[str, Any]] = {
    "full": {"mode": "full", "select_epoch": True, "epochs": 1.0, "max_examples": 30000,
             "holdout_max": 1000},
    "window": {"sample": "window"},
}


class TuneConfig(BaseModel):
    """``[tune]``: the LLM stack's search space, scored on the validation days before the test
    start (:mod:`hybridrec.backtest.tune`; docs/protocol.md, "Validation chooses the LLM stack").

    The study's stack as configured is the incumbent. Each value below that differs from it is
    one candidate, changed in that dimension only; each dimension keeps the best of its
    candidates by markov-best's rule (the validation metric, day-level paired comparison, a tie
    goes to the cheaper), and the dimensions' choices apply together (their combination is scored,
    and the best single change replaces it only if it beats it).
    Nothing after the start is read. ``hybridrec tune`` writes the chosen stack as a pipeline
    file; ``hybridrec backtest --tune`` (or ``enabled``) then runs the test days with it.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="The backtest chooses the stack before its test days (`hybridrec backtest --tune` sets it).")
    arm: str = Field(default="hybrid", description="The LLM arm whose policy takes the policy candidates and whose pipeline `hybridrec tune` writes.")
    validation_days: int | None = Field(default=None, ge=2, description="The days before the start the candidates are scored on (default: markov_best.validation_days, the counting arms' days).")
    recent_days: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0, 3], description="The evidence recipe's recent window in days (0: none).")
    candidates: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [10, 16, 5],
        description="The evidence recipe's candidate slots per prompt (as many as the served list: "
        "the model only reorders the counting estimator's list).")
    policy: dict[str, list[float]] = Field(
        default_factory=lambda: {"rag_every_days": [1.0, 2.0, 4.0]},
        description="Options of the tuned arm's policy and their values (the refresh cadence).")
    fine_tune: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {k: dict(v) for k, v in TUNE_FINE_TUNES.items()},
        description="Named fine-tune recipes: changes to the fine-tuner's options for the periodic "
        "fine-tunes (the base model is kept: the initial fine-tune pins what they change).")
    fine_tune_probe: dict[str, Any] = Field(
        default_factory=lambda: {"fine_tune_every_days": 7.0},
        description="Policy options that make a fine-tune run inside the validation days, set on "
        "every candidate that compares fine-tune recipes (a monthly fine-tune would not run there); "
        "the chosen recipe is deployed with the tuned cadence.")
    combine: bool = Field(default=True, description="Score the combination when several dimensions changed (off: the single change with the best validation mean).")
    max_runs: int = Field(default=8, ge=1, description="The most validation replays (each trains its own base model; the default space needs 6, its combination a 7th and the floor an 8th); candidates past it are reported as not run.")

    @field_validator("fine_tune")
    @classmethod
    def _recipes(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if "configured" in value:
            raise ValueError("'configured' names the study's own fine-tune recipe; name yours otherwise")
        return value


class MarkovOptions(BaseModel):
    """``markov-all`` / ``markov-recent`` options of a counting arm (defaults: the study's
    ``tie_break`` and, for ``markov-recent``, ``markov_recent_days``)."""

    model_config = ConfigDict(extra="forbid")

    window_days: int | None = Field(default=None, ge=1, description="Trailing count window in days (None: all history).")
    tie_break: Literal["popularity", "id"] = "popularity"


class PopularityOptions(BaseModel):
    """``popularity`` has no options."""

    model_config = ConfigDict(extra="forbid")


#: The options model of each counting preset (``[arms.<name>] options``).
COUNTING_OPTIONS: dict[str, type[BaseModel]] = {
    "markov-all": MarkovOptions, "markov-recent": MarkovOptions, "markov-backoff": BackoffOptions,
    "markov-best": MarkovBestOptions, "popularity": PopularityOptions,
}
#: The per-arm overrides of the shared LLM stack an ``[arms.<name>]`` table may set.
STACK_ROLES: tuple[str, ...] = ("generator", "fine_tuner", "knowledge_store", "cost_model")


def _suggest(name: str, known: list[str] | tuple[str, ...]) -> str:
    return did_you_mean(name, known, n=1)


def _error_lines(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    """``loc: msg`` per error of ``exc`` (validating ``model``); an unknown field gets a "did you
    mean" with the closest valid field at its location."""
    lines = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        hint = (_suggest(str(loc[-1]), field_names(model, loc[:-1]))
                if e["type"] == "extra_forbidden" and loc else "")
        lines.append(f"{'.'.join(map(str, loc)) or '(root)'}: {e['msg']}{hint}")
    return lines


class ArmSpec(BaseModel):
    """One arm of a study, ``[arms.<name>]``; its name is the table's (free, shown in reports).

    * **LLM arm**: ``policy`` (an ``update_policy`` plugin and its options), or a ``preset`` among
      :data:`LLM_ARMS` (its policy is ``llm.policies[preset]``). ``generator``, ``fine_tuner``,
      ``knowledge_store`` and ``cost_model`` override the shared ``[llm]`` stack for this arm
      only. A per-arm ``cost_model`` prices and records the arm's actions while the work stays
      shared with the other arms. A per-arm generator, fine-tuner or store gives the arm a stack
      of its own (with its own work cache and shared initial adapter, trained like the shared
      one from ``llm.initial_fine_tune_options``, as setup charged to no arm); arms with the
      same overrides share that stack. A role set to exactly the shared plugin and options is
      no override.
    * **Counting arm**: a ``preset`` among :data:`BASELINE_ARMS` and, optionally, ``options``
      for it (:data:`COUNTING_OPTIONS`) over the study-wide ones (``tie_break``,
      ``markov_recent_days``, ``[markov_backoff]``, ``[markov_best]``).

    ``preset`` defaults to the arm's name when that is a built-in arm, so ``[arms.hybrid]`` (an
    empty table) is the ``hybrid`` arm and ``arms = ["hybrid"]`` means the same.
    """

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field(default=None, description="A built-in arm this arm is (LLM: its policy; counting: its model).")
    policy: PluginRef | None = Field(default=None, description="The update policy (LLM arms); replaces the preset's.")
    generator: PluginRef | None = None
    fine_tuner: PluginRef | None = None
    knowledge_store: PluginRef | None = None
    cost_model: PluginRef | None = None
    budget: Budget | None = Field(default=None, description="LLM arms: this arm's own budget (the "
                                  "study-wide llm.budget otherwise).")
    options: dict[str, Any] = Field(default_factory=dict, description="Counting presets only: their options.")

    def preset_of(self, name: str) -> str | None:
        """The preset: ``preset``, else ``name`` if it is a built-in arm, else None."""
        return self.preset if self.preset is not None else (name if name in ALL_ARMS else None)

    def problems(self, name: str) -> list[str]:
        """What is wrong with this table as arm ``name`` (empty when it is valid)."""
        table = f"[arms.{name}]"
        preset = self.preset_of(name)
        if self.preset is not None and self.preset not in ALL_ARMS:
            return [f"{table} preset {self.preset!r} is not a built-in arm{_suggest(self.preset, ALL_ARMS)}; "
                    f"presets are {', '.join(ALL_ARMS)}"]
        if self.policy is None and preset is None:
            return [f"{table} needs a policy, e.g. policy = {{ plugin = \"hybrid\" }} (an update_policy "
                    f"plugin: `hybridrec plugins`), or a preset{_suggest(name, ALL_ARMS)}: "
                    f"{', '.join(ALL_ARMS)}"]
        if preset in BASELINE_ARMS:
            if self.policy is not None:
                return [f"{table} preset {preset!r} is a counting arm: it takes no policy"]
            stack = [r for r in (*STACK_ROLES, "budget") if getattr(self, r) is not None]
            if stack:
                return [f"{table} preset {preset!r} is a counting arm: it takes no {', '.join(stack)}"]
            try:
                COUNTING_OPTIONS[preset].model_validate(self.options)
            except ValidationError as exc:
                return [f"{table} options of {preset!r}: "
                        + "; ".join(_error_lines(exc, COUNTING_OPTIONS[preset]))]
            return []
        if self.options:
            return [f"{table} options apply to counting presets only; a policy's options go in "
                    "policy = { plugin = ..., options = { ... } }"]
        return []


@dataclass(frozen=True)
class ArmPlan:
    """An arm of a study resolved against the study's settings: what :func:`build_arms` builds.

    LLM arms have ``policy`` and the effective ``generator``, ``fine_tuner``,
    ``knowledge_store`` and ``cost_model`` (the arm's overrides, else the shared ``[llm]``
    ones); ``policy_table`` is the study table the policy came from (for error messages).
    Counting arms have ``counting``, their validated options."""

    name: str
    preset: str | None
    policy: PluginRef | None = None
    policy_table: str = ""
    generator: PluginRef | None = None
    fine_tuner: PluginRef | None = None
    knowledge_store: PluginRef | None = None
    cost_model: PluginRef | None = None
    counting: BaseModel | None = None
    #: the stack roles this arm overrides (the rest are the shared stack's)
    overrides: tuple[str, ...] = ()
    #: the arm's own budget (None: the study's ``llm.budget``)
    budget: Budget | None = None

    @property
    def llm(self) -> bool:
        return self.policy is not None

    @property
    def own_stack(self) -> bool:
        """Whether the arm needs a stack of its own (a per-arm generator, fine-tuner or store)."""
        return any(r in self.overrides for r in ("generator", "fine_tuner", "knowledge_store"))

    def stack_key(self) -> str:
        """Arms with equal keys share a stack."""
        import json

        refs = [getattr(self, r).model_dump(mode="json") if getattr(self, r) is not None else None
                for r in ("generator", "fine_tuner", "knowledge_store")]
        return json.dumps(refs, sort_keys=True, default=str)

    def describe(self) -> dict[str, Any]:
        """The report's ``arms[].config`` of an LLM arm: its preset, policy and stack plugins
        with their options (``shared`` lists the roles taken from the shared ``[llm]`` stack)."""
        out: dict[str, Any] = {"preset": self.preset}
        for role in ("policy", *STACK_ROLES):
            ref = getattr(self, role)
            out[role] = None if ref is None else ref.model_dump(mode="json")
        out["shared"] = [r for r in STACK_ROLES if r not in self.overrides]
        if self.budget is not None:
            out["budget"] = self.budget.model_dump(mode="json")
        return out


class Claim(BaseModel):
    """A claim the study makes and its report checks: ``arm`` beats every arm of ``beats`` on
    ``metric`` (the paired 95% CI above zero for every training seed), optionally at no more than
    ``max_cost_ratio`` times ``cost_reference``'s flops. Met only if every compared arm ran and
    every comparison holds; not met if one that ran fails; otherwise not measured (docs/backtest.md
    § Claims)."""

    model_config = ConfigDict(extra="forbid")

    arm: str = Field(min_length=1)
    beats: list[str] = Field(min_length=1)
    metric: Literal["hr@1", "hr@5", "ndcg@5"] = "hr@5"
    max_cost_ratio: float | None = Field(default=None, gt=0)
    cost_reference: str | None = None
    name: str | None = Field(default=None, description="The label the report shows (default: "
                             "the claim spelled out).")

    @model_validator(mode="after")
    def _cost(self) -> Claim:
        if (self.max_cost_ratio is None) != (self.cost_reference is None):
            raise ValueError("max_cost_ratio and cost_reference go together (at most "
                             "max_cost_ratio times cost_reference's flops)")
        return self

    def label(self) -> str:
        if self.name:
            return self.name
        others = ", ".join(self.beats)
        cost = (f" at <= {self.max_cost_ratio:g}x {self.cost_reference}'s flops"
                if self.max_cost_ratio is not None else "")
        return (f"{self.arm} beats {others} on {self.metric.upper()}, paired 95% CI above zero "
                f"for every seed{cost}")


#: The demo study's claims (`hybridrec demo`): hybrid beats every other LLM arm at a quarter of
#: ft-weekly's flops, and beats the counting baselines markov-all and markov-best.
DEMO_CLAIMS: tuple[Claim, ...] = (
    Claim(name="Goal 1 (hybrid beats every other LLM arm on HR@5, paired 95% CI above zero for "
               "every seed, at <= 1/4 of ft-weekly's flops)", arm="hybrid",
          beats=["no-update", "ft-monthly", "ft-weekly", "rag-only", "rag-once", "adaptive"],
          max_cost_ratio=0.25, cost_reference="ft-weekly"),
    Claim(name="Goal 2 (hybrid beats markov-all on HR@5, paired 95% CI above zero for every seed)",
          arm="hybrid", beats=["markov-all"]),
    Claim(name="Goal 3 (hybrid beats markov-best on HR@5, paired 95% CI above zero for every seed)",
          arm="hybrid", beats=["markov-best"]),
)


class BacktestConfig(BaseModel):
    """A whole backtest (defaults: the default study of docs/protocol.md on ML-1M)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = "ml-1m"
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    min_rating: float | None = 4.0
    clustering: str = "categories"
    n_clusters: int | None = None
    start: date = date(2000, 6, 1)
    end: date = Field(default=date(2001, 1, 1), description="Exclusive end of the test days.")
    arms: dict[str, ArmSpec] = Field(
        default_factory=lambda: {name: ArmSpec() for name in ALL_ARMS},
        description="The arms, in report order: a list of built-in arm names, or [arms.<name>] "
        "tables (ArmSpec); either form is stored as tables.",
    )
    reference: str = Field(default="hybrid", description="The arm every other arm is paired with.")
    seed: int = 0
    seeds: int = Field(default=1, ge=1, description="Training seeds of the LLM arms: seed, seed+1, ... (counting arms run once).")
    threads: int | None = Field(default=1, ge=1, description="torch CPU threads (fixed for bit-identical reruns; None leaves torch's default).")
    k: int = Field(default=5, ge=5, description="Served list length (HR@1, HR@5, NDCG@5 use its head).")
    bootstrap: int = Field(default=1000, ge=100)
    markov_recent_days: int = Field(default=30, ge=1)
    tie_break: Literal["popularity", "id"] = Field(default="popularity", description="markov-all and markov-recent: equal pair counts ordered by successor popularity (same window) or by cluster id.")
    markov_backoff: BackoffOptions = Field(default_factory=BackoffOptions)
    markov_best: MarkovBestOptions = Field(default_factory=MarkovBestOptions)
    tune: TuneConfig = Field(default_factory=TuneConfig, description="The LLM stack's search space on the validation days ([tune]; used when enabled or by `hybridrec tune`).")
    workdir: Path | None = Field(default=None, description="Where adapters and snapshots go (a temporary folder if unset).")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    claims: list[Claim] = Field(
        default_factory=list,
        description="What the study claims ([[claims]] tables: arm, beats, metric, "
        "max_cost_ratio, cost_reference, name); the report's verdict checks each. `hybridrec "
        "demo` declares DEMO_CLAIMS; a study declares its own or none.")

    @field_validator("arms", mode="before")
    @classmethod
    def _arm_list(cls, value: Any) -> Any:
        """A list of names is the table form with an empty table per built-in arm."""
        if isinstance(value, (list, tuple)):
            unknown = [a for a in value if a not in ALL_ARMS]
            if unknown:
                hints = "".join(_suggest(str(a), ALL_ARMS) for a in unknown)
                raise ValueError(
                    f"unknown arms {unknown}{hints}; arms are {', '.join(ALL_ARMS)}, or declare "
                    "your own as [arms.<name>] tables with a policy")
            if len(set(value)) != len(value):
                raise ValueError(f"arms repeat: {list(value)}")
            return {name: {} for name in value}
        return value

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        if not value:
            raise ValueError("at least one arm is needed")
        problems = [p for name, spec in value.items() for p in spec.problems(name)]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @model_validator(mode="after")
    def _window(self) -> BacktestConfig:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        # counting options merged over the study's must still validate, and an arm's own roles
        # take the study's evidence recipe (arm_plan refuses one that differs from it)
        self.arm_plans()
        return self

    @property
    def start_dt(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_dt(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def arm_plan(self, name: str) -> ArmPlan:
        """Arm ``name`` resolved against the study's settings (see :class:`ArmPlan`)."""
        spec = self.arms[name]
        preset = spec.preset_of(name)
        if spec.policy is None and preset in BASELINE_ARMS:
            bases: dict[str, dict[str, Any]] = {
                "markov-all": {"tie_break": self.tie_break},
                "markov-recent": {"tie_break": self.tie_break, "window_days": self.markov_recent_days},
                "markov-backoff": self.markov_backoff.model_dump(),
                "markov-best": self.markov_best.model_dump(),
                "popularity": {},
            }
            base = bases[preset]
            options = COUNTING_OPTIONS[preset].model_validate({**base, **spec.options})
            return ArmPlan(name=name, preset=preset, counting=options)
        llm = self.llm
        if spec.policy is not None:
            policy, table = spec.policy, f"arms.{name}.policy.options"
        else:
            assert preset is not None  # ArmSpec.problems
            policy, table = llm.policies[preset], f"llm.policies.{preset}.options"
        # an arm's own roles take the study's evidence recipe like the shared ones (the shared
        # roles and policies have it already)
        tables = {f"arms.{name}.{r}.options": (r, getattr(spec, r))
                  for r in STACK_ROLES if getattr(spec, r) is not None}
        if spec.policy is not None:
            tables[table] = ("update_policy", policy)
        applied = apply_recipe(llm.evidence, tables, section="[llm.evidence]")
        policy = applied.get(table, policy)
        own = {r: applied[f"arms.{name}.{r}.options"] for r in STACK_ROLES if getattr(spec, r) is not None}
        # a role set to the shared stack's very plugin and options is no override
        overrides = tuple(r for r in STACK_ROLES if r in own and own[r] != getattr(llm, r))
        refs = {r: own.get(r) or getattr(llm, r) for r in STACK_ROLES}
        return ArmPlan(name=name, preset=preset, policy=policy, policy_table=table,
                       overrides=overrides, budget=spec.budget, **refs)

    def arm_pipeline(self, name: str) -> PipelineConfig:
        """The workspace pipeline that runs LLM arm ``name`` as this study does: its plugins and
        options (as resolved now: call it on the study after the validation choices and the
        training seed are applied), the initial fine-tune, guardrails, table width, regeneration
        mode and budget. ``hybridrec init --from-report`` deploys it."""
        plan = self.arm_plan(name)
        if not plan.llm:
            raise ConfigError(f"arm {name!r} is a counting arm; only LLM arms run as a pipeline")
        llm = self.llm
        return PipelineConfig(
            name=name, seed=self.seed, evidence=llm.evidence,
            dataset=PluginRef(plugin=self.dataset, options=dict(self.dataset_options)),
            generator=plan.generator, fine_tuner=plan.fine_tuner,
            knowledge_store=plan.knowledge_store, update_policy=plan.policy,
            cost_model=plan.cost_model,
            initial_fine_tune=llm.initial_fine_tune(),
            data=DataConfig(min_rating=self.min_rating, clustering=self.clustering,  # type: ignore[arg-type]
                            n_clusters=self.n_clusters),
            guardrails=llm.guardrails,
            serving=ServingConfig(k=llm.table_k, regenerate=llm.regenerate,
                                  tolerance=llm.regenerate_tolerance,
                                  max_row_age_days=llm.max_row_age_days),
            signals=llm.signals,
            budget=plan.budget or llm.budget,
        )

    def arm_plans(self) -> list[ArmPlan]:
        """Every arm resolved, in order."""
        return [self.arm_plan(name) for name in self.arms]

    def llm_arms(self) -> list[str]:
        """The names of the arms driven by a policy, in order."""
        return [name for name in self.arms if self.arm_plan(name).llm]

    def with_tuning(self, enabled: bool) -> BacktestConfig:
        """This study with ``[tune] enabled`` set (its search space kept)."""
        return self.model_copy(update={"tune": self.tune.model_copy(update={"enabled": enabled})})

    def with_arms(self, names: list[str]) -> BacktestConfig:
        """This study with only the arms ``names`` (their tables kept), in that order."""
        return self.model_copy(update={"arms": {name: self.arms[name] for name in names}})

    def seed_list(self) -> list[int]:
        """The training seeds: ``seed, seed + 1, ..., seed + seeds - 1``."""
        return [self.seed + i for i in range(self.seeds)]

    def reference_arm(self) -> str:
        """``reference`` if it is run, else the first arm."""
        return self.reference if self.reference in self.arms else next(iter(self.arms))


def quick_config(base: BacktestConfig | None = None) -> BacktestConfig:
    """The ``--quick`` study: two weeks of test days, cheaper fine-tunes, fewer bootstrap draws."""
    base = base or BacktestConfig()
    llm = base.llm.model_copy(update={"initial_fine_tune_options": dict(QUICK_INITIAL_FINE_TUNE)})
    return base.model_copy(
        update={
            "start": date(2000, 6, 1),
            "end": date(2000, 6, 15),
            "bootstrap": 200,
            "llm": llm,
        }
    )


def _resolve_dataset_paths(data: dict[str, Any], folder: Path) -> None:
    """Relative path options of the study's dataset plugin, resolved against the study file's
    folder (so a study runs from any working directory)."""
    options = data.get("dataset_options")
    if not isinstance(options, dict) or not isinstance(data.get("dataset", "ml-1m"), str):
        return
    from hybridrec.plugins import registry

    try:
        cls = registry().get("dataset", str(data.get("dataset", "ml-1m")))
    except Exception:  # an unknown dataset is reported by check_plugins
        return
    fields = getattr(getattr(cls, "Options", None), "model_fields", {})
    resolved = dict(options)
    for name, value in options.items():
        field = fields.get(name)
        if field is None or not isinstance(value, str) or "Path" not in str(field.annotation):
            continue
        if not Path(value).expanduser().is_absolute():
            resolved[name] = str(folder / value)
    data["dataset_options"] = resolved


def check_plugins(config: BacktestConfig, where: str) -> None:
    """Validate every plugin the study names, and its options, before any data is read: one
    :class:`ConfigError` listing each problem with ``where`` (the study file), the table and the
    field."""
    from hybridrec.plugins import resolve_plugin

    refs: list[tuple[str, PluginRef, str]] = [
        ("dataset", PluginRef(plugin=config.dataset, options=config.dataset_options), "dataset_options"),
    ]
    plans = [p for p in config.arm_plans() if p.llm]
    if plans:
        llm = config.llm
        if any(len(p.overrides) < len(STACK_ROLES) for p in plans):  # the shared stack is used
            refs += [
                ("generator", llm.generator, "llm.generator.options"),
                ("fine_tuner", llm.fine_tuner, "llm.fine_tuner.options"),
                ("fine_tuner", llm.initial_fine_tune().fine_tuner(llm.fine_tuner),
                 "llm.initial_fine_tune_options"),
                ("knowledge_store", llm.knowledge_store, "llm.knowledge_store.options"),
                ("cost_model", llm.cost_model, "llm.cost_model.options"),
            ]
        for plan in plans:
            assert plan.policy is not None
            refs.append(("update_policy", plan.policy, plan.policy_table))
            for role in plan.overrides:
                ref = getattr(plan, role)
                refs.append((role, ref, f"arms.{plan.name}.{role}.options"))
                if role == "fine_tuner":
                    refs.append(("fine_tuner", llm.initial_fine_tune().fine_tuner(ref),
                        f"arms.{plan.name}.fine_tuner.options with llm.initial_fine_tune_options"))
    problems = []
    for role, ref, table in refs:
        try:
            resolve_plugin(role, ref, where, table=table)
        except ConfigError as exc:
            problems.append(str(exc))
    if not problems:  # each LLM arm's generator against the store that feeds it
        from hybridrec.interfaces import evidence_mismatch

        for plan in plans:
            assert plan.generator is not None and plan.knowledge_store is not None
            gen = resolve_plugin("generator", plan.generator, where)
            store = resolve_plugin("knowledge_store", plan.knowledge_store, where)
            problem = evidence_mismatch(gen.cls, gen.options, store.cls, store.options)  # type: ignore[arg-type]
            if problem is not None and f"{where}: {problem}" not in problems:
                problems.append(f"{where}: {problem}")
    if problems:
        raise ConfigError("\n".join(problems))


def check_tune(config: BacktestConfig, where: str) -> None:
    """Check the study's ``[tune]`` against its arms and plugins (a :class:`ConfigError` naming
    ``where``, the study file): the tuned arm is an LLM arm on the shared stack, and its policy
    takes every ``policy`` value and the ``fine_tune_probe``."""
    from hybridrec.plugins import resolve_plugin

    tune = config.tune
    if tune.arm not in config.arms:
        raise ConfigError(f"{where}: [tune] arm {tune.arm!r} is not in the study (its arms: "
                          f"{', '.join(config.arms)})")
    plan = config.arm_plan(tune.arm)
    if not plan.llm:
        raise ConfigError(f"{where}: [tune] arm {tune.arm!r} is a counting arm; name an LLM arm")
    if plan.own_stack:
        raise ConfigError(f"{where}: [tune] arm {tune.arm!r} declares its own "
                          f"{', '.join(plan.overrides)}; [tune] chooses the shared stack ([llm]): "
                          "move them there")
    assert plan.policy is not None
    policy = plan.policy
    for option, values in tune.policy.items():
        for value in values:
            resolve_plugin("update_policy", PluginRef(plugin=policy.plugin, options={
                **policy.options, option: value}), where, table=f"tune.policy.{option}")
    if tune.fine_tune:
        probe = PluginRef(plugin=policy.plugin, options={**policy.options, **tune.fine_tune_probe})
        resolve_plugin("update_policy", probe, where, table="tune.fine_tune_probe")


def load_backtest_config(path: Path | None, **overrides: Any) -> BacktestConfig:
    """Read a TOML file (fields at top level or under ``[backtest]``) and apply ``overrides``
    (keys with a None value are ignored). Relative dataset paths resolve against the file's
    folder, and every plugin and option is validated before any data is read (errors name the
    file, the table and the field)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"backtest config {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"{path}: values nested too deeply to read") from None
        data = dict(data.get("backtest", data))
        _resolve_dataset_paths(data, Path(path).resolve().parent)
    chosen = overrides.get("arms")
    if isinstance(chosen, list) and isinstance(data.get("arms"), dict):
        # --arms picks among the study's [arms.<name>] tables (and the built-in arms)
        declared = data["arms"]
        overrides = {**overrides, "arms": {n: declared.get(n, {}) for n in chosen}}
        unknown = [n for n in chosen if n not in declared and n not in ALL_ARMS]
        if unknown:
            raise ConfigError(
                f"{path}: --arms names {unknown}{''.join(_suggest(n, list(declared)) for n in unknown)}, "
                f"which the study does not declare; its arms are "
                f"{', '.join(declared)} (built-in arms: {', '.join(ALL_ARMS)})")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = BacktestConfig.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else "options"
        lines = [f"  {line}" for line in _error_lines(exc, BacktestConfig)]
        raise ConfigError(f"{where}: invalid backtest config:\n" + "\n".join(lines)) from None
    where = str(path) if path is not None else "options"
    check_plugins(config, where)
    if config.tune.enabled:
        check_tune(config, where)
    return config


__all__ = [
    "ALL_ARMS",
    "ALL_HISTORY_DAYS",
    "BASELINE_ARMS",
    "COUNTING_OPTIONS",
    "DEFAULT_POLICIES",
    "DEMO_CLAIMS",
    "DEMO_EVIDENCE",
    "DEMO_EVIDENCE_ITEMS",
    "DEMO_INITIAL_FINE_TUNE",
    "LLM_ARMS",
    "QUICK_INITIAL_FINE_TUNE",
    "STACK_ROLES",
    "TUNE_FINE_TUNES",
    "ArmPlan",
    "ArmSpec",
    "BackoffOptions",
    "BacktestConfig",
    "Claim",
    "LLMSettings",
    "MarkovBestOptions",
    "MarkovOptions",
    "PopularityOptions",
    "TuneConfig",
    "check_plugins",
    "check_tune",
    "load_backtest_config",
    "quick_config",
]
