"""Presets: measured pipeline stacks shipped as data (TOML files in this folder).

A preset is a complete pipeline config (the format of :func:`hybridrec.config.load_config`).
``rerank`` is the stack ``hybridrec demo`` measures; it is what plain ``hybridrec init WS``
deploys and what the backtest's LLM arms share unless a study overrides a role.

>>> from hybridrec.presets import load_preset
>>> load_preset("rerank").generator.options["template"]
'rerank'
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from hybridrec.errors import ConfigError, did_you_mean

#: The preset plain ``hybridrec init`` deploys and the backtest's LLM arms share.
DEFAULT_PRESET = "rerank"


def preset_names() -> list[str]:
    """The shipped presets, sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def preset_path(name: str) -> Path:
    """The TOML file of preset ``name`` (a :class:`ConfigError` names the shipped ones)."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, names)}; presets are "
                          f"{', '.join(names)}")
    return Path(str(resources.files(__name__).joinpath(f"{name}.toml")))


@cache
def _raw(name: str) -> dict[str, Any]:
    from hybridrec.config import read_toml

    return read_toml(preset_path(name))


def preset_data(name: str = DEFAULT_PRESET) -> dict[str, Any]:
    """Preset ``name`` as the raw TOML tables (a fresh deep copy each call)."""
    import copy

    return copy.deepcopy(_raw(name))


def load_preset(name: str = DEFAULT_PRESET, *, overrides: tuple[str, ...] = ()) -> Any:
    """Preset ``name`` as a validated :class:`~hybridrec.config.PipelineConfig` (with
    ``--set``-style ``overrides`` and ``HYBRIDREC__`` environment variables applied, as
    :func:`~hybridrec.config.load_config` does for a file)."""
    from hybridrec.config import load_config

    config = load_config(preset_path(name), overrides=overrides)
    config.preset = name
    return config


def pipeline_from_report(path: Path, arm: str, *, overrides: tuple[str, ...] = ()) -> Any:
    """The pipeline LLM arm ``arm`` of the backtest report ``path`` (``report.json``) ran: its
    ``arms[].config.pipeline``, recorded after the validation choices and the training seed were
    applied, as a validated :class:`~hybridrec.config.PipelineConfig` (``overrides`` as for
    :func:`load_preset`). Errors name the file and say what it holds instead."""
    import json

    from hybridrec.config import config_from_layers

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


__all__ = [
    "DEFAULT_PRESET",
    "load_preset",
    "pipeline_from_report",
    "preset_data",
    "preset_names",
    "preset_path",
]
