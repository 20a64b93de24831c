"""Run the ``hybridrec`` CLI in-process from a test, as a user's shell would."""

from __future__ import annotations

from typing import Any


def run_cli(capsys: Any, *args: str) -> tuple[int, str, str]:
    """``hybridrec ARGS`` in this process: ``(exit code, stdout, stderr)``, with pytest's
    ``capsys`` fixture capturing the output."""
    from hybridrec.cli import main

    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


__all__ = ["run_cli"]
