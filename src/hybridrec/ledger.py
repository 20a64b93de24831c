"""The cost/action ledger of a workspace: one :class:`~hybridrec.types.CostRecord` per JSON line."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from hybridrec.types import CostRecord, to_utc


class Ledger:
    """The cost/action ledger: one :class:`CostRecord` per JSON line, append-only.

    An append is one ``write`` of a whole line followed by ``fsync``; a crash can at worst leave a
    torn last line, which :meth:`records` skips (and counts in :attr:`skipped`) and the next
    append terminates first, so later records are never glued to it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.skipped = 0

    def append(self, record: CostRecord) -> None:
        line = json.dumps(record.model_dump(mode="json"), sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # never through a symbolic link planted at the ledger's name
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if self.path.is_symlink():
                from hybridrec.errors import CorruptArtifactError

                raise CorruptArtifactError(
                    f"{self.path} is a symbolic link (to {os.readlink(self.path)}); hybridrec "
                    "never writes through one: remove the link") from exc
            raise
        with os.fdopen(fd, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    line = "\n" + line
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())

    def records(self, since: datetime | None = None) -> list[CostRecord]:
        """Records (oldest first) whose ``at`` is at or after ``since`` (all if None)."""
        self.skipped = 0
        if not self.path.is_file():
            return []
        out: list[CostRecord] = []
        bound = None if since is None else to_utc(since)
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = CostRecord.model_validate_json(line)
                except ValueError:
                    self.skipped += 1
                    continue
                if bound is None or record.at >= bound:
                    out.append(record)
        return out


__all__ = ["Ledger"]
