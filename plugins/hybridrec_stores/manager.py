"""Snapshot lifecycle: build off the hot path, promote atomically, keep the last N, roll back.

Layout under ``root`` (shareable with other artifact kinds, see :mod:`hybridrec.artifacts`)::

    root/knowledge/.staging-*            a build in progress (or a crashed one, removed later)
    root/knowledge/v000007-1a2b3c4d/     complete, self-contained snapshot folders
    root/knowledge.current.json          the pointer: {"current": {...}, "history": [...]}

A refresh builds into a staging folder, commits it (checksummed manifest, fsync, atomic
rename), re-opens it with verification, and only then swaps the pointer with an atomic
``os.replace``. A process killed at any point therefore leaves the previous snapshot served;
the next refresh removes the leftovers. Refreshes of one ``root``/``kind`` are serialised by an
advisory file lock (released by the OS if the holder dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hybridrec.artifacts import ArtifactStore, Pointer
from hybridrec.errors import CorruptArtifactError, HybridrecError
from hybridrec.types import TimeWindow, TransitionSet
from hybridrec_stores.snapshot import MmapSnapshot
from hybridrec_stores.store import SnapshotStore


class SnapshotManager:
    """Versioned knowledge snapshots of one store under ``root``.

    ``refresh(transitions, window)`` builds, promotes and returns the new snapshot;
    ``current()`` returns the served one (falling back to the newest older snapshot that still
    verifies if the promoted one is corrupt); ``rollback()`` re-promotes the previous one.
    """

    def __init__(
        self, root: Path | str, store: SnapshotStore, *, keep: int = 3, kind: str = "knowledge"
    ) -> None:
        if keep < 1:
            raise HybridrecError(f"keep must be >= 1 (snapshots kept for rollback), got {keep}")
        self.root = Path(root)
        self.store = store
        self.keep = keep
        self.kind = kind
        self.artifacts = ArtifactStore(self.root)
        self.pointer = Pointer(self.root / f"{kind}.current.json")
        self.last_fallback: str | None = None
        self._cached: tuple[str, MmapSnapshot] | None = None

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{self.kind}.lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _clean_staging(self) -> None:
        folder = self.artifacts.kind_dir(self.kind)
        if folder.is_dir():
            for leftover in folder.glob(".staging-*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def refresh(self, transitions: TransitionSet, window: TimeWindow) -> MmapSnapshot:
        """Build a snapshot of ``window``, promote it, prune old ones, and return it opened."""
        with self._locked():
            self._clean_staging()
            staging = self.artifacts.stage(self.kind)
            try:
                built = self.store.build(transitions, window, staging.path)
                manifest = {k: v for k, v in built.manifest.items() if k != "files"}
                version = self.artifacts.commit(staging, manifest)
            except BaseException:
                self.artifacts.abort(staging)
                raise
            snapshot = self.store.open(version.path)
            self.pointer.write(
                {
                    "version": version.id,
                    "path": f"{self.kind}/{version.id}",
                    "snapshot_id": snapshot.id,
                    "window": {
                        "start": window.start.isoformat(),
                        "end": window.end.isoformat(),
                    },
                    "promoted_at": datetime.now(UTC).isoformat(),
                }
            )
            self._prune()
            self._cached = (version.id, snapshot)
            return snapshot

    def _prune(self) -> None:
        data = self.pointer.read_all()
        entries = [data.get("current"), *list(reversed(data.get("history") or []))]
        protect = {e["version"] for e in entries[: self.keep] if isinstance(e, dict)}
        self.artifacts.gc(self.kind, self.keep, protect=protect)

    def rollback(self) -> MmapSnapshot:
        """Make the previous promoted snapshot current again (skipping ones that no longer
        verify) and return it; raises :class:`CorruptArtifactError` if none is left."""
        with self._locked():
            problems: list[str] = []
            while True:
                try:
                    entry = self.pointer.rollback()
                except CorruptArtifactError:
                    detail = "; ".join(problems) or "nothing was promoted before"
                    raise CorruptArtifactError(
                        f"{self.pointer.path}: no earlier snapshot to roll back to ({detail})"
                    ) from None
                try:
                    snapshot = self._open_entry(entry)
                except CorruptArtifactError as exc:
                    problems.append(str(exc))
                    continue
                self._cached = (entry["version"], snapshot)
                return snapshot

    # -- reading -----------------------------------------------------------------------------

    def _open_entry(self, entry: dict[str, Any]) -> MmapSnapshot:
        return self.store.open(self.root / entry["path"])

    def current(self) -> MmapSnapshot | None:
        """The served snapshot, or None if nothing was promoted yet.

        A promoted version is verified once per manager (then served from memory); a pointer
        change is picked up on the next call. If the promoted snapshot fails verification, the
        newest earlier one that verifies is
        returned instead (``last_fallback`` says why, and a warning is issued); the pointer is
        left unchanged so an operator can inspect it or call :meth:`rollback`.
        """
        data = self.pointer.read_all()
        current = data.get("current")
        if current is None:
            return None
        if self._cached is not None and self._cached[0] == current["version"]:
            return self._cached[1]
        problems: list[str] = []
        for entry in [current, *reversed(data.get("history") or [])]:
            try:
                snapshot = self._open_entry(entry)
            except CorruptArtifactError as exc:
                problems.append(str(exc))
                continue
            if problems:
                self.last_fallback = "; ".join(problems)
                warnings.warn(
                    f"knowledge snapshot {current['version']} failed verification, serving "
                    f"{entry['version']} instead: {self.last_fallback}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                self.last_fallback = None
                self._cached = (entry["version"], snapshot)
            return snapshot
        raise CorruptArtifactError(
            f"{self.pointer.path}: no promoted knowledge snapshot verifies: {'; '.join(problems)}"
        )

    def versions(self) -> list[str]:
        """Complete snapshot versions on disk, oldest first."""
        return [v.id for v in self.artifacts.versions(self.kind)]
