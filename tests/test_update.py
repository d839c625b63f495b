"""`rewheel update`: re-resolve against the upstream, say what that changes (new versions,
rebuilds and why, what stays, what the tree no longer needs) without building, then build only
that. Updated and pruned, a repository holds what a fresh bootstrap of the same requirements
builds."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import Upstream, run_bootstrap

from rewheel.cli import cli
from rewheel.core.errors import RepositoryError


def _update(upstream: Upstream, repo: Path, *args: str) -> Result:
    options = ["--repo", str(repo), "--index-url", upstream.url, "-j", "2"]
    work = ["--work-dir", str(repo.parent / f"{repo.name}-work")]
    return CliRunner().invoke(cli, ["update", *args, *options, *work])


def _tree(repo: Path) -> dict[str, bytes]:
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file() and not p.relative_to(repo).as_posix().startswith(("cache/", "work/"))
    }


def _builds(repo: Path) -> dict[str, list[str]]:
    """Each build of the last run's tree with the build tools it was built with."""
    order = json.loads((repo / "build-order.json").read_text())
    return {
        f"{e['name']}=={e['version']}": sorted(
            f"{t['name']}=={t['version']}" for t in e["build_env"]
        )
        for e in order
    }


def _wheels(repo: Path) -> list[str]:
    return sorted(p.name for p in (repo / "wheels").glob("*.whl"))


@pytest.fixture
def built(upstream: Upstream, tmp_path: Path) -> Path:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0", build_requires=["tool-a"])
    upstream.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib>=1"])
    upstream.sdist("other", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app", "other"]).ok
    return repo


def test_with_nothing_new_upstream_the_plan_is_that_everything_stays(
    upstream: Upstream, built: Path
) -> None:
    before = _tree(built)
    result = _update(upstream, built, "--dry-run")  # the last run's requirements
    assert result.exit_code == 0, result.output
    assert "updating what the run of" in result.stderr and "requested: app, other" in result.stderr
    assert "stays   app==1.0, lib==1.0, other==1.0, tool-a==1.0" in result.stdout
    assert "new " not in result.stdout and "rebuild" not in result.stdout
    assert "plan: 0 new, 0 rebuilt, 0 pre-built, 4 unchanged, 0 no longer needed" in result.stderr
    assert "dry run: nothing was built" in result.stderr
    assert _tree(built) == before


def test_new_releases_upstream_are_planned_then_built_and_equal_a_fresh_bootstrap(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    # Upstream moves on: a new lib, and a new release of the build tool everything uses.
    upstream.sdist("lib", "2.0", build_requires=["tool-a"])
    upstream.sdist("tool-a", "1.1")
    before = _tree(built)
    result = _update(upstream, built, "app", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "new     tool-a==1.1" in lines
    assert "new     lib==2.0" in lines
    assert "rebuild app==1.0: build tool tool-a 1.0 -> 1.1" in lines
    assert not [line for line in lines if line.startswith("stays")]
    for unused in ("lib==1.0", "other==1.0", "tool-a==1.0"):
        assert f"unused  {unused}: the tree no longer needs it (rewheel prune removes it)" in lines
    assert "plan: 2 new, 1 rebuilt, 0 pre-built, 0 unchanged, 3 no longer needed" in result.stderr
    assert _tree(built) == before  # a dry run downloads apart and writes nothing here

    result = _update(upstream, built, "app")
    assert result.exit_code == 0, result.output
    assert "3 built, 0 reused" in result.stderr  # exactly what the plan said

    # The same requirements bootstrapped fresh: the same builds, with the same build tools.
    fresh = tmp_path / "fresh"
    assert run_bootstrap(upstream, fresh, ["app"]).ok
    assert (
        _builds(built)
        == _builds(fresh)
        == {
            "tool-a==1.1": [],
            "lib==2.0": ["tool-a==1.1"],
            "app==1.0": ["tool-a==1.1"],
        }
    )
    # ... and once what the update left behind is pruned, the same wheels.
    assert CliRunner().invoke(cli, ["prune", "--keep", "app", "--repo", str(built)]).exit_code == 0
    assert _wheels(built) == _wheels(fresh)

    again = _update(upstream, built, "--dry-run")  # the last run's: app
    assert "stays   app==1.0, lib==2.0, tool-a==1.1" in again.stdout


def test_a_package_rebuilt_because_a_build_tool_is_rebuilt(upstream: Upstream, built: Path) -> None:
    """A new version of a build tool's own build tool: the build tool is rebuilt, and so is every
    build whose environment holds it (its wheel changes)."""
    upstream.sdist("tool-b", "1.0", build_requires=["tool-a"])
    upstream.sdist("top", "1.0", build_requires=["tool-b"])
    assert run_bootstrap(upstream, built, ["top"]).ok
    upstream.sdist("tool-a", "1.1")
    result = _update(upstream, built, "top", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "rebuild tool-b==1.0: build tool tool-a 1.0 -> 1.1" in result.stdout
    assert "rebuild top==1.0: build tool tool-b 1.0 is rebuilt" in result.stdout


def test_a_new_version_whose_sdist_cannot_be_read_is_said_so(
    upstream: Upstream, built: Path
) -> None:
    members = {
        "lib-3.0/PKG-INFO": b"Metadata-Version: 2.2\nName: lib\nVersion: 3.0\n",
        "lib-3.0/pyproject.toml": b"[build-system\nrequires = [\n",  # not TOML
    }
    bad = upstream.files / "lib-3.0.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    upstream.index.add(bad)
    result = _update(upstream, built, "app", "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "UNKNOWN lib==3.0: pyproject.toml is not valid TOML: Expected ']'" in result.stdout
    assert "rebuild app==1.0: build tool tool-a 1.0 -> 1.1" not in lines


def test_a_hostile_new_sdist_is_not_extracted_outside_its_plan_folder(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    """The plan reads a new version's pyproject.toml from its sdist, extracted by the same
    hardened extractor as a build: a member that climbs out is refused, nothing lands there."""
    members = {
        "lib-3.0/PKG-INFO": b"Metadata-Version: 2.2\nName: lib\nVersion: 3.0\n",
        "lib-3.0/pyproject.toml": b"[build-system]\nrequires = []\n",
        "lib-3.0/../../../../planted.txt": b"written outside\n",
    }
    bad = upstream.files / "lib-3.0.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    upstream.index.add(bad)
    result = _update(upstream, built, "app", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "UNKNOWN lib==3.0: " in result.stdout, result.stdout
    assert "member path with '..'" in result.stdout.split("UNKNOWN lib==3.0: ")[1]
    assert not list(tmp_path.rglob("planted.txt"))
    assert not list(Path("/tmp").glob("planted.txt"))


def test_update_without_requirements_or_runs_says_so(upstream: Upstream, tmp_path: Path) -> None:
    result = _update(upstream, tmp_path / "empty")
    assert isinstance(result.exception, RepositoryError)
    assert "no run is recorded" in str(result.exception)
    assert not (tmp_path / "empty").exists()


def test_with_a_cache_url_the_plan_says_what_the_cache_gives_and_the_run_takes_it(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    # Upstream moves on, and a colleague's repository (signed with a key trusted here: the one
    # these runs sign with) already built the new tree, except app, which it lacks.
    upstream.sdist("lib", "2.0", build_requires=["tool-a"])
    upstream.sdist("tool-a", "1.1")
    team = tmp_path / "team"
    assert run_bootstrap(upstream, team, ["app"]).ok
    app_record = json.loads((team / "records" / "app-1.0.json").read_text())
    (team / "build-cache" / f"sdist-{app_record['sdist_sha256']}.json").unlink()
    before = _tree(built)
    result = _update(upstream, built, "app", "--dry-run", "--cache-url", str(team))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"cache   tool-a==1.1: from the build cache {team}, new" in lines
    assert f"cache   lib==2.0: from the build cache {team}, new" in lines
    assert "rebuild app==1.0: build tool tool-a 1.0 -> 1.1" in lines
    assert (
        "plan: 0 new, 1 rebuilt, 2 from cache, 0 pre-built, 0 unchanged, 3 no longer needed"
        in result.stderr
    )
    assert "checked only when it is taken" in result.stderr  # what a plan cannot check
    assert _tree(built) == before  # nothing downloaded into the repository, nothing written

    # The run does what the plan said.
    result = _update(upstream, built, "app", "--cache-url", str(team))
    assert result.exit_code == 0, result.output
    assert "1 built, 2 from cache, 0 reused" in result.stderr


def test_a_plan_says_a_rebuild_is_taken_from_the_cache_and_what_changed(
    upstream: Upstream, built: Path, tmp_path: Path
) -> None:
    # Only a build tool moves on upstream; the cache has every build of the new tree.
    upstream.sdist("tool-a", "1.1")
    team = tmp_path / "team"
    assert run_bootstrap(upstream, team, ["app"]).ok
    result = _update(upstream, built, "app", "--dry-run", "--cache-url", str(team))
    assert result.exit_code == 0, result.output
    why = "instead of a rebuild (build tool tool-a 1.0 -> 1.1)"
    assert f"cache   app==1.0: from the build cache {team}, {why}" in result.stdout
    assert f"cache   lib==1.0: from the build cache {team}, {why}" in result.stdout
    assert "plan: 0 new, 0 rebuilt, 3 from cache" in result.stderr
