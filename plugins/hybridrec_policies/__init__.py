"""Built-in update policies (``static``, ``periodic-finetune``, ``periodic-rag``, ``rag-once``,
``hybrid``, ``adaptive``), the built-in serving-table backends (``sqlite``, ``memory``) and the
``serving`` benchmark suite. Policy semantics and the backtest-arm mapping:
:mod:`hybridrec_policies.policies`."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec.serving import BUILTIN_BACKENDS
from hybridrec_policies.policies import (
    BUILTIN_POLICIES,
    AdaptivePolicy,
    HybridPolicy,
    PeriodicFineTunePolicy,
    PeriodicRagPolicy,
    RagOncePolicy,
    StaticPolicy,
)


@hookimpl
def register_update_policies(register: Any) -> None:
    for cls in BUILTIN_POLICIES:
        register(cls)


@hookimpl
def register_table_backends(register: Any) -> None:
    for cls in BUILTIN_BACKENDS:
        register(cls())


@hookimpl
def register_bench_suites(register: Any) -> None:
    from hybridrec.backtest.workspace_replay import parity_suite
    from hybridrec.serving.loadbench import serve_suite
    from hybridrec_policies.bench import serving_suite

    register("serving", serving_suite)
    register("parity", parity_suite)
    register("serve", serve_suite)


__all__ = [
    "AdaptivePolicy",
    "HybridPolicy",
    "PeriodicFineTunePolicy",
    "PeriodicRagPolicy",
    "RagOncePolicy",
    "StaticPolicy",
]
