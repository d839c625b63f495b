"""Building one wheel from a prepared source tree: its build environments, its backend (or
recipe), the share of cores it gets. What becomes of the wheel is the caller's (``Deliver``)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..core.bootstrap import Built, Prepared
from ..core.errors import BuildError, CommandFailed, Step
from ..core.fsutil import remove_tree
from ..core.resolver import Pin
from ..core.types import Runner, WheelRef
from ..repo.machine_paths import PathInWheel, paths_in_wheel
from ..repo.wheelfile import READ_ERRORS, read_metadata_bytes, wheel_name_version
from .backend import Backend
from .buildenv import BuildEnvironment, EnvBuilder
from .conditions import (
    BuildConditions,
    BuildProbe,
    hook_runner,
    process_umask,
    recipe_runner,
    sitecustomize_of,
    small_file,
)
from .diagnose import TAIL_CHARS, clean_line, diagnose
from .pyproject import BuildSystem
from .recipes import BuildRecipe, RecipeContext, load_recipe
from .reproducible import Interpreter, reproducible_env, source_date_epoch
from .settings import PackageSettings, Settings
from .workspace import Workspace


def compile_parallelism(n: int, workdir: Path) -> dict[str, str]:
    """Variables that let one build run ``n`` compile jobs at once, whatever it is built with.

    setuptools has no variable for it, but reads an extra config file named by
    ``DIST_EXTRA_CONFIG``: ``[build_ext] parallel`` compiles extension modules in parallel.
    """
    cfg = workdir / "rewheel-build-ext.cfg"
    cfg.write_text(f"[build_ext]\nparallel = {n}\n")
    return {
        "MAKEFLAGS": f"-j{n}",
        "CMAKE_BUILD_PARALLEL_LEVEL": str(n),
        "MAX_JOBS": str(n),
        "NPY_NUM_BUILD_JOBS": str(n),
        "CARGO_BUILD_JOBS": str(n),
        "DIST_EXTRA_CONFIG": str(cfg),
    }


def _log_size(log: Path) -> int:
    try:
        return log.stat().st_size
    except OSError:
        return 0


def _diagnosed(error: BuildError, log: Path, start: int, *, offline: bool) -> BuildError:
    """``error`` with what the log written since ``start`` shows of the cause (its ``hint``),
    unless it has a hint already."""
    if error.hint is not None:
        return error
    try:
        with log.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(start, size - TAIL_CHARS))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return error
    found = diagnose(text, package=error.package, offline=offline)
    if found is not None:
        error.hint = found.line()
    return error


class CoreBudget:
    """Hands each build the cores no other build holds, at least one.

    A build alone (a long Cython or numpy build that everything waits for) gets every core; builds
    that start while others run get what is left, so that together they stay near the core count.
    """

    def __init__(self, cores: int | None = None) -> None:
        self.cores = cores or os.cpu_count() or 1
        self._in_use = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            n = max(1, min(self.cores, self.cores - self._in_use))
            self._in_use += n
            return n

    def give(self, n: int) -> None:
        with self._lock:
            self._in_use -= n


@dataclass(frozen=True)
class FreshWheel:
    """A wheel just built, still in the package's work folder, with what its provenance needs."""

    path: Path
    name: NormalizedName
    version: str
    metadata: bytes  # its METADATA
    env: BuildEnvironment  # as the build hook had it (reproducibility and compile variables in)
    reproducibility: Mapping[str, str]
    started: float  # wall clock, when the build began
    build_path: Path
    log: Path
    # How the build ran (None: the builder was given no probe, as in rebuilds).
    conditions: BuildConditions | None = None
    # Where the wheel names this machine (its build root, the interpreter's prefix, the
    # repository): nothing, when it is reproducible anywhere.
    machine_paths: tuple[PathInWheel, ...] = ()


# What becomes of a fresh wheel: published (``publisher.Publisher.deliver``) or kept aside
# (``publisher.keep_in``). Returns the wheel where it now is.
Deliver = Callable[[Prepared, FreshWheel], WheelRef]


class WheelBuilder:
    """Makes build environments in a package's work folder and runs its backend (or its recipe)
    there, in the sandbox the runner applies.

    ``recipes`` finds a recipe by name (the ``rewheel.recipes`` entry points); tests pass their
    own. With a ``probe`` (one per run), each fresh wheel comes with its ``BuildConditions``:
    how the build ran, the compilers it could run, what the wheel links against.

    ``interpreter`` is the one build environments are venvs of (default: this one).

    Every wheel it builds is searched for the paths of this machine: the build root, the
    interpreter's install prefix, and ``private_paths`` (the repository). What is found goes to
    the package's log and to ``on_notice`` (default: nowhere else), and into
    ``FreshWheel.machine_paths``.
    """

    def __init__(
        self,
        *,
        workspace: Workspace,
        env_builder: EnvBuilder,
        runner: Runner,
        settings: Settings,
        build_timeout: float | None = None,
        cores: CoreBudget | None = None,
        recipes: Callable[[str], BuildRecipe] = load_recipe,
        probe: BuildProbe | None = None,
        interpreter: Interpreter | None = None,
        private_paths: Sequence[Path] = (),
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.workspace = workspace
        self.env_builder = env_builder
        self.runner = runner
        self.settings = settings
        self.build_timeout = build_timeout
        self.cores = cores or CoreBudget()
        self.recipes = recipes
        self.probe = probe
        self.interpreter = interpreter or Interpreter.running()
        self.private_paths = tuple(private_paths)
        self.on_notice = on_notice
        # PYTHONHASHSEED and PYTHONDONTWRITEBYTECODE here (as in reproducible_env): the build
        # environment's scrubbing drops every PYTHON* variable, and get_requires runs in the
        # same source tree as the build.
        # CARGO_NET_OFFLINE: cargo fails at once on a missing crate instead of retrying the net.
        self.extra_env = {
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "CARGO_NET_OFFLINE": "true",
        }

    def _settings(self, pin: Pin) -> PackageSettings:
        return self.settings.for_package(pin.name, pin.version)

    def create_env(
        self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str
    ) -> BuildEnvironment:
        pin = prepared.pin
        work = self.workspace.folder(pin)
        dest = work / name
        if dest.exists():
            remove_tree(dest)
        return self.env_builder.create(
            dest,
            wheels,
            log=self.workspace.log(pin),
            home=work / "home",
            package=pin.name,
            version=str(pin.version),
        )

    def _with_build_vars(
        self, prepared: Prepared, env: BuildEnvironment, last: Mapping[str, str] | None = None
    ) -> BuildEnvironment:
        """The environment with what every build gets added, then the package's settings, then
        ``last`` (the reproducibility variables, which build on the settings' own flags)."""
        return BuildEnvironment(
            path=env.path,
            python=env.python,
            environ={
                **env.environ,
                # A temporary folder the sandbox lets it write.
                "TMPDIR": str(self.workspace.folder(prepared.pin) / "tmp"),
                **self.extra_env,
                **self._settings(prepared.pin).env,
                **(last or {}),
            },
            installed=env.installed,
        )

    def _backend(
        self, prepared: Prepared, env: BuildEnvironment, last: Mapping[str, str] | None = None
    ) -> Backend:
        assert isinstance(prepared.backend, BuildSystem)
        env = self._with_build_vars(prepared, env, last)
        return Backend(
            prepared.source_dir,
            prepared.backend,
            env,
            self.runner,
            log=self.workspace.log(prepared.pin),
            package=prepared.pin.name,
            version=str(prepared.pin.version),
            timeout=self.build_timeout,
            isolate_network=self.workspace.isolate_network,
            confine=self.workspace.confinement(prepared.pin),
            removed=sorted(self._settings(prepared.pin).requires_remove),
        )

    def get_requires(self, prepared: Prepared, env: BuildEnvironment) -> list[str]:
        pkg = self._settings(prepared.pin)
        if pkg.recipe is not None:
            return []  # a recipe replaces the declared backend, which may not even be installed
        return self._backend(prepared, env).get_requires_for_build_wheel(
            pkg.config_settings or None
        )

    def build(self, prepared: Prepared, env: BuildEnvironment, deliver: Deliver) -> Built:
        """Build the wheel, hand it to ``deliver``, and clear the package's work folder."""
        pin = prepared.pin
        started, wall_started = time.monotonic(), time.time()
        out = self.workspace.folder(pin) / "dist"
        out.mkdir(parents=True, exist_ok=True)
        # From the settings' variables too: their CFLAGS get the prefix maps, their CC the
        # link command (and a SOURCE_DATE_EPOCH of theirs gives way to the sdist's).
        repro = reproducible_env(
            {**env.environ, **self._settings(pin).env},
            source_dir=prepared.source_dir,
            name=pin.name,
            version=str(pin.version),
            epoch=source_date_epoch(prepared.sdist_path),
            interpreter=self.interpreter,
            work_dir=self.workspace.folder(pin),
        )
        cores = self.cores.take()
        try:
            compile_vars = compile_parallelism(cores, self.workspace.folder(pin))
            env = dataclasses.replace(env, environ={**env.environ, **compile_vars})
            before = self._conditions(prepared, env, cores, compile_vars, repro)
            path = self._run(prepared, env, out, repro)
            env = self._with_build_vars(prepared, env, repro)  # as the build had it
        finally:
            self.cores.give(cores)
        name, version = wheel_name_version(path.name)
        log = self.workspace.log(pin)
        if name != canonicalize_name(pin.name) or Version(version) != pin.version:
            raise BuildError(
                f"the backend built {path.name}, not a wheel of {pin}",
                package=pin.name,
                version=str(pin.version),
                step=Step.BUILD_WHEEL,
                log_path=log,
            )
        try:
            fresh = FreshWheel(
                path=path,
                name=name,
                version=version,
                metadata=read_metadata_bytes(path),
                env=env,
                reproducibility=repro,
                started=wall_started,
                build_path=self.workspace.folder(pin),
                log=log,
                conditions=(
                    None
                    if before is None or self.probe is None
                    else dataclasses.replace(before, linkage=self.probe.linkage(path))
                ),
                machine_paths=self._machine_paths(pin, path, log),
            )
        except READ_ERRORS as exc:  # the build's own file: anything may be in it
            raise BuildError(
                f"the backend built {path.name}, which is not a readable wheel "
                f"({type(exc).__name__}: {clean_line(str(exc))})",
                package=pin.name,
                version=str(pin.version),
                step=Step.BUILD_WHEEL,
                log_path=log,
                hint="the build wrote a damaged wheel; its log shows what the backend did",
            ) from exc
        ref = deliver(prepared, fresh)
        seconds = time.monotonic() - started
        with contextlib.suppress(OSError):
            remove_tree(self.workspace.folder(pin))
        return Built(wheel=ref, metadata=fresh.metadata, seconds=seconds, log=log)

    def _conditions(
        self,
        prepared: Prepared,
        env: BuildEnvironment,
        cores: int,
        compile_vars: Mapping[str, str],
        repro: Mapping[str, str],
    ) -> BuildConditions | None:
        """How the build is about to run, read before it starts (None without a probe)."""
        if self.probe is None:
            return None
        pkg = self._settings(prepared.pin)
        environ = self._with_build_vars(prepared, env, repro).environ
        extra = compile_vars.get("DIST_EXTRA_CONFIG")
        return BuildConditions(
            umask=process_umask(),
            cores=cores,
            parallelism=compile_vars,
            dist_extra_config=small_file(Path(extra)) if extra else None,
            environment=environ,
            sitecustomize=sitecustomize_of(env.path),
            hook_runner=(
                hook_runner()
                if pkg.recipe is None
                else recipe_runner(pkg.recipe, self.recipes(pkg.recipe))
            ),
            programs=self.probe.programs(
                environ, untrusted=(self.workspace.folder(prepared.pin), env.path)
            ),
        )

    def _machine_paths(self, pin: Pin, wheel: Path, log: Path) -> tuple[PathInWheel, ...]:
        """Where ``wheel`` names this machine; said in the log and to ``on_notice``."""
        paths: list[str | Path] = [
            self.workspace.work_root,
            *self.interpreter.private_prefixes(),
            *self.private_paths,
        ]
        try:
            found = tuple(paths_in_wheel(wheel, paths))
        except READ_ERRORS:
            return ()  # not a readable zip: publishing refuses it, with the reason
        if not found:
            return found
        lines = [f"=== {wheel.name} names paths of this machine (not reproducible elsewhere):"]
        lines += [f"===   {f}" for f in found]
        with contextlib.suppress(OSError), log.open("a", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")
        if self.on_notice is not None:
            where = ", ".join(sorted({f.member for f in found})[:3])
            more = len({f.member for f in found}) - 3
            self.on_notice(
                f"{pin.name} {pin.version}: the wheel names paths of this machine "
                f"({', '.join(sorted({f.path for f in found}))}) in {where}"
                + (f" and {more} more" if more > 0 else "")
                + f"; see {log}"
            )
        return found

    def _run(
        self, prepared: Prepared, env: BuildEnvironment, out: Path, repro: Mapping[str, str]
    ) -> Path:
        """Run the package's recipe or its backend; the wheel it wrote."""
        pin = prepared.pin
        pkg = self._settings(pin)
        if pkg.recipe is None:
            backend = self._backend(prepared, env, repro)
            return backend.build_wheel(out, pkg.config_settings or None)
        build_env = self._with_build_vars(prepared, env, repro)
        log = self.workspace.log(pin)
        recipe = self.recipes(pkg.recipe)
        start = _log_size(log)
        try:
            wheel = recipe.build_wheel(
                RecipeContext(
                    name=pin.name,
                    version=pin.version,
                    source_dir=prepared.source_dir,
                    out_dir=out,
                    python=build_env.python,
                    environ=build_env.environ,
                    runner=self.runner,
                    log=log,
                    config_settings=pkg.config_settings,
                    confine=self.workspace.confinement(pin),
                )
            )
        except CommandFailed as exc:
            # A command the recipe did not wrap: still this package's build failure.
            error = BuildError(
                f"the recipe {pkg.recipe} failed: {exc.message}",
                package=pin.name,
                version=str(pin.version),
                step=Step.BUILD_WHEEL,
                log_path=log,
            )
            raise _diagnosed(error, log, start, offline=self.workspace.isolate_network) from exc
        except BuildError as exc:
            _diagnosed(exc, log, start, offline=self.workspace.isolate_network)
            raise
        if wheel.is_symlink() or not wheel.is_file():
            raise BuildError(
                f"the recipe's wheel {wheel.name} is not a plain file",
                package=pin.name,
                version=str(pin.version),
                step=Step.BUILD_WHEEL,
                log_path=self.workspace.log(pin),
            )
        return wheel
