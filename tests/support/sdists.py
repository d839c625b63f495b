"""Tiny real sdists with an in-tree PEP 517 backend, for end-to-end tests without network.

API::

    @dataclass
    class SdistSpec:
        name: str                      # project name as written (e.g. "Foo_Bar")
        version: str
        build_requires: list[str]      # [build-system].requires
        dynamic_requires: list[str]    # returned by get_requires_for_build_wheel
        install_requires: list[str]    # Requires-Dist of the built wheel (markers/extras allowed)
        extras: dict[str, list[str]]   # Provides-Extra + Requires-Dist with `extra == "x"` markers
        requires_python: str | None = None
        fail_build: bool = False       # build_wheel raises with a clear message
        static_metadata: bool = True   # PKG-INFO (Metadata-Version 2.2) lists Requires-Dist and
                                       # Provides-Extra; if False it declares both Dynamic instead
        import_name: str | None = None # module name, default from name ("Foo.Bar" -> "foo_bar")
        legacy: bool = False           # only setup.py + PKG-INFO, no pyproject.toml
        sdist_format: str = "tar.gz"   # or "zip"
        # Hostile or slow backends (tests of isolation, timeouts and kills), tinybackend only:
        probe_files: list[str]         # build_info "probed": {path: readable?}, "~" expanded
        build_seconds: float = 0.0     # build_wheel first runs a child that sleeps this long
        build_fetch_url: str | None    # build_wheel first GETs this URL (fails without network)
        attack: str | None             # Python source defining attack(hook) -> dict: run first
                                       # in get_requires_for_build_wheel and build_wheel;
                                       # build_info "attack" holds what the build_wheel run found
        c_extension: str | None        # C source: build_wheel compiles it with $CC (default cc,
                                       # $CFLAGS applied) into <import_name>/_cext.so, a shared
                                       # library linked with -l<each of c_libraries>
        c_libraries: list[str]
        setuptools_extension: bool = False  # a C extension module built by setuptools (below)

    make_sdist(spec, dest_dir) -> Path  # {dist}-{version}.tar.gz (PEP 625) or .zip
    make_wheel(spec, dest_dir) -> Path  # prebuilt {dist}-{version}-py3-none-any.whl

``{dist}`` is the normalized name with ``-`` replaced by ``_`` (``Foo.Bar`` -> ``foo_bar``) and
``{version}`` the normalized version; METADATA keeps ``Name`` as written and the normalized version.
Extra names are used as written.

An sdist (top directory ``{dist}-{version}/``) holds ``PKG-INFO``, ``<import_name>/__init__.py``
(with ``__version__``) and, unless ``legacy``:

- ``pyproject.toml``: ``requires = build_requires``, ``build-backend = "tinybackend"``,
  ``backend-path = ["_backend"]``;
- ``_backend/tinybackend.py`` (stdlib only) and ``_backend/spec.json`` (what it builds). Hooks:
  ``get_requires_for_build_wheel`` (-> dynamic_requires), ``prepare_metadata_for_build_wheel``,
  ``build_wheel``, ``get_requires_for_build_sdist`` and ``build_sdist``.

``build_wheel`` writes evidence of its build environment into the wheel as
``<import_name>/_build_info.json``::

    {"requirements": {"<req as written>": "<installed version>" | null, ...},
     "env": [sorted names of PIP_* and UV_* environment variables, all of them],
     "sys_prefix": ..., "sys_executable": ..., "cwd": the folder the hook ran in,
     "pip_importable": bool, "setuptools_importable": bool, "config_settings": {...}}

With ``probe_files``, build_info also has ``"probed": {path as given: bool}``: whether the build
could open that file for reading, after ``os.path.expanduser``. With ``build_seconds``,
build_wheel writes one line ``"<its pid> <child pid>"`` to ``.tinybackend-pids`` in the source
tree, then waits for a child process (same process group) that sleeps that long.

``requirements`` covers build_requires + dynamic_requires; the build fails loudly if one of them
(without an environment marker) is not installed, which proves the build env really holds it.

A ``setuptools_extension`` sdist has ``requires = ["setuptools"]`` (a real one, which the test
serves, e.g. the wheel that ``ensurepip`` bundles) and the in-tree backend
``extbackend`` in place of tinybackend. Its ``build_wheel`` works as setuptools' own
``bdist_wheel`` does where it matters for reproducibility:
setuptools' ``build_ext`` compiles ``<import_name>/_speedups.c`` with the
interpreter's sysconfig flags and link command (``$CFLAGS``, ``$LDSHARED`` and the
``DIST_EXTRA_CONFIG`` file count), the source named by its absolute path so that ``__FILE__``
names the build folder, and with a header it writes into ``$HOME/include`` (outside the source
tree, as a build requirement's headers are); it writes ``<import_name>/_generated.py`` with a
plain ``open()``; and it stores every file with the mode it has on disk and the time
``SOURCE_DATE_EPOCH`` gives. The module ``_speedups`` has ``answer() -> 42`` and
``source() -> __FILE__``. No ``_build_info.json``.

A ``legacy`` sdist has no pyproject.toml, so a frontend falls back to
``setuptools.build_meta:__legacy__``: building it needs a real setuptools (and, for
setuptools < 70.1, the ``wheel`` package). Its ``setup.py`` maps ``dynamic_requires`` to
``setup_requires`` (which the legacy backend returns from get_requires_for_build_wheel) and, when
run for ``bdist_wheel``, writes the same ``_build_info.json`` (requirements: setuptools +
dynamic_requires) and honours ``fail_build``. ``build_requires`` must be empty for a legacy sdist.

Everything is deterministic (fixed timestamps and owners, sorted members): identical specs give
byte-identical sdists and wheels, and two builds of one sdist in one environment give identical
wheels. ``make_wheel`` uses the backend's own wheel writer, without ``_build_info.json``.
"""

from __future__ import annotations

import functools
import io
import json
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# Shared by the backend and the legacy setup.py: what the build environment looked like.
_BUILD_INFO_SOURCE = r"""
def _installed_versions(requirements):
    found = {}
    missing = []
    for req in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        name = match.group(1) if match else req
        try:
            found[req] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[req] = None
            # A marker may exclude the requirement here; without packaging we cannot evaluate it.
            if ";" not in req:
                missing.append(req)
    if missing:
        raise RuntimeError(
            "tinybackend: build requirement(s) not installed in the build environment "
            f"(sys.prefix={sys.prefix}): {', '.join(missing)}"
        )
    return found


def _readable(path):
    try:
        with open(os.path.expanduser(path), "rb") as f:
            f.read(1)
        return True
    except OSError:
        return False


def build_info(requirements, config_settings, probe_files=(), attack=None):
    info = {
        "requirements": _installed_versions(requirements),
        "env": sorted(k for k in os.environ if k.startswith(("PIP_", "UV_"))),
        "sys_prefix": sys.prefix,
        "sys_executable": sys.executable,
        "cwd": os.getcwd(),
        "pip_importable": importlib.util.find_spec("pip") is not None,
        "setuptools_importable": importlib.util.find_spec("setuptools") is not None,
        "config_settings": dict(config_settings or {}),
    }
    if probe_files:
        info["probed"] = {path: _readable(path) for path in probe_files}
    if attack is not None:
        info["attack"] = attack
    return info


def build_info_bytes(requirements, config_settings, probe_files=(), attack=None):
    info = build_info(requirements, config_settings, probe_files, attack)
    return (json.dumps(info, indent=2, sort_keys=True) + "\n").encode("utf-8")
"""

_BACKEND_SOURCE = (
    r'''"""tinybackend: the PEP 517 backend of a rewheel test sdist. Standard library only."""

import base64
import csv
import gzip
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
TAR_MTIME = 315532800  # 1980-01-01, the same instant as ZIP_DATE
WHEEL_TEXT = (
    "Wheel-Version: 1.0\n"
    "Generator: tinybackend 1.0\n"
    "Root-Is-Purelib: true\n"
    "Tag: py3-none-any\n"
)
'''
    + _BUILD_INFO_SOURCE
    + r'''

def _spec():
    with open(os.path.join(HERE, "spec.json"), encoding="utf-8") as f:
        return json.load(f)


def dist_info_name(spec):
    return f"{spec['dist']}-{spec['version']}.dist-info"


def metadata_text(spec):
    lines = ["Metadata-Version: 2.1", f"Name: {spec['name']}", f"Version: {spec['version']}"]
    if spec["requires_python"]:
        lines.append(f"Requires-Python: {spec['requires_python']}")
    lines += [f"Provides-Extra: {extra}" for extra in spec["provides_extra"]]
    lines += [f"Requires-Dist: {req}" for req in spec["requires_dist"]]
    return "\n".join(lines) + "\n"


def _urlsafe_sha256(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _zip_info(path):
    info = zipfile.ZipInfo(path, date_time=ZIP_DATE)
    info.create_system = 3  # unix, so external_attr means a mode on every platform
    info.external_attr = (0o40755 if path.endswith("/") else 0o100644) << 16
    info.compress_type = zipfile.ZIP_STORED if path.endswith("/") else zipfile.ZIP_DEFLATED
    return info


def wheel_bytes(spec, files):
    """(filename, bytes) of the wheel holding ``files`` ({archive path: bytes}) and dist-info."""
    dist_info = dist_info_name(spec)
    members = dict(files)
    members[f"{dist_info}/METADATA"] = metadata_text(spec).encode("utf-8")
    members[f"{dist_info}/WHEEL"] = WHEEL_TEXT.encode("utf-8")
    record_path = f"{dist_info}/RECORD"
    # dist-info last, RECORD at the very end, as installers expect.
    ordered = sorted(p for p in members if not p.startswith(dist_info + "/"))
    ordered += sorted(p for p in members if p.startswith(dist_info + "/"))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path in ordered:
        writer.writerow([path, _urlsafe_sha256(members[path]), len(members[path])])
    writer.writerow([record_path, "", ""])
    members[record_path] = record.getvalue().encode("utf-8")
    ordered.append(record_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in ordered:
            zf.writestr(_zip_info(path), members[path])
    return f"{spec['dist']}-{spec['version']}-py3-none-any.whl", buf.getvalue()


def tar_gz_bytes(files):
    """A deterministic .tar.gz of ``files`` ({archive path: bytes}), parent dirs included."""
    dirs = {p.rsplit("/", i)[0] for p in files for i in range(1, p.count("/") + 1)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(dirs | set(files)):
            info = tarfile.TarInfo(path)
            info.mtime = TAR_MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path in files:
                info.mode = 0o644
                info.size = len(files[path])
                tf.addfile(info, io.BytesIO(files[path]))
            else:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _tree_files(root, skip_top=()):
    """{relative posix path: bytes} under ``root``, without caches and build outputs."""
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(
            d for d in dirnames
            if d != "__pycache__" and not (rel_dir == "." and d in skip_top)
        )
        for name in sorted(filenames):
            if name.endswith(".pyc") or name == "_build_info.json":
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            with open(os.path.join(dirpath, name), "rb") as f:
                files[rel] = f.read()
    return files


def _slow_or_networked(spec):
    """What SdistSpec.build_seconds and build_fetch_url ask build_wheel to do first."""
    seconds = spec.get("build_seconds", 0)
    if seconds:
        import subprocess

        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({float(seconds)!r})"]
        )
        with open(".tinybackend-pids", "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {child.pid}\n")
        child.wait()
    url = spec.get("build_fetch_url")
    if url:
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()


# ---- PEP 517 hooks ----

def _attack(hook):
    """SdistSpec.attack: hostile code run by a hook; returns what it found (JSON-able)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "attack.py")
    if not os.path.exists(path):
        return None
    scope = {"__name__": "tinybackend_attack", "__file__": path}
    with open(path, encoding="utf-8") as f:
        exec(compile(f.read(), path, "exec"), scope)
    return scope["attack"](hook)


def get_requires_for_build_wheel(config_settings=None):
    _attack("get_requires_for_build_wheel")
    return list(_spec()["dynamic_requires"])


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    spec = _spec()
    name = dist_info_name(spec)
    target = os.path.join(metadata_directory, name)
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "METADATA"), "w", encoding="utf-8", newline="\n") as f:
        f.write(metadata_text(spec))
    with open(os.path.join(target, "WHEEL"), "w", encoding="utf-8", newline="\n") as f:
        f.write(WHEEL_TEXT)
    return name


def _compile_extension(spec):
    """SdistSpec.c_extension: a shared library in the package, so the wheel holds an ELF file."""
    import shlex
    import subprocess

    with open("_cext.c", "w", encoding="utf-8") as f:
        f.write(spec["c_extension"])
    out = os.path.join(spec["import_name"], "_cext.so")
    compiler = shlex.split(os.environ.get("CC") or "cc")
    flags = shlex.split(os.environ.get("CFLAGS", ""))
    libs = [f"-l{lib}" for lib in spec.get("c_libraries", [])]
    subprocess.run([*compiler, *flags, "-shared", "-fPIC", "-o", out, "_cext.c", *libs], check=True)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    spec = _spec()
    if spec.get("c_extension"):
        _compile_extension(spec)
    if spec["fail_build"]:
        raise RuntimeError(
            f"tinybackend: build_wheel of {spec['name']} {spec['version']} fails on purpose "
            "(SdistSpec.fail_build=True)"
        )
    found = _attack("build_wheel")
    _slow_or_networked(spec)
    info = build_info_bytes(
        spec["build_requires"] + spec["dynamic_requires"],
        config_settings,
        spec.get("probe_files", ()),
        found,
    )
    package = spec["import_name"]
    files = {
        f"{package}/{rel}": data
        for rel, data in _tree_files(os.path.join(os.getcwd(), package)).items()
    }
    files[f"{package}/_build_info.json"] = info
    filename, data = wheel_bytes(spec, files)
    os.makedirs(wheel_directory, exist_ok=True)
    with open(os.path.join(wheel_directory, filename), "wb") as f:
        f.write(data)
    return filename


def build_sdist(sdist_directory, config_settings=None):
    spec = _spec()
    top = f"{spec['dist']}-{spec['version']}"
    tree = _tree_files(os.getcwd(), skip_top=("build", "dist", ".git"))
    data = tar_gz_bytes({f"{top}/{rel}": content for rel, content in tree.items()})
    filename = top + ".tar.gz"
    os.makedirs(sdist_directory, exist_ok=True)
    with open(os.path.join(sdist_directory, filename), "wb") as f:
        f.write(data)
    return filename
'''
)

_EXT_BACKEND_SOURCE = r'''"""extbackend: a C extension built by setuptools, as bdist_wheel would."""

import base64
import csv
import hashlib
import io
import json
import os
import sys
import sysconfig
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _spec():
    with open(os.path.join(HERE, "spec.json"), encoding="utf-8") as f:
        return json.load(f)


def _tag():
    impl = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return f"{impl}-{impl}-{platform}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def _files_of(folder, prefix, suffixes):
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(suffixes):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[f"{prefix}/{name}"] = (f.read(), os.stat(path).st_mode)
    return found


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    spec = _spec()
    package = spec["import_name"]
    source = os.path.abspath(os.path.join(package, "_speedups.c"))
    # A header outside the source tree (as a build requirement's headers are, in the build
    # environment): its path lands in the debug data.
    include = os.path.join(os.environ["HOME"], "include")
    os.makedirs(include, exist_ok=True)
    with open(os.path.join(include, "extbackend_answer.h"), "w", encoding="utf-8") as f:
        f.write("static inline long extbackend_answer(void) { return 42; }\n")
    extension = Extension(f"{package}._speedups", [source], include_dirs=[include])
    dist = Distribution(
        {
            "name": spec["name"],
            "version": spec["version"],
            "script_name": "setup.py",
            "ext_modules": [extension],
        }
    )
    dist.parse_config_files()  # DIST_EXTRA_CONFIG: [build_ext] parallel
    cmd = build_ext(dist)
    cmd.build_lib = os.path.join("build", "lib")
    cmd.build_temp = os.path.join("build", "temp")
    cmd.ensure_finalized()
    cmd.run()
    with open(os.path.join(package, "_generated.py"), "w", encoding="utf-8") as f:
        f.write(f"VERSION = {spec['version']!r}\n")

    files = _files_of(package, package, (".py",))
    files.update(_files_of(os.path.join(cmd.build_lib, package), package, (".so",)))
    dist_info = f"{spec['dist']}-{spec['version']}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {spec['name']}\nVersion: {spec['version']}\n"
    wheel = (
        "Wheel-Version: 1.0\nGenerator: extbackend 1.0\nRoot-Is-Purelib: false\n"
        f"Tag: {_tag()}\n"
    )
    files[f"{dist_info}/METADATA"] = (metadata.encode(), 0o100644)
    files[f"{dist_info}/WHEEL"] = (wheel.encode(), 0o100644)
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, (data, _mode) in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files[f"{dist_info}/RECORD"] = (record.getvalue().encode(), 0o100644)
    epoch = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)
    date_time = time.gmtime(epoch)[:6]
    filename = f"{spec['dist']}-{spec['version']}-{_tag()}.whl"
    os.makedirs(wheel_directory, exist_ok=True)
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as zf:
        for path, (data, mode) in files.items():
            info = zipfile.ZipInfo(path, date_time=date_time)
            info.create_system = 3
            info.external_attr = mode << 16  # as on disk, as bdist_wheel stores it
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return filename
'''

_EXT_C_SOURCE = r"""#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "extbackend_answer.h"

static PyObject *answer(PyObject *self, PyObject *args) {
    return PyLong_FromLong(extbackend_answer());
}
static PyObject *source(PyObject *self, PyObject *args) { return PyUnicode_FromString(__FILE__); }

static PyMethodDef methods[] = {
    {"answer", answer, METH_NOARGS, "42"},
    {"source", source, METH_NOARGS, "the file this was compiled from, as the compiler saw it"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
"""

_SETUP_PY_SOURCE = (
    r'''"""setup.py of a rewheel legacy test sdist: built by setuptools.build_meta:__legacy__."""

import importlib.metadata
import importlib.util
import json
import os
import re
import sys

from setuptools import setup

SPEC = json.loads(@SPEC_JSON@)
HERE = os.path.dirname(os.path.abspath(__file__))
'''
    + _BUILD_INFO_SOURCE
    + r"""

# Only the real build records evidence: get_requires_for_build_wheel runs this file for "egg_info"
# before setup_requires are installed.
if "bdist_wheel" in sys.argv:
    if SPEC["fail_build"]:
        raise RuntimeError(
            f"tinybackend: build_wheel of {SPEC['name']} {SPEC['version']} fails on purpose "
            "(SdistSpec.fail_build=True)"
        )
    data = build_info_bytes(["setuptools", *SPEC["dynamic_requires"]], None)
    with open(os.path.join(HERE, SPEC["import_name"], "_build_info.json"), "wb") as f:
        f.write(data)

setup(
    name=SPEC["name"],
    version=SPEC["version"],
    packages=[SPEC["import_name"]],
    package_data={SPEC["import_name"]: ["_build_info.json"]},
    install_requires=SPEC["install_requires"],
    extras_require=SPEC["extras"],
    python_requires=SPEC["requires_python"],
    setup_requires=SPEC["dynamic_requires"],
)
"""
)


@dataclass
class SdistSpec:
    name: str
    version: str
    build_requires: list[str] = field(default_factory=list)
    dynamic_requires: list[str] = field(default_factory=list)
    install_requires: list[str] = field(default_factory=list)
    extras: dict[str, list[str]] = field(default_factory=dict)
    requires_python: str | None = None
    fail_build: bool = False
    static_metadata: bool = True
    import_name: str | None = None
    legacy: bool = False
    sdist_format: str = "tar.gz"
    probe_files: list[str] = field(default_factory=list)
    build_seconds: float = 0.0
    build_fetch_url: str | None = None
    attack: str | None = None
    c_extension: str | None = None
    c_libraries: list[str] = field(default_factory=list)
    setuptools_extension: bool = False


def make_sdist(spec: SdistSpec, dest_dir: Path) -> Path:
    """Write the sdist of ``spec`` into ``dest_dir`` and return its path."""
    data = _spec_data(spec)
    if spec.sdist_format not in ("tar.gz", "zip"):
        raise ValueError(f"sdist_format must be 'tar.gz' or 'zip', not {spec.sdist_format!r}")
    if spec.legacy and spec.build_requires:
        raise ValueError("a legacy sdist has no pyproject.toml, so no build_requires")
    if spec.setuptools_extension and (spec.legacy or spec.build_requires):
        raise ValueError("a setuptools_extension sdist has its own pyproject.toml (setuptools)")
    top = f"{data['dist']}-{data['version']}"
    files = {
        "PKG-INFO": _pkg_info(spec, data).encode("utf-8"),
        f"{data['import_name']}/__init__.py": _init_py(data),
    }
    if spec.setuptools_extension:
        files["pyproject.toml"] = (
            b'[build-system]\nrequires = ["setuptools"]\n'
            b'build-backend = "extbackend"\nbackend-path = ["_backend"]\n'
        )
        files["_backend/extbackend.py"] = _EXT_BACKEND_SOURCE.encode("utf-8")
        files["_backend/spec.json"] = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        files[f"{data['import_name']}/_speedups.c"] = _EXT_C_SOURCE.encode("utf-8")
    elif spec.legacy:
        spec_json = json.dumps(data, indent=2, sort_keys=True)
        files["setup.py"] = _SETUP_PY_SOURCE.replace("@SPEC_JSON@", repr(spec_json)).encode()
    else:
        files["pyproject.toml"] = _pyproject_toml(spec).encode("utf-8")
        files["_backend/tinybackend.py"] = _BACKEND_SOURCE.encode("utf-8")
        files["_backend/spec.json"] = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
        if spec.attack is not None:
            files["_backend/attack.py"] = spec.attack.encode("utf-8")
    archive = {f"{top}/{path}": content for path, content in files.items()}
    if spec.sdist_format == "zip":
        out, blob = dest_dir / f"{top}.zip", _zip_bytes(archive)
    else:
        out, blob = dest_dir / f"{top}.tar.gz", _backend().tar_gz_bytes(archive)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out.write_bytes(blob)
    return out


def make_wheel(spec: SdistSpec, dest_dir: Path) -> Path:
    """Write a prebuilt wheel of ``spec`` (no ``_build_info.json``) into ``dest_dir``."""
    data = _spec_data(spec)
    files = {f"{data['import_name']}/__init__.py": _init_py(data)}
    filename, blob = _backend().wheel_bytes(data, files)
    dest_dir.mkdir(parents=True, exist_ok=True)
    out: Path = dest_dir / filename
    out.write_bytes(blob)
    return out


@functools.cache
def _backend() -> Any:
    """The backend's source as an in-process module, so make_wheel writes wheels the same way."""
    module = types.ModuleType("tinybackend")
    module.__file__ = "tinybackend.py"
    exec(compile(_BACKEND_SOURCE, "tinybackend.py", "exec"), module.__dict__)
    return module


def _spec_data(spec: SdistSpec) -> dict[str, Any]:
    """What the backend (and setup.py) need, checked and normalized here with packaging."""
    dist = canonicalize_name(spec.name).replace("-", "_")
    import_name = spec.import_name or dist
    if not import_name.isidentifier():
        raise ValueError(f"import_name {import_name!r} is not a Python identifier")
    for req in [*spec.build_requires, *spec.dynamic_requires, *spec.install_requires]:
        Requirement(req)  # fail here, not in a build, on a typo
    if spec.requires_python is not None:
        SpecifierSet(spec.requires_python)
    requires_dist = [str(Requirement(r)) for r in spec.install_requires]
    for extra, reqs in spec.extras.items():
        requires_dist += [_with_extra_marker(r, extra) for r in reqs]
    data: dict[str, Any] = {
        "name": spec.name,
        "dist": dist,
        "version": str(Version(spec.version)),
        "import_name": import_name,
        "requires_python": spec.requires_python,
        "requires_dist": requires_dist,
        "provides_extra": list(spec.extras),
        "install_requires": list(spec.install_requires),
        "extras": {extra: list(reqs) for extra, reqs in spec.extras.items()},
        "build_requires": list(spec.build_requires),
        "dynamic_requires": list(spec.dynamic_requires),
        "fail_build": spec.fail_build,
    }
    # Only when set, so that the sdists of every other spec stay byte for byte as they were.
    if spec.probe_files:
        data["probe_files"] = list(spec.probe_files)
    if spec.build_seconds:
        data["build_seconds"] = float(spec.build_seconds)
    if spec.build_fetch_url:
        data["build_fetch_url"] = spec.build_fetch_url
    if spec.c_extension:
        data["c_extension"] = spec.c_extension
        data["c_libraries"] = list(spec.c_libraries)
    return data


def _with_extra_marker(requirement: str, extra: str) -> str:
    req = Requirement(requirement)
    marker = f'extra == "{extra}"'
    if req.marker is not None:
        marker = f"({req.marker}) and {marker}"
    req.marker = None
    return f"{req}; {Marker(marker)}"


def _pkg_info(spec: SdistSpec, data: dict[str, Any]) -> str:
    lines = ["Metadata-Version: 2.2", f"Name: {data['name']}", f"Version: {data['version']}"]
    if data["requires_python"]:
        lines.append(f"Requires-Python: {data['requires_python']}")
    if spec.static_metadata:
        lines += [f"Provides-Extra: {extra}" for extra in data["provides_extra"]]
        lines += [f"Requires-Dist: {req}" for req in data["requires_dist"]]
    else:
        lines += ["Dynamic: Requires-Dist", "Dynamic: Provides-Extra"]
    return "\n".join(lines) + "\n"


def _pyproject_toml(spec: SdistSpec) -> str:
    # A JSON array of strings is also a valid TOML array.
    return (
        "[build-system]\n"
        f"requires = {json.dumps(spec.build_requires)}\n"
        'build-backend = "tinybackend"\n'
        'backend-path = ["_backend"]\n'
    )


def _init_py(data: dict[str, Any]) -> bytes:
    doc = f'"""{data["name"]}: a rewheel test package."""'
    return f'{doc}\n\n__version__ = "{data["version"]}"\n'.encode()


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    backend = _backend()
    dirs = {p.rsplit("/", i)[0] + "/" for p in files for i in range(1, p.count("/") + 1)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(dirs | set(files)):
            zf.writestr(backend._zip_info(path), files.get(path, b""))
    return buf.getvalue()
