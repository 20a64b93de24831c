"""Errors a user can act on. Each message says what was wrong, where, and what to do."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any


def close_matches(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """The names of ``known`` closest to ``name`` (:func:`difflib.get_close_matches`, cutoff
    0.6), best first; empty when none is close."""
    return difflib.get_close_matches(name, sorted(set(known)), n=n)


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
    """`` (did you mean 'x'?)`` or `` (did you mean 'x' or 'y'?)`` for the names of ``known``
    close to ``name``, or ``""`` when none is: to append to an "unknown name" message."""
    close = close_matches(name, known, n=n)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)"


class HybridrecError(Exception):
    """Base class: the CLI prints these without a traceback."""


class PluginError(HybridrecError):
    """A plugin could not be loaded, registered or found."""


class UnknownPluginError(PluginError):
    """A name that matches no registered implementation for a role."""

    def __init__(
        self, role: str, name: str, available: list[str], aliases: Iterable[str] = ()
    ) -> None:
        """``available``: the registered names of ``role`` (``role="plugin"``: of every role);
        ``aliases``: their aliases, which are also offered as suggestions. ``suggestions`` holds
        the close names, best first."""
        self.role, self.name, self.available = role, name, available
        self.suggestions = close_matches(name, [*available, *aliases])
        names = ", ".join(sorted(set(available))) or "(none registered)"
        kind = "plugins" if role == "plugin" else f"{role} plugins"
        super().__init__(
            f"unknown {role} {name!r}{did_you_mean(name, [*available, *aliases])}; "
            f"available {kind}: {names}. Run `hybridrec plugins` to see what is installed."
        )


class ConfigError(HybridrecError):
    """A configuration file or value is invalid."""


class DataError(HybridrecError):
    """Input data is missing, empty or lacks required columns."""


class CorruptArtifactError(HybridrecError):
    """A stored artifact (snapshot, adapter, table) fails its checksum or is incomplete."""


class GuardrailError(HybridrecError):
    """A fine-tuned adapter failed its guardrails and was held for review."""


def _models_in(annotation: Any) -> list[Any]:
    """The pydantic models an annotation can hold directly (``M``, ``M | None``, ``Union``)."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _item_models(annotation: Any) -> list[Any]:
    """The pydantic models held as values or items of a ``dict``/``list``/``tuple`` annotation."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in args for m in _item_models(arg)]
    if isinstance(origin, type) and issubclass(origin, (dict, list, tuple, set, frozenset)) and args:
        return _models_in(args[-1])
    return []


def field_names(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The fields (aliases where set) of the model found at ``loc`` below ``model``, following
    nested model fields, ``dict[str, Model]`` values and ``list[Model]`` items; empty when the
    location holds no model."""
    from pydantic import BaseModel

    # each state: a model whose field name comes next, or (True, model) when a key/index does
    states: list[tuple[bool, Any]] = [(False, model)]
    for part in loc:
        after: list[tuple[bool, Any]] = []
        for awaiting_key, m in states:
            if awaiting_key:
                after.append((False, m))
                continue
            if not (isinstance(m, type) and issubclass(m, BaseModel)):
                continue
            field = m.model_fields.get(str(part)) or next(
                (f for f in m.model_fields.values() if f.alias == str(part)), None
            )
            if field is not None:
                after.extend((False, x) for x in _models_in(field.annotation))
                after.extend((True, x) for x in _item_models(field.annotation))
        states = after
    return [f.alias or name for awaiting_key, m in states if not awaiting_key
            for name, f in m.model_fields.items()]


def format_validation_error(
    exc: Any,
    where: str = "",
    origins: Mapping[tuple[str, ...], str] | None = None,
    model: Any = None,
) -> str:
    """One indented line per error of a pydantic ``ValidationError``: location, message, input,
    and, when ``origins`` maps the location (or a prefix of it) to where the value was set (an
    environment variable, ``--set``), that origin. With ``model`` (the validated pydantic model
    class), an unknown field (``extra="forbid"``) gets a "did you mean" with the closest valid
    field names at that location."""
    lines = []
    for err in exc.errors():
        parts = tuple(str(p) for p in err["loc"])
        loc = ".".join(parts) or "(root)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        if err.get("type") == "extra_forbidden" and model is not None and parts:
            shown += did_you_mean(parts[-1], field_names(model, tuple(err["loc"])[:-1]))
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
    "close_matches",
    "did_you_mean",
    "field_names",
    "format_validation_error",
]
