"""End to end: provenance, the chain of custody, rebuild --check and SBOMs of a small real tree.

One tree is bootstrapped once per module (tool-a builds itself; app and lib-b are built with it;
app needs lib-b at run time); each test tampers with its own copy of the repository.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Upstream, run_bootstrap
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel import app
from rewheel.build.sandbox import make_policy
from rewheel.cli import cli
from rewheel.index.http import HttpClient
from rewheel.index.upstream import HttpUpstream
from rewheel.repo.repository import Repository
from rewheel.trust.chain import Verdict, verify_chain
from rewheel.trust.provenance import PREDICATE_TYPE, STATEMENT_TYPE
from rewheel.trust.rebuild import rebuild_check


def _tree(up: Upstream) -> None:
    up.sdist("tool-a", "1.0")
    up.sdist("lib-b", "1.0", build_requires=["tool-a"])
    up.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib-b"])


@dataclass
class Built:
    repo: Path
    work: Path  # the work root the bootstrap built in
    upstream: Upstream


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = tmp_path_factory.mktemp("custody")
    files = base / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        _tree(up)
        repo = base / "repo"
        result = run_bootstrap(up, repo, ["app"])
        assert result.ok, result.failures
        yield Built(repo, base / "repo-work", up)


@pytest.fixture
def repo(built: Built, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(built.repo, copy)
    return copy


def _wheel(repo: Path, name: str) -> Path:
    (path,) = (repo / "wheels").glob(f"{name}-*.whl")
    return path


def _record_path(repo: Path, name: str) -> Path:
    (path,) = (repo / "records").glob(f"{name}-*.json")
    return path


def _entries(repo: Path, **kwargs: Any) -> dict[str, Any]:
    report = verify_chain(Repository(repo), **kwargs)
    return {e.name: e for e in report.entries}


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- provenance


def test_every_wheel_has_provenance_matching_it_and_its_record(repo: Path) -> None:
    records = {
        json.loads(p.read_text())["name"]: json.loads(p.read_text())
        for p in (repo / "records").glob("*.json")
    }
    assert set(records) == {"app", "lib-b", "tool-a"}
    sha = {r["wheel"]: r["wheel_sha256"] for r in records.values()}
    for name, record in records.items():
        wheel = repo / "wheels" / record["wheel"]
        assert record["provenance"] == wheel.name + ".provenance.json"
        assert isinstance(record["source_date_epoch"], int)
        stmt = json.loads((repo / "wheels" / record["provenance"]).read_text())
        assert stmt["_type"] == STATEMENT_TYPE
        assert stmt["predicateType"] == PREDICATE_TYPE
        assert stmt["subject"] == [
            {
                "name": wheel.name,
                "digest": {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()},
            }
        ]
        build = stmt["predicate"]["buildDefinition"]
        deps = build["resolvedDependencies"]
        (source,) = [d for d in deps if d["annotations"]["role"] == "source"]
        assert source["uri"] == record["sdist_url"]
        assert source["digest"]["sha256"] == record["sdist_sha256"]
        env = sorted(d["name"] for d in deps if d["annotations"]["role"] == "build-environment")
        assert env == sorted(
            w for w in sha if any(e["sha256"] == sha[w] for e in record["build_env"])
        )
        builder = stmt["predicate"]["runDetails"]["builder"]["builderDependencies"]
        roles = {d["name"]: d["annotations"]["role"] for d in builder}
        assert roles["rewheel"] == "builder"
        assert roles["python"] == "interpreter"
        assert roles["uv"] == "installer"
        assert build["internalParameters"]["sourceDateEpoch"] == record["source_date_epoch"]
        repro = build["internalParameters"]["reproducibilityEnvironment"]
        assert repro["PYTHONHASHSEED"] == "0"
        assert f"=/rewheel/{name}-1.0" in repro["CPPFLAGS"]
        assert build["externalParameters"]["package"] == {"name": name, "version": "1.0"}
        assert build["externalParameters"]["why"], name
        run = stmt["predicate"]["runDetails"]
        assert run["builder"]["id"].startswith("pkg:pypi/rewheel@")
        assert run["metadata"]["startedOn"] <= run["metadata"]["finishedOn"]
    # tool-a builds itself: its build environment is empty; app's holds tool-a.
    assert records["tool-a"]["build_env"] == []
    app_stmt = json.loads((repo / "wheels" / records["app"]["provenance"]).read_text())
    why = app_stmt["predicate"]["buildDefinition"]["externalParameters"]["why"]
    assert {"package": None, "requirement": "app", "kind": "toplevel"} in why


# ---------------------------------------------------------------- the chain of custody


def test_untouched_repository_holds_all_three_guarantees(repo: Path) -> None:
    entries = _entries(repo)
    assert set(entries) == {"app", "lib-b", "tool-a"}
    for e in entries.values():
        assert (e.source, e.dependencies, e.build_tools) == (Verdict.OK,) * 3, e.problems
        assert e.problems == []


def test_a_changed_byte_in_a_wheel_is_caught_and_breaks_what_was_built_with_it(
    repo: Path,
) -> None:
    _flip_byte(_wheel(repo, "tool_a"), 100)
    entries = _entries(repo)
    assert entries["tool-a"].source == Verdict.BROKEN
    assert any("not the wheel its build record names" in p for p in entries["tool-a"].problems)
    # app and lib-b were built with the original tool-a: that wheel is gone.
    assert entries["app"].build_tools == Verdict.BROKEN
    assert entries["lib-b"].build_tools == Verdict.BROKEN
    assert entries["app"].source == Verdict.OK


def test_a_changed_byte_in_a_provenance_subject_is_caught(repo: Path) -> None:
    path = _wheel(repo, "lib_b").with_name(_wheel(repo, "lib_b").name + ".provenance.json")
    stmt = json.loads(path.read_text())
    digest = stmt["subject"][0]["digest"]["sha256"]
    text = path.read_text().replace(digest, digest[:-1] + ("0" if digest[-1] != "0" else "1"))
    path.write_text(text)
    entries = _entries(repo)
    assert entries["lib-b"].source == Verdict.BROKEN
    assert any("subject sha256" in p for p in entries["lib-b"].problems)
    assert entries["app"].dependencies == Verdict.BROKEN  # app needs lib-b at run time
    assert entries["app"].source == Verdict.OK


def test_a_missing_provenance_is_caught(repo: Path) -> None:
    wheel = _wheel(repo, "app")
    wheel.with_name(wheel.name + ".provenance.json").unlink()
    assert any("no provenance" in p for p in _entries(repo)["app"].problems)


def test_a_swapped_sdist_hash_in_a_record_is_caught(repo: Path) -> None:
    path = _record_path(repo, "app")
    record = json.loads(path.read_text())
    record["sdist_sha256"] = hashlib.sha256(b"another sdist").hexdigest()
    path.write_text(json.dumps(record))
    entries = _entries(repo)
    assert entries["app"].source == Verdict.BROKEN
    problems = " ".join(entries["app"].problems)
    assert "sdist sha256 of the provenance and of the build record differ" in problems
    assert "no longer has the recorded sha256" in problems  # the copy kept in sdists/


def test_a_build_environment_wheel_not_in_the_repository_is_caught(repo: Path) -> None:
    tool = _wheel(repo, "tool_a")
    for path in tool.parent.glob(tool.name + "*"):
        path.unlink()
    _record_path(repo, "tool-a").unlink()
    entries = _entries(repo)
    assert entries["app"].build_tools == Verdict.BROKEN
    assert any(
        "build tool tool-a 1.0" in p and "not a wheel of the repository" in p
        for p in entries["app"].problems
    )
    assert "tool-a" not in entries


def test_a_prebuilt_wheel_is_refused_unless_allowed(repo: Path, tmp_path: Path) -> None:
    # lib-b replaced by a pre-built wheel with a record that says so.
    for path in (repo / "wheels").glob("lib_b-*"):
        path.unlink()
    wheel = make_wheel(SdistSpec("lib-b", "1.0"), repo / "wheels")
    record = {
        "name": "lib-b",
        "version": "1.0",
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "build_env": [],
        "prebuilt": True,
    }
    _record_path(repo, "lib-b").write_text(json.dumps(record))
    Repository(repo).regenerate_index()  # as publishing it does: its metadata and pages
    entries = _entries(repo)
    assert entries["lib-b"].source == Verdict.BROKEN
    assert any("pre-built" in p for p in entries["lib-b"].problems)
    assert entries["app"].dependencies == Verdict.BROKEN

    report = verify_chain(Repository(repo), allow_prebuilt=True)
    assert report.ok
    allowed = {e.name: e for e in report.entries}
    assert allowed["lib-b"].source == Verdict.PREBUILT
    assert allowed["app"].dependencies == Verdict.PREBUILT
    assert allowed["app"].source == Verdict.OK

    # Accepted as pre-built, it is still checked for what installers read about it.
    metadata = wheel.with_name(wheel.name + ".metadata")
    metadata.write_bytes(metadata.read_bytes() + b"Requires-Dist: evil\n")
    allowed = {e.name: e for e in verify_chain(Repository(repo), allow_prebuilt=True).entries}
    assert allowed["lib-b"].source == Verdict.BROKEN
    assert any("not the wheel's own METADATA" in p for p in allowed["lib-b"].problems)


def test_a_wheel_without_a_record_is_caught(repo: Path) -> None:
    make_wheel(SdistSpec("stowaway", "1.0"), repo / "wheels")
    entries = _entries(repo)
    assert entries["stowaway"].source == Verdict.BROKEN
    assert any("no build record" in p for p in entries["stowaway"].problems)
    assert not verify_chain(Repository(repo)).ok


def test_upstream_check_compares_the_sdist_with_what_the_index_lists_now(
    built: Built, repo: Path
) -> None:
    client = HttpClient()
    try:
        upstream = HttpUpstream(built.upstream.url, client)
        assert verify_chain(Repository(repo), upstream=upstream).ok
        # The index now serves another file under lib-b's sdist name.
        other = make_sdist(SdistSpec("lib-b", "1.0", install_requires=["evil"]), repo / "x")
        built.upstream.index.add(other)
        upstream = HttpUpstream(built.upstream.url, client)
        entries = {e.name: e for e in verify_chain(Repository(repo), upstream=upstream).entries}
    finally:
        client.close()
    assert entries["lib-b"].source == Verdict.BROKEN
    assert any("upstream index lists" in p for p in entries["lib-b"].problems)


def test_cli_verify_without_a_venv_checks_the_repository(repo: Path) -> None:
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "chain   app 1.0: built from source ok, dependencies ok, build tools ok" in result.output
    _flip_byte(_wheel(repo, "tool_a"), 100)
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo)])
    assert result.exit_code == 1
    assert "CHAIN   app 1.0: built from source ok, dependencies ok, build tools BROKEN" in (
        result.output
    )


def test_cli_verify_of_a_venv_checks_files_and_chain(repo: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    app.install(["app"], venv, repo_root=repo)
    result = CliRunner().invoke(cli, ["verify", "--venv", str(venv), "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "ok      App 1.0" in result.output
    assert "chain   lib-b 1.0:" in result.output
    assert "tool-a" not in result.output  # not installed; checked as app's build tool only
    _flip_byte(_wheel(repo, "tool_a"), 100)
    result = CliRunner().invoke(cli, ["verify", "--venv", str(venv), "--repo", str(repo)])
    assert result.exit_code == 1
    assert "build tools BROKEN" in result.output


# ---------------------------------------------------------------- reproducibility


def test_two_bootstraps_into_two_repositories_give_identical_wheels(
    upstream: Upstream, tmp_path: Path
) -> None:
    _tree(upstream)
    shas = []
    for n in (1, 2):
        repo = tmp_path / f"repo{n}"
        options = app.BootstrapOptions(
            requirements=[Requirement("app")],
            repo=repo,
            index_url=upstream.url,
            jobs=2,
            work_dir=tmp_path / "work",  # build paths depend on the work root only
        )
        assert app.bootstrap(options).ok
        shas.append({w.filename: w.sha256 for w in Repository(repo).wheels()})
    assert len(shas[0]) == 3
    assert shas[0] == shas[1]


def test_rebuild_check_passes_untouched_and_names_the_tampered_member(
    built: Built, repo: Path
) -> None:
    # Boxed as the bootstrap was: the build info names the build's folder, /build in a box.
    box = make_policy(enabled=True)
    results = rebuild_check(repo, jobs=2, sandbox=box)
    assert {r.name: r.status for r in results} == {
        "app": "identical",
        "lib-b": "identical",
        "tool-a": "identical",
    }, [(r.name, r.reason, r.differences) for r in results]

    wheel = _wheel(repo, "app")
    buffer = io.BytesIO()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(buffer, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "app/__init__.py":
                data += b"# tampered\n"
            dst.writestr(info, data)
    wheel.write_bytes(buffer.getvalue())
    (result,) = rebuild_check(repo, ["app"], jobs=1, sandbox=box)
    assert result.status == "different"
    assert "content differs: app/__init__.py" in result.differences
    assert result.kept is not None and result.kept.is_file()


def test_cli_rebuild_check_exit_codes(built: Built, repo: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["rebuild", "lib-b", "--repo", str(repo)])
    assert result.exit_code == 2  # --check is required
    result = runner.invoke(cli, ["rebuild", "--check", "nothing-here", "--repo", str(repo)])
    assert result.exit_code != 0


# ---------------------------------------------------------------- SBOM


def _components(bom: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bom["components"]}


def _props(component: dict[str, Any], name: str) -> list[str]:
    return [p["value"] for p in component.get("properties", []) if p["name"] == name]


def test_sbom_of_the_repository_marks_build_only_components(repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "sbom.json"
    result = CliRunner().invoke(cli, ["sbom", "--repo", str(repo), "-o", str(out)])
    assert result.exit_code == 0, result.output
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX"
    comps = _components(bom)
    assert set(comps) == {"app", "lib-b", "tool-a"}
    app_wheel, tool_wheel = _wheel(repo, "app"), _wheel(repo, "tool_a")
    assert comps["app"]["purl"] == "pkg:pypi/app@1.0"
    assert comps["app"]["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(app_wheel.read_bytes()).hexdigest()}
    ]
    assert comps["tool-a"]["scope"] == "excluded"
    assert _props(comps["tool-a"], "rewheel:build-only") == ["true"]
    assert comps["app"]["scope"] == "required"
    assert comps["lib-b"]["scope"] == "required"
    assert _props(comps["app"], "rewheel:build-dependency") == [tool_wheel.name]
    (src,) = comps["app"]["externalReferences"]
    assert src["type"] == "source-distribution"
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert deps[app_wheel.name] == {_wheel(repo, "lib_b").name, tool_wheel.name}


def test_sbom_of_a_venv(repo: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    app.install(["app"], venv, repo_root=repo)
    result = CliRunner().invoke(cli, ["sbom", "--venv", str(venv), "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    comps = _components(json.loads(result.output))
    assert comps["app"]["scope"] == comps["lib-b"]["scope"] == "required"
    assert comps["tool-a"]["scope"] == "excluded"  # not installed: only used to build
