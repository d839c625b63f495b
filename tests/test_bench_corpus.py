"""benchmarks/bench_corpus.py: how a bootstrap's --json report becomes one row of the table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_corpus.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _error(
    message: str, hint: str | None = None, package: str = "x", kind: str = "BuildError"
) -> dict[str, Any]:
    return {"type": kind, "message": message, "hint": hint, "package": package}


def test_built_reused_and_prebuilt_come_from_the_lists(bench: ModuleType) -> None:
    report = {"outcome": "ok", "built": ["PyYAML==6.0", "cython==3.0"], "failed": []}
    assert bench.classify(report, "pyyaml")[0] == "built"
    assert bench.classify({"outcome": "ok", "reused": ["six==1.17.0"]}, "six")[0] == "reused"
    assert bench.classify({"outcome": "ok", "prebuilt": ["a==1"]}, "a")[0] == "prebuilt"


def test_a_failure_gives_the_diagnosis_line_over_the_message(bench: ModuleType) -> None:
    node = {
        "id": "siphash24==1.9",
        "name": "siphash24",
        "error": _error("backend mesonpy failed (...)\nmore", "meson cannot find ..."),
    }
    report = {"outcome": "failed", "built": [], "failed": [node]}
    assert bench.classify(report, "siphash24") == (
        "failed",
        "meson cannot find ...",
        "siphash24==1.9",
        "backend mesonpy failed (...)",
    )
    node["error"] = _error("Rust sdist (its build requires maturin): 18 of 18 crates\nnext")
    result, cause, _, _ = bench.classify(report, "siphash24")
    assert (result, cause) == ("failed", "Rust sdist (its build requires maturin): 18 of 18 crates")


def test_a_dependency_failure_names_the_dependency(bench: ModuleType) -> None:
    node = {"id": "pdm-backend==2.5.0", "name": "pdm-backend", "error": _error("links refused")}
    report = {"outcome": "failed", "failed": [node], "not_attempted": [{"name": "typer"}]}
    assert bench.classify(report, "typer")[:3] == (
        "dependency-failed",
        "links refused",
        "pdm-backend==2.5.0",
    )


def test_a_run_stopped_by_an_error_gives_that_error(bench: ModuleType) -> None:
    report = {
        "outcome": "error",
        "failed": [],
        "error": _error(
            "no such project on the index: nope (HTTP 404 at URL)\n  nope (requested)",
            "check the name 'nope'",
            package="nope",
            kind="ResolutionError",
        ),
    }
    # Not a build's diagnosis: the message is the cause and the hint the fix, both shown.
    assert bench.classify(report, "nope")[:3] == (
        "error",
        "no such project on the index: nope (HTTP 404 at URL); fix: check the name 'nope'",
        "nope",
    )
    assert bench.classify(None, "nope")[0] == "error"


def test_cause_lines_are_one_printable_bounded_line(bench: ModuleType) -> None:
    line = bench.error_line(_error("a\x1b[31m\u202e\n  b" + "c" * 1000))
    assert "\x1b" not in line and "\u202e" not in line and "\n" not in line
    assert len(line) <= bench.CAUSE_CHARS


def test_the_table_marks_settings_and_counts_them_apart(bench: ModuleType) -> None:
    def row(name: str, result: str, settings: str | None = None) -> Any:
        return bench.Row(
            name=name,
            requirement=f"{name}==1",
            system="setuptools",
            kind="pure",
            result=result,
            wall_seconds=3.0,
            build_seconds=1.0 if result == "built" else None,
            built_in_run=1,
            cause=None if result == "built" else "why | with a bar",
            culprit=None,
            settings=settings,
            exit_code=0,
            log="x.log",
        )

    rows = [row("a", "built"), row("b", "built", "b.toml"), row("c", "failed")]
    table = bench.format_table(rows)
    assert "| b==1 | setuptools | built (settings) |" in table
    assert "why \\| with a bar" in table
    assert bench.summary(rows) == (
        "2/3 built from source (67 %), 1 of them with a settings file; 0 pre-built; "
        "1 failed (0 without a cause line)"
    )


def test_the_corpus_covers_the_build_systems_and_is_pinned(bench: ModuleType) -> None:
    kinds = {entry.kind for entry in bench.CORPUS}
    assert {"pure", "C", "C++", "Cython", "meson", "CMake", "pbr", "legacy", "Rust"} <= kinds
    assert len(bench.CORPUS) >= 40
    assert all(entry.version for entry in bench.CORPUS)
    names = [bench.normalize(entry.name) for entry in bench.CORPUS]
    assert len(names) == len(set(names))
