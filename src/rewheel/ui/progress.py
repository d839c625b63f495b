"""Progress of a bootstrap: a live display on a terminal, timestamped lines elsewhere, a summary.

The Bootstrapper calls the ``Reporter`` hooks from its event loop thread; the live display is
redrawn from rich's refresh thread, so the state both read is kept under a lock. Everything goes
to stderr: stdout is for data (``rewheel why``, ``rewheel graph --dot``).

The total is not known up front (build environments are resolved as the run goes), so the count is
"done / known so far", and the estimate is for the packages known so far.
"""

from __future__ import annotations

import os
import shlex
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

import click

from ..core.errors import RepositoryError, RewheelError, Step
from ..core.report import BootstrapResult, Outcome, Reporter
from .text import printable

if TYPE_CHECKING:
    # rich is imported where it draws: a run on a pipe, or one with nothing to do, never needs it.
    from rich.console import Console, RenderableType
    from rich.live import Live

Clock = Callable[[], float]

# Steps during which a node holds one of the ``jobs`` build slots: a "worker".
_WORKER_STEPS = (Step.GET_REQUIRES, Step.BUILD)
_MAX_WORKER_ROWS = 16
_SLOWEST = 5


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# -- the summary (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class FailedBuild:
    node: str
    step: str | None
    reason: str
    log: Path | None
    hint: str | None = None  # the cause and fix found (build.diagnose), or the error's own
    needed_by: str | None = None  # the shortest chain from a requested package, when not one


@dataclass(frozen=True)
class NotBuilt:
    """A package a failure left unbuilt."""

    node: str
    outcome: Outcome  # NOT_ATTEMPTED (the run stopped) or DEPENDENCY_FAILED
    reason: str


@dataclass(frozen=True)
class Summary:
    built: int
    reused: int
    failed: list[FailedBuild]
    slowest: list[tuple[str, float]]  # (node, seconds) of builds of this run, slowest first
    seconds: float
    repo: Path
    prebuilt: list[str] = field(default_factory=list)  # upstream wheels taken (allow-listed)
    not_built: list[NotBuilt] = field(default_factory=list)
    from_cache: int = 0  # taken from the shared build cache (--cache-url)

    @property
    def stopped(self) -> list[str]:
        """Nodes not attempted because the run stopped at the first failure."""
        return [n.node for n in self.not_built if n.outcome is Outcome.NOT_ATTEMPTED]

    @property
    def blocked(self) -> list[NotBuilt]:
        """Nodes not built because their build environment needs a package that failed."""
        return [n for n in self.not_built if n.outcome is Outcome.DEPENDENCY_FAILED]


_STOPPED = "the run stopped at the first failure; --keep-going builds all that can be built"


def _first_line(error: RewheelError) -> str:
    return printable(error.message.splitlines()[0]) if error.message else type(error).__name__


def _needed_by(graph: object, nodes: Collection[str]) -> dict[str, str]:
    """For each of ``nodes`` that no one asked for by name, the shortest chain of the run's graph
    that brings it in, as text ("a==1 -> b==2"), so that a failure deep in a tree says why the
    package is there at all. A graph that cannot be read gives nothing (it is the run's own)."""
    from .graph_export import chains, parse_graph

    try:
        parsed = parse_graph(graph)
    except RepositoryError:
        return {}
    found: dict[str, str] = {}
    for node in nodes:
        shortest, _cut = chains(parsed, node, limit=1)
        if shortest and len(shortest[0]) > 1:
            found[node] = printable(" -> ".join(edge.child for edge in shortest[0][:-1]))
    return found


def summarize(
    result: BootstrapResult,
    repo: Path,
    seconds: float,
    *,
    built_nodes: Collection[str] = (),
    top: int = _SLOWEST,
) -> Summary:
    """What the end of a run reports. ``built_nodes``: nodes built (not reused) during the run."""
    needed_by = _needed_by(result.graph, result.failures) if result.failures else {}
    failed = [
        FailedBuild(
            node=node,
            step=error.step,
            reason=_first_line(error),
            log=error.log_path,
            hint=printable(error.hint.splitlines()[0]) if error.hint else None,
            needed_by=needed_by.get(node),
        )
        for node, error in sorted(result.failures.items())
    ]
    timed = []
    for record in result.order:
        if record.node in built_nodes and not record.prebuilt:
            timed.append((record.node, record.seconds))
    timed.sort(key=lambda item: (-item[1], item[0]))
    not_built = []
    for node, outcome in sorted(result.outcomes.items()):
        if outcome in (Outcome.NOT_ATTEMPTED, Outcome.DEPENDENCY_FAILED):
            error = result.unbuilt.get(node)
            reason = _first_line(error) if error is not None else "not reached"
            not_built.append(NotBuilt(node, outcome, reason))
    return Summary(
        built=result.built,
        reused=result.reused,
        failed=failed,
        slowest=timed[:top],
        seconds=seconds,
        repo=repo,
        prebuilt=sorted(n for n, o in result.outcomes.items() if o is Outcome.PREBUILT),
        not_built=not_built,
        from_cache=result.from_cache,
    )


def _needed_line(failed: FailedBuild, repo: Path) -> str:
    why = shlex.join(["rewheel", "why", failed.node, "--repo", str(repo)])
    return f"needed by {failed.needed_by} (every chain: {why})"


def summary_lines(summary: Summary) -> list[str]:
    """The summary as plain text lines."""
    prebuilt = f", {len(summary.prebuilt)} pre-built" if summary.prebuilt else ""
    not_built = f", {len(summary.not_built)} not attempted" if summary.not_built else ""
    cached = f", {summary.from_cache} from cache" if summary.from_cache else ""
    lines = [
        f"{summary.built} built{prebuilt}{cached}, {summary.reused} reused,"
        f" {len(summary.failed)} failed"
        f"{not_built} in {_duration(summary.seconds)}; repository {summary.repo}"
    ]
    for f in summary.failed:
        step = f" [{f.step}]" if f.step else ""
        log = f" (log: {f.log})" if f.log else ""
        lines.append(f"  failed: {f.node}{step}: {f.reason}{log}")
        if f.hint:
            lines.append(f"    {f.hint}")
        if f.needed_by:
            lines.append(f"    {_needed_line(f, summary.repo)}")
    for n in summary.blocked:
        lines.append(f"  not attempted: {n.node}: {n.reason}")
    if summary.stopped:
        lines.append(f"  not attempted ({_STOPPED}): {', '.join(summary.stopped)}")
    if summary.prebuilt:
        lines.append(
            f"  pre-built (the upstream's own wheel, allowed by the settings): "
            f"{', '.join(summary.prebuilt)}"
        )
    if summary.slowest:
        slowest = ", ".join(f"{node} {_duration(secs)}" for node, secs in summary.slowest)
        lines.append(f"  slowest builds: {slowest}")
    return lines


def summary_renderable(summary: Summary) -> RenderableType:
    """The summary as rich tables."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    status = "green" if not summary.failed else "red"
    head = Text.assemble(
        (f"{summary.built} built", "bold"),
        (f", {len(summary.prebuilt)} pre-built", "bold") if summary.prebuilt else "",
        (f", {summary.from_cache} from cache", "bold") if summary.from_cache else "",
        ", ",
        (f"{summary.reused} reused", "bold"),
        ", ",
        (f"{len(summary.failed)} failed", f"bold {status}"),
        (f", {len(summary.not_built)} not attempted", "bold yellow") if summary.not_built else "",
        f" in {_duration(summary.seconds)}; repository ",
        (str(summary.repo), "cyan"),
    )
    parts: list[RenderableType] = [head]
    if summary.failed:
        table = Table(title="Failed", title_justify="left", box=box.SIMPLE_HEAD, expand=False)
        table.add_column("package", style="bold red", no_wrap=True)
        table.add_column("step")
        table.add_column("reason", overflow="fold")
        table.add_column("log", style="cyan", overflow="fold")
        for f in summary.failed:
            reason = f"{f.reason}\n{f.hint}" if f.hint else f.reason
            if f.needed_by:
                reason += f"\n{_needed_line(f, summary.repo)}"
            table.add_row(f.node, f.step or "", reason, str(f.log) if f.log else "")
        parts.append(table)
    if summary.not_built:
        table = Table(
            title="Not attempted", title_justify="left", box=box.SIMPLE_HEAD, expand=False
        )
        table.add_column("package", style="bold yellow", no_wrap=True)
        table.add_column("why", overflow="fold")
        for n in summary.blocked:
            table.add_row(n.node, n.reason)
        for node in summary.stopped:
            table.add_row(node, _STOPPED)
        parts.append(table)
    if summary.prebuilt:
        parts.append(
            Text.assemble(
                ("Pre-built", "bold"),
                " (the upstream's own wheel, allowed by the settings): ",
                ", ".join(summary.prebuilt),
            )
        )
    if summary.slowest:
        table = Table(title="Slowest builds", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("package", no_wrap=True)
        table.add_column("time", justify="right")
        for node, secs in summary.slowest:
            table.add_row(node, _duration(secs))
        parts.append(table)
    return Group(*parts)


# -- what both reporters keep count of ----------------------------------------------------------


@dataclass
class _Node:
    step: str
    step_started: float


@dataclass
class _Tally:
    """Nodes seen, their current step, and what has finished; guarded by the reporter's lock."""

    active: dict[str, _Node] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    finished: set[str] = field(default_factory=set)
    built_nodes: set[str] = field(default_factory=set)
    built: int = 0
    reused: int = 0
    prebuilt: int = 0
    from_cache: int = 0
    failed: int = 0

    def step(self, node: str, step: str, now: float) -> None:
        self.known.add(node)
        self.finished.discard(node)  # a later pass may take the node up again
        self.active[node] = _Node(step, now)

    def finish(self, node: str) -> None:
        self.known.add(node)
        self.finished.add(node)
        self.active.pop(node, None)

    def done(self, node: str, *, cached: bool, prebuilt: bool, from_cache: bool = False) -> None:
        self.finish(node)
        if from_cache:
            self.from_cache += 1
        elif cached:
            self.reused += 1
        elif prebuilt:
            self.prebuilt += 1
            self.built_nodes.add(node)
        else:
            self.built += 1
            self.built_nodes.add(node)

    @property
    def count(self) -> str:
        return f"{len(self.finished)}/{len(self.known)}"


class ProgressReporter(Reporter):
    """A reporter the command line drives: used as a context around the run, then summarizes."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.start = clock()
        self.lock = threading.Lock()
        self.tally = _Tally()

    def note(self, text: str) -> None:
        """Something the user should know that is not a package's progress."""

    def summary(self, result: BootstrapResult, repo: Path) -> None:
        """Report the end of the run."""

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    def _summarize(self, result: BootstrapResult, repo: Path) -> Summary:
        with self.lock:
            built_nodes = set(self.tally.built_nodes)
        return summarize(result, repo, self.clock() - self.start, built_nodes=built_nodes)


class LineReporter(ProgressReporter):
    """Plain timestamped progress lines on stderr, for logs and pipes."""

    def __init__(
        self,
        verbosity: int,
        *,
        echo: Callable[[str], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock)
        self.verbosity = verbosity
        self.echo = echo or (lambda text: click.echo(text, err=True))

    def _say(self, text: str, level: int = 1) -> None:
        if self.verbosity >= level:
            elapsed = self.clock() - self.start
            self.echo(f"[{elapsed:7.1f}s] {text}")

    def note(self, text: str) -> None:
        self._say(f"note: {text}")

    def resolved(self, purpose: str, count: int) -> None:
        self._say(f"resolved {purpose}: {count} packages")

    def step(self, node: str, step: str) -> None:
        with self.lock:
            self.tally.step(node, step, self.clock())
        self._say(f"{node}: {step}", level=2)

    def done(
        self,
        node: str,
        wheel: str,
        *,
        cached: bool,
        seconds: float,
        prebuilt: bool = False,
        from_cache: bool = False,
    ) -> None:
        with self.lock:
            self.tally.done(node, cached=cached, prebuilt=prebuilt, from_cache=from_cache)
            count = self.tally.count
        if from_cache:
            self._say(f"({count}) {node}: from cache {wheel}")
        elif cached:
            self._say(f"({count}) {node}: reused {wheel}", level=2)
        elif prebuilt:
            self._say(f"({count}) {node}: pre-built: took the upstream's {wheel}")
        else:
            self._say(f"({count}) {node}: built {wheel} in {seconds:.1f}s")

    def failed(self, node: str, error: RewheelError) -> None:
        with self.lock:
            self.tally.finish(node)
            self.tally.failed += 1
        self._say(f"{node}: FAILED: {printable(str(error), newlines=True)}", level=0)

    def summary(self, result: BootstrapResult, repo: Path) -> None:
        for line in summary_lines(self._summarize(result, repo)):
            self.echo(line)


class RichReporter(ProgressReporter):
    """A live display: done / known with an estimate, and what each build slot is doing."""

    def __init__(
        self,
        console: Console,
        verbosity: int = 1,
        *,
        clock: Clock = time.monotonic,
        refresh_per_second: float = 8,
    ) -> None:
        super().__init__(clock)
        self.console = console
        self.verbosity = verbosity
        self._live: Live | None = None
        self._refresh_per_second = refresh_per_second
        from rich.spinner import Spinner

        # One spinner for the run: it animates from the time of its first frame.
        self._spinner = Spinner("dots", style="cyan")

    # -- the context: the live display runs while the bootstrap does -----------------------------

    def __enter__(self) -> RichReporter:
        self.start = self.clock()
        if self.verbosity >= 1:
            from rich.live import Live

            # stdout stays untouched (it is for data); stray writes to stderr go above the display.
            self._live = Live(
                console=self.console,
                get_renderable=self.render,
                refresh_per_second=self._refresh_per_second,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=True,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -- the hooks ---------------------------------------------------------------------------

    def note(self, text: str) -> None:
        from rich.text import Text

        if self.verbosity >= 1:
            self.console.print(Text.assemble(("note: ", "yellow"), text))

    def resolved(self, purpose: str, count: int) -> None:
        from rich.text import Text

        if self.verbosity >= 2:
            self.console.print(Text(f"resolved {purpose}: {count} packages", style="dim"))

    def step(self, node: str, step: str) -> None:
        from rich.text import Text

        with self.lock:
            self.tally.step(node, step, self.clock())
        if self.verbosity >= 2:
            self.console.print(Text.assemble((node, "bold"), f": {step}", style="dim"))

    def done(
        self,
        node: str,
        wheel: str,
        *,
        cached: bool,
        seconds: float,
        prebuilt: bool = False,
        from_cache: bool = False,
    ) -> None:
        from rich.text import Text

        with self.lock:
            self.tally.done(node, cached=cached, prebuilt=prebuilt, from_cache=from_cache)
        if from_cache:
            if self.verbosity >= 1:
                self.console.print(Text.assemble(("⇣ ", "cyan"), (node, "bold"), " from cache"))
        elif cached:
            if self.verbosity >= 2:
                self.console.print(Text.assemble(("= ", "blue"), (node, "bold"), " reused"))
        elif prebuilt:
            if self.verbosity >= 1:
                self.console.print(
                    Text.assemble(("↓ ", "yellow"), (node, "bold"), " pre-built (upstream's wheel)")
                )
        elif self.verbosity >= 1:
            self.console.print(
                Text.assemble(("✓ ", "green"), (node, "bold"), f" built in {_duration(seconds)}")
            )

    def failed(self, node: str, error: RewheelError) -> None:
        from rich.text import Text

        with self.lock:
            self.tally.finish(node)
            self.tally.failed += 1
        # Failures are shown even with -q.
        self.console.print(
            Text.assemble(
                ("✗ ", "bold red"),
                (node, "bold"),
                f" failed: {printable(str(error), newlines=True)}",
            )
        )

    def summary(self, result: BootstrapResult, repo: Path) -> None:
        self.console.print(summary_renderable(self._summarize(result, repo)))

    # -- the live display --------------------------------------------------------------------

    def render(self) -> RenderableType:
        """What the live display shows now."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        with self.lock:
            tally = self.tally
            done, known = len(tally.finished), len(tally.known)
            built, reused, failed = tally.built, tally.reused, tally.failed
            prebuilt, from_cache = tally.prebuilt, tally.from_cache
            active = sorted(tally.active.items(), key=lambda item: item[1].step_started)
        elapsed = now - self.start
        head = Text.assemble(
            (f"{done}/{known}", "bold"),
            " packages known so far",
            "  ·  ",
            (f"{built} built", "green"),
            (f", {prebuilt} pre-built", "yellow") if prebuilt else "",
            (f", {from_cache} from cache", "cyan") if from_cache else "",
            ", ",
            (f"{reused} reused", "blue"),
            ", ",
            (f"{failed} failed", "red" if failed else ""),
            f"  ·  {_duration(elapsed)}",
        )
        remaining = known - done
        if done and remaining and elapsed > 0:
            head.append(f"  ·  ~{_duration(remaining * elapsed / done)} left", style="dim")
        self._spinner.update(text=head)
        parts: list[RenderableType] = [self._spinner]

        workers = [(node, n) for node, n in active if n.step in _WORKER_STEPS]
        if workers:
            table = Table.grid(padding=(0, 2))
            table.add_column(no_wrap=True)
            table.add_column(no_wrap=True, style="magenta")
            table.add_column(justify="right", no_wrap=True)
            for node, n in workers[:_MAX_WORKER_ROWS]:
                table.add_row(f"  {node}", n.step, _duration(now - n.step_started))
            parts.append(table)
            if len(workers) > _MAX_WORKER_ROWS:
                parts.append(Text(f"  … and {len(workers) - _MAX_WORKER_ROWS} more", style="dim"))
        waiting = len(active) - len(workers)
        if waiting:
            parts.append(
                Text(
                    f"  {waiting} more downloading, checking the cache or waiting for their "
                    "build environment",
                    style="dim",
                )
            )
        return Group(*parts)


def make_reporter(verbosity: int, stream: IO[str] | None = None) -> ProgressReporter:
    """The live display when ``stream`` (default stderr) is a capable terminal, else plain lines."""
    stream = stream if stream is not None else sys.stderr
    interactive = stream.isatty() and os.environ.get("TERM", "") != "dumb"
    if interactive:
        from rich.console import Console

        return RichReporter(Console(file=stream), verbosity)
    return LineReporter(verbosity, echo=lambda text: click.echo(text, file=stream))
