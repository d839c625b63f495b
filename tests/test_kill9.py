"""``kill -9`` at any moment, then a re-run: the same repository as a clean run. Two runs on one
repository at once: the second stops at once, and the repository stays whole.

``rewheel bootstrap`` runs as a subprocess (its own process group) against a FakeIndex in this
process; the test watches the index's requests, the logs and the repository to choose its moment.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist
from test_hostile_builds import running_with

from rewheel.build.pipeline import default_work_root

SPECS = [
    SdistSpec("k9-tool", "1.0"),
    SdistSpec("k9-lib", "1.0", build_requires=["k9-tool"]),
    SdistSpec(
        "k9-app", "1.0", build_requires=["k9-tool"], install_requires=["k9-lib"], build_seconds=0.6
    ),
]


RUN = [sys.executable, "-m", "rewheel", "bootstrap"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "REWHEEL_"))}


def _start(index: FakeIndex, repo: Path, log: Path) -> subprocess.Popen[bytes]:
    cmd = [*RUN, "--repo", str(repo), "--index-url", index.url, "-j", "2", "k9-app"]
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            env=_env(),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen[bytes], log: Path) -> None:
    assert proc.wait(timeout=120) == 0, log.read_text()


def _wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.005)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wheel_fingerprint(path: Path) -> tuple[str, str | None]:
    """The wheel's content with the build folder's path taken out, and that path.

    Builds in one folder are identical to the byte; the folder is /dev/shm/rewheel-build unless
    another run on this machine holds it, when it gets a suffix.
    """
    digest = hashlib.sha256()
    prefix = None
    with zipfile.ZipFile(path) as zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            data = zf.read(info)
            if info.filename.endswith("/_build_info.json"):
                info_data = json.loads(data)
                prefix = info_data.pop("sys_prefix")
                info_data.pop("sys_executable")
                info_data.pop("cwd")
                data = json.dumps(info_data, sort_keys=True).encode()
            elif info.filename.endswith(".dist-info/RECORD"):
                data = b"\n".join(x for x in data.splitlines() if b"_build_info.json" not in x)
            digest.update(info.filename.encode() + b"\0" + data + b"\0")
    return digest.hexdigest(), prefix


def _snapshot(repo: Path) -> dict[str, Any]:
    """What a repository holds, after checking that it is consistent in itself."""
    wheels_dir, simple = repo / "wheels", repo / "simple"
    assert not [p for p in repo.rglob(".*") if p.name.endswith((".tmp", ".part"))]
    wheels = {}
    for wheel in sorted(wheels_dir.glob("*.whl")):
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        fingerprint, prefix = _wheel_fingerprint(wheel)
        metadata = (wheels_dir / f"{wheel.name}.metadata").read_bytes()
        wheels[wheel.name] = {
            "sha256": sha,
            "fingerprint": fingerprint,
            "build_prefix": prefix,
            "metadata_sha256": hashlib.sha256(metadata).hexdigest(),
        }
    root = json.loads((simple / "index.json").read_text())
    pages = {}
    for project in root["projects"]:
        page = json.loads((simple / project["name"] / "index.json").read_text())
        html = (simple / project["name"] / "index.html").read_text()
        for f in page["files"]:
            # The index vouches for exactly the bytes that are there.
            if f["filename"].endswith(".tar.gz"):  # the sdist a wheel was built from
                sdist = repo / "sdists" / f["filename"]
                assert f["hashes"]["sha256"] == hashlib.sha256(sdist.read_bytes()).hexdigest()
                assert f["core-metadata"] is False
            else:
                assert f["hashes"]["sha256"] == wheels[f["filename"]]["sha256"]
                assert f["core-metadata"]["sha256"] == wheels[f["filename"]]["metadata_sha256"]
            assert f"#sha256={f['hashes']['sha256']}" in html
        pages[project["name"]] = (sorted(f["filename"] for f in page["files"]), page["versions"])
    listed = [x for files, _v in pages.values() for x in files]
    assert sorted(x for x in listed if x.endswith(".whl")) == sorted(wheels)
    records = {}
    for path in sorted((repo / "records").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["wheel_sha256"] == wheels[record["wheel"]]["sha256"]
        records[path.name] = record["wheel"]
    order = json.loads((repo / "build-order.json").read_text())
    return {
        "wheels": wheels,
        "pages": pages,
        "records": records,
        "order": sorted((e["name"], e["version"]) for e in order),
    }


def _assert_same(got: dict[str, Any], clean: dict[str, Any]) -> None:
    assert got["order"] == clean["order"]
    assert got["pages"] == clean["pages"]
    assert got["records"] == clean["records"]
    assert got["wheels"].keys() == clean["wheels"].keys()
    for name, wheel in got["wheels"].items():
        expected = clean["wheels"][name]
        assert wheel["fingerprint"] == expected["fingerprint"], name
        assert wheel["metadata_sha256"] == expected["metadata_sha256"], name
        if wheel["build_prefix"] == expected["build_prefix"]:
            assert wheel["sha256"] == expected["sha256"], name


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIndex]:
    files = tmp_path_factory.mktemp("k9-files")
    with FakeIndex() as idx:
        for spec in SPECS:
            idx.add(make_sdist(spec, files))
        yield idx


@pytest.fixture(scope="module")
def clean(index: FakeIndex, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("k9-clean")
    log = base / "run.log"
    _finish(_start(index, base / "repo", log), log)
    snapshot = _snapshot(base / "repo")
    assert snapshot["order"] == [("k9-app", "1.0"), ("k9-lib", "1.0"), ("k9-tool", "1.0")]
    return snapshot


def _requests(index: FakeIndex, suffix: str) -> int:
    return sum(1 for _m, p in list(index.requests) if p.endswith(suffix))


def _new_request(index: FakeIndex, suffix: str) -> Callable[[], bool]:
    before = _requests(index, suffix)
    return lambda: _requests(index, suffix) > before


def _log_has(repo: Path, name: str, text: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return text in (repo / "logs" / f"{name}.log").read_text()
        except (OSError, UnicodeDecodeError):
            return False

    return ready


def _any(pattern: str, repo: Path) -> Callable[[], bool]:
    return lambda: any(repo.glob(pattern))


def _backend_pids() -> list[int]:
    base = default_work_root()
    found = [
        p
        for d in base.parent.glob(f"{base.name}*/k9-app-1.0")
        for p in d.rglob(".tinybackend-pids")
    ]
    return [int(p.read_text().split()[0]) for p in found if p.read_text().strip()]


PHASES = ["download", "build-env", "build", "publish", "index"]


@pytest.mark.parametrize("phase", PHASES)
def test_kill_9_then_rerun_gives_the_clean_repository(
    index: FakeIndex, clean: dict[str, Any], tmp_path: Path, phase: str
) -> None:
    repo, log = tmp_path / "repo", tmp_path / "run.log"
    if phase == "download":
        index.stall("k9_app-1.0.tar.gz", 30.0)
    downloading = _new_request(index, "k9_app-1.0.tar.gz")
    proc = _start(index, repo, log)
    try:
        if phase == "download":
            _wait_until("the sdist download", downloading, proc)
            # Meanwhile a second run on the same repository stops at once, and says why.
            started = time.monotonic()
            second = subprocess.run(
                [*RUN, "--repo", str(repo), "--index-url", index.url, "k9-app"],
                env=_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert second.returncode == 2, second.stderr
            # At once: it did not wait for the first run, still stalled in its download.
            assert time.monotonic() - started < 20
            assert "another rewheel run uses this repository" in second.stderr
            assert str(repo) in second.stderr
            assert proc.poll() is None  # the first run goes on
        elif phase == "build-env":
            _wait_until("a build env", _log_has(repo, "k9-tool-1.0", " venv "), proc)
        elif phase == "build":
            _wait_until("build_wheel", _log_has(repo, "k9-app-1.0", "build_wheel"), proc)
            _wait_until("the backend", lambda: bool(_backend_pids()), proc)
        elif phase == "publish":
            _wait_until("a published wheel", _any("wheels/*.whl", repo), proc)
        elif phase == "index":
            _wait_until("a project page", _any("simple/k9-lib/index.json", repo), proc)
    finally:
        _kill(proc)
    if phase == "build":
        # The backend ran in its own session (and sandbox), out of reach of the killed group;
        # it dies anyway with bwrap. Its pids are the sandbox's own, so it is looked for by
        # what it runs: the build environment's python, in k9-app's build folder.
        assert _backend_pids()
        deadline = time.monotonic() + 5
        while running_with("k9-app-1.0") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not running_with("k9-app-1.0"), "the build backend outlived the killed run"

    _finish(_start(index, repo, log), log)
    _assert_same(_snapshot(repo), clean)
