"""What makes a path in an archive safe to use: shared by extracting sdists and checking wheels."""

from __future__ import annotations


def unsafe_member_name(name: str) -> str | None:
    """Why an archive member name is refused, or None: empty, NUL, absolute (also as a Windows
    drive or with backslashes) or with a ``..`` part. Stricter than tarfile's filter, which
    rewrites absolute names instead of refusing them. Wheels are checked with it too."""
    if not name:
        return "empty member name"
    if "\x00" in name:
        return f"NUL in member name {name!r}"
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(parts[0]) == 2 and parts[0][1] == ":"):
        return f"absolute member path {name!r}"
    if ".." in parts:
        return f"member path with '..': {name!r}"
    return None


def sdist_filename(url: str) -> str:
    """The file name an sdist's URL ends with (no query, no fragment)."""
    return url.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
