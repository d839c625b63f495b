"""The maturin-cargo recipe: its wheel layout, tags, metadata and refusals, with a fake cargo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import Upstream, run_bootstrap
from fakes import FakeRunner, RunnerCall
from packaging.utils import canonicalize_name
from packaging.version import Version

from rewheel import app
from rewheel.build.recipe_cargo import (
    Interpreter,
    MaturinCargoRecipe,
    entry_points_text,
    wheel_tag,
)
from rewheel.build.recipes import RecipeContext
from rewheel.core.errors import BuildError
from rewheel.repo.wheelfile import read_metadata_bytes, read_record, record_hash, write_wheel

pytestmark = pytest.mark.skipif(
    not sysconfig.get_platform().startswith("linux-") or sys.implementation.name != "cpython",
    reason="the recipe builds CPython extensions on Linux",
)

EPOCH = 1_700_000_000
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
TAG = "cp{0}{1}-cp{0}{1}-{2}".format(
    *sys.version_info[:2], sysconfig.get_platform().replace("-", "_").replace(".", "_")
)
PKG_INFO = """\
Metadata-Version: 2.4
Name: Demo-Ext
Version: 1.2.0
License-File: LICENSE-MIT
Summary: a demo
Requires-Python: >=3.10

# demo
"""


class FakeCargo(FakeRunner):
    """Runs the interpreter probe for real; ``cargo build`` drops a fake library instead."""

    def __init__(self, library: str = "libdemo_ext.so", *, exports: str = "demo_ext") -> None:
        super().__init__()
        self.library = library
        self.exports = exports

    def respond(self, call: RunnerCall) -> None:
        cmd, env = call.cmd, call.env
        if cmd[0] == sys.executable:
            subprocess.run(cmd, check=True, env=env, cwd=call.cwd)
        elif Path(cmd[0]).name == "cargo":
            release = Path(env["CARGO_TARGET_DIR"]) / "release"
            release.mkdir(parents=True, exist_ok=True)
            (release / self.library).write_bytes(b"\x7fELF fake PyInit_" + self.exports.encode())

    def cargo_call(self) -> RunnerCall:
        [call] = [c for c in self.calls if Path(c.cmd[0]).name == "cargo"]
        return call


def project(
    root: Path,
    *,
    maturin: str = 'python-source = "pysrc"\n',
    pkg_info: str = PKG_INFO,
    python_package: str | None = "demo_ext",
    extra_project: str = "",
) -> Path:
    """An sdist tree laid out like orjson's."""
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        '[project]\nname = "Demo-Ext"\nversion = "1.2.0"\n'
        f"{extra_project}\n"
        '[build-system]\nrequires = ["maturin>=1,<2"]\nbuild-backend = "maturin"\n\n'
        f"[tool.maturin]\n{maturin}"
    )
    (root / "Cargo.toml").write_text(
        '[package]\nname = "demo-ext"\nversion = "1.2.0"\n\n[lib]\ncrate-type = ["cdylib"]\n\n'
        '[dependencies]\npyo3-ffi = { version = "0.29", default-features = false }\n'
    )
    (root / "Cargo.lock").write_text(
        'version = 4\n\n[[package]]\nname = "demo-ext"\nversion = "1.2.0"\n\n'
        '[[package]]\nname = "pyo3-ffi"\nversion = "0.29.3"\n'
        'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
    )
    (root / "PKG-INFO").write_text(pkg_info)
    (root / "LICENSE-MIT").write_text("MIT licence text\n")
    if python_package is not None:
        pkg = root / "pysrc" / python_package
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"from .{python_package} import *\n")
        (pkg / "__init__.pyi").write_text("def dumps(obj: object) -> bytes: ...\n")
        (pkg / "py.typed").write_text("")
        (pkg / "__pycache__").mkdir()
        (pkg / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"stale")
    return root


def context(tmp_path: Path, source: Path, runner: FakeCargo, **changes: object) -> RecipeContext:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    cargo = bin_dir / "cargo"
    cargo.write_text("#!/bin/sh\nexit 1\n")
    cargo.chmod(0o755)
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path / "work" / "home"),
        "SOURCE_DATE_EPOCH": str(EPOCH),
        "CARGO_BUILD_TARGET": "aarch64-unknown-linux-gnu",
    }
    values: dict[str, object] = {
        "name": canonicalize_name("Demo-Ext"),
        "version": Version("1.2.0"),
        "source_dir": source,
        "out_dir": tmp_path / "work" / "dist",
        "python": Path(sys.executable),
        "environ": environ,
        "runner": runner,
        "log": tmp_path / "build.log",
        "config_settings": {},
        **changes,
    }
    return RecipeContext(**values)  # type: ignore[arg-type]


def members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_mixed_layout_wheel(tmp_path: Path) -> None:
    source = project(tmp_path / "src", maturin='python-source = "pysrc"\nfeatures = ["fast"]\n')
    cargo = FakeCargo()
    wheel = MaturinCargoRecipe().build_wheel(context(tmp_path, source, cargo))

    assert wheel == tmp_path / "work" / "dist" / f"demo_ext-1.2.0-{TAG}.whl"
    info = "demo_ext-1.2.0.dist-info"
    assert members(wheel) == [
        "demo_ext/__init__.py",
        "demo_ext/__init__.pyi",
        f"demo_ext/demo_ext{SUFFIX}",
        "demo_ext/py.typed",
        f"{info}/METADATA",
        f"{info}/WHEEL",
        f"{info}/licenses/LICENSE-MIT",
        f"{info}/RECORD",
    ]
    assert read_metadata_bytes(wheel) == PKG_INFO.encode()
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(f"{info}/WHEEL").decode().splitlines() == [
            "Wheel-Version: 1.0",
            "Generator: rewheel (0.1.0)",
            "Root-Is-Purelib: false",
            f"Tag: {TAG}",
        ]
        assert zf.read(f"{info}/licenses/LICENSE-MIT") == b"MIT licence text\n"
        for entry in read_record(wheel):
            if entry.path.endswith("RECORD"):
                assert entry.hash is None
                continue
            data = zf.read(entry.path)
            assert (entry.hash, entry.size) == (record_hash(data), len(data))
        assert len(read_record(wheel)) == len(zf.namelist())
        times = {i.date_time for i in zf.infolist()}
        ext = zf.getinfo(f"demo_ext/demo_ext{SUFFIX}")
        assert (ext.external_attr >> 16) & 0o777 == 0o755
    assert times == {(2023, 11, 14, 22, 13, 20)}  # SOURCE_DATE_EPOCH, in UTC

    call = cargo.cargo_call()
    cmd, cwd, env, isolated = call.cmd, call.cwd, call.env, call.isolate_network
    assert cmd[1:7] == ["build", "--release", "--offline", "--locked", "--lib", "--manifest-path"]
    assert cmd[7] == str(source / "Cargo.toml") and cmd[8:10] == ["--features", "fast"]
    assert cmd[10] == "--config" and "--remap-path-prefix=" in cmd[11]
    assert cwd == source and isolated
    assert env["CARGO_HOME"] == str(tmp_path / "work" / "home" / ".cargo")
    assert env["CARGO_NET_OFFLINE"] == "true" and "CARGO_BUILD_TARGET" not in env
    assert env["PYO3_PYTHON"] == sys.executable and env["PYO3_BUILD_EXTENSION_MODULE"] == "1"


def test_the_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    source = project(tmp_path / "src")
    first = MaturinCargoRecipe().build_wheel(context(tmp_path, source, FakeCargo())).read_bytes()
    again = MaturinCargoRecipe().build_wheel(context(tmp_path, source, FakeCargo())).read_bytes()
    assert first == again


def test_pure_rust_layout_gets_a_package(tmp_path: Path) -> None:
    source = project(tmp_path / "src", maturin="", python_package=None)
    (source / "demo_ext.pyi").write_text("def f() -> int: ...\n")
    wheel = MaturinCargoRecipe().build_wheel(context(tmp_path, source, FakeCargo()))
    names = members(wheel)
    assert names[:4] == [
        "demo_ext/__init__.py",
        "demo_ext/__init__.pyi",
        f"demo_ext/demo_ext{SUFFIX}",
        "demo_ext/py.typed",
    ]
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("demo_ext/__init__.py").startswith(b"from .demo_ext import *\n")


def test_dotted_module_name_goes_inside_the_package(tmp_path: Path) -> None:
    source = project(
        tmp_path / "src",
        maturin='python-source = "pysrc"\nmodule-name = "demo_ext._native"\n',
    )
    wheel = MaturinCargoRecipe().build_wheel(
        context(tmp_path, source, FakeCargo(exports="_native"))
    )
    assert f"demo_ext/_native{SUFFIX}" in members(wheel)


def test_entry_points_from_pyproject(tmp_path: Path) -> None:
    source = project(tmp_path / "src", extra_project='scripts = { demo = "demo_ext:main" }\n')
    wheel = MaturinCargoRecipe().build_wheel(context(tmp_path, source, FakeCargo()))
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read("demo_ext-1.2.0.dist-info/entry_points.txt").decode()
    assert text == "[console_scripts]\ndemo = demo_ext:main\n"
    assert entry_points_text({"entry-points": {"g": {"b": "m:b", "a": "m:a"}}}) == (
        "[g]\na = m:a\nb = m:b\n"
    )


@pytest.mark.parametrize(
    ("maturin", "pkg_info", "message"),
    [
        ('python-source = "pysrc"\ndata = "d"\n', PKG_INFO, "does not implement.*data"),
        ('bindings = "cffi"\n', PKG_INFO, "not 'cffi' bindings"),
        ('include = ["x"]\n', PKG_INFO, "include only for the sdist format"),
        ('features = ["pyo3-ffi/abi3-py38"]\n', PKG_INFO, "not abi3"),
        ('python-source = "elsewhere"\n', PKG_INFO, "finds no package demo_ext"),
        (
            "",
            PKG_INFO.replace("Summary", "Dynamic: Requires-Dist\nSummary"),
            "dynamic fields: Requires-Dist",
        ),
        ("", PKG_INFO.replace("1.2.0", "9.9"), "not of demo-ext 1.2.0"),
        ("", PKG_INFO.replace("Metadata-Version: 2.4", "Metadata-Version: 1.0"), "1.0"),
        ("", PKG_INFO.replace("LICENSE-MIT", "LICENSE-GONE"), "no License-File LICENSE-GONE"),
    ],
)
def test_refusals(tmp_path: Path, maturin: str, pkg_info: str, message: str) -> None:
    source = project(tmp_path / "src", maturin=maturin, pkg_info=pkg_info)
    with pytest.raises(BuildError, match=message) as info:
        MaturinCargoRecipe().build_wheel(context(tmp_path, source, FakeCargo()))
    assert info.value.step == "recipe-maturin-cargo" and info.value.package == "demo-ext"


def test_a_library_without_the_module_init_is_refused(tmp_path: Path) -> None:
    source = project(tmp_path / "src")
    with pytest.raises(BuildError, match="no PyInit_demo_ext"):
        MaturinCargoRecipe().build_wheel(context(tmp_path, source, FakeCargo(exports="other")))


def test_config_settings_are_refused(tmp_path: Path) -> None:
    source = project(tmp_path / "src")
    ctx = context(tmp_path, source, FakeCargo(), config_settings={"build-args": "--x"})
    with pytest.raises(BuildError, match="takes no config_settings"):
        MaturinCargoRecipe().build_wheel(ctx)


def test_wheel_tag() -> None:
    interp = Interpreter("cpython", (3, 11), ".so", "cpython-311-x86_64-linux-gnu", "linux-x86_64")
    assert str(wheel_tag(interp)) == "cp311-cp311-linux_x86_64"
    threaded = Interpreter(
        "cpython", (3, 13), ".so", "cpython-313t-aarch64-linux-gnu", "linux-aarch64"
    )
    assert str(wheel_tag(threaded)) == "cp313-cp313t-linux_aarch64"
    with pytest.raises(ValueError, match="not CPython"):
        wheel_tag(Interpreter("pypy", (3, 10), ".so", "pypy310-pp73", "linux-x86_64"))
    with pytest.raises(ValueError, match="not Linux"):
        wheel_tag(Interpreter("cpython", (3, 11), ".so", "cpython-311-darwin", "macosx-11.0-arm64"))


# -- in a bootstrap: a recipe replaces the backend's hooks -----------------------------------


class TinyRecipe:
    """Writes a one-module wheel: stands in for a real recipe in a bootstrap."""

    def build_wheel(self, ctx: RecipeContext) -> Path:
        dist = ctx.name.replace("-", "_")
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        meta = f"Metadata-Version: 2.1\nName: {ctx.name}\nVersion: {ctx.version}\n"
        dist_info = f"{dist}-{ctx.version}.dist-info"
        return write_wheel(
            ctx.out_dir / f"{dist}-{ctx.version}-py3-none-any.whl",
            {
                f"{dist}.py": json.dumps(sorted(ctx.environ)).encode(),
                f"{dist_info}/METADATA": meta.encode(),
                f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                b"Tag: py3-none-any\n",
            },
        )


def test_a_recipe_build_asks_the_backend_for_nothing(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backend would ask for a project that does not exist: only a skipped hook succeeds.
    upstream.sdist("withrecipe", "1.0", dynamic_requires=["does-not-exist"])
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "withrecipe.toml").write_text('[build]\nrecipe = "tiny"\n')
    result = run_bootstrap(
        upstream,
        tmp_path / "repo",
        ["withrecipe"],
        settings_dir=settings,
        machine=app.Machine(recipes=lambda _name: TinyRecipe()),
    )
    assert not result.failures
    [wheel] = (tmp_path / "repo" / "wheels").glob("withrecipe-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert "CARGO_NET_OFFLINE" in json.loads(zf.read("withrecipe.py"))
    record = json.loads((tmp_path / "repo" / "records" / "withrecipe-1.0.json").read_text())
    assert record["backend_requires"] == [] and record["rust"] is None
