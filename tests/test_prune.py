"""`rewheel prune`: what the kept requirements reach (at run time, and as build tools of what is
reached, recursively) stays; everything else of the repository's packages goes, and what
describes the repository (index pages, build-order.json, graph.json) agrees with what is left.
Nothing outside the repository's own folders is ever touched, whatever its records say."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Upstream, run_bootstrap
from support.fake_index import FakeIndex

from rewheel import app
from rewheel.cli import cli
from rewheel.core.errors import RepositoryError, RewheelError
from rewheel.core.prune import (
    Folder,
    Kept,
    RepoFile,
    file_node,
    keep,
    plan,
    pruned_graph,
    pruned_order,
)
from rewheel.repo.repository import Repository
from rewheel.trust.chain import verify_chain

# -- planning (pure) ------------------------------------------------------------------------------


def test_keep_follows_run_time_roots_then_build_tools_recursively() -> None:
    kept = keep(
        {"app": ["app==1", "lib==2"], "solo": ["solo==1"]},
        {
            "app==1": ["tool-a==1"],
            "lib==2": ["tool-b==1"],
            "tool-b==1": ["tool-a==1", "tool-c==1"],
            "tool-c==1": ["tool-c==1"],  # a cycle ends
            "unreached==1": ["tool-d==1"],
        },
    )
    assert kept == {
        "app==1": Kept("app"),
        "lib==2": Kept("app"),
        "solo==1": Kept("solo"),
        "tool-a==1": Kept("app", tool_of="app==1"),
        "tool-b==1": Kept("app", tool_of="lib==2"),
        "tool-c==1": Kept("app", tool_of="tool-b==1"),
    }
    assert str(kept["tool-c==1"]) == "build tool of tool-b==1, for 'app'"
    assert str(kept["lib==2"]) == "needed at run time by 'app'"


@pytest.mark.parametrize(
    ("folder", "name", "node"),
    [
        (Folder.WHEELS, "Foo_Bar-1.0-py3-none-any.whl", "foo-bar==1.0"),
        (Folder.WHEELS, "foo_bar-1.0-1-cp311-cp311-linux_x86_64.whl.metadata", "foo-bar==1.0"),
        (Folder.WHEELS, "foo_bar-1.0-py3-none-any.whl.provenance.json", "foo-bar==1.0"),
        (Folder.WHEELS, "foo_bar-1.0-py3-none-any.whl.provenance.dsse.json", "foo-bar==1.0"),
        (Folder.WHEELS, "foo_bar-1.0-py3-none-any.whl.provenance", "foo-bar==1.0"),
        (Folder.WHEELS, "foo_bar-1.0-py3-none-any.whl.metadata.metadata", None),
        (Folder.WHEELS, ".foo_bar-1.0-py3-none-any.whl.x1y2.tmp", None),
        (Folder.WHEELS, "README", None),
        (Folder.SDISTS, "Foo.Bar-1.0.tar.gz", "foo-bar==1.0"),
        (Folder.SDISTS, "foo_bar-1.0rc1.zip", "foo-bar==1.0rc1"),
        (Folder.RECORDS, "foo-bar-1.0.json", "foo-bar==1.0"),
        (Folder.RECORDS, "Foo_Bar-1.0.json", None),  # not a name the repository writes
        (Folder.RECORDS, "foo-bar-1.0.txt", None),
        (Folder.LOGS, "foo-bar-1.0.log", "foo-bar==1.0"),
        (Folder.LOGS, "install.log", None),
        (Folder.LOGS, "..-1.0.log", None),
        (Folder.REBUILD_LOGS, "foo-bar-2.0.post1.log", "foo-bar==2.0.post1"),
    ],
)
def test_a_file_belongs_to_a_package_by_its_name_alone(
    folder: Folder, name: str, node: str | None
) -> None:
    assert file_node(RepoFile(folder, name)) == node


def test_the_plan_sorts_files_by_package() -> None:
    files = [
        RepoFile(Folder.WHEELS, "app-1.0-py3-none-any.whl"),
        RepoFile(Folder.WHEELS, "old-1.0-py3-none-any.whl"),
        RepoFile(Folder.RECORDS, "old-1.0.json"),
        RepoFile(Folder.LOGS, "install.log"),
    ]
    the_plan = plan(files, {"app==1.0": Kept("app")})
    assert the_plan.remove == {
        "old==1.0": (
            RepoFile(Folder.RECORDS, "old-1.0.json"),
            RepoFile(Folder.WHEELS, "old-1.0-py3-none-any.whl"),
        )
    }
    assert the_plan.kept_files == {"app==1.0": (files[0],)}
    assert the_plan.left_alone == (RepoFile(Folder.LOGS, "install.log"),)


def test_order_and_graph_lose_the_removed_packages_and_their_edges() -> None:
    order = [{"name": "app", "version": "1.0"}, {"name": "Old_Pkg", "version": "1.0.0"}, "odd"]
    assert pruned_order(order, {"old-pkg==1.0.0"}) == [order[0], "odd"]
    graph = {
        "nodes": [{"id": "app==1.0"}, {"id": "old==1.0"}],
        "edges": [
            {"from": None, "to": "app==1.0"},
            {"from": "app==1.0", "to": "old==1.0"},
            {"from": "old==1.0", "to": "tool==1"},
        ],
        "other": 1,
    }
    assert pruned_graph(graph, {"old==1.0"}) == {
        "nodes": [{"id": "app==1.0"}],
        "edges": [{"from": None, "to": "app==1.0"}],
        "other": 1,
    }


# -- on a real tree -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """app needs lib at run time; lib is built with tool-b, which is built with tool-a; app is
    built with tool-a. The repository holds lib 1.0 (an earlier pin) and 2.0, and other (built
    with tool-c), which app does not need."""
    base = tmp_path_factory.mktemp("prune")
    files = base / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool-a", "1.0")
        up.sdist("tool-b", "1.0", build_requires=["tool-a"])
        up.sdist("tool-c", "1.0")
        up.sdist("lib", "1.0", build_requires=["tool-b"])
        up.sdist("lib", "2.0", build_requires=["tool-b"])
        up.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib>=1"])
        up.sdist("other", "1.0", build_requires=["tool-c"])
        repo = base / "repo"
        assert run_bootstrap(up, repo, ["app", "other"], constraints=["lib==1.0"]).ok
        assert run_bootstrap(up, repo, ["app"]).ok  # the newer pin: lib 2.0
        yield repo


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _prune(repo: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["prune", "--repo", str(repo), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_the_dry_run_says_what_goes_and_why_the_rest_stays(repo: Path) -> None:
    before = _tree(repo)
    code, out, err = _prune(repo, "--keep", "app", "--dry-run")
    assert code == 0, err
    assert "keep    app==1.0: needed at run time by 'app'" in out
    assert "keep    lib==2.0: needed at run time by 'app'" in out
    assert "keep    tool-a==1.0: build tool of app==1.0, for 'app'" in out
    assert "keep    tool-b==1.0: build tool of lib==2.0, for 'app'" in out
    for gone in ("lib==1.0", "other==1.0", "tool-c==1.0"):
        assert f"remove  {gone}: reached by no kept requirement" in out
    assert "          wheels/lib-1.0-py3-none-any.whl.provenance.json" in out
    assert "          records/lib-1.0.json" in out
    assert "          logs/lib-1.0.log" in out
    assert "          sdists/lib-1.0.tar.gz" in out
    assert "dry run: nothing was removed" in err
    assert _tree(repo) == before


def test_prune_removes_what_nothing_kept_reaches_and_the_rest_stays_whole(
    repo: Path, tmp_path: Path
) -> None:
    code, _, err = _prune(repo, "--keep", "app")
    assert code == 0, err
    left = _tree(repo)
    ours = [n for n in left if n.startswith(("wheels/", "sdists/", "records/", "logs/", "simple/"))]
    for gone in ("lib-1.0", "other", "tool_c", "tool-c"):
        assert not [name for name in ours if f"/{gone}" in name], gone
    for project in ("app", "lib", "tool-a", "tool-b"):
        assert f"simple/{project}/index.html" in left
    assert "simple/other/index.html" not in left and "simple/tool-c/index.html" not in left
    assert b"lib-1.0-" not in left["simple/lib/index.html"]
    assert b"lib-2.0-" in left["simple/lib/index.html"]
    # build-order.json and graph.json name only what is left.
    order = json.loads(left["build-order.json"])
    graph = json.loads(left["graph.json"])
    nodes = {f"{e['name']}=={e['version']}" for e in order}
    assert nodes == {"app==1.0", "lib==2.0", "tool-a==1.0", "tool-b==1.0"}
    assert {n["id"] for n in graph["nodes"]} == nodes
    assert all(e["to"] in nodes for e in graph["edges"])
    # Nothing needed went: the chain of custody of every wheel left holds, and it installs.
    report = verify_chain(Repository(repo))
    assert report.ok, [(e.name, e.problems) for e in report.entries] + report.problems
    assert len(report.entries) == 4
    app.install(["app"], tmp_path / "venv", repo_root=repo)
    # The browsable pages follow.
    assert not (repo / "browse" / "other.html").exists()


def test_a_requirements_file_keeps_its_requirements_resolved_together(repo: Path) -> None:
    keep_file = repo.parent / "keep.txt"
    keep_file.write_text("other\nlib==1.0\n")
    code, out, err = _prune(repo, "-r", str(keep_file), "--dry-run")
    assert code == 0, err
    assert f"keep    lib==1.0: needed at run time by '-r {keep_file}'" in out
    assert f"keep    tool-c==1.0: build tool of other==1.0, for '-r {keep_file}'" in out
    assert "remove  app==1.0" in out and "remove  lib==2.0" in out


def test_a_kept_requirement_the_repository_cannot_satisfy_removes_nothing(repo: Path) -> None:
    before = _tree(repo)
    with pytest.raises(RewheelError) as info:
        _prune(repo, "--keep", "app", "--keep", "missing")
    assert info.value.step == "prune" and "missing" in info.value.message
    assert _tree(repo) == before


def test_a_kept_package_whose_record_is_another_s_stops_prune(repo: Path) -> None:
    """Its build tools are unknown: removing anything could remove them."""
    before = _tree(repo)
    shutil.copy(repo / "records" / "other-1.0.json", repo / "records" / "lib-2.0.json")
    with pytest.raises(RepositoryError, match=r"records/lib-2.0.json is the record of other==1.0"):
        _prune(repo, "--keep", "app")
    assert _tree(repo) == {**before, "records/lib-2.0.json": before["records/other-1.0.json"]}


def test_records_cannot_make_prune_remove_anything_outside_the_repository(
    repo: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = {
        name: outside / name
        for name in ("victim-1.0-py3-none-any.whl", "victim-1.0.log", "victim-1.0.tar.gz")
    }
    for path in victims.values():
        path.write_text("not the repository's\n")
    (outside / "passwd").write_text("root:x:0:0\n")
    # A hand-made record of a package nothing keeps, every name in it pointing out.
    record = json.loads((repo / "records" / "other-1.0.json").read_text())
    record.update(
        name="evil",
        version="1.0",
        wheel="../../outside/victim-1.0-py3-none-any.whl",
        log="../../outside/victim-1.0.log",
        sdist_url="https://example.invalid/../../outside/victim-1.0.tar.gz",
        provenance="../../outside/passwd",
        build_env=[{"name": "../../outside/passwd", "version": "1.0", "sha256": "0" * 64}],
    )
    (repo / "records" / "evil-1.0.json").write_text(json.dumps(record))
    # ... and the same in a record of a package that is kept.
    kept = json.loads((repo / "records" / "app-1.0.json").read_text())
    kept["build_env"] = [*kept["build_env"], {"name": "../outside", "version": "1", "sha256": ""}]
    kept["wheel"] = "../../outside/passwd"
    (repo / "records" / "app-1.0.json").write_text(json.dumps(kept))
    # Links where wheels and logs are looked for: never followed, never removed.
    (repo / "wheels" / "zed-1.0-py3-none-any.whl").symlink_to(
        victims["victim-1.0-py3-none-any.whl"]
    )
    (repo / "logs" / "rebuild").symlink_to(outside, target_is_directory=True)
    shutil.copy(victims["victim-1.0.log"], outside / "other-1.0.log")

    code, out, err = _prune(repo, "--keep", "app")
    assert code == 0, err
    assert "remove  evil==1.0" in out
    assert not (repo / "records" / "evil-1.0.json").exists()
    for path in [*victims.values(), outside / "passwd", outside / "other-1.0.log"]:
        assert path.read_text() in ("not the repository's\n", "root:x:0:0\n"), path
    assert (repo / "wheels" / "zed-1.0-py3-none-any.whl").is_symlink()
    assert (repo / "logs" / "rebuild").is_symlink()
    assert "logs/rebuild is not a folder (a link or a file): left alone" in err
