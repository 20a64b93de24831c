"""Ingest: interaction files -> validated rows with workspace cluster ids -> transitions.

:func:`read_batch` reads one interaction file for a workspace update through the ``file``
dataset plugin (the same validation, quarantine records and messages as
``hybridrec backtest --dataset file``); bad rows, rows at or after the clock and rows whose cluster is not in the
workspace catalog become :class:`~hybridrec.types.QuarantineRecord` entries with file, row, field
and reason. The first update fixes the cluster catalog (one cluster per category combination, see
docs/protocol.md). :func:`transitions_of` extracts the transitions of an accumulated log.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from hybridrec.errors import ConfigError, DataError
from hybridrec.types import (
    ClusterCatalog,
    QuarantineRecord,
    TransitionSet,
    datetime_to_ts,
)


@dataclass
class Batch:
    """Rows accepted from one input file (identifiers as strings, cluster ids resolved)."""

    user: np.ndarray
    item: np.ndarray
    ts: np.ndarray
    rating: np.ndarray
    cluster: np.ndarray
    quarantine: list[QuarantineRecord] = field(default_factory=list)
    rows_read: int = 0

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def save(self, path: Path) -> None:
        """Identifiers are stored once each (distinct values plus int32 codes), so the file
        grows with the distinct ids, not with rows times the longest id."""
        users, user_code = np.unique(self.user.astype(str), return_inverse=True)
        items, item_code = np.unique(self.item.astype(str), return_inverse=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # user ids: owner only
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh, user_ids=users, user_code=user_code.astype(np.int32).reshape(-1),
                item_ids=items, item_code=item_code.astype(np.int32).reshape(-1), ts=self.ts,
                rating=self.rating, cluster=self.cluster,
            )

    @classmethod
    def load(cls, path: Path) -> Batch:
        with np.load(path, allow_pickle=False) as data:
            if "user_ids" in data.files:
                user = data["user_ids"][data["user_code"]]
                item = data["item_ids"][data["item_code"]]
            else:  # written before ids were stored once each
                user, item = data["user"], data["item"]
            return cls(
                user=user, item=item, ts=data["ts"].astype(np.int64),
                rating=data["rating"].astype(np.float64), cluster=data["cluster"].astype(np.int64),
            )

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        if not batches:
            return cls(np.zeros(0, dtype=str), np.zeros(0, dtype=str), np.zeros(0, dtype=np.int64),
                       np.zeros(0), np.zeros(0, dtype=np.int64))
        return cls(
            user=np.concatenate([b.user.astype(str) for b in batches]),
            item=np.concatenate([b.item.astype(str) for b in batches]),
            ts=np.concatenate([b.ts for b in batches]),
            rating=np.concatenate([b.rating for b in batches]),
            cluster=np.concatenate([b.cluster for b in batches]),
        )


def read_batch(
    data: Path,
    *,
    items: Path | None,
    now: datetime,
    catalog: ClusterCatalog | None,
    known_items: dict[str, int],
) -> tuple[Batch, ClusterCatalog]:
    """Read and validate one interaction file (see the module docstring).

    Without ``items`` the file itself carries a ``categories`` column (``|``-separated); an item
    takes the categories of its first row that has any, else the cluster it had in earlier data.
    Returns the accepted rows and the catalog (built from this file's items when ``catalog`` is
    None).
    """
    import pandas as pd

    from hybridrec.data.clusters import UNCATEGORIZED, cluster_by_categories
    from hybridrec.data.io import read_table
    from hybridrec.plugins import build

    data = Path(data)
    if not data.is_file():
        raise DataError(f"{data}: no such interaction file (give --data a CSV with user,item,timestamp[,rating][,categories])")
    with tempfile.TemporaryDirectory(prefix="hybridrec-ingest-") as tmp:
        items_path = items
        if items_path is None:
            # The same reader as the dataset (CSV, TSV or Parquet; bad lines are quarantined
            # by the dataset's own read below, so they are skipped here).
            raw = read_table(data, [], ["item", "categories"], what="interaction")
            if "categories" not in raw.table.column_names:
                raise DataError(
                    f"{data}: no 'categories' column; add one (categories separated by '|') or "
                    "pass --items FILE with item,categories"
                )
            if "item" not in raw.table.column_names:
                raise DataError(f"{data}: no 'item' column; expected user,item,timestamp[,rating][,categories]")
            frame = pd.DataFrame({
                name: [("" if v is None else str(v)) for v in raw.table.column(name).to_pylist()]
                for name in ("item", "categories")
            })
            frame = frame.assign(item=frame["item"].str.strip(), categories=frame["categories"].str.strip())
            described = frame[frame["categories"] != ""].drop_duplicates("item")
            described_ids = set(described["item"])  # once, not once per known item
            known_rows = pd.DataFrame(
                {"item": [i for i in known_items if i not in described_ids], "categories": ""}
            )
            table = pd.concat([described, known_rows], ignore_index=True)
            table = table[table["item"] != ""]
            if table.empty:
                raise DataError(f"{data}: no row names an item with categories; nothing to ingest")
            items_path = Path(tmp) / "items.csv"
            table.to_csv(items_path, index=False)
        # The one ingest path: the ``file`` dataset plugin (its validation and quarantine rules).
        try:
            dataset = build("dataset", {"plugin": "file", "options": {
                "name": "workspace", "interactions": data, "items": items_path,
                "timestamp_unit": "auto",
                "max_timestamp": datetime_to_ts(now),
            }}, source="hybridrec update --data")
        except ConfigError as exc:
            raise ConfigError(
                f"{exc}\n(--data is read by the 'file' dataset plugin of the 'datasets' entry point; "
                "if HYBRIDREC_LOAD_PLUGINS is set, include 'datasets')"
            ) from None
        loaded = dataset.load()
    derived = None if items is not None else str(Path(tmp) / "items.csv")
    quarantine = [
        r.model_copy(update={"reason": "unknown item: no row of this file gives its categories "
                                       "and earlier data does not know it"})
        if derived is not None and derived in r.reason else r
        for r in loaded.quarantine
    ]
    table_items = loaded.items
    if catalog is None:
        catalog = cluster_by_categories(table_items).catalog
    # Map each item of this file to the workspace catalog (frozen after the first update).
    item_cluster = np.full(len(table_items), -1, dtype=np.int64)
    for code, (item_id, cats) in enumerate(zip(table_items.item_ids.tolist(), table_items.categories, strict=True)):
        if cats:
            found = catalog.lookup_description(" ".join(sorted(set(cats))))
            item_cluster[code] = -1 if found is None else found
        elif str(item_id) in known_items:
            item_cluster[code] = known_items[str(item_id)]
        else:
            found = catalog.lookup_description(UNCATEGORIZED)
            item_cluster[code] = -1 if found is None else found

    inter = loaded.interactions
    from hybridrec.data.io import detect_format

    first_row = 1 if detect_format(data) == "parquet" else 2
    row_numbers = _row_numbers(quarantine, str(data), len(inter), first_row)
    cluster = item_cluster[inter.item] if len(inter) else np.zeros(0, dtype=np.int64)
    uncataloged = cluster < 0
    keep = ~uncataloged
    for index in np.flatnonzero(uncataloged):
        item_id = str(inter.item_ids[inter.item[index]])
        quarantine.append(QuarantineRecord(
            file=str(data), row=row_numbers[index], field="categories",
            reason="the item's category combination is not a cluster of this workspace's catalog "
                   "(the catalog is fixed by the first update)",
            value=item_id,
        ))
    batch = Batch(
        user=inter.user_ids[inter.user[keep]].astype(str),
        item=inter.item_ids[inter.item[keep]].astype(str),
        ts=inter.ts[keep].astype(np.int64),
        rating=inter.rating[keep].astype(np.float64),
        cluster=cluster[keep].astype(np.int64),
        quarantine=quarantine,
        rows_read=int(loaded.metadata.get("counts", {}).get("rows_read", len(inter) + len(loaded.quarantine))),
    )
    return batch, catalog


def _row_numbers(quarantine: list[QuarantineRecord], file: str, n: int, first: int = 2) -> list[int]:
    """File line numbers of the ``n`` accepted rows: the lines after the header that the loader
    did not quarantine, in file order (the loader keeps rows in file order)."""
    rejected = {r.row for r in quarantine if r.file == file}
    rows: list[int] = []
    line = first
    while len(rows) < n:
        if line not in rejected:
            rows.append(line)
        line += 1
    return rows


def transitions_of(batch: Batch, n_clusters: int, min_rating: float | None) -> TransitionSet:
    """Transitions (docs/protocol.md) of an accumulated log, via :mod:`hybridrec.data.transitions`."""
    from hybridrec.data.transitions import extract_transitions_arrays

    if len(batch) == 0:
        return TransitionSet.empty(n_clusters)
    _, user = np.unique(batch.user, return_inverse=True)
    _, first, item = np.unique(batch.item, return_index=True, return_inverse=True)
    item_cluster = batch.cluster[first]
    return extract_transitions_arrays(
        user.reshape(-1), item.reshape(-1), batch.ts, batch.rating, item_cluster, n_clusters,
        min_rating=min_rating,
    )


def file_digest(data: Path, items: Path | None) -> str:
    digest = hashlib.sha256()
    for path in (data, items):
        if path is not None:
            with open(path, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


__all__ = ["Batch", "file_digest", "read_batch", "transitions_of"]
