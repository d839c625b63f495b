"""The synthetic sdists drive their in-tree backend through real PEP 517 hook calls."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import uv
from packaging.requirements import Requirement
from pyproject_hooks import BuildBackendHookCaller
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel.repo.wheelfile import (
    parse_metadata,
    parse_wheel_info,
    read_metadata_bytes,
    read_record,
)

FULL = SdistSpec(
    name="Foo.Bar_baz",
    version="1.0",
    build_requires=["packaging>=20"],
    dynamic_requires=["pyproject-hooks"],
    install_requires=["attrs>=22", 'tomli; python_version < "3.11"'],
    extras={"fast": ["ujson"], "docs": ['sphinx>=7; python_version >= "3.9"']},
    requires_python=">=3.8",
)


def _runner(
    cmd: Sequence[str], cwd: str | None = None, extra_environ: Mapping[str, str] | None = None
) -> None:
    # Marker variables prove that _build_info.json records PIP_*/UV_* names.
    env = {**os.environ, **(extra_environ or {}), "PIP_TINYTEST": "1", "UV_TINYTEST": "1"}
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)


def _unpack(sdist: Path, dest: Path) -> Path:
    if sdist.name.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(sdist) as tf:
            tf.extractall(dest, filter="data")
    (top,) = dest.iterdir()
    return top


def _hooks(source: Path) -> BuildBackendHookCaller:
    build_system = tomllib.loads((source / "pyproject.toml").read_text())["build-system"]
    return BuildBackendHookCaller(
        str(source),
        build_system["build-backend"],
        backend_path=build_system["backend-path"],
        runner=_runner,
    )


def _build(spec: SdistSpec, tmp: Path) -> Path:
    source = _unpack(make_sdist(spec, tmp / "sdist"), tmp / "src")
    out = tmp / "wheels"
    out.mkdir()
    return out / _hooks(source).build_wheel(str(out))


def _assert_record_verifies(wheel: Path) -> None:
    entries = read_record(wheel)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert sorted(e.path for e in entries) == sorted(names)
        for entry in entries:
            if entry.path.endswith("/RECORD"):
                assert entry.hash is None and entry.size is None
                continue
            data = zf.read(entry.path)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert entry.hash == "sha256=" + digest.decode()
            assert entry.size == len(data)
    assert names[-1].endswith(".dist-info/RECORD")


def _member(tf: tarfile.TarFile, name: str) -> bytes:
    f = tf.extractfile(name)
    assert f is not None
    return f.read()


def _build_info(wheel: Path, import_name: str) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as zf:
        info: dict[str, Any] = json.loads(zf.read(f"{import_name}/_build_info.json"))
    return info


def test_sdist_layout_and_static_pkg_info(tmp_path: Path) -> None:
    sdist = make_sdist(FULL, tmp_path)
    assert sdist.name == "foo_bar_baz-1.0.tar.gz"
    with tarfile.open(sdist) as tf:
        names = set(tf.getnames())
        pyproject = tomllib.loads(_member(tf, "foo_bar_baz-1.0/pyproject.toml").decode())
        pkg_info = parse_metadata(_member(tf, "foo_bar_baz-1.0/PKG-INFO"))
    assert {
        "foo_bar_baz-1.0/PKG-INFO",
        "foo_bar_baz-1.0/_backend/tinybackend.py",
        "foo_bar_baz-1.0/_backend/spec.json",
        "foo_bar_baz-1.0/foo_bar_baz/__init__.py",
    } <= names
    assert pyproject["build-system"] == {
        "requires": ["packaging>=20"],
        "build-backend": "tinybackend",
        "backend-path": ["_backend"],
    }
    assert pkg_info["metadata_version"] == "2.2"
    assert pkg_info["name"] == "Foo.Bar_baz"
    assert pkg_info["requires_python"] == ">=3.8"
    assert "dynamic" not in pkg_info
    assert len(pkg_info["requires_dist"]) == 4
    assert sorted(pkg_info["provides_extra"]) == ["docs", "fast"]


def test_dynamic_pkg_info_lists_no_requirements(tmp_path: Path) -> None:
    spec = SdistSpec("dyn", "2.0", install_requires=["attrs"], static_metadata=False)
    with tarfile.open(make_sdist(spec, tmp_path)) as tf:
        pkg_info = parse_metadata(_member(tf, "dyn-2.0/PKG-INFO"))
    assert "requires_dist" not in pkg_info
    assert "Requires-Dist" in pkg_info["dynamic"]


def test_get_requires_returns_dynamic_requires(tmp_path: Path) -> None:
    source = _unpack(make_sdist(FULL, tmp_path), tmp_path / "src")
    assert _hooks(source).get_requires_for_build_wheel() == ["pyproject-hooks"]


def test_build_wheel_metadata_record_and_build_info(tmp_path: Path) -> None:
    wheel = _build(FULL, tmp_path)
    assert wheel.name == "foo_bar_baz-1.0-py3-none-any.whl"
    meta = parse_metadata(read_metadata_bytes(wheel))
    assert meta["name"] == "Foo.Bar_baz"
    assert meta["version"] == "1.0"
    assert meta["requires_python"] == ">=3.8"
    assert sorted(meta["provides_extra"]) == ["docs", "fast"]
    reqs = {Requirement(r).name: Requirement(r) for r in meta["requires_dist"]}
    assert set(reqs) == {"attrs", "tomli", "ujson", "sphinx"}
    assert reqs["attrs"].marker is None
    assert reqs["ujson"].marker is not None
    assert reqs["ujson"].marker.evaluate({"extra": "fast"})
    assert not reqs["ujson"].marker.evaluate({"extra": "docs"})
    assert reqs["sphinx"].marker is not None
    assert reqs["sphinx"].marker.evaluate({"extra": "docs"})
    assert not reqs["sphinx"].marker.evaluate({"extra": "docs", "python_version": "3.8"})
    _assert_record_verifies(wheel)
    with zipfile.ZipFile(wheel) as zf:
        wheel_info = parse_wheel_info(zf.read("foo_bar_baz-1.0.dist-info/WHEEL"))
        assert b'__version__ = "1.0"' in zf.read("foo_bar_baz/__init__.py")
    assert wheel_info.root_is_purelib
    assert wheel_info.tags == ("py3-none-any",)

    info = _build_info(wheel, "foo_bar_baz")
    assert info["requirements"] == {
        "packaging>=20": importlib.metadata.version("packaging"),
        "pyproject-hooks": importlib.metadata.version("pyproject-hooks"),
    }
    assert {"PIP_TINYTEST", "UV_TINYTEST"} <= set(info["env"])
    assert info["env"] == sorted(info["env"])
    assert info["sys_prefix"] == sys.prefix
    assert isinstance(info["pip_importable"], bool)
    assert isinstance(info["setuptools_importable"], bool)


def test_prepare_metadata_matches_wheel(tmp_path: Path) -> None:
    source = _unpack(make_sdist(FULL, tmp_path), tmp_path / "src")
    meta_dir = tmp_path / "meta"
    meta_dir.mkdir()
    dist_info = _hooks(source).prepare_metadata_for_build_wheel(str(meta_dir))
    assert dist_info == "foo_bar_baz-1.0.dist-info"
    wheel = make_wheel(FULL, tmp_path / "w")
    assert (meta_dir / dist_info / "METADATA").read_bytes() == read_metadata_bytes(wheel)


def test_missing_build_requirement_fails_loudly(tmp_path: Path) -> None:
    spec = SdistSpec("needy", "1.0", build_requires=["surely-not-installed-xyz>=1"])
    with pytest.raises(subprocess.CalledProcessError) as info:
        _build(spec, tmp_path)
    assert "not installed in the build environment" in info.value.stderr
    assert "surely-not-installed-xyz>=1" in info.value.stderr


def test_fail_build_raises(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        _build(SdistSpec("broken", "0.1", fail_build=True), tmp_path)
    assert "fails on purpose" in info.value.stderr
    assert not list((tmp_path / "wheels").iterdir())


def test_zip_sdist_builds(tmp_path: Path) -> None:
    spec = SdistSpec("Zipped", "3.0.0", install_requires=["attrs"], sdist_format="zip")
    sdist = make_sdist(spec, tmp_path / "sdist")
    assert sdist.name == "zipped-3.0.0.zip"
    wheel = _build(spec, tmp_path)
    assert wheel.name == "zipped-3.0.0-py3-none-any.whl"
    assert parse_metadata(read_metadata_bytes(wheel))["requires_dist"] == ["attrs"]
    _assert_record_verifies(wheel)


def test_builds_and_sdists_are_byte_identical(tmp_path: Path) -> None:
    assert (
        make_sdist(FULL, tmp_path / "s1").read_bytes()
        == make_sdist(FULL, tmp_path / "s2").read_bytes()
    )
    # Built in the same folder (the build info names it), as in a rewheel build box.
    first = _build(FULL, tmp_path / "b").read_bytes()
    shutil.rmtree(tmp_path / "b")
    assert _build(FULL, tmp_path / "b").read_bytes() == first


def test_make_wheel_is_valid_and_installable(tmp_path: Path) -> None:
    wheel = make_wheel(FULL, tmp_path / "w")
    assert wheel.name == "foo_bar_baz-1.0-py3-none-any.whl"
    assert wheel.read_bytes() == make_wheel(FULL, tmp_path / "w2").read_bytes()
    _assert_record_verifies(wheel)
    with zipfile.ZipFile(wheel) as zf:
        assert "foo_bar_baz/_build_info.json" not in zf.namelist()
    target = tmp_path / "target"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    subprocess.run(
        [
            uv.find_uv_bin(),
            *("pip", "install", "--no-config", "--offline", "--no-index", "--no-deps"),
            *("--python", sys.executable, "--target", str(target), str(wheel)),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    dists = list(importlib.metadata.distributions(path=[str(target)]))
    assert [(d.metadata["Name"], d.version) for d in dists] == [("Foo.Bar_baz", "1.0")]
    assert '__version__ = "1.0"' in (target / "foo_bar_baz" / "__init__.py").read_text()


def test_legacy_sdist_runs_under_setuptools(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    spec = SdistSpec("Old-Style", "0.5", dynamic_requires=["packaging"], legacy=True)
    source = _unpack(make_sdist(spec, tmp_path), tmp_path / "src")
    assert source.name == "old_style-0.5"
    assert not (source / "pyproject.toml").exists()
    assert (source / "setup.py").is_file()
    hooks = BuildBackendHookCaller(str(source), "setuptools.build_meta:__legacy__", runner=_runner)
    # setup_requires is how a legacy project declares what get_requires_for_build_wheel returns.
    assert "packaging" in hooks.get_requires_for_build_wheel()


def test_invalid_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_sdist(SdistSpec("x", "1", legacy=True, build_requires=["setuptools"]), tmp_path)
    with pytest.raises(ValueError):
        make_sdist(SdistSpec("x", "1", sdist_format="rar"), tmp_path)
