"""Progress reporting: the live display, plain lines, the summary, and which one the CLI picks."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from fakes import FakeSteps, FakeUpstream, make_record
from packaging.requirements import Requirement
from rich.console import Console

from rewheel.core.bootstrap import Bootstrapper, BootstrapResult, DependencyFailed, NotAttempted
from rewheel.core.errors import BuildError
from rewheel.core.report import Outcome
from rewheel.ui.progress import (
    LineReporter,
    RichReporter,
    make_reporter,
    summarize,
    summary_lines,
    summary_renderable,
)

# An SGR sequence that sets a colour (foreground/background, 8/16/256/truecolour).
COLOUR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9;]*)?m")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def console(width: int = 120) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=width, color_system="truecolor"), out


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def render(reporter: RichReporter) -> str:
    c, out = console()
    c.print(reporter.render())
    return plain(out.getvalue())


def result(**kwargs: object) -> BootstrapResult:
    order = [
        make_record("slow", "1.0", seconds=42.0),
        make_record("fast", "2.0", seconds=0.5),
        make_record("old", "3.0", seconds=99.0),  # reused: built by an earlier run
    ]
    failure = BuildError(
        "backend failed\nTraceback ...",
        package="bad",
        version="1.0",
        step="build",
        log_path=Path("/repo/logs/bad-1.0.log"),
    )
    values: dict[str, object] = {
        "order": order,
        "graph": {},
        "failures": {"bad==1.0": failure},
        "built": 2,
        "reused": 1,
    }
    values.update(kwargs)
    return BootstrapResult(**values)  # type: ignore[arg-type]


# -- the live display ---------------------------------------------------------------------------


def test_live_display_shows_done_of_known_each_worker_and_an_estimate() -> None:
    clock = Clock()
    c, _ = console()
    reporter = RichReporter(c, clock=clock)
    reporter.step("tool==1.0", "prepare")
    reporter.step("app==1.0", "prepare")
    reporter.step("lib==2.0", "prepare")
    clock.now += 1
    reporter.step("tool==1.0", "build")
    clock.now += 1
    reporter.done("tool==1.0", "tool-1.0-py3-none-any.whl", cached=False, seconds=1.0)
    reporter.step("lib==2.0", "get-requires")
    clock.now += 3

    text = render(reporter)
    assert "1/3 packages known so far" in text
    assert "1 built" in text and "0 reused" in text and "0 failed" in text
    # One build slot busy: lib in get-requires for 3 s; app is not holding a slot.
    assert re.search(r"lib==2\.0\s+get-requires\s+3\.0s", text), text
    assert "app==1.0" not in text
    assert "1 more downloading, checking the cache or waiting" in text
    # 1 done in 5 s, 2 to go: about 10 s.
    assert "~10.0s left" in text


def test_live_display_during_a_run_and_the_summary_after(tmp_path: Path) -> None:
    c, out = console()
    reporter = RichReporter(c, refresh_per_second=50)
    with reporter:
        reporter.step("slow==1.0", "build")
        reporter.done("slow==1.0", "slow-1.0-py3-none-any.whl", cached=False, seconds=2.5)
        reporter.done("old==3.0", "old-3.0-py3-none-any.whl", cached=True, seconds=0.0)
        reporter.failed("bad==1.0", BuildError("boom", package="bad", version="1.0", step="build"))
        reporter.note("network isolation is not available")
    reporter.summary(result(), tmp_path / "repo")
    text = plain(out.getvalue())
    assert "✓ slow==1.0 built in 2.5s" in text
    assert "old==3.0" not in text  # reused: shown only with -v, and not among the slowest
    assert "✗ bad==1.0 failed" in text
    assert "note: network isolation is not available" in text
    assert "2 built, 1 reused, 1 failed" in text
    assert "/repo/logs/bad-1.0.log" in text and "backend failed" in text
    assert "Traceback" not in text  # the reason is the first line; the log has the rest
    assert re.search(r"Slowest builds.*slow==1\.0\s+42\.0s", text, re.S), text


def test_a_real_bootstrap_drives_the_live_display() -> None:
    projects = {"app": {"1.0": ["lib"]}, "lib": {"1.0": []}, "tool": {"1.0": []}}
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"app": ["tool"], "lib": ["tool"]},
        fail=["lib==1.0"],
    )
    c, out = console()
    reporter = RichReporter(c, verbosity=2)
    with reporter:
        res = Bootstrapper(steps, jobs=2, reporter=reporter, keep_going=True).run(
            [Requirement("app")]
        )
    reporter.summary(res, Path("repo"))
    text = plain(out.getvalue())
    assert "✓ tool==1.0 built" in text
    assert "✗ lib==1.0 failed" in text
    assert "tool==1.0: build" in text  # -v shows each step
    assert "2 built, 0 reused, 1 failed" in text
    assert reporter.tally.known >= {"tool==1.0", "lib==1.0", "app==1.0"}


def test_no_color_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    def run() -> str:
        out = io.StringIO()
        c = Console(file=out, force_terminal=True, width=100)
        reporter = RichReporter(c)
        with reporter:
            reporter.done("a==1.0", "a.whl", cached=False, seconds=1.0)
        reporter.summary(result(), Path("repo"))
        return out.getvalue()

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("COLORTERM", "truecolor")
    assert COLOUR.search(run())  # colours without NO_COLOR: the check below can fail
    monkeypatch.setenv("NO_COLOR", "1")
    coloured = run()
    assert not COLOUR.search(coloured), repr(coloured)
    assert "a==1.0" in coloured


def test_quiet_shows_failures_and_summary_only() -> None:
    c, out = console()
    reporter = RichReporter(c, verbosity=0)
    with reporter:
        reporter.step("a==1.0", "build")
        reporter.done("a==1.0", "a.whl", cached=False, seconds=1.0)
        reporter.failed("bad==1.0", BuildError("boom"))
    text = plain(out.getvalue())
    assert "a==1.0" not in text
    assert "bad==1.0 failed: boom" in text


# -- plain lines --------------------------------------------------------------------------------


def test_line_reporter_prints_timestamped_lines_by_verbosity() -> None:
    def run(verbosity: int) -> list[str]:
        lines: list[str] = []
        clock = Clock()
        reporter = LineReporter(verbosity, echo=lines.append, clock=clock)
        reporter.resolved("the requested packages", 2)
        reporter.step("a==1.0", "build")
        clock.now += 1.5
        reporter.done("a==1.0", "a-1.0.whl", cached=False, seconds=1.25)
        reporter.done("b==1.0", "b-1.0.whl", cached=True, seconds=0.0)
        reporter.failed("c==1.0", BuildError("boom", package="c", version="1.0", step="build"))
        reporter.note("careful")
        return lines

    default = run(1)
    assert default == [
        "[    0.0s] resolved the requested packages: 2 packages",
        "[    1.5s] (1/1) a==1.0: built a-1.0.whl in 1.2s",
        "[    1.5s] c==1.0: FAILED: c==1.0 [build]: boom",
        "[    1.5s] note: careful",
    ]
    verbose = run(2)
    assert "[    0.0s] a==1.0: build" in verbose
    assert "[    1.5s] (2/2) b==1.0: reused b-1.0.whl" in verbose
    assert run(0) == ["[    1.5s] c==1.0: FAILED: c==1.0 [build]: boom"]


def test_a_build_taken_from_the_shared_cache_is_shown_as_from_cache() -> None:
    lines: list[str] = []
    line = LineReporter(1, echo=lines.append, clock=Clock())
    line.done("lib==1.0", "lib-1.0.whl", cached=True, seconds=0.1, from_cache=True)
    line.done("old==1.0", "old-1.0.whl", cached=True, seconds=0.0)  # reused: only with -v
    assert lines == ["[    0.0s] (1/1) lib==1.0: from cache lib-1.0.whl"]

    c, out = console()
    live = RichReporter(c, clock=Clock())
    live.done("lib==1.0", "lib-1.0.whl", cached=True, seconds=0.1, from_cache=True)
    live.done("old==1.0", "old-1.0.whl", cached=True, seconds=0.0)
    assert "⇣ lib==1.0 from cache" in plain(out.getvalue())
    assert "reused" not in plain(out.getvalue())
    text = render(live)
    assert "0 built, 1 from cache, 1 reused, 0 failed" in text


def test_line_reporter_summary() -> None:
    lines: list[str] = []
    reporter = LineReporter(1, echo=lines.append)
    reporter.done("slow==1.0", "s.whl", cached=False, seconds=42)
    reporter.done("fast==2.0", "f.whl", cached=False, seconds=0.5)
    reporter.done("old==3.0", "o.whl", cached=True, seconds=0)
    lines.clear()
    reporter.summary(result(), Path("/r"))
    assert lines[0].startswith("2 built, 1 reused, 1 failed in ")
    assert lines[0].endswith("; repository /r")
    assert lines[1] == ("  failed: bad==1.0 [build]: backend failed (log: /repo/logs/bad-1.0.log)")
    assert lines[2] == "  slowest builds: slow==1.0 42.0s, fast==2.0 0.5s"


# -- the summary's data -------------------------------------------------------------------------


def test_summary_lists_only_builds_of_this_run_slowest_first() -> None:
    s = summarize(result(), Path("r"), 3.0, built_nodes={"slow==1.0", "fast==2.0"}, top=1)
    assert s.slowest == [("slow==1.0", 42.0)]
    assert (s.built, s.reused) == (2, 1)
    (failed,) = s.failed
    assert (failed.node, failed.step, failed.reason) == ("bad==1.0", "build", "backend failed")
    assert failed.log == Path("/repo/logs/bad-1.0.log")
    nothing_built = summarize(result(failures={}), Path("r"), 1.0)
    assert nothing_built.slowest == [] and nothing_built.failed == []
    assert summary_lines(nothing_built) == ["2 built, 1 reused, 0 failed in 1.0s; repository r"]


def unfinished_result() -> BootstrapResult:
    """A run where ``bad`` failed: one pre-built wheel, one dependent and two nodes left."""
    order = [
        make_record("slow", "1.0", seconds=42.0),
        make_record("binary", "2.0", seconds=0.3, prebuilt=True, sdist_url=None),
    ]
    blocked = DependencyFailed(
        "its build environment needs bad==1.0, which failed", package="app", version="1.0"
    )
    stopped = NotAttempted("not built: the run stopped at the first failure", package="x")
    return result(
        order=order,
        built=1,
        reused=0,
        prebuilt=1,
        outcomes={
            "slow==1.0": Outcome.BUILT,
            "binary==2.0": Outcome.PREBUILT,
            "bad==1.0": Outcome.FAILED,
            "app==1.0": Outcome.DEPENDENCY_FAILED,
            "x==1.0": Outcome.NOT_ATTEMPTED,
            "y==1.0": Outcome.NOT_ATTEMPTED,  # never reached: no error
        },
        unbuilt={"app==1.0": blocked, "x==1.0": stopped},
    )


def test_the_summary_lists_what_was_not_attempted_and_what_was_pre_built() -> None:
    s = summarize(unfinished_result(), Path("r"), 2.0, built_nodes={"slow==1.0", "binary==2.0"})
    assert s.prebuilt == ["binary==2.0"]
    assert s.slowest == [("slow==1.0", 42.0)]  # a pre-built wheel took no build
    assert s.stopped == ["x==1.0", "y==1.0"]
    assert [(n.node, n.reason) for n in s.blocked] == [
        ("app==1.0", "its build environment needs bad==1.0, which failed")
    ]
    assert summary_lines(s) == [
        "1 built, 1 pre-built, 0 reused, 1 failed, 3 not attempted in 2.0s; repository r",
        "  failed: bad==1.0 [build]: backend failed (log: /repo/logs/bad-1.0.log)",
        "  not attempted: app==1.0: its build environment needs bad==1.0, which failed",
        "  not attempted (the run stopped at the first failure; --keep-going builds all that "
        "can be built): x==1.0, y==1.0",
        "  pre-built (the upstream's own wheel, allowed by the settings): binary==2.0",
        "  slowest builds: slow==1.0 42.0s",
    ]
    c, out = console(width=200)
    c.print(summary_renderable(s))
    text = plain(out.getvalue())
    assert "1 built, 1 pre-built, 0 reused, 1 failed, 3 not attempted" in text
    assert re.search(r"Not attempted.*app==1\.0\s+its build environment needs bad", text, re.S)
    assert re.search(r"x==1\.0\s+the run stopped at the first failure", text)
    assert "Pre-built (the upstream's own wheel, allowed by the settings): binary==2.0" in text


def test_a_pre_built_wheel_is_reported_as_taken_not_built() -> None:
    lines: list[str] = []
    reporter = LineReporter(1, echo=lines.append, clock=Clock())
    reporter.done(
        "binary==2.0", "binary-2.0-py3-none-any.whl", cached=False, seconds=0.3, prebuilt=True
    )
    assert lines == [
        "[    0.0s] (1/1) binary==2.0: pre-built: took the upstream's binary-2.0-py3-none-any.whl"
    ]
    assert (reporter.tally.built, reporter.tally.prebuilt) == (0, 1)
    c, out = console()
    rich = RichReporter(c)
    with rich:
        rich.done("binary==2.0", "b.whl", cached=False, seconds=0.3, prebuilt=True)
        assert "0 built, 1 pre-built, 0 reused" in render(rich)
    text = plain(out.getvalue())
    assert "binary==2.0 pre-built" in text and "built in" not in text


def test_failure_messages_reach_the_terminal_without_control_characters() -> None:
    hostile = "backend \x1b]0;pwned\x07\x1b[2Jfailed"
    error = BuildError(hostile, package="bad", version="1.0", step="build")
    lines: list[str] = []
    reporter = LineReporter(0, echo=lines.append, clock=Clock())
    reporter.failed("bad==1.0", error)
    reporter.summary(result(failures={"bad==1.0": error}), Path("r"))
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text
    assert "backend \\x1b]0;pwned\\x07\\x1b[2Jfailed" in text
    c, out = console()
    rich = RichReporter(c, verbosity=0)
    rich.failed("bad==1.0", error)
    rich.summary(result(failures={"bad==1.0": error}), Path("r"))
    assert "pwned\x07" not in out.getvalue() and "\x1b]0;" not in out.getvalue()


# -- which reporter ----------------------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_reporter_picks_the_live_display_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(make_reporter(1, io.StringIO()), LineReporter)
    assert isinstance(make_reporter(1, Tty()), RichReporter)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(make_reporter(1, Tty()), LineReporter)


def test_plain_reporter_writes_to_the_given_stream() -> None:
    stream = io.StringIO()
    reporter = make_reporter(1, stream)
    reporter.note("hello")
    assert stream.getvalue().endswith("note: hello\n")


def test_the_summary_gives_the_cause_line_of_a_failure_on_one_line() -> None:
    failure = BuildError(
        "backend failed",
        package="bad",
        version="1.0",
        step="build",
        hint="missing header zlib.h; install it (Debian: apt-get install zlib1g-dev)\n\x1b[2Jfake",
    )
    s = summarize(result(failures={"bad==1.0": failure}), Path("r"), 1.0)
    (failed,) = s.failed
    assert failed.hint == "missing header zlib.h; install it (Debian: apt-get install zlib1g-dev)"
    lines = summary_lines(s)
    assert lines[2] == f"    {failed.hint}"
    c, out = console()
    c.print(summary_renderable(s))
    assert "zlib1g-dev" in plain(out.getvalue()) and "fake" not in out.getvalue()


def test_a_failure_deep_in_the_tree_says_which_requested_package_needs_it() -> None:
    graph = {
        "nodes": [
            {"id": "app==1.0", "name": "app", "version": "1.0"},
            {"id": "mid==2.0", "name": "mid", "version": "2.0"},
            {"id": "deep==3.0", "name": "deep", "version": "3.0"},
        ],
        "edges": [
            {"from": None, "to": "app==1.0", "requirement": "app", "kind": "toplevel"},
            {"from": "app==1.0", "to": "mid==2.0", "requirement": "mid", "kind": "install"},
            {"from": "mid==2.0", "to": "deep==3.0", "requirement": "deep>=3", "kind": "install"},
        ],
    }
    deep = BuildError("Rust crates not vendored", package="deep", version="3.0", step="build")
    top = BuildError("backend failed", package="app", version="1.0", step="build")
    s = summarize(
        result(graph=graph, failures={"deep==3.0": deep, "app==1.0": top}), Path("my repo"), 1.0
    )
    assert [(f.node, f.needed_by) for f in s.failed] == [
        ("app==1.0", None),  # asked for by name: no chain to give
        ("deep==3.0", "app==1.0 -> mid==2.0"),
    ]
    lines = summary_lines(s)
    assert lines[-1] == (
        "    needed by app==1.0 -> mid==2.0 (every chain: rewheel why deep==3.0 --repo 'my repo')"
    )
    c, out = console(width=300)
    c.print(summary_renderable(s))
    assert "needed by app==1.0 -> mid==2.0" in plain(out.getvalue())
