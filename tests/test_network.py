"""The real thing, small: requests from PyPI, every package of its tree built from source."""

from __future__ import annotations

import json
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
