"""The files a venv creator writes (``pyvenv.cfg``, ``bin/python*``, activation scripts), checked.

None of these come from a wheel, and each decides what runs: ``home`` in ``pyvenv.cfg`` is where
the interpreter looks for its standard library, ``include-system-site-packages`` (true when the
key is missing) adds the machine's site-packages and their ``.pth`` files, ``bin/python3`` is what
a shebang starts and ``bin/activate`` is sourced by a shell. So:

- ``pyvenv.cfg`` is read the way ``site.py`` reads it; ``home`` must be the folder of the
  interpreter the venv is made from, ``include-system-site-packages`` must be there and false,
  every key must be one its creator writes (and written once), and each value what that creator
  writes for this interpreter;
- ``bin/python``, ``python3`` and ``python3.X`` must lead to that interpreter (a link, or a copy
  with the same bytes);
- the activation scripts are made again: a reference venv is created by the same creator (uv, as
  ``rewheel install`` does, or ``python -m venv``) with the same interpreter and prompt, at a
  temporary folder that ends with the venv's own path (``<tmp>/<venv path>``). The creators
  substitute the path character by character, so removing the ``<tmp>`` prefix from the
  reference's text gives, byte for byte, what they write at the venv's path, however that path
  has to be quoted.
"""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..core.fsutil import sha256_file
from .bytecode import Interpreter

UV = "uv"
VENV = "venv"  # python -m venv

# Keys each creator writes. Python itself reads only home and include-system-site-packages.
CREATOR_KEYS = {
    UV: frozenset(
        {"home", "implementation", "uv", "version_info", "include-system-site-packages", "prompt"}
    ),
    VENV: frozenset(
        {"home", "include-system-site-packages", "version", "executable", "command", "prompt"}
    ),
}
# Keys whose value depends on how the venv was asked for, not on the interpreter.
_FREE_KEYS = frozenset({"command", "prompt"})
# Keys checked for what Python does with them, not against the reference.
_CHECKED_KEYS = frozenset({"home", "include-system-site-packages"})

_MAX_SCRIPT = 1 << 20  # an activation script larger than this is not compared


def parse_pyvenv_cfg(text: str) -> list[tuple[str, str]]:
    """(key, value) pairs in order, as ``site.py`` reads them: lines of the text opened with
    universal newlines, split at the first ``=``, key lowercased; lines without ``=`` ignored."""
    pairs = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            pairs.append((key.strip().lower(), value.strip()))
    return pairs


def pyvenv_keys(text: str) -> dict[str, str]:
    """The keys of a pyvenv.cfg (lower case) and their values, the last one of a key kept;
    lines split with ``str.splitlines`` (``parse_pyvenv_cfg`` splits them as ``site.py``)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def creator_of(pairs: Sequence[tuple[str, str]]) -> str | None:
    """Which creator wrote these keys: uv records its version; ``python -m venv`` writes
    ``version`` and no ``implementation``. None for any other (virtualenv, conda...)."""
    keys = {k for k, _ in pairs}
    if "uv" in keys:
        return UV
    if keys <= CREATOR_KEYS[VENV]:
        return VENV
    return None


def prompt_option(creator: str, pairs: Sequence[tuple[str, str]]) -> str | None:
    """The ``--prompt`` the venv was made with, from its ``prompt`` key (None: the default)."""
    value = dict(pairs).get("prompt")
    if value is None or creator != VENV:
        return value
    try:  # python -m venv writes repr(prompt)
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
    return parsed if isinstance(parsed, str) else value


def check_pyvenv_cfg(
    pairs: Sequence[tuple[str, str]],
    *,
    interpreter: Interpreter,
    creator: str | None,
    reference: Sequence[tuple[str, str]] | None,
) -> list[tuple[str | None, str]]:
    """What is wrong with these ``pyvenv.cfg`` pairs, as (key, reason)."""
    out: list[tuple[str | None, str]] = []
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            out.append((key, "set twice (Python takes the last one)"))
        values[key] = value
    system = values.get("include-system-site-packages")
    if system is None:
        out.append(
            (
                "include-system-site-packages",
                "missing: Python then adds the machine's site-packages (and runs their .pth files)",
            )
        )
    elif system.lower() != "false":
        out.append(
            (
                "include-system-site-packages",
                f"is {system!r}: the machine's site-packages (and their .pth files) are added",
            )
        )
    home = values.get("home")
    homes = " or ".join(sorted(interpreter.home_dirs))
    if home is None:
        out.append(("home", f"missing (expected {homes})"))
    elif home not in interpreter.home_dirs:
        out.append(
            (
                "home",
                f"is {home!r}, not the folder of the interpreter this venv is made from "
                f"({homes}): Python looks for its standard library there",
            )
        )
    if creator is None:
        out.append((None, "not made by uv or python -m venv (their keys are " + _known() + ")"))
        return out
    for key in values:
        if key not in CREATOR_KEYS[creator]:
            out.append((key, f"a key that {_name(creator)} does not write"))
    if reference is not None:
        expected = dict(reference)
        for key, value in values.items():
            if key in _FREE_KEYS or key in _CHECKED_KEYS or key not in expected:
                continue
            if value != expected[key]:
                out.append(
                    (key, f"is {value!r}; {_name(creator)} writes {expected[key]!r} for it here")
                )
    return out


def _known() -> str:
    return ", ".join(sorted(CREATOR_KEYS[UV] | CREATOR_KEYS[VENV]))


def _name(creator: str) -> str:
    return "uv" if creator == UV else "python -m venv"


def python_names(interpreter: Interpreter) -> frozenset[str]:
    """The interpreter's names in a venv's bin/."""
    return frozenset({"python", "python3", f"python{interpreter.short_version}"})


def check_python(path: Path, interpreter: Interpreter, digest: str | None) -> str | None:
    """Why ``path`` (a ``bin/python*``) is not the interpreter, or None if it is: a link to it,
    a copy of it (same bytes, ``digest`` being its sha256), or a link to such a copy."""
    target = Path(os.path.realpath(path))
    if target == interpreter.executable:
        return None
    if target.is_file() and digest is not None and sha256_file(target) == digest:
        return None
    if path.is_symlink():
        return (
            f"leads to {target}, not to the interpreter this venv is made from "
            f"({interpreter.executable})"
        )
    if not path.is_file():
        return "not a link to the interpreter nor a copy of it"
    return (
        f"a file that is not the interpreter this venv is made from ({interpreter.executable}):"
        " a wrapper runs whatever it likes before Python"
    )


def interpreter_digest(interpreter: Interpreter) -> str | None:
    try:
        return sha256_file(interpreter.executable)
    except OSError:
        return None


def venv_path_in_activate(text: str) -> str | None:
    """The venv path a POSIX ``activate`` script sets (``VIRTUAL_ENV='...'``), unquoted."""
    for line in text.splitlines():
        if line.startswith("VIRTUAL_ENV="):
            try:
                words = shlex.split(line[len("VIRTUAL_ENV=") :])
            except ValueError:
                return None
            return words[0] if len(words) == 1 else None
    return None


# ---------------------------------------------------------------- the reference venv


@dataclass(frozen=True)
class Reference:
    """What a creator writes for a venv at ``path``: bin/ files and pyvenv.cfg."""

    path: str
    scripts: Mapping[str, bytes] = field(default_factory=dict)  # bin/ name -> content
    cfg: Sequence[tuple[str, str]] = ()


class ReferenceMaker(Protocol):
    def __call__(
        self, creator: str, interpreter: Interpreter, path: str, prompt: str | None
    ) -> Reference | str:
        """The reference venv's files, or why it could not be made."""
        ...


@dataclass(frozen=True)
class MadeReference:
    """Makes the reference venv for real: ``uv venv`` (the given uv) or ``python -m venv``."""

    uv: Path | None = None  # None: the uv rewheel installs with

    def __call__(
        self, creator: str, interpreter: Interpreter, path: str, prompt: str | None
    ) -> Reference | str:
        if not os.path.isabs(path) or os.path.normpath(path) != path:
            return f"not a plain absolute path: {path!r}"
        with tempfile.TemporaryDirectory(prefix="rewheel-venvref-") as tmp:
            prefix = os.path.realpath(tmp)
            target = prefix + "/" + path.lstrip("/")
            if not os.path.normpath(target).startswith(prefix + "/"):
                return f"not a path below {prefix}: {target!r}"
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            home = Path(prefix) / ".home"
            home.mkdir()
            env = {
                "PATH": os.defpath,
                "HOME": str(home),
                "XDG_CACHE_HOME": str(home / "cache"),
                "XDG_CONFIG_HOME": str(home / "config"),
                "LC_ALL": "C.UTF-8",
                "UV_NO_CONFIG": "1",
            }
            options = [] if prompt is None else [f"--prompt={prompt}"]
            if creator == UV:
                uv = self.uv
                if uv is None:
                    from uv import find_uv_bin

                    uv = Path(find_uv_bin())
                cmd = [
                    str(uv),
                    "venv",
                    "--no-config",
                    "--no-python-downloads",
                    "--no-cache",
                    "--quiet",
                    "--python",
                    interpreter.base_executable,
                    *options,
                    target,
                ]
            else:
                cmd = [interpreter.base_executable, "-I", "-m", "venv", "--without-pip"]
                cmd += [*options, target]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, cwd=prefix, timeout=120
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return f"cannot run {cmd[0]}: {exc}"
            if proc.returncode != 0:
                return f"{' '.join(cmd[:2])} exited with {proc.returncode}: {proc.stderr[-300:]}"
            return _read_reference(Path(target), prefix.encode(), path)


def _read_reference(target: Path, prefix: bytes, path: str) -> Reference:
    scripts = {}
    bin_dir = target / "bin"
    for entry in sorted(bin_dir.iterdir()):
        if entry.is_file() and not entry.is_symlink():
            scripts[entry.name] = entry.read_bytes().replace(prefix, b"")
    cfg_text = (target / "pyvenv.cfg").read_bytes().replace(prefix, b"")
    return Reference(path, scripts, parse_pyvenv_cfg(cfg_text.decode("utf-8", "replace")))


def read_script(path: Path) -> bytes | None:
    """A bin/ file's bytes if it is a plain file of sensible size, else None."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_SCRIPT:
        return None
    return path.read_bytes()
