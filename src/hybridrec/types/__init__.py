"""Core domain types.

Two families live here:

* **pydantic models** for everything that crosses an edge (config, manifests, files, user input,
  the policy's view of the world). They validate and explain what is wrong.
* **array containers** (frozen dataclasses over numpy arrays) for the bulk paths: hundreds of
  thousands of transitions or contexts are never turned into one Python object each.

All times are UTC. Timestamps in arrays are integer seconds since the Unix epoch.

The types live in small modules (:mod:`~hybridrec.types.base`, ``catalog``, ``arrays``,
``actions``, ``costs``, ``state``, ``data``); every name is importable from here.
"""

from __future__ import annotations

from hybridrec.types.actions import (
    ACTION_KINDS,
    Action,
    ActionKind,
    FineTune,
    Noop,
    RefreshKnowledge,
    RegenerateTable,
)
from hybridrec.types.arrays import (
    PROVENANCE_CODES,
    RECENT_COLUMNS,
    Evidence,
    EvidenceBatch,
    EvidenceItem,
    Provenance,
    RankedPrediction,
    Rankings,
    TransitionSet,
    list_problem,
)
from hybridrec.types.base import (
    UTC,
    ClusterId,
    Model,
    TimeWindow,
    datetime_to_ts,
    to_utc,
    ts_to_datetime,
)
from hybridrec.types.catalog import (
    Cluster,
    ClusterCatalog,
    Context,
    Interaction,
    Transition,
)
from hybridrec.types.costs import (
    Budget,
    CostEstimate,
    CostRecord,
    Workload,
)
from hybridrec.types.data import (
    InteractionData,
    InteractionTable,
    ItemTable,
    QuarantineRecord,
)
from hybridrec.types.state import (
    SIGNALS,
    DriftStats,
    SystemState,
)

__all__ = [
    "ACTION_KINDS",
    "PROVENANCE_CODES",
    "RECENT_COLUMNS",
    "SIGNALS",
    "UTC",
    "Action",
    "ActionKind",
    "Budget",
    "Cluster",
    "ClusterCatalog",
    "ClusterId",
    "Context",
    "CostEstimate",
    "CostRecord",
    "DriftStats",
    "Evidence",
    "EvidenceBatch",
    "EvidenceItem",
    "FineTune",
    "Interaction",
    "InteractionData",
    "InteractionTable",
    "ItemTable",
    "Model",
    "Noop",
    "Provenance",
    "QuarantineRecord",
    "RankedPrediction",
    "Rankings",
    "RefreshKnowledge",
    "RegenerateTable",
    "SystemState",
    "TimeWindow",
    "Transition",
    "TransitionSet",
    "Workload",
    "datetime_to_ts",
    "list_problem",
    "to_utc",
    "ts_to_datetime",
]
