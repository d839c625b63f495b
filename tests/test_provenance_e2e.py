"""Provenance that tells the whole truth, end to end: every setting applied to a build, how it ran,
the compilers it could run, the system libraries its wheel links, and ``verify`` noticing when
this machine's libraries are not the ones the wheel was built against.

Every statement these tests make rewheel write is also checked against the JSON Schema
(conftest's ``_provenance_matches_schema``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import Upstream, run_bootstrap
from packaging.version import Version
from support.elf import make_elf

from rewheel import app
from rewheel.build.conditions import hook_runner
from rewheel.build.linkage import SystemLibraries
from rewheel.build.settings import Settings
from rewheel.repo.repository import Repository
from rewheel.trust.verify import linked_library_findings, verify_venv


def _statement(repo: Path, name: str) -> dict[str, Any]:
    (ref,) = Repository(repo).find_wheels(name, "1.0")
    path = repo / "wheels" / (ref.filename + ".provenance.json")
    statement: dict[str, Any] = json.loads(path.read_text())
    return statement


def _init_patch(sdist: Path, package: str, line: str) -> str:
    """A -p1 unified diff that appends ``line`` to ``<package>/__init__.py`` of ``sdist``."""
    with tarfile.open(sdist) as tf:
        (member,) = [m for m in tf.getmembers() if m.name.endswith(f"/{package}/__init__.py")]
        f = tf.extractfile(member)
        assert f is not None
        old = f.read().decode()
    return "".join(
        difflib.unified_diff(
            old.splitlines(True),
            (old + line + "\n").splitlines(True),
            f"a/{package}/__init__.py",
            f"b/{package}/__init__.py",
        )
    )


def test_every_setting_applied_to_a_build_is_in_its_provenance(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("tool-b", "1.0")
    # The settings add tool-b and drop tool-x (which it does not ask for: recorded all the same).
    sdist = upstream.sdist("app", "1.0", build_requires=["tool-a"])
    settings = tmp_path / "settings"
    (settings / "app").mkdir(parents=True)
    patch = settings / "app" / "0001-mark.patch"
    patch.write_text(_init_patch(sdist, "app", "PATCHED = True"))
    (settings / "_defaults.toml").write_text('[env]\nEVERY_BUILD = "yes"\n')
    (settings / "app.toml").write_text(
        '[env]\nAPP_FLAG = "on"\n'
        '[config_settings]\nanswer = "42"\n'
        '[build]\nrequires_add = ["tool-b"]\nrequires_remove = ["tool-x"]\n'
        '[[patches]]\nfile = "app/0001-mark.patch"\n'
        '[variants.fast]\nenv = { FAST = "1" }\n'
    )
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"], settings_dir=settings, variant="fast")
    assert result.ok, result.failures

    # The patch went into the wheel ...
    (ref,) = Repository(repo).find_wheels("app", "1.0")
    import zipfile

    with zipfile.ZipFile(repo / "wheels" / ref.filename) as zf:
        assert "PATCHED = True" in zf.read("app/__init__.py").decode()
    # ... and every setting into the provenance.
    build = _statement(repo, "app")["predicate"]["buildDefinition"]
    applied = build["externalParameters"]["settings"]
    expected = Settings(settings, variant="fast").for_package("app", Version("1.0"))
    assert applied == {
        "digest": expected.digest(),
        "variant": "fast",
        "files": ["_defaults.toml", "app.toml"],
        "env": {"APP_FLAG": "on", "EVERY_BUILD": "yes", "FAST": "1"},
        "configSettings": {"answer": "42"},
        "requiresAdd": ["tool-b"],
        "requiresRemove": ["tool-x"],
        "systemTools": [],
        "recipe": None,
        "prebuilt": False,
        "allowLinks": False,
        "patches": [
            {
                "file": "app/0001-mark.patch",
                "sha256": hashlib.sha256(patch.read_bytes()).hexdigest(),
            }
        ],
    }
    # How it ran: the variables its hooks saw, the umask, the cores, the hook runner.
    internal = build["internalParameters"]
    assert internal["environment"]["APP_FLAG"] == "on"
    assert internal["environment"]["FAST"] == "1"
    assert internal["environment"]["SOURCE_DATE_EPOCH"] == str(internal["sourceDateEpoch"])
    old = os.umask(0o022)
    os.umask(old)
    assert internal["umask"] == f"{old:04o}"
    cores = internal["cores"]
    assert internal["parallelism"]["MAKEFLAGS"] == f"-j{cores}"
    assert internal["parallelism"]["DIST_EXTRA_CONFIG"] == internal["distExtraConfig"]["path"]
    assert internal["hookRunner"] == hook_runner()
    assert internal["sitecustomize"]["rewheel"] is True
    assert internal["linkage"] == {"files": [], "unreadable": []}

    # An unpatched package reads as one: the defaults' variable, no patch.
    tool = _statement(repo, "tool-a")["predicate"]["buildDefinition"]["externalParameters"]
    assert tool["settings"]["patches"] == []
    assert tool["settings"]["env"] == {"EVERY_BUILD": "yes"}
    assert tool["settings"]["digest"] != applied["digest"]


def test_a_build_environment_that_replaces_sitecustomize_is_told(
    upstream: Upstream, tmp_path: Path
) -> None:
    # A build requirement whose wheel holds a `sitecustomize` package: imports look for packages
    # before modules, so it replaces the one rewheel writes into every build environment.
    upstream.sdist("evil-site", "1.0", import_name="sitecustomize")
    upstream.sdist("app", "1.0", build_requires=["evil-site"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).ok
    internal = _statement(repo, "app")["predicate"]["buildDefinition"]["internalParameters"]
    site = internal["sitecustomize"]
    assert site["rewheel"] is False
    assert site["path"].endswith("site-packages/sitecustomize/__init__.py")


ZLIB_SOURCE = """\
#include <zlib.h>
const char *rewheel_test_zlib_version(void) { return zlibVersion(); }
"""


def _dpkg_version(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


needs_zlib = pytest.mark.skipif(
    shutil.which("cc") is None or not Path("/usr/include/zlib.h").is_file(),
    reason="needs a C compiler and zlib's headers (Debian: gcc, zlib1g-dev)",
)


@pytest.fixture(scope="module")
def zext_repo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A repository holding zext, a tiny C extension linked with -lz, built here."""
    from support.fake_index import FakeIndex

    base = tmp_path_factory.mktemp("zext")
    with FakeIndex() as index:
        upstream = Upstream(index, base / "files")
        (base / "files").mkdir()
        upstream.sdist("zext", "1.0", c_extension=ZLIB_SOURCE, c_libraries=["z"])
        result = run_bootstrap(upstream, base / "repo", ["zext"])
        assert result.ok, result.failures
    return base / "repo"


@needs_zlib
def test_the_system_libraries_a_wheel_links_are_named_with_hash_and_package(
    zext_repo: Path,
) -> None:
    statement = _statement(zext_repo, "zext")
    internal = statement["predicate"]["buildDefinition"]["internalParameters"]
    (elf,) = internal["linkage"]["files"]
    assert elf["file"] == "zext/_cext.so"
    needed = {n["name"]: n for n in elf["needed"]}
    assert needed["libz.so.1"]["found"] == "system"
    path = needed["libz.so.1"]["path"]
    builder = statement["predicate"]["runDetails"]["builder"]["builderDependencies"]
    (libz,) = [
        d
        for d in builder
        if d["annotations"]["role"] == "system-library" and d["annotations"]["path"] == path
    ]
    real = os.path.realpath(path)
    assert libz["uri"] == f"file://{real}"
    assert libz["digest"]["sha256"] == hashlib.sha256(Path(real).read_bytes()).hexdigest()
    if shutil.which("dpkg-query"):
        assert libz["annotations"]["debianPackage"].startswith("zlib1g")
        version = _dpkg_version(libz["annotations"]["debianPackage"])
        assert libz["annotations"]["debianVersion"] == version
    # The compiler that built it is there too, with its version and digest.
    (cc,) = [d for d in builder if d["name"] == "cc"]
    assert cc["annotations"]["role"] == "compiler"
    assert cc["annotations"]["origin"] == "system"
    assert cc["annotations"]["version"]
    cc_real = cc["uri"].removeprefix("file://")
    assert cc["digest"]["sha256"] == hashlib.sha256(Path(cc_real).read_bytes()).hexdigest()


class _OtherMachine:
    """``SystemLibraries`` of a made-up machine: its loader cache lists ``cache``."""

    def __init__(self, cache: dict[str, Path]) -> None:
        self.cache = cache

    def __call__(self, argv: Sequence[str]) -> str | None:
        if os.path.basename(argv[0]) == "ldconfig":
            return "".join(f"\t{n} (libc6,x86-64) => {p}\n" for n, p in self.cache.items())
        return ""


def _machine(cache: dict[str, Path]) -> SystemLibraries:
    return SystemLibraries(run=_OtherMachine(cache), debian=False, dirs=lambda arch: [])


@needs_zlib
def test_verify_tells_when_this_machines_libraries_are_not_the_wheels(
    zext_repo: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    app.install(["zext"], venv, repo_root=zext_repo)
    repo = Repository(zext_repo)
    wheels = [(ref, repo.wheel_path(ref)) for ref in repo.wheels()]

    # Here, on the machine that built it: nothing to say.
    report = verify_venv(venv, wheels)
    assert report.ok, report.problems
    assert report.notes == []

    # Another libz.so.1 (another build of it): a note, not a failure.
    other = tmp_path / "other" / "libz.so.1"
    other.parent.mkdir()
    other.write_bytes(make_elf(soname="libz.so.1"))
    report = verify_venv(venv, wheels, libraries=_machine({"libz.so.1": other}))
    assert report.ok, report.problems
    (note,) = report.notes
    assert "zext/_cext.so: libz.so.1 differs here" in note
    assert str(other) in note

    # No libz.so.1 at all: the wheel cannot load here, a problem.
    report = verify_venv(venv, wheels, libraries=_machine({}))
    (problem,) = report.problems
    assert (problem.distribution, problem.version) == ("zext", "1.0")
    assert "libz.so.1 is not on this machine" in problem.reason


def test_linked_library_findings_ignore_what_they_cannot_read() -> None:
    machine = _machine({})
    for statement in (None, [], {}, {"predicate": {"buildDefinition": "x"}}):
        assert linked_library_findings(statement, machine) == ([], [])
    # A tampered statement naming a device: looked for, not read, reported missing.
    hostile = {
        "predicate": {
            "buildDefinition": {
                "internalParameters": {
                    "linkage": {
                        "files": [
                            {
                                "file": "x.so",
                                "elfClass": 64,
                                "byteOrder": "little",
                                "machine": "EM_X86_64",
                                "runpath": ["/dev"],
                                "needed": [{"name": "zero", "found": "system", "path": "/x"}],
                            },
                            {"file": "y.so", "elfClass": "64", "needed": "no"},
                        ]
                    }
                }
            }
        }
    }
    missing, different = linked_library_findings(hostile, machine)
    assert missing == ["x.so: zero is not on this machine (built against /x)"]
    assert different == []
