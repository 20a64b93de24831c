"""hybridrec-lastseen: a KnowledgeStore retrieving each context's most recent successors."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_lastseen.store import LastSeenStore


@hookimpl
def register_knowledge_stores(register: Any) -> None:
    register(LastSeenStore)
