"""The seed packages of a virtual environment: what ``python -m venv`` installs into every venv it
makes (pip, and setuptools before Python 3.12) from the interpreter's own ``ensurepip`` wheels,
not from any index.

They are not wheels of the repository, so ``rewheel verify`` cannot vouch for them as it does for
the rest; what it can check is that each is the wheel the interpreter bundles, file for file. The
interpreter is trusted here as everywhere in ``verify`` (it compiles the byte-code compared).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ..core.errors import RewheelError
from ..core.fsutil import is_plain_file, sha256_file
from ..core.types import WheelRef
from ..repo.wheelfile import wheel_name_version

# Where ensurepip keeps the wheels it installs: its ``_bundled`` folder, or the folder a
# distribution configured instead (Debian: /usr/share/python-wheels, WHEEL_PKG_DIR).
_FIND = """
import json, os, sysconfig
found = []
try:
    import ensurepip
    found.append(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled"))
except ImportError:
    pass
if sysconfig.get_config_var("WHEEL_PKG_DIR"):
    found.append(sysconfig.get_config_var("WHEEL_PKG_DIR"))
print(json.dumps(found))
"""
# What ``python -m venv`` seeds from those folders (ensurepip installs nothing else).
SEED_PROJECTS = frozenset({"pip", "setuptools"})


def seed_wheels(python: Path) -> list[tuple[WheelRef, Path]]:
    """The wheels ``python``'s ensurepip would install into a new venv; [] when it has none
    (or cannot be asked)."""
    try:
        proc = subprocess.run(
            [str(python), "-I", "-S", "-c", _FIND],
            capture_output=True,
            text=True,
            env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},
            timeout=60,
            check=False,
        )
        folders = json.loads(proc.stdout) if proc.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    out = []
    for folder in folders if isinstance(folders, list) else []:
        if not isinstance(folder, str) or not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).glob("*.whl")):
            try:
                name, version = wheel_name_version(path.name)
            except RewheelError:
                continue
            if name in SEED_PROJECTS and is_plain_file(path):
                out.append((WheelRef(name, version, path.name, sha256_file(path)), path))
    return out
