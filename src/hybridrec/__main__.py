"""``python -m hybridrec`` runs the CLI."""

from hybridrec.cli import main

main()
