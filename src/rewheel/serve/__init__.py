"""Serving a repository over HTTP (the index, its files and the browsable pages)."""
