"""The web pages' own files: CSS, HTML templates and JavaScript, inlined into the pages."""

from __future__ import annotations

from importlib.resources import files


def read_asset(name: str) -> str:
    """The text of ``name`` in this folder."""
    return files(__package__).joinpath(name).read_text(encoding="utf-8")
