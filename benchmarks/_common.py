"""What the benchmark scripts share: the environment a measured tool runs in.

Standard library only, like the scripts that need nothing else. A script imports it from beside
itself, however it is started (``.venv/bin/python benchmarks/bench_X.py`` from the repository's
root, or loaded from its file by a test):

    HERE = Path(__file__).resolve().parent
    sys.path.insert(0, str(HERE))

    from _common import clean_environ
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Variables that would make a tool see more than PyPI or a different Python setup.
_DROPPED_PREFIXES = ("PIP_", "UV_")
# PYTHONDONTWRITEBYTECODE (set on this machine) would make every start of either tool compile
# its modules again, which a user's never does: most of a no-op re-run's time.
_DROPPED_NAMES = (
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONUSERBASE",
    "CONDA_PREFIX",
    "PYTHONDONTWRITEBYTECODE",
)


def clean_environ(base: Mapping[str, str], home: Path, path_prefix: Path | None) -> dict[str, str]:
    """Environment for one tool: no pip/uv settings from this machine, a private HOME.

    PIP_CONFIG_FILE=/dev/null makes pip skip every config file (global, user, site), which is how
    this machine's extra local indexes and find-links stay out. The private HOME keeps caches of
    anything that writes under ~ inside the run directory, so a cold run really starts empty.
    """
    env = {
        key: value
        for key, value in base.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED_NAMES
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    env["HOME"] = str(home)
    env["XDG_CACHE_HOME"] = str(home / ".cache")
    env["XDG_CONFIG_HOME"] = str(home / ".config")
    env["XDG_DATA_HOME"] = str(home / ".local" / "share")
    # rustup's toolchains stay where they are installed: its proxies (cargo, rustc) look for
    # them under ~/.rustup, and the private HOME has none (both tools would fail on Rust sdists).
    rustup_home = Path(
        base.get("RUSTUP_HOME") or Path(base.get("HOME", "/nonexistent")) / ".rustup"
    )
    if rustup_home.is_dir():
        env["RUSTUP_HOME"] = str(rustup_home)
    if path_prefix is not None:
        env["PATH"] = os.pathsep.join([str(path_prefix), env.get("PATH", os.defpath)])
    return env
