"""Run the ``hybridrec`` CLI with the fake plugins registered (for subprocess crash tests)."""

from __future__ import annotations

import sys

from hybridrec.cli import main
from hybridrec.plugins import register_plugin
from hybridrec.testing import fakes

if __name__ == "__main__":
    register_plugin(fakes, "test-fakes")
    main(sys.argv[1:])
