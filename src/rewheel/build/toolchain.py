"""The compilers and linkers a build could run, as its PATH finds them.

For each of ``cc``, ``gcc``, ``c++``, ``g++``, ``gfortran``, ``ld``, ``cargo`` and ``rustc`` (and
the programs ``CC``, ``CXX``, ``FC`` and ``LD`` name, when the build's variables set them): where
the build's ``PATH`` finds it, the file that is (links followed; for a rustup proxy, the
toolchain's own binary, ``rustup which``), the first line of its ``--version``, and the sha256 of
that file.

A program found inside the build's own folders (its build environment's ``bin/``, or anything
under the package's work folder) was put there by a wheel or an sdist: it is recorded with its
sha256 and marked as such, and never run here, outside the sandbox. System programs are run with
``--version`` from ``/``, with only ``PATH``, the C locale and rustup's variables; what they say
is remembered for the run, so each is asked once whatever the number of builds.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.fsutil import is_plain_file, sha256_file

COMPILERS = ("cc", "gcc", "c++", "g++", "gfortran", "ld", "cargo", "rustc")
# Variables that name the compiler a build system runs instead of the default one.
COMPILER_VARIABLES = ("CC", "CXX", "FC", "LD")
MAX_PROGRAM_BYTES = 1 << 30  # a larger program is found but not hashed
SYSTEM, BUILD = "system", "build"


@dataclass(frozen=True)
class Program:
    """One compiler or linker as a build would find it."""

    name: str  # the command (gcc), or the variable that named it ($CC)
    path: str  # where PATH finds it
    real_path: str  # the file it is
    version: str | None  # the first line of ``--version``; None when not run or silent
    sha256: str | None
    origin: str = SYSTEM  # SYSTEM, or BUILD: a file of the build's own folders, never run

    def as_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "realPath": self.real_path,
            "version": self.version,
            "sha256": self.sha256,
            "origin": self.origin,
        }


def _within(path: str, folders: Sequence[Path]) -> bool:
    """Whether ``path`` (as named, or the file it leads to) is one of ``folders`` or below one."""
    names = {path, os.path.realpath(path)}
    for folder in folders:
        for base in {str(folder), os.path.realpath(folder)}:
            base = base.rstrip("/") or "/"
            if any(n == base or n.startswith(base + "/") for n in names):
                return True
    return False


def _hash(path: str) -> str | None:
    if not is_plain_file(Path(path), max_size=MAX_PROGRAM_BYTES):
        return None
    try:
        return sha256_file(Path(path))
    except OSError:
        return None


def _first_line(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
            check=False,
            stdin=subprocess.DEVNULL,
            cwd="/",  # no rust-toolchain.toml or other project file of anyone's is read
            env=dict(env),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip()[:300] if done.returncode == 0 and lines else None


class Toolchain:
    """Probes the compilers a build can run; one per run, thread-safe, remembers every answer."""

    def __init__(self, names: Sequence[str] = COMPILERS) -> None:
        self.names = tuple(names)
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str, tuple[tuple[str, str], ...]], Program] = {}

    def programs(
        self, environ: Mapping[str, str], *, untrusted: Sequence[Path] = ()
    ) -> tuple[Program, ...]:
        """The compilers a build with ``environ`` finds; files under ``untrusted`` (the build's
        own folders) are hashed but never run."""
        search = environ.get("PATH", "")
        wanted = [(n, n) for n in self.names]
        for variable in COMPILER_VARIABLES:
            value = environ.get(variable, "").strip()
            try:
                words = shlex.split(value)
            except ValueError:
                words = value.split()
            if words:
                wanted.append((f"${variable}", words[0]))
        # System programs run (and are remembered) with the build's PATH without its own folders,
        # which change from build to build.
        system_path = os.pathsep.join(
            d for d in search.split(os.pathsep) if d and not _within(d, untrusted)
        )
        system_environ = {**environ, "PATH": system_path}
        out = []
        for label, command in wanted:
            path = shutil.which(command, path=search)
            if path is None:
                continue
            if _within(path, untrusted):
                real = os.path.realpath(path)
                out.append(Program(label, path, real, None, _hash(real), BUILD))
                continue
            out.append(self._system(label, os.path.basename(command), path, system_environ))
        return tuple(out)

    def _system(self, label: str, command: str, path: str, environ: Mapping[str, str]) -> Program:
        """A system program, asked once per run for its version (and hashed once)."""
        env = {"PATH": environ.get("PATH", os.defpath), "LC_ALL": "C", "HOME": "/nonexistent"}
        for key in ("RUSTUP_HOME", "RUSTUP_TOOLCHAIN"):
            if key in environ:
                env[key] = environ[key]
        cache_key = (label, path, tuple(sorted(env.items())))
        with self._lock:
            if cache_key in self._known:
                return self._known[cache_key]
        real = os.path.realpath(path)
        if os.path.basename(real) == "rustup" and command != "rustup":
            # A rustup proxy: the binary it runs is the toolchain's, and rustup says which.
            which = _first_line([real, "which", command], env)
            real = which if which and os.path.isabs(which) else real
        program = Program(label, path, real, _first_line([path, "--version"], env), _hash(real))
        with self._lock:
            self._known[cache_key] = program
        return program
