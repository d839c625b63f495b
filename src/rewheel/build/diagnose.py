"""What a failed build's log says went wrong, and what to do about it, in one line.

After a PEP 517 hook or a recipe's command fails, the end of what it wrote is scanned for the
causes that stop most builds: a command, C header, pkg-config module or library that the system
lacks, a missing compiler, a module the build imports without declaring it, crates or files
fetched from the network, which builds do not have. The fix names the Debian package (from the
small tables below), or the settings to add (``system_tools``, ``requires_add``, a patch).

The log is written by the package's own build code. Only its last ``TAIL_CHARS`` are read and the
first ``MAX_LINE`` characters of each line; a name quoted from it (header, command, module, host)
is taken only when it is a few plain ASCII characters, and the finished line is cleaned of
control and formatting characters and cut to ``MAX_HINT`` again. Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
import sys
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from packaging.utils import canonicalize_name

TAIL_CHARS = 256 << 10  # how much of the end of a log is read
MAX_LINE = 4096  # how much of one line is matched
MAX_HINT = 400  # the longest line a diagnosis gives

# What a failed connection or name lookup prints (Python, curl, git, pip ...): in a build without
# network these mean that the build tried to download something.
NETWORK_FAILURES = (
    "Network is unreachable",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No address associated with hostname",
    "[Errno 101]",
    "[Errno -3]",
    "[Errno -2]",
    "Could not resolve host",
    "Failed to establish a new connection",
    # In the sandbox's network namespace only loopback exists, and nothing listens there.
    "[Errno 111] Connection refused",
)


def mentions_network_failure(output: str) -> bool:
    """Whether a command's output shows that it failed to reach the network."""
    return any(text in output for text in NETWORK_FAILURES)


# -- what provides what, on Debian ----------------------------------------------------------

# Commands: the Debian package that has them.
COMMANDS: dict[str, str] = {
    "cc": "gcc",
    "gcc": "gcc",
    "c++": "g++",
    "g++": "g++",
    "cpp": "cpp",
    "gfortran": "gfortran",
    "f77": "gfortran",
    "f95": "gfortran",
    "clang": "clang",
    "clang++": "clang",
    "make": "make",
    "gmake": "make",
    "autoreconf": "autoconf",
    "autoconf": "autoconf",
    "autoheader": "autoconf",
    "automake": "automake",
    "aclocal": "automake",
    "libtool": "libtool",
    "libtoolize": "libtool",
    "pkg-config": "pkg-config",
    "pkgconf": "pkgconf",
    "cmake": "cmake",
    "ninja": "ninja-build",
    "meson": "meson",
    "patchelf": "patchelf",
    "swig": "swig",
    "swig4.0": "swig",
    "bison": "bison",
    "yacc": "bison",
    "flex": "flex",
    "lex": "flex",
    "m4": "m4",
    "nasm": "nasm",
    "yasm": "yasm",
    "perl": "perl",
    "gperf": "gperf",
    "msgfmt": "gettext",
    "xgettext": "gettext",
    "makeinfo": "texinfo",
    "xsltproc": "xsltproc",
    "cargo": "cargo",
    "rustc": "rustc",
    "protoc": "protobuf-compiler",
    "go": "golang-go",
    "node": "nodejs",
    "npm": "npm",
    "java": "default-jdk-headless",
    "javac": "default-jdk-headless",
    "mysql_config": "default-libmysqlclient-dev",
    "pg_config": "libpq-dev",
    "xml2-config": "libxml2-dev",
    "xslt-config": "libxslt1-dev",
    "curl-config": "libcurl4-openssl-dev",
    "gdal-config": "libgdal-dev",
    "geos-config": "libgeos-dev",
    "freetype-config": "libfreetype-dev",
    "icu-config": "libicu-dev",
    "llvm-config": "llvm-dev",
    "nvcc": "nvidia-cuda-toolkit",
}
# Commands that come from PyPI as build requirements: [build] requires_add, not apt-get.
PYPI_COMMANDS: dict[str, str] = {
    "cython": "cython",
    "cythonize": "cython",
    "pythran": "pythran",
    "f2py": "numpy",
    "meson": "meson",
}
# Commands a build runs to learn something and goes on without (version from git): not causes.
_PROBED_COMMANDS = frozenset({"git", "hg", "svn", "bzr", "fossil", "sccache", "ccache"})

# C headers, by their name in #include (or the folder they are in, ending in "/").
HEADERS: dict[str, str] = {
    "Python.h": "python3-dev",
    "ffi.h": "libffi-dev",
    "zlib.h": "zlib1g-dev",
    "openssl/": "libssl-dev",
    "libxml/": "libxml2-dev",
    "libxslt/": "libxslt1-dev",
    "libexslt/": "libxslt1-dev",
    "jpeglib.h": "libjpeg-dev",
    "png.h": "libpng-dev",
    "yaml.h": "libyaml-dev",
    "lzma.h": "liblzma-dev",
    "bzlib.h": "libbz2-dev",
    "sqlite3.h": "libsqlite3-dev",
    "tiff.h": "libtiff-dev",
    "tiffio.h": "libtiff-dev",
    "ft2build.h": "libfreetype-dev",
    "webp/": "libwebp-dev",
    "lcms2.h": "liblcms2-dev",
    "openjpeg-2.5/": "libopenjp2-7-dev",
    "openjpeg.h": "libopenjp2-7-dev",
    "hdf5.h": "libhdf5-dev",
    "cblas.h": "libopenblas-dev",
    "lapacke.h": "liblapacke-dev",
    "gmp.h": "libgmp-dev",
    "mpfr.h": "libmpfr-dev",
    "mpc.h": "libmpc-dev",
    "readline/": "libreadline-dev",
    "ncurses.h": "libncurses-dev",
    "curses.h": "libncurses-dev",
    "uuid/": "uuid-dev",
    "libpq-fe.h": "libpq-dev",
    "mysql.h": "default-libmysqlclient-dev",
    "mysql/": "default-libmysqlclient-dev",
    "krb5.h": "libkrb5-dev",
    "gssapi/": "libkrb5-dev",
    "sasl/": "libsasl2-dev",
    "ldap.h": "libldap-dev",
    "lber.h": "libldap-dev",
    "systemd/": "libsystemd-dev",
    "dbus/": "libdbus-1-dev",
    "glib.h": "libglib2.0-dev",
    "cairo.h": "libcairo2-dev",
    "zmq.h": "libzmq3-dev",
    "expat.h": "libexpat1-dev",
    "curl/": "libcurl4-openssl-dev",
    "zstd.h": "libzstd-dev",
    "lz4.h": "liblz4-dev",
    "snappy-c.h": "libsnappy-dev",
    "brotli/": "libbrotli-dev",
    "sodium.h": "libsodium-dev",
    "argon2.h": "libargon2-dev",
    "gdal.h": "libgdal-dev",
    "geos_c.h": "libgeos-dev",
    "proj.h": "libproj-dev",
    "portaudio.h": "portaudio19-dev",
    "sndfile.h": "libsndfile1-dev",
    "magic.h": "libmagic-dev",
    "pcre.h": "libpcre3-dev",
    "pcre2.h": "libpcre2-dev",
    "xmlsec/": "libxmlsec1-dev",
    "libusb-1.0/": "libusb-1.0-0-dev",
    "libusb.h": "libusb-1.0-0-dev",
    "alsa/": "libasound2-dev",
    "X11/": "libx11-dev",
    "GL/": "libgl-dev",
    "cups/": "libcups2-dev",
    "security/pam_appl.h": "libpam0g-dev",
    "libudev.h": "libudev-dev",
    "attr/": "libattr1-dev",
    "acl/": "libacl1-dev",
    "tcl.h": "tcl-dev",
    "tk.h": "tk-dev",
    "gdbm.h": "libgdbm-dev",
    "boost/": "libboost-dev",
    "eigen3/": "libeigen3-dev",
    "Eigen/": "libeigen3-dev",
    "libavcodec/": "libavcodec-dev",
    "libavformat/": "libavformat-dev",
    "jansson.h": "libjansson-dev",
    "leveldb/": "libleveldb-dev",
    "hiredis/": "libhiredis-dev",
    "gpgme.h": "libgpgme-dev",
    "libxml2/": "libxml2-dev",
}

# Libraries, by their pkg-config name, CMake package name or -l name (lower case): the Debian
# package with their development files.
LIBRARIES: dict[str, str] = {
    "libffi": "libffi-dev",
    "ffi": "libffi-dev",
    "zlib": "zlib1g-dev",
    "z": "zlib1g-dev",
    "openssl": "libssl-dev",
    "libssl": "libssl-dev",
    "libcrypto": "libssl-dev",
    "ssl": "libssl-dev",
    "crypto": "libssl-dev",
    "libxml-2.0": "libxml2-dev",
    "libxml2": "libxml2-dev",
    "xml2": "libxml2-dev",
    "libxslt": "libxslt1-dev",
    "libexslt": "libxslt1-dev",
    "xslt": "libxslt1-dev",
    "exslt": "libxslt1-dev",
    "libjpeg": "libjpeg-dev",
    "jpeg": "libjpeg-dev",
    "libpng": "libpng-dev",
    "libpng16": "libpng-dev",
    "png": "libpng-dev",
    "png16": "libpng-dev",
    "yaml-0.1": "libyaml-dev",
    "yaml": "libyaml-dev",
    "liblzma": "liblzma-dev",
    "lzma": "liblzma-dev",
    "bzip2": "libbz2-dev",
    "bz2": "libbz2-dev",
    "sqlite3": "libsqlite3-dev",
    "libtiff-4": "libtiff-dev",
    "tiff": "libtiff-dev",
    "freetype2": "libfreetype-dev",
    "freetype": "libfreetype-dev",
    "libwebp": "libwebp-dev",
    "webp": "libwebp-dev",
    "lcms2": "liblcms2-dev",
    "libopenjp2": "libopenjp2-7-dev",
    "openjp2": "libopenjp2-7-dev",
    "hdf5": "libhdf5-dev",
    "openblas": "libopenblas-dev",
    "blas": "libopenblas-dev",
    "cblas": "libopenblas-dev",
    "lapack": "liblapack-dev",
    "lapacke": "liblapacke-dev",
    "gfortran": "gfortran",
    "gmp": "libgmp-dev",
    "mpfr": "libmpfr-dev",
    "mpc": "libmpc-dev",
    "ncurses": "libncurses-dev",
    "ncursesw": "libncurses-dev",
    "readline": "libreadline-dev",
    "uuid": "uuid-dev",
    "libpq": "libpq-dev",
    "pq": "libpq-dev",
    "postgresql": "libpq-dev",
    "mysqlclient": "default-libmysqlclient-dev",
    "krb5": "libkrb5-dev",
    "krb5-gssapi": "libkrb5-dev",
    "gssapi_krb5": "libkrb5-dev",
    "libsasl2": "libsasl2-dev",
    "sasl2": "libsasl2-dev",
    "ldap": "libldap-dev",
    "libsodium": "libsodium-dev",
    "sodium": "libsodium-dev",
    "libsystemd": "libsystemd-dev",
    "systemd": "libsystemd-dev",
    "dbus-1": "libdbus-1-dev",
    "glib-2.0": "libglib2.0-dev",
    "gobject-2.0": "libglib2.0-dev",
    "gio-2.0": "libglib2.0-dev",
    "gobject-introspection-1.0": "libgirepository1.0-dev",
    "cairo": "libcairo2-dev",
    "libzmq": "libzmq3-dev",
    "zeromq": "libzmq3-dev",
    "expat": "libexpat1-dev",
    "libcurl": "libcurl4-openssl-dev",
    "curl": "libcurl4-openssl-dev",
    "libzstd": "libzstd-dev",
    "zstd": "libzstd-dev",
    "liblz4": "liblz4-dev",
    "lz4": "liblz4-dev",
    "snappy": "libsnappy-dev",
    "libbrotlidec": "libbrotli-dev",
    "libbrotlienc": "libbrotli-dev",
    "libmagic": "libmagic-dev",
    "magic": "libmagic-dev",
    "libpcre": "libpcre3-dev",
    "libpcre2-8": "libpcre2-dev",
    "pcre2-8": "libpcre2-dev",
    "xmlsec1": "libxmlsec1-dev",
    "libusb-1.0": "libusb-1.0-0-dev",
    "usb-1.0": "libusb-1.0-0-dev",
    "portaudio-2.0": "portaudio19-dev",
    "portaudio": "portaudio19-dev",
    "sndfile": "libsndfile1-dev",
    "gdal": "libgdal-dev",
    "geos": "libgeos-dev",
    "geos_c": "libgeos-dev",
    "proj": "libproj-dev",
    "libavcodec": "libavcodec-dev",
    "libavformat": "libavformat-dev",
    "eigen3": "libeigen3-dev",
    "boost": "libboost-dev",
    "x11": "libx11-dev",
    "gl": "libgl-dev",
    "gtk+-3.0": "libgtk-3-dev",
    "python3": "python3-dev",
    "python3-embed": "python3-dev",
    "python": "python3-dev",
    "pythonlibs": "python3-dev",
    "icu-uc": "libicu-dev",
    "icu-i18n": "libicu-dev",
    "libarchive": "libarchive-dev",
    "archive": "libarchive-dev",
    "libgit2": "libgit2-dev",
    "git2": "libgit2-dev",
    "pkgconfig": "pkg-config",
}

# Python modules whose project on PyPI has another name.
MODULE_PROJECTS: dict[str, str] = {
    "Cython": "cython",
    "yaml": "pyyaml",
    "skbuild": "scikit-build",
    "mesonpy": "meson-python",
    "pkg_resources": "setuptools",
    "distutils": "setuptools",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "cv2": "opencv-python",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyopenssl",
    "attr": "attrs",
    "dateutil": "python-dateutil",
    "google": "protobuf",
    "grpc_tools": "grpcio-tools",
    "sipbuild": "sip",
    "pyqtbuild": "pyqt-builder",
    "poetry": "poetry-core",
    "git": "gitpython",
    "serial": "pyserial",
    "usb": "pyusb",
    "zmq": "pyzmq",
}

_BUILD_ESSENTIAL = "build-essential"
_COMPILERS = {"c": "gcc", "cxx": "g++", "c++": "g++", "fortran": "gfortran", "cuda": "nvcc"}
# What gcc runs for each language: "cannot execute 'cc1plus'" means g++ is not installed.
_GCC_PARTS = {"cc1": "gcc", "cc1plus": "g++", "f951": "gfortran", "cc1obj": "gobjc"}


# -- the diagnosis ---------------------------------------------------------------------------


class Cause(enum.StrEnum):
    """What kind of cause a diagnosis found (the rule that matched)."""

    CARGO_OFFLINE = "cargo-offline"
    RUSTUP = "rustup"
    COMPILER = "compiler"
    HEADER = "header"
    PKG_CONFIG = "pkg-config"
    MESON_WRAP = "meson-wrap"
    LIBRARY = "library"
    COMMAND = "command"
    MODULE = "module"
    HATCH_PLUGIN = "hatch-plugin"
    PIP = "pip"
    NETWORK = "network"
    FILE = "file"


@dataclass(frozen=True)
class Diagnosis:
    """One cause found in a failed build's log, and its fix."""

    kind: Cause
    cause: str  # e.g. "the C header zlib.h is not installed"
    fix: str  # e.g. "install it (Debian: apt-get install zlib1g-dev)"

    def line(self) -> str:
        """The cause and the fix as one clean line of at most ``MAX_HINT`` characters."""
        return clean_line(f"{self.cause}; {self.fix}")


def clean_line(text: str, limit: int = MAX_HINT) -> str:
    """``text`` as one printable line: every control, formatting or separator character (escape
    sequences, newlines, bidirectional overrides ...) replaced by ``?``, cut to ``limit``."""
    out = "".join(
        ch if ch == " " or unicodedata.category(ch)[0] not in "CZ" else "?" for ch in text
    )
    return out if len(out) <= limit else out[: limit - 1] + "…"


@dataclass(frozen=True)
class _Context:
    lines: Sequence[str]
    package: str | None
    settings: str  # the package's settings file, as the fix names it
    removed: frozenset[str]  # normalized names of the build requirements its settings drop


_Rule = Callable[[str, int, _Context], "Diagnosis | None"]


def diagnose(
    log_text: str,
    *,
    package: str | None = None,
    offline: bool = True,
    removed: Collection[str] = (),
) -> Diagnosis | None:
    """The cause of a failed build that the end of its log shows, if a known one, with its fix.

    ``package`` names the settings file a fix adds to; ``offline``: the build ran without network
    (without it, network failures are no cause this can name); ``removed``: the build
    requirements its settings drop (``requires_remove``), which a fix must not add back. Where
    several causes show, the one most specific wins (a missing header over a missing command
    over a network failure), and of two of a kind the later.
    """
    text = log_text[-TAIL_CHARS:].replace("\r", "\n")
    # "=== " and "$ " lines are rewheel's own (when and where, the command, its exit status).
    lines = [line[:MAX_LINE] for line in text.split("\n") if not line.startswith(("=== ", "$ "))]
    settings = f"{canonicalize_name(package)}.toml" if package else "<name>.toml"
    ctx = _Context(
        lines=lines,
        package=package,
        settings=settings,
        removed=frozenset(canonicalize_name(name) for name in removed),
    )
    rules = _RULES if offline else [r for r in _RULES if r is not _network]
    best: tuple[int, Diagnosis] | None = None
    for index, line in enumerate(lines):
        if not _TRIGGERS.search(line):
            continue
        for rank, rule in enumerate(rules):
            if best is not None and rank > best[0]:
                break
            found = rule(line, index, ctx)
            if found is not None:
                best = (rank, found)
                break
    return None if best is None else best[1]


# -- the rules, most specific first ----------------------------------------------------------

_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,79}"  # a command, library or pkg-config name
_PATH = r"[A-Za-z0-9_./+-]{1,160}"  # a header or file path
_PROJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,78}[A-Za-z0-9])?", re.ASCII)


def _install(package: str) -> str:
    return f"install it (Debian: apt-get install {package})"


def _requires_add(project: str, ctx: _Context) -> str:
    return f'add it in its settings ({ctx.settings}): [build] requires_add = ["{project}"]'


def _cargo_offline(line: str, _index: int, _ctx: _Context) -> Diagnosis | None:
    if (
        "using offline mode (--offline)" not in line
        and "but --offline was specified" not in line
        and "in the offline mode (--offline)" not in line
    ):
        return None
    return Diagnosis(
        Cause.CARGO_OFFLINE,
        "cargo needs crates that the sdist does not vendor, and builds run offline",
        "allow-list a pre-built wheel in its settings ([build] prebuilt = true) or vendor the "
        "crates with a patch",
    )


def _rustup(line: str, _index: int, _ctx: _Context) -> Diagnosis | None:
    if "rustup could not choose a version of" not in line:
        return None
    return Diagnosis(
        Cause.RUSTUP,
        "rustup's cargo and rustc find no toolchain: rustup has no default toolchain where the"
        " build looks (its RUSTUP_HOME, else ~/.rustup of the HOME rewheel ran with)",
        "run rewheel with RUSTUP_HOME set to the folder that holds rustup's toolchains, or run"
        " `rustup default stable` once as the user that runs rewheel",
    )


_MESON_COMPILERS = re.compile(r"ERROR: Unknown compiler\(s\): (.*)", re.ASCII)
_QUOTED = re.compile(r"'(" + _NAME + r")'", re.ASCII)
_CMAKE_COMPILER = re.compile(r"No CMAKE_([A-Za-z+]{1,10})_COMPILER could be found", re.ASCII)
_NO_FORTRAN = re.compile(
    r"no Fortran compiler found|Fortran compiler not found|could not find a Fortran compiler"
    r"|Need a Fortran compiler",
    re.ASCII | re.IGNORECASE,
)
_GCC_PART = re.compile(r"(?:cannot execute|error trying to exec) '(cc1|cc1plus|f951|cc1obj)'")
_CONFIGURE_CC = re.compile(r"configure: error: no acceptable (C|C\+\+) compiler found")


def _compiler(line: str, _index: int, _ctx: _Context) -> Diagnosis | None:
    command: str | None = None
    if (match := _MESON_COMPILERS.search(line)) is not None:
        tried = _QUOTED.findall(match.group(1))
        command = next((_tool_key(t) for t in tried if _tool_key(t) in COMMANDS), None)
        if command is None:
            shown = ", ".join(tried[:4])
            return Diagnosis(
                Cause.COMPILER,
                f"meson found none of the compilers it tried ({shown})",
                "install the compiler the build needs (Debian: apt-get install build-essential "
                "for C and C++, gfortran for Fortran)",
            )
    elif (match := _CMAKE_COMPILER.search(line)) is not None:
        command = _COMPILERS.get(match.group(1).lower())
    elif _NO_FORTRAN.search(line):
        command = "gfortran"
    elif (match := _GCC_PART.search(line)) is not None:
        command = _GCC_PARTS[match.group(1)]
    elif (match := _CONFIGURE_CC.search(line)) is not None:
        command = "gcc" if match.group(1) == "C" else "g++"
    if command is None:
        return None
    package = COMMANDS.get(command, _BUILD_ESSENTIAL)
    language = {"gfortran": "Fortran", "g++": "C++", "nvidia-cuda-toolkit": "CUDA"}.get(
        package, "C"
    )
    return Diagnosis(
        Cause.COMPILER, f"no {language} compiler is installed ({command})", _install(package)
    )


_HEADER = re.compile(
    r"fatal error: (?:'(" + _PATH + r")' file not found|(" + _PATH + r"): No such file or direct)",
    re.ASCII,
)


def _header(line: str, _index: int, _ctx: _Context) -> Diagnosis | None:
    if "fatal error" not in line or (match := _HEADER.search(line)) is None:
        return None
    header = match.group(1) or match.group(2)
    package = HEADERS.get(header)
    if package is None and "/" in header:
        package = HEADERS.get(header.split("/", 1)[0] + "/")
    if package is None:
        fix = f"install the Debian package that provides it (apt-file search /{header})"
    else:
        fix = _install(package)
    return Diagnosis(Cause.HEADER, f"the C header {header} is not installed", fix)


_PKG_CONFIG = re.compile(
    r"Package '?(" + _NAME + r")'? was not found in the pkg-config search path"
    r"|Package '(" + _NAME + r")', required by '[^']{0,200}', not found"
    r"|No package '(" + _NAME + r")' found",
    re.ASCII,
)
_MESON_DEPENDENCY = re.compile(r"Dependency [\"'](" + _NAME + r")[\"'] not found", re.ASCII)
_CMAKE_PACKAGE = re.compile(r"Could NOT find (" + _NAME + r")", re.ASCII)


def _pkg_config(line: str, _index: int, _ctx: _Context) -> Diagnosis | None:
    if (match := _PKG_CONFIG.search(line)) is not None:
        name = match.group(1) or match.group(2) or match.group(3)
        cause, search = f"pkg-config cannot find {name}", f"/{name}.pc"
    elif (match := _MESON_DEPENDENCY.search(line)) is not None:
        name = match.group(1)
        cause, search = f"meson cannot find the dependency {name}", f"/{name}.pc"
    elif (match := _CMAKE_PACKAGE.search(line)) is not None:
        name = match.group(1)
        cause, search = f"CMake cannot find {name}", f"{name}Config.cmake"
    else:
        return None
    package = LIBRARIES.get(name.lower())
    if package is None:
        fix = f"install the Debian package with its development files (apt-file search {search})"
    else:
        fix = f"install its development files (Debian: apt-get install {package})"
    return Diagnosis(Cause.PKG_CONFIG, cause, fix)


# meson falls back to a subproject when the system lacks a dependency; a subproject that its
# .wrap file fetches (git clone, or a download) cannot be had in a build without network.
_MESON_GIT_CLONE = re.compile(
    r"'https?://([A-Za-z0-9.-]{1,100})[^'\s]{0,300}', '(" + _NAME + r")'\]", re.ASCII
)
_MESON_DOWNLOAD = re.compile(
    r"could not get https?://([A-Za-z0-9.-]{1,100})\S{0,300} is the internet available", re.ASCII
)
_MESON_FALLBACK = re.compile(
    r"Looking for a fallback subproject for the dependency (" + _NAME + r")", re.ASCII
)


def _meson_wrap(line: str, index: int, ctx: _Context) -> Diagnosis | None:
    if "ERROR: Git command failed: [" in line and "'clone'" in line:
        match = _MESON_GIT_CLONE.search(line)
    elif "is the internet available" in line:
        match = _MESON_DOWNLOAD.search(line)
    else:
        return None
    if match is None:
        return None
    host = match.group(1)
    dependency = None
    for earlier in reversed(ctx.lines[:index]):
        if (fallback := _MESON_FALLBACK.search(earlier)) is not None:
            dependency = fallback.group(1)
            break
    subproject = (match.group(2) if match.re is _MESON_GIT_CLONE else None) or dependency
    what = f"the dependency {dependency}" if dependency else "a dependency"
    cause = (
        f"meson cannot find {what} on the system, and its fallback subproject"
        + (f" {subproject}" if subproject else "")
        + f" is fetched from {host}, which builds cannot reach"
    )
    package = LIBRARIES.get(dependency.lower()) if dependency else None
    if package is not None:
        system = f"install its development files (Debian: apt-get install {package})"
    elif dependency:
        system = f"install its development files (apt-file search /{dependency}.pc)"
    else:
        system = "install it on the system"
    folder = f"subprojects/{subproject}/" if subproject else "subprojects/"
    fix = f"{system}, or ship the subproject's source in the sdist ({folder}) with a patch"
    return Diagnosis(Cause.MESON_WRAP, cause, fix)


_LINK = re.compile(r"cannot find -l(" + _NAME + r")", re.ASCII)


def _library(line: str, _index: int, _ctx: _Context) -> Diagnosis | None:
    if (match := _LINK.search(line)) is None:
        return None
    name = match.group(1).removesuffix(":")
    package = LIBRARIES.get(name.lower())
    if package is None:
        fix = f"install the Debian package with it (apt-file search lib{name}.so)"
    else:
        fix = f"install its development files (Debian: apt-get install {package})"
    return Diagnosis(Cause.LIBRARY, f"the linker cannot find the library {name} (-l{name})", fix)


_NOT_FOUND = re.compile(
    # dash: "/bin/sh: 1: autoreconf: not found"; bash: "bash: line 1: gfortran: command not found"
    r": (?:line )?\d+: (" + _NAME + r"): (?:command )?not found\s*$"
    r"|^(?:\S*: )?(" + _NAME + r"): command not found\s*$"
    # GNU make
    r"|^\S*make(?:\[\d+\])?: (" + _NAME + r"): (?:No such file or directory|Command not found)"
    # setuptools / distutils
    r"|error: command '(" + _PATH + r")' failed: No such file or directory"
    r"|unable to execute '(" + _PATH + r")': No such file or directory"
    # meson
    r"|Program '(" + _NAME + r")' not found"
    r"|Program or command '(" + _NAME + r")' not found"
    # meson-python
    r'|meson executable "(' + _NAME + r')" not found',
    re.ASCII,
)
_FILE_NOT_FOUND = re.compile(
    r"(?:FileNotFoundError|OSError): \[Errno 2\] No such file or directory: '(" + _PATH + r")'",
    re.ASCII,
)
_CMAKE_GENERATOR = re.compile(r'unable to find a build program corresponding to "([A-Za-z ]+)"')


def _command(line: str, index: int, ctx: _Context) -> Diagnosis | None:
    name: str | None = None
    if (match := _NOT_FOUND.search(line)) is not None:
        name = next(g for g in match.groups() if g)
    elif (match := _FILE_NOT_FOUND.search(line)) is not None:
        # A program that Python's subprocess could not start: its traceback says so just
        # above; or one that is only ever a program.
        before = "\n".join(ctx.lines[max(0, index - 3) : index])
        started = "child_exception_type" in before or "_execute_child" in before
        if started or _tool_key(match.group(1)) in COMMANDS:
            name = match.group(1)
    elif (match := _CMAKE_GENERATOR.search(line)) is not None:
        name = "ninja" if match.group(1) == "Ninja" else "make"
    elif "Problem with the CMake installation" in line:
        name = "cmake"
    if name is None:
        return None
    command = _tool_key(name)
    if command in _PROBED_COMMANDS:
        return None
    cause = f"the command {command} is not installed"
    if command in PYPI_COMMANDS:
        return Diagnosis(Cause.COMMAND, cause, _requires_add(PYPI_COMMANDS[command], ctx))
    package = COMMANDS.get(command)
    declare = f'declare it in its settings ({ctx.settings}): [build] system_tools = ["{command}"]'
    if package is None:
        install = f"install the Debian package that provides it (apt-file search bin/{command})"
    else:
        install = _install(package)
    return Diagnosis(Cause.COMMAND, cause, f"{install} and {declare}")


_MODULE = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '([\w.]{1,100})'", re.A)


def _module(line: str, _index: int, ctx: _Context) -> Diagnosis | None:
    if "No module named" not in line or (match := _MODULE.search(line)) is None:
        return None
    module = match.group(1)
    top = module.split(".", 1)[0]
    if ctx.package is not None and canonicalize_name(top) == canonicalize_name(ctx.package):
        return Diagnosis(
            Cause.MODULE,
            f"the build imports its own module {module}, which cannot be imported before it "
            "is built",
            "make it read what it needs without the import, with a patch ([[patches]] in its "
            "settings)",
        )
    if module == "numpy.distutils" or module.startswith("numpy.distutils."):
        return Diagnosis(
            Cause.MODULE,
            "the build uses numpy.distutils, which numpy 2 no longer has",
            _requires_add("numpy<2", ctx).replace("add it", "pin numpy below 2", 1),
        )
    if top in sys.stdlib_module_names:
        return Diagnosis(
            Cause.MODULE,
            f"this Python has no module {module} of its standard library",
            "build with a Python that has it (one built with the development libraries the "
            "module needs)",
        )
    project = MODULE_PROJECTS.get(top, top.replace("_", "-"))
    if not _PROJECT.fullmatch(project):
        return None
    if canonicalize_name(project) in ctx.removed:
        return Diagnosis(
            Cause.MODULE,
            f"the build imports {module}, from {canonicalize_name(project)}, which its settings "
            "remove from the build requirements (requires_remove)",
            f"take the import out with a patch ([[patches]] in {ctx.settings}), or stop "
            "removing it",
        )
    return Diagnosis(
        Cause.MODULE,
        f"the build imports {module}, which it does not declare as a build requirement",
        _requires_add(canonicalize_name(project), ctx),
    )


_HATCH_PLUGIN = re.compile(
    r"Unknown (build hook|metadata hook|version source|version scheme|builder): (" + _NAME + r")",
    re.ASCII,
)
_HATCH_TABLES = {
    "build hook": "tool.hatch.build.hooks",
    "metadata hook": "tool.hatch.metadata.hooks",
    "version source": "tool.hatch.version",
    "version scheme": "tool.hatch.version",
    "builder": "tool.hatch.build.targets",
}


def _hatch_plugin(line: str, _index: int, ctx: _Context) -> Diagnosis | None:
    if "UnknownPluginError" not in line or (match := _HATCH_PLUGIN.search(line)) is None:
        return None
    kind, name = match.group(1), match.group(2)
    where = f"[{_HATCH_TABLES[kind]}.{name}]" if kind.endswith("hook") else _HATCH_TABLES[kind]
    off = f"turn it off with a patch of its pyproject.toml ({where}; [[patches]] in {ctx.settings})"
    if canonicalize_name(name) in ctx.removed:
        return Diagnosis(
            Cause.HATCH_PLUGIN,
            f"hatchling has no {kind} {name}: its settings remove {canonicalize_name(name)} "
            "from the build requirements (requires_remove), and its pyproject.toml still uses it",
            off,
        )
    return Diagnosis(
        Cause.HATCH_PLUGIN,
        f"hatchling has no {kind} {name}: the project that provides it is not among the build "
        "requirements",
        f"add that project in its settings ({ctx.settings}): [build] requires_add; or {off}",
    )


_PIP_COMMAND = re.compile(r"'-m', 'pip', (?:'[^']{0,40}', )*?'(?:install|wheel|download)'(.*)")
_PIP_ARG = re.compile(r"'([^']{0,100})'")


def _pip(line: str, _index: int, ctx: _Context) -> Diagnosis | None:
    if (match := _PIP_COMMAND.search(line)) is not None:
        args = [a for a in _PIP_ARG.findall(match.group(1)) if a and not a.startswith("-")]
        names = [n.group(0) for a in args if (n := _PROJECT.match(a)) is not None]
    elif "No module named pip" in line:
        names = []
    else:
        return None
    cause = "the build runs pip to fetch packages; builds have neither pip nor network"
    if names:
        listed = ", ".join(f'"{canonicalize_name(n)}"' for n in names[:3])
        fix = f"add them in its settings ({ctx.settings}): [build] requires_add = [{listed}]"
    else:
        fix = f"add what it fetches in its settings ({ctx.settings}): [build] requires_add"
    return Diagnosis(Cause.PIP, cause, fix)


_HOST = re.compile(
    r"Could not resolve host: ([A-Za-z0-9.-]{1,100})"
    r"|host='([A-Za-z0-9.-]{1,100})'"
    r"|unable to access 'https?://([A-Za-z0-9.-]{1,100})",
    re.ASCII,
)


def _network(line: str, _index: int, ctx: _Context) -> Diagnosis | None:
    if not mentions_network_failure(line):
        return None
    match = _HOST.search(line)
    host = next((g for g in match.groups() if g), None) if match is not None else None
    return Diagnosis(
        Cause.NETWORK,
        "the build tried to download" + (f" from {host}" if host else " something"),
        "builds have no network: add what it fetches as a build requirement "
        f"([build] requires_add in {ctx.settings}) or ship it in the sdist with a patch",
    )


def _file(line: str, _index: int, ctx: _Context) -> Diagnosis | None:
    if (match := _FILE_NOT_FOUND.search(line)) is None:
        return None
    return Diagnosis(
        Cause.FILE,
        f"the build reads {match.group(1)}, which is not there (not in the sdist?)",
        f"add it with a patch ([[patches]] in {ctx.settings})",
    )


# Some text of every rule's patterns: a line without any is not looked at again.
_TRIGGERS = re.compile(
    "|".join(
        re.escape(text)
        for text in (
            *NETWORK_FAILURES,
            "not found",
            "rustup could not choose a version of",
            "No such file",
            "cannot find -l",
            "Could NOT find",
            "No package",
            "No module named",
            "UnknownPluginError",
            "Unknown compiler",
            "Git command failed",
            "is the internet available",
            "COMPILER could be found",
            "ortran compiler",
            "cannot execute",
            "error trying to exec",
            "no acceptable",
            "Problem with the CMake",
            "unable to find a build program",
            "offline",
            "'pip'",
        )
    )
)

_RULES: list[_Rule] = [
    _cargo_offline,
    _rustup,
    _compiler,
    _header,
    _pkg_config,
    _meson_wrap,
    _library,
    _command,
    _module,
    _hatch_plugin,
    _pip,
    _network,
    _file,
]


def _tool_key(name: str) -> str:
    """A command as the tables name it: no folder, no version suffix, no target prefix
    (``/usr/bin/x86_64-linux-gnu-gcc-12`` is ``gcc``)."""
    base = name.rsplit("/", 1)[-1]
    base = re.sub(r"-\d+(?:\.\d+)*$", "", base)
    match = re.fullmatch(r"[a-z0-9_]+-(?:[a-z0-9_]+-)?linux-gnu[a-z0-9_]*-(.+)", base)
    return match.group(1) if match else base
