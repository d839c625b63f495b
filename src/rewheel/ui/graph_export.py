"""The dependency graph as chains (``rewheel why``), Graphviz DOT and a self-contained web page.

What the repository remembers (``core.history``: the run files of the last runs, merged) is drawn
as one ``Graph``: every package of every remembered run, with what became of it in the newest run
that had it; ``why`` walks the graph of that run. Pure functions over a ``Graph`` or a ``History``;
only ``read_history`` and ``read_graph`` touch the filesystem. The web page carries its own layout
code (a layered drawing in plain JavaScript and SVG), so it opens from disk or any static server
with nothing fetched from elsewhere.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from ..core.errors import ConfigError, RepositoryError, Step
from ..core.history import Edge, History, Remembered, RunFileError, RunRecord, parse_edges
from ..core.history import parse_nodes as parse_run_nodes
from ..core.report import Outcome
from ..repo.repository import Repository
from .assets import read_asset
from .text import printable

__all__ = [
    "EDGE_STYLES",
    "Edge",
    "Graph",
    "Node",
    "chains",
    "find_nodes",
    "format_chain",
    "graph_data",
    "history_graph",
    "parse_graph",
    "read_graph",
    "read_history",
    "run_graph",
    "to_dot",
    "to_html",
    "why_data",
    "why_lines",
]

# How each kind of edge is drawn, in DOT and on the web page.
EDGE_STYLES: dict[str, tuple[str, str]] = {
    # kind: (colour, DOT style)
    "install": ("#2b6cb0", "solid"),
    "build-system": ("#c05621", "dashed"),
    "build-backend": ("#6b46c1", "dotted"),
}
TOPLEVEL = "toplevel"
MAX_CHAINS = 1000
# Steps of the walk that looks for chains: all the simple paths through a dense graph with cycles
# are too many to walk, so the walk stops after this many (some 0.2 s) and says it was cut.
MAX_STEPS = 200_000


@dataclass(frozen=True)
class Node:
    id: str  # "name==version"
    name: str
    version: str
    outcome: str | None = None  # in the newest run that had it (core.report.Outcome)
    run: str | None = None  # that run (RunRecord.label)
    built_by: str | None = None  # the run that built its wheel, when another
    problem: str | None = None  # why it failed or was not built: the first line


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]

    def requested(self) -> set[str]:
        return {e.child for e in self.edges if e.parent is None}


def parse_graph(data: Any, source: str = "graph.json") -> Graph:
    """A Graph from graph.json's content; RepositoryError names what is malformed."""

    if not isinstance(data, Mapping):
        raise RepositoryError(f"{source}: not a JSON object", step=Step.GRAPH)
    try:
        raw_nodes = parse_run_nodes(data.get("nodes"), with_outcomes=False)
        edges = parse_edges(data.get("edges"))
    except RunFileError as exc:
        raise RepositoryError(f"{source}: {exc}", step=Step.GRAPH) from None
    return _graph({n.id: Node(n.id, n.name, n.version) for n in raw_nodes}, edges)


def _graph(nodes: dict[str, Node], edges: tuple[Edge, ...]) -> Graph:
    for edge in edges:
        for end in (edge.parent, edge.child):
            if end is not None and end not in nodes:
                # An edge to a node the run did not list: keep it drawable all the same.
                name, _, version = end.partition("==")
                nodes[end] = Node(end, name, version)
    return Graph(nodes=nodes, edges=edges)


def _problem(remembered: Remembered) -> str | None:
    node = remembered.node
    if node.outcome is Outcome.NOT_ATTEMPTED and node.error is None:
        return "the run ended before it was reached"
    if node.error is None or node.outcome is None or node.outcome.in_repository:
        return None
    step = f"[{node.error.step}] " if node.error.step else ""
    return f"{step}{node.error.first_line}"


def _node(remembered: Remembered) -> Node:
    node, built_by = remembered.node, remembered.built_by
    return Node(
        node.id,
        node.name,
        node.version,
        outcome=None if node.outcome is None else node.outcome.value,
        run=remembered.run.label if remembered.run.started is not None else None,
        built_by=built_by.label
        if built_by is not None and built_by is not remembered.run
        else None,
        problem=_problem(remembered),
    )


def history_graph(history: History) -> Graph:
    """Every package of every remembered run, each with what became of it in the newest run
    that had it, and every edge of those runs."""
    return _graph({r.id: _node(r) for r in history.packages.values()}, history.edges)


def run_graph(run: RunRecord) -> Graph:
    """The graph of one run."""
    return _graph({n.id: Node(n.id, n.name, n.version) for n in run.nodes}, run.edges)


def read_history(repo_root: Path) -> History:
    """What the repository remembers (``Repository.history``); RepositoryError when nothing."""
    history = Repository(Path(repo_root)).history()
    if not history.runs:
        skipped = f" ({len(history.notes)} run file(s) skipped)" if history.notes else ""
        raise RepositoryError(
            f"no run is recorded in {repo_root}{skipped}: run `rewheel bootstrap` with this "
            "--repo first",
            step=Step.GRAPH,
        )
    return history


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


def chains(
    graph: Graph, target: str, limit: int = MAX_CHAINS, *, max_steps: int = MAX_STEPS
) -> tuple[list[list[Edge]], bool]:
    """Every chain of edges from a requested package down to ``target``, and whether it was cut
    (after ``limit`` chains, or ``max_steps`` steps of the walk).

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
    steps = 0
    while stack:
        steps += 1
        if steps > max_steps:
            truncated = True
            break
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


# Whether the repository holds a wheel of (name, version) now; None: not known.
InRepository = Callable[[str, str], bool]


def why_lines(
    history: History,
    spec: str,
    limit: int = MAX_CHAINS,
    *,
    in_repository: InRepository | None = None,
) -> list[str]:
    """What ``rewheel why`` prints: for each package ``spec`` names, from the newest run that had
    it (named, with what it was asked for), what became of it there, whether its wheel is in
    the repository any more (with ``in_repository``), and every chain of that run that brings it
    in. Text from packages and indexes is made safe for a terminal."""
    found = history.matching(spec)
    if not found:
        raise _not_remembered(history, spec)
    lines: list[str] = []
    for remembered in found:
        run, node = remembered.run, remembered.node
        graph = run_graph(run)
        chains_found, truncated = chains(graph, node.id, limit)
        more = "+" if truncated else ""
        head = f"{node.id}: {len(chains_found)}{more} chain(s) from the requested packages"
        if run.started is not None:
            head += f" ({run.label})"
        lines.append(printable(head))
        lines.extend(f"  {printable(line)}" for line in _status_lines(remembered, in_repository))
        lines.extend(f"  {printable(format_chain(c))}" for c in chains_found)
        if truncated:
            lines.append(f"  ... stopped after {len(chains_found)} chains")
    return lines


def _status_lines(remembered: Remembered, in_repository: InRepository | None = None) -> list[str]:
    """What became of a package in its run, when it is not simply in the repository."""
    node, built_by = remembered.node, remembered.built_by
    gone = in_repository is not None and not in_repository(node.name, node.version)
    error = node.error
    lines: list[str] = []
    if node.outcome is Outcome.FAILED and error is not None:
        step = f" [{error.step}]" if error.step else ""
        log = f" (log: {error.log})" if error.log else ""
        lines.append(f"FAILED{step}: {error.first_line}{log}")
        lines.extend(f"  {' -> '.join(chain)}" for chain in error.chains)
        if error.hint:
            lines.append(f"  hint: {error.hint}")
    elif node.outcome is Outcome.DEPENDENCY_FAILED:
        lines.append(f"not built: {error.first_line if error else 'a dependency failed'}")
    elif node.outcome is Outcome.NOT_ATTEMPTED:
        why = error.first_line.removeprefix("not built: ") if error else ""
        lines.append(f"not attempted: {why or 'the run ended before it was reached'}")
    was_there = built_by is not None or (node.outcome is not None and node.outcome.in_repository)
    if gone and was_there:
        lines.append(
            "its wheel is no longer in the repository (removed since, by prune or by hand)"
        )
    elif built_by is not None and built_by is not remembered.run:
        lines.append(f"its wheel in the repository: built by the {built_by.label}")
    return lines


def why_data(
    history: History,
    spec: str,
    limit: int = MAX_CHAINS,
    *,
    in_repository: InRepository | None = None,
) -> dict[str, Any]:
    """``rewheel why --json``: what ``why_lines`` says, as one JSON object (docs/inspecting.md);
    ConfigError when no remembered run has ``spec``."""
    found = history.matching(spec)
    if not found:
        raise _not_remembered(history, spec)
    packages = []
    for remembered in found:
        run, node = remembered.run, remembered.node
        chains_found, truncated = chains(run_graph(run), node.id, limit)
        packages.append(
            {
                "id": node.id,
                "name": node.name,
                "version": node.version,
                "outcome": None if node.outcome is None else node.outcome.value,
                "error": None if node.error is None else node.error.to_json(),
                "run": _run_json(run),
                "built_by": None if remembered.built_by is None else _run_json(remembered.built_by),
                "in_repository": (
                    None if in_repository is None else in_repository(node.name, node.version)
                ),
                "chains": [[edge.to_json() for edge in chain] for chain in chains_found],
                "truncated": truncated,
            }
        )
    return {"format": 1, "query": spec, "packages": packages, "notes": list(history.notes)}


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "started": (
            None
            if run.started is None
            else run.started.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        ),
        "requested": list(run.requested),
        "outcome": run.outcome.value,
    }


def _not_remembered(history: History, spec: str) -> ConfigError:
    names = sorted({r.node.name for r in history.packages.values()})
    close = difflib.get_close_matches(canonicalize_name(spec.partition("==")[0]), names, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    runs = len(history.runs)
    message = f"{spec} is not in the dependency graph of the last {runs} run(s){hint}"
    stopped = history.stopped_requests(spec)
    if stopped and (error := stopped[0].error) is not None:
        message += f"; the {stopped[0].label} stopped before building it: {error.first_line}"
    return ConfigError(printable(message))


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
        attrs = ['peripheries=2, fillcolor="#dbeafe"'] if node_id in requested else []
        outcome = graph.nodes[node_id].outcome
        if outcome == Outcome.FAILED:
            attrs.append('color="#c53030", fillcolor="#fed7d7"')
        elif outcome in (Outcome.DEPENDENCY_FAILED, Outcome.NOT_ATTEMPTED):
            attrs.append('style="rounded,dashed", color="#718096"')
        if outcome is not None and not Outcome(outcome).in_repository:
            attrs.append(f"tooltip={_dot_string(outcome)}")
        text = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_dot_string(node_id)}{text};")
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
            {
                "id": n.id,
                "name": n.name,
                "version": n.version,
                "requested": n.id in requested,
                "outcome": n.outcome,
                "run": n.run,
                "built_by": n.built_by,
                "problem": n.problem,
            }
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
