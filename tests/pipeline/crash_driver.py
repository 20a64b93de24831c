"""Run the ``hybridrec`` CLI with the fake plugins registered (for subprocess crash tests).

The driver lives in :mod:`hybridrec.testing.crash_driver` (the ``fault`` bench suite uses it too).
"""

from __future__ import annotations

from hybridrec.testing.crash_driver import run

if __name__ == "__main__":
    run()
