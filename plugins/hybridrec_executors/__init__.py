"""Built-in table executors: ``local`` (in-process, the default)."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_executors.local import LocalExecutor


@hookimpl
def register_executors(register: Any) -> None:
    register(LocalExecutor)
