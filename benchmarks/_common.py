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
from collections.abc import Mapping, Sequence
from pathlib import Path

# Variables that would make a tool see more than the index it is given (pip's and uv's settings).
TOOL_SETTINGS = ("PIP_", "UV_")
# Variables that would make a tool see another Python setup than the one it runs on.
PYTHON_SETUP = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "CONDA_PREFIX")


def without(
    base: Mapping[str, str], prefixes: tuple[str, ...], names: Sequence[str] = ()
) -> dict[str, str]:
    """``base`` without the variables whose names start with one of ``prefixes`` or are one of
    ``names``."""
    return {
        key: value
        for key, value in base.items()
        if not key.startswith(prefixes) and key not in names
    }


def clean_environ(
    base: Mapping[str, str],
    home: Path,
    *,
    prefixes: tuple[str, ...] = TOOL_SETTINGS,
    names: Sequence[str] = PYTHON_SETUP,
    path_prefix: Path | None = None,
) -> dict[str, str]:
    """Environment for one tool: ``base`` without ``prefixes`` and ``names``, no pip or uv
    settings from this machine, a private HOME (``path_prefix``: put first on PATH).

    PIP_CONFIG_FILE=/dev/null makes pip skip every config file (global, user, site), which is how
    this machine's extra local indexes and find-links stay out. The private HOME keeps caches of
    anything that writes under ~ inside the run directory, so a cold run really starts empty.
    """
    env = without(base, prefixes, names)
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
