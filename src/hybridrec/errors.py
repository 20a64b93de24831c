"""Errors a user can act on. Each message says what was wrong, where, and what to do."""

from __future__ import annotations


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
