"""docs/records.md describes every key a build record has: checked on records of real runs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from conftest import Upstream, run_bootstrap

from rewheel.core.records import BuildRecord

DOC = Path(__file__).parent.parent / "docs" / "records.md"


def _documented_keys() -> set[str]:
    """The keys in the first column of the records table (`a`, `b` cells name two)."""
    text = DOC.read_text(encoding="utf-8")
    table = text.split("## `records/<name>-<version>.json`", 1)[1].split("\n## ", 1)[0]
    keys: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            keys.update(re.findall(r"`([a-z0-9_]+)`", first))
    return keys


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
