"""A repository that remembers its runs: run files, and ``why`` and the pages after later runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import Upstream, run_bootstrap

from rewheel import app
from rewheel.cli import cli, main
from rewheel.core.errors import BuildError, RewheelError
from rewheel.core.history import (
    FORMAT,
    RUN_FILE,
    Edge,
    ErrorInfo,
    History,
    NodeRun,
    RunFileError,
    RunOutcome,
    RunRecord,
    run_id,
)
from rewheel.core.report import Outcome, Reporter
from rewheel.repo.repository import Repository
from rewheel.ui.browse_pages import collect, render_site, write_browse
from rewheel.ui.graph_export import history_graph, to_dot, to_html, why_lines

T0 = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def clock(start: datetime = T0) -> Iterator[datetime]:
    at = start
    while True:
        yield at
        at += timedelta(minutes=1)


def machine(times: Iterator[datetime]) -> app.Machine:
    return app.Machine(now=lambda: next(times))


def why(repo: Path, package: str) -> Result:
    return CliRunner().invoke(cli, ["why", package, "--repo", str(repo)])


def bootstrap_cli(upstream: Upstream, repo: Path, *args: str) -> Result:
    options = ["--repo", str(repo), "--index-url", upstream.url, "-j", "2"]
    return CliRunner().invoke(
        cli, ["bootstrap", *args, *options, "--work-dir", str(repo.parent / "work")]
    )


def run_files(repo: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((repo / "runs").glob("*.json"))]


# -- end to end: what later and failed runs leave known -------------------------------------------


def test_why_finds_a_package_of_an_earlier_run_with_that_run(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("first", "1.0", build_requires=["tool-a"], install_requires=["only-first"])
    upstream.sdist("only-first", "1.0", build_requires=["tool-a"])
    upstream.sdist("second", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    times = clock()
    assert run_bootstrap(upstream, repo, ["first"], machine=machine(times)).ok
    assert run_bootstrap(upstream, repo, ["second"], machine=machine(times)).ok
    # The last run's graph.json no longer has it...
    assert "only-first==1.0" not in (repo / "graph.json").read_text()

    # ...but the repository remembers the run that brought it in.
    result = why(repo, "only-first")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "only-first==1.0: 1 chain(s) from the requested packages "
        "(run of 2025-03-04 05:06:07 UTC, requested: first)",
        "  first==1.0 -[install: only-first]-> only-first==1.0",
    ]
    # A package of both runs: the newest run's chains, and the run that built its wheel.
    lines = why(repo, "tool-a").stdout.splitlines()
    assert lines[0] == (
        "tool-a==1.0: 1 chain(s) from the requested packages "
        "(run of 2025-03-04 05:08:07 UTC, requested: second)"
    )
    assert lines[1] == (
        "  its wheel in the repository: built by the run of 2025-03-04 05:06:07 UTC, "
        "requested: first"
    )
    assert lines[2] == "  second==1.0 -[build-system: tool-a]-> tool-a==1.0"

    first, second = run_files(repo)
    assert (first["requested"], second["requested"]) == (["first"], ["second"])
    assert first["started"] == "2025-03-04T05:06:07.890000Z"
    outcomes = {n["id"]: n["outcome"] for n in second["nodes"]}
    assert outcomes == {"second==1.0": "built", "tool-a==1.0": "reused"}

    # The graph page and the browse pages know it too.
    page = (repo / "browse" / "graph.html").read_text()
    assert "only-first==1.0" in page and "second==1.0" in page
    project = (repo / "browse" / "only-first.html").read_text()
    assert "In the run of 2025-03-04 05:06:07 UTC, requested: first." in project


def test_a_failed_run_leaves_the_chains_to_the_failure_and_to_what_it_left_unbuilt(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist(
        "app", "1.0", build_requires=["slowtool"], install_requires=["bad", "other", "needs-bad"]
    )
    upstream.sdist("bad", "1.0", fail_build=True)
    upstream.sdist("needs-bad", "1.0", build_requires=["bad"])
    # ``app`` and ``other`` wait for a slow build tool; ``bad`` fails meanwhile, the run stops.
    upstream.sdist("other", "1.0", build_requires=["slowtool"])
    upstream.sdist("slowtool", "1.0", build_seconds=2)
    repo = tmp_path / "repo"
    result = bootstrap_cli(upstream, repo, "app")
    assert result.exit_code == 1, result.output

    # The summary lists what the failure left unbuilt.
    lines = result.stderr.splitlines()
    head = next(line for line in lines if "; repository " in line)
    # (slowtool is built, or not attempted if bad failed before it got its build slot)
    assert ", 1 failed, 3 not attempted in " in head or ", 1 failed, 4 not attempted" in head
    assert (
        "  not attempted: needs-bad==1.0: its build environment needs bad==1.0, which failed"
        in (lines)
    )
    stopped = next(line for line in lines if line.startswith("  not attempted (the run stopped"))
    assert "app==1.0, other==1.0" in stopped

    # ``why`` shows the chains to each, with what became of it.
    (run,) = run_files(repo)
    when = datetime.fromisoformat(run["started"]).strftime("%Y-%m-%d %H:%M:%S")
    lines = why(repo, "bad").stdout.splitlines()
    assert lines[0] == (
        f"bad==1.0: 2 chain(s) from the requested packages (run of {when} UTC, requested: app)"
    )
    assert lines[1].startswith("  FAILED [build-wheel]: backend tinybackend failed")
    assert lines[1].endswith(f"(log: {repo / 'logs' / 'bad-1.0.log'})")
    assert lines[2:] == [
        "  app==1.0 -[install: bad]-> bad==1.0",
        "  app==1.0 -[install: needs-bad]-> needs-bad==1.0 -[build-system: bad]-> bad==1.0",
    ]
    assert why(repo, "needs-bad").stdout.splitlines()[1:] == [
        "  not built: its build environment needs bad==1.0, which failed",
        "  app==1.0 -[install: needs-bad]-> needs-bad==1.0",
    ]
    other = why(repo, "other").stdout.splitlines()
    assert other[1].startswith("  not attempted: ")
    assert "stopped at the first failure" in other[1]
    assert other[2] == "  app==1.0 -[install: other]-> other==1.0"

    assert run["outcome"] == "failed" and run["error"] is None
    nodes = {n["id"]: n for n in run["nodes"]}
    assert nodes["bad==1.0"]["outcome"] == "failed" and nodes["bad==1.0"]["wheel"] is None
    assert nodes["bad==1.0"]["error"]["step"] == "build-wheel"
    assert nodes["bad==1.0"]["error"]["type"] == "BuildError"
    assert nodes["needs-bad==1.0"]["outcome"] == "dependency-failed"
    assert nodes["other==1.0"]["outcome"] == "not-attempted"

    # The pages list them with their failure and chain.
    index = (repo / "browse" / "index.html").read_text()
    assert '<table id="not-built">' in index
    assert '<a href="bad.html#v-1.0">bad</a>' in index
    assert '<a href="other.html#v-1.0">other</a>' in index
    page = (repo / "browse" / "bad.html").read_text()
    assert '<p class="status failed">Failed [build-wheel] in the run of' in page
    assert "<code>app==1.0 -[install: bad]-&gt; bad==1.0</code>" in page
    assert 'href="../logs/bad-1.0.log"' in page
    graph = (repo / "browse" / "graph.html").read_text()
    assert '"outcome": "failed"' in graph and '"outcome": "not-attempted"' in graph


def test_a_prebuilt_wheel_is_summarised_as_pre_built(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["binary-only"])
    upstream.sdist("binary-only", "1.0", fail_build=True)
    upstream.wheel("binary-only", "1.0")
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "binary-only.toml").write_text("[build]\nprebuilt = true\n")
    repo = tmp_path / "repo"
    result = bootstrap_cli(upstream, repo, "app", "--settings", str(settings))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    taken = next(line for line in lines if "binary-only==1.0" in line)
    assert taken.endswith(
        "binary-only==1.0: pre-built: took the upstream's binary_only-1.0-py3-none-any.whl"
    )
    assert not any("built binary_only" in line for line in lines)
    head = next(line for line in lines if "; repository " in line)
    assert head.startswith("2 built, 1 pre-built, 0 reused, 0 failed in ")
    assert "  pre-built (the upstream's own wheel, allowed by the settings): binary-only==1.0" in (
        lines
    )
    slowest = next(line for line in lines if line.startswith("  slowest builds:"))
    assert "binary-only" not in slowest
    stats = json.loads((repo / "run-stats.json").read_text())
    assert (stats["built"], stats["prebuilt"], stats["reused"]) == (2, 1, 0)
    (run,) = run_files(repo)
    assert {n["id"]: n["outcome"] for n in run["nodes"]}["binary-only==1.0"] == "prebuilt"


def test_a_run_stopped_by_an_error_is_remembered_with_what_stopped_it(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    repo = tmp_path / "repo"
    with pytest.raises(RewheelError):
        run_bootstrap(upstream, repo, ["does-not-exist"], machine=machine(clock()))
    (run,) = run_files(repo)
    assert run["outcome"] == "error" and run["requested"] == ["does-not-exist"]
    assert run["nodes"] == [] and run["error"]["message"]
    # ``why`` says which run asked for it and what stopped that run.
    with pytest.raises(SystemExit) as exit_info:
        main(["why", "does-not-exist", "--repo", str(repo)])
    assert exit_info.value.code == 2


def test_why_names_the_run_that_asked_for_a_package_it_could_not_build(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    with pytest.raises(RewheelError) as stopped:
        run_bootstrap(upstream, repo, ["does-not-exist"], machine=machine(clock()))
    with pytest.raises(SystemExit):
        main(["why", "does-not-exist", "--repo", str(repo)])
    err = capsys.readouterr().err
    assert "does-not-exist is not in the dependency graph of the last 1 run(s)" in err
    assert (
        "the run of 2025-03-04 05:06:07 UTC, requested: does-not-exist stopped before building "
        f"it: {stopped.value.message.splitlines()[0]}"
    ) in err


class _Interrupt(Reporter):
    """Ctrl-C as soon as the first package is in the repository."""

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
        raise KeyboardInterrupt


def test_an_interrupted_run_is_remembered_with_what_it_had_built(
    upstream: Upstream, tmp_path: Path
) -> None:
    from packaging.requirements import Requirement

    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("app")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
    )
    with pytest.raises(KeyboardInterrupt):
        app.bootstrap(options, reporter=_Interrupt(), machine=machine(clock()))
    (run,) = run_files(repo)
    assert run["outcome"] == "interrupted"
    assert run["error"]["type"] == "KeyboardInterrupt"
    outcomes = {n["id"]: n["outcome"] for n in run["nodes"]}
    assert outcomes == {"tool-a==1.0": "built", "app==1.0": "not-attempted"}
    assert why(repo, "tool-a").exit_code == 0
    # The pages were refreshed on the way out: they know the run too.
    page = (repo / "browse" / "app.html").read_text()
    assert "Not attempted in the run of 2025-03-04 05:06:07 UTC, requested: app." in page


def test_a_corrupt_or_hand_edited_run_file_is_skipped_with_a_note(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"], machine=machine(clock())).ok
    runs = repo / "runs"
    (runs / "20990101T000000.000Z-0000000a.json").write_text("{ not json")
    (runs / "20990101T000000.000Z-0000000b.json").write_text(
        json.dumps({"format": FORMAT, "outcome": "ok", "nodes": "many"})
    )
    (runs / "20990101T000000.000Z-0000000c.json").write_bytes(b"\xff\xfe")
    (runs / "20990101T000000.000Z-0000000d.json").symlink_to(next(runs.glob("2025*.json")))
    (runs / "notes.txt").write_text("not a run file: not read")

    result = why(repo, "tool-a")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("tool-a==1.0: 1 chain(s)")
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: skipped")]
    assert len(notes) == 4, result.stderr
    assert any("0000000b.json: the run: 'started' must be a string" in n for n in notes)
    # The pages still get written, with the notes.
    write_browse(Repository(repo))
    index = (repo / "browse" / "index.html").read_text()
    assert index.count('<p class="muted note">note: skipped the run file') == 4
    assert (repo / "browse" / "app.html").is_file()
    assert (repo / "browse" / "graph.html").is_file()


def test_a_repository_without_run_files_remembers_its_graph_json(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    graph = {
        "nodes": [{"id": "app==1.0", "name": "app", "version": "1.0"}],
        "edges": [{"from": None, "to": "app==1.0", "requirement": "app", "kind": "toplevel"}],
    }
    (repo / "graph.json").write_text(json.dumps(graph))
    assert why(repo, "app").stdout.splitlines() == [
        "app==1.0: 1 chain(s) from the requested packages",
        "  app==1.0 (requested as 'app')",
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = why(empty, "app")
    assert result.exit_code != 0 and "run `rewheel bootstrap`" in str(result.exception)


# -- the run files --------------------------------------------------------------------------------


def _run(i: int, **fields: Any) -> RunRecord:
    started = T0 + timedelta(hours=i)
    values: dict[str, Any] = {
        "id": run_id(started, f"{i:08x}"),
        "started": started,
        "finished": started + timedelta(seconds=30),
        "requested": (f"app{i}",),
        "constraints": (),
        "outcome": RunOutcome.OK,
        "error": None,
        "nodes": (NodeRun(f"app{i}==1.0", f"app{i}", "1.0", Outcome.BUILT, "w.whl", 1.5),),
        "edges": (Edge(None, f"app{i}==1.0", f"app{i}", "toplevel"),),
    }
    values.update(fields)
    return RunRecord(**values)


def test_run_ids_sort_by_time_and_name_their_file() -> None:
    ids = [run_id(T0 + timedelta(milliseconds=ms), "0123abcd") for ms in (0, 5, 1000, 60_000)]
    assert ids == sorted(ids)
    assert ids[0] == "20250304T050607.890Z-0123abcd"
    assert all(RUN_FILE.match(f"{i}.json") for i in ids)


def test_a_run_record_round_trips_and_refuses_what_is_not_one() -> None:
    error = ErrorInfo("ResolutionError", "conflict", "resolve", chains=(("a==1", "b<2"),))
    run = _run(
        1,
        outcome=RunOutcome.ERROR,
        error=error,
        nodes=(
            NodeRun("x==1", "x", "1", Outcome.FAILED, error=ErrorInfo("BuildError", "boom")),
            NodeRun("y==2", "y", "2", Outcome.NOT_ATTEMPTED),
        ),
    )
    data = json.loads(json.dumps(run.to_json()))
    assert list(data) == [
        "format", "started", "finished", "requested", "constraints", "outcome", "error",
        "nodes", "edges",
    ]  # fmt: skip
    assert RunRecord.from_json(data, run.id) == run
    for change, named in [
        ({"format": 99}, "'format'"),
        ({"outcome": "great"}, "'outcome'"),
        ({"started": "yesterday"}, "'started'"),
        ({"requested": "app"}, "'requested'"),
        ({"nodes": [{"id": "x==1", "name": "x", "version": "1", "outcome": "eaten"}]}, "outcome"),
        ({"nodes": [{"id": "x==1", "name": "x", "version": 1}]}, "'version'"),
        ({"edges": [{"from": None, "to": "x==1"}]}, "'requirement' and 'kind'"),
        ({"error": {"type": "E", "message": 3}}, "'message'"),
        ({"error": {"type": "E", "message": "m", "chains": "a"}}, "'chains'"),
    ]:
        with pytest.raises(RunFileError, match=named):
            RunRecord.from_json({**data, **change}, run.id)


def test_an_error_is_kept_short_with_its_step_log_and_chains() -> None:
    exc = BuildError("x" * 10_000, package="p", version="1", step="build", log_path=Path("/l"))
    info = ErrorInfo.of(exc)
    assert len(info.message) == 4000 and info.message.endswith("…")
    assert (info.type, info.step, info.package, info.log) == ("BuildError", "build", "p", "/l")
    assert ErrorInfo.of(KeyboardInterrupt()).message == "interrupted"
    assert ErrorInfo.of(RuntimeError("odd")).type == "RuntimeError"


def test_write_run_keeps_the_newest_runs(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    for i in range(7):
        repo.write_run(_run(i), keep=3)
    (repo.runs_dir / "mine.json").write_text("{}")  # not a run file: left alone
    kept = sorted(p.name for p in repo.runs_dir.iterdir())
    assert kept == sorted([f"{_run(i).id}.json" for i in (4, 5, 6)] + ["mine.json"])
    history = repo.history()
    assert [r.requested for r in history.runs] == [("app4",), ("app5",), ("app6",)]
    assert history.notes == ()


def test_the_merged_view_takes_the_newest_word_on_each_package() -> None:
    failed = NodeRun("lib==1.0", "lib", "1.0", Outcome.FAILED, error=ErrorInfo("BuildError", "no"))
    built = NodeRun("lib==1.0", "lib", "1.0", Outcome.BUILT, "lib.whl")
    reused = NodeRun("lib==1.0", "lib", "1.0", Outcome.REUSED, "lib.whl")
    one = _run(1, nodes=(built,), edges=(Edge(None, "lib==1.0", "lib", "toplevel"),))
    two = _run(2, nodes=(reused,), edges=(Edge(None, "lib==1.0", "lib>=1", "toplevel"),))
    three = _run(3, nodes=(failed,), edges=(Edge(None, "lib==1.0", "lib==1.0", "toplevel"),))
    history = History((one, two, three))
    remembered = history.packages["lib==1.0"]
    assert remembered.node is failed and remembered.run is three and remembered.built_by is one
    assert history.matching("LIB") == history.matching("lib==1") == [remembered]
    assert history.matching("lib==2") == []
    assert len(history.edges) == 3
    lines = why_lines(history, "lib")
    assert lines[1] == "  FAILED: no"
    assert lines[2].startswith("  its wheel in the repository: built by the run of 2025-03-04 06")
    assert lines[3] == "  lib==1.0 (requested as 'lib==1.0')"


# -- hostile text from packages and indexes -------------------------------------------------------

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>"\x1b]0;pwned\x07\x1b[2J'


def _hostile_history() -> History:
    error = ErrorInfo(
        "BuildError",
        f"backend {HOSTILE} failed\nsecond line {HOSTILE}",
        step=f"build{HOSTILE}",
        log=f"/repo/logs/{HOSTILE}.log",
        hint=f"hint {HOSTILE}",
        chains=((f"a {HOSTILE}", "b"),),
    )
    nodes = (
        NodeRun("app==1.0", "app", "1.0", Outcome.BUILT, "app-1.0-py3-none-any.whl"),
        NodeRun("evil==1.0", "evil", "1.0", Outcome.FAILED, error=error),
        NodeRun("late==1.0", "late", "1.0", Outcome.NOT_ATTEMPTED),
        NodeRun(f"x{HOSTILE}==1", f"../x{HOSTILE}", f"1{HOSTILE}", Outcome.FAILED, error=error),
    )
    edges = (
        Edge(None, "app==1.0", f"app; {HOSTILE}", "toplevel"),
        Edge("app==1.0", "evil==1.0", f"evil; extra == '{HOSTILE}'", "install"),
        Edge("app==1.0", "late==1.0", "late", f"install{HOSTILE}"),
        Edge("app==1.0", f"x{HOSTILE}==1", "x", "install"),
    )
    return History((_run(1, requested=(HOSTILE,), nodes=nodes, edges=edges),))


def test_why_output_carries_no_terminal_control_characters() -> None:
    lines = why_lines(_hostile_history(), "evil")
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b]0;pwned\\x07" in text
    assert "  FAILED [build<script>" in text  # a terminal shows it as the text it is


def test_the_pages_escape_what_runs_recorded(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    history = _hostile_history()
    pages = render_site(collect(repo, history=history, has_graph=True))
    # A name that could not name a page is left out, not written somewhere else.
    assert set(pages) == {"index.html", "evil.html", "late.html"}
    for name, page in pages.items():
        assert "<script>alert" not in page, name
        assert "<img src=x" not in page, name
        assert "onerror=alert" not in page or "&lt;img" in page, name
    evil = pages["evil.html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in evil
    assert '<pre class="error">backend &lt;script&gt;' in evil
    graph = to_html(history_graph(history))
    assert graph.count("<script") == 2 and "<img" not in graph
    dot = to_dot(history_graph(history))
    assert '"evil==1.0" [color="#c53030"' in dot


def test_a_hand_edited_run_file_cannot_make_the_pages_write_elsewhere(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    node = {"id": "../../x==1", "name": "../../x", "version": "1", "outcome": "failed"}
    run = _run(1).to_json() | {"nodes": [node], "edges": []}
    (repo.runs_dir).mkdir(exist_ok=True)
    (repo.runs_dir / f"{_run(1).id}.json").write_text(json.dumps(run))
    write_browse(repo)
    assert sorted(p.name for p in (repo.root / "browse").iterdir()) == ["graph.html", "index.html"]
    assert not (tmp_path / "x.html").exists()
