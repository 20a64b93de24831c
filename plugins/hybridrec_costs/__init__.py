"""Built-in hybridrec plugin package (being written)."""
