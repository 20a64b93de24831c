"""The embedded default backend: one SQLite file per table version.

The file is built in WAL mode (fast bulk inserts, ``synchronous=NORMAL``) inside the staging
folder; :meth:`SqliteWriter.commit` checkpoints the WAL back into the main file and switches it to
a rollback journal, so the version is one self-contained file that the artifact manifest can
checksum. Readers open it with ``mode=ro&immutable=1``: a promoted version never changes, so
readers take no locks and never block, or are blocked by, a writer building the next version.

Schema: ``pairs(key = c1 * n + c2, ids, scores)``, ``last(c2, ids, scores)``,
``popular(id = 0, ids, scores)``, ``meta(key, value)``; ``ids`` are little-endian int32 blobs
(``-1`` pads) and ``scores`` float32 blobs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import urllib.parse
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hybridrec.errors import CorruptArtifactError
from hybridrec.serving.base import (
    SuccessorFallback,
    TableBackend,
    TableReader,
    TableWriter,
    check_contexts,
    fill_rows,
)
from hybridrec.types import Rankings

FILE_NAME = "table.sqlite"
_IN_CHUNK = 900  # stays below SQLite's default limit on bound parameters


def _blob_ids(row: np.ndarray) -> bytes:
    return np.ascontiguousarray(row, dtype="<i4").tobytes()


def _blob_scores(row: np.ndarray) -> bytes:
    return np.ascontiguousarray(row, dtype="<f4").tobytes()


class SqliteWriter(TableWriter):
    def __init__(self, folder: Path, *, n_clusters: int, k: int) -> None:
        self.path = Path(folder) / FILE_NAME
        self.n_clusters = n_clusters
        self.k = k
        self._rows = 0
        self._backoff: SuccessorFallback | None = None
        self._db: sqlite3.Connection | None = sqlite3.connect(self.path, isolation_level=None)
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE pairs(key INTEGER PRIMARY KEY, ids BLOB NOT NULL, scores BLOB NOT NULL)")
        db.execute("CREATE TABLE last(c2 INTEGER PRIMARY KEY, ids BLOB NOT NULL, scores BLOB NOT NULL)")
        db.execute("CREATE TABLE popular(id INTEGER PRIMARY KEY, ids BLOB NOT NULL, scores BLOB NOT NULL)")
        db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError(f"table writer for {self.path} is closed")
        return self._db

    @property
    def rows(self) -> int:
        return self._rows

    def write(self, rankings: Rankings) -> None:
        db = self._conn()
        ctx = check_contexts(rankings.contexts, self.n_clusters)
        ids = rankings.ids[:, : self.k]
        scores = rankings.scores[:, : self.k]
        keys = (ctx[:, 0] * self.n_clusters + ctx[:, 1]).tolist()
        ids32 = np.ascontiguousarray(ids, dtype="<i4")
        sc32 = np.ascontiguousarray(scores, dtype="<f4")
        rows = [(keys[i], ids32[i].tobytes(), sc32[i].tobytes()) for i in range(len(keys))]
        db.execute("BEGIN")
        try:
            db.executemany("INSERT INTO pairs(key, ids, scores) VALUES (?, ?, ?)", rows)
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK")
            raise ValueError(f"{self.path}: a context was written twice ({exc})") from None
        db.execute("COMMIT")
        self._rows += len(rows)

    def set_backoff(self, backoff: SuccessorFallback) -> None:
        if backoff.n_clusters != self.n_clusters:
            raise ValueError(
                f"backoff covers {backoff.n_clusters} clusters, the table {self.n_clusters}"
            )
        self._backoff = backoff

    def commit(self, manifest: dict[str, Any]) -> None:
        db = self._conn()
        backoff = self._backoff or SuccessorFallback.empty(self.n_clusters, self.k + 2)
        meta = {
            "n_clusters": self.n_clusters,
            "k": self.k,
            "rows": self._rows,
            "metadata": manifest,
        }
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO last(c2, ids, scores) VALUES (?, ?, ?)",
            [
                (c, _blob_ids(backoff.by_last[c]), _blob_scores(backoff.by_last_scores[c]))
                for c in range(self.n_clusters)
            ],
        )
        db.execute(
            "INSERT INTO popular(id, ids, scores) VALUES (0, ?, ?)",
            (_blob_ids(backoff.popular), _blob_scores(backoff.popular_scores)),
        )
        db.executemany(
            "INSERT INTO meta(key, value) VALUES (?, ?)",
            [(key, json.dumps(value, default=str, sort_keys=True)) for key, value in meta.items()],
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("PRAGMA journal_mode=DELETE")
        db.close()
        self._db = None

    def abort(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class SqliteReader(TableReader):
    """Read-only access to one SQLite table file; one connection per thread."""

    backoff: SuccessorFallback

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / FILE_NAME
        if not self.path.is_file():
            raise CorruptArtifactError(f"{self.path}: no SQLite table file in {folder}")
        # The path is percent-encoded: a folder named with %, # or ? must name itself, not a
        # URI escape, fragment or query (which could open another folder's table).
        self._uri = f"file:{urllib.parse.quote(str(Path(self.path).resolve()))}?mode=ro&immutable=1"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        db = self._conn()
        try:
            meta = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}
            last_rows = db.execute("SELECT c2, ids, scores FROM last ORDER BY c2").fetchall()
            popular_row = db.execute("SELECT ids, scores FROM popular WHERE id = 0").fetchone()
        except sqlite3.DatabaseError as exc:
            raise CorruptArtifactError(f"{self.path}: not a complete table ({exc})") from None
        self.n_clusters = int(meta["n_clusters"])
        self.k = int(meta["k"])
        self.rows = int(meta["rows"])
        self.metadata = dict(meta.get("metadata") or {})
        width = len(popular_row[0]) // 4
        by_last = np.full((self.n_clusters, width), -1, dtype=np.int64)
        by_last_scores = np.zeros((self.n_clusters, width), dtype=np.float64)
        for c2, ids, scores in last_rows:
            by_last[c2] = np.frombuffer(ids, dtype="<i4")
            by_last_scores[c2] = np.frombuffer(scores, dtype="<f4")
        self.backoff = SuccessorFallback(
            by_last=by_last,
            by_last_scores=by_last_scores,
            popular=np.frombuffer(popular_row[0], dtype="<i4").astype(np.int64),
            popular_scores=np.frombuffer(popular_row[1], dtype="<f4").astype(np.float64),
        )

    def _conn(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def _fetch(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = keys.shape[0]
        ids = np.full((n, self.k), -1, dtype=np.int64)
        scores = np.zeros((n, self.k), dtype=np.float64)
        db = self._conn()
        if n == 1:
            row = db.execute("SELECT ids, scores FROM pairs WHERE key = ?", (int(keys[0]),)).fetchone()
            if row is not None:
                ids[0] = np.frombuffer(row[0], dtype="<i4")
                scores[0] = np.frombuffer(row[1], dtype="<f4")
            return ids, scores
        position: dict[int, list[int]] = {}
        for i, key in enumerate(keys.tolist()):
            position.setdefault(key, []).append(i)
        unique = list(position)
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, blob_ids, blob_scores in db.execute(
                f"SELECT key, ids, scores FROM pairs WHERE key IN ({marks})", chunk
            ):
                row_ids = np.frombuffer(blob_ids, dtype="<i4")
                row_scores = np.frombuffer(blob_scores, dtype="<f4")
                for i in position[key]:
                    ids[i] = row_ids
                    scores[i] = row_scores
        return ids, scores

    def lookup_batch_with_levels(self, contexts: np.ndarray, k: int) -> tuple[Rankings, np.ndarray]:
        ctx = check_contexts(contexts, self.n_clusters)
        ids, scores = self._fetch(ctx[:, 0] * self.n_clusters + ctx[:, 1])
        return fill_rows(ctx, ids, scores, self.backoff, k)

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()


class SqliteBackend(TableBackend):
    """SQLite, one immutable file per version (the default)."""

    name: ClassVar[str] = "sqlite"

    def writer(self, folder: Path, *, n_clusters: int, k: int) -> TableWriter:
        return SqliteWriter(folder, n_clusters=n_clusters, k=k)

    def reader(self, folder: Path) -> TableReader:
        return SqliteReader(folder)


__all__ = [
    "FILE_NAME",
    "SqliteBackend",
    "SqliteReader",
    "SqliteWriter",
]
