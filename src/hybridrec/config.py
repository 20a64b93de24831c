"""Pipeline configuration: which plugin plays each role, and its options.

A pipeline config is TOML::

    [generator]
    plugin = "hf"
    options = { preset = "tiny" }

    [update_policy]
    plugin = "hybrid"
    [update_policy.options]
    fine_tune_every_days = 30

Precedence, highest first: **command line** (``--set generator.options.preset=tiny``) >
**environment** (``HYBRIDREC__GENERATOR__OPTIONS__PRESET=tiny``: the prefix ``HYBRIDREC__`` then the
dotted path with ``__`` for dots, case-insensitive keys) > **file** > **defaults** (the model
below). Values from the command line and environment are parsed as TOML values when they parse
(``5``, ``true``, ``"x"``, ``[1, 2]``) and taken as strings otherwise.

Each plugin's options are validated by that plugin's own ``Options`` model when the plugin is
resolved or built (:func:`hybridrec.plugins.resolve_plugin`, :func:`hybridrec.plugins.build`);
errors name the role, the plugin and the field.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from hybridrec.errors import ConfigError, format_validation_error
from hybridrec.plugin_refs import EVIDENCE_ROLES, PLUGIN_ROLES, EvidenceConfig, PluginRef
from hybridrec.presets import DEFAULT_PRESET, preset_data, preset_path
from hybridrec.types import Budget, TimeWindow

ENV_PREFIX = "HYBRIDREC__"


class GuardrailConfig(BaseModel):
    """Fine-tune guardrails; defaults are the paper's."""

    model_config = ConfigDict(extra="forbid")

    min_exact_match: float = Field(default=0.90, ge=0.0, le=1.0)
    min_recall: float = Field(default=0.015, ge=0.0, le=1.0)
    enabled: bool = True


class ServingConfig(BaseModel):
    """The serving table."""

    model_config = ConfigDict(extra="forbid")

    backend: str = "sqlite"
    k: int = Field(default=10, ge=1, le=100, strict=True)
    contexts: Literal["all", "observed"] = "all"
    keep_versions: int = Field(default=5, ge=1)
    reverify_seconds: float | None = Field(
        default=300.0, gt=0,
        description="A serving process re-hashes the served table's files against their "
        "manifest when it last did so this long ago (a table that fails is no longer served: the "
        "last intact one serves, and `status` says why); None: only when first opened.")
    regenerate: Literal["delta", "full"] = Field(
        default="delta",
        description="'delta': a regeneration that keeps the adapter re-ranks only the contexts "
        "whose rendered prompt changed and copies the other rows (exact; needs a generator that "
        "offers hybridrec.capabilities.PromptEncoder); 'full': re-rank every context.",
    )
    tolerance: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="The material-change rule of a delta regeneration: a context whose evidence "
        "moved at most this far (total variation of its candidates, or the change of its log "
        "support) from the evidence its row was ranked from keeps its row; 0: only an identical "
        "prompt is kept (exact). A policy's RegenerateTable may set its own.",
    )
    max_row_age_days: float | None = Field(
        default=None, gt=0,
        description="The staleness bound: a row whose evidence was last confirmed current longer "
        "ago than this is ranked again, whatever would keep it; None: no bound. A policy's "
        "RegenerateTable may set its own.",
    )


class SignalsConfig(BaseModel):
    """What the engine measures for policies and serves as fallback, the same in a workspace and
    a backtest (one set of defaults)."""

    model_config = ConfigDict(extra="forbid")

    fallback_days: float | None = Field(
        default=None, gt=0, validation_alias=AliasChoices("fallback_days", "backoff_days"),
        description="Days of data behind the serving fallback (successors of the last cluster, "
        "then popularity) that serves contexts a table row cannot fill; None: all data. "
        "(Formerly backoff_days, still accepted.)")
    drift_days: float = Field(
        default=14.0, gt=0,
        description="Recent window the drift statistic compares the adapter's training window with.")
    drift_min_count: int = Field(
        default=5, ge=1,
        description="Observations of a pair needed in both windows for it to count in the drift "
        "statistic.")
    recall_days: float = Field(
        default=3.0, gt=0,
        description="Days each recall signal (recall_recent, recall_at_table, recall_at_training) "
        "is measured over.")
    recall_k: int = Field(default=5, ge=1, description="A recall signal counts a hit in the served top recall_k.")


class DataConfig(BaseModel):
    """How interactions become transitions."""

    model_config = ConfigDict(extra="forbid")

    min_rating: float | None = 4.0
    clustering: Literal["categories", "embeddings"] = "categories"
    n_clusters: int | None = Field(default=None, ge=2)


class InitialFineTuneConfig(BaseModel):
    """The first fine-tune of a pipeline (no accepted adapter yet), which trains the base model.

    ``options`` are merged over ``[fine_tuner.options]`` for it (for example more examples and
    epochs than a monthly fine-tune); ``window_days`` says what it trains on."""

    model_config = ConfigDict(extra="forbid")

    options: dict[str, Any] = Field(
        default_factory=dict, description="Fine-tuner options merged over fine_tuner.options.")
    window_days: float | Literal["all"] | None = Field(
        default=None,
        description="None: the window the policy asked for; 'all': all data before the clock "
        "(the fine-tuner's max_examples keeps the most recent); a number: that many days.")

    def fine_tuner(self, ref: PluginRef) -> PluginRef:
        """The fine-tuner ``ref`` with :attr:`options` merged over its options."""
        return PluginRef(plugin=ref.plugin, options={**ref.options, **self.options})

    def window(self, asked: TimeWindow, data_start: datetime | None) -> TimeWindow:
        """The window the first fine-tune trains on, ending where the policy's ``asked`` window
        ends: ``asked`` itself when :attr:`window_days` is None, else from the first data time
        ``data_start`` (``asked.start`` when unknown), no earlier than ``window_days`` before
        the end."""
        if self.window_days is None:
            return asked
        start = data_start if data_start is not None and data_start < asked.end else asked.start
        if self.window_days != "all":
            start = max(start, asked.end - timedelta(days=float(self.window_days)))
        return TimeWindow(start=start, end=asked.end)


class DistributedConfig(BaseModel):
    """How fine-tuning runs: in this process (``single``, the default) or as several processes
    (one per GPU) launched through ``torchrun`` or ``accelerate``; see :mod:`hybridrec.distributed`."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["single", "torchrun", "accelerate"] = "single"
    nproc_per_node: int | None = Field(
        default=None, ge=1, description="Processes per node; None means one per visible GPU."
    )
    nnodes: int = Field(default=1, ge=1)
    node_rank: int = Field(default=0, ge=0)
    master_addr: str = "127.0.0.1"
    master_port: int = Field(default=29500, ge=1, le=65535)
    backend: Literal["auto", "nccl", "gloo"] = Field(
        default="auto", description="Process-group backend; auto: nccl with CUDA, else gloo."
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        default="no", description="Passed to `accelerate launch` (torchrun ignores it)."
    )
    extra_args: list[str] = Field(default_factory=list, description="Appended to the launcher.")
    timeout_s: float | None = Field(default=None, gt=0)
    run_dir: Path | None = Field(
        default=None,
        description="Folder for launch specs and logs (shared by all nodes when nnodes > 1); "
        "default a temporary folder, removed after a successful run.",
    )


def evidence_problems(generator: PluginRef, knowledge_store: PluginRef, fine_tuner: PluginRef) -> list[str]:
    """What is inconsistent between the evidence a stack's generator renders, what its store
    serves and what its fine-tuner trains with (train/serve skew, refused wherever a stack is
    configured): a ``backoff`` store and the ``lora`` fine-tuner's ``backoff`` evidence go
    together, with the same estimator parameters; a generator that renders recent-window counts
    (``hf`` ``rerank_recent``) needs the store's ``recent_days`` and the fine-tuner's
    ``evidence_recent_days`` set to the same number of days."""
    problems: list[str] = []
    store, tuner = knowledge_store.options, fine_tuner.options
    # The estimator behind the candidates: served by a `backoff` store, trained with the
    # fine-tuner's `backoff` evidence; the two must be the same estimator with the same
    # parameters, or training prompts and serving prompts rank candidates differently.
    serves_backoff = store.get("granularity") == "backoff"
    trains_backoff = tuner.get("evidence_ranking") == "backoff"
    if "evidence_ranking" in tuner or serves_backoff:
        if serves_backoff and not trains_backoff and fine_tuner.plugin == "lora":
            problems.append(
                "the knowledge store ranks candidates by the backoff estimator (granularity = "
                "'backoff') but the fine-tuner trains on other evidence: set the fine-tuner's "
                "evidence_ranking = 'backoff'")
        elif trains_backoff and not serves_backoff and knowledge_store.plugin in ("counts", "annoy", "exact"):
            problems.append(
                "the fine-tuner trains on backoff-ranked evidence (evidence_ranking = 'backoff') "
                "but the knowledge store serves other evidence: set its granularity = 'backoff'")
        elif serves_backoff and trains_backoff:
            alpha = (float(store.get("backoff_alpha", 128.0)), float(tuner.get("evidence_backoff_alpha", 128.0)))
            weights = (tuple(float(w) for w in store.get("backoff_weights", (0.7, 0.3, 0.0))),
                       tuple(float(w) for w in tuner.get("evidence_backoff_weights", (0.7, 0.3, 0.0))))
            decay = (store.get("half_life_days"), tuner.get("evidence_half_life_days"))
            if alpha[0] != alpha[1] or weights[0] != weights[1] or decay[0] != decay[1]:
                problems.append(
                    f"the knowledge store's backoff estimator (backoff_alpha={alpha[0]}, backoff_weights={list(weights[0])}, "
                    f"half_life_days={decay[0]}) differs from the fine-tuner's (evidence_backoff_alpha={alpha[1]}, "
                    f"evidence_backoff_weights={list(weights[1])}, evidence_half_life_days={decay[1]}): "
                    "training and serving prompts would rank candidates differently")
    if generator.options.get("rerank_recent"):
        days = store.get("recent_days")
        trained = tuner.get("evidence_recent_days")
        if days is None or trained != days:
            problems.append(
                "generator option rerank_recent needs the knowledge store's recent_days and the "
                f"fine-tuner's evidence_recent_days set to the same number of days (got "
                f"recent_days={days}, evidence_recent_days={trained})")
    return problems


class PipelineConfig(BaseModel):
    """A whole pipeline. Every role has a default so a minimal file can name just one plugin."""

    model_config = ConfigDict(extra="forbid")

    name: str = "default"
    preset: str | None = Field(
        default=None,
        description="The shipped preset the config starts from (hybridrec.presets): its roles "
        "are the defaults; a role the file names with another plugin replaces the preset's, "
        "one that keeps the plugin merges its options over the preset's.")
    seed: int = 0
    dataset: PluginRef = Field(default_factory=lambda: PluginRef(plugin="ml-1m"))
    generator: PluginRef = Field(default_factory=lambda: PluginRef(plugin="hf"))
    fine_tuner: PluginRef = Field(default_factory=lambda: PluginRef(plugin="lora"))
    initial_fine_tune: InitialFineTuneConfig = Field(default_factory=InitialFineTuneConfig)
    knowledge_store: PluginRef = Field(default_factory=lambda: PluginRef(plugin="annoy"))
    update_policy: PluginRef = Field(default_factory=lambda: PluginRef(plugin="hybrid"))
    cost_model: PluginRef = Field(default_factory=lambda: PluginRef(plugin="flops"))
    executor: PluginRef = Field(default_factory=lambda: PluginRef(plugin="local"))
    data: DataConfig = Field(default_factory=DataConfig)
    guardrails: GuardrailConfig = Field(default_factory=GuardrailConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
    evidence: EvidenceConfig | None = Field(
        default=None,
        description="The evidence recipe the store, the fine-tuner and the generator share "
        "(the rerank preset declares one); None: each plugin's own evidence options.")
    budget: Budget = Field(default_factory=Budget)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    _origins: dict[tuple[str, ...], str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _evidence(self) -> PipelineConfig:
        from hybridrec.plugins import apply_recipe  # the registry knows what each plugin reads

        if self.evidence is not None:
            applied = apply_recipe(self.evidence, {f"{role}.options": (role, getattr(self, role))
                                                   for role in EVIDENCE_ROLES})
            for role in EVIDENCE_ROLES:
                setattr(self, role, applied[f"{role}.options"])
            return self  # the recipe set both sides (evidence_problems is for configs without one)
        problems = evidence_problems(self.generator, self.knowledge_store, self.fine_tuner)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def origins(self) -> dict[tuple[str, ...], str]:
        """Where values that did not come from the file were set: config path -> an environment
        variable or ``--set`` (filled by :func:`load_config`; errors name them)."""
        return self._origins


def _parse_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _set_path(target: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = target
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base`` recursively (tables merge, other values replace)."""
    out: dict[str, Any] = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def over_layer(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """Config layer ``upper`` over ``lower`` (a file over a preset's tables, the environment over
    the file, ``--set`` over both): a plugin role ``upper`` names with another plugin replaces
    ``lower``'s role whole (its options belong to the other plugin); every other table merges
    (:func:`deep_merge`)."""
    top = dict(upper)
    out = dict(lower)
    for role in PLUGIN_ROLES:
        mine, theirs = top.get(role), out.get(role)
        if (isinstance(mine, Mapping) and isinstance(theirs, Mapping)
                and mine.get("plugin", theirs.get("plugin")) != theirs.get("plugin")):
            out[role] = dict(mine)
            top.pop(role)
    return deep_merge(out, top)


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config layer from ``HYBRIDREC__A__B=value`` variables."""
    environ = os.environ if environ is None else environ
    layer: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.upper().startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in key[len(ENV_PREFIX) :].split("__") if p]
        if path:
            _set_path(layer, path, _parse_value(raw))
    return layer


def cli_overrides(assignments: Sequence[str]) -> dict[str, Any]:
    """The config layer from ``--set a.b.c=value`` assignments."""
    layer: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE (for example generator.plugin=hf), got {item!r}")
        key, raw = item.split("=", 1)
        path = [p for p in key.strip().split(".") if p]
        if not path:
            raise ConfigError(f"--set has an empty key in {item!r}")
        _set_path(layer, path, _parse_value(raw.strip()))
    return layer


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); TOML files are UTF-8") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except RecursionError:
        raise ConfigError(f"{path}: values nested too deeply to read") from None


def load_config(
    path: Path | str | None = None,
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Load and validate a pipeline config with the documented precedence."""
    source = str(path) if path is not None else "defaults"
    file_layer: dict[str, Any] = read_toml(Path(path)) if path is not None else {}
    return config_from_layers(file_layer, source, overrides=overrides, environ=environ)


def config_from_layers(
    file_layer: dict[str, Any],
    source: str,
    *,
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Validate the tables ``file_layer`` (read from ``source``: a file, a preset, a report) with
    the environment and ``--set`` layers over it (:func:`load_config`'s precedence)."""
    preset = file_layer.get("preset")
    if preset is not None:
        if not isinstance(preset, str):
            raise ConfigError(f"{source}: preset must be a preset name (a string), got {preset!r}")
        file_layer = over_layer(preset_data(preset), file_layer)
    env_layer = env_overrides(environ)
    cli_layer = cli_overrides(overrides)
    # a layer that names another plugin for a role replaces the role (its options belong to
    # the other plugin); otherwise layers merge
    layer = over_layer(over_layer(file_layer, env_layer), cli_layer)
    # An override of a role the file does not name applies to that role's default plugin.
    for role, field in PipelineConfig.model_fields.items():
        value = layer.get(role)
        if isinstance(value, dict) and "plugin" not in value and field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
            if isinstance(default, PluginRef):
                layer[role] = {"plugin": default.plugin, **value}
    try:
        config = PipelineConfig.model_validate(layer)
    except ValidationError as exc:
        # Name where each bad value came from: --set, the environment, or the file.
        origins = []
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            if not loc:  # a whole-config rule (the evidence recipe's): its message names the option
                origins += [source, *(["--set"] if cli_layer else [])]
            elif _has_path(cli_layer, loc):
                origins.append("--set")
            elif _has_path(env_layer, loc):
                origins.append(f"environment {ENV_PREFIX}{'__'.join(p.upper() for p in loc)}")
            else:
                origins.append(source)
        where = ", ".join(dict.fromkeys(origins))
        raise ConfigError(f"{where}: invalid pipeline config:\n{format_validation_error(exc, '', model=PipelineConfig)}") from None
    set_by: dict[tuple[str, ...], str] = {
        path: f"environment {ENV_PREFIX}{'__'.join(p.upper() for p in path)}"
        for path in _leaf_paths(env_layer)
    }
    set_by.update({path: f"--set {'.'.join(path)}" for path in _leaf_paths(cli_layer)})
    config._origins = set_by
    return config


def load_preset(name: str = DEFAULT_PRESET, *, overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """Preset ``name`` as a validated :class:`~hybridrec.config.PipelineConfig` (with
    ``--set``-style ``overrides`` and ``HYBRIDREC__`` environment variables applied, as
    :func:`~hybridrec.config.load_config` does for a file)."""
    config = load_config(preset_path(name), overrides=overrides)
    config.preset = name
    return config


def pipeline_from_report(path: Path, arm: str, *, overrides: tuple[str, ...] = ()) -> PipelineConfig:
    """The pipeline LLM arm ``arm`` of the backtest report ``path`` (``report.json``) ran: its
    ``arms[].config.pipeline``, recorded after the validation choices and the training seed were
    applied, as a validated :class:`~hybridrec.config.PipelineConfig` (``overrides`` as for
    :func:`load_preset`). Errors name the file and say what it holds instead."""
    import json

    from hybridrec.errors import did_you_mean

    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"report {path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(report, dict) or report.get("schema") != "hybridrec.report/1" \
            or not isinstance(report.get("arms"), list):
        raise ConfigError(f"{path}: not a hybridrec backtest report (schema hybridrec.report/1)")
    arms = {str(a.get("name")): a for a in report["arms"] if isinstance(a, dict)}
    llm = [name for name, a in arms.items() if a.get("llm")]
    if arm not in arms:
        raise ConfigError(f"{path}: no arm {arm!r}{did_you_mean(arm, list(arms))}; its LLM arms "
                          f"are {', '.join(llm) or 'none'}")
    if not arms[arm].get("llm"):
        raise ConfigError(f"{path}: arm {arm!r} is a counting arm; a workspace deploys an LLM arm "
                          f"({', '.join(llm) or 'the report has none'})")
    pipeline = (arms[arm].get("config") or {}).get("pipeline")
    if not isinstance(pipeline, dict):
        raise ConfigError(f"{path}: arm {arm!r} records no pipeline (a report written before "
                          "hybridrec recorded one); rerun the backtest to deploy it")
    return config_from_layers(pipeline, f"{path} arm {arm!r}", overrides=overrides)


def pipeline_toml(config: PipelineConfig, *, header: str = "") -> str:
    """``config`` as a pipeline file (TOML) that :func:`load_config` reads back to the same
    config, every option resolved; ``header`` becomes its leading comment. A ValueError says
    which fields would not survive the round trip."""
    from hybridrec.toml_text import dumps

    data = config.model_dump(mode="json", exclude={"preset"})
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    text = comment + dumps(data)
    again = config_from_layers(tomllib.loads(text), "the written pipeline", environ={}).model_dump(
        mode="json", exclude={"preset"})
    if again != data:
        differ = sorted(k for k in data if data[k] != again.get(k))
        raise ValueError(f"pipeline {config.name!r} does not survive TOML (fields {differ})")
    return text


def _leaf_paths(layer: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in layer.items():
        path = (*prefix, str(key))
        out += _leaf_paths(value, path) if isinstance(value, Mapping) and value else [path]
    return out


def _has_path(layer: Mapping[str, Any], loc: list[str]) -> bool:
    node: Any = layer
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


__all__ = [
    "ENV_PREFIX",
    "EVIDENCE_ROLES",
    "PLUGIN_ROLES",
    "DataConfig",
    "DistributedConfig",
    "EvidenceConfig",
    "GuardrailConfig",
    "InitialFineTuneConfig",
    "PipelineConfig",
    "PluginRef",
    "ServingConfig",
    "SignalsConfig",
    "cli_overrides",
    "config_from_layers",
    "deep_merge",
    "env_overrides",
    "load_config",
    "load_preset",
    "over_layer",
    "pipeline_from_report",
    "pipeline_toml",
    "read_toml",
]
