"""verify_venv: every installed file must come, byte for byte, from a wheel of the repository."""

from __future__ import annotations

import importlib.util
import marshal
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_install import make_wheel, record_hash, serve, wheel_ref, write_index

from rewheel.core.errors import VerifyError
from rewheel.core.types import WheelRef
from rewheel.trust.install import install_into_venv
from rewheel.trust.verify import UNOWNED, Problem, launcher_runs, split_shebang, verify_venv

SITE = "lib/python{v}/site-packages"

ALPHA = {
    "alpha/__init__.py": b"def main():\n    print('alpha')\n",
    "alpha/sub.py": b"class run:\n    @staticmethod\n    def go():\n        print('gui')\n",
}
ALPHA_ENTRY_POINTS = (
    "[console_scripts]\nalpha-cli = alpha:main\n[gui_scripts]\nalpha-gui = alpha.sub:run.go\n"
)
BETA = {
    "beta.py": b"X = 1\n",
    "beta-1.0.data/scripts/beta-run": b"#!python\nimport beta\nprint(beta.X)\n",
    "beta-1.0.data/scripts/beta-sh": b"#!/bin/sh\necho beta\n",
    "beta-1.0.data/data/share/beta/notes.txt": b"notes\n",
    "beta-1.0.data/headers/beta.h": b"int beta;\n",
}

Wheels = list[tuple[WheelRef, Path]]


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Wheels]]:
    """The repository's index URL and its wheels: alpha (entry points, needs beta), beta
    (.data scripts, data and headers) and gamma."""
    built = tmp_path_factory.mktemp("repo-wheels")
    paths = [
        make_wheel(
            built, "alpha", "1.0", ALPHA, entry_points=ALPHA_ENTRY_POINTS, requires=["beta"]
        ),
        make_wheel(built, "beta", "1.0", BETA),
        make_wheel(built, "gamma", "1.0", {"gamma.py": b"G = 1\n"}),
    ]
    with serve(write_index(tmp_path_factory.mktemp("repo-index"), paths)) as url:
        yield url, [(wheel_ref(p), p) for p in paths]


@pytest.fixture
def venv(repository: tuple[str, Wheels], tmp_path: Path) -> Path:
    path = tmp_path / "venv"
    install_into_venv(["alpha", "gamma"], path, index_url=repository[0], check=None)
    return path


@pytest.fixture(scope="module")
def shared_venv(repository: tuple[str, Wheels], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One install for the tests that only read it."""
    path = tmp_path_factory.mktemp("shared") / "venv"
    install_into_venv(["alpha", "gamma"], path, index_url=repository[0], check=None)
    return path


@pytest.fixture
def wheels(repository: tuple[str, Wheels]) -> Wheels:
    return repository[1]


def site(venv: Path) -> str:
    (found,) = venv.glob("lib/python*/site-packages")
    return found.relative_to(venv).as_posix()


def rewrite(venv: Path, dist_info: str, rel: str, data: bytes, *, update_record: bool) -> None:
    """Replace the installed ``rel`` (relative to the venv); optionally make RECORD agree."""
    (venv / rel).write_bytes(data)
    if not update_record:
        return
    record = venv / site(venv) / dist_info / "RECORD"
    rel_to_site = os.path.relpath(venv / rel, venv / site(venv))
    lines = []
    for line in record.read_text().splitlines():
        path = line.split(",", 1)[0]
        if path == rel_to_site:
            line = f"{path},{record_hash(data)},{len(data)}"
        lines.append(line)
    record.write_text("\n".join(lines) + "\n")


def reasons(problems: list[Problem]) -> list[tuple[str, str | None, str]]:
    return [(p.distribution, p.path, p.reason) for p in problems]


def test_a_fresh_install_verifies(shared_venv: Path, wheels: Wheels) -> None:
    # Byte-compiled files the interpreter writes on import are accepted next to their source.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [shared_venv / "bin" / "python", "-c", "import alpha, alpha.sub, beta, gamma"],
        check=True,
        env=env,
    )
    assert list(shared_venv.glob("lib/python*/site-packages/alpha/__pycache__/*.pyc"))
    report = verify_venv(shared_venv, wheels)
    assert reasons(report.problems) == []
    assert report.ok
    assert report.checked == [("alpha", "1.0"), ("beta", "1.0"), ("gamma", "1.0")]


def test_a_changed_byte_is_reported(venv: Path, wheels: Wheels) -> None:
    module = venv / site(venv) / "alpha" / "__init__.py"
    data = bytearray(module.read_bytes())
    data[-2] ^= 1
    module.write_bytes(bytes(data))
    report = verify_venv(venv, wheels)
    assert not report.ok
    assert report.problems == [
        Problem("alpha", "1.0", f"{site(venv)}/alpha/__init__.py", "modified after install")
    ]


def test_a_change_that_record_was_made_to_agree_with_is_still_reported(
    venv: Path, wheels: Wheels
) -> None:
    rel = f"{site(venv)}/alpha/__init__.py"
    rewrite(venv, "alpha-1.0.dist-info", rel, b"import os\n", update_record=True)
    assert reasons(verify_venv(venv, wheels).problems) == [
        ("alpha", rel, "differs from alpha-1.0-py3-none-any.whl")
    ]


def test_a_deleted_file_is_reported(venv: Path, wheels: Wheels) -> None:
    (venv / site(venv) / "gamma.py").unlink()
    assert reasons(verify_venv(venv, wheels).problems) == [
        ("gamma", f"{site(venv)}/gamma.py", "missing")
    ]


def test_a_distribution_not_in_the_repository_is_reported(
    venv: Path, wheels: Wheels, tmp_path: Path
) -> None:
    elsewhere = make_wheel(tmp_path / "elsewhere", "delta", "1.0", {"delta.py": b""})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    subprocess.run(
        [
            *uv(),
            "pip",
            "install",
            "-q",
            "--no-config",
            "--python",
            str(venv / "bin" / "python"),
            "--no-index",
            "--find-links",
            str(elsewhere.parent),
            "delta",
        ],
        check=True,
        env=env,
    )
    report = verify_venv(venv, wheels)
    assert reasons(report.problems) == [("delta", None, "not in the repository")]
    assert ("delta", "1.0") in report.checked


def test_a_release_the_repository_holds_in_another_version_is_reported(
    shared_venv: Path, wheels: Wheels, tmp_path: Path
) -> None:
    gamma2 = make_wheel(tmp_path, "gamma", "2.0", {"gamma.py": b"G = 1\n"})
    others = [w for w in wheels if w[0].name != "gamma"] + [(wheel_ref(gamma2), gamma2)]
    assert reasons(verify_venv(shared_venv, others).problems) == [
        ("gamma", None, "not in the repository")
    ]


def test_a_stray_pth_file_is_reported(venv: Path, wheels: Wheels) -> None:
    (venv / site(venv) / "zzz.pth").write_text("import os; os.system('true')\n")
    (problem,) = verify_venv(venv, wheels).problems
    assert (problem.distribution, problem.path) == (UNOWNED, f"{site(venv)}/zzz.pth")
    assert "not listed in any RECORD" in problem.reason and ".pth" in problem.reason


def test_stray_files_in_packages_and_bin_and_orphan_bytecode_are_reported(
    venv: Path, wheels: Wheels
) -> None:
    sp = venv / site(venv)
    (sp / "alpha" / "extra.py").write_text("")
    (sp / "alpha" / "__pycache__").mkdir()
    (sp / "alpha" / "__pycache__" / "gone.cpython-311.pyc").write_bytes(b"")
    (venv / "bin" / "pip").write_text("#!/bin/sh\n")
    paths = sorted(p.path or "" for p in verify_venv(venv, wheels).problems)
    assert paths == [
        "bin/pip",
        f"{site(venv)}/alpha/__pycache__/gone.cpython-311.pyc",
        f"{site(venv)}/alpha/extra.py",
    ]


def test_a_file_recorded_but_not_in_the_wheel_is_reported(venv: Path, wheels: Wheels) -> None:
    rel = f"{site(venv)}/alpha-1.0.dist-info/extra.txt"
    (venv / rel).write_bytes(b"x")
    record = venv / site(venv) / "alpha-1.0.dist-info" / "RECORD"
    record.write_text(record.read_text() + f"alpha-1.0.dist-info/extra.txt,{record_hash(b'x')},1\n")
    assert reasons(verify_venv(venv, wheels).problems) == [
        ("alpha", rel, "not a file of alpha-1.0-py3-none-any.whl")
    ]


def test_a_rewritten_launcher_is_reported(venv: Path, wheels: Wheels) -> None:
    launcher = venv / "bin" / "alpha-cli"
    text = launcher.read_text().replace("import sys\n", "import sys\nimport os\n")
    rewrite(venv, "alpha-1.0.dist-info", "bin/alpha-cli", text.encode(), update_record=True)
    assert reasons(verify_venv(venv, wheels).problems) == [
        ("alpha", "bin/alpha-cli", "not a launcher of alpha:main")
    ]


def test_a_script_with_another_body_or_interpreter_is_reported(venv: Path, wheels: Wheels) -> None:
    shebang = (venv / "bin" / "beta-run").read_bytes().split(b"\n", 1)[0]
    rewrite(
        venv, "beta-1.0.dist-info", "bin/beta-run", shebang + b"\nimport os\n", update_record=True
    )
    rewrite(venv, "beta-1.0.dist-info", "bin/beta-sh", b"#!/bin/sh\nrm -rf ~\n", update_record=True)
    assert reasons(verify_venv(venv, wheels).problems) == [
        ("beta", "bin/beta-run", "differs from beta-1.0-py3-none-any.whl"),
        ("beta", "bin/beta-sh", "differs from beta-1.0-py3-none-any.whl"),
    ]
    body = b"\nimport beta\nprint(beta.X)\n"
    rewrite(
        venv, "beta-1.0.dist-info", "bin/beta-run", b"#!/usr/bin/python3" + body, update_record=True
    )
    rewrite(
        venv,
        "beta-1.0.dist-info",
        "bin/beta-sh",
        BETA["beta-1.0.data/scripts/beta-sh"],
        update_record=True,
    )
    assert [p.reason for p in verify_venv(venv, wheels).problems] == [
        "script does not start with the venv's python, as in beta-1.0-py3-none-any.whl"
    ]


def test_a_venv_in_a_path_with_a_space_verifies(
    repository: tuple[str, Wheels], tmp_path: Path
) -> None:
    # Installers then start scripts with a /bin/sh trampoline instead of a "#!" line.
    venv = tmp_path / "with space" / "venv"
    install_into_venv(["alpha"], venv, index_url=repository[0], check=None)
    assert (venv / "bin" / "beta-run").read_bytes().startswith(b"#!/bin/sh\n'''exec'")
    report = verify_venv(venv, repository[1])
    assert reasons(report.problems) == []


def test_a_repository_wheel_that_does_not_match_its_hash_is_reported(
    shared_venv: Path, wheels: Wheels
) -> None:
    forged = [(WheelRef(r.name, r.version, r.filename, "0" * 64), p) for r, p in wheels]
    problems = verify_venv(shared_venv, forged).problems
    assert {p.distribution for p in problems} == {"alpha", "beta", "gamma"}
    assert all("does not match its recorded sha256" in p.reason for p in problems)


def test_another_build_of_the_same_release_does_not_vouch_for_the_files(
    shared_venv: Path, wheels: Wheels, tmp_path: Path
) -> None:
    rebuilt = make_wheel(tmp_path, "gamma", "1.0", {"gamma.py": b"G = 2\n"})
    others = [w for w in wheels if w[0].name != "gamma"] + [(wheel_ref(rebuilt), rebuilt)]
    assert reasons(verify_venv(shared_venv, others).problems) == [
        ("gamma", f"{site(shared_venv)}/gamma.py", "differs from gamma-1.0-py3-none-any.whl")
    ]


def test_a_missing_record_is_reported(venv: Path, wheels: Wheels) -> None:
    (venv / site(venv) / "gamma-1.0.dist-info" / "RECORD").unlink()
    found = reasons(verify_venv(venv, wheels).problems)
    assert found[0] == (
        "gamma",
        f"{site(venv)}/gamma-1.0.dist-info/RECORD",
        "RECORD missing or unreadable",
    )
    # Without RECORD nothing vouches for gamma's files either.
    assert (UNOWNED, f"{site(venv)}/gamma.py", "not listed in any RECORD") in found


def test_not_a_venv(tmp_path: Path) -> None:
    with pytest.raises(VerifyError):
        verify_venv(tmp_path, [])


def uv() -> list[str]:
    from uv import find_uv_bin

    return [find_uv_bin()]


# ---------------------------------------------------------------- pure parts

UV_LAUNCHER = """\
# -*- coding: utf-8 -*-
import sys
from alpha.sub import run
if __name__ == "__main__":
    if sys.argv[0].endswith("-script.pyw"):
        sys.argv[0] = sys.argv[0][:-11]
    elif sys.argv[0].endswith(".exe"):
        sys.argv[0] = sys.argv[0][:-4]
    sys.exit(run.go())
"""

PIP_LAUNCHER = """\
# -*- coding: utf-8 -*-
import re
import sys
from alpha.sub import run
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(run.go())
"""


@pytest.mark.parametrize("source", [UV_LAUNCHER, PIP_LAUNCHER])
def test_launchers_of_uv_and_pip_are_recognised(source: str) -> None:
    assert launcher_runs(source, "alpha.sub", "run.go")
    assert not launcher_runs(source, "alpha.sub", "run")
    assert not launcher_runs(source, "alpha", "run.go")
    assert not launcher_runs(source, "alpha.sub", "walk.go")


@pytest.mark.parametrize(
    "change",
    [
        ("import sys\n", "import sys, os\n"),
        ("import sys\n", "import sys\nimport evil\n"),
        ("    sys.exit(run.go())", "    import evil\n    sys.exit(run.go())"),
        ("    sys.exit(run.go())", "    __import__('os').system('x')\n    sys.exit(run.go())"),
        ("    sys.exit(run.go())", "    sys.modules['os'].system('x')\n    sys.exit(run.go())"),
        ("    sys.exit(run.go())", "    sys.exit(run.go(1))"),
        ("    sys.exit(run.go())", "    run.go()\n    sys.exit(run.go())"),
        ("sys.argv[0] = sys.argv[0][:-4]", "sys.path[0] = '/tmp'"),
        ('"__main__"', '"__other__"'),
    ],
)
def test_launchers_that_do_more_are_refused(change: tuple[str, str]) -> None:
    old, new = change
    assert old in UV_LAUNCHER
    assert not launcher_runs(UV_LAUNCHER.replace(old, new), "alpha.sub", "run.go")


def test_split_shebang() -> None:
    assert split_shebang(b"#!/v/bin/python\nbody\n") == ("/v/bin/python", "", b"body\n")
    assert split_shebang(b"#!/v/bin/python -E\nx") == ("/v/bin/python", "-E", b"x")
    trampoline = b"#!/bin/sh\n'''exec' '/a b/bin/python' \"$0\" \"$@\"\n' '''\nbody\n"
    assert split_shebang(trampoline) == ("/a b/bin/python", "", b"body\n")
    assert split_shebang(b"print()\n") is None


def test_byte_code_shipped_in_a_wheel_may_be_written_again_but_not_changed(
    tmp_path: Path,
) -> None:
    # A wheel holding the pyc of its module, with a header whose source mtime (0) never matches
    # the installed source: the interpreter compiles the source again and replaces the pyc.
    source = b"X = 1\n"
    code = compile(source, "delta.py", "exec", dont_inherit=True)
    pyc = importlib.util.MAGIC_NUMBER + b"\0" * 4 + b"\0" * 4 + len(source).to_bytes(4, "little")
    pyc += marshal.dumps(code)
    tag = sys.implementation.cache_tag
    wheel = make_wheel(
        tmp_path / "w", "delta", "1.0", {"delta.py": source, f"__pycache__/delta.{tag}.pyc": pyc}
    )
    venv = tmp_path / "venv"
    with serve(write_index(tmp_path / "index", [wheel])) as url:
        install_into_venv(["delta"], venv, index_url=url, check=None)
    installed = venv / site(venv) / "__pycache__" / f"delta.{tag}.pyc"
    assert installed.read_bytes() == pyc
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    subprocess.run([venv / "bin" / "python", "-c", "import delta"], check=True, env=env)
    assert installed.read_bytes() != pyc  # written again by the interpreter
    wheels = [(wheel_ref(wheel), wheel)]
    assert reasons(verify_venv(venv, wheels).problems) == []

    evil = compile("X = 2\n", str(venv / site(venv) / "delta.py"), "exec", dont_inherit=True)
    installed.write_bytes(installed.read_bytes()[:16] + marshal.dumps(evil))
    (problem,) = verify_venv(venv, wheels).problems
    assert (problem.distribution, problem.path) == ("delta", installed.relative_to(venv).as_posix())
    assert "not the compile of" in problem.reason
