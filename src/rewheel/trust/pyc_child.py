"""Run by a venv's interpreter (``python -I -S -B``): is each ``.pyc`` the compile of its source?

This file is executed as a script by the interpreter being checked, not imported by rewheel, so
it imports nothing but the standard library and keeps to syntax that older Pythons read. It
reads a JSON list of ``[pyc, source, optimize]`` on stdin and writes one JSON line per item, as
soon as it is judged (so that a file that crashes the interpreter is known by what is missing):
``{"index": i, "verdict": ..., "detail": ..., "source_sha256": ...}``.

What the interpreter runs from a pyc is the code object ``marshal.loads(data[16:])``; the 16
header bytes (magic, flags, then the source's mtime and size or its hash) only decide *whether*
the pyc is used or the source compiled again. So the header is checked only for the magic of
this interpreter and valid flags, and the code is compared with ``compile()`` of the source, as
the import system compiles it (``dont_inherit=True``, the optimization level of the file name,
the file name the pyc itself names, which changes only ``co_filename``):

- the fast path: the pyc's marshal bytes are exactly ``marshal.dumps`` of the fresh compile;
- otherwise the same code written differently: marshal marks an object as shared depending on
  its reference count in the process that wrote it, and writes frozenset constants in that
  process's hash order. Both code objects are then compared as marshal version 2 writes them (no
  shared references) with frozensets in one order; every code object of the pyc must also be in
  the form ``CodeType.replace`` gives (which rebuilds the layout of local variables, so that a
  pyc with another layout cannot hide behind it), and the bytecode the interpreter executes
  (``_co_code_adaptive``, which may hold specialized instructions that ``co_code`` hides) must
  be the same.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import marshal
import sys
import types
import warnings
from typing import Any

MAX_BYTES = 64 << 20  # a pyc or source larger than this is not compared


def _codes(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if type(const) is types.CodeType:
            out.extend(_codes(const))
    return out


def _canonical(obj: Any) -> Any:
    """``obj`` with every frozenset rebuilt in one order (their marshal bytes, sorted)."""
    kind = type(obj)
    if kind is types.CodeType:
        return obj.replace(co_consts=tuple(_canonical(c) for c in obj.co_consts))
    if kind is tuple:
        return tuple(_canonical(c) for c in obj)
    if kind is frozenset:
        items = [_canonical(c) for c in obj]
        items.sort(key=lambda c: marshal.dumps(c, 2))
        return frozenset(items)
    return obj


def _executed(code: types.CodeType) -> Any:
    return getattr(code, "_co_code_adaptive", code.co_code)


def same_code(loaded: types.CodeType, compiled: types.CodeType) -> bool:
    """Whether ``loaded`` runs as ``compiled`` does (see the module's docstring)."""
    try:
        for code in _codes(loaded):
            if marshal.dumps(code, 2) != marshal.dumps(code.replace(), 2):
                return False
        if [_executed(c) for c in _codes(loaded)] != [_executed(c) for c in _codes(compiled)]:
            return False
        return marshal.dumps(_canonical(loaded), 2) == marshal.dumps(_canonical(compiled), 2)
    except (ValueError, TypeError, RecursionError):
        return False


def _read(path: str) -> bytes | None:
    with open(path, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    return data if len(data) <= MAX_BYTES else None


def judge(pyc: str, source: str, optimize: int, magic: bytes) -> dict[str, str | None]:
    try:
        data, text = _read(pyc), _read(source)
    except OSError as exc:
        return {"verdict": "unreadable", "detail": str(exc), "source_sha256": None}
    if data is None or text is None:
        return {"verdict": "too-large", "detail": None, "source_sha256": None}
    digest = base64.urlsafe_b64encode(hashlib.sha256(text).digest()).rstrip(b"=").decode()
    out: dict[str, str | None] = {"verdict": "ok", "detail": None, "source_sha256": digest}
    if len(data) < 16 or data[:4] != magic:
        out.update(verdict="foreign", detail=data[:4].hex())
        return out
    flags = int.from_bytes(data[4:8], "little")
    if flags not in (0, 1, 3):
        out.update(verdict="bad-flags", detail=str(flags))
        return out
    try:
        loaded = marshal.loads(data[16:])
    except (ValueError, EOFError, TypeError, RecursionError) as exc:
        out.update(verdict="unreadable", detail=str(exc))
        return out
    if type(loaded) is not types.CodeType:
        out.update(verdict="not-code", detail=type(loaded).__name__)
        return out
    try:
        compiled = compile(text, loaded.co_filename, "exec", dont_inherit=True, optimize=optimize)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        out.update(verdict="source-does-not-compile", detail=str(exc)[:200])
        return out
    if marshal.dumps(compiled) != data[16:] and not same_code(loaded, compiled):
        out.update(verdict="differs")
    return out


def main() -> None:
    warnings.simplefilter("ignore")  # SyntaxWarnings of the sources are not ours to print
    items = json.load(sys.stdin)
    magic = importlib.util.MAGIC_NUMBER
    for index, (pyc, source, optimize) in enumerate(items):
        verdict = judge(pyc, source, int(optimize), magic)
        sys.stdout.write(json.dumps({"index": index, **verdict}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
