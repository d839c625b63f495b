"""docs/records.md describes every key a build record and a run file have: checked on the files
of real runs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from conftest import Upstream, run_bootstrap

from rewheel.core.records import BuildRecord

DOC = Path(__file__).parent.parent / "docs" / "records.md"


def _table_keys(table: str) -> set[str]:
    """The keys in the first column of a table (`a`, `b` cells name two)."""
    keys: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            keys.update(re.findall(r"`([a-z0-9_]+)`", first))
    return keys


def _section(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def _documented_keys() -> set[str]:
    """The keys of the records table."""
    return _table_keys(_section("`records/<name>-<version>.json`"))


def _run_file_tables() -> tuple[set[str], set[str], set[str]]:
    """The keys of the run file's three tables: the run, a node, an error."""
    tables = _section("`runs/<id>.json`").split("\n\n| key |")[1:]
    assert len(tables) == 3
    run, node, error = (_table_keys("| key |" + t) for t in tables)
    return run, node, error


def test_every_key_of_a_build_record_and_of_build_order_is_documented(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"])
    assert result.ok, result.failures
    documented = _documented_keys()
    records = [json.loads(p.read_text()) for p in (repo / "records").glob("*.json")]
    entries = json.loads((repo / "build-order.json").read_text())
    assert len(records) == len(entries) == 2
    for record in [*records, *entries]:
        assert set(record) <= documented, set(record) - documented


def test_the_documented_keys_are_exactly_the_fields_of_build_record() -> None:
    fields = {f.name for f in dataclasses.fields(BuildRecord)} - {"unknown"}
    assert _documented_keys() == fields


def test_every_key_of_a_run_file_is_documented(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["bad"])
    upstream.sdist("bad", "1.0", fail_build=True)
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"], keep_going=True)
    assert list(result.failures) == ["bad==1.0"]
    (path,) = (repo / "runs").glob("*.json")
    run = json.loads(path.read_text())
    run_keys, node_keys, error_keys = _run_file_tables()
    assert set(run) == run_keys
    nodes = {n["id"]: n for n in run["nodes"]}
    assert {n["outcome"] for n in nodes.values()} == {"built", "failed"}
    for node in nodes.values():
        assert set(node) == node_keys
    assert set(nodes["bad==1.0"]["error"]) == error_keys
    assert run["edges"] and all(
        set(e) == {"from", "to", "requirement", "kind"} for e in run["edges"]
    )


def test_the_documented_run_file_keys_are_exactly_what_is_written() -> None:
    from datetime import UTC, datetime

    from rewheel.core.history import ErrorInfo, NodeRun, RunOutcome, RunRecord
    from rewheel.core.report import Outcome

    at = datetime(2025, 1, 1, tzinfo=UTC)
    node = NodeRun("a==1", "a", "1", Outcome.FAILED, error=ErrorInfo("BuildError", "boom"))
    run = RunRecord("x", at, at, ("a",), (), RunOutcome.FAILED, None, (node,), ())
    data = run.to_json()
    assert _run_file_tables() == (set(data), set(data["nodes"][0]), set(node.error.to_json()))
    # Every outcome the code knows is documented.
    documented = _section("`runs/<id>.json`")
    for outcome in [*Outcome, *RunOutcome]:
        assert f"`{outcome.value}`" in documented, outcome
