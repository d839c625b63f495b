"""End to end: synthetic sdists on a fake index, built for real in isolated uv environments."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Upstream, build_info, run_bootstrap
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_wheel

from rewheel import app
from rewheel.build.sandbox import Limits, limits_with
from rewheel.core.errors import NoSdistError, ResolutionError
from rewheel.repo.repository import Repository

# Variables rewheel sets on purpose in a build, to keep any pip run inside it away from configs
# and indexes. Anything else named PIP_*/UV_* in a build was inherited, and must not be there.
DELIBERATE = {"PIP_CONFIG_FILE", "PIP_NO_INDEX", "UV_NO_CONFIG", "UV_OFFLINE"}


def _tree(up: Upstream) -> None:
    up.sdist("tool-a", "1.0")
    up.sdist("tool-a", "2.0")
    up.sdist("dyn_tool", "1.0")
    up.sdist(
        "App",
        "1.0",
        build_requires=["tool-a"],
        install_requires=["lib-b[fast]", "lib-c; python_version < '3'"],
    )
    up.sdist(
        "lib-b",
        "1.0",
        build_requires=["tool-a<2"],
        dynamic_requires=["dyn-tool"],
        extras={"fast": ["lib-d"]},
    )
    up.sdist("lib-c", "1.0")
    up.sdist("lib-d", "1.0", build_requires=["tool-a>=2"], static_metadata=False)


def _wheel(repo: Path, name: str, version: str) -> Path:
    (ref,) = Repository(repo).find_wheels(name, version)
    return repo / "wheels" / ref.filename


def test_bootstrap_builds_every_kind_of_dependency(upstream: Upstream, tmp_path: Path) -> None:
    _tree(upstream)
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"])
    assert result.ok, result.failures

    order = json.loads((repo / "build-order.json").read_text())
    built = [(e["name"], e["version"]) for e in order]
    # Two versions of one build tool; the marker-excluded lib-c is not built.
    assert sorted(built) == sorted(
        [
            ("app", "1.0"),
            ("lib-b", "1.0"),
            ("lib-d", "1.0"),
            ("tool-a", "1.0"),
            ("tool-a", "2.0"),
            ("dyn-tool", "1.0"),
        ]
    )
    assert len(built) == len(set(built)), "a (name, version) was built twice"

    # Every wheel of a build environment comes earlier in the list.
    position = {e["wheel_sha256"]: i for i, e in enumerate(order)}
    for i, entry in enumerate(order):
        for dep in entry["build_env"]:
            assert position[dep["sha256"]] < i
        for key in ("sdist_url", "sdist_sha256", "wheel", "wheel_sha256", "why", "build_env"):
            assert entry[key] is not None

    by_name = {(e["name"], e["version"]): e for e in order}
    why_kinds = {(w["package"], w["kind"]) for w in by_name[("dyn-tool", "1.0")]["why"]}
    assert why_kinds == {("lib-b==1.0", "build-backend")}
    assert ("app==1.0", "install") in {
        (w["package"], w["kind"]) for w in by_name[("lib-b", "1.0")]["why"]
    }
    assert ("lib-b==1.0", "install") in {
        (w["package"], w["kind"]) for w in by_name[("lib-d", "1.0")]["why"]
    }
    assert {w["kind"] for w in by_name[("tool-a", "1.0")]["why"]} == {"build-system"}
    assert [d["name"] for d in by_name[("lib-b", "1.0")]["build_env"]] == ["dyn-tool", "tool-a"]

    graph = json.loads((repo / "graph.json").read_text())
    kinds = {(e["from"], e["to"], e["kind"]) for e in graph["edges"]}
    assert (None, "app==1.0", "toplevel") in kinds
    assert ("app==1.0", "tool-a==2.0", "build-system") in kinds
    assert ("lib-b==1.0", "tool-a==1.0", "build-system") in kinds
    assert ("lib-b==1.0", "dyn-tool==1.0", "build-backend") in kinds

    # The backend saw exactly the resolved build environment, and nothing of pip's or uv's.
    info = build_info(_wheel(repo, "lib-b", "1.0"))
    assert info["requirements"] == {"tool-a<2": "1.0", "dyn-tool": "1.0"}
    assert not info["pip_importable"]
    assert not info["setuptools_importable"]
    assert set(info["env"]) <= DELIBERATE

    # The index serves what was built, with PEP 658 metadata beside each wheel, and the sdists
    # they were built from.
    page = json.loads((repo / "simple" / "tool-a" / "index.json").read_text())
    assert sorted(f["filename"] for f in page["files"]) == [
        "tool_a-1.0-py3-none-any.whl",
        "tool_a-1.0.tar.gz",
        "tool_a-2.0-py3-none-any.whl",
        "tool_a-2.0.tar.gz",
    ]
    assert (repo / "wheels" / "tool_a-1.0-py3-none-any.whl.metadata").is_file()


def test_rerun_reuses_everything(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["lib"])
    upstream.sdist("lib", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    first = run_bootstrap(upstream, repo, ["app"])
    assert (first.built, first.reused) == (3, 0)
    downloads = sum(1 for _m, p in upstream.index.requests if p.endswith(".tar.gz"))
    second = run_bootstrap(upstream, repo, ["app"])
    assert (second.built, second.reused) == (0, 3)
    assert sum(1 for _m, p in upstream.index.requests if p.endswith(".tar.gz")) == downloads
    order = [e["name"] for e in json.loads((repo / "build-order.json").read_text())]
    assert order[0] == "tool-a"
    assert sorted(order) == ["app", "lib", "tool-a"]


# Loaded by commands or runs that build, sign, draw or read metadata; a no-op does none of it.
NOT_FOR_A_NO_OP = (
    "rich",
    "packaging.metadata",
    "rewheel.build.builder",
    "rewheel.core.bootstrap",
    "rewheel.core.prune",
    "rewheel.core.resolver",
    "rewheel.serve.server",
    "rewheel.trust.provenance",
    "rewheel.ui.browse_pages",
    "rewheel.ui.graph_export",
)


def test_a_no_op_rerun_from_the_command_line_loads_only_what_it_compares(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).built == 2
    # A fresh interpreter, as a user's re-run is: what it imported is printed at its end.
    script = (
        "import sys, atexit\n"
        "atexit.register(lambda: print('MODULES', *sorted(sys.modules)))\n"
        "from rewheel.cli import main\n"
        "main()\n"
    )
    command = ["bootstrap", "app", "--repo", str(repo), "--index-url", upstream.url]
    done = subprocess.run(
        [sys.executable, "-c", script, *command], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "0 built, 2 reused" in done.stdout + done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("MODULES ")]
    loaded = set(line.split()[1:])
    assert "rewheel.app" in loaded and "urllib3" in loaded  # it did run
    assert loaded.isdisjoint(NOT_FOR_A_NO_OP), sorted(loaded & set(NOT_FOR_A_NO_OP))


def test_a_no_op_rerun_asks_for_its_pages_while_the_sandbox_is_probed(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).built == 2
    before = len(upstream.index.requests)
    asked_by_then: list[int] = []

    def limits(seconds: float | None) -> Limits:
        """Called for the sandbox's probe: by then the pages are being asked for."""
        end = time.monotonic() + 10
        while len(upstream.index.requests) == before and time.monotonic() < end:
            time.sleep(0.01)
        asked_by_then.append(len(upstream.index.requests) - before)
        return limits_with(seconds)

    again = run_bootstrap(upstream, repo, ["app"], machine=app.Machine(limits=limits))
    assert (again.built, again.reused) == (0, 2)
    assert asked_by_then[0] > 0


def test_a_build_order_entry_has_one_shape_built_or_reused(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    upstream.sdist("other", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    run_bootstrap(upstream, repo, ["app"])
    fresh = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    # Another package asked for: app and tool-a are reused this time, not rebuilt.
    second = run_bootstrap(upstream, repo, ["app", "other"])
    assert second.reused == 2
    reused = {e["name"]: e for e in json.loads((repo / "build-order.json").read_text())}
    for name in ("app", "tool-a"):
        assert sorted(fresh[name]) == sorted(reused[name]), name
        assert {"provenance", "source_date_epoch", "build_env_dir"} <= set(fresh[name])
        record = Repository(repo).load_record(name, "1.0")
        assert record is not None and sorted(record.to_json()) == sorted(fresh[name])


def test_failed_build_names_package_step_and_log_and_rerun_goes_on(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("good", "1.0", build_requires=["tool-a"])
    upstream.sdist("bad", "1.0", build_requires=["tool-a"], fail_build=True)
    upstream.sdist("app", "1.0", install_requires=["good", "bad"])
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["app"], keep_going=True)
    assert not result.ok
    error = result.failures["bad==1.0"]
    assert error.package == "bad"
    assert error.step == "build-wheel"
    assert error.log_path is not None and error.log_path.is_file()
    assert "SdistSpec.fail_build=True" in error.log_path.read_text()
    # What could be built was built and kept.
    assert Repository(repo).find_wheels("good", "1.0")
    assert Repository(repo).find_wheels("tool-a", "1.0")

    # The upstream fixes the sdist; the re-run builds only what is missing.
    upstream.sdist("bad", "1.0", build_requires=["tool-a"])
    again = run_bootstrap(upstream, repo, ["app"])
    assert again.ok, again.failures
    # app's own build needs nothing that failed, so it was built the first time.
    assert (again.built, again.reused) == (1, 3)


def test_package_without_sdist_is_named(upstream: Upstream, tmp_path: Path) -> None:
    upstream.wheel("wheel-only", "1.0")
    upstream.sdist("app", "1.0", install_requires=["wheel-only"])
    with pytest.raises(NoSdistError) as info:
        run_bootstrap(upstream, tmp_path / "repo", ["app"])
    assert info.value.package == "wheel-only"
    assert "no source distribution" in str(info.value)


def test_real_conflict_is_reported_before_any_build(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("a", "1.0", install_requires=["c==1.0"])
    upstream.sdist("b", "1.0", install_requires=["c==2.0"])
    upstream.sdist("c", "1.0")
    upstream.sdist("c", "2.0")
    repo = tmp_path / "repo"
    with pytest.raises(ResolutionError) as info:
        run_bootstrap(upstream, repo, ["a", "b"])
    chains = [" -> ".join(c) for c in info.value.chains]
    assert "a==1.0 (requested) -> c==1.0 (install)" in chains, chains
    assert "b==1.0 (requested) -> c==2.0 (install)" in chains, chains
    assert not list((repo / "wheels").glob("*.whl"))


def test_inherited_pip_and_uv_settings_never_reach_a_build(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    # A poisoned index and folder that offer a newer tool-a as a ready wheel.
    poison_files = tmp_path / "poison"
    poison_files.mkdir()
    poison_wheel = make_wheel(SdistSpec("tool-a", "9.0"), poison_files)
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "uv").mkdir(parents=True)
    with FakeIndex() as poison:
        poison.add(poison_wheel)
        for var in (
            "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL",
            "UV_INDEX_URL",
            "UV_EXTRA_INDEX_URL",
            "UV_DEFAULT_INDEX",
            "UV_INDEX",
        ):
            monkeypatch.setenv(var, poison.url)
        for var in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
            monkeypatch.setenv(var, str(poison_files))
        monkeypatch.setenv("PIP_CONSTRAINT", str(tmp_path / "nonexistent-constraints.txt"))
        monkeypatch.setenv("UV_CONSTRAINT", str(tmp_path / "nonexistent-constraints.txt"))
        (home / ".config" / "pip" / "pip.conf").write_text(
            f"[global]\nextra-index-url = {poison.url}\nfind-links = {poison_files}\n"
        )
        (home / ".config" / "uv" / "uv.toml").write_text(
            f'extra-index-url = ["{poison.url}"]\nfind-links = ["{poison_files}"]\n'
        )
        monkeypatch.setenv("HOME", str(home))
        repo = tmp_path / "repo"
        result = run_bootstrap(upstream, repo, ["app"])
        assert result.ok, result.failures
        assert poison.requests == []
    info = build_info(_wheel(repo, "app", "1.0"))
    assert info["requirements"] == {"tool-a": "1.0"}
    assert set(info["env"]) <= DELIBERATE
    order = json.loads((repo / "build-order.json").read_text())
    (app_entry,) = [e for e in order if e["name"] == "app"]
    (tool,) = app_entry["build_env"]
    assert (tool["name"], tool["version"]) == ("tool-a", "1.0")
    assert tool["sha256"] == Repository(repo).find_wheels("tool-a", "1.0")[0].sha256


def test_a_rerun_with_nothing_changed_only_revalidates_pages(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).built == 2
    last = json.loads((repo / "last-run.json").read_text())
    # Each page's size is kept, for the order in which the next check asks for them.
    for name in ("app", "tool-a"):
        page = upstream.index.render_project(name, "application/vnd.pypi.simple.v1+json")
        assert last["page_bytes"][name] == len(page)
    assert set(last["page_bytes"]) == set(last["pages"])
    before = len(upstream.index.requests)
    again = run_bootstrap(upstream, repo, ["app"])
    assert (again.built, again.reused) == (0, 2)
    new = upstream.index.requests[before:]
    assert new and all(path.startswith("/simple/") for _m, path in new), new

    # A new upstream release is a change: the run resolves again and builds it.
    upstream.sdist("tool-a", "2.0")
    third = run_bootstrap(upstream, repo, ["app"])
    assert third.ok
    assert Repository(repo).find_wheels("tool-a", "2.0")
    # A removed wheel is a change too.
    (ref,) = Repository(repo).find_wheels("app", "1.0")
    for path in (repo / "wheels").glob("app-1.0*"):
        path.unlink()
    fourth = run_bootstrap(upstream, repo, ["app"])
    assert fourth.built >= 1
    assert Repository(repo).find_wheels("app", "1.0")
    assert ref.filename
