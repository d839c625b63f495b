"""Wheels that reproduce anywhere: whatever the build root, the umask, the clock and -j, and
naming nothing of the machine that built them."""

from __future__ import annotations

import ensurepip
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Upstream, build_info
from packaging.requirements import Requirement
from support.sdists import SdistSpec, make_sdist

from rewheel import app
from rewheel.build.reproducible import Interpreter, source_date_epoch
from rewheel.core.errors import BuildError
from rewheel.repo.machine_paths import paths_in_wheel
from rewheel.repo.repository import Repository

PYTHON = str(Path(sys.base_prefix) / "bin" / "python3")  # visible in the box; our venv is not
_BUNDLED = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("setuptools-*.whl"))

needs_compiler = pytest.mark.skipif(
    not _BUNDLED or shutil.which("gcc") is None,
    reason="needs gcc and the setuptools wheel ensurepip bundles",
)


@pytest.fixture
def with_setuptools(upstream: Upstream, tmp_path: Path) -> Path:
    """A settings folder that takes the setuptools wheel ensurepip bundles as it is, served by
    the test's index: the C extensions below are compiled by a real setuptools."""
    wheel = upstream.files / _BUNDLED[-1].name
    shutil.copyfile(_BUNDLED[-1], wheel)
    upstream.index.add(wheel)
    # Resolution wants an sdist; the settings then take the wheel instead of building it.
    upstream.sdist("setuptools", wheel.name.split("-")[1])
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "setuptools.toml").write_text("[build]\nprebuilt = true\n")
    return settings


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _bootstrap(
    upstream: Upstream,
    repo: Path,
    work: Path,
    settings: Path,
    *,
    requirements: tuple[str, ...] = ("fastmod", "quickmod"),
    jobs: int = 2,
) -> dict[str, Path]:
    options = app.BootstrapOptions(
        requirements=[Requirement(r) for r in requirements],
        repo=repo,
        index_url=upstream.url,
        jobs=jobs,
        work_dir=work,
        settings_dir=settings,
    )
    result = app.bootstrap(options)
    assert result.ok, {node: str(exc) for node, exc in result.failures.items()}
    repository = Repository(repo)
    return {
        w.filename: repository.wheel_path(w)
        for w in repository.wheels()
        if not w.filename.startswith("setuptools-")
    }


def _machine_paths(*extra: Path) -> list[str | Path]:
    return [*extra, *Interpreter.running().private_prefixes()]


def _modes(wheel: Path) -> dict[str, str]:
    with zipfile.ZipFile(wheel) as zf:
        return {i.filename: oct(i.external_attr >> 16) for i in zf.infolist()}


@needs_compiler
def test_two_bootstraps_on_different_roots_umasks_clocks_and_jobs_give_identical_wheels(
    upstream: Upstream,
    with_setuptools: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("fastmod", "quickmod"):
        upstream.sdist(name, "1.0", setuptools_extension=True)
    work1 = tmp_path / "w1"
    first = _bootstrap(upstream, tmp_path / "repo1", work1, with_setuptools, jobs=1)

    # Another build root (a longer path), umask 077, a SOURCE_DATE_EPOCH of the user's own
    # (the sdist's must win) and two builds at once.
    work2 = tmp_path / "somewhere" / "else" / "entirely" / "work"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1234567890")
    old = os.umask(0o077)
    try:
        second = _bootstrap(upstream, tmp_path / "repo2", work2, with_setuptools, jobs=2)
    finally:
        os.umask(old)

    assert sorted(first) == sorted(second) and len(first) == 2
    for filename, wheel in first.items():
        other = second[filename]
        assert _modes(wheel) == _modes(other), filename
        assert wheel.read_bytes() == other.read_bytes(), filename
        found = paths_in_wheel(
            wheel, _machine_paths(work1, work2, tmp_path / "repo1", tmp_path / "repo2")
        )
        assert found == [], [str(f) for f in found]
    modes = _modes(first["fastmod-1.0-" + _tag() + ".whl"])
    assert modes["fastmod/_generated.py"] == "0o100644"  # written by the build: umask 022
    assert modes[f"fastmod/_speedups{_suffix()}"] == "0o100755"


def _tag() -> str:
    impl = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    return f"{impl}-{impl}-{sysconfig.get_platform().replace('-', '_').replace('.', '_')}"


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


@needs_compiler
@pytest.mark.parametrize("own_cflags", [False, True])
def test_the_extension_names_no_build_path_and_has_no_runpath(
    upstream: Upstream, with_setuptools: Path, tmp_path: Path, own_cflags: bool
) -> None:
    upstream.sdist("fastmod", "1.0", setuptools_extension=True)
    if own_cflags:  # the package's settings give their own CFLAGS: the prefix maps stay
        (with_setuptools / "fastmod.toml").write_text('[env]\nCFLAGS = "-O1"\n')
    wheels = _bootstrap(
        upstream, tmp_path / "repo", tmp_path / "w", with_setuptools, requirements=("fastmod",)
    )
    (wheel,) = wheels.values()
    extension = tmp_path / f"_speedups{_suffix()}"
    with zipfile.ZipFile(wheel) as zf:
        extension.write_bytes(zf.read(f"fastmod/_speedups{_suffix()}"))
    # __FILE__ (the source was compiled by its absolute path) names the mapped folder.
    spec = importlib.util.spec_from_file_location("_speedups", extension)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.answer() == 42
    assert module.source() == "/rewheel/fastmod-1.0/fastmod/_speedups.c"
    readelf = shutil.which("readelf")
    if readelf is not None:
        dynamic = subprocess.run(
            [readelf, "-d", str(extension)], capture_output=True, text=True, check=True
        ).stdout
        assert "RPATH" not in dynamic and "RUNPATH" not in dynamic, dynamic


# ---------------------------------------------------------------- a wheel that names the machine


def test_a_wheel_that_records_its_build_path_is_the_same_from_any_build_root(
    upstream: Upstream, tmp_path: Path
) -> None:
    """tinybackend writes its folder and its interpreter's prefix (the source tree and the build
    environment, in the work folder) into a generated file, as meson's ``__config__.py`` and
    Cython's modules do: no prefix map reaches that. In the box the work folder is always at
    the same path, so two build roots, umasks and -j give the same wheel."""
    upstream.sdist("recorder", "1.0")
    wheels = []
    for n, (umask, jobs) in enumerate([(0o022, 1), (0o077, 2)]):
        work = tmp_path / f"root{n}" / ("deeper/" * n) / "work"
        notices: list[str] = []
        options = app.BootstrapOptions(
            requirements=[Requirement("recorder")],
            repo=tmp_path / f"repo{n}",
            index_url=upstream.url,
            work_dir=work,
            jobs=jobs,
        )
        old = os.umask(umask)
        try:
            assert app.bootstrap(options, notice=notices.append).ok
        finally:
            os.umask(old)
        repository = Repository(tmp_path / f"repo{n}")
        (ref,) = repository.wheels()
        wheel = repository.wheel_path(ref)
        assert paths_in_wheel(wheel, _machine_paths(work)) == []
        assert not [n for n in notices if "paths of this machine" in n]
        wheels.append(wheel)
    info = build_info(wheels[0])
    assert info["cwd"] == "/build/src/recorder-1.0"
    assert info["sys_prefix"].startswith("/build/")
    assert wheels[0].read_bytes() == wheels[1].read_bytes()


def test_without_the_sandbox_a_wheel_that_records_its_build_path_is_reported(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Without the box there is no fixed path: the prefix maps are all there is, and a wheel
    that names the work folder is reported."""
    upstream.sdist("recorder", "1.0")
    work = tmp_path / "work"
    notices: list[str] = []
    options = app.BootstrapOptions(
        requirements=[Requirement("recorder")],
        repo=tmp_path / "repo",
        index_url=upstream.url,
        work_dir=work,
        sandbox=False,
    )
    assert app.bootstrap(options, notice=notices.append).ok
    (wheel,) = Repository(tmp_path / "repo").wheels()
    found = paths_in_wheel(Repository(tmp_path / "repo").wheel_path(wheel), [work])
    assert [f.member for f in found] == ["recorder/_build_info.json"]
    (said,) = [n for n in notices if "paths of this machine" in n]
    assert said.startswith("recorder 1.0: the wheel names paths of this machine")
    assert str(work) in said and "recorder/_build_info.json" in said
    log = (tmp_path / "repo" / "logs" / "recorder-1.0.log").read_text()
    assert f"recorder/_build_info.json names {work} (at byte" in log


# ---------------------------------------------------------------- the link command


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("gcc -shared -L/opt/py/lib -Wl,-rpath,/opt/py/lib", "gcc -shared -L/opt/py/lib"),
        ("gcc -shared -Wl,-rpath=/opt/py/lib -O2", "gcc -shared -O2"),
        ("gcc -shared -Wl,-R,/opt/py/lib/x", "gcc -shared"),
        ("gcc -Wl,--as-needed,-rpath,/opt/py/lib", "gcc -Wl,--as-needed"),
        ("gcc -Wl,-rpath,/opt/py/lib:$ORIGIN/../lib", "gcc '-Wl,-rpath,$ORIGIN/../lib'"),
        ("gcc -Wl,-rpath,/opt/py2/lib", "gcc -Wl,-rpath,/opt/py2/lib"),  # another prefix
        ("gcc -Wl,-rpath,/usr/lib", "gcc -Wl,-rpath,/usr/lib"),
    ],
)
def test_without_rpaths_takes_out_only_the_prefix_s(command: str, expected: str) -> None:
    from rewheel.build.reproducible import without_rpaths

    assert without_rpaths(command, ["/opt/py"]) == expected


PYENV = Interpreter(
    prefixes=("/opt/py",),
    cc="gcc",
    ldshared="gcc -shared -L/opt/py/lib -Wl,-rpath,/opt/py/lib",
    ldcxxshared="g++ -shared",
)


def test_ldshared_is_set_only_when_the_interpreter_bakes_in_an_rpath() -> None:
    from rewheel.build.reproducible import linker_env

    assert linker_env({}, PYENV) == {"LDSHARED": "gcc -shared -L/opt/py/lib"}
    # CC replaces the compiler, as setuptools does when LDSHARED is not set.
    assert linker_env({"CC": "clang"}, PYENV) == {"LDSHARED": "clang -shared -L/opt/py/lib"}
    # The build's own LDSHARED (a package's settings) wins.
    assert linker_env({"LDSHARED": "ld -shared"}, PYENV) == {}
    # A system interpreter: nothing to take out, nothing set.
    system = Interpreter(prefixes=("/usr",), cc="gcc", ldshared="gcc -shared -Wl,-O1")
    assert linker_env({}, system) == {}
    assert system.private_prefixes() == []


def test_the_interpreter_prefix_and_the_work_folder_are_mapped_before_the_source_tree(
    tmp_path: Path,
) -> None:
    from rewheel.build.reproducible import reproducible_env

    # An sdist's tree sits one folder down in the work folder's src/.
    source = tmp_path / "src" / "a-1"
    env = reproducible_env(
        {}, source_dir=source, name="a", version="1", epoch=5, interpreter=PYENV, work_dir=tmp_path
    )
    assert env["CPPFLAGS"].split() == [
        "-ffile-prefix-map=/opt/py=/rewheel/python",
        f"-ffile-prefix-map={tmp_path}=/rewheel/a-1-work",  # with the build environments
        f"-ffile-prefix-map={source}=/rewheel/a-1",  # GCC: the last match wins
        f"-ffile-prefix-map={tmp_path / 'tmp'}=/rewheel/a-1-tmp",  # TMPDIR
        "-frandom-seed=a-1",
    ]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    # No CFLAGS where there was none: setuptools would take it for the interpreter's own flags
    # (-O3, -DNDEBUG, -fwrapv) and build without them.
    assert "CFLAGS" not in env and "CXXFLAGS" not in env
    assert env["LDSHARED"] == "gcc -shared -L/opt/py/lib"


# ---------------------------------------------------------------- finding paths


def test_a_path_split_between_chunks_is_found_and_only_as_a_whole_path() -> None:
    from rewheel.repo.machine_paths import first_offsets

    data = b"xx /work/repo-2 and /work/repo/lib and /work/repo"
    needle = b"/work/repo"
    for size in range(1, len(data) + 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert first_offsets(chunks, [needle]) == {needle: data.index(b"/work/repo/")}
    assert first_offsets([b"/work/repo-2 /work/repos"], [needle]) == {}
    assert first_offsets([b"at the end: /work/repo"], [needle]) == {needle: 12}


def test_system_paths_are_not_looked_for(tmp_path: Path) -> None:
    from rewheel.repo.machine_paths import searched_paths

    assert searched_paths(["/usr", "/", "relative/path", "/usr/local"]) == []
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    assert searched_paths([link]) == [str(link), str(tmp_path / "real")]


# ---------------------------------------------------------------- umask and address layout


def _bwrap() -> str | None:
    from rewheel.build.sandbox import probe_bwrap

    found = probe_bwrap()
    return None if isinstance(found, str) else found[0]


@pytest.mark.parametrize("sandboxed", [True, False])
def test_build_commands_get_umask_022_and_a_fixed_address_layout(
    tmp_path: Path, umask_077: None, sandboxed: bool
) -> None:
    from rewheel.build.runner import SubprocessRunner
    from rewheel.build.sandbox import make_policy
    from rewheel.core.types import Confinement

    bwrap = _bwrap() if sandboxed else None
    if sandboxed and bwrap is None:
        pytest.skip("no bubblewrap here")
    work = tmp_path / "work"
    work.mkdir()
    policy = make_policy(enabled=sandboxed, bwrap=bwrap)
    run = SubprocessRunner(sandbox=policy)
    code = (
        "import sys; open('made', 'w').close(); "
        "open('personality', 'w').write(open('/proc/self/personality').read()); "
        "open('stack', 'a').write([l for l in open('/proc/self/maps') if '[stack]' in l][0])"
    )
    for _ in range(2):
        run(
            [PYTHON, "-c", code],
            cwd=work,
            env={"PATH": "/usr/bin:/bin"},
            log=tmp_path / "log",
            confine=Confinement(writable=(work,)),
        )
    assert oct((work / "made").stat().st_mode & 0o777) == "0o644"
    assert int((work / "personality").read_text(), 16) & 0x0040000  # ADDR_NO_RANDOMIZE
    first, second = (work / "stack").read_text().splitlines()
    assert first == second  # the same stack address both times


def test_commands_that_run_no_build_code_keep_the_layout_but_not_the_umask(
    tmp_path: Path, umask_077: None
) -> None:
    from rewheel.build.runner import SubprocessRunner

    code = "open('made', 'w').close(); print(open('/proc/self/personality').read())"
    SubprocessRunner()([sys.executable, "-c", code], cwd=tmp_path, env={}, log=tmp_path / "log")
    assert oct((tmp_path / "made").stat().st_mode & 0o777) == "0o644"
    assert "00040000" not in (tmp_path / "log").read_text()
    # None: the umask of rewheel's own process.
    (tmp_path / "made").unlink()
    SubprocessRunner(umask=None)(
        [sys.executable, "-c", code], cwd=tmp_path, env={}, log=tmp_path / "log"
    )
    assert oct((tmp_path / "made").stat().st_mode & 0o777) == "0o600"


def test_without_setarch_builds_go_on_and_the_run_is_told_once(tmp_path: Path) -> None:
    from rewheel.build.runner import SubprocessRunner
    from rewheel.core.types import Confinement

    notices: list[str] = []
    run = SubprocessRunner(on_notice=notices.append, fixed_layout=lambda: [])
    for _ in range(2):
        run(
            [sys.executable, "-c", "pass"],
            cwd=tmp_path,
            env={},
            log=tmp_path / "log",
            confine=Confinement(writable=(tmp_path,)),
        )
    assert [n for n in notices if "randomization" in n] == [notices[0]]
    assert "setarch -R failed" in notices[0]


@pytest.mark.parametrize("sandbox", [True, False])
def test_rebuild_builds_where_it_is_told_and_a_recorded_build_path_then_matches(
    upstream: Upstream, tmp_path: Path, sandbox: bool
) -> None:
    """A wheel that records its build folder rebuilds bit for bit anywhere in the sandbox (the
    work folder is at a fixed path there); without it, only in the same folder: ``rebuild
    --work-dir`` chooses it (the default is the shared per-user build root)."""
    from click.testing import CliRunner

    from rewheel.cli import cli

    upstream.sdist("recorder", "1.0")
    work, repo = tmp_path / "work", tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("recorder")],
        repo=repo,
        index_url=upstream.url,
        work_dir=work,
        sandbox=sandbox,
    )
    assert app.bootstrap(options).ok
    elsewhere = tmp_path / "elsewhere"
    no_box = [] if sandbox else ["--no-sandbox"]
    args = ["rebuild", "--check", "--repo", str(repo), *no_box, "--work-dir"]
    result = CliRunner().invoke(cli, [*args, str(elsewhere)])
    if sandbox:
        assert result.exit_code == 0, result.output
        assert "same    recorder 1.0" in result.output
        return
    assert result.exit_code == 1, result.output
    assert "DIFFERS recorder 1.0" in result.output
    assert "content differs: recorder/_build_info.json" in result.output
    assert elsewhere.is_dir()
    result = CliRunner().invoke(cli, [*args, str(work)])
    assert result.exit_code == 0, result.output
    assert "same    recorder 1.0" in result.output


def test_member_times_of_a_truncated_sdist_are_a_build_error(tmp_path: Path) -> None:
    whole = make_sdist(SdistSpec("demo", "1.0"), tmp_path / "whole")
    assert source_date_epoch(whole) > 0
    cut = tmp_path / whole.name
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BuildError, match="cannot read the member times"):
        source_date_epoch(cut)
