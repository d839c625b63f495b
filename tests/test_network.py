"""The real thing, small: requests from PyPI, every package of its tree built from source."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from rewheel.cli import cli

pytestmark = pytest.mark.network


def test_requests_from_pypi_builds_installs_and_verifies(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    venv = tmp_path / "venv"
    runner = CliRunner()

    result = runner.invoke(cli, ["bootstrap", "requests", "--repo", str(repo)])
    assert result.exit_code == 0, result.output

    order = json.loads((repo / "build-order.json").read_text())
    names = {e["name"] for e in order}
    # The tree itself and the build tools it needs, all built here from sdists.
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer"} <= names
    assert {"setuptools", "flit-core", "hatchling"} <= names
    for entry in order:
        assert entry["sdist_url"].endswith((".tar.gz", ".zip"))
        assert (repo / "wheels" / entry["wheel"]).is_file()

    result = runner.invoke(cli, ["install", "requests", "--venv", str(venv), "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import requests; print(requests.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in out.stdout

    result = runner.invoke(cli, ["verify", "--venv", str(venv), "--repo", str(repo)])
    assert result.exit_code == 0, result.output

    # One byte changed in an installed file: verify must name it and fail.
    (target,) = venv.glob("lib/python*/site-packages/requests/api.py")
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01
    target.write_bytes(bytes(data))
    result = runner.invoke(cli, ["verify", "--venv", str(venv), "--repo", str(repo)])
    assert result.exit_code == 1
    assert "requests/api.py" in result.output


def test_a_real_tree_updated_pruned_locked_and_installed(tmp_path: Path) -> None:
    """Issue 14's day 2 on requests: a newer pin, the old release pruned, locks in both formats
    that pip (hashes required) and uv install from the repository, and verify after it all."""
    import sys
    import tomllib

    import uv

    from rewheel.repo.repository import Repository
    from rewheel.serve.server import IndexServer

    repo = tmp_path / "repo"
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, "--repo", str(repo)])
        assert result.exit_code == 0, result.output
        return result.output

    run("bootstrap", "requests==2.31.0")
    plan = run("update", "requests==2.32.3", "--dry-run")
    assert "new     requests==2.32.3" in plan and "unused  requests==2.31.0" in plan
    assert not list((repo / "wheels").glob("requests-2.32.3-*.whl"))  # a dry run builds nothing
    run("update", "requests==2.32.3")
    assert [w.version for w in Repository(repo).wheels() if w.name == "requests"] == [
        "2.31.0",
        "2.32.3",
    ]

    run("prune", "--keep", "requests==2.32.3")
    left = [p.name for p in repo.rglob("*requests-2.31.0*")] + [
        p.name for p in repo.rglob("*requests_2.31.0*")
    ]
    assert left == []
    assert "2.31.0" not in (repo / "build-order.json").read_text()
    assert (repo / "sdists" / "requests-2.32.3.tar.gz").is_file()

    lock = tmp_path / "lock.txt"
    run("lock", "requests==2.32.3", "-o", str(lock))
    pylock = tmp_path / "pylock.toml"
    run("lock", "requests==2.32.3", "-o", str(pylock))
    packages = {p["name"]: p for p in tomllib.loads(pylock.read_text())["packages"]}
    assert packages["requests"]["version"] == "2.32.3"
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer"} == set(packages)
    assert all("sdist" in p for p in packages.values())

    env = {"PIP_CONFIG_FILE": os.devnull, "PATH": os.environ["PATH"], "NO_PROXY": "127.0.0.1"}
    target = tmp_path / "pip-target"
    with IndexServer(Repository(repo)) as srv:
        pip = [sys.executable, "-m", "pip", "install", "--isolated", "--no-cache-dir", "-q"]
        pip += ["--require-hashes", "--no-deps", "--index-url", srv.url, "--target", str(target)]
        subprocess.run([*pip, "-r", str(lock)], env=env, check=True)
    assert (target / "requests" / "__init__.py").is_file()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    uv_pip = [uv.find_uv_bin(), "pip", "install", "--no-config", "--no-cache", "--no-build"]
    uv_pip += ["--python", str(venv / "bin" / "python"), "-r", str(pylock)]
    subprocess.run(uv_pip, env=env, check=True)
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import requests; print(requests.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "2.32.3"
    run("verify", "--venv", str(venv))
