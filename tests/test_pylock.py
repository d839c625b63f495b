"""`rewheel lock --format pylock`: a PEP 751 pylock.toml of the repository's wheels (by URL where
the repository is served, or by path), with their kept sdists, which uv installs."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uv
from click.testing import CliRunner
from conftest import Upstream, run_bootstrap
from packaging.markers import Marker
from packaging.pylock import PackageWheel, Pylock
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_wheel

from rewheel.cli import cli
from rewheel.core.errors import ConfigError, IntegrityError
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.pylock import (
    LockedFile,
    LockedPackage,
    propagate_markers,
    pylock_document,
    pylock_text,
)

# PEP 751's keys: what a lock may hold at each level (anything else is a spec violation).
TOP_KEYS = {
    "lock-version",
    "environments",
    "requires-python",
    "extras",
    "dependency-groups",
    "default-groups",
    "created-by",
    "packages",
    "tool",
}
PACKAGE_KEYS = {
    "name",
    "version",
    "marker",
    "requires-python",
    "dependencies",
    "vcs",
    "directory",
    "archive",
    "index",
    "sdist",
    "wheels",
    "attestation-identities",
    "tool",
}
FILE_KEYS = {"name", "upload-time", "url", "path", "size", "hashes"}
ENVIRONMENT = {"python_version": "3.11", "sys_platform": "linux", "extra": ""}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """App needs lib-b always and lib-c only where python_version >= '3' (true here); lib-c
    needs lib-d; lib-e is excluded by its marker; tool-a is a build tool; other is unneeded."""
    base = tmp_path_factory.mktemp("pylock")
    files = base / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool-a", "1.0")
        up.sdist("lib-b", "1.0", build_requires=["tool-a"], requires_python=">=3.8")
        up.sdist("lib-d", "1.0")
        up.sdist("lib-c", "1.0", install_requires=["lib-d"])
        up.sdist("lib-e", "1.0")
        up.sdist(
            "App",
            "1.0",
            build_requires=["tool-a"],
            install_requires=[
                "lib-b>=1",
                "lib-c; python_version >= '3'",
                "lib-e; sys_platform == 'no-such-platform'",
            ],
        )
        up.sdist("other", "2.0")
        repo = base / "repo"
        result = run_bootstrap(up, repo, ["app", "other", "lib-e"])
        assert result.ok, result.failures
        yield repo


def _lock(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["lock", "--repo", str(repo), *args])


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_pylock(doc: dict[str, Any], lock_dir: Path | None = None) -> None:
    """The rules of PEP 751 this writer must keep, checked on a parsed file: by packaging's own
    reader (``packaging.pylock``), which refuses what the specification does not allow, then the
    rules it leaves to writers."""
    lock = Pylock.from_dict(doc)
    # What an installer reading it here picks: each package's wheel, never its sdist.
    for package, chosen in lock.select():
        assert isinstance(chosen, PackageWheel), (package.name, chosen)
    assert set(doc) <= TOP_KEYS
    assert doc["lock-version"] == "1.0"
    assert doc["created-by"] == "rewheel"
    SpecifierSet(doc["requires-python"])
    for marker in doc.get("environments", []):
        Marker(marker)
    names = [p["name"] for p in doc["packages"]]
    assert names == sorted(names)
    for package in doc["packages"]:
        assert set(package) <= PACKAGE_KEYS
        assert package["name"] == canonicalize_name(package["name"])
        assert "marker" not in package or "extra" not in package["marker"]
        if "marker" in package:
            Marker(package["marker"])
        if "requires-python" in package:
            SpecifierSet(package["requires-python"])
        for dep in package.get("dependencies", []):
            assert dep["name"] in names
        assert package["wheels"], package  # a repository's release always has its wheel
        files = [*package["wheels"], *([package["sdist"]] if "sdist" in package else [])]
        for file in files:
            assert set(file) <= FILE_KEYS
            assert "url" in file or "path" in file
            assert isinstance(file["size"], int) and file["size"] > 0
            assert re.fullmatch(r"[0-9a-f]{64}", file["hashes"]["sha256"])
            where = file.get("path") or file["url"]
            assert where.rsplit("/", 1)[-1] == file["name"]
            if "path" in file and lock_dir is not None:
                on_disk = (lock_dir / file["path"]).resolve()
                assert on_disk.stat().st_size == file["size"]
                assert _file_sha(on_disk) == file["hashes"]["sha256"]
        for wheel in package["wheels"]:
            name, version, _, _ = parse_wheel_filename(wheel["name"])
            assert (name, str(version)) == (package["name"], package["version"])
        if "sdist" in package:
            name, version = parse_sdist_filename(package["sdist"]["name"])
            assert (name, str(version)) == (package["name"], package["version"])


def test_the_pylock_holds_the_closure_s_wheels_and_kept_sdists_by_path(
    built: Path, tmp_path: Path
) -> None:
    out = tmp_path / "locks" / "pylock.toml"
    out.parent.mkdir()
    result = _lock(built, "app", "-o", str(out))  # the name selects the format
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("# rewheel lock of app\n")
    doc = tomllib.loads(text)
    check_pylock(doc, out.parent)
    packages = {p["name"]: p for p in doc["packages"]}
    # Not tool-a (a build tool), other (not needed) nor lib-e (its marker is false here).
    assert sorted(packages) == ["app", "lib-b", "lib-c", "lib-d"]
    repo = Repository(built)
    for name, package in packages.items():
        (ref,) = repo.find_wheels(name, "1.0")
        (wheel,) = package["wheels"]
        assert wheel["hashes"]["sha256"] == ref.sha256
        # Relative to the lock file's folder.
        assert (out.parent / wheel["path"]).resolve() == (built / "wheels" / ref.filename).resolve()
        assert not wheel["path"].startswith("/")
        kept = repo.kept_sdist(name, "1.0")
        assert kept is not None
        assert package["sdist"]["hashes"]["sha256"] == kept.sha256
        assert package["sdist"]["size"] == kept.size
        assert "index" not in package  # no URL: by path
    # Markers where the tree has them, carried down the chain of requirements.
    assert "marker" not in packages["app"] and "marker" not in packages["lib-b"]
    assert packages["lib-c"]["marker"] == 'python_version >= "3"'
    assert packages["lib-d"]["marker"] == 'python_version >= "3"'
    assert packages["lib-b"]["requires-python"] == ">=3.8"
    assert packages["app"]["dependencies"] == [{"name": "lib-b"}, {"name": "lib-c"}]
    assert doc["requires-python"] == f"=={sys.version_info[0]}.{sys.version_info[1]}.*"
    (environment,) = doc["environments"]
    assert Marker(environment).evaluate()


def test_the_pylock_points_at_the_served_repository(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "pylock.web.toml"
    args = ["app", "--format", "pylock", "--base-url", "http://repo.example:8080/simple/"]
    result = _lock(built, *args, "-o", str(out))
    assert result.exit_code == 0, result.output
    doc = tomllib.loads(out.read_text())
    check_pylock(doc)
    (app_entry,) = [p for p in doc["packages"] if p["name"] == "app"]
    assert app_entry["index"] == "http://repo.example:8080/simple/"
    assert app_entry["wheels"][0]["url"] == (
        "http://repo.example:8080/wheels/app-1.0-py3-none-any.whl"
    )
    assert app_entry["sdist"]["url"] == "http://repo.example:8080/sdists/app-1.0.tar.gz"
    assert all("path" not in w for p in doc["packages"] for w in p["wheels"])


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _uv_install(lock: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # --no-build: the wheels must be what is installed, never the sdists listed beside them.
    cmd = [uv.find_uv_bin(), "pip", "install", "--no-config", "--no-cache", "--no-build"]
    cmd += ["--python", str(venv / "bin" / "python"), "-r", str(lock)]
    return subprocess.run(
        cmd, env=_clean_env(), cwd=venv.parent, capture_output=True, text=True, timeout=120
    )


def _installed(venv: Path) -> list[str]:
    site = next(venv.glob("lib/python*/site-packages"))
    return sorted(p.name for p in site.glob("*.dist-info"))


EXPECTED = [
    "app-1.0.dist-info",
    "lib_b-1.0.dist-info",
    "lib_c-1.0.dist-info",
    "lib_d-1.0.dist-info",
]


def test_uv_installs_the_pylock_by_path(built: Path, tmp_path: Path) -> None:
    out = tmp_path / "pylock.toml"
    assert _lock(built, "app", "-o", str(out)).exit_code == 0
    proc = _uv_install(out, tmp_path / "venv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _installed(tmp_path / "venv") == EXPECTED


def test_uv_installs_the_pylock_from_the_served_repository_and_checks_its_hashes(
    built: Path, tmp_path: Path
) -> None:
    requested: list[str] = []
    with IndexServer(Repository(built), log=requested.append) as srv:
        out = tmp_path / "pylock.toml"
        result = _lock(built, "app", "-o", str(out), "--base-url", srv.url)
        assert result.exit_code == 0, result.output
        proc = _uv_install(out, tmp_path / "venv")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _installed(tmp_path / "venv") == EXPECTED
        assert any("GET /wheels/app-1.0-" in line for line in requested)
        # The lock's hash is what uv checks: one changed, and uv refuses the wheel.
        (wheel,) = (built / "wheels").glob("lib_d-*.whl")
        tampered = tmp_path / "pylock.tampered.toml"
        tampered.write_text(out.read_text().replace(_file_sha(wheel), "0" * 64))
        proc = _uv_install(tampered, tmp_path / "venv2")
        assert proc.returncode != 0
        assert "hash mismatch" in (proc.stdout + proc.stderr).lower(), proc.stderr


def test_a_broken_chain_writes_no_pylock(built: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(built, repo)
    (wheel,) = (repo / "wheels").glob("lib_c-*.whl")
    shutil.copy(make_wheel(SdistSpec("lib-c", "1.0"), tmp_path / "other"), wheel)
    (repo / "wheels" / f"{wheel.name}.metadata").unlink()
    Repository(repo).regenerate_index()
    out = tmp_path / "pylock.toml"
    result = _lock(repo, "app", "-o", str(out))
    assert isinstance(result.exception, IntegrityError), result.output
    assert "chain of custody is broken" in str(result.exception)
    assert not out.exists()


def test_a_name_pep_751_does_not_allow_is_refused(built: Path, tmp_path: Path) -> None:
    for name in ("lock.toml", "pylock.a.b.toml", "PYLOCK.toml", "pylock..toml"):
        result = _lock(built, "app", "--format", "pylock", "-o", str(tmp_path / name))
        assert isinstance(result.exception, ConfigError), (name, result.output)
        assert "pylock.NAME.toml" in str(result.exception.hint)
        assert not (tmp_path / name).exists()
    result = _lock(built, "app", "--format", "requirements", "-o", str(tmp_path / "pylock.toml"))
    assert result.exit_code == 2 and "use --format pylock" in result.output
    assert not (tmp_path / "pylock.toml").exists()
    result = _lock(built, "app", "--base-url", "http://x/")  # not a pylock
    assert result.exit_code == 2 and "--base-url applies to --format pylock" in result.output
    result = _lock(built, "app", "--format", "pylock", "--base-url", "file:///etc")
    assert isinstance(result.exception, ConfigError)


def test_markers_are_joined_along_chains_and_extras_are_decided() -> None:
    requires = {
        canonicalize_name(n): [Requirement(r) for r in reqs]
        for n, reqs in {
            "root": ["a; sys_platform == 'linux'", "b[fast]", "c; python_version >= '3.8'"],
            "a": ["d"],
            "b": ["d; python_version >= '3'", "e; extra == 'fast'", "f; extra == 'slow'"],
            "c": ["d", "c"],  # a self-loop
            "d": ["a"],  # a cycle back
            "e": [],
            "f": [],
            "g": [],  # chosen, reached by nothing
        }.items()
    }
    markers, deps = propagate_markers([Requirement("root")], requires, ENVIRONMENT)
    assert markers["root"] is None and markers["b"] is None
    assert markers["c"] == 'python_version >= "3.8"'
    # a: from the root on linux, or through d (from b where python >= 3, from c where >= 3.8);
    # d the same, through the cycle. A marker is as wide as all the chains together.
    either = 'python_version >= "3" or python_version >= "3.8" or sys_platform == "linux"'
    assert markers["a"] == markers["d"] == either
    assert markers["e"] is None  # asked for by the extra the root chose: no extra marker
    assert markers["g"] is None  # chosen by the resolution, reached by no chain: no marker
    assert deps["b"] == ("d", "e")  # not f: its extra was not asked for
    assert deps["c"] == ("d",)  # not itself
    assert all("extra" not in m for m in markers.values() if m)


def test_a_chain_of_many_markers_is_widened_never_narrowed() -> None:
    names = [f"p{i}" for i in range(12)]
    requires = {
        canonicalize_name(n): [Requirement(f"{names[i + 1]}; python_version >= '3.{i}'")]
        if i + 1 < len(names)
        else []
        for i, n in enumerate(names)
    }
    markers, _ = propagate_markers([Requirement("p0")], requires, ENVIRONMENT)
    assert markers["p3"] == (
        'python_version >= "3.0" and python_version >= "3.1" and python_version >= "3.2"'
    )
    # More than MAX_TERMS terms: the marker is dropped (p7 is installed everywhere), never made
    # narrower than the chain's; below p7 the chain's own terms come back.
    assert markers["p6"] is not None and markers["p7"] is None
    assert markers["p11"] == (
        'python_version >= "3.10" and python_version >= "3.7" and python_version >= "3.8"'
        ' and python_version >= "3.9"'
    )


def test_hostile_text_in_metadata_stays_data_in_the_toml() -> None:
    nasty = "x\"\n[tool.evil]\nrun = 'rm -rf /'\\"
    # A marker whose quoted value holds a terminal escape or a bidi override: left out (the
    # package is installed wherever its chain's other markers hold), never written.
    for hidden in ("\x1b[2J", "\u202e"):
        requires = {
            canonicalize_name("root"): [Requirement(f"a; platform_release != 'x{hidden}'")],
            canonicalize_name("a"): [],
        }
        markers, _ = propagate_markers([Requirement("root")], requires, ENVIRONMENT)
        assert markers == {"root": None, "a": None}
    package = LockedPackage(
        name=canonicalize_name("a"),
        version="1.0",
        wheels=(LockedFile("a-1.0-py3-none-any.whl", "url", "http://h/" + nasty, 1, "0" * 64),),
        sdist=None,
        requires_python=nasty,  # not a specifier: left out, not written
        dependencies=(),
        marker="platform_release == '\"]'",
    )
    environment = {**ENVIRONMENT, "implementation_name": "cpython", "platform_machine": "x86_64"}
    doc = pylock_document([package], environment=environment, index_url=None)
    text = pylock_text(doc, header=["line\n[tool.evil]"])
    parsed = tomllib.loads(text)
    assert "tool" not in parsed
    (entry,) = parsed["packages"]
    assert entry["wheels"][0]["url"] == "http://h/" + nasty
    assert entry["marker"] == "platform_release == '\"]'"
    assert "requires-python" not in entry
    assert Pylock.from_dict(parsed) == doc
