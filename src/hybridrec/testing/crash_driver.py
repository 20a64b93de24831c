"""Run the ``hybridrec`` CLI with the fake plugins, optionally SIGKILLing itself at a named point.

``python -m hybridrec.testing.crash_driver ARGS...`` is ``hybridrec ARGS...`` with
:mod:`hybridrec.testing.fakes` registered (crash tests and the ``fault`` bench suite run it as a
subprocess and kill it). ``HYBRIDREC_KILL_AT`` names where it kills itself:

* unset or empty: nowhere (the caller kills it from outside at a random moment);
* ``init:<file>`` after that file of the new workspace is written, ``init:before-rename`` /
  ``init:after-rename``;
* ``update:commit-<n>`` after the n-th artifact version is committed, ``update:before-promote``,
  ``update:before-gc``;
* ``step:<n>`` just before the n-th durable file-system step (``fsync``, ``replace``,
  ``rename``) of the command.

``HYBRIDREC_DRIVER_READY=1`` makes it load its plugins and commands first and then write
``hybridrec-driver: ready`` to stderr (a caller that kills it at a random moment times from
there); ``HYBRIDREC_COUNT_STEPS=1`` makes it write ``hybridrec-driver: steps <n>`` to stderr at
exit, the number of durable steps the command took.
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

#: The named points of ``init`` and ``update`` (``step:<n>`` points are numbered, not named).
INIT_POINTS = ["init:config.json", "init:state", "init:workspace.json", "init:before-rename", "init:after-rename"]
UPDATE_POINTS = [*(f"update:commit-{n}" for n in (1, 2, 3, 4)), "update:before-promote", "update:before-gc"]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_steps(n: int) -> list[int]:
    """SIGKILL just before the ``n``-th ``os.fsync`` / ``os.replace`` / ``os.rename`` (never
    for ``n = 0``); returns the one-item list that counts the steps taken."""
    count = [0]
    for name in ("fsync", "replace", "rename"):
        real = getattr(os, name)

        def step(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            count[0] += 1
            if count[0] == n:
                die()
            return _real(*args, **kwargs)

        setattr(os, name, step)
    return count


def install(point: str) -> None:
    """Arrange to SIGKILL this process at ``point`` (see the module docstring)."""
    if not point:
        return
    if point.startswith("step:"):
        install_steps(int(point.split(":", 1)[1]))
        return
    real_write = workspace.atomic_write_json
    real_rename = os.rename

    def write(path: Path, obj: Any) -> None:
        real_write(path, obj)
        if f"init:{Path(path).name}" == point and ".init-" in str(path):
            die()

    def rename(src: Any, dst: Any) -> None:
        if point == "init:before-rename" and ".init-" in str(src):
            die()
        real_rename(src, dst)
        if point == "init:after-rename" and ".init-" in str(src):
            die()

    workspace.atomic_write_json = write  # type: ignore[assignment]
    workspace.os.rename = rename  # type: ignore[assignment]

    commits = {"n": 0}
    real_commit = artifacts.ArtifactStore.commit

    def commit(self: Any, staging: Any, manifest: Any) -> Any:
        version = real_commit(self, staging, manifest)
        commits["n"] += 1
        if f"update:commit-{commits['n']}" == point:
            die()
        return version

    artifacts.ArtifactStore.commit = commit  # type: ignore[method-assign]
    real_promote = workspace.Workspace.promote
    real_gc = workspace.Workspace.collect_garbage

    def promote(self: Any, entry: Any) -> None:
        if point == "update:before-promote":
            die()
        real_promote(self, entry)

    def gc(self: Any) -> Any:
        if point == "update:before-gc":
            die()
        return real_gc(self)

    workspace.Workspace.promote = promote  # type: ignore[method-assign]
    workspace.Workspace.collect_garbage = gc  # type: ignore[method-assign]


def run(argv: list[str] | None = None) -> None:
    """Register the fakes, arm ``HYBRIDREC_KILL_AT`` and run the CLI."""
    register_plugin(fakes, "test-fakes")
    if os.environ.get("HYBRIDREC_DRIVER_READY") == "1":
        from hybridrec.cli import _install_commands
        from hybridrec.plugins import registry

        registry()
        _install_commands()
        print("hybridrec-driver: ready", file=sys.stderr, flush=True)
    if os.environ.get("HYBRIDREC_COUNT_STEPS") == "1":
        import atexit

        count = install_steps(0)
        atexit.register(lambda: print(f"hybridrec-driver: steps {count[0]}", file=sys.stderr, flush=True))
    install(os.environ.get("HYBRIDREC_KILL_AT", ""))
    main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    run()

__all__ = [
    "INIT_POINTS",
    "UPDATE_POINTS",
    "install",
    "run",
]
