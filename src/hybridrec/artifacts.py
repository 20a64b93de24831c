"""Versioned, checksummed artifact folders with atomic promotion.

Layout under a root folder::

    root/
      <kind>/                      # "adapters", "knowledge", "tables", ...
        .staging-<random>/         # being written; never read
        v000003-1a2b3c4d/          # complete: files + manifest.json (sha256 of every file)
      <pointer file>               # JSON naming the served version(s); replaced atomically

A version folder appears only by an atomic ``rename`` of a fully written, fsynced staging
folder, and a pointer changes only by an atomic ``os.replace`` of a fsynced file. So a crash at
any point leaves either the old or the new version served, never a mix, and leaves at worst a
stale ``.staging-*`` folder, which :func:`clean_staging` removes.

Every manifest lists the sha256 and size of each file of its version and its own sha256
(``manifest_sha256``, over its canonical JSON without that key), so a changed byte anywhere in a
version -- data file or manifest -- fails :func:`verify`. Staging folders are created 0700 and
files 0600, so user data is never readable by other users, not even while it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hybridrec.errors import CorruptArtifactError
from hybridrec.types import UTC

MANIFEST = "manifest.json"
#: What a version id looks like (``v000003-1a2b3c4d``); anything else is refused before it
#: becomes part of a path, so a ``state`` file cannot name a folder outside the workspace.
VERSION_ID = re.compile(r"v\d+-[0-9a-f]+")
#: Mode of every file holding data (user ids, tables, quarantined rows).
FILE_MODE = 0o600
#: Mode of staging folders (and so of the version folders they become).
DIR_MODE = 0o700
#: The manifest key holding the sha256 of the manifest's own canonical JSON.
MANIFEST_SHA = "manifest_sha256"


def check_version_id(version_id: Any, kind: str = "artifact") -> str:
    """``version_id`` if it is a well-formed version id, else :class:`CorruptArtifactError`."""
    if not isinstance(version_id, str) or not VERSION_ID.fullmatch(version_id):
        raise CorruptArtifactError(
            f"{kind} version id {version_id!r} is not of the form v<digits>-<hex>; the state "
            "file is damaged or was edited"
        )
    return version_id


def open_private(path: Path, mode: str = "a", encoding: str | None = "utf-8") -> Any:
    """``open(path, mode)`` (``"a"``, ``"w"``, ``"ab"``, ``"wb"``) with the file's mode 0600
    (user data), whether it is created now or existed with a wider mode."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    try:
        # Never through a symbolic link: a link planted at a workspace file must not make a
        # write (or the chmod below) land outside the workspace.
        fd = os.open(path, flags | os.O_NOFOLLOW, FILE_MODE)
    except OSError as exc:
        if Path(path).is_symlink():
            from hybridrec.errors import CorruptArtifactError

            raise CorruptArtifactError(
                f"{path} is a symbolic link (to {os.readlink(path)}); hybridrec never writes "
                "through one: remove the link") from exc
        raise
    os.fchmod(fd, FILE_MODE)
    binary = "b" in mode
    return os.fdopen(fd, ("a" if "a" in mode else "w") + ("b" if binary else ""),
                     encoding=None if binary else encoding)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of ``manifest``'s canonical JSON without its :data:`MANIFEST_SHA` key (the JSON
    as written and read back, so the digest of a manifest read from disk is comparable)."""
    body = {k: v for k, v in manifest.items() if k != MANIFEST_SHA}
    canonical = json.loads(json.dumps(body, sort_keys=True, default=str))
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _inside(folder: Path, rel: Any) -> Path:
    """``folder / rel`` for a manifest's relative file name; a name that is absolute or climbs
    out of ``folder`` is a :class:`CorruptArtifactError` (never opened)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel or any(
        part in ("", ".", "..") for part in rel.split("/")
    ):
        raise CorruptArtifactError(
            f"{folder / MANIFEST}: file name {rel!r} is not a plain path inside the version"
        )
    return folder / rel


def checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file under ``folder`` except the manifest, by relative path."""
    out: dict[str, dict[str, Any]] = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        out[rel] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
    return out


def verify(folder: Path, *, deep: bool = True) -> dict[str, Any]:
    """Check ``folder`` against its manifest; return the manifest or raise.

    ``deep=False`` checks presence and sizes only (cheap, for hot paths); ``deep=True`` also
    re-hashes every file. Both check the manifest's own digest (:data:`MANIFEST_SHA`; manifests
    written before it existed have none and are accepted) and refuse file names that leave the
    folder.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CorruptArtifactError(
            f"{folder}: no {MANIFEST}; the artifact is incomplete (interrupted write?)"
        )
    try:
        manifest = read_json(manifest_path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict):
        raise CorruptArtifactError(f"{manifest_path}: the manifest is not a JSON object")
    own = manifest.get(MANIFEST_SHA)
    if own is not None and own != manifest_digest(manifest):
        raise CorruptArtifactError(f"{manifest_path}: the manifest does not match its own checksum "
                                   "(corrupt or edited)")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise CorruptArtifactError(f"{manifest_path}: manifest has no 'files' checksums")
    for rel, meta in files.items():
        path = _inside(folder, rel)
        if not isinstance(meta, dict):
            raise CorruptArtifactError(f"{manifest_path}: the entry of {rel!r} is not an object")
        if not path.is_file():
            raise CorruptArtifactError(f"{folder}: file {rel} listed in the manifest is missing")
        size = path.stat().st_size
        if size != meta.get("bytes"):
            raise CorruptArtifactError(
                f"{path}: {size} bytes, manifest says {meta.get('bytes')} (truncated or changed)"
            )
        if deep and sha256_file(path) != meta.get("sha256"):
            raise CorruptArtifactError(f"{path}: checksum mismatch (corrupt or changed)")
    return dict(manifest)


_VERIFIED: set[tuple[str, int, int, int]] = set()
_VERIFIED_LOCK = threading.Lock()


def forget_verified(folder: Path | None = None) -> None:
    """Forget which versions this process verified (all, or ``folder`` only): the next open
    re-hashes every file."""
    prefix = None if folder is None else str(Path(folder).resolve())
    with _VERIFIED_LOCK:
        if prefix is None:
            _VERIFIED.clear()
        else:
            for key in [k for k in _VERIFIED if k[0] == prefix]:
                _VERIFIED.discard(key)


def verify_once(folder: Path) -> dict[str, Any]:
    """:func:`verify` with every file re-hashed the first time this process opens a version,
    and presence and sizes only afterwards (versions are immutable; the cache key includes the
    manifest's inode, size and mtime, so a replaced manifest is verified again)."""
    folder = Path(folder)
    try:
        st = (folder / MANIFEST).stat()
    except OSError:
        raise CorruptArtifactError(
            f"{folder}: no {MANIFEST}; the artifact is incomplete or was deleted"
        ) from None
    key = (str(folder.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    with _VERIFIED_LOCK:
        seen = key in _VERIFIED
    manifest = verify(folder, deep=not seen)
    if not seen:
        with _VERIFIED_LOCK:
            _VERIFIED.add(key)
    return manifest


@dataclass(frozen=True)
class Version:
    """A complete artifact version on disk."""

    kind: str
    id: str
    path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        try:
            data = read_json(self.path / MANIFEST)
        except FileNotFoundError:
            raise CorruptArtifactError(f"{self.path}: the manifest is missing") from None
        except (ValueError, OSError) as exc:
            raise CorruptArtifactError(f"{self.path / MANIFEST}: unreadable manifest ({exc})") from None
        if not isinstance(data, dict):
            raise CorruptArtifactError(f"{self.path / MANIFEST}: the manifest is not a JSON object")
        return dict(data)


class Staging:
    """A folder being written; :meth:`ArtifactStore.commit` turns it into a version."""

    def __init__(self, kind: str, path: Path) -> None:
        self.kind = kind
        self.path = path


class ArtifactStore:
    """Versioned artifact folders of several kinds under one root."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def kind_dir(self, kind: str) -> Path:
        if not re.fullmatch(r"[a-z_]+", kind):
            raise CorruptArtifactError(f"artifact kind {kind!r} is not a plain folder name")
        return self.root / kind

    def versions(self, kind: str) -> list[Version]:
        """Complete versions of ``kind``, oldest first (by sequence number)."""
        folder = self.kind_dir(kind)
        if not folder.is_dir():
            return []
        found = [
            Version(kind, p.name, p)
            for p in folder.iterdir()
            if p.is_dir() and VERSION_ID.fullmatch(p.name) and (p / MANIFEST).is_file()
        ]
        return sorted(found, key=lambda v: v.id)

    def get(self, kind: str, version_id: str) -> Version:
        path = self.kind_dir(kind) / check_version_id(version_id, kind)
        if not (path / MANIFEST).is_file():
            raise CorruptArtifactError(f"{kind} version {version_id} not found or incomplete at {path}")
        return Version(kind, version_id, path)

    def _next_seq(self, kind: str) -> int:
        folder = self.kind_dir(kind)
        seqs = [0]
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith("v") and "-" in p.name:
                    with contextlib.suppress(ValueError):
                        seqs.append(int(p.name[1:].split("-", 1)[0]))
        return max(seqs) + 1

    def stage(self, kind: str) -> Staging:
        folder = self.kind_dir(kind)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".staging-{uuid.uuid4().hex[:12]}"
        path.mkdir(mode=DIR_MODE)
        return Staging(kind, path)

    def commit(self, staging: Staging, manifest: dict[str, Any]) -> Version:
        """Checksum the staged files, write the manifest, fsync, and rename into place."""
        files = checksums(staging.path)
        for rel in files:
            os.chmod(staging.path / rel, FILE_MODE)
            with open(staging.path / rel, "rb") as fh:
                os.fsync(fh.fileno())
        digest = hashlib.sha256(
            json.dumps(files, sort_keys=True).encode() + json.dumps(manifest, sort_keys=True, default=str).encode()
        ).hexdigest()[:8]
        seq = self._next_seq(staging.kind)
        version_id = f"v{seq:06d}-{digest}"
        full = dict(manifest)
        full.update(
            {"kind": staging.kind, "version": version_id, "files": files,
             "created_at": datetime.now(UTC).isoformat()}
        )
        full[MANIFEST_SHA] = manifest_digest(full)
        atomic_write_json(staging.path / MANIFEST, full)
        _fsync_dir(staging.path)
        target = self.kind_dir(staging.kind) / version_id
        os.rename(staging.path, target)
        _fsync_dir(target.parent)
        return Version(staging.kind, version_id, target)

    def abort(self, staging: Staging) -> None:
        shutil.rmtree(staging.path, ignore_errors=True)

    @contextlib.contextmanager
    def writing(self, kind: str, manifest: dict[str, Any]) -> Iterator[Staging]:
        """``with store.writing(kind, manifest) as s:`` write into ``s.path``; commits on success.

        After the block, ``s.version`` holds the committed :class:`Version`. On an exception the
        staging folder is removed and nothing becomes visible.
        """
        staging = self.stage(kind)
        try:
            yield staging
        except BaseException:
            self.abort(staging)
            raise
        staging.version = self.commit(staging, manifest)  # type: ignore[attr-defined]

    def clean_staging(self) -> int:
        """Remove leftovers of interrupted writes; returns how many were removed."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for kind_dir in self.root.iterdir():
            if kind_dir.is_dir():
                for p in kind_dir.glob(".staging-*"):
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
        return removed

    def gc(self, kind: str, keep: int, protect: set[str] | frozenset[str] = frozenset(),
           doomed: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Delete all but the newest ``keep`` versions of ``kind``, and every version in
        ``doomed``; never those in ``protect``. Returns the deleted ids, oldest first."""
        versions = self.versions(kind)
        old = {v.id for v in versions[: max(0, len(versions) - keep)]}
        victims = [v for v in versions if (v.id in old or v.id in doomed) and v.id not in protect]
        for v in victims:
            # rename first so a crash mid-delete never leaves a half version that looks complete
            trash = v.path.with_name(f".staging-del-{v.id}")
            os.rename(v.path, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return [v.id for v in victims]


class Pointer:
    """A small JSON file naming the served version(s), replaced atomically, with history.

    The file holds ``{"current": {...}, "history": [{...}, ...]}``; :meth:`rollback` makes the
    previous entry current again. ``check`` (optional) returns why one entry is malformed, or
    None; a file with a malformed entry, or with history but no current entry (which
    :meth:`write` and :meth:`rollback` never produce), is damaged.
    """

    def __init__(self, path: Path | str, history: int = 20,
                 check: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        self.path = Path(path)
        self.history = history
        self.check = check
        #: (inode, mtime, size) of the file last read and its checked current entry
        self._last: tuple[tuple[int, int, int], dict[str, Any] | None] | None = None

    def read(self) -> dict[str, Any] | None:
        """The current entry, or None if nothing was promoted yet (only the current entry is
        checked: this is the per-lookup path; :meth:`read_all` checks the history too). The
        parsed entry is reused while the file is the same file (a promotion replaces it: a new
        inode), so a serving process pays a ``stat`` per lookup, not a parse."""
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        last = self._last
        if key is not None and last is not None and last[0] == key:
            return None if last[1] is None else dict(last[1])
        current = self.read_all(history=False).get("current")
        entry = dict(current) if isinstance(current, dict) else None
        if key is not None:
            self._last = (key, entry)
        return None if entry is None else dict(entry)

    def read_all(self, history: bool = True) -> dict[str, Any]:
        """``{"current": ..., "history": [...]}``; :class:`CorruptArtifactError` (naming the
        repair command) when the file is not such an object, or when ``check`` finds the current
        entry (and, with ``history``, an earlier one) malformed."""
        if not self.path.is_file():
            return {"current": None, "history": []}
        try:
            data = read_json(self.path)
        except (ValueError, OSError) as exc:
            raise self.damaged(f"unreadable ({type(exc).__name__}: {exc})") from None
        if (
            not isinstance(data, dict)
            or "current" not in data  # every write names it (null before the first promotion)
            or not isinstance(data.get("current"), dict | None)
            or not isinstance(data.get("history", []), list)
            or not all(isinstance(h, dict) for h in data.get("history") or [])
        ):
            raise self.damaged("not a {current, history} object")
        earlier = data.get("history") or []
        if data.get("current") is None and earlier:
            raise self.damaged(f"no current entry, but {len(earlier)} earlier one(s)")
        if self.check is not None:
            checked = earlier if history else []
            for where, entry in [("current", data.get("current")),
                                 *((f"history[{i}]", h) for i, h in enumerate(checked))]:
                problem = None if entry is None else self.check(entry)
                if problem is not None:
                    raise self.damaged(f"{where}: {problem}")
        return dict(data)

    def damaged(self, why: str) -> CorruptArtifactError:
        return CorruptArtifactError(
            f"{self.path}: the state file is damaged ({why}); rebuild it from the versions on "
            f"disk with `hybridrec repair {self.path.parent}`"
        )

    def write(self, current: dict[str, Any]) -> None:
        data = self.read_all()
        history = list(data.get("history") or [])
        if data.get("current") is not None:
            history.append(data["current"])
        atomic_write_json(self.path, {"current": current, "history": history[-self.history :]})

    def rollback(self) -> dict[str, Any]:
        data = self.read_all()
        history = list(data.get("history") or [])
        if not history:
            raise CorruptArtifactError(f"{self.path}: no previous version to roll back to")
        previous = history.pop()
        atomic_write_json(self.path, {"current": previous, "history": history})
        return dict(previous)


__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "MANIFEST",
    "MANIFEST_SHA",
    "VERSION_ID",
    "ArtifactStore",
    "Pointer",
    "Staging",
    "Version",
    "atomic_write_bytes",
    "atomic_write_json",
    "check_version_id",
    "checksums",
    "manifest_digest",
    "open_private",
    "read_json",
    "sha256_file",
    "verify",
    "verify_once",
]
