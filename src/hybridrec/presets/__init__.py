"""Presets: measured pipeline stacks shipped as data (TOML files in this folder).

A preset is a complete pipeline config (the format of :func:`hybridrec.config.load_config`).
``rerank`` is the stack ``hybridrec demo`` measures; it is what plain ``hybridrec init WS``
deploys and what the backtest's LLM arms share unless a study overrides a role.

>>> from hybridrec.presets import preset_data
>>> preset_data("rerank")["generator"]["options"]["template"]
'rerank'

This module only reads the files (it imports no configuration code);
:func:`hybridrec.config.load_preset` validates one as a pipeline config.
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
    import tomllib

    with open(preset_path(name), "rb") as fh:
        return tomllib.load(fh)


def preset_data(name: str = DEFAULT_PRESET) -> dict[str, Any]:
    """Preset ``name`` as the raw TOML tables (a fresh deep copy each call)."""
    import copy

    return copy.deepcopy(_raw(name))


__all__ = [
    "DEFAULT_PRESET",
    "preset_data",
    "preset_names",
    "preset_path",
]
