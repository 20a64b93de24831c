"""Compatibility names: the update pipeline now lives in :mod:`hybridrec.engine` (execution),
:mod:`hybridrec.ingest` (files -> rows), :mod:`hybridrec.ledger` and :mod:`hybridrec.workspace`
(storage). Import from those; this module only re-exports them."""

from hybridrec.engine import (
    PIPELINE_ROLES,
    SIGNALS_DEFAULTS,
    ActionOutcome,
    Pipeline,
    UpdateReport,
    drift_stats,
    guardrail_reasons,
    resolve_roles,
    run_update,
    veto,
)
from hybridrec.ingest import Batch, read_batch, transitions_of
from hybridrec.ledger import Ledger
from hybridrec.workspace import EMPTY_ENTRY, KIND_DIRS

__all__ = [
    "EMPTY_ENTRY",
    "KIND_DIRS",
    "PIPELINE_ROLES",
    "SIGNALS_DEFAULTS",
    "ActionOutcome",
    "Batch",
    "Ledger",
    "Pipeline",
    "UpdateReport",
    "drift_stats",
    "guardrail_reasons",
    "read_batch",
    "resolve_roles",
    "run_update",
    "transitions_of",
    "veto",
]
