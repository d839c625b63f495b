"""The ``maturin-cargo`` recipe: builds a maturin (pyo3) project with cargo alone.

maturin cannot be built here (its crates are not vendored), so packages whose backend it is
cannot use it. For the common case, a pyo3 extension module with an optional Python package
next to it, maturin's work is small: ``cargo build`` the cdylib, then lay out a wheel. This recipe
does exactly that, reading ``[tool.maturin]`` for the layout, and refuses, by name, every setting
it does not implement rather than build a wheel that differs from maturin's.

The wheel's metadata is the sdist's PKG-INFO (maturin wrote it, as core metadata, from the same
pyproject.toml); its tag is the build interpreter's most specific one on the plain
``linux_<arch>`` platform: nothing audited the library for a manylinux tag.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.metadata import RawMetadata
from packaging.tags import Tag, cpython_tags
from packaging.utils import canonicalize_name
from packaging.version import Version

from .. import __version__
from ..core.errors import BuildError, CommandFailed, Step
from ..core.fsutil import remove_tree
from ..repo.wheelfile import MIN_ZIP_EPOCH, parse_metadata, write_wheel
from .recipes import RecipeContext

STEP = Step.RECIPE_MATURIN_CARGO

# [tool.maturin] keys this recipe implements, and those that do not change the wheel's content.
_SUPPORTED = frozenset(
    {
        "python-source",
        "module-name",
        "manifest-path",
        "features",
        "bindings",
        "no-default-features",
        "all-features",
        "include",
        "exclude",
        "profile",
        "strip",
    }
)
_NO_EFFECT = frozenset({"compatibility", "skip-auditwheel", "auditwheel", "sdist-generator"})
_PYO3_BINDINGS = frozenset({"pyo3", "pyo3-ffi"})
_ENTRY_POINT_GROUPS = {"scripts": "console_scripts", "gui-scripts": "gui_scripts"}

# Run in the build environment's interpreter: what the extension and the wheel tag depend on.
_PROBE = """\
import json, sys, sysconfig
json.dump({
    "implementation": sys.implementation.name,
    "version": list(sys.version_info[:2]),
    "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
    "soabi": sysconfig.get_config_var("SOABI"),
    "platform": sysconfig.get_platform(),
}, open(sys.argv[1], "w"))
"""


@dataclass(frozen=True)
class Interpreter:
    """The build environment's interpreter, as far as the wheel is concerned."""

    implementation: str
    version: tuple[int, int]
    ext_suffix: str
    soabi: str
    platform: str  # sysconfig.get_platform(), e.g. "linux-x86_64"

    @classmethod
    def from_probe(cls, data: Mapping[str, Any]) -> Interpreter:
        major, minor = data["version"]
        return cls(
            implementation=str(data["implementation"]),
            version=(int(major), int(minor)),
            ext_suffix=str(data["ext_suffix"] or ""),
            soabi=str(data["soabi"] or ""),
            platform=str(data["platform"]),
        )


def wheel_tag(interp: Interpreter) -> Tag:
    """The most specific tag of a CPython interpreter on the plain ``linux_<arch>`` platform."""
    if interp.implementation != "cpython" or not interp.soabi.startswith("cpython-"):
        raise ValueError(f"{interp.implementation} ({interp.soabi or 'no SOABI'}) is not CPython")
    if not interp.platform.startswith("linux-"):
        raise ValueError(f"platform {interp.platform} is not Linux")
    abi = "cp" + interp.soabi.split("-")[1]  # "cpython-311-x86_64-linux-gnu" -> "cp311"
    platform = interp.platform.replace("-", "_").replace(".", "_")
    return next(iter(cpython_tags(interp.version, [abi], [platform])))


@dataclass(frozen=True)
class MaturinProject:
    """What ``[tool.maturin]`` and Cargo.toml say about the wheel."""

    manifest: Path
    lib_name: str  # the cdylib: lib<lib_name>.so
    module: str  # the extension's dotted import name
    python_source: Path | None  # the folder holding the Python package (mixed layout)
    cargo_args: tuple[str, ...]


def _refuse(ctx: RecipeContext, message: str) -> BuildError:
    return BuildError(
        f"the maturin-cargo recipe {message}",
        package=ctx.name,
        version=str(ctx.version),
        step=STEP,
        log_path=ctx.log,
    )


def _load_toml(ctx: RecipeContext, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _refuse(ctx, f"cannot read {path.name}: {exc}") from exc


def _sdist_only(entries: object) -> bool:
    """Whether include/exclude entries all apply to the sdist alone (no format: both)."""
    if not isinstance(entries, list):
        return False
    for entry in entries:
        if not isinstance(entry, dict):
            return False
        formats = entry.get("format")
        formats = [formats] if isinstance(formats, str) else formats
        if formats != ["sdist"]:
            return False
    return True


def _uses_abi3(features: Sequence[str], cargo: Mapping[str, Any]) -> bool:
    names = list(features)
    for key in ("pyo3", "pyo3-ffi"):
        dep = cargo.get("dependencies", {}).get(key)
        if isinstance(dep, dict):
            names += [str(f) for f in dep.get("features", [])]
    return any("abi3" in name for name in names)


def read_project(ctx: RecipeContext) -> MaturinProject:
    """The layout of the wheel; refuses what this recipe does not implement."""
    root = ctx.source_dir
    pyproject = _load_toml(ctx, root / "pyproject.toml")
    config = pyproject.get("tool", {}).get("maturin", {})
    if not isinstance(config, dict):
        raise _refuse(ctx, "needs [tool.maturin] to be a table")
    unsupported = sorted(set(config) - _SUPPORTED - _NO_EFFECT)
    if unsupported:
        raise _refuse(ctx, f"does not implement [tool.maturin] {', '.join(unsupported)}")
    for key in ("include", "exclude"):
        if key in config and not _sdist_only(config[key]):
            raise _refuse(ctx, f"implements [tool.maturin] {key} only for the sdist format")
    if config.get("profile", "release") != "release" or config.get("strip", False):
        raise _refuse(ctx, "builds the release profile, unstripped, only")
    if ctx.config_settings:
        raise _refuse(ctx, "takes no config_settings")
    bindings = config.get("bindings")
    if bindings is not None and bindings not in _PYO3_BINDINGS:
        raise _refuse(ctx, f"builds pyo3 extension modules, not {bindings!r} bindings")

    manifest = (root / str(config.get("manifest-path", "Cargo.toml"))).resolve()
    if not manifest.is_relative_to(root.resolve()) or not manifest.is_file():
        raise _refuse(ctx, f"finds no Cargo.toml at {config.get('manifest-path', 'Cargo.toml')}")
    cargo = _load_toml(ctx, manifest)
    lib = cargo.get("lib", {})
    package_name = cargo.get("package", {}).get("name")
    lib_name = str(lib.get("name") or package_name or "").replace("-", "_")
    if not lib_name:
        raise _refuse(ctx, f"finds no [lib] or [package] name in {manifest.name}")
    if "cdylib" not in lib.get("crate-type", []):
        raise _refuse(ctx, "builds only a [lib] with crate-type cdylib")
    if bindings is None and not _locks_pyo3(manifest, root):
        raise _refuse(ctx, "builds pyo3 extension modules; Cargo.lock has no pyo3-ffi")

    features = config.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise _refuse(ctx, "needs [tool.maturin] features to be a list of strings")
    if _uses_abi3(features, cargo):
        raise _refuse(ctx, "builds version-specific extensions, not abi3 ones")
    args: list[str] = []
    if features:
        args += ["--features", ",".join(features)]
    if config.get("no-default-features"):
        args.append("--no-default-features")
    if config.get("all-features"):
        args.append("--all-features")

    module = str(config.get("module-name") or lib_name)
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        raise _refuse(ctx, f"needs module-name to be a dotted Python name, not {module!r}")
    source_key = config.get("python-source")
    python_source = (root / str(source_key or ".")).resolve()
    if not python_source.is_relative_to(root.resolve()):
        raise _refuse(ctx, "needs python-source inside the sdist")
    mixed = (python_source / parts[0]).is_dir()
    if source_key is not None and not mixed:
        raise _refuse(ctx, f"finds no package {parts[0]} in python-source {source_key}")
    if not mixed and len(parts) > 1:
        raise _refuse(ctx, "needs a python-source package for a dotted module-name")
    return MaturinProject(
        manifest=manifest,
        lib_name=lib_name,
        module=module,
        python_source=python_source if mixed else None,
        cargo_args=tuple(args),
    )


def _locks_pyo3(manifest: Path, root: Path) -> bool:
    folder = manifest.parent
    while folder.is_relative_to(root):
        lock = folder / "Cargo.lock"
        if lock.is_file():
            try:
                packages = tomllib.loads(lock.read_text(encoding="utf-8")).get("package", [])
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
                return False
            return any(p.get("name") == "pyo3-ffi" for p in packages)
        folder = folder.parent
    return False


# -- core metadata --------------------------------------------------------------------------


def check_pkg_info(ctx: RecipeContext, data: bytes) -> RawMetadata:
    """The sdist's PKG-INFO, checked to be usable as the wheel's METADATA unchanged.

    Metadata 2.2 and later say which fields are static; anything ``Dynamic`` could differ in a
    wheel, which only the real backend could fill in. Older PKG-INFO is trusted: maturin writes
    all of it from pyproject.toml, as it would in the wheel.
    """
    raw = parse_metadata(data)
    meta_version = raw.get("metadata_version", "")
    try:
        parsed = Version(meta_version)
    except ValueError:
        parsed = Version("0")
    if parsed.major != 2 or parsed > Version("2.5"):
        raise _refuse(ctx, f"does not know PKG-INFO Metadata-Version {meta_version or '(none)'}")
    name, version = raw.get("name", ""), raw.get("version", "")
    try:
        same_version = Version(version) == ctx.version
    except ValueError:
        same_version = False
    if canonicalize_name(name) != ctx.name or not same_version:
        raise _refuse(ctx, f"found PKG-INFO of {name} {version}, not of {ctx.name} {ctx.version}")
    dynamic = raw.get("dynamic") or []
    if dynamic:
        raise _refuse(ctx, f"cannot fill in PKG-INFO's dynamic fields: {', '.join(dynamic)}")
    return raw


def entry_points_text(project: Mapping[str, Any]) -> str | None:
    """entry_points.txt from pyproject's [project] scripts, gui-scripts and entry-points."""
    groups: dict[str, Mapping[str, Any]] = {}
    for key, group in _ENTRY_POINT_GROUPS.items():
        if project.get(key):
            groups[group] = project[key]
    for group, table in sorted(project.get("entry-points", {}).items()):
        groups[group] = table
    if not groups:
        return None
    lines: list[str] = []
    for group, table in groups.items():
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {value}" for name, value in sorted(table.items()))
        lines.append("")
    return "\n".join(lines)


# -- the wheel ------------------------------------------------------------------------------


def zip_epoch(environ: Mapping[str, str]) -> int:
    """Member times: SOURCE_DATE_EPOCH when set (clamped to what zip can store), else 1980."""
    try:
        epoch = int(environ.get("SOURCE_DATE_EPOCH", ""))
    except ValueError:
        epoch = MIN_ZIP_EPOCH
    return max(epoch, MIN_ZIP_EPOCH)


def tree_bytes(tree: Path, path: Path) -> bytes | None:
    """The content of ``path``, a plain file of ``tree`` (None if there is none).

    After the build's code has run, the tree is the build's: a link there (or a linked folder on
    the way) could point at any file of the machine, which would then be published; a FIFO would
    hang rewheel. So the real path must stay inside the tree, and the file must be regular.
    """
    try:
        real = path.resolve()
        if not real.is_relative_to(tree.resolve()) or not stat.S_ISREG(path.lstat().st_mode):
            return None
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read()


def _package_files(folder: Path, base: Path, tree: Path) -> dict[str, bytes]:
    """The Python package's plain files, by their path in the wheel (no bytecode, no links)."""
    out: dict[str, bytes] = {}
    for root, dirs, names in os.walk(folder):  # links to folders are not followed
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix in (".pyc", ".pyo"):
                continue
            data = tree_bytes(tree, path)
            if data is not None:
                out[path.relative_to(base).as_posix()] = data
    return out


def _init_for(module: str) -> bytes:
    # What maturin puts next to a pure Rust module, so that ``import module`` finds it.
    return (
        f"from .{module} import *\n\n"
        f"__doc__ = {module}.__doc__\n"
        f'if hasattr({module}, "__all__"):\n'
        f"    __all__ = {module}.__all__\n"
    ).encode()


class MaturinCargoRecipe:
    """``rewheel.recipes`` entry point ``maturin-cargo``."""

    def build_wheel(self, ctx: RecipeContext) -> Path:
        project = read_project(ctx)
        try:
            pkg_info = (ctx.source_dir / "PKG-INFO").read_bytes()
        except OSError as exc:
            raise _refuse(ctx, f"needs the sdist's PKG-INFO: {exc}") from exc
        meta = check_pkg_info(ctx, pkg_info)
        pyproject = _load_toml(ctx, ctx.source_dir / "pyproject.toml")
        project_table = pyproject.get("project", {})
        dynamic = set(project_table.get("dynamic", []))
        if dynamic & {"scripts", "gui-scripts", "entry-points"}:
            raise _refuse(ctx, "cannot fill in dynamic entry points")
        interp = self._interpreter(ctx)
        try:
            tag = wheel_tag(interp)
        except ValueError as exc:
            raise _refuse(ctx, f"builds for CPython on Linux only: {exc}") from exc

        library = self._cargo_build(ctx, project)
        library_bytes = tree_bytes(ctx.source_dir, library)
        if library_bytes is None:  # a link, or a linked folder on the way: whatever it points at
            raise _refuse(ctx, f"found no plain file {library.name} in the tree after cargo build")
        init_name = "PyInit_" + project.module.rsplit(".", 1)[-1]
        if init_name.encode() not in library_bytes:
            raise _refuse(
                ctx,
                f"found no {init_name} in {library.name}: module-name does not match the "
                "#[pymodule] of the crate",
            )

        parts = project.module.split(".")
        files: dict[str, bytes] = {}
        if project.python_source is not None:
            files.update(
                _package_files(
                    project.python_source / parts[0], project.python_source, ctx.source_dir
                )
            )
            ext = "/".join(parts if len(parts) > 1 else [parts[0], parts[0]])
        else:
            files[f"{parts[0]}/__init__.py"] = _init_for(parts[0])
            stub = tree_bytes(ctx.source_dir, ctx.source_dir / f"{parts[0]}.pyi")
            if stub is not None:
                files[f"{parts[0]}/__init__.pyi"] = stub
                files[f"{parts[0]}/py.typed"] = b""
            ext = f"{parts[0]}/{parts[0]}"
        ext_name = ext + interp.ext_suffix
        files[ext_name] = library_bytes

        dist = canonicalize_name(str(ctx.name)).replace("-", "_")
        dist_info = f"{dist}-{ctx.version}.dist-info"
        info: dict[str, bytes] = {
            "METADATA": pkg_info,
            "WHEEL": (
                "Wheel-Version: 1.0\n"
                f"Generator: rewheel ({__version__})\n"
                "Root-Is-Purelib: false\n"
                f"Tag: {tag}\n"
            ).encode(),
        }
        entry_points = entry_points_text(project_table)
        if entry_points is not None:
            info["entry_points.txt"] = entry_points.encode()
        for licence in meta.get("license_files") or []:
            text = tree_bytes(ctx.source_dir, ctx.source_dir / licence)
            if text is None:
                raise _refuse(ctx, f"finds no License-File {licence} in the sdist")
            info[f"licenses/{licence}"] = text
        files.update((f"{dist_info}/{name}", data) for name, data in info.items())
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        return write_wheel(
            ctx.out_dir / f"{dist}-{ctx.version}-{tag}.whl",
            files,
            executable={ext_name},
            epoch=zip_epoch(ctx.environ),
        )

    def _interpreter(self, ctx: RecipeContext) -> Interpreter:
        # The build environment's python runs the .pth files of the wheels installed there
        # (built from sdists too): in the sandbox, like any build code, isolated (-I: no
        # module of the source tree shadows the probe's), away from the tree, and its answer
        # read only if it is a plain file (not a link, not a FIFO that would hang rewheel).
        tmp = Path(tempfile.mkdtemp(prefix="rewheel-probe-"))
        out = tmp / "interpreter.json"
        try:
            confine = ctx.confine.adding(writable=[tmp]) if ctx.confine else None
            ctx.runner(
                [str(ctx.python), "-I", "-c", _PROBE, str(out)],
                cwd=tmp,
                env=ctx.environ,
                log=ctx.log,
                confine=confine,
            )
            answer = tree_bytes(tmp, out)
            if answer is None or len(answer) > 1 << 20:
                raise ValueError("the probe's answer is not a small plain file")
            return Interpreter.from_probe(json.loads(answer))
        except (CommandFailed, OSError, ValueError, KeyError, TypeError) as exc:
            raise _refuse(ctx, f"could not ask {ctx.python} about itself: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                remove_tree(tmp)

    def _cargo_build(self, ctx: RecipeContext, project: MaturinProject) -> Path:
        env = cargo_environ(ctx)
        cargo = shutil.which("cargo", path=env.get("PATH"))
        if cargo is None:
            raise _refuse(ctx, "needs cargo on PATH")
        target = ctx.source_dir / "target"
        env["CARGO_TARGET_DIR"] = str(target)
        cmd = [
            cargo,
            "build",
            "--release",
            "--offline",
            "--locked",
            "--lib",
            "--manifest-path",
            str(project.manifest),
            *project.cargo_args,
        ]
        # Panic messages name source files: not by the build folder, which differs between runs.
        remap = f"--remap-path-prefix={ctx.source_dir}=/rewheel/{ctx.name}-{ctx.version}"
        if env.get("RUSTFLAGS", "").strip():
            env["RUSTFLAGS"] = f"{env['RUSTFLAGS']} {remap}"  # it would override --config
        else:
            cmd += ["--config", f"build.rustflags = [{json.dumps(remap)}]"]
        try:
            # In the box too: the build environment's PATH comes first, and a wheel of it may
            # have put a `rustc` script there.
            ctx.runner(
                ["rustc", "-vV"],
                cwd=project.manifest.parent,
                env=env,
                log=ctx.log,
                confine=ctx.confine,
            )
            # Build scripts and proc macros are the package's code: in the sandbox.
            ctx.runner(
                cmd,
                cwd=project.manifest.parent,
                env=env,
                log=ctx.log,
                isolate_network=True,
                confine=ctx.confine,
            )
        except CommandFailed as exc:
            raise BuildError(
                f"cargo build failed: {exc.message}",
                package=ctx.name,
                version=str(ctx.version),
                step=STEP,
                log_path=ctx.log,
            ) from exc
        library = target / "release" / f"lib{project.lib_name}.so"
        if not library.is_file():
            raise _refuse(ctx, f"found no {library.name} in {library.parent} after cargo build")
        return library


def cargo_environ(ctx: RecipeContext) -> dict[str, str]:
    """The build environment's variables plus what cargo and pyo3 need.

    CARGO_HOME is a fresh folder of this build (no user configuration, no registry cache);
    rustup's toolchains stay where this process finds them, since the build's HOME has moved.
    """
    env = dict(ctx.environ)
    home = Path(env["HOME"]) if "HOME" in env else ctx.source_dir.parent / "home"
    env["CARGO_HOME"] = str(home / ".cargo")
    rustup_home = os.environ.get("RUSTUP_HOME") or str(Path.home() / ".rustup")
    if "RUSTUP_HOME" not in env and Path(rustup_home).is_dir():
        env["RUSTUP_HOME"] = rustup_home
    env["CARGO_NET_OFFLINE"] = "true"
    env.pop("CARGO_BUILD_TARGET", None)  # the library must land in target/release
    # The interpreter pyo3 builds for, and no link to libpython (the interpreter provides it).
    env["PYO3_PYTHON"] = str(ctx.python)
    env["PYO3_BUILD_EXTENSION_MODULE"] = "1"
    return env


__all__ = ["MaturinCargoRecipe"]
