"""A workspace: versioned artifacts, one atomic ``state`` pointer, a ledger (docs/architecture.md).

The workspace is storage only: :func:`hybridrec.engine.run_update` updates it, through
:meth:`Workspace.versions` (a :class:`~hybridrec.versions.VersionStore`).

Layout::

    WORKSPACE/
      workspace.json        marker: schema and creation time
      config.json           the validated pipeline config (from ``hybridrec init --config``)
      state                 the pointer: {"current": {...}, "history": [...]}, replaced atomically
      ledger.jsonl          one CostRecord per executed action
      quarantine.jsonl      rejected input rows with file, row, field and reason
      .lock                 held (flock) by the one update or rollback running
      catalog/ data/ adapters/ knowledge/ tables/
                            versions (``vNNNNNN-hash/`` with manifest.json), written in
                            ``.staging-*`` folders and renamed into place complete

The pointer's ``current`` entry names the served ``catalog``, ``data`` (list), ``adapter``,
``knowledge`` and ``table`` versions, the held adapters and the data clock. Every reader resolves
the pointer once per lookup (or batch) and reads only immutable version folders, so it always sees
one complete version; a crash anywhere in an update leaves the previous pointer, hence the
previous versions, served.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.artifacts import (
    DIR_MODE,
    MANIFEST,
    VERSION_ID,
    ArtifactStore,
    Pointer,
    Staging,
    Version,
    _fsync_dir,
    atomic_write_json,
    check_version_id,
    forget_verified,
    open_private,
    read_json,
    verify,
    verify_once,
)
from hybridrec.config import PipelineConfig
from hybridrec.errors import ConfigError, CorruptArtifactError, DataError, HybridrecError
from hybridrec.ingest import Batch, read_batch
from hybridrec.ledger import Ledger
from hybridrec.serving import ServedPrediction, TableReader, get_backend
from hybridrec.serving.recommend import Exclude, Recommendation, recommend
from hybridrec.types import (
    ClusterCatalog,
    CostRecord,
    QuarantineRecord,
    Rankings,
    TimeWindow,
    to_utc,
)
from hybridrec.versions import Candidate, Served

SCHEMA = "hybridrec.workspace/1"
MARKER = "workspace.json"
_RESUMABLE = ".staging-job-"

#: The pointer entry before anything was promoted (every key is always present).
EMPTY_ENTRY: dict[str, Any] = {
    "catalog": None, "data": [], "adapter": None, "knowledge": None, "table": None,
    "held_adapters": [],
}
#: Pointer keys and the artifact folder of each kind.
KIND_DIRS: dict[str, str] = {
    "catalog": "catalog", "data": "data", "adapter": "adapters", "knowledge": "knowledge",
    "table": "tables",
}


_TIMES = ("data_until", "data_start", "updated_at", "repaired_at")


def _is_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def entry_problem(entry: dict[str, Any]) -> str | None:
    """Why ``entry`` of the ``state`` file is malformed (None: well formed).

    Version ids must match :data:`~hybridrec.artifacts.VERSION_ID` (so no entry can name a path
    outside the workspace), ``data`` and ``held_adapters`` must be lists of them, and the clock
    fields ISO-8601 times. Every reader of the state goes through this check
    (:class:`~hybridrec.artifacts.Pointer`), so a damaged entry is reported with the repair
    command instead of failing later with a traceback.
    """

    def bad_id(value: Any) -> bool:
        return not (isinstance(value, str) and VERSION_ID.fullmatch(value))

    for key in ("catalog", "adapter", "knowledge", "table"):
        value = entry.get(key)
        if value is not None and bad_id(value):
            return f"{key} {value!r} is not a version id (v<digits>-<hex>)"
    for key in ("data", "held_adapters"):
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            return f"{key} is {type(value).__name__}, not a list of version ids"
        wrong = next((v for v in value if bad_id(v)), None)
        if wrong is not None:
            return f"{key} names {wrong!r}, not a version id (v<digits>-<hex>)"
    if entry.get("catalog") is None and (entry.get("data") or entry.get("table")):
        return "names data or a table but no catalog"
    for key in _TIMES:
        value = entry.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not _is_iso(value):
            return f"{key} {value!r} is not an ISO-8601 time"
    for key in ("drift", "rolled_back_from"):
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            return f"{key} is {type(entry[key]).__name__}, not an object"
    for value in (entry.get("rolled_back_from") or {}).values():
        if value is not None and bad_id(value):
            return f"rolled_back_from names {value!r}, not a version id"
    return None


class Workspace:
    """Open an existing workspace folder (see the module docstring); :meth:`init` creates one."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        marker = self.root / MARKER
        if not marker.is_file():
            raise HybridrecError(
                f"{self.root} is not a hybridrec workspace (no {MARKER}); create one with "
                "`hybridrec init WORKSPACE` (the measured preset) or `hybridrec init WORKSPACE --config FILE`"
            )
        self.config_path = self.root / "config.json"
        try:
            self.config = PipelineConfig.model_validate(read_json(self.config_path))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.config_path}: unreadable workspace config ({exc})") from None
        self.store = ArtifactStore(self.root)
        self.pointer = Pointer(self.root / "state", history=50, check=entry_problem)
        self.ledger = Ledger(self.root / "ledger.jsonl")
        self.quarantine_path = self.root / "quarantine.jsonl"
        #: served version -> (the version actually read, its reader)
        self._readers: dict[str, tuple[str, TableReader]] = {}
        self._readers_lock = threading.Lock()
        #: when each cached table was last re-hashed (monotonic seconds)
        self._verified_at: dict[str, float] = {}
        self._batches: dict[str, Batch] = {}
        self._catalog: tuple[str, ClusterCatalog] | None = None
        self._item_map: tuple[tuple[str, ...], dict[str, int], dict[int, list[str]]] | None = None
        #: Why the served table could not be used (an earlier one serves), or None.
        self.serving_problem: str | None = None
        self.served_table: str | None = None

    @classmethod
    def init(cls, root: Path | str, config: PipelineConfig) -> Workspace:
        """Create a workspace in ``root`` (missing or empty) for ``config``.

        Crash-safe: the workspace is written in a hidden sibling folder and renamed to ``root``
        in one step, so a killed ``init`` leaves either no workspace or a complete one (and at
        worst a ``.NAME.init-*`` sibling, removed by the next ``init``).
        """
        root = Path(root)
        if (root / MARKER).exists():
            raise HybridrecError(f"{root} is already a hybridrec workspace")
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise HybridrecError(f"{root} exists and is not empty; choose a new folder for the workspace")
        get_backend(config.serving.backend)
        parent = root.absolute().parent
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(f".{root.name}.init-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.init-", dir=parent))
        try:
            atomic_write_json(staging / "config.json", config.model_dump(mode="json"))
            atomic_write_json(staging / "state", {"current": None, "history": []})
            atomic_write_json(staging / MARKER, {"schema": SCHEMA, "created_at": datetime.now(UTC).isoformat()})
            os.chmod(staging, 0o755)
            os.rename(staging, root)  # replaces a missing or empty folder atomically
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(parent)
        return cls(root)

    # -- pointer -------------------------------------------------------------------------------

    def current(self) -> dict[str, Any] | None:
        """The served entry of the ``state`` pointer, or None before the first promotion.

        A ``state`` that is damaged, or missing while versions exist on disk, is a
        :class:`CorruptArtifactError` naming the repair command (never a new empty history).
        """
        if not self.pointer.path.exists() and any(
            self.store.versions(kind) for kind in ("data", "tables", "adapters")
        ):
            raise self.pointer.damaged("missing, though versions exist on disk")
        return self.pointer.read()

    def verified(self, kind: str, version: Any) -> Version:
        """Version ``version`` of artifact folder ``kind`` after checking it against its
        manifest (every file hashed once per process and version; sizes afterwards)."""
        found = self.store.get(kind, check_version_id(version, kind))
        try:
            if found.path.is_symlink() or not found.path.resolve().is_relative_to(self.root.resolve()):
                raise CorruptArtifactError(
                    f"{found.path}: a version folder must be a folder of this workspace, not a "
                    f"link to {found.path.resolve()}")
            manifest = verify_once(found.path)
            named = manifest.get("version")
            if named is not None and named != found.id:
                # a copy of another version put in this one's place: intact files, wrong version
                raise CorruptArtifactError(
                    f"{found.path}: its manifest is version {named}'s, not {found.id}'s")
        except CorruptArtifactError as exc:
            raise CorruptArtifactError(
                f"{exc}; nothing is built on it (`hybridrec status {self.root}` lists the damage, "
                f"`hybridrec rollback {self.root}` serves the last intact versions)"
            ) from None
        return found

    def promote(self, entry: dict[str, Any]) -> None:
        """Make ``entry`` current: one atomic replacement of the pointer file."""
        self.pointer.write(entry)

    def rollback(self) -> dict[str, Any]:
        """Serve the previous adapter, knowledge and table again.

        The data stays (ingested rows are not forgotten); the adapter rolled away from is added
        to the held adapters so the policy does not treat it as current. Earlier entries whose
        versions were collected or fail their checksums are skipped. Returns the new entry.
        """
        with self.locked():
            data = self.pointer.read_all()
            current = data.get("current")
            history = list(data.get("history") or [])
            if current is None or not history:
                raise HybridrecError(f"{self.root}: no previous version to roll back to")
            problems: list[str] = []
            previous: dict[str, Any] | None = None
            while history:
                candidate = dict(history.pop())
                problem = self._entry_problem(candidate)
                if problem is None:
                    previous = candidate
                    break
                problems.append(problem)
            if previous is None:
                raise HybridrecError(
                    f"{self.root}: cannot roll back: no earlier version is intact ("
                    + "; ".join(problems) + "); raise [serving] keep_versions to keep more rollback targets"
                )
            entry = dict(previous)
            for key in ("data", "data_until", "data_start", "updated_at", "catalog"):
                if key in current:
                    entry[key] = current[key]
            held = list(dict.fromkeys([*(previous.get("held_adapters") or []),
                                       *(current.get("held_adapters") or [])]))
            if current.get("adapter") and current.get("adapter") != previous.get("adapter"):
                held.append(current["adapter"])
            entry["held_adapters"] = held
            entry["rolled_back_from"] = {k: current.get(k) for k in ("adapter", "knowledge", "table")}
            if problems:
                entry["rollback_skipped"] = problems
            atomic_write_json(self.pointer.path, {"current": entry, "history": history})
            return entry

    def _entry_problem(self, entry: dict[str, Any]) -> str | None:
        """Why the adapter, knowledge or table of ``entry`` cannot be served (None: intact)."""
        for kind in ("adapter", "knowledge", "table"):
            version = entry.get(kind)
            if not version:
                continue
            folder = KIND_DIRS[kind]
            try:
                path = self.store.kind_dir(folder) / check_version_id(version, kind)
                if not path.is_dir():
                    return f"the {kind} {version} was garbage-collected"
                self.verified(folder, version)
            except CorruptArtifactError as exc:
                return f"the {kind} {version} is damaged ({exc})"
        return None

    def repair(self, catalog_from: Path | None = None, items: Path | None = None) -> dict[str, Any]:
        """Rebuild a damaged or missing ``state`` from the versions on disk; returns the new
        current entry. The damaged file is kept as ``state.damaged-*``.

        Without an intact catalog the data versions cannot be served: ``catalog_from`` (the
        interaction file of the workspace's first update, and its ``items`` file if that update
        had one) rebuilds it with the first update's code (:meth:`rebuild_catalog`), so the data
        is recovered; otherwise repair refuses and writes nothing.

        Only versions that pass :meth:`verified` are used. The current entry serves the newest
        intact table whose manifest status is ``ok`` with the adapter and knowledge snapshot it
        was built from (the newest intact ``ok`` ones when there is no such table), the newest
        intact catalog (the one the table was built for, when there is one) and every intact
        data version. Each earlier intact table becomes a history entry, oldest first, so
        ``rollback`` works after a repair. Adapters held for review stay held.
        """
        with self.locked():
            cache: dict[tuple[str, str], bool] = {}

            def intact(kind: str, version: Any) -> bool:
                if not isinstance(version, str) or not VERSION_ID.fullmatch(version):
                    return False
                if (kind, version) not in cache:
                    try:
                        self.verified(kind, version)
                        cache[kind, version] = True
                    except CorruptArtifactError:
                        cache[kind, version] = False
                return cache[kind, version]

            def usable(kind: str) -> list[Version]:
                return [v for v in self.store.versions(kind)
                        if intact(kind, v.id) and v.manifest.get("status", "ok") == "ok"]

            catalogs = [v for v in self.store.versions("catalog") if intact("catalog", v.id)]
            data = [v for v in self.store.versions("data") if intact("data", v.id)]
            if data and not catalogs:
                # Without the catalog the data cannot be served; a state without them would
                # make the next update start over from its own file alone.
                damaged = [v.id for v in self.store.versions("catalog")]
                if catalog_from is None:
                    raise CorruptArtifactError(
                        f"{self.root}: no intact catalog ({', '.join(damaged) or 'none on disk'} "
                        f"failed verification), so the {len(data)} intact data version(s) cannot "
                        "be served; the state was left as it is. Restore catalog/ from a backup, or "
                        "rebuild it from the file the first update read: hybridrec repair "
                        f"{self.root} --catalog-from FILE [--items ITEMS]")
                catalogs = [self.rebuild_catalog(catalog_from, items, data)]
            adapters, snapshots = usable("adapters"), usable("knowledge")
            entries: list[dict[str, Any]] = []
            for table in usable("tables"):
                built = table.manifest
                adapter, knowledge = built.get("adapter"), built.get("knowledge")
                if (adapter and not intact("adapters", adapter)) or (
                        knowledge and not intact("knowledge", knowledge)):
                    continue
                catalog = next((c.id for c in reversed(catalogs)
                                if c.manifest.get("hash") == built.get("catalog_hash")), None)
                entries.append({"adapter": adapter or None, "knowledge": knowledge or None,
                                "table": table.id, "catalog": catalog})
            if not entries:
                entries.append({"adapter": adapters[-1].id if adapters else None,
                                "knowledge": snapshots[-1].id if snapshots else None,
                                "table": None, "catalog": None})
            catalog = entries[-1]["catalog"] or (catalogs[-1].id if catalogs else None)
            held = [v.id for v in self.store.versions("adapters")
                    if intact("adapters", v.id) and v.manifest.get("status") == "needs_review"]
            now = datetime.now(UTC).isoformat()
            common: dict[str, Any] = {"catalog": catalog, "data": [v.id for v in data],
                                      "held_adapters": held, "repaired_at": now}
            ends = []
            for v in data:
                with contextlib.suppress(Exception):
                    batch = Batch.load(v.path / "interactions.npz")
                    if len(batch):
                        ends.append(int(batch.ts.max()))
            if ends:
                common["data_until"] = datetime.fromtimestamp(max(ends) + 1, UTC).isoformat()
            built_entries = [{**dict(EMPTY_ENTRY), **common, **e, "catalog": catalog}
                             for e in entries][-(self.pointer.history + 1):]
            current = built_entries[-1] if catalog else None
            history = built_entries[:-1] if current is not None else []
            if self.pointer.path.exists():
                os.replace(self.pointer.path, self.root / f"state.damaged-{datetime.now(UTC):%Y%m%dT%H%M%S%f}")
            atomic_write_json(self.pointer.path, {"current": current, "history": history})
            return dict(current or {**dict(EMPTY_ENTRY), **common})

    def rebuild_catalog(self, source: Path, items: Path | None, data: list[Version]) -> Version:
        """Rebuild the catalog from ``source`` (the first update's interaction file; ``items``
        its item file, if it had one) exactly as that update built it, check it against what
        the workspace recorded, and commit it as a new catalog version.

        Checked: its hash is the one the catalog versions and tables on disk record (when any
        does), so the adapters, snapshots and tables built for the old catalog serve again; and
        every item of ``data`` (the intact data versions) that ``source`` describes has the
        cluster it was stored with. Raises :class:`~hybridrec.errors.DataError` naming the file
        and the mismatch otherwise (nothing is written)."""
        source = Path(source)
        batch, catalog = read_batch(source, items=items, now=datetime.now(UTC), catalog=None,
                                    known_items={})
        recorded = {v.manifest.get("hash") for v in self.store.versions("catalog")}
        recorded |= {v.manifest.get("catalog_hash") for v in self.store.versions("tables")}
        recorded.discard(None)
        if recorded and catalog.hash not in recorded:
            raise DataError(
                f"{source}: the catalog it gives ({len(catalog)} clusters, hash {catalog.hash[:12]}) "
                f"is not the one this workspace's versions were built for (hash "
                f"{', '.join(sorted(str(h)[:12] for h in recorded))}); give the interaction file "
                "(and --items file) of the workspace's first update")
        described = dict(zip(batch.item.tolist(), batch.cluster.tolist(), strict=True))
        for version in data:
            stored = Batch.load(version.path / "interactions.npz")
            for item, cluster in zip(stored.item.tolist(), stored.cluster.tolist(), strict=True):
                if described.get(item, cluster) != cluster:
                    raise DataError(
                        f"{source}: item {item!r} is in cluster {described[item]} of the rebuilt "
                        f"catalog but data version {version.id} stores it in cluster {cluster}; "
                        "give the file of the workspace's first update")
        staging = self.store.stage("catalog")
        (staging.path / "catalog.json").write_text(catalog.model_dump_json(indent=1))
        return self.store.commit(staging, {"clusters": len(catalog), "hash": catalog.hash,
                                           "rebuilt_from": str(source.resolve())})

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the workspace's update lock (one update or rollback at a time)."""
        with open_private(self.root / ".lock", "a") as fh:  # never through a planted link
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HybridrecError(
                    f"{self.root}: another update or rollback is running; wait for it to finish"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- artifacts -----------------------------------------------------------------------------

    def kind_dir(self, kind: str) -> Path:
        return self.store.kind_dir(KIND_DIRS.get(kind, kind))

    def clean_staging(self, keep_resumable: bool = True) -> int:
        """Remove leftovers of interrupted writes (resumable fine-tune folders are kept)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for kind_dir in self.root.iterdir():
            if not kind_dir.is_dir():
                continue
            for p in kind_dir.glob(".staging-*"):
                if keep_resumable and p.name.startswith(_RESUMABLE):
                    continue
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def resumable_staging(self, kind: str, key: str) -> Staging:
        """A staging folder named after ``key``: a crashed job finds its checkpoints again.

        Resumable folders of other jobs of ``kind`` are removed.
        """
        folder = self.store.kind_dir(kind)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{_RESUMABLE}{key}"
        for other in folder.glob(f"{_RESUMABLE}*"):
            if other != path:
                shutil.rmtree(other, ignore_errors=True)
        path.mkdir(mode=DIR_MODE, exist_ok=True)
        return Staging(kind, path)

    def referenced(self, history: int | None = None) -> set[str]:
        """Version ids named by the current entry, its last ``history`` predecessors (all if
        None) and any held adapter: what garbage collection must keep."""
        data = self.pointer.read_all()
        previous = list(data.get("history") or [])
        if history is not None:
            previous = previous[-history:] if history > 0 else []
        ids: set[str] = set()
        for entry in [data.get("current") or {}, *previous]:
            for key in ("catalog", "adapter", "knowledge", "table"):
                if entry.get(key):
                    ids.add(str(entry[key]))
            ids.update(str(v) for v in entry.get("data") or [])
            ids.update(str(v) for v in entry.get("held_adapters") or [])
            ids.update(str(v) for v in (entry.get("rolled_back_from") or {}).values() if v)
        return ids

    def collect_garbage(self) -> dict[str, list[str]]:
        """Delete the versions nothing will serve again; returns the ids deleted per kind.

        * Adapter, knowledge and table versions: all but the newest ``[serving] keep_versions``
          of each kind, never one that the current entry, the last ``keep_versions`` entries
          before it (the rollback targets) or a held adapter names.
        * Versions left by a killed or failed update (committed, never promoted): a version of
          any kind that no entry of the state names, newer than the oldest version of its kind
          that one does. Data and catalog versions older than that are kept (a state reset to
          empty loses no data: ``hybridrec repair`` adopts them again).

        Runs under the update lock, after the pointer is written, so it never removes what the
        state names.
        """
        keep = self.config.serving.keep_versions
        protect = self.referenced(history=keep)
        everything = self.referenced()

        def orphans(kind: str) -> set[str]:
            versions = self.store.versions(kind)
            named = [v for v in versions if v.id in everything]
            return {v.id for v in versions
                    if named and v.id not in everything and v.id > named[0].id}

        collected: dict[str, list[str]] = {}
        for kind in ("adapters", "knowledge", "tables"):
            collected[kind] = self.store.gc(kind, keep, protect, doomed=orphans(kind))
        for kind in ("data", "catalog"):
            # older unnamed data is never collected: if a state was reset, `repair` recovers it
            collected[kind] = self.store.gc(kind, len(self.store.versions(kind)), everything,
                                            doomed=orphans(kind))
        return collected

    def catalog(self) -> ClusterCatalog:
        """The workspace's cluster catalog (fixed by the first update)."""
        entry = self.current() or {}
        version = entry.get("catalog")
        if version is None:
            raise HybridrecError(f"{self.root}: no catalog yet; run `hybridrec update` with data first")
        if self._catalog is None or self._catalog[0] != version:
            path = self.verified("catalog", version).path / "catalog.json"
            self._catalog = (str(version), ClusterCatalog.model_validate_json(path.read_text()))
        return self._catalog[1]

    def load_batches(self, ids: list[str]) -> Batch:
        """The accumulated log: the concatenation of the ``data`` versions ``ids``."""
        for version in ids:
            if version not in self._batches:
                path = self.verified("data", version).path / "interactions.npz"
                self._batches[version] = Batch.load(path)
        return Batch.concat([self._batches[v] for v in ids])

    def known_items(self, ids: list[str]) -> dict[str, int]:
        """Item id -> cluster id over the data versions ``ids`` (first seen wins)."""
        return self._index(tuple(ids))[0]

    def item_index(self) -> tuple[dict[str, int], dict[int, list[str]]]:
        """The served data's item -> cluster map and, per cluster, its items by descending
        interaction count (ties by id); cached per served data, shared (never mutated)."""
        return self._index(tuple((self.current() or {}).get("data") or []))

    def _index(self, ids: tuple[str, ...]) -> tuple[dict[str, int], dict[int, list[str]]]:
        """:meth:`item_index` over the data versions ``ids`` (the last one is cached)."""
        cached = self._item_map
        if cached is None or cached[0] != ids:
            batch = self.load_batches(list(ids))
            mapping: dict[str, int] = {}
            by_cluster: dict[int, list[str]] = {}
            if len(batch):
                items, first, counts = np.unique(batch.item, return_index=True, return_counts=True)
                clusters = batch.cluster[first]
                mapping = dict(zip(items.tolist(), clusters.tolist(), strict=True))
                for i in np.lexsort((items, -counts)).tolist():
                    by_cluster.setdefault(int(clusters[i]), []).append(str(items[i]))
            cached = (ids, mapping, by_cluster)
            self._item_map = cached
        return cached[1], cached[2]

    def item_clusters(self) -> dict[str, int]:
        """Item id -> cluster id of every item in the served data (an item keeps the cluster it
        first had; the catalog is fixed by the first update). Cached per served data."""
        return dict(self.item_index()[0])

    def popular_items(self, cluster: int, n: int = 3) -> list[str]:
        """The ``n`` items of ``cluster`` with the most interactions in the served data."""
        return list(self.item_index()[1].get(int(cluster), [])[:n])

    def recommend(self, items: list[str], k: int = 5, *, exclude: Exclude = "history",
                  top_items: int = 0, reader: TableReader | None = None) -> Recommendation:
        """The next interest clusters for a user whose recent ``items`` (oldest first) are
        given: :func:`hybridrec.serving.recommend.recommend` over the served table (or
        ``reader``, one a caller already holds) and :meth:`item_clusters`; with ``top_items``,
        each cluster's most popular items too."""
        mapping, by_cluster = self.item_index()
        found = recommend(reader or self.reader(), self.catalog(), mapping, items, k, exclude=exclude)
        if top_items > 0:
            found.popular_items = {c: by_cluster.get(c, [])[:top_items] for c in found.clusters}
        return found

    def append_quarantine(self, records: list[QuarantineRecord]) -> None:
        if not records:
            return
        with open_private(self.quarantine_path, "a") as fh:
            for record in records:
                fh.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def versions(self) -> WorkspaceVersions:
        """The workspace as a version store for one update, starting from what is served
        (the whole state is checked first: an update never works toward a pointer it cannot
        write)."""
        current = self.current()
        self.pointer.read_all()
        return WorkspaceVersions(self, {**EMPTY_ENTRY, **(current or {})})

    # -- serving -------------------------------------------------------------------------------

    def reader(self) -> TableReader:
        """A reader of the currently served table (:meth:`served_reader`'s reader)."""
        return self.served_reader()[1]

    def served_reader(self) -> tuple[str, TableReader]:
        """The version of the currently served table and a reader of it (cached per version;
        thread-safe). Every lookup through one reader reads that one immutable version.

        The table is checked against its manifest before it is first opened in this process
        (:meth:`verified`). A served table that fails is never read: the newest earlier table
        of the state's history that passes serves instead, and :attr:`serving_problem` says
        why (``status`` reports it and exits non-zero).
        """
        failure: CorruptArtifactError | None = None
        version: Any = None
        for _attempt in range(3):
            entry = self.current()
            version = None if entry is None else entry.get("table")
            if version is None:
                raise HybridrecError(
                    f"{self.root}: no table has been promoted yet; run `hybridrec update` first"
                )
            with self._readers_lock:
                cached = self._readers.get(version)
                if cached is not None and self._still_intact(str(version)):
                    return cached
                if cached is not None:  # damaged since it was opened: never served again
                    self._readers.pop(version, None)
                    self._verified_at.pop(str(version), None)
                    failure = CorruptArtifactError(
                        f"{self.store.kind_dir('tables') / str(version)}: its files no longer match "
                        "the manifest (changed on disk while it was served)")
                    break
                try:
                    reader = self._open_table(version)
                except FileNotFoundError:
                    continue
                except CorruptArtifactError as exc:
                    with contextlib.suppress(CorruptArtifactError):
                        if not (self.store.kind_dir("tables") / check_version_id(version)).is_dir():
                            continue  # collected between reading the pointer and opening: read again
                    failure = exc
                    break
                # Dropped, not closed: another thread may still be answering from it; its
                # connections close when the last reference goes.
                self._readers.clear()
                self._readers[version] = (str(version), reader)
                self._verified_at = {str(version): time.monotonic()}
                self.serving_problem = None
                return str(version), reader
        if failure is None:  # still missing after reading the pointer again: deleted
            failure = CorruptArtifactError(f"{self.root}: the folder of the served table {version} is missing")
        return self._fallback_reader(str(version), failure)

    def _still_intact(self, version: str) -> bool:
        """Whether the served table ``version`` passes a deep re-hash, when the last one is
        ``serving.reverify_seconds`` old (True in between: a lookup pays a clock read)."""
        every = self.config.serving.reverify_seconds
        last = self._verified_at.get(version)
        if every is None or last is None or time.monotonic() - last < every:
            return True
        folder = self.store.kind_dir("tables") / version
        try:
            verify(folder, deep=True)
        except CorruptArtifactError:
            forget_verified(folder)
            return False
        self._verified_at[version] = time.monotonic()
        return True

    def _open_table(self, version: Any) -> TableReader:
        folder = self.verified("tables", version).path
        manifest = read_json(folder / MANIFEST)
        return get_backend(manifest.get("backend", self.config.serving.backend)).reader(folder)

    def _fallback_reader(self, version: str, failure: CorruptArtifactError) -> tuple[str, TableReader]:
        history = list(self.pointer.read_all().get("history") or [])
        for earlier in reversed(history):
            candidate = earlier.get("table")
            if not candidate or candidate == version:
                continue
            try:
                reader = self._open_table(candidate)
            except (CorruptArtifactError, FileNotFoundError):
                continue
            with self._readers_lock:
                self._readers.clear()
                self._readers[version] = (str(candidate), reader)
            self.serving_problem = (
                f"the served table {version} failed verification ({failure}); serving the "
                f"earlier table {candidate}; run `hybridrec rollback {self.root}` to make that "
                "choice durable (an update does not build on a damaged table)"
            )
            self.served_table = candidate
            return str(candidate), reader
        raise CorruptArtifactError(
            f"{self.root}: the served table {version} failed verification ({failure}) and no "
            f"earlier table is intact; run `hybridrec update {self.root} --data FILE` to build one"
        )

    def lookup(self, c1: int, c2: int, k: int = 5) -> ServedPrediction:
        """Top-``k`` clusters for context ``(c1, c2)`` with the backoff level that answered."""
        return self.reader().lookup((c1, c2), k)

    def lookup_batch(self, contexts: np.ndarray, k: int = 5) -> Rankings:
        """Top-``k`` clusters for every row of ``contexts``, all from one table version."""
        return self.reader().lookup_batch(contexts, k)

    def close(self) -> None:
        with self._readers_lock:
            for _, reader in self._readers.values():
                reader.close()
            self._readers.clear()

    # -- status --------------------------------------------------------------------------------

    def integrity(self, entry: dict[str, Any] | None = None) -> list[str]:
        """Problems of the served versions (catalog, data, adapter, knowledge, table) against
        their manifests; empty when everything is intact."""
        entry = self.current() if entry is None else entry
        problems: list[str] = []
        for kind in ("catalog", "adapter", "knowledge", "table"):
            if (entry or {}).get(kind):
                try:
                    self.verified(KIND_DIRS[kind], entry[kind])  # type: ignore[index]
                except CorruptArtifactError as exc:
                    problems.append(f"{kind} {entry[kind]}: {exc}")  # type: ignore[index]
        for version in (entry or {}).get("data") or []:
            try:
                self.verified("data", version)
            except CorruptArtifactError as exc:
                problems.append(f"data {version}: {exc}")
        return problems

    def _row_ages(self, version: Any, clock: datetime | None) -> dict[str, float] | None:
        """Quantiles of the served table's row ages at the last update's clock: days since each
        row's evidence was last confirmed current (ranked, or found identical); None when the
        table records no times."""
        from hybridrec.engine.tables import TableRows

        if not version or clock is None:
            return None
        try:
            verified = TableRows.load_verified_at(self.store.get("tables", str(version)).path)
        except (CorruptArtifactError, OSError, ValueError):
            return None
        if verified is None or verified.shape[0] == 0:
            return None
        ages = np.maximum(clock.timestamp() - verified, 0.0) / 86400.0
        return {name: round(float(np.quantile(ages, q)), 3)
                for name, q in (("p50", 0.5), ("p90", 0.9), ("max", 1.0))}

    def status(self) -> dict[str, Any]:
        """Versions, staleness, last actions, costs and guardrail holds, as plain JSON data.

        ``problems`` lists what fails verification (``hybridrec status`` then exits 1)."""
        entry = self.current() or {}
        cfg = self.config
        problems = self.integrity(entry)

        def manifest(kind: str, version: Any) -> dict[str, Any] | None:
            if not version:
                return None
            with contextlib.suppress(CorruptArtifactError, OSError):
                return self.store.get(kind, str(version)).manifest
            return None

        adapter = manifest("adapters", entry.get("adapter"))
        knowledge = manifest("knowledge", entry.get("knowledge"))
        table = manifest("tables", entry.get("table"))
        data_until = _parse(entry.get("data_until"))

        def lag(end: Any) -> float | None:
            when = _parse(end)
            if when is None or data_until is None:
                return None
            return round((data_until - when).total_seconds() / 86400.0, 3)

        records = self.ledger.records()
        totals: dict[str, dict[str, float]] = {}
        for r in records:
            row = totals.setdefault(r.action, {"count": 0, "flops": 0.0, "seconds": 0.0, "money": 0.0})
            row["count"] += 1
            row["flops"] += r.flops
            row["seconds"] += r.seconds
            row["money"] += r.money
        clock = _parse(entry.get("updated_at"))
        budget = cfg.budget
        period: dict[str, Any] = {"period_days": budget.period_days}
        if clock is not None:
            since = clock - timedelta(days=budget.period_days)
            for unit in ("flops", "seconds", "money"):
                spent = sum(getattr(r, unit) for r in records if r.at >= since)
                period[unit] = {"spent": spent, "limit": getattr(budget, unit)}
        holds = []
        for version in entry.get("held_adapters") or []:
            held = manifest("adapters", version) or {}
            holds.append({"version": version, "status": held.get("status", "needs_review"),
                          "reasons": held.get("guardrail_reasons", []), "metrics": held.get("metrics", {})})
        quarantined = 0
        if self.quarantine_path.is_file():
            with open(self.quarantine_path, encoding="utf-8") as fh:
                quarantined = sum(1 for line in fh if line.strip())
        return {
            "workspace": str(self.root),
            "plugins": {role: getattr(cfg, role).plugin for role in (
                "update_policy", "generator", "fine_tuner", "knowledge_store", "cost_model", "executor")},
            "serving_backend": cfg.serving.backend,
            "updated_at": entry.get("updated_at"),
            "versions": {
                "catalog": entry.get("catalog"), "data": list(entry.get("data") or []),
                "adapter": entry.get("adapter"), "knowledge": entry.get("knowledge"),
                "table": entry.get("table"),
            },
            "staleness": {
                "data_until": entry.get("data_until"),
                "adapter_trained_until": (adapter or {}).get("window", {}).get("end"),
                "adapter_lag_days": lag((adapter or {}).get("window", {}).get("end")),
                "knowledge_until": (knowledge or {}).get("window", {}).get("end"),
                "knowledge_lag_days": lag((knowledge or {}).get("window", {}).get("end")),
                "table_built_at": (table or {}).get("built_at"),
                "table_uses_knowledge": bool((table or {}).get("knowledge")),
                "table_row_age_days": self._row_ages(entry.get("table"), clock),
            },
            "drift": entry.get("drift"),
            "last_actions": [r.model_dump(mode="json", exclude={"estimate"}) for r in records[-10:]],
            "costs": {"by_action": totals, "budget": period},
            "guardrail_holds": holds,
            "quarantined_rows": quarantined,
            "rolled_back_from": entry.get("rolled_back_from"),
            "history": len(self.pointer.read_all().get("history") or []),
            "problems": problems,
            "ok": not problems,
        }


class WorkspaceVersions:
    """A :class:`~hybridrec.versions.VersionStore` over a workspace for one update.

    Versions are committed into the workspace's artifact folders at once; what is *served* is the
    ``entry`` being built, which the update makes current with one atomic pointer write at the
    end (:meth:`Workspace.promote`). Ledger records are appended (and fsynced) at once.
    """

    def __init__(self, ws: Workspace, entry: dict[str, Any]) -> None:
        self.ws = ws
        self.entry = entry

    def served(self, kind: str) -> str | None:
        value = self.entry.get(kind)
        return None if value is None else str(value)

    def manifest(self, kind: str, version: str | None) -> dict[str, Any] | None:
        if version is None:
            return None
        return self.ws.store.get(KIND_DIRS[kind], version).manifest

    def path(self, kind: str, version: str | None, sub: str) -> Path | None:
        """``sub`` inside the folder of ``version`` of ``kind`` (None for None), after the
        version is verified against its manifest: nothing damaged is built upon."""
        if version is None:
            return None
        return self.ws.verified(KIND_DIRS[kind], version).path / sub

    def commit(self, kind: str, candidate: Candidate) -> str:
        return str(self.ws.store.commit(candidate.handle, candidate.manifest).id)

    def promote(self, kind: str, version: str) -> None:
        self.entry[kind] = version

    def hold(self, kind: str, version: str) -> None:
        if kind == "adapter":
            self.entry["held_adapters"] = [*(self.entry.get("held_adapters") or []), version]

    def record(self, record: CostRecord) -> None:
        self.ws.ledger.append(record)

    def ledger(self, since: datetime | None = None) -> list[CostRecord]:
        return self.ws.ledger.records(since)

    def describe(self) -> Served:
        adapter = self.manifest("adapter", self.served("adapter"))
        knowledge = self.manifest("knowledge", self.served("knowledge"))
        table = self.manifest("table", self.served("table"))
        return Served(
            adapter=self.served("adapter"),
            adapter_window=TimeWindow.model_validate(adapter["window"]) if adapter and adapter.get("window") else None,
            adapter_trained_at=_parse(adapter.get("trained_at")) if adapter else None,
            knowledge=self.served("knowledge"),
            knowledge_window=TimeWindow.model_validate(knowledge["window"]) if knowledge else None,
            knowledge_built_at=_parse(knowledge.get("built_at")) if knowledge else None,
            table=self.served("table"),
            table_built_at=_parse(table.get("built_at")) if table else None,
            table_uses_knowledge=bool(table.get("knowledge")) if table else False,
            held=tuple(self.entry.get("held_adapters") or ()),
        )


def _parse(raw: Any) -> datetime | None:
    if not raw:
        return None
    return to_utc(datetime.fromisoformat(str(raw)))


__all__ = ["EMPTY_ENTRY", "KIND_DIRS", "SCHEMA", "Workspace", "WorkspaceVersions"]
