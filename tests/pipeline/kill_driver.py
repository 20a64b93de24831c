"""Run the ``hybridrec`` CLI with the fake plugins, SIGKILLing itself at a named point.

``HYBRIDREC_KILL_AT`` names the point: ``init:<file>`` after that file of the new workspace is
written, ``init:before-rename`` / ``init:after-rename``, ``update:commit-<n>`` after the n-th
artifact version is committed, ``update:before-promote``, ``update:before-gc``.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from hybridrec import artifacts, workspace
from hybridrec.cli import main
from hybridrec.plugins import register_plugin
from hybridrec.testing import fakes

POINT = os.environ.get("HYBRIDREC_KILL_AT", "")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    real_write = workspace.atomic_write_json
    real_rename = os.rename

    def write(path: Path, obj: Any) -> None:
        real_write(path, obj)
        if f"init:{Path(path).name}" == POINT and ".init-" in str(path):
            die()

    def rename(src: Any, dst: Any) -> None:
        if POINT == "init:before-rename" and ".init-" in str(src):
            die()
        real_rename(src, dst)
        if POINT == "init:after-rename" and ".init-" in str(src):
            die()

    workspace.atomic_write_json = write  # type: ignore[assignment]
    workspace.os.rename = rename  # type: ignore[assignment]

    commits = {"n": 0}
    real_commit = artifacts.ArtifactStore.commit

    def commit(self: Any, staging: Any, manifest: Any) -> Any:
        version = real_commit(self, staging, manifest)
        commits["n"] += 1
        if f"update:commit-{commits['n']}" == POINT:
            die()
        return version

    artifacts.ArtifactStore.commit = commit  # type: ignore[method-assign]
    real_promote = workspace.Workspace.promote
    real_gc = workspace.Workspace.collect_garbage

    def promote(self: Any, entry: Any) -> None:
        if POINT == "update:before-promote":
            die()
        real_promote(self, entry)

    def gc(self: Any) -> Any:
        if POINT == "update:before-gc":
            die()
        return real_gc(self)

    workspace.Workspace.promote = promote  # type: ignore[method-assign]
    workspace.Workspace.collect_garbage = gc  # type: ignore[method-assign]


if __name__ == "__main__":
    register_plugin(fakes, "test-fakes")
    install()
    main(sys.argv[1:])
