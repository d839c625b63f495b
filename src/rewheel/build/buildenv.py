"""Isolated build environments: a fresh venv holding exactly the given wheels, nothing else.

Everything that could make pip or uv (ours, or one a build runs) read the machine's configuration
or reach an index other than ours is taken out of the environment: PIP_*/UV_* variables, config
files found through HOME and XDG_*, and Python's own path and user-site variables.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from uv import find_uv_bin

from ..core.errors import BuildError, CommandFailed, Step
from ..core.fsutil import make_dirs_below
from ..core.types import Runner, WheelRef
from .sandbox import allowed_environ, rust_toolchain

_STEP = Step.BUILD_ENV


def scrubbed_environ(base: Mapping[str, str], *, home: Path) -> dict[str, str]:
    """The variables of ``base`` that installers and builds may see, and this machine's setup not.

    Only an allow-list passes (``sandbox.ENV_ALLOWED``: PATH, locale, compilers and their flags,
    SOURCE_DATE_EPOCH, rustup's home): no token, agent socket, password or installer setting
    does. HOME and the XDG base directories move under ``home``; XDG_CONFIG_DIRS points at an
    empty directory there, so that system-wide files such as /etc/xdg/pip/pip.conf are not found.
    rustup's proxies (cargo, rustc) are told where their toolchains are, since HOME has moved.
    """
    env = allowed_environ(base)
    rustup = Path(base.get("RUSTUP_HOME") or Path(base.get("HOME") or Path.home()) / ".rustup")
    if rustup.is_dir():
        env["RUSTUP_HOME"] = str(rustup)
        # Pinned, so that no rust-toolchain.toml in an sdist chooses what cargo and rustc are.
        toolchain = env.get("RUSTUP_TOOLCHAIN") or rust_toolchain(base)
        if toolchain:
            env["RUSTUP_TOOLCHAIN"] = toolchain
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CONFIG_DIRS=str(home / "empty-xdg-config-dirs"),
        # pip reads no config file at all when this is os.devnull, and may use no index.
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        UV_NO_CONFIG="1",
        PYTHONNOUSERSITE="1",
    )
    return env


def _home_dirs(environ: Mapping[str, str]) -> list[Path]:
    keys = ("HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
    return [Path(environ[k]) for k in (*keys, "XDG_CONFIG_DIRS")]


@dataclass(frozen=True)
class BuildEnvironment:
    path: Path
    python: Path
    environ: Mapping[str, str]
    installed: tuple[WheelRef, ...]


def requirements_text(wheels: Sequence[WheelRef]) -> str:
    """Hash-pinned requirement lines for exactly these wheels."""
    return "".join(f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n" for w in wheels)


# Written into every build environment. Some backends build in a mkdtemp() folder (the aio-libs
# in-tree backend does) and the random name ends up in the compiled extension's debug data. With
# REWHEEL_TEMP_SEED set (the reproducibility variables set it), temporary names come from a
# generator seeded by it, so that a rebuild in the same place gives the same bytes.
SITECUSTOMIZE = """\
import os

if os.environ.get("REWHEEL_TEMP_SEED"):
    import random
    import tempfile

    class _SeededNames(tempfile._RandomNameSequence):
        @property
        def rng(self):
            if getattr(self, "_rewheel_pid", None) != os.getpid():
                self._rewheel_pid = os.getpid()
                self._rng = random.Random(os.environ["REWHEEL_TEMP_SEED"])
            return self._rng

    tempfile._name_sequence = _SeededNames()
"""


class EnvBuilder:
    """Creates build environments with uv, installing wheels only from ``index_url``."""

    def __init__(
        self,
        *,
        index_url: str,
        runner: Runner,
        python: Path = Path(sys.executable),
        uv: Path | None = None,
        cache_dir: Path | None = None,
        timeout: float | None = None,
    ) -> None:
        self._index_url = index_url
        self._runner = runner
        self._python = python
        self._uv = uv or Path(find_uv_bin())
        self._cache_dir = cache_dir
        self._timeout = timeout

    def create(
        self,
        dest: Path,
        wheels: Sequence[WheelRef],
        *,
        log: Path,
        home: Path,
        package: str | None = None,
        version: str | None = None,
    ) -> BuildEnvironment:
        """A new venv at ``dest`` (which must not exist) with no packages but ``wheels``."""

        def fail(message: str) -> BuildError:
            return BuildError(message, package=package, version=version, step=_STEP, log_path=log)

        if dest.exists() or dest.is_symlink():
            raise fail(f"build environment {dest} already exists")
        environ = scrubbed_environ(os.environ, home=home)
        cache_dir = self._cache_dir or home / ".cache" / "uv"
        try:
            home.mkdir(parents=True, exist_ok=True)
            # The build may have written HOME before (an earlier hook): no link is followed.
            for d in _home_dirs(environ):
                make_dirs_below(home, d)
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise fail(f"cannot prepare {home}: {exc}") from exc

        def run(cmd: list[str], what: str) -> None:
            try:
                self._runner(cmd, cwd=home, env=environ, log=log, timeout=self._timeout)
            except CommandFailed as exc:
                raise fail(f"{what} failed: {exc.message}") from exc

        common = ["--no-config", "--no-python-downloads", "--color", "never", "--no-progress"]
        # No seed packages: the build gets pip/setuptools/wheel only if it asks for them.
        # Relocatable: its scripts find their interpreter relative to themselves, since build
        # code sees the environment at another path (sandbox.BOX_WORK) than the one made here.
        run(
            [
                str(self._uv),
                "venv",
                *common,
                "--relocatable",
                "--no-project",
                "--python",
                str(self._python),
                str(dest),
            ],
            "creating the venv",
        )
        env_python = dest / "bin" / "python"
        for site_packages in dest.glob("lib/python*/site-packages"):
            try:
                (site_packages / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
            except OSError as exc:
                raise fail(f"cannot write sitecustomize.py into {site_packages}: {exc}") from exc
        if wheels:
            reqs = dest / "rewheel-build-requirements.txt"
            try:
                reqs.write_text(requirements_text(wheels), encoding="utf-8")
            except OSError as exc:
                raise fail(f"cannot write {reqs}: {exc}") from exc
            install = [
                str(self._uv),
                "pip",
                "install",
                *common,
                "--python",
                str(env_python),
                "--default-index",
                self._index_url,
                "--no-deps",
                "--require-hashes",
                "--no-build",
                "--cache-dir",
                str(cache_dir),
                # Copies, not hardlinks into the shared cache: a build that edits a file in its
                # environment must not change it for every later build.
                "--link-mode",
                "copy",
                "-r",
                str(reqs),
            ]
            run(install, "installing build requirements")

        build_environ = dict(environ)
        build_environ["VIRTUAL_ENV"] = str(dest)
        build_environ["PATH"] = os.pathsep.join(
            p for p in (str(dest / "bin"), environ.get("PATH", "")) if p
        )
        # A uv run by the build itself may not fetch anything either.
        build_environ["UV_OFFLINE"] = "1"
        return BuildEnvironment(
            path=dest, python=env_python, environ=build_environ, installed=tuple(wheels)
        )
