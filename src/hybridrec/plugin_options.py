"""A plugin's option schema, for people and for machines (``hybridrec plugins --options NAME``).

:func:`describe_options` walks a plugin's pydantic ``Options`` model and returns one
:class:`OptionInfo` per option: its name (nested models flattened to dotted names, as a config
writes them, e.g. ``tiny.layers``), its type as written in Python, its default as a JSON value
(or ``required``), its constraints (``ge``, ``le``, ...) and its description.
:func:`options_document` is the JSON document of ``--options --json``;
:func:`format_options` the text of ``--options``.
"""

from __future__ import annotations

import inspect
import json
import re
import textwrap
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined, to_jsonable_python

if TYPE_CHECKING:
    from hybridrec.plugins import PluginInfo

#: Constraint attributes of pydantic/annotated-types metadata shown with an option.
CONSTRAINTS: tuple[str, ...] = (
    "gt", "ge", "lt", "le", "multiple_of", "min_length", "max_length", "pattern",
)


@dataclass(frozen=True)
class OptionInfo:
    """One option of a plugin: ``default`` is a JSON value and meaningful only when
    ``required`` is false; ``constraints`` maps ``ge``/``le``/... to their bounds."""

    name: str
    type: str
    default: Any
    required: bool
    description: str
    constraints: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def type_name(annotation: Any) -> str:
    """``annotation`` as written in Python: ``int``, ``int | None``, ``Literal['a', 'b']``,
    ``tuple[float, float]``, a class by its bare name."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        shown = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        base = getattr(origin, "__name__", str(origin))
        return f"{base}[{shown}]" if args else base
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except Exception:  # an arbitrary type pydantic cannot serialise: its text
        return repr(value)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    return annotation if inspect.isclass(annotation) and issubclass(annotation, BaseModel) else None


def describe_options(model: type[BaseModel], prefix: str = "") -> list[OptionInfo]:
    """The options of ``model`` in declaration order; a field whose type is itself a model is
    replaced by that model's options under ``<field>.`` (its defaults those of the field's
    default instance)."""
    out: list[OptionInfo] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or name}"
        nested = _nested_model(info.annotation)
        if nested is not None:
            out.extend(describe_options(nested, prefix=f"{key}."))
            continue
        required = info.is_required()
        default: Any = None
        if not required:
            try:
                raw = info.get_default(call_default_factory=True)
            except TypeError:  # a factory that takes the validated data
                raw = info.get_default(call_default_factory=True, validated_data={})
            default = None if raw is PydanticUndefined else _jsonable(raw)
        constraints = {
            attr: _jsonable(getattr(meta, attr))
            for meta in info.metadata
            for attr in CONSTRAINTS
            if getattr(meta, attr, None) is not None
        }
        out.append(OptionInfo(
            name=key,
            type=type_name(info.annotation),
            default=default,
            required=required,
            description=" ".join((info.description or "").split()),
            constraints=constraints,
        ))
    return out


def _summary(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring on one line, Sphinx roles reduced to their
    names (``:class:`~a.B``` -> ``B``)."""
    doc = inspect.getdoc(cls) or ""
    text = " ".join(doc.split("\n\n", 1)[0].split())
    return re.sub(r":\w+:`~?(?:[\w.]*\.)?([^`]+)`", r"\1", text)


def options_document(info: PluginInfo) -> dict[str, Any]:
    """The JSON document of ``hybridrec plugins --options NAME --json``: the plugin's row of
    ``hybridrec plugins --json`` plus ``summary`` (the first paragraph of the class docstring),
    ``options_model`` (the model's dotted path), ``options`` (a list of
    :meth:`OptionInfo.as_dict`) and ``json_schema`` (pydantic's JSON schema of the model, or
    None when the model has a type that JSON schema cannot express)."""
    model: type[BaseModel] = info.cls.Options
    try:
        schema: dict[str, Any] | None = model.model_json_schema()
    except Exception:  # e.g. an arbitrary type without a schema
        schema = None
    return {
        **info.as_dict(),
        "summary": _summary(info.cls),
        "options_model": f"{model.__module__}.{model.__qualname__}",
        "options": [o.as_dict() for o in describe_options(model)],
        "json_schema": schema,
    }


def format_options(info: PluginInfo, width: int = 100) -> str:
    """The text of ``hybridrec plugins --options NAME``: a header (role, name, version,
    distribution, class, aliases), the class summary, then per option
    ``name: type = default  [constraints]`` and its description indented below."""
    origin = (f"{info.distribution} {info.version or ''}".strip()
              if info.distribution else "registered in code")
    kind = "built-in" if info.builtin else "third-party"
    lines = [f"{info.role} {info.name} ({origin}, {kind}) - "
             f"{info.cls.__module__}.{info.cls.__qualname__}"]
    if info.aliases:
        lines.append(f"  aliases: {', '.join(info.aliases)}")
    summary = _summary(info.cls)
    if summary:
        lines.extend(textwrap.wrap(summary, width, initial_indent="  ", subsequent_indent="  "))
    model: type[BaseModel] = info.cls.Options
    options = describe_options(model)
    lines.append("")
    if not options:
        lines.append("Options: none")
        return "\n".join(lines)
    lines.append(f"Options ({model.__name__}):")
    for o in options:
        value = "required" if o.required else json.dumps(o.default)
        bounds = ", ".join(f"{k}={json.dumps(v)}" for k, v in o.constraints.items())
        lines.append(f"  {o.name}: {o.type} = {value}" + (f"  [{bounds}]" if bounds else ""))
        if o.description:
            lines.extend(textwrap.wrap(o.description, width, initial_indent="      ",
                                       subsequent_indent="      "))
    return "\n".join(lines)


__all__ = [
    "CONSTRAINTS",
    "OptionInfo",
    "describe_options",
    "format_options",
    "options_document",
    "type_name",
]
