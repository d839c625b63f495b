"""The build cache a repository offers to others: static JSON files under ``build-cache/``.

Any web server that serves the repository folder serves them, and so does ``rewheel serve``;
another repository's bootstrap asks for them with ``--cache-url`` (``trust.shared_cache``):

- ``build-cache/sdist-<sdist sha256>.json``: ``{"format": 1, "keys": [...]}``, the cache keys the
  builds of that sdist were recorded under, newest last (at most ``MAX_KEYS``);
- ``build-cache/<cache key>.json``: the build record of the wheel built under that key, as in
  ``records/`` (docs/records.md). Its wheel, provenance and signature are beside the wheel in
  ``wheels/``, its sdist in ``sdists/``;
- ``build-cache/format.json``: ``{"format": 1}``, written with the first offer: a reader whose
  every lookup misses can tell a cache without this build from a URL that is no cache at all.

Nothing here is trusted by the reader: every answer is checked against a signed provenance
statement there. The files are written when a record is saved (a build with a key and a
provenance), each atomically; a record that is not one of those offers nothing.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from ..core.fsutil import atomic_write_bytes, atomic_write_json
from ..core.records import BuildRecord

__all__ = [
    "CACHE_DIR",
    "FORMAT",
    "MARKER",
    "MAX_INDEX_BYTES",
    "MAX_KEYS",
    "entry_name",
    "is_sha256",
    "offer",
    "parse_sdist_index",
    "sdist_index_name",
]

CACHE_DIR = "build-cache"
FORMAT = 1
MARKER = "format.json"  # in CACHE_DIR: this repository offers builds, in this format
MAX_KEYS = 16  # keys kept per sdist: a few variants and settings, not a history
MAX_INDEX_BYTES = 64 << 10  # an sdist index of MAX_KEYS keys is about 1.3 KiB
_SHA256 = re.compile(r"[0-9a-f]{64}")
_lock = threading.Lock()  # one read-modify-write of an sdist index at a time


def is_sha256(text: object) -> bool:
    """Whether ``text`` is a sha256 in lowercase hex (a cache key or a file's digest): the only
    names the cache's files may have, so that no answer can name a path."""
    return isinstance(text, str) and _SHA256.fullmatch(text) is not None


def entry_name(key: str) -> str:
    if not is_sha256(key):
        raise ValueError(f"not a cache key: {key!r}")
    return f"{key}.json"


def sdist_index_name(sdist_sha256: str) -> str:
    if not is_sha256(sdist_sha256):
        raise ValueError(f"not a sha256: {sdist_sha256!r}")
    return f"sdist-{sdist_sha256}.json"


def parse_sdist_index(data: bytes) -> list[str]:
    """The keys an sdist index lists, newest first; ``ValueError`` if it is not one."""
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError("not a build-cache sdist index of format 1")
    keys = document.get("keys")
    if not isinstance(keys, list) or not all(is_sha256(k) for k in keys):
        raise ValueError("its 'keys' must be a list of sha256 in lowercase hex")
    return list(dict.fromkeys(reversed(keys)))[:MAX_KEYS]


def offer(root: Path, record: BuildRecord) -> bool:
    """Offer the build ``record`` describes in the build cache of the repository at ``root``;
    False (nothing written) when it is not a build others could take: no cache key, sdist or
    provenance, or a pre-built wheel."""
    key, sdist = record.cache_key, record.sdist_sha256
    if record.prebuilt or record.provenance is None or not is_sha256(key) or not is_sha256(sdist):
        return False
    assert key is not None and sdist is not None
    folder = root / CACHE_DIR
    folder.mkdir(exist_ok=True)
    atomic_write_json(folder / entry_name(key), record.to_json())
    if not (folder / MARKER).is_file():
        atomic_write_bytes(folder / MARKER, b'{"format": 1}\n')
    index = folder / sdist_index_name(sdist)
    with _lock:
        try:
            keys = list(reversed(parse_sdist_index(index.read_bytes()[: MAX_INDEX_BYTES + 1])))
        except (OSError, ValueError):
            keys = []  # none yet, or one a hand broke: started again
        keys = [*[k for k in keys if k != key][-(MAX_KEYS - 1) :], key]
        document = {"format": FORMAT, "keys": keys}
        atomic_write_bytes(index, (json.dumps(document, indent=1) + "\n").encode("ascii"))
    return True
