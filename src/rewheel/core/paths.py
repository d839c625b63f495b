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


# An sdist rewheel made of a project folder on this machine (``rewheel bootstrap ./project``) has
# no upstream URL: its records name the folder's ``file:`` URL with this fragment giving the name
# of the archive, ``file:///home/me/proj#rewheel-sdist=proj-1.0.tar.gz``.
LOCAL_SDIST_FRAGMENT = "rewheel-sdist="


def local_sdist_url(folder_uri: str, filename: str) -> str:
    """The URL records give an sdist made of the project folder at ``folder_uri`` (``file:``)."""
    return f"{folder_uri}#{LOCAL_SDIST_FRAGMENT}{filename}"


def is_local_sdist_url(url: str) -> bool:
    """Whether ``url`` names an sdist made of a local project folder (``local_sdist_url``)."""
    return url.startswith("file:") and f"#{LOCAL_SDIST_FRAGMENT}" in url


def sdist_filename(url: str) -> str:
    """The file name an sdist's URL ends with (no query, no fragment); for an sdist made of a
    local project folder, the archive's name its fragment gives."""
    if is_local_sdist_url(url):
        name = url.split(f"#{LOCAL_SDIST_FRAGMENT}", 1)[1]
        if name not in ("", ".", "..") and "/" not in name and "\\" not in name:
            return name
    return url.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0].split("?", 1)[0]
