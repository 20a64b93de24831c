"""TOML text from plain data (what a config file holds): the writer ``tomllib`` lacks.

Tables become ``[section]`` headers, lists and the tables inside lists are written inline, and a
key whose value is None is left out (TOML has no null): a caller whose None differs from the
reader's default must check the round trip (:func:`hybridrec.config.pipeline_toml` does).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        items = [f"{_key(str(k))} = {_value(v, f'{where}.{k}')}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        if any(v is None for v in value):
            raise ValueError(f"{where}: a TOML array cannot hold None")
        return "[" + ", ".join(_value(v, where) for v in value) + "]"
    raise ValueError(f"{where}: {type(value).__name__} has no TOML form")


def dumps(data: Mapping[str, Any]) -> str:
    """``data`` as TOML text: each non-empty table under its own header, depth first."""
    lines: list[str] = []

    def table(node: Mapping[str, Any], path: list[str]) -> None:
        plain = [(k, v) for k, v in node.items() if v is not None and not (isinstance(v, Mapping) and v)]
        nested = [(k, v) for k, v in node.items() if isinstance(v, Mapping) and v]
        if path and (plain or not nested):
            lines.append(("\n" if lines else "") + "[" + ".".join(_key(p) for p in path) + "]")
        for k, v in plain:
            lines.append(f"{_key(str(k))} = {_value(v, '.'.join([*path, str(k)]))}")
        for k, v in nested:
            table(v, [*path, str(k)])

    table(data, [])
    return "\n".join(lines) + "\n"


__all__ = ["dumps"]
