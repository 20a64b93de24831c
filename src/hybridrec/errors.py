"""Errors a user can act on. Each message says what was wrong, where, and what to do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class HybridrecError(Exception):
    """Base class: the CLI prints these without a traceback."""


class PluginError(HybridrecError):
    """A plugin could not be loaded, registered or found."""


class UnknownPluginError(PluginError):
    """A name that matches no registered implementation for a role."""

    def __init__(self, role: str, name: str, available: list[str]) -> None:
        self.role, self.name, self.available = role, name, available
        names = ", ".join(sorted(available)) or "(none registered)"
        super().__init__(
            f"unknown {role} {name!r}; available {role} plugins: {names}. "
            "Run `hybridrec plugins` to see what is installed."
        )


class ConfigError(HybridrecError):
    """A configuration file or value is invalid."""


class DataError(HybridrecError):
    """Input data is missing, empty or lacks required columns."""


class CorruptArtifactError(HybridrecError):
    """A stored artifact (snapshot, adapter, table) fails its checksum or is incomplete."""


class GuardrailError(HybridrecError):
    """A fine-tuned adapter failed its guardrails and was held for review."""


def format_validation_error(
    exc: Any, where: str = "", origins: Mapping[tuple[str, ...], str] | None = None
) -> str:
    """One indented line per error of a pydantic ``ValidationError``: location, message, input,
    and, when ``origins`` maps the location (or a prefix of it) to where the value was set (an
    environment variable, ``--set``), that origin."""
    lines = []
    for err in exc.errors():
        parts = tuple(str(p) for p in err["loc"])
        loc = ".".join(parts) or "(root)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        origin = next(
            (origins[parts[:i]] for i in range(len(parts), 0, -1) if origins and parts[:i] in origins),
            None,
        )
        lines.append(f"  {where}{loc}: {err['msg']}{shown}" + (f" [set by {origin}]" if origin else ""))
    return "\n".join(lines)


__all__ = [
    "ConfigError",
    "CorruptArtifactError",
    "DataError",
    "GuardrailError",
    "HybridrecError",
    "PluginError",
    "UnknownPluginError",
    "format_validation_error",
]
