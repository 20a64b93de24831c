"""What a backtest runs: the data, the window, the arms and the LLM stack (a pydantic model).

A ``--config`` TOML file holds these fields at top level (or under ``[backtest]``)::

    dataset = "ml-1m"
    start = 2000-06-01
    end = 2001-01-01          # exclusive
    arms = ["hybrid", "markov-all"]
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

    [llm.generator]
    plugin = "hf"
    options = { preset = "tiny", template = "rerank", evidence_items = 10 }

    [llm.policies.hybrid]
    plugin = "hybrid"
    options = { fine_tune_every_days = 30, rag_every_days = 2 }
"""

from __future__ import annotations

import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hybridrec.config import GuardrailConfig, PluginRef
from hybridrec.errors import ConfigError
from hybridrec.types import UTC, Budget

LLM_ARMS: tuple[str, ...] = (
    "no-update", "ft-monthly", "ft-weekly", "rag-only", "rag-once", "hybrid", "adaptive",
)
BASELINE_ARMS: tuple[str, ...] = (
    "markov-all", "markov-recent", "markov-backoff", "markov-best", "popularity",
)
ALL_ARMS: tuple[str, ...] = LLM_ARMS + BASELINE_ARMS

#: Knowledge window of the demo's RAG arms and of the fine-tuner's training evidence: ten years,
#: i.e. all history before the day on ML-1M (which spans under three years). The paper retrieves
#: from a recent window; on ML-1M pair-level drift is near sampling noise, so all-history counts
#: are the stronger evidence (short-window study: HR@5 0.3372 with all history against 0.3348
#: with the 14-day knowledge / 30-day training-evidence windows, both with rag_fraction 1.0).
ALL_HISTORY_DAYS = 3650.0

#: Candidate slots per prompt in the demo (generator ``evidence_items`` and store ``m``): the
#: learned arms re-rank the top 10 of the store's ``backoff`` estimator (retrieve-then-rerank;
#: the ``rerank`` template of the ``hf`` generator). On ML-1M the top 10 hold the next cluster for
#: about 60% of test transitions, and HR@5 only needs the top 5.
DEMO_EVIDENCE_ITEMS = 10

#: The ``hf`` options of the demo: the tiny preset narrowed to width 64. Chosen on the validation
#: study ``examples/studies/validation-rerank.toml`` (2000-05-18 to 05-31, before the test window):
#: hybrid HR@5 0.3398 at width 64, 0.3390 at 128 and 0.3399 at 256 (CI half-width about 0.015, so
#: a tie), at 1/16 of the width-256 model's training flops.
DEMO_GENERATOR: dict[str, Any] = {
    "preset": "tiny", "template": "rerank", "evidence_items": DEMO_EVIDENCE_ITEMS,
    "tiny": {"hidden_size": 64, "intermediate_size": 128},
}
#: The demo's knowledge store: ``annoy`` snapshots of the ``backoff`` estimator over all history
#: (every context gets candidates, so no neighbour index is built).
DEMO_STORE: dict[str, Any] = {"min_support": 0, "m": DEMO_EVIDENCE_ITEMS, "granularity": "backoff"}

#: The policy behind each LLM arm (docs/protocol.md; see :mod:`hybridrec_policies.policies`).
DEFAULT_POLICIES: dict[str, PluginRef] = {
    "no-update": PluginRef(plugin="static"),
    "ft-monthly": PluginRef(plugin="periodic-finetune", options={"period_days": 30}),
    "ft-weekly": PluginRef(plugin="periodic-finetune", options={"period_days": 7}),
    "rag-only": PluginRef(
        plugin="periodic-rag", options={"period_days": 2, "knowledge_days": ALL_HISTORY_DAYS}
    ),
    "rag-once": PluginRef(plugin="rag-once", options={"knowledge_days": ALL_HISTORY_DAYS}),
    "hybrid": PluginRef(
        plugin="hybrid",
        options={"fine_tune_every_days": 30, "rag_every_days": 2, "knowledge_days": ALL_HISTORY_DAYS},
    ),
    "adaptive": PluginRef(plugin="adaptive", options={"knowledge_days": ALL_HISTORY_DAYS}),
}


#: ``lora`` options of the demo. Each fine-tune trains every weight of the tiny model
#: (``mode="full"``), warm-started from the previous adapter, on the window's most recent 30,000
#: examples for one epoch, and keeps the result only if its held-out tail (the window's last 1,000
#: transitions, never trained on) has a lower answer NLL than the model it started from
#: (``select_epoch``). The earlier LoRA (r 8 on attention, 5,000 examples) was a no-op: hybrid and
#: rag-only served the same lists. Chosen on held-out data before the test window
#: (``examples/studies/fine_tune_probe.py``: a fine-tune on 2000-05-02..06-01 warm-started from a
#: model of 04-20..05-18; the command in its docstring): held-out NLL 4.285 at the start, 4.280 after that
#: LoRA (3 epochs, all examples), 4.235 after one full epoch on 30,000 examples, 4.277 on 15,000;
#: two epochs (4.217) cost 1.7 times as much, which the 20-minute demo cannot afford on ft-weekly's
#: 30 fine-tunes. On the validation study with a fine-tune
#: every 4 days, hybrid ties rag-only either way (0.3393 against 0.3394). Labels are not
#: re-balanced: HR rewards popular successors. Training prompts carry the same evidence as serving
#: (the backoff estimator over all earlier history, ranked the same way; no train/serve skew). 80%
#: of the examples carry evidence and 20% do not, so the arms that serve without knowledge
#: (no-update, ft-*) get a model of the context alone and the guardrails' free generations stay
#: valid; on the validation study hybrid's HR@5 is 0.3386 at 0.8 against 0.3398 at 1.0 (a tie
#: within the CI half-width of 0.015), while at 1.0 the no-knowledge arms score HR@5 0.0001.
DEMO_FINE_TUNE: dict[str, Any] = {
    "mode": "full", "select_epoch": True, "epochs": 1.0,
    "max_examples": 30000, "holdout_max": 1000, "guardrail_samples": 64, "balance": "none",
    "rag_fraction": 0.8, "evidence_days": ALL_HISTORY_DAYS, "evidence_ranking": "backoff",
}
#: Overrides for the one shared initial fine-tune (setup, charged to no arm): it trains the tiny
#: base model from scratch on every example of the warm-up days (up to 40,000). Chosen on the
#: validation study: with the earlier 20,000-example cap, hybrid's HR@1 tied markov-backoff's
#: (+0.0001 [-0.0006, +0.0010]) and the model's first choice was nearly always the estimator's;
#: with up to 40,000 examples it is +0.0029 [+0.0011, +0.0050] (6 epochs of 20,000: +0.0025
#: [+0.0004, +0.0050]), HR@5 unchanged within noise (0.3383 against 0.3386).
DEMO_INITIAL_FINE_TUNE: dict[str, Any] = {"max_examples": 40000, "base_epochs": 3}
#: ``--quick``: a smaller initial fine-tune (about 4x cheaper) so the smoke study stays under 3 min.
QUICK_INITIAL_FINE_TUNE: dict[str, Any] = {"max_examples": 6000, "base_epochs": 3}


class LLMSettings(BaseModel):
    """The plugins and knobs shared by every LLM arm."""

    model_config = ConfigDict(extra="forbid")

    generator: PluginRef = Field(
        default_factory=lambda: PluginRef(plugin="hf", options=dict(DEMO_GENERATOR))
    )
    fine_tuner: PluginRef = Field(
        default_factory=lambda: PluginRef(plugin="lora", options=dict(DEMO_FINE_TUNE)),
        description="Cost knobs chosen so the whole default study fits 20 minutes on 2 CPU cores.",
    )
    knowledge_store: PluginRef = Field(
        default_factory=lambda: PluginRef(plugin="annoy", options=dict(DEMO_STORE)),
        description="granularity='backoff': every context's candidates ranked by the markov-backoff estimator over the knowledge window, with the count evidence the rerank template renders (no neighbour index).",
    )
    cost_model: PluginRef = Field(default_factory=lambda: PluginRef(plugin="flops"))
    initial_fine_tune_options: dict[str, Any] = Field(
        default_factory=lambda: dict(DEMO_INITIAL_FINE_TUNE),
        description="Fine-tuner options merged over fine_tuner.options for the shared initial adapter.",
    )
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)
    policies: dict[str, PluginRef] = Field(default_factory=lambda: dict(DEFAULT_POLICIES))
    budget: Budget = Field(default_factory=Budget)
    table_k: int = Field(default=10, ge=5, le=100, description="Width of a generated table row.")
    evidence_m: int | None = Field(default=None, ge=1, description="Evidence items per context (store default if unset).")
    warmup_days: int = Field(default=30, ge=1, description="Days before the test window the shared initial adapter trains on.")
    drift_days: int = Field(default=14, ge=1, description="Recent window the drift statistic compares the adapter's training data with.")
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
    recall_days: int = Field(default=3, ge=1, description="Days each recall signal of the drift arms' state is measured over (recall_recent, recall_at_training, recall_at_table).")
    candidate_estimator: Literal["validation", "configured"] = Field(
        default="validation",
        description="validation: when the knowledge store ranks by the backoff estimator "
        "(granularity 'backoff'), its smoothing and weights, and the fine-tuner's matching "
        "evidence options, are chosen like markov-best's, on the validation days before the test "
        "start, among the all-history backoff configurations (the ones a knowledge snapshot "
        "computes); configured: the options as written.",
    )
    drift_arms: list[str] = Field(default_factory=lambda: ["adaptive"], description="Arms whose state carries measured drift (others see it unmeasured; only drift-driven policies read it).")
    measure_rag_agreement: bool = Field(default=True, description="Also rank RAG arms' contexts without evidence, to report how often RAG changes the output.")

    @field_validator("policies")
    @classmethod
    def _known_arms(cls, value: dict[str, PluginRef]) -> dict[str, PluginRef]:
        unknown = sorted(set(value) - set(LLM_ARMS))
        if unknown:
            raise ValueError(f"policies for unknown arms {unknown}; LLM arms are {list(LLM_ARMS)}")
        return {**DEFAULT_POLICIES, **value}


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
        from hybridrec.backtest.baselines import CountingConfig

        return CountingConfig(
            kind="backoff", alpha=self.alpha, w_last=self.w_last, w_skip=self.w_skip,
            w_pop=self.w_pop, window_days=self.window_days, half_life_days=self.half_life_days,
        )


class MarkovBestOptions(BaseModel):
    """``markov-best``: which validation days choose the counting configuration (the grid is
    :data:`hybridrec.backtest.baselines.COUNTING_GRID`)."""

    model_config = ConfigDict(extra="forbid")

    validation_days: int = Field(default=14, ge=1, description="The days before start the choice is scored on.")
    metric: Literal["hr@5", "hr@1", "ndcg@5"] = "hr@5"


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
    arms: list[str] = Field(default_factory=lambda: list(ALL_ARMS))
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
    workdir: Path | None = Field(default=None, description="Where adapters and snapshots go (a temporary folder if unset).")
    llm: LLMSettings = Field(default_factory=LLMSettings)

    @field_validator("arms")
    @classmethod
    def _arms(cls, value: list[str]) -> list[str]:
        unknown = [a for a in value if a not in ALL_ARMS]
        if unknown:
            raise ValueError(f"unknown arms {unknown}; arms are {', '.join(ALL_ARMS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"arms repeat: {value}")
        if not value:
            raise ValueError("at least one arm is needed")
        return value

    @model_validator(mode="after")
    def _window(self) -> BacktestConfig:
        if self.end <= self.start:
            raise ValueError(f"end {self.end} must be after start {self.start}")
        return self

    @property
    def start_dt(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    @property
    def end_dt(self) -> datetime:
        return datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)

    def llm_arms(self) -> list[str]:
        return [a for a in self.arms if a in LLM_ARMS]

    def seed_list(self) -> list[int]:
        """The training seeds: ``seed, seed + 1, ..., seed + seeds - 1``."""
        return [self.seed + i for i in range(self.seeds)]

    def reference_arm(self) -> str:
        """``reference`` if it is run, else the first arm."""
        return self.reference if self.reference in self.arms else self.arms[0]


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
    if config.llm_arms():
        llm = config.llm
        refs += [
            ("generator", llm.generator, "llm.generator.options"),
            ("fine_tuner", llm.fine_tuner, "llm.fine_tuner.options"),
            ("fine_tuner", PluginRef(plugin=llm.fine_tuner.plugin,
                                     options={**llm.fine_tuner.options, **llm.initial_fine_tune_options}),
             "llm.initial_fine_tune_options"),
            ("knowledge_store", llm.knowledge_store, "llm.knowledge_store.options"),
            ("cost_model", llm.cost_model, "llm.cost_model.options"),
        ]
        refs += [("update_policy", llm.policies[arm], f"llm.policies.{arm}.options")
                 for arm in config.llm_arms()]
    problems = []
    for role, ref, table in refs:
        try:
            resolve_plugin(role, ref, where, table=table)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))


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
        data = dict(data.get("backtest", data))
        _resolve_dataset_paths(data, Path(path).resolve().parent)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = BacktestConfig.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path is not None else "options"
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigError(f"{where}: invalid backtest config:\n" + "\n".join(lines)) from None
    check_plugins(config, str(path) if path is not None else "options")
    return config


__all__ = [
    "ALL_ARMS",
    "ALL_HISTORY_DAYS",
    "BASELINE_ARMS",
    "DEFAULT_POLICIES",
    "DEMO_EVIDENCE_ITEMS",
    "DEMO_FINE_TUNE",
    "DEMO_GENERATOR",
    "DEMO_INITIAL_FINE_TUNE",
    "DEMO_STORE",
    "LLM_ARMS",
    "QUICK_INITIAL_FINE_TUNE",
    "BackoffOptions",
    "BacktestConfig",
    "LLMSettings",
    "MarkovBestOptions",
    "check_plugins",
    "load_backtest_config",
    "quick_config",
]
