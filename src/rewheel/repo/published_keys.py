"""The public keys a repository publishes: ``keys/<keyid>.pub.pem``.

rewheel signs each wheel's provenance with an Ed25519 key (``trust.keys``) and publishes its
public half here, named by its *key id*: the sha256 of the raw 32-byte public key, in hex. The
same id is the ``keyid`` of the DSSE signatures, and the fingerprint people compare.

A key found here is a claim, not a proof: whoever can write the repository can put a key here
and sign with it. ``verify`` uses one only to say which key signed and to check that signatures
agree with it; only a key the user pins (``--public-key``), after comparing its fingerprint with
one got elsewhere, proves anything. Reading never follows a link: the folder is served.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.fsutil import atomic_write_bytes, is_plain_file

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KEYS_DIR = "keys"
SUFFIX = ".pub.pem"
# A PEM Ed25519 public key is 113 bytes; anything much larger is not one.
MAX_KEY_FILE = 16 << 10


class KeyFormatError(ValueError):
    """Bytes that are not an Ed25519 public key in PEM."""


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key: its PEM (SubjectPublicKeyInfo), raw 32 bytes and key id."""

    pem: bytes
    raw: bytes

    @property
    def keyid(self) -> str:
        """sha256 of the raw public key, hex: the DSSE ``keyid`` and the key's fingerprint."""
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def der(self) -> bytes:
        """The DER of its SubjectPublicKeyInfo (what PEM wraps)."""
        from cryptography.hazmat.primitives import serialization

        return self._key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def file_name(self) -> str:
        return key_file_name(self.keyid)

    def verifies(self, signature: bytes, message: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        from cryptography.exceptions import InvalidSignature

        try:
            self._key().verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def _key(self) -> Ed25519PublicKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        return Ed25519PublicKey.from_public_bytes(self.raw)


def load_public_key(data: bytes) -> PublicKey:
    """An Ed25519 public key from PEM or DER (SubjectPublicKeyInfo); KeyFormatError otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    blocks = data.count(b"-----BEGIN ")
    if blocks > 1:
        # The PEM reader would take the first and drop the rest without a word.
        raise KeyFormatError(f"it holds {blocks} PEM blocks, and a key file holds one key")
    if b"PRIVATE KEY-----" in data:
        raise KeyFormatError("it is a private key; give its public half (.pub.pem)")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError(f"not a public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PublicKey(pem=pem, raw=raw)


def key_file_name(keyid: str) -> str:
    return f"{keyid}{SUFFIX}"


def keys_dir(root: Path) -> Path:
    return root / KEYS_DIR


def _read_plain(folder: int, name: str) -> bytes:
    """A regular file of at most ``MAX_KEY_FILE`` bytes in ``folder``, not through a link."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{name} is not a regular file")
        data = f.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise OSError(f"{name} is larger than {MAX_KEY_FILE} bytes")
    return data


def published_keys(root: Path) -> tuple[dict[str, PublicKey], list[str]]:
    """The keys the repository at ``root`` publishes, by key id, and what was wrong with the
    files that could not be taken (a link, not a key, named after another key)."""
    found: dict[str, PublicKey] = {}
    problems: list[str] = []
    try:
        folder = os.open(
            keys_dir(root), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        )
    except FileNotFoundError:
        return found, problems
    except OSError as exc:
        return found, [f"{KEYS_DIR}/ cannot be read: {exc}"]
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(SUFFIX))
        for name in names:
            try:
                key = load_public_key(_read_plain(folder, name))
            except (OSError, KeyFormatError) as exc:
                problems.append(f"{KEYS_DIR}/{name}: {exc}")
                continue
            if name != key.file_name:
                problems.append(
                    f"{KEYS_DIR}/{name} holds the key {key.keyid}, not the one its name says"
                )
                continue
            found[key.keyid] = key
    finally:
        os.close(folder)
    return found, problems


def publish_key(root: Path, key: PublicKey) -> Path:
    """Write ``keys/<keyid>.pub.pem`` in the repository at ``root`` (unless it is there)."""
    path = keys_dir(root) / key.file_name
    if is_plain_file(path, max_size=MAX_KEY_FILE):
        with contextlib.suppress(OSError):
            if path.read_bytes() == key.pem:
                return path
    atomic_write_bytes(path, key.pem)  # a link or another file there is replaced, not followed
    return path
