"""``python -m hybridrec.cli``: the ``hybridrec`` command, for environments without its script."""

from hybridrec.cli import main

main()
