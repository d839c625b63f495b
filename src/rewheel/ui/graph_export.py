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

from ..core.errors import ConfigError, RepositoryError

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
        return RepositoryError(f"{source}: {what}", step="graph")

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
            f"{path} does not exist: run `rewheel bootstrap` with this --repo first", step="graph"
        ) from None
    except OSError as exc:
        raise RepositoryError(f"cannot read {path}: {exc}", step="graph") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RepositoryError(f"{path} is not valid JSON: {exc}", step="graph") from exc
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


_STYLE = """
:root { --fg: #1a202c; --muted: #718096; --bg: #ffffff; --panel: #f7fafc; --line: #e2e8f0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg);
       display: flex; height: 100vh; overflow: hidden; }
#canvas { flex: 1; position: relative; }
svg { width: 100%; height: 100%; cursor: grab; user-select: none; }
svg.dragging { cursor: grabbing; }
header { position: absolute; top: 0; left: 0; right: 0; padding: 8px 12px; display: flex;
         gap: 16px; align-items: center; background: rgba(255,255,255,.9);
         border-bottom: 1px solid var(--line); flex-wrap: wrap; }
header h1 { font-size: 15px; margin: 0; }
.legend span { margin-right: 12px; white-space: nowrap; }
.legend svg { width: 34px; height: 10px; cursor: default; vertical-align: middle; }
aside { width: 360px; border-left: 1px solid var(--line); background: var(--panel); padding: 12px;
        overflow: auto; }
aside h2 { font-size: 16px; margin: 0 0 8px; word-break: break-all; }
aside h3 { font-size: 13px; margin: 14px 0 4px; color: var(--muted); text-transform: uppercase; }
aside ul { margin: 0; padding-left: 18px; }
aside li { margin: 2px 0; word-break: break-word; }
aside a { color: #2b6cb0; cursor: pointer; text-decoration: underline; }
.chain { font-family: ui-monospace, monospace; font-size: 12px; }
.muted { color: var(--muted); }
g.node rect { fill: #f7fafc; stroke: #a0aec0; rx: 6; }
g.node.requested rect { fill: #dbeafe; stroke: #2b6cb0; stroke-width: 2; }
g.node text { font: 12px system-ui, sans-serif; fill: var(--fg); pointer-events: none; }
g.node { cursor: pointer; }
g.node:hover rect { stroke: #1a202c; }
path.edge { fill: none; stroke-width: 1.4; opacity: .7; }
path.edge.build-system { stroke-dasharray: 6 4; }
path.edge.build-backend { stroke-dasharray: 2 3; }
svg.focus g.node, svg.focus path.edge { opacity: .12; }
svg.focus g.node.hl, svg.focus path.edge.hl { opacity: 1; }
svg.focus path.edge.hl { stroke-width: 2.4; }
g.node.selected rect { stroke: #e53e3e; stroke-width: 3; }
input[type=search] { padding: 3px 6px; border: 1px solid var(--line); border-radius: 4px; }
button { padding: 3px 8px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<link rel="icon" href="data:,">
<style>@STYLE@</style>
</head>
<body>
<div id="canvas">
<header>
  <h1>@TITLE@</h1>
  <span class="legend" id="legend"></span>
  <input type="search" id="search" placeholder="find a package" list="names">
  <datalist id="names"></datalist>
  <button type="button" id="fit">fit</button>
  <span class="muted" id="stats"></span>
</header>
<svg id="graph" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="dependency graph">
  <defs id="defs"></defs>
  <g id="viewport"><g id="edges"></g><g id="nodes"></g></g>
</svg>
</div>
<aside id="panel">
  <h2>Click a package</h2>
  <p class="muted">Its chains from the requested packages are highlighted. Drag to pan, scroll to
  zoom. Solid lines: install requirements; dashed: build-system requirements (PEP 518); dotted:
  requirements the build backend asked for (PEP 517).</p>
</aside>
<script type="application/json" id="graph-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

_SCRIPT = r"""
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("graph-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.getElementById("graph");
  const viewport = document.getElementById("viewport");
  const MAX_CHAINS = 200;

  const byId = new Map(DATA.nodes.map((n) => [n.id, n]));
  const edges = DATA.edges.filter((e) => e.from !== null && byId.has(e.from) && byId.has(e.to));
  const out = new Map(), inc = new Map();
  for (const n of DATA.nodes) { out.set(n.id, []); inc.set(n.id, []); }
  edges.forEach((e, i) => { e.index = i; out.get(e.from).push(e); inc.get(e.to).push(e); });
  const requestedBy = new Map();
  for (const e of DATA.edges) {
    if (e.from === null && byId.has(e.to)) requestedBy.set(e.to, e.requirement);
  }

  function el(tag, attrs, parent) {
    const x = document.createElementNS(NS, tag);
    for (const k in attrs) x.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(x);
    return x;
  }

  // -- layered layout: requested packages on top, each package below everything that needs it --
  const roots = DATA.nodes.filter((n) => n.requested).map((n) => n.id);
  const layer = new Map(), state = new Map(), order = [], back = new Set();
  function visit(start) {
    // Iterative depth-first search; an edge to a node on the stack closes a cycle and is
    // left out of the layering.
    const stack = [[start, 0]];
    state.set(start, 1);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const list = out.get(top[0]);
      if (top[1] < list.length) {
        const e = list[top[1]++];
        const s = state.get(e.to);
        if (s === 1) back.add(e.index);
        else if (!s) { state.set(e.to, 1); stack.push([e.to, 0]); }
      } else {
        state.set(top[0], 2);
        order.push(top[0]);
        stack.pop();
      }
    }
  }
  roots.forEach((r) => { if (!state.has(r)) visit(r); });
  DATA.nodes.forEach((n) => { if (!state.has(n.id)) visit(n.id); });
  order.reverse(); // a topological order of the graph without its back edges
  for (const id of order) {
    let l = 0;
    for (const e of inc.get(id)) if (!back.has(e.index)) l = Math.max(l, layer.get(e.from) + 1);
    layer.set(id, l);
  }
  const layers = [];
  for (const id of order) (layers[layer.get(id)] = layers[layer.get(id)] || []).push(id);

  // Order within layers by the mean position of neighbours, sweeping down and up.
  const pos = new Map();
  const renumber = () => layers.forEach((ids) => ids.forEach((id, i) => pos.set(id, i)));
  renumber();
  function sweep(ids, neighbours) {
    const key = new Map();
    ids.forEach((id, i) => {
      const ns = neighbours(id);
      key.set(id, ns.length ? ns.reduce((s, x) => s + pos.get(x), 0) / ns.length : i);
    });
    ids.sort((a, b) => key.get(a) - key.get(b));
  }
  for (let round = 0; round < 8; round++) {
    for (let l = 1; l < layers.length; l++) {
      sweep(layers[l], (id) => inc.get(id).map((e) => e.from));
      renumber();
    }
    for (let l = layers.length - 2; l >= 0; l--) {
      sweep(layers[l], (id) => out.get(id).map((e) => e.to));
      renumber();
    }
  }

  // -- drawing --
  const defs = document.getElementById("defs");
  for (const kind in DATA.styles) {
    const m = el("marker", {id: "arrow-" + kind, viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse",
      orient: "auto-start-reverse"}, defs);
    el("path", {d: "M0,0 L10,5 L0,10 z", fill: DATA.styles[kind]}, m);
  }
  const gEdges = document.getElementById("edges"), gNodes = document.getElementById("nodes");
  const box = new Map(), nodeEl = new Map();
  const H = 26, GAP_X = 18, GAP_Y = 90;
  for (const n of DATA.nodes) {
    const g = el("g", {class: "node" + (n.requested ? " requested" : ""), "data-id": n.id}, gNodes);
    const r = el("rect", {height: H}, g);
    const t = el("text", {x: 8, y: 17}, g);
    t.textContent = n.id;
    const title = el("title", {}, g);
    title.textContent = n.id + (n.requested ? " (requested)" : "");
    g.addEventListener("click", (ev) => { ev.stopPropagation(); select(n.id); });
    nodeEl.set(n.id, g);
    box.set(n.id, {g: g, r: r, t: t});
  }
  let width = 0;
  layers.forEach((ids) => {
    let w = 0;
    for (const id of ids) {
      const b = box.get(id);
      b.w = Math.ceil((b.t.getComputedTextLength() || id.length * 7) + 16);
      w += b.w + GAP_X;
    }
    width = Math.max(width, w);
  });
  layers.forEach((ids, l) => {
    let w = ids.reduce((s, id) => s + box.get(id).w + GAP_X, 0);
    let x = (width - w) / 2;
    for (const id of ids) {
      const b = box.get(id);
      b.x = x; b.y = l * GAP_Y;
      b.r.setAttribute("width", b.w);
      b.g.setAttribute("transform", "translate(" + b.x + "," + b.y + ")");
      x += b.w + GAP_X;
    }
  });
  const edgeEl = [];
  for (const e of edges) {
    const a = box.get(e.from), b = box.get(e.to);
    const x1 = a.x + a.w / 2, x2 = b.x + b.w / 2;
    let d;
    if (b.y > a.y) {
      const y1 = a.y + H, y2 = b.y, my = (y1 + y2) / 2;
      d = "M" + x1 + "," + y1 + " C" + x1 + "," + my + " " + x2 + "," + my + " " + x2 + "," + y2;
    } else { // a back edge: loop around the side
      const y1 = a.y + H / 2, y2 = b.y + H / 2, side = Math.max(a.x + a.w, b.x + b.w) + 40;
      d = "M" + (a.x + a.w) + "," + y1 + " C" + side + "," + y1 + " " + side + "," + y2 + " " +
        (b.x + b.w) + "," + y2;
    }
    const colour = DATA.styles[e.kind] || "#555";
    const p = el("path", {d: d, class: "edge " + e.kind, stroke: colour,
      "marker-end": DATA.styles[e.kind] ? "url(#arrow-" + e.kind + ")" : ""}, gEdges);
    const title = el("title", {}, p);
    title.textContent = e.from + " -> " + e.to + " (" + e.kind + ": " + e.requirement + ")";
    edgeEl[e.index] = p;
  }

  // -- pan and zoom --
  let view = {x: 0, y: 0, k: 1};
  const apply = () => viewport.setAttribute("transform",
    "translate(" + view.x + "," + view.y + ") scale(" + view.k + ")");
  function fit() {
    // The header floats over the top of the drawing: fit below it.
    const rect = svg.getBoundingClientRect();
    const top = document.querySelector("header").offsetHeight + 12;
    const h = (layers.length - 1) * GAP_Y + H;
    const k = Math.min(1.5, rect.width / (width + 40), (rect.height - top - 12) / h) || 1;
    view = {k: k, x: (rect.width - width * k) / 2, y: top};
    apply();
  }
  document.getElementById("fit").addEventListener("click", fit);
  svg.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const rect = svg.getBoundingClientRect();
    const mx = ev.clientX - rect.left, my = ev.clientY - rect.top;
    const f = Math.exp(-ev.deltaY * 0.0015);
    view.x = mx - (mx - view.x) * f; view.y = my - (my - view.y) * f; view.k *= f;
    apply();
  }, {passive: false});
  let drag = null;
  svg.addEventListener("mousedown", (ev) => {
    drag = {x: ev.clientX - view.x, y: ev.clientY - view.y, moved: false};
    svg.classList.add("dragging");
  });
  window.addEventListener("mousemove", (ev) => {
    if (!drag) return;
    view.x = ev.clientX - drag.x; view.y = ev.clientY - drag.y; drag.moved = true; apply();
  });
  window.addEventListener("mouseup", () => { svg.classList.remove("dragging"); });
  svg.addEventListener("click", () => { if (!drag || !drag.moved) select(null); drag = null; });

  // -- chains of one package --
  function chainsTo(target) {
    const found = [], path = [], onPath = new Set([target]);
    let cut = false;
    (function up(id) {
      if (cut) return;
      if (requestedBy.has(id)) {
        if (found.length >= MAX_CHAINS) { cut = true; return; }
        found.push([id].concat(path.map((e) => e)));
      }
      for (const e of inc.get(id)) {
        if (onPath.has(e.from)) continue;
        onPath.add(e.from); path.unshift(e);
        up(e.from);
        path.shift(); onPath.delete(e.from);
      }
    })(target);
    found.sort((a, b) => a.length - b.length);
    return {chains: found, cut: cut};
  }
  function link(id) {
    const a = document.createElement("a");
    a.textContent = id;
    a.addEventListener("click", () => select(id));
    return a;
  }
  const panel = document.getElementById("panel");
  function section(title, items) {
    const h = document.createElement("h3");
    h.textContent = title;
    panel.appendChild(h);
    const ul = document.createElement("ul");
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "none";
      ul.appendChild(li);
    }
    items.forEach((item) => {
      const li = document.createElement("li");
      li.append(...item);
      ul.appendChild(li);
    });
    panel.appendChild(ul);
    return ul;
  }
  function select(id) {
    svg.classList.toggle("focus", id !== null);
    nodeEl.forEach((g) => g.classList.remove("hl", "selected"));
    edgeEl.forEach((p) => p && p.classList.remove("hl"));
    if (id === null) return;
    // Everything that lies on a chain from a requested package: the ancestors and the edges
    // between them.
    const anc = new Set([id]), queue = [id];
    while (queue.length) {
      for (const e of inc.get(queue.pop())) {
        if (!anc.has(e.from)) { anc.add(e.from); queue.push(e.from); }
      }
    }
    anc.forEach((a) => nodeEl.get(a).classList.add("hl"));
    for (const e of edges) {
      if (anc.has(e.from) && anc.has(e.to) && e.from !== id) edgeEl[e.index].classList.add("hl");
    }
    nodeEl.get(id).classList.add("selected");

    const n = byId.get(id);
    panel.replaceChildren();
    const h = document.createElement("h2");
    h.textContent = id;
    panel.appendChild(h);
    if (requestedBy.has(id)) {
      const p = document.createElement("p");
      p.textContent = "Requested as " + JSON.stringify(requestedBy.get(id)) + ".";
      panel.appendChild(p);
    }
    const why = (e) => " (" + e.kind + ": " + e.requirement + ")";
    section("Needed by", inc.get(id).map((e) => [link(e.from), why(e)]));
    section("Needs", out.get(id).map((e) => [link(e.to), why(e)]));
    const found = chainsTo(id);
    const ul = section("Chains (" + found.chains.length + (found.cut ? "+" : "") + ")",
      found.chains.map((c) => {
        const parts = [link(c[0])];
        for (const e of c.slice(1)) parts.push(" -[" + e.kind + "]-> ", link(e.to));
        return parts;
      }));
    ul.id = "chains";
    ul.querySelectorAll("li").forEach((li) => li.classList.add("chain"));
  }

  // -- header --
  const legend = document.getElementById("legend");
  for (const kind in DATA.styles) {
    const span = document.createElement("span");
    const s = el("svg", {viewBox: "0 0 34 10"}, span);
    el("path", {d: "M0,5 L34,5", class: "edge " + kind, stroke: DATA.styles[kind]}, s);
    span.append(" " + kind);
    legend.appendChild(span);
  }
  const names = document.getElementById("names");
  for (const n of DATA.nodes) {
    const o = document.createElement("option");
    o.value = n.id;
    names.appendChild(o);
  }
  document.getElementById("search").addEventListener("change", (ev) => {
    const q = ev.target.value.trim().toLowerCase();
    const hit = DATA.nodes.find((n) => n.id.toLowerCase() === q) ||
      DATA.nodes.find((n) => n.id.toLowerCase().startsWith(q));
    if (hit) select(hit.id);
  });
  document.getElementById("stats").textContent =
    DATA.nodes.length + " packages, " + edges.length + " edges";
  fit();
  window.addEventListener("resize", fit);
  window.rewheelGraph = {select: select, layers: layers};
})();
"""

_PLACEHOLDER = re.compile(r"@(TITLE|STYLE|SCRIPT|DATA)@")
# What the page runs and styles itself with, for the Content-Security-Policy it is served with
# (browse_pages.content_security_policy allows exactly these by hash).
INLINE_SCRIPTS = (_SCRIPT,)
INLINE_STYLES = (_STYLE,)
