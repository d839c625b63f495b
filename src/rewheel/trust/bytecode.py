"""The interpreter a venv is made from, and whether each ``.pyc`` in it compiles from its source.

Python runs a ``__pycache__/<module>.<tag>.pyc`` instead of ``<module>.py`` whenever the pyc's
header says so: a timestamp pyc whose recorded source mtime and size match the source's, or an
unchecked-hash pyc always. So a pyc must be judged by its code, not its header: each one is
compared with what the venv's interpreter compiles from the (RECORD-verified) source. That runs
in a child process of the trusted base interpreter (``python -I -S -B``, no site, nothing of the
venv on its path), which reads the pyc with ``marshal`` and may crash on a hostile one: then the
pyc it stopped at is reported and the rest are checked by a new child. ``pyc_child`` holds the
comparison and documents what is compared.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..core.errors import Step, VerifyError

_CHILD = Path(__file__).with_name("pyc_child.py")

_PROBE = """\
import importlib.util, json, sys
print(json.dumps({
    "base_executable": getattr(sys, "_base_executable", sys.executable),
    "version": list(sys.version_info[:3]),
    "implementation": sys.implementation.name,
    "cache_tag": sys.implementation.cache_tag,
    "magic": importlib.util.MAGIC_NUMBER.hex(),
}))
"""

# Nothing of the caller's environment is needed (and -I ignores PYTHON* variables anyway).
_CHILD_ENV = {"PATH": os.defpath, "LC_ALL": "C.UTF-8"}


@dataclass(frozen=True)
class Interpreter:
    """The base interpreter a venv must be made from."""

    base_executable: str  # as it names itself (sys._base_executable): what venv creators record
    executable: Path  # the real file (links resolved)
    version: tuple[int, int, int]
    implementation: str  # "cpython"
    cache_tag: str | None  # "cpython-311": the tag of the pycs it writes and reads
    magic: str  # hex of the first four bytes of its pycs

    @property
    def short_version(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))

    @property
    def home_dirs(self) -> frozenset[str]:
        """The values a venv's ``home`` may have: the folder of the interpreter as it names
        itself, or of its real file."""
        return frozenset({os.path.dirname(self.base_executable), str(self.executable.parent)})


def probe_interpreter(python: Path) -> Interpreter:
    """Ask ``python`` (trusted: the one rewheel installs with) what it is."""
    try:
        proc = subprocess.run(
            [str(python), "-I", "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            env=_CHILD_ENV,
            timeout=60,
            check=False,
        )
        data = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise VerifyError(f"cannot run {python}: {exc}", step=Step.VERIFY) from exc
    if not isinstance(data, dict):
        raise VerifyError(
            f"cannot ask {python} what it is: {proc.stderr.strip()[-500:]}", step=Step.VERIFY
        )
    base = str(data["base_executable"])
    major, minor, micro = (int(v) for v in data["version"])
    return Interpreter(
        base_executable=base,
        executable=Path(os.path.realpath(base)),
        version=(major, minor, micro),
        implementation=str(data["implementation"]),
        cache_tag=data["cache_tag"] if isinstance(data["cache_tag"], str) else None,
        magic=str(data["magic"]),
    )


# ---------------------------------------------------------------- pyc file names


@dataclass(frozen=True)
class CachedPyc:
    """What a ``__pycache__`` file name says: its source, interpreter tag and optimization."""

    source: str  # venv-relative posix path of the .py it caches
    tag: str
    optimization: int  # 0, or 1 and 2 for .opt-1/.opt-2 (run by python -O / -OO)


def cached_pyc(key: str) -> CachedPyc | None:
    """``a/__pycache__/m.cpython-311.opt-1.pyc`` -> (``a/m.py``, cpython-311, 1); None for a
    pyc not in ``__pycache__`` or named otherwise (the import system never reads those as a
    cache of a source)."""
    parent, _, name = key.rpartition("/")
    folder, _, up = parent.rpartition("/") if "/" in parent else ("", "", parent)
    if up != "__pycache__" or not name.endswith(".pyc"):
        return None
    parts = name[: -len(".pyc")].split(".")
    optimization = 0
    if len(parts) >= 3 and parts[-1] in ("opt-1", "opt-2"):
        optimization = int(parts.pop()[-1])
    if len(parts) < 2 or not all(parts):
        return None
    tag = parts.pop()
    stem = ".".join(parts)
    return CachedPyc(f"{folder}/{stem}.py" if folder else f"{stem}.py", tag, optimization)


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class PycCheck:
    pyc: str  # venv-relative
    source: str  # venv-relative
    optimization: int


@dataclass(frozen=True)
class PycVerdict:
    """What the child said of one pyc (``pyc_child.judge``), or ``crashed``."""

    verdict: str  # ok, differs, foreign, bad-flags, unreadable, not-code, too-large,
    #               source-does-not-compile, crashed
    detail: str | None = None
    source_sha256: str | None = None  # RECORD form (urlsafe base64) of the source compiled


class BytecodeChecker(Protocol):
    def __call__(
        self, interpreter: Interpreter, root: Path, items: Sequence[PycCheck]
    ) -> Mapping[str, PycVerdict]:
        """A verdict for each item's pyc, keyed by its venv-relative path."""
        ...


def check_bytecode(
    interpreter: Interpreter, root: Path, items: Sequence[PycCheck]
) -> dict[str, PycVerdict]:
    """Run ``pyc_child`` with ``interpreter`` over ``items``, in one child per core (compiling
    is what takes the time); a child that dies is replaced."""
    parts = _split(root, items, max(1, min(_cores(), len(items) // _MIN_PER_CHILD)))
    out: dict[str, PycVerdict] = {}
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        for verdicts in pool.map(lambda part: _check_part(interpreter, root, part), parts):
            out.update(verdicts)
    return out


_MIN_PER_CHILD = 64  # fewer pycs than this a child: not worth starting another interpreter


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _split(root: Path, items: Sequence[PycCheck], count: int) -> list[list[PycCheck]]:
    """``items`` in ``count`` parts of about the same bytes of source each."""
    if count <= 1:
        return [list(items)]

    def size(item: PycCheck) -> int:
        try:
            return (root / item.source).stat().st_size
        except OSError:
            return 0

    parts: list[list[PycCheck]] = [[] for _ in range(count)]
    loads = [0] * count
    for item in sorted(items, key=size, reverse=True):
        lightest = loads.index(min(loads))
        parts[lightest].append(item)
        loads[lightest] += size(item) + 1
    return [p for p in parts if p]


def _check_part(
    interpreter: Interpreter, root: Path, items: Sequence[PycCheck]
) -> dict[str, PycVerdict]:
    out: dict[str, PycVerdict] = {}
    todo = list(items)
    while todo:
        results, failure = _run_child(interpreter, root, todo)
        for index, verdict in results.items():
            out[todo[index].pyc] = verdict
        if len(results) == len(todo):
            break
        # The child died (or hung) on the first item it did not answer: that one is reported.
        stuck = next(i for i in range(len(todo)) if i not in results)
        out[todo[stuck].pyc] = PycVerdict("crashed", failure)
        todo = [item for i, item in enumerate(todo) if i not in results and i != stuck]
    return out


def _run_child(
    interpreter: Interpreter, root: Path, items: Sequence[PycCheck]
) -> tuple[dict[int, PycVerdict], str]:
    payload = json.dumps([[str(root / i.pyc), str(root / i.source), i.optimization] for i in items])
    cmd = [str(interpreter.executable), "-I", "-S", "-B", str(_CHILD)]
    # Generous: compiling is milliseconds a file; a source built to take forever is stopped.
    timeout = 120 + len(items)
    try:
        proc = subprocess.run(
            cmd,
            input=payload,
            capture_output=True,
            text=True,
            errors="replace",
            env=_CHILD_ENV,
            timeout=timeout,
            check=False,
        )
        stdout, failure = proc.stdout, f"the checker exited with {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or b""
        stdout = partial.decode("utf-8", "replace") if isinstance(partial, bytes) else partial
        failure = f"the checker took more than {timeout} s"
    except OSError as exc:
        raise VerifyError(f"cannot run {cmd[0]}: {exc}", step=Step.VERIFY) from exc
    results: dict[int, PycVerdict] = {}
    for line in stdout.splitlines():
        try:
            data = json.loads(line)
            index = int(data["index"])
            results[index] = PycVerdict(
                str(data["verdict"]), data.get("detail"), data.get("source_sha256")
            )
        except (ValueError, KeyError, TypeError):
            continue
    return {i: v for i, v in results.items() if 0 <= i < len(items)}, failure
