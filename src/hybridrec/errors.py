"""Errors a user can act on. Each message says what was wrong, where, and what to do."""

from __future__ import annotations

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


def format_validation_error(exc: Any, where: str = "") -> str:
    """One indented line per error of a pydantic ``ValidationError``: location, message, input."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {where}{loc}: {err['msg']}{shown}")
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
