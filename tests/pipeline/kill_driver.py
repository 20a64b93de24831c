"""Run the ``hybridrec`` CLI with the fake plugins, SIGKILLing itself at ``HYBRIDREC_KILL_AT``.

The driver and its named points live in :mod:`hybridrec.testing.crash_driver`.
"""

from __future__ import annotations

from hybridrec.testing.crash_driver import run

if __name__ == "__main__":
    run()
