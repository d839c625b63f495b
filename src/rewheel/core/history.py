"""What a repository remembers of its runs: one run file per bootstrap, and their merged view.

Every bootstrap that gets as far as building writes ``runs/<id>.json`` when it ends, whether it
succeeded, some packages failed, an error stopped it or it was interrupted: what it was asked for,
every package of its graph with what became of it (built, reused, pre-built, failed with its step,
message and log, or left unbuilt and why), and every edge. ``History`` merges the remembered runs
into one view: for each package, the newest run that had it and the newest that built it.
``rewheel why``, the graph page and the browsable pages read that view, so a package of an earlier
run, or one that a failed run never built, is still found, with its chains.

Pure: values in, values out; ``repo.repository`` reads and writes the files. A run file is read
from disk, where a hand edit may have left anything: ``RunRecord.from_json`` checks every type and
raises ``RunFileError`` naming the key, and the reader skips that file with a note.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import ResolutionError, RewheelError
from .report import BootstrapResult, Outcome
from .versions import same_version

__all__ = [
    "FORMAT",
    "KEEP_RUNS",
    "RUN_FILE",
    "Edge",
    "ErrorInfo",
    "History",
    "NodeRun",
    "Remembered",
    "RunFileError",
    "RunOutcome",
    "RunRecord",
    "legacy_run",
    "parse_edges",
    "parse_nodes",
    "run_id",
    "run_nodes",
]

FORMAT = 1
# Run files kept: the newest 50. A run file is about the size of its graph.json (some 100 kB for a
# tree of 100 packages), so 50 of them stay about 5 MB, read and merged in about half a second.
# A package that none of them mentions is still in the repository with its build record; only
# the chains that brought it in are forgotten.
KEEP_RUNS = 50
# What a run file keeps of one error message: the log has the rest.
MAX_MESSAGE = 4000
MAX_CHAINS = 20
# runs/<started, UTC, to the millisecond>-<8 random hex digits>.json: the names sort by time.
RUN_FILE = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-([0-9a-f]{8})\.json$")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class RunFileError(ValueError):
    """A run file (or graph.json) that does not have the shape of one; the message names the key."""


class RunOutcome(enum.StrEnum):
    """How a run ended."""

    OK = "ok"  # every package is in the repository
    FAILED = "failed"  # some packages failed (and others were left unbuilt); the rest was kept
    ERROR = "error"  # an error stopped the run (``error`` says which)
    INTERRUPTED = "interrupted"  # interrupted (Ctrl-C); what was built was kept


def run_outcome(result: BootstrapResult | None, error: BaseException | None) -> RunOutcome:
    """How a run ended that left ``result`` (None: nothing done) or was stopped by ``error``."""
    if error is not None:
        return RunOutcome.INTERRUPTED if isinstance(error, KeyboardInterrupt) else RunOutcome.ERROR
    if result is not None and not result.ok:
        return RunOutcome.FAILED
    return RunOutcome.OK


def run_id(started: datetime, token: str) -> str:
    """The id of a run, its file's name without ``.json``: sorts by start time."""
    at = started.astimezone(UTC)
    return f"{at:%Y%m%dT%H%M%S}.{at.microsecond // 1000:03d}Z-{token}"


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ErrorInfo:
    """An error as a run file keeps it: what it said, where, and the log that has the rest."""

    type: str  # the error's class, e.g. "BuildError"
    message: str
    step: str | None = None
    package: str | None = None
    version: str | None = None
    log: str | None = None
    hint: str | None = None
    chains: tuple[tuple[str, ...], ...] = ()  # a resolution error's chains of requirements

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, KeyboardInterrupt):
            return cls(type="KeyboardInterrupt", message="interrupted")
        if not isinstance(exc, RewheelError):
            return cls(type=type(exc).__name__, message=_clip(str(exc) or type(exc).__name__))
        chains = exc.chains[:MAX_CHAINS] if isinstance(exc, ResolutionError) else []
        return cls(
            type=type(exc).__name__,
            message=_clip(exc.message or type(exc).__name__),
            step=None if exc.step is None else str(exc.step),
            package=exc.package,
            version=exc.version,
            log=None if exc.log_path is None else str(exc.log_path),
            hint=None if exc.hint is None else _clip(exc.hint),
            chains=tuple(tuple(_clip(link, 500) for link in c[:50]) for c in chains),
        )

    @property
    def first_line(self) -> str:
        lines = self.message.strip().splitlines()
        return lines[0] if lines else self.type

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": self.message,
            "step": self.step,
            "package": self.package,
            "version": self.version,
            "log": self.log,
            "hint": self.hint,
            "chains": [list(c) for c in self.chains],
        }

    @classmethod
    def from_json(cls, data: object, where: str) -> ErrorInfo:
        item = _Reader(data, where)
        chains = item.data.get("chains") or []
        if not isinstance(chains, list) or not all(
            isinstance(c, list) and all(isinstance(x, str) for x in c) for c in chains
        ):
            raise RunFileError(f"{where}: 'chains' must be a list of lists of strings")
        return cls(
            type=item.text("type"),
            message=item.text("message"),
            step=item.optional_text("step"),
            package=item.optional_text("package"),
            version=item.optional_text("version"),
            log=item.optional_text("log"),
            hint=item.optional_text("hint"),
            chains=tuple(tuple(c) for c in chains),
        )


@dataclass(frozen=True)
class Edge:
    """One requirement of the graph: ``parent`` (None: asked for by the user) needs ``child``."""

    parent: str | None
    child: str
    requirement: str
    kind: str

    def to_json(self) -> dict[str, str | None]:
        return {
            "from": self.parent,
            "to": self.child,
            "requirement": self.requirement,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class NodeRun:
    """One package (``name==version``) in one run, and what became of it there."""

    id: str
    name: str
    version: str
    outcome: Outcome | None  # None: not recorded (graph.json of a run before run files)
    wheel: str | None = None  # the wheel the run built, reused or took
    seconds: float | None = None  # how long its build took
    error: ErrorInfo | None = None  # failed: its own error; left unbuilt: why

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "outcome": None if self.outcome is None else self.outcome.value,
            "wheel": self.wheel,
            "seconds": self.seconds,
            "error": None if self.error is None else self.error.to_json(),
        }


class _Reader:
    """Typed reads of one JSON object's keys, each failure naming the key and where it is."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, Mapping):
            raise RunFileError(f"{where}: not a JSON object")
        self.data: Mapping[str, Any] = data
        self.where = where

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise RunFileError(f"{self.where}: {key!r} must be a string")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise RunFileError(f"{self.where}: {key!r} must be a string or null")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RunFileError(f"{self.where}: {key!r} must be a list of strings")
        return tuple(value)

    def optional_number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RunFileError(f"{self.where}: {key!r} must be a number or null")
        return float(value)

    def time(self, key: str) -> datetime:
        text = self.text(key)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise RunFileError(f"{self.where}: {key!r} is not a time: {text!r}") from None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise RunFileError(f"{self.where}: {key!r} must be a list")
        return value


def parse_edges(raw: object) -> tuple[Edge, ...]:
    """The ``edges`` of graph.json or of a run file."""
    if not isinstance(raw, list):
        raise RunFileError("needs the lists 'nodes' and 'edges'")
    edges = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise RunFileError(f"an edge is not an object: {item!r}")
        parent, child = item.get("from"), item.get("to")
        requirement, kind = item.get("requirement"), item.get("kind")
        if not (parent is None or isinstance(parent, str)) or not isinstance(child, str):
            raise RunFileError(f"an edge needs 'from' (or null) and 'to': {item!r}")
        if not isinstance(requirement, str) or not isinstance(kind, str):
            raise RunFileError(f"an edge needs 'requirement' and 'kind': {item!r}")
        edges.append(Edge(parent, child, requirement, kind))
    return tuple(edges)


def parse_nodes(raw: object, *, with_outcomes: bool) -> tuple[NodeRun, ...]:
    """The ``nodes`` of a run file (``with_outcomes``) or of graph.json (only id, name, version)."""
    if not isinstance(raw, list):
        raise RunFileError("needs the lists 'nodes' and 'edges'")
    nodes = []
    for item in raw:
        if not isinstance(item, Mapping) or not all(
            isinstance(item.get(k), str) for k in ("id", "name", "version")
        ):
            raise RunFileError(f"a node needs 'id', 'name' and 'version': {item!r}")
        if not with_outcomes:
            nodes.append(NodeRun(item["id"], item["name"], item["version"], None))
            continue
        where = f"node {item['id']!r}"
        reader = _Reader(item, where)
        try:
            outcome = Outcome(reader.text("outcome"))
        except ValueError:
            raise RunFileError(f"{where}: unknown 'outcome' {item.get('outcome')!r}") from None
        error = item.get("error")
        nodes.append(
            NodeRun(
                id=item["id"],
                name=item["name"],
                version=item["version"],
                outcome=outcome,
                wheel=reader.optional_text("wheel"),
                seconds=reader.optional_number("seconds"),
                error=None if error is None else ErrorInfo.from_json(error, f"{where} 'error'"),
            )
        )
    return tuple(nodes)


def run_nodes(result: BootstrapResult) -> tuple[tuple[NodeRun, ...], tuple[Edge, ...]]:
    """Every package of ``result``'s graph with what became of it, and every edge: what a run
    file keeps of a run (and ``rewheel bootstrap --json`` prints)."""
    nodes: list[NodeRun] = []
    edges = parse_edges(result.graph.get("edges", []))
    listed = parse_nodes(result.graph.get("nodes", []), with_outcomes=False)
    known = {n.id for n in listed}
    for edge in edges:  # an edge's end the graph does not list: still a package
        for end in (edge.parent, edge.child):
            if end is not None and end not in known:
                name, _, version = end.partition("==")
                listed += (NodeRun(end, name, version, None),)
                known.add(end)
    records = {r.node: r for r in result.order}
    for node in listed:
        outcome_here = result.outcomes.get(node.id, Outcome.NOT_ATTEMPTED)
        record = records.get(node.id)
        exc = result.failures.get(node.id) or result.unbuilt.get(node.id)
        seconds = (
            record.seconds
            if record is not None and outcome_here in (Outcome.BUILT, Outcome.PREBUILT)
            else None
        )
        nodes.append(
            NodeRun(
                id=node.id,
                name=node.name,
                version=node.version,
                outcome=outcome_here,
                wheel=record.wheel if record is not None else None,
                seconds=seconds,
                error=ErrorInfo.of(exc) if exc is not None else None,
            )
        )
    return tuple(nodes), edges


@dataclass(frozen=True)
class RunRecord:
    """One bootstrap as its run file tells it."""

    id: str
    started: datetime | None  # None: the last run before run files were written (graph.json)
    finished: datetime | None
    requested: tuple[str, ...]  # the requirements as given (command line, -r files)
    constraints: tuple[str, ...]
    outcome: RunOutcome
    error: ErrorInfo | None  # what stopped the run (ERROR, INTERRUPTED)
    nodes: tuple[NodeRun, ...]
    edges: tuple[Edge, ...]

    @classmethod
    def of(
        cls,
        result: BootstrapResult | None,
        *,
        id: str,
        started: datetime,
        finished: datetime,
        requested: Sequence[str],
        constraints: Sequence[str] = (),
        error: BaseException | None = None,
    ) -> RunRecord:
        """The run file of a run that ended with ``result`` or, when ``error`` stopped it, with
        what it had done by then (``result`` None: nothing)."""
        outcome = run_outcome(result, error)
        nodes, edges = run_nodes(result) if result is not None else ((), ())
        return cls(
            id=id,
            started=started,
            finished=finished,
            requested=tuple(requested),
            constraints=tuple(constraints),
            outcome=outcome,
            error=ErrorInfo.of(error) if error is not None else None,
            nodes=nodes,
            edges=edges,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "started": _time(self.started),
            "finished": _time(self.finished),
            "requested": list(self.requested),
            "constraints": list(self.constraints),
            "outcome": self.outcome.value,
            "error": None if self.error is None else self.error.to_json(),
            "nodes": [n.to_json() for n in self.nodes],
            "edges": [e.to_json() for e in self.edges],
        }

    @classmethod
    def from_json(cls, data: object, id: str) -> RunRecord:
        """A run file's content; ``RunFileError`` names the key it refuses. Keys it does not know
        are ignored (later versions add keys)."""
        item = _Reader(data, "the run")
        if item.data.get("format") != FORMAT:
            raise RunFileError(
                f"unknown 'format' {item.data.get('format')!r} (this reads {FORMAT})"
            )
        try:
            outcome = RunOutcome(item.text("outcome"))
        except ValueError:
            raise RunFileError(f"unknown 'outcome' {item.data.get('outcome')!r}") from None
        error = item.data.get("error")
        return cls(
            id=id,
            started=item.time("started"),
            finished=item.time("finished"),
            requested=item.texts("requested"),
            constraints=item.texts("constraints"),
            outcome=outcome,
            error=None if error is None else ErrorInfo.from_json(error, "'error'"),
            nodes=parse_nodes(item.list("nodes"), with_outcomes=True),
            edges=parse_edges(item.list("edges")),
        )

    @functools.cached_property
    def by_id(self) -> dict[str, NodeRun]:
        return {n.id: n for n in self.nodes}

    @property
    def label(self) -> str:
        """``run of 2025-06-01 10:00 UTC, requested: black, flask``: which run, for people."""
        when = (
            "the last run before run files were kept"
            if self.started is None
            else f"run of {self.started.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
        requested = ", ".join(self.requested) if self.requested else "nothing recorded"
        return f"{when}, requested: {requested}"


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime(_TIME_FORMAT)


def legacy_run(graph: object) -> RunRecord:
    """graph.json of a repository whose runs wrote no run file, as the one run it remembers."""
    item = _Reader(graph, "graph.json")
    edges = parse_edges(item.data.get("edges"))
    nodes = parse_nodes(item.data.get("nodes"), with_outcomes=False)
    return RunRecord(
        id="graph",
        started=None,
        finished=None,
        requested=tuple(e.requirement for e in edges if e.parent is None),
        constraints=(),
        outcome=RunOutcome.OK,
        error=None,
        nodes=nodes,
        edges=edges,
    )


@dataclass(frozen=True)
class Remembered:
    """One package as the repository remembers it."""

    node: NodeRun  # what became of it in ``run``
    run: RunRecord  # the newest run that had it
    built_by: RunRecord | None  # the newest run that built it (or took it pre-built)

    @property
    def id(self) -> str:
        return self.node.id


@dataclass(frozen=True)
class History:
    """The remembered runs, oldest first, merged; ``notes`` says which run files were skipped."""

    runs: tuple[RunRecord, ...]
    notes: tuple[str, ...] = ()

    @property
    def latest(self) -> RunRecord | None:
        return self.runs[-1] if self.runs else None

    @functools.cached_property
    def packages(self) -> dict[str, Remembered]:
        """Every package of every remembered run, by node id."""
        out: dict[str, Remembered] = {}
        built: dict[str, RunRecord] = {}
        for run in self.runs:  # oldest first: a newer run's word wins
            for node in run.nodes:
                if node.outcome in (Outcome.BUILT, Outcome.PREBUILT):
                    built[node.id] = run
                out[node.id] = Remembered(node, run, None)
            for edge in run.edges:  # an edge's end the run did not list
                for end in (edge.parent, edge.child):
                    if end is not None and end not in run.by_id and end not in out:
                        name, _, version = end.partition("==")
                        out[end] = Remembered(NodeRun(end, name, version, None), run, None)
        return {node: Remembered(r.node, r.run, built.get(node)) for node, r in sorted(out.items())}

    @functools.cached_property
    def edges(self) -> tuple[Edge, ...]:
        """Every edge of every remembered run, once each, newest run's first."""
        seen: dict[Edge, None] = {}
        for run in reversed(self.runs):
            for edge in run.edges:
                seen.setdefault(edge)
        return tuple(seen)

    def matching(self, spec: str) -> list[Remembered]:
        """The packages ``spec`` names: ``name`` (every version) or ``name==version``."""
        name, sep, version = spec.strip().partition("==")
        wanted = canonicalize_name(name)
        return [
            r
            for r in self.packages.values()
            if canonicalize_name(r.node.name) == wanted
            and (not sep or same_version(r.node.version, version.strip()))
        ]

    def stopped_requests(self, name: str) -> list[RunRecord]:
        """Runs, newest first, that asked for the project ``name`` and were stopped by an error
        (such as a requested package with no version to build): where such a name is found."""
        wanted = canonicalize_name(name.strip().partition("==")[0])
        found = []
        for run in reversed(self.runs):
            if run.error is None:
                continue
            for text in run.requested:
                try:
                    asked = canonicalize_name(Requirement(text).name)
                except InvalidRequirement:
                    continue
                if asked == wanted:
                    found.append(run)
                    break
        return found
