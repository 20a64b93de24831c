"""Loaded data sets: interaction and item tables, quarantine records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridrec.types.base import (
    Model,
)


class QuarantineRecord(Model):
    """An input row that was rejected, with where it was and why."""

    file: str
    row: int
    field: str
    reason: str
    value: str | None = None


@dataclass(frozen=True)
class InteractionTable:
    """Interactions as arrays: dense ``user`` and ``item`` codes, Unix-second ``ts``, ``rating``.

    ``rating`` is float with NaN for unrated rows. ``user_ids`` / ``item_ids`` map codes back to the
    source's identifiers.
    """

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    rating: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass(frozen=True)
class ItemTable:
    """Item metadata aligned with ``InteractionTable.item`` codes: title and categories."""

    item_ids: np.ndarray
    titles: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


@dataclass(frozen=True)
class InteractionData:
    """What a :class:`~hybridrec.interfaces.Dataset` loads."""

    name: str
    interactions: InteractionTable
    items: ItemTable
    quarantine: tuple[QuarantineRecord, ...] = ()
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


__all__ = [
    "InteractionData",
    "InteractionTable",
    "ItemTable",
    "QuarantineRecord",
]
