
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
  // What became of a package in the newest run that had it: failed ones and ones a failure left
  // unbuilt are drawn apart.
  const STATUS = {"failed": "failed", "dependency-failed": "unbuilt", "not-attempted": "unbuilt",
    "prebuilt": "prebuilt"};
  const STATUS_TEXT = {"failed": "failed", "dependency-failed": "not built: a dependency failed",
    "not-attempted": "not attempted", "prebuilt": "pre-built (the upstream's wheel)",
    "built": "built", "reused": "reused"};
  for (const n of DATA.nodes) {
    const status = STATUS[n.outcome] ? " " + STATUS[n.outcome] : "";
    const g = el("g", {class: "node" + (n.requested ? " requested" : "") + status,
      "data-id": n.id}, gNodes);
    const r = el("rect", {height: H}, g);
    const t = el("text", {x: 8, y: 17}, g);
    t.textContent = n.id;
    const title = el("title", {}, g);
    title.textContent = n.id + (n.requested ? " (requested)" : "") +
      (STATUS[n.outcome] ? " (" + STATUS_TEXT[n.outcome] + ")" : "");
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
    if (!drag || drag.up) return;
    view.x = ev.clientX - drag.x; view.y = ev.clientY - drag.y; drag.moved = true; apply();
  });
  // The button is up: the drag is over, whether or not a click on the background follows (a
  // click on a package stops there), so moving the mouse no longer pans.
  window.addEventListener("mouseup", () => {
    svg.classList.remove("dragging");
    if (drag) drag.up = true;
  });
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
    const facts = [];
    if (n.outcome && STATUS_TEXT[n.outcome]) {
      facts.push(["status " + (STATUS[n.outcome] || "ok"),
        STATUS_TEXT[n.outcome] + (n.problem ? ": " + n.problem : "")]);
    }
    if (n.run) facts.push(["run", "In the " + n.run + "."]);
    if (n.built_by) facts.push(["built-by", "Its wheel was built by the " + n.built_by + "."]);
    for (const [cls, text] of facts) {
      const p = document.createElement("p");
      p.className = cls;
      p.textContent = text;
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
  const counts = {};
  for (const n of DATA.nodes) {
    if (STATUS[n.outcome]) counts[STATUS[n.outcome]] = (counts[STATUS[n.outcome]] || 0) + 1;
  }
  for (const cls of ["failed", "unbuilt", "prebuilt"]) {
    if (!counts[cls]) continue;
    const span = document.createElement("span");
    const s = el("svg", {viewBox: "0 0 20 12"}, span);
    el("rect", {x: 1, y: 1, width: 18, height: 10, class: "swatch " + cls}, s);
    span.append(" " + ({failed: "failed", unbuilt: "not built", prebuilt: "pre-built"})[cls] +
      " (" + counts[cls] + ")");
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
