"""The pure parts of checking what runs in a venv: pyc names, the byte-code comparison, the
pyvenv.cfg reader and checks, the activate path, uv's resolution output."""

from __future__ import annotations

import dis
import importlib.util
import marshal
import sys
import types
from pathlib import Path

import pytest

from rewheel.core.errors import RewheelError
from rewheel.repo.wheelfile import record_hash
from rewheel.trust import pyc_child
from rewheel.trust.bytecode import (
    CachedPyc,
    Interpreter,
    PycCheck,
    cached_pyc,
    check_bytecode,
    probe_interpreter,
)
from rewheel.trust.install import PinnedRelease, parse_pins
from rewheel.trust.venvfiles import (
    UV,
    VENV,
    check_pyvenv_cfg,
    creator_of,
    parse_pyvenv_cfg,
    prompt_option,
    venv_path_in_activate,
)

SITE = "lib/python3.11/site-packages"


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"{SITE}/a/__pycache__/m.cpython-311.pyc", CachedPyc(f"{SITE}/a/m.py", "cpython-311", 0)),
        (
            f"{SITE}/__pycache__/m.cpython-311.opt-2.pyc",
            CachedPyc(f"{SITE}/m.py", "cpython-311", 2),
        ),
        ("__pycache__/x.y.cpython-312.pyc", CachedPyc("x.y.py", "cpython-312", 0)),
        (f"{SITE}/m.pyc", None),  # sourceless: not a cache of anything
        (f"{SITE}/__pycache__/m.pyc", None),
        (  # not a name the import system makes: the tag "opt-3" of a source never there
            f"{SITE}/__pycache__/m.cpython-311.opt-3.pyc",
            CachedPyc(f"{SITE}/m.cpython-311.py", "opt-3", 0),
        ),
        (f"{SITE}/a/__pycache__/m.cpython-311.pyo", None),
    ],
)
def test_cached_pyc_names(key: str, expected: CachedPyc | None) -> None:
    assert cached_pyc(key) == expected


def test_cached_pyc_agrees_with_importlib() -> None:
    for optimization in ("", 1, 2):
        path = importlib.util.cache_from_source("/v/a/mod.py", optimization=optimization)
        found = cached_pyc(path.lstrip("/"))
        assert found is not None
        assert found.source == "v/a/mod.py"
        assert found.tag == sys.implementation.cache_tag
        assert found.optimization == (optimization or 0)


# ---------------------------------------------------------------- comparing byte-code

SOURCE = b"""\
def f(x):
    "Docstring."
    assert x
    y = 1
    def g():
        return x + y
    return g() if x in {"alpha", "beta", "gamma", "delta", "epsilon"} else 2.5
"""


def _compiled() -> types.CodeType:
    return compile(SOURCE, "/v/m.py", "exec", dont_inherit=True)


def _replace_const(code: types.CodeType, old: object, new: object) -> types.CodeType:
    consts = []
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            c = _replace_const(c, old, new)
        elif c == old and type(c) is type(old):
            c = new
        consts.append(c)
    return code.replace(co_consts=tuple(consts))


def test_the_same_code_written_in_another_order_is_the_same() -> None:
    code = _compiled()
    (function,) = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    (names,) = [c for c in function.co_consts if isinstance(c, frozenset)]
    reordered = frozenset(sorted(names, reverse=True))
    other = _replace_const(code, names, reordered)
    assert pyc_child.same_code(other, _compiled())


@pytest.mark.parametrize(("old", "new"), [(2.5, 3.5), (1, 2), (2.5, -2.5)])
def test_other_constants_are_not_the_same(old: object, new: object) -> None:
    assert not pyc_child.same_code(_replace_const(_compiled(), old, new), _compiled())


def test_other_names_or_layout_are_not_the_same() -> None:
    code = _compiled()
    (function,) = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    renamed = function.replace(co_varnames=("x", "z"))
    other = code.replace(co_consts=tuple(renamed if c is function else c for c in code.co_consts))
    assert not pyc_child.same_code(other, _compiled())
    assert not pyc_child.same_code(code.replace(co_flags=code.co_flags | 0x20), _compiled())


@pytest.mark.skipif(not hasattr(dis, "_all_opmap"), reason="no specializing interpreter")
def test_specialized_instructions_that_co_code_hides_are_not_the_same() -> None:
    # A pyc written by hand can hold a specialized instruction (BINARY_OP_ADD_INT for
    # BINARY_OP): co_code and marshal.dumps show the generic one, the interpreter runs the other.
    code = compile(b"def g(x, y):\n    return x + y\n", "/v/m.py", "exec", dont_inherit=True)
    (g,) = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    stream = marshal.dumps(code)
    at = stream.index(g.co_code) + g.co_code.index(bytes([dis.opmap["BINARY_OP"]]))
    special = bytes([dis._all_opmap["BINARY_OP_ADD_INT"]])  # type: ignore[attr-defined]
    loaded = marshal.loads(stream[:at] + special + stream[at + 1 :])
    assert marshal.dumps(loaded, 2) == marshal.dumps(code, 2)  # invisible there
    assert not pyc_child.same_code(loaded, code)


def _pyc(code: types.CodeType, flags: int = 0) -> bytes:
    return (
        importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little") + b"\0" * 8 + marshal.dumps(code)
    )


def test_the_child_judges_each_pyc(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_bytes(SOURCE)
    cases = {
        "same.pyc": _pyc(compile(SOURCE, str(source), "exec", dont_inherit=True)),
        "unchecked.pyc": _pyc(compile("X = 1", str(source), "exec"), flags=1),
        "optimized.pyc": _pyc(compile(SOURCE, str(source), "exec", dont_inherit=True, optimize=2)),
        "foreign.pyc": b"\x00\x01\x02\x03" + b"\0" * 12 + marshal.dumps(_compiled()),
        "flags.pyc": _pyc(_compiled(), flags=2),
        "garbage.pyc": importlib.util.MAGIC_NUMBER + b"\0" * 12 + b"\xff\xfe",
        "not-code.pyc": _pyc(_compiled())[:16] + marshal.dumps((1, 2)),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    interpreter = probe_interpreter(Path(sys.executable))
    verdicts = check_bytecode(interpreter, tmp_path, [PycCheck(name, "m.py", 0) for name in cases])
    assert {k: v.verdict for k, v in verdicts.items()} == {
        "same.pyc": "ok",
        "unchecked.pyc": "differs",
        "optimized.pyc": "differs",
        "foreign.pyc": "foreign",
        "flags.pyc": "bad-flags",
        "garbage.pyc": "unreadable",
        "not-code.pyc": "not-code",
    }
    assert {v.source_sha256 for v in verdicts.values()} == {record_hash(SOURCE)[len("sha256=") :]}


def test_a_child_that_dies_is_replaced_and_the_pyc_it_died_on_reported(tmp_path: Path) -> None:
    # An interpreter that answers the first item, then dies: stands for a pyc that crashes it.
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        "read -r line\n"
        f'exec {sys.executable} -c "import json,sys; items=json.loads(sys.argv[1]);'
        " print(json.dumps({'index': 0, 'verdict': 'ok', 'source_sha256': 's'}))"
        ' if items else None; sys.exit(139)" "$line"\n'
    )
    fake.chmod(0o755)
    real = probe_interpreter(Path(sys.executable))
    interpreter = Interpreter(
        real.base_executable, fake, real.version, real.implementation, real.cache_tag, real.magic
    )
    items = [PycCheck(f"{n}.pyc", "m.py", 0) for n in "abc"]
    verdicts = check_bytecode(interpreter, tmp_path, items)
    assert verdicts["a.pyc"].verdict == "ok"
    assert verdicts["b.pyc"].verdict == "crashed"
    assert verdicts["b.pyc"].detail == "the checker exited with 139"
    assert verdicts["c.pyc"].verdict == "ok"  # the next child answered it first


# ---------------------------------------------------------------- pyvenv.cfg


def _interpreter() -> Interpreter:
    return Interpreter(
        base_executable="/opt/py/bin/python3.11",
        executable=Path("/opt/py/bin/python3.11"),
        version=(3, 11, 7),
        implementation="cpython",
        cache_tag="cpython-311",
        magic="a70d0d0a",
    )


UV_CFG = """\
home = /opt/py/bin
implementation = CPython
uv = 0.9.0
version_info = 3.11.7
include-system-site-packages = false
"""


def test_pyvenv_cfg_is_read_as_site_py_reads_it() -> None:
    text = "Home = /a\r\nno equals sign\rinclude-system-site-packages=  False  \nx = a = b\n"
    assert parse_pyvenv_cfg(text) == [
        ("home", "/a"),
        ("include-system-site-packages", "False"),
        ("x", "a = b"),
    ]
    # A vertical tab does not end a line for site.py (str.splitlines would split there).
    assert parse_pyvenv_cfg("prompt = a\x0binclude-system-site-packages = true\n") == [
        ("prompt", "a\x0binclude-system-site-packages = true")
    ]


def test_creators_are_told_apart() -> None:
    assert creator_of(parse_pyvenv_cfg(UV_CFG)) == UV
    venv_cfg = "home = /x\ninclude-system-site-packages = false\nversion = 3.11.7\n"
    assert creator_of(parse_pyvenv_cfg(venv_cfg)) == VENV
    assert creator_of(parse_pyvenv_cfg(venv_cfg + "virtualenv = 20.0\n")) is None


def test_prompts() -> None:
    assert prompt_option(UV, [("prompt", "it's")]) == "it's"
    assert prompt_option(VENV, [("prompt", '"it\'s"')]) == "it's"
    assert prompt_option(VENV, []) is None


def test_a_sound_pyvenv_cfg_has_no_problem() -> None:
    pairs = parse_pyvenv_cfg(UV_CFG)
    assert check_pyvenv_cfg(pairs, interpreter=_interpreter(), creator=UV, reference=pairs) == []


def test_pyvenv_cfg_problems() -> None:
    pairs = parse_pyvenv_cfg(
        UV_CFG.replace("include-system-site-packages = false\n", "").replace(
            "uv = 0.9.0", "uv = 0.1"
        )
        + "home = /tmp/x\nnew-key = 1\n"
    )
    found = check_pyvenv_cfg(
        pairs, interpreter=_interpreter(), creator=UV, reference=parse_pyvenv_cfg(UV_CFG)
    )
    assert [key for key, _ in found] == [
        "home",
        "include-system-site-packages",
        "home",
        "new-key",
        "uv",
    ]
    unknown = check_pyvenv_cfg(
        parse_pyvenv_cfg(UV_CFG), interpreter=_interpreter(), creator=None, reference=None
    )
    assert [key for key, _ in unknown] == [None]


def test_the_path_activate_sets() -> None:
    assert venv_path_in_activate("x\nVIRTUAL_ENV='/a b/it'\"'\"'s'\n") == "/a b/it's"
    assert venv_path_in_activate('VIRTUAL_ENV="/tmp/v"\n') == "/tmp/v"
    assert venv_path_in_activate("VIRTUAL_ENV='unclosed\n") is None
    assert venv_path_in_activate("nothing\n") is None


# ---------------------------------------------------------------- uv's resolution


def test_pins_of_a_resolution() -> None:
    a, b = "a" * 64, "B" * 64
    text = (
        f"alpha==1.0 \\\n    --hash=sha256:{a}\n"
        f"beta==2.0 \\\n    --hash=sha256:{a} \\\n    --hash=sha256:{b}\n"
    )
    assert parse_pins(text) == [
        PinnedRelease("alpha", "1.0", (a,)),
        PinnedRelease("beta", "2.0", (a, b.lower())),
    ]


@pytest.mark.parametrize(
    "text", ["alpha>=1.0 --hash=sha256:" + "a" * 64, "alpha==1.0", "-e . --hash=sha256:" + "a" * 64]
)
def test_pins_that_are_not_exact_and_hashed_are_refused(text: str) -> None:
    with pytest.raises(RewheelError):
        parse_pins(text)


def test_the_probe_describes_this_interpreter() -> None:
    found = probe_interpreter(Path(sys.executable))
    assert found.version == tuple(sys.version_info[:3])
    assert found.short_version == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert found.cache_tag == sys.implementation.cache_tag
    assert found.magic == importlib.util.MAGIC_NUMBER.hex()
    assert found.base_executable == sys._base_executable  # type: ignore[attr-defined]
    assert found.home_dirs >= {str(found.executable.parent)}
