"""Export a served table for a production key-value store, with the version it came from.

:func:`export_table` writes, into a new folder:

* ``table.jsonl`` (or ``table.csv``, ``table.parquet``) — one row per ordered context
  ``c1 != c2`` of the catalog: ``c1``, ``c2``, ``clusters``, ``scores``, ``level``, the top ``k``
  exactly as ``lookup`` serves them (``level`` is the backoff level that answered: ``pair`` for a
  table row; in CSV the lists are ``|``-separated);
* ``items.csv`` — ``item,cluster``: every item of the served data and its cluster (what
  :func:`~hybridrec.serving.recommend.recommend` maps a user's items with);
* ``catalog.json`` — the cluster catalog (ids, descriptions);
* ``manifest.json`` — the table version, its manifest, the catalog hash, ``k``, the row count,
  and the ``sha256`` and size of every file above.

Every row comes from one table version (one reader). The folder is written under a hidden
sibling name and renamed into place, so a crash never leaves a partial export under the name.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hybridrec.artifacts import sha256_file
from hybridrec.errors import HybridrecError
from hybridrec.serving.base import LEVELS, TableReader
from hybridrec.types import ClusterCatalog

CHUNK = 16_384
ExportFormat = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")


def export_table(
    reader: TableReader, catalog: ClusterCatalog, item_cluster: Mapping[str, int], out: Path,
    *, k: int | None = None, source: dict[str, Any] | None = None, fmt: ExportFormat = "jsonl",
) -> dict[str, Any]:
    """Write the export of ``reader``'s table into the new folder ``out`` (see the module
    docstring); returns the written manifest. ``source`` (the table version and its manifest,
    the workspace) is recorded in the manifest."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HybridrecError(f"{out}: the export folder must be new or empty")
    if fmt not in FORMATS:
        raise HybridrecError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    width = int(reader.k if k is None else k)
    if width < 1:
        raise HybridrecError(f"k must be at least 1, got {width}")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        n = len(catalog)
        keys = np.arange(n * n, dtype=np.int64)
        keys = keys[keys // n != keys % n]
        contexts = np.stack([keys // n, keys % n], axis=1)  # every ordered pair c1 != c2
        rows = 0
        table = f"table.{fmt}"
        parts: list[Any] = []
        with open(staging / table, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh) if fmt == "csv" else None
            if writer is not None:
                writer.writerow(["c1", "c2", "level", "clusters", "scores"])
            for lo in range(0, contexts.shape[0], CHUNK):
                part = contexts[lo : lo + CHUNK]
                rankings, levels = reader.lookup_batch_with_levels(part, width)
                chunk = [(c1, c2, ids[ids >= 0].tolist(),
                          [float(x) for x in np.asarray(scores)[ids >= 0]], LEVELS[level])
                         for (c1, c2), ids, scores, level in zip(
                             part.tolist(), rankings.ids, rankings.scores, levels.tolist(), strict=True)]
                rows += len(chunk)
                if fmt == "jsonl":
                    fh.writelines(json.dumps({"c1": a, "c2": b, "clusters": c, "scores": d, "level": e}) + "\n"
                                  for a, b, c, d, e in chunk)
                elif writer is not None:
                    writer.writerows((a, b, e, "|".join(map(str, c)), "|".join(repr(x) for x in d))
                                     for a, b, c, d, e in chunk)
                else:
                    parts.append(chunk)
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = [row for chunk in parts for row in chunk]
            pq.write_table(pa.table({
                "c1": pa.array([r[0] for r in flat], pa.int32()),
                "c2": pa.array([r[1] for r in flat], pa.int32()),
                "clusters": pa.array([r[2] for r in flat], pa.list_(pa.int32())),
                "scores": pa.array([r[3] for r in flat], pa.list_(pa.float64())),
                "level": pa.array([r[4] for r in flat], pa.string()),
            }), staging / table)
        with open(staging / "items.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["item", "cluster"])
            for item in sorted(item_cluster):
                writer.writerow([item, int(item_cluster[item])])
        (staging / "catalog.json").write_text(catalog.model_dump_json(indent=1), encoding="utf-8")
        files = {name: {"sha256": sha256_file(staging / name), "bytes": (staging / name).stat().st_size}
                 for name in (table, "items.csv", "catalog.json")}
        manifest = {
            **(source or {}), "exported_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "format": fmt, "table_file": table,
            "k": width, "rows": rows, "items": len(item_cluster), "clusters": len(catalog),
            "catalog_hash": catalog.hash, "files": files,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str) + "\n",
                                               encoding="utf-8")
        for path in staging.iterdir():
            os.chmod(path, 0o600)  # item ids are user data
        if out.exists():
            out.rmdir()
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def verify_export(folder: Path) -> list[str]:
    """Problems of an export folder against its manifest (empty: every file is intact)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"{folder / 'manifest.json'}: unreadable ({exc})"]
    problems = []
    for name, expected in (manifest.get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != expected.get("sha256"):
            problems.append(f"{path}: checksum differs from the manifest's")
    return problems


__all__ = ["FORMATS", "ExportFormat", "export_table", "verify_export"]
