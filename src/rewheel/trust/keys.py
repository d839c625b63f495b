"""The user's signing key: made on first use, kept where no build and no other user can read it.

Without ``--signing-key``, a bootstrap signs with the key in
``$XDG_DATA_HOME/rewheel/keys/signing-key.pem`` (``~/.local/share/rewheel/keys/...`` when the
variable is not set to an absolute path), and makes it the first time: an Ed25519 key, as
``openssl genpkey -algorithm ed25519`` makes them. One key per user, like an ssh key: it says
"built by this user's rewheel", whichever repository the wheel went to.

Other local users are assumed hostile, so every step is checked on what was opened, not on a
name that can change in between: the folders are opened one below the other with
``O_NOFOLLOW``; ``rewheel/`` must be ours and writable by no one else, ``keys/`` ours and closed
to everyone else (created 0700); the key file ours, a regular file, readable by no one else
(created 0600 with ``O_EXCL`` under a temporary name and linked into place, so that two runs
starting at once end up with the same key and a reader never sees half of it). Anything else
stops the run with what to fix, or to give ``--signing-key`` or ``--no-sign``.

Builds never see it: every box hides the folder (``build.sandbox.make_policy``), and ``app``
refuses a key inside any folder the box shows (``SandboxPolicy.shows``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..build.sandbox import rewheel_data_dir
from ..core.errors import ConfigError, Step

if TYPE_CHECKING:
    from .provenance import Signer

KEY_FILE = "signing-key.pem"
_KEYS_DIR = "keys"
MAX_KEY_FILE = 64 << 10
_HINT = "or sign with a key of your own (--signing-key FILE), or build without signing (--no-sign)"


def default_key_file(environ: Mapping[str, str] | None = None) -> Path:
    return rewheel_data_dir(environ) / _KEYS_DIR / KEY_FILE


@dataclass(frozen=True)
class UserKey:
    signer: Signer
    path: Path
    created: bool  # made by this call


def _refuse(message: str, fix: str) -> ConfigError:
    return ConfigError(message, step=Step.SIGN, hint=f"{fix}; {_HINT}")


def _check_base(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    if st.st_uid not in (os.geteuid(), 0):
        raise _refuse(
            f"{path} belongs to another user (uid {st.st_uid}): a signing key below it is not safe",
            "set XDG_DATA_HOME to a folder of yours",
        )
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _refuse(
            f"{path} can be written by other users (mode {stat.S_IMODE(st.st_mode):04o}): they"
            " could replace the folder of the signing key",
            f"chmod go-w {path}, or set XDG_DATA_HOME to a folder of yours",
        )


def _open_own_dir(parent: int, name: str, where: Path, *, private: bool) -> int:
    """Open (making it, mode 0700) the folder ``name`` below ``parent``: it must be a real
    folder of ours, writable by no one else, and with ``private`` closed to everyone else."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=parent)
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
        )
    except OSError as exc:
        raise _refuse(
            f"{where} is not a folder rewheel can use for its signing key: {exc}",
            f"remove {where} if it is a link or a file",
        ) from exc
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    why = None
    if st.st_uid != os.geteuid():
        why = f"belongs to another user (uid {st.st_uid})"
    elif private and mode & 0o077:
        why = f"is open to other users (mode {mode:04o})"
    elif mode & 0o022:
        why = f"can be written by other users (mode {mode:04o})"
    if why is not None:
        os.close(fd)
        raise _refuse(
            f"{where} {why}: it cannot hold a signing key",
            f"remove it, or chmod 700 {where} if it is yours and you trust what it holds",
        )
    return fd


def _open_key_dir(key_dir: Path) -> int:
    """The folder ``<data home>/rewheel/keys``, checked and made as the module says."""
    base = key_dir.parent.parent
    try:
        base.mkdir(parents=True, exist_ok=True)
        top = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _refuse(
            f"cannot make the folder of the signing key in {base}: {exc}",
            "set XDG_DATA_HOME to a folder of yours",
        ) from exc
    try:
        _check_base(top, base)
        data = _open_own_dir(top, key_dir.parent.name, key_dir.parent, private=False)
    finally:
        os.close(top)
    try:
        return _open_own_dir(data, key_dir.name, key_dir, private=True)
    finally:
        os.close(data)


def _read_key(folder: int, path: Path) -> bytes | None:
    """The key file's bytes, None when there is none; refused unless ours and private."""
    try:
        fd = os.open(
            path.name,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
            dir_fd=folder,
        )
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refuse(
            f"cannot open the signing key {path}: {exc}", f"remove {path} if it is a link"
        ) from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        mode = stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise _refuse(
                f"{path} is not a regular file of yours", f"remove {path} (a new key is made)"
            )
        if mode & 0o077:
            raise _refuse(
                f"{path} can be read by other users (mode {mode:04o}): the key may be known",
                f"remove {path}; the next run makes a new one (pin the new fingerprint)",
            )
        data = f.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise _refuse(f"{path} is too large to be a signing key", f"remove {path}")
    return data


def _new_key_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_new_key(folder: int, name: str) -> bool:
    """Make a key named ``name`` in ``folder``; False when another run made one first."""
    temporary = f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=folder,
    )
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(_new_key_pem())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except FileExistsError:
            return False
        with contextlib.suppress(OSError):
            os.fsync(folder)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=folder)


def user_key(path: Path | None = None) -> UserKey:
    """The user's signing key at ``path`` (default ``default_key_file()``), made if missing."""
    path = path or default_key_file()
    try:
        folder = _open_key_dir(path.parent)
    except OSError as exc:
        raise _refuse(
            f"cannot open the folder of the signing key {path.parent}: {exc}",
            "check its owner and permissions",
        ) from exc
    try:
        created = False
        data = _read_key(folder, path)
        if data is None:
            try:
                created = _write_new_key(folder, path.name)
            except OSError as exc:
                raise _refuse(
                    f"cannot write a signing key in {path.parent}: {exc}",
                    "check that the folder is yours and not full",
                ) from exc
            data = _read_key(folder, path)
            if data is None:
                raise _refuse(f"{path} vanished as it was made", "run again")
    finally:
        os.close(folder)
    from .provenance import Signer  # a no-op re-run signs nothing

    return UserKey(Signer(path, data=data), path, created)
