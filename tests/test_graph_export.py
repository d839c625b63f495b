"""The dependency graph as chains (``rewheel why``), Graphviz DOT and a self-contained web page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rewheel.cli import cli
from rewheel.core.errors import ConfigError, RepositoryError
from rewheel.core.history import History, legacy_run
from rewheel.ui.graph_export import (
    chains,
    find_nodes,
    format_chain,
    graph_data,
    parse_graph,
    read_graph,
    to_dot,
    to_html,
    why_lines,
)

GRAPH: dict[str, Any] = {
    "nodes": [
        {"id": "app==1.0", "name": "app", "version": "1.0"},
        {"id": "lib==2.0", "name": "lib", "version": "2.0"},
        {"id": "tool==1.0", "name": "tool", "version": "1.0"},
        {"id": "helper==1.0", "name": "helper", "version": "1.0"},
    ],
    "edges": [
        {"from": None, "to": "app==1.0", "requirement": "app", "kind": "toplevel"},
        {"from": "app==1.0", "to": "lib==2.0", "requirement": "lib>=2", "kind": "install"},
        {"from": "app==1.0", "to": "tool==1.0", "requirement": "tool", "kind": "build-system"},
        {
            "from": "lib==2.0",
            "to": "tool==1.0",
            "requirement": 'tool>=1; python_version >= "3"',
            "kind": "build-backend",
        },
        {"from": "tool==1.0", "to": "helper==1.0", "requirement": "helper", "kind": "install"},
        # A cycle: the walk up from tool must not loop.
        {"from": "helper==1.0", "to": "tool==1.0", "requirement": "tool", "kind": "build-system"},
    ],
}


@pytest.fixture
def graph_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "graph.json").write_text(json.dumps(GRAPH))
    return repo


def test_chains_from_the_request_to_a_package_with_the_kind_of_each_edge() -> None:
    graph = parse_graph(GRAPH)
    found, truncated = chains(graph, "tool==1.0")
    assert not truncated
    assert [format_chain(c) for c in found] == [
        "app==1.0 -[build-system: tool]-> tool==1.0",
        'app==1.0 -[install: lib>=2]-> lib==2.0 -[build-backend: tool>=1; python_version >= "3"]'
        "-> tool==1.0",
    ]
    assert all(c[0].parent is None for c in found)

    deeper, _ = chains(graph, "helper==1.0")
    assert [len(c) for c in deeper] == [3, 4]
    assert [e.kind for e in deeper[1]] == ["toplevel", "install", "build-backend", "install"]

    cut, truncated = chains(graph, "tool==1.0", limit=1)
    assert len(cut) == 1 and truncated


def test_the_walk_for_chains_stops_in_a_dense_graph_with_cycles() -> None:
    # The request (zz) needs p1; every other package needs every other one: the simple paths
    # among them that the walk up from p39 tries before it reaches zz are far too many.
    names = [f"p{i}==1" for i in range(1, 40)]
    edges = [
        {"from": None, "to": "zz==1", "requirement": "zz", "kind": "toplevel"},
        {"from": "zz==1", "to": "p1==1", "requirement": "p1", "kind": "install"},
    ]
    edges += [
        {"from": a, "to": b, "requirement": b.split("==")[0], "kind": "install"}
        for a in names
        for b in names
        if a != b
    ]
    graph = parse_graph({"nodes": [], "edges": edges})
    started = time.monotonic()
    found, truncated = chains(graph, "p39==1", limit=5, max_steps=50_000)
    assert truncated and len(found) <= 5
    assert time.monotonic() - started < 5
    lines = why_lines(History((legacy_run({"nodes": [], "edges": edges}),)), "p39")
    assert lines[-1].startswith("  ... stopped after ")


def test_why_lines_name_every_matching_version() -> None:
    graph = History((legacy_run(GRAPH),))  # graph.json of a repository without run files
    assert why_lines(graph, "App") == [
        "app==1.0: 1 chain(s) from the requested packages",
        "  app==1.0 (requested as 'app')",
    ]
    lines = why_lines(graph, "tool==1.0")
    assert lines[0] == "tool==1.0: 2 chain(s) from the requested packages"
    assert len(lines) == 3
    assert why_lines(graph, "tool", limit=1)[-1] == "  ... stopped after 1 chains"


def test_unknown_package_is_a_config_error_with_a_hint() -> None:
    graph = parse_graph(GRAPH)
    assert find_nodes(graph, "LIB") == ["lib==2.0"]
    with pytest.raises(ConfigError, match="did you mean tool"):
        find_nodes(graph, "toool")
    with pytest.raises(ConfigError, match=r"lib==9 is not in the dependency graph"):
        find_nodes(graph, "lib==9")


def test_malformed_graph_json_is_a_repository_error(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="'nodes' and 'edges'"):
        parse_graph({"nodes": []})
    with pytest.raises(RepositoryError, match="needs 'requirement' and 'kind'"):
        parse_graph({"nodes": [], "edges": [{"from": None, "to": "a==1"}]})
    with pytest.raises(RepositoryError, match="run `rewheel bootstrap`"):
        read_graph(tmp_path)
    (tmp_path / "graph.json").write_text("{")
    with pytest.raises(RepositoryError, match="not valid JSON"):
        read_graph(tmp_path)


def test_dot_tells_kinds_apart_and_escapes_quotes() -> None:
    dot = to_dot(parse_graph(GRAPH))
    assert dot.startswith("digraph rewheel {\n") and dot.endswith("}\n")
    assert '"app==1.0" [peripheries=2' in dot  # the requested package
    assert (
        '"app==1.0" -> "tool==1.0" [label="build-system: tool", color="#c05621", style=dashed];'
    ) in dot
    assert '"app==1.0" -> "lib==2.0" [label="install: lib>=2", color="#2b6cb0", style=solid];' in (
        dot
    )
    assert r"python_version >= \"3\"" in dot
    assert "style=dotted" in dot  # build-backend
    assert "toplevel" not in dot  # the request is a node's outline, not an edge


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_reads_the_dot(tmp_path: Path) -> None:
    out = subprocess.run(
        ["dot", "-Tsvg"], input=to_dot(parse_graph(GRAPH)), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr


def test_html_is_self_contained_and_script_safe() -> None:
    hostile = json.loads(json.dumps(GRAPH))
    hostile["nodes"].append({"id": "x==</script><b>", "name": "x", "version": "</script><b>"})
    hostile["edges"].append(
        {"from": "app==1.0", "to": "x==</script><b>", "requirement": "x", "kind": "install"}
    )
    page = to_html(parse_graph(hostile), title="<t>")
    assert page.count("</script>") == 2  # the data block and the code block, nothing else
    assert "<b>" not in page and "&lt;t&gt;" in page
    # Nothing is fetched from elsewhere: no src/href to another site, no stylesheet link.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert re.findall(r"<link[^>]*>", page) == ['<link rel="icon" href="data:,">']
    assert "@import" not in page
    data = json.loads(
        re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', page, re.S)[1]  # type: ignore[index]
    )
    assert data == json.loads(json.dumps(graph_data(parse_graph(hostile))))
    requested = {n["id"] for n in data["nodes"] if n["requested"]}
    assert requested == {"app==1.0"}


# -- the commands -------------------------------------------------------------------------------


def test_why_command_prints_chains_to_stdout(graph_repo: Path) -> None:
    result = CliRunner().invoke(cli, ["why", "tool", "--repo", str(graph_repo)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "tool==1.0: 2 chain(s) from the requested packages"
    assert result.stderr == ""


def test_why_command_unknown_package_exits_2(graph_repo: Path) -> None:
    from rewheel.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["why", "nope", "--repo", str(graph_repo)])
    assert exc.value.code == 2


def test_graph_command_writes_dot_and_html(graph_repo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["graph", "--dot", "--repo", str(graph_repo)])
    assert result.exit_code == 0, result.output
    assert result.stdout == to_dot(parse_graph(GRAPH))

    page = tmp_path / "g.html"
    result = runner.invoke(cli, ["graph", "--html", str(page), "--repo", str(graph_repo)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "wrote" in result.stderr
    assert page.read_text() == to_html(parse_graph(GRAPH))

    result = runner.invoke(cli, ["graph", "--repo", str(graph_repo)])
    assert result.exit_code == 2 and "--html FILE, --dot" in result.output
