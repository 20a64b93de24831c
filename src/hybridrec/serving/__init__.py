"""Serving tables: context ``(c1, c2)`` -> top-K clusters, versioned, with a lookup fallback.

Write a version with a backend's :class:`TableWriter` (``write(rankings)`` batches,
``set_backoff(fallback)``: a :class:`SuccessorFallback`, ``commit(manifest)``), read it with a
:class:`TableReader` (``lookup(context, k)``, ``lookup_batch(contexts, k)``). The fallback
contract is documented in :mod:`hybridrec.serving.base`.

Backends are registered by name through the ``register_table_backends`` hook
(``register(MyBackend())``); the built-ins ``sqlite`` (default, embedded, one immutable file per
version) and ``memory`` (dense numpy, fastest batch lookup) are registered by the
``hybridrec_policies`` plugin package and, being essential, are found even when plugin loading is
restricted.
"""

from __future__ import annotations

from hybridrec.errors import ConfigError, did_you_mean
from hybridrec.serving.base import (
    LEVELS,
    Backoff,
    Level,
    ServedPrediction,
    SuccessorFallback,
    TableBackend,
    TableReader,
    TableWriter,
    check_contexts,
    fill_rows,
)
from hybridrec.serving.memory import MemoryBackend, MemoryTable
from hybridrec.serving.sqlite import SqliteBackend

BUILTIN_BACKENDS: tuple[type[TableBackend], ...] = (SqliteBackend, MemoryBackend)


def get_backend(name: str) -> TableBackend:
    """The table backend registered as ``name`` (built-ins are always available)."""
    from hybridrec.plugins import registry

    found = registry().table_backends.get(name)
    if found is not None:
        return found() if isinstance(found, type) else found  # type: ignore[no-any-return]
    for cls in BUILTIN_BACKENDS:
        if cls.name == name:
            return cls()
    names = sorted(set(registry().table_backends) | {c.name for c in BUILTIN_BACKENDS})
    raise ConfigError(
        f"unknown serving backend {name!r}{did_you_mean(name, names)}; available: {', '.join(names)}. "
        "Set [serving] backend in the pipeline config."
    )


__all__ = [
    "BUILTIN_BACKENDS",
    "LEVELS",
    "Backoff",
    "Level",
    "MemoryBackend",
    "MemoryTable",
    "ServedPrediction",
    "SqliteBackend",
    "SuccessorFallback",
    "TableBackend",
    "TableReader",
    "TableWriter",
    "check_contexts",
    "fill_rows",
    "get_backend",
]
