"""The dependency graph of a run (graph.json) as chains, Graphviz DOT and a self-contained web page.

Pure functions over a parsed ``Graph``; only ``read_graph`` touches the filesystem. The web page
carries its own layout code (a layered drawing in plain JavaScript and SVG), so it opens from disk
or any static server with nothing fetched from elsewhere.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from ..core.errors import ConfigError, RepositoryError, Step
from .assets import read_asset

# How each kind of edge is drawn, in DOT and on the web page.
EDGE_STYLES: dict[str, tuple[str, str]] = {
    # kind: (colour, DOT style)
    "install": ("#2b6cb0", "solid"),
    "build-system": ("#c05621", "dashed"),
    "build-backend": ("#6b46c1", "dotted"),
}
TOPLEVEL = "toplevel"
MAX_CHAINS = 1000


@dataclass(frozen=True)
class Node:
    id: str  # "name==version"
    name: str
    version: str


@dataclass(frozen=True)
class Edge:
    parent: str | None  # None: asked for by the user
    child: str
    requirement: str
    kind: str


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]

    def requested(self) -> set[str]:
        return {e.child for e in self.edges if e.parent is None}


def parse_graph(data: Any, source: str = "graph.json") -> Graph:
    """A Graph from graph.json's content; RepositoryError names what is malformed."""

    def bad(what: str) -> RepositoryError:
        return RepositoryError(f"{source}: {what}", step=Step.GRAPH)

    if not isinstance(data, Mapping):
        raise bad("not a JSON object")
    raw_nodes, raw_edges = data.get("nodes"), data.get("edges")
    if not isinstance(raw_nodes, list) or not isinstance(raw_edges, list):
        raise bad("needs the lists 'nodes' and 'edges'")
    nodes: dict[str, Node] = {}
    for item in raw_nodes:
        if not isinstance(item, Mapping) or not all(
            isinstance(item.get(k), str) for k in ("id", "name", "version")
        ):
            raise bad(f"a node needs 'id', 'name' and 'version': {item!r}")
        nodes[item["id"]] = Node(item["id"], item["name"], item["version"])
    edges: list[Edge] = []
    for item in raw_edges:
        if not isinstance(item, Mapping):
            raise bad(f"an edge is not an object: {item!r}")
        parent, child = item.get("from"), item.get("to")
        requirement, kind = item.get("requirement"), item.get("kind")
        if not (parent is None or isinstance(parent, str)) or not isinstance(child, str):
            raise bad(f"an edge needs 'from' (or null) and 'to': {item!r}")
        if not isinstance(requirement, str) or not isinstance(kind, str):
            raise bad(f"an edge needs 'requirement' and 'kind': {item!r}")
        for end in (parent, child):
            if end is not None and end not in nodes:
                # An edge to a node the run did not list: keep it drawable all the same.
                name, _, version = end.partition("==")
                nodes[end] = Node(end, name, version)
        edges.append(Edge(parent, child, requirement, kind))
    return Graph(nodes=nodes, edges=tuple(edges))


def read_graph(repo_root: Path) -> Graph:
    """The graph.json of a repository."""
    path = Path(repo_root) / "graph.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RepositoryError(
            f"{path} does not exist: run `rewheel bootstrap` with this --repo first",
            step=Step.GRAPH,
        ) from None
    except OSError as exc:
        raise RepositoryError(f"cannot read {path}: {exc}", step=Step.GRAPH) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RepositoryError(f"{path} is not valid JSON: {exc}", step=Step.GRAPH) from exc
    return parse_graph(data, str(path))


# -- chains -----------------------------------------------------------------------------------


def find_nodes(graph: Graph, spec: str) -> list[str]:
    """The node ids ``spec`` names: "name" (every version) or "name==version".

    ConfigError when none matches, with the closest names as a hint.
    """
    name, sep, version = spec.strip().partition("==")
    wanted = canonicalize_name(name)
    found = sorted(
        n.id
        for n in graph.nodes.values()
        if canonicalize_name(n.name) == wanted and (not sep or n.version == version.strip())
    )
    if not found:
        names = sorted({n.name for n in graph.nodes.values()})
        close = difflib.get_close_matches(wanted, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{spec} is not in the dependency graph{hint}")
    return found


def chains(graph: Graph, target: str, limit: int = MAX_CHAINS) -> tuple[list[list[Edge]], bool]:
    """Every chain of edges from a requested package down to ``target``, and whether it was cut.

    A chain starts with the top-level edge (parent None) and ends with an edge into ``target``;
    no node appears twice in one chain. Shortest chains first.
    """
    incoming: dict[str, list[Edge]] = {}
    for edge in graph.edges:
        incoming.setdefault(edge.child, []).append(edge)
    for edges in incoming.values():
        edges.sort(key=lambda e: (e.parent is not None, e.parent or "", e.kind, e.requirement))

    found: list[list[Edge]] = []
    truncated = False
    path: list[Edge] = []
    on_path = {target}

    # Walks up from the target; iterative so that a deep graph cannot exhaust the stack.
    stack: list[tuple[str, int]] = [(target, 0)]
    while stack:
        node, i = stack.pop()
        options = incoming.get(node, [])
        if i >= len(options):
            if path:
                on_path.discard(node)
                path.pop()
            continue
        stack.append((node, i + 1))
        edge = options[i]
        if edge.parent is None:
            if len(found) >= limit:
                truncated = True
                break
            found.append([edge, *reversed(path)])
        elif edge.parent not in on_path:
            path.append(edge)
            on_path.add(edge.parent)
            stack.append((edge.parent, 0))
    found.sort(key=lambda c: (len(c), [(e.parent or "", e.child) for e in c]))
    return found, truncated


def format_chain(chain: Sequence[Edge]) -> str:
    """``requests==2.34.2 -[install: urllib3<3]-> urllib3==2.8.0``; starts at the request."""
    first = chain[0]
    if len(chain) == 1:
        return f"{first.child} (requested as {first.requirement!r})"
    text = first.child
    for edge in chain[1:]:
        text += f" -[{edge.kind}: {edge.requirement}]-> {edge.child}"
    return text


def why_lines(graph: Graph, spec: str, limit: int = MAX_CHAINS) -> list[str]:
    """What ``rewheel why`` prints: for each matching node, every chain that brings it in."""
    lines: list[str] = []
    for node in find_nodes(graph, spec):
        found, truncated = chains(graph, node, limit)
        more = "+" if truncated else ""
        lines.append(f"{node}: {len(found)}{more} chain(s) from the requested packages")
        lines.extend(f"  {format_chain(c)}" for c in found)
        if truncated:
            lines.append(f"  ... stopped after {limit} chains")
    return lines


# -- Graphviz ---------------------------------------------------------------------------------


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT: requested packages doubly outlined, edges styled by kind."""
    requested = graph.requested()
    lines = [
        "digraph rewheel {",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#f7f7f7", fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for node_id in sorted(graph.nodes):
        attrs = ' [peripheries=2, fillcolor="#dbeafe"]' if node_id in requested else ""
        lines.append(f"  {_dot_string(node_id)}{attrs};")
    for edge in graph.edges:
        if edge.parent is None:
            continue
        colour, style = EDGE_STYLES.get(edge.kind, ("#555555", "solid"))
        label = f"{edge.kind}: {edge.requirement}"
        lines.append(
            f"  {_dot_string(edge.parent)} -> {_dot_string(edge.child)} "
            f'[label={_dot_string(label)}, color="{colour}", style={style}];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- the web page -----------------------------------------------------------------------------


def graph_data(graph: Graph) -> dict[str, Any]:
    """What the web page's script draws."""
    requested = graph.requested()
    return {
        "nodes": [
            {"id": n.id, "name": n.name, "version": n.version, "requested": n.id in requested}
            for n in sorted(graph.nodes.values(), key=lambda n: n.id)
        ],
        "edges": [
            {"from": e.parent, "to": e.child, "requirement": e.requirement, "kind": e.kind}
            for e in graph.edges
        ],
        "styles": {kind: colour for kind, (colour, _) in EDGE_STYLES.items()},
    }


def _script_json(data: object) -> str:
    # Safe inside <script>: no "</script>", no "<!--", whatever the names hold.
    return (
        json.dumps(data, sort_keys=True)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def to_html(graph: Graph, title: str = "rewheel dependency graph") -> str:
    """One self-contained page (inline CSS and JS, nothing fetched) that draws the graph."""
    values = {
        "TITLE": html.escape(title),
        "STYLE": _STYLE,
        "SCRIPT": _SCRIPT,
        "DATA": _script_json(graph_data(graph)),
    }
    # One pass: a title or a name that spells a placeholder is not expanded in turn.
    return _PLACEHOLDER.sub(lambda m: values[m[1]], _PAGE)


# The page's own files (src/rewheel/ui/assets/), read once: real CSS, HTML and JavaScript that
# editors and linters understand, inlined into the page so that it needs nothing from elsewhere.
_STYLE = read_asset("graph.css")
_PAGE = read_asset("graph.html")
_SCRIPT = read_asset("graph.js")
_PLACEHOLDER = re.compile(r"@(TITLE|STYLE|SCRIPT|DATA)@")
# What the page runs and styles itself with, for the Content-Security-Policy it is served with
# (browse_pages.content_security_policy allows exactly these by hash).
INLINE_SCRIPTS = (_SCRIPT,)
INLINE_STYLES = (_STYLE,)
