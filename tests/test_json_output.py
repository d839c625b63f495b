"""`--json` for scripts: `bootstrap` (what became of every package), `verify` and `why`, one JSON
object on stdout each, in the shapes docs/inspecting.md gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Upstream, run_bootstrap

from rewheel import app
from rewheel.cli import Runs, cli, main
from rewheel.core.report import BootstrapResult

ERROR_KEYS = {"type", "message", "step", "package", "version", "log", "hint", "chains"}
NODE_KEYS = {"id", "name", "version", "outcome", "wheel", "seconds", "error"}


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return int(info.value.code or 0), json.loads(out), err


def _bootstrap(upstream: Upstream, repo: Path, *args: str) -> list[str]:
    return [
        "bootstrap",
        *args,
        "--json",
        "--repo",
        str(repo),
        "--index-url",
        upstream.url,
        "--work-dir",
        str(repo.parent / "work"),
        "-j",
        "2",
    ]


def test_bootstrap_json_tells_every_outcome(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("good", "1.0", build_requires=["tool-a"])
    upstream.sdist("bad", "1.0", build_requires=["tool-a"], fail_build=True)
    upstream.sdist("needs-bad", "1.0", build_requires=["bad"])
    repo = tmp_path / "repo"
    argv = _bootstrap(upstream, repo, "good", "needs-bad", "--keep-going")
    code, data, err = _main(argv, capsys)
    assert code == 1
    assert "1 failed" in err  # the summary for people is still on stderr
    assert data["format"] == 1 and data["outcome"] == "failed"
    assert data["repository"] == str(repo.absolute())
    assert data["requested"] == ["good", "needs-bad"]
    assert isinstance(data["seconds"], float) and data["seconds"] > 0
    assert data["built"] == ["good==1.0", "tool-a==1.0"]
    assert data["reused"] == [] and data["prebuilt"] == [] and data["error"] is None
    (failed,) = data["failed"]
    assert set(failed) == NODE_KEYS and set(failed["error"]) == ERROR_KEYS
    assert failed["id"] == "bad==1.0" and failed["outcome"] == "failed"
    assert failed["error"]["step"] == "build-wheel"
    assert failed["error"]["message"].startswith("backend tinybackend failed")
    assert failed["error"]["log"] == str(repo / "logs" / "bad-1.0.log")
    (blocked,) = data["not_attempted"]
    assert blocked["id"] == "needs-bad==1.0" and blocked["outcome"] == "dependency-failed"
    assert "bad==1.0" in blocked["error"]["message"]

    # Again, nothing changed but the failure: the rest is reused.
    code, data, _ = _main(_bootstrap(upstream, repo, "good"), capsys)
    assert code == 0
    assert (data["outcome"], data["built"]) == ("ok", [])
    assert data["reused"] == ["good==1.0", "tool-a==1.0"]


def test_bootstrap_json_tells_the_error_that_stopped_the_run(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data, err = _main(_bootstrap(upstream, tmp_path / "repo", "missing"), capsys)
    assert code == 2 and "rewheel: error:" in err
    assert data["outcome"] == "error" and data["built"] == [] and data["failed"] == []
    assert data["error"]["step"] == "resolve" and "missing" in data["error"]["message"]


@pytest.fixture
def built(upstream: Upstream, tmp_path: Path) -> Path:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib"])
    upstream.sdist("lib", "1.0", build_requires=["tool-a"])
    upstream.sdist("other", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app", "other"]).ok
    return repo


def test_verify_json(built: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    app.install(["app"], venv, repo_root=built)
    args = ["verify", "--json", "--venv", str(venv), "--repo", str(built)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["venv"] == str(venv.absolute())
    assert data["distributions"] == [
        {"name": "App", "version": "1.0", "status": "ok", "seed": False},
        {"name": "lib", "version": "1.0", "status": "ok", "seed": False},
    ]
    assert data["problems"] == []
    wheels = data["chain"]["wheels"]
    assert [(w["name"], w["ok"], w["source"], w["build_tools"]) for w in wheels] == [
        ("app", True, "ok", "ok"),
        ("lib", True, "ok", "ok"),
    ]
    # A file changed after install: a problem, and not ok.
    (init,) = venv.glob("lib/python*/site-packages/lib/__init__.py")
    init.write_text("import os\n")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    (problem,) = data["problems"]
    assert problem["distribution"] == "lib" and problem["path"].endswith("lib/__init__.py")
    assert problem["reason"] == "modified after install"
    assert {"name": "lib", "version": "1.0", "status": "problem", "seed": False} in data[
        "distributions"
    ]


def test_verify_json_of_the_repository(built: Path, tmp_path: Path) -> None:
    repo = tmp_path / "copy"
    shutil.copytree(built, repo)
    (sdist,) = (repo / "sdists").glob("lib-*")
    sdist.unlink()
    result = CliRunner().invoke(cli, ["verify", "--json", "--repo", str(repo)])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["venv"] is None and data["distributions"] == [] and data["ok"] is False
    broken = {w["name"]: w for w in data["chain"]["wheels"] if not w["ok"]}
    assert set(broken) == {"app", "lib"}  # app needs lib at run time
    assert broken["lib"]["source"] == "broken" and broken["app"]["dependencies"] == "broken"
    assert any("is gone" in p for p in broken["lib"]["problems"])


def test_why_json(built: Path) -> None:
    result = CliRunner().invoke(cli, ["why", "tool-a", "--json", "--repo", str(built)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["format"] == 1 and data["query"] == "tool-a" and data["notes"] == []
    (package,) = data["packages"]
    assert package["id"] == "tool-a==1.0" and package["outcome"] == "built"
    assert package["in_repository"] is True and package["truncated"] is False
    assert package["run"]["requested"] == ["app", "other"]
    assert package["run"]["outcome"] == "ok" and package["run"]["started"].endswith("Z")
    chains = sorted(package["chains"], key=len)
    assert chains[0] == [
        {"from": None, "to": "app==1.0", "requirement": "app", "kind": "toplevel"},
        {"from": "app==1.0", "to": "tool-a==1.0", "requirement": "tool-a", "kind": "build-system"},
    ]


def test_why_says_when_a_wheel_is_no_longer_in_the_repository(built: Path) -> None:
    result = CliRunner().invoke(cli, ["prune", "--keep", "app", "--repo", str(built)])
    assert result.exit_code == 0, result.output
    text = CliRunner().invoke(cli, ["why", "other", "--repo", str(built)])
    assert "its wheel is no longer in the repository" in text.stdout
    data = json.loads(
        CliRunner().invoke(cli, ["why", "other", "--json", "--repo", str(built)]).stdout
    )
    assert data["packages"][0]["in_repository"] is False
    kept = CliRunner().invoke(cli, ["why", "lib", "--repo", str(built)])
    assert "no longer" not in kept.stdout


def test_why_json_of_a_name_no_run_had_is_an_error(built: Path) -> None:
    result = CliRunner().invoke(cli, ["why", "nothing-like-it", "--json", "--repo", str(built)])
    assert result.exit_code != 0 and result.stdout == ""


def test_bootstrap_holds_the_sdists_to_the_hashes_of_a_lock_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[app.BootstrapOptions] = []

    def fake_bootstrap(options: app.BootstrapOptions, **_: Any) -> BootstrapResult:
        seen.append(options)
        return BootstrapResult(order=[], graph={}, failures={})

    lock = tmp_path / "lock.txt"
    lock.write_text(f"app==1.0 --hash=sha256:{'a' * 64}\n")
    argv = ["bootstrap", "-r", str(lock), "--repo", str(tmp_path / "repo"), "--json"]
    with pytest.raises(SystemExit) as info:
        main(argv, runs=Runs(bootstrap=fake_bootstrap))
    out, err = capsys.readouterr()
    assert info.value.code in (0, None)
    assert "not used" not in err
    assert seen[0].sdist_hashes == {"app": frozenset({"a" * 64})}
    assert [str(r) for r in seen[0].requirements] == ["app==1.0"]
    assert json.loads(out)["outcome"] == "ok"
