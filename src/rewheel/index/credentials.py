"""Credentials written into an index URL (``https://user:token@host/simple``).

They are split off where the URL comes in and sent only as an HTTP Basic ``Authorization``
header to that URL's own origin (as pip does); every URL rewheel keeps, records or prints is
the one without them. urllib3 drops the header itself when a redirect leads to another host.

Query strings are left as they are: a token there in ``--index-url`` could not work anyway
(project pages are the URL's path plus ``<name>/``), and a signed download link an index gives
grants only the file that the repository keeps and publishes anyway.
"""

from __future__ import annotations

import base64
from urllib.parse import unquote, urlsplit, urlunsplit


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """``url`` without its user and password, and the headers that send them ({} if none)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def without_credentials(url: str) -> str:
    """``url`` without the user and password it may carry."""
    return split_credentials(url)[0]


def origin(url: str) -> tuple[str, str]:
    """The scheme and host (with port) of ``url``, credentials left out, in lower case."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()
