"""Builds on a Dask cluster: the same repository as a local run, and a worker lost mid-build."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Upstream
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from support.scripted_server import ScriptedServer

from rewheel import app
from rewheel.build.sandbox import SandboxPolicy
from rewheel.build.settings import PackageSettings, Patch
from rewheel.build.workspace import Workspace
from rewheel.core.bootstrap import BootstrapResult, Prepared
from rewheel.core.errors import BuildError, ConfigError, IntegrityError, Step
from rewheel.core.fsutil import sha256_file
from rewheel.core.resolver import Pin
from rewheel.core.types import IndexFile
from rewheel.index.http import HttpClient
from rewheel.repo.repository import Repository
from rewheel.serve.server import SHA256_HEADER, IndexServer

distributed = pytest.importorskip("distributed")

from rewheel.dask.dask_steps import DaskSteps, error_from_result, parse_dask_target  # noqa: E402
from rewheel.dask.dask_worker import (  # noqa: E402
    BUILD,
    EnvSpec,
    Job,
    JobResult,
    WorkerTransferError,
    _Uploader,
    claim_build_root,
    run_job,
    worker_resource,
)

# Record fields that must not depend on where a build ran.
STABLE = (
    "name",
    "version",
    "sdist_url",
    "sdist_sha256",
    "wheel",
    "wheel_sha256",
    "why",
    "build_env",
    "build_system_requires",
    "backend_requires",
    "cache_key",
)


def _options(upstream: Upstream, repo: Path, work: Path, **kwargs: Any) -> app.BootstrapOptions:
    return app.BootstrapOptions(
        requirements=[Requirement("app")],
        repo=repo,
        index_url=upstream.url,
        jobs=2,
        work_dir=work,
        **kwargs,
    )


def _order(repo: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((repo / "build-order.json").read_text())
    return data


def _check_repository(repo: Path) -> dict[str, dict[str, Any]]:
    """What any finished run must leave; returns the build-order entries by name."""
    order = _order(repo)
    position = {e["wheel_sha256"]: i for i, e in enumerate(order)}
    for i, entry in enumerate(order):
        for dep in entry["build_env"]:
            assert position[dep["sha256"]] < i, f"{entry['name']} built before its build env"
    published = {ref.filename: ref.sha256 for ref in Repository(repo).wheels()}
    assert published == {e["wheel"]: e["wheel_sha256"] for e in order}
    for entry in order:
        assert sha256_file(repo / "wheels" / entry["wheel"]) == entry["wheel_sha256"]
        record = json.loads(
            (repo / "records" / f"{entry['name']}-{entry['version']}.json").read_text()
        )
        assert record["wheel_sha256"] == entry["wheel_sha256"]
        page = json.loads((repo / "simple" / entry["name"] / "index.json").read_text())
        assert entry["wheel"] in {f["filename"] for f in page["files"]}
    # Nothing staged is left behind: every upload was published or thrown away.
    uploads = repo / "work" / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    return {e["name"]: e for e in order}


def _canonical(value: Any) -> Any:
    """``value`` with its lists sorted: the order of reasons and edges follows timing."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _tree(up: Upstream) -> None:
    up.sdist("tool-a", "1.0")
    up.sdist("dyn-tool", "1.0")
    # get-requires asks for more: the build runs as a second task, in a second environment.
    up.sdist("lib-b", "1.0", build_requires=["tool-a"], dynamic_requires=["dyn-tool"])
    up.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["lib-b"])


def test_local_cluster_builds_what_a_local_run_builds(upstream: Upstream, tmp_path: Path) -> None:
    _tree(upstream)
    work = tmp_path / "work"  # one build path for both runs, as on one machine
    local = app.bootstrap(_options(upstream, tmp_path / "local", work))
    assert local.ok, local.failures

    started = time.monotonic()
    remote = app.bootstrap(_options(upstream, tmp_path / "dask", work, dask="local:2"))
    seconds = time.monotonic() - started
    assert remote.ok, remote.failures
    assert remote.built == 4 and seconds < 40

    by_local = _check_repository(tmp_path / "local")
    by_dask = _check_repository(tmp_path / "dask")
    assert sorted(by_dask) == ["app", "dyn-tool", "lib-b", "tool-a"]
    for name, entry in by_local.items():
        for key in STABLE:
            assert _canonical(by_dask[name][key]) == _canonical(entry[key]), (name, key)
    graphs = [json.loads((tmp_path / r / "graph.json").read_text()) for r in ("local", "dask")]
    assert _canonical(graphs[0]) == _canonical(graphs[1])

    # The workers' logs reached the coordinator: two tasks for lib-b, one for the others.
    lib_log = (tmp_path / "dask" / "logs" / "lib-b-1.0.log").read_text()
    assert lib_log.count("on Dask worker tcp://") == 2
    assert "=== get-requires on Dask worker" in lib_log and "=== build on Dask worker" in lib_log
    assert "did not arrive" not in lib_log

    # Run again: everything is reused from the cache, no cluster work needed.
    again = app.bootstrap(_options(upstream, tmp_path / "dask", work, dask="local:1"))
    assert again.ok and again.built == 0 and again.reused == 4


@pytest.mark.skipif(not shutil.which("cc"), reason="needs a C compiler")
def test_wheels_built_on_workers_record_how_they_were_built(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The umask, the compilers and what the wheel links, read on the worker that built it,
    reach the coordinator's provenance as a local build's do."""
    upstream.sdist("app", "1.0", c_extension="int rewheel_answer(void) { return 42; }\n")
    repo = tmp_path / "dask"
    result = app.bootstrap(_options(upstream, repo, tmp_path / "work", dask="local:1"))
    assert result.ok, result.failures
    (ref,) = Repository(repo).wheels()
    statement = json.loads((repo / "wheels" / (ref.filename + ".provenance.json")).read_text())
    internal = statement["predicate"]["buildDefinition"]["internalParameters"]
    assert internal["umask"] is not None and internal["cores"] >= 1
    assert internal["environment"]["SOURCE_DATE_EPOCH"] == str(internal["sourceDateEpoch"])
    assert internal["hookRunner"]["kind"] == "pyproject-hooks"
    (elf,) = internal["linkage"]["files"]
    assert elf["file"] == "app/_cext.so"
    assert isinstance(elf["needed"], list)
    builder = statement["predicate"]["runDetails"]["builder"]["builderDependencies"]
    (cc,) = [d for d in builder if d["name"] == "cc"]
    assert cc["annotations"]["role"] == "compiler" and cc["annotations"]["version"]


def test_a_failing_build_fails_once_with_the_workers_log(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("broken", "1.0", fail_build=True)
    result = app.bootstrap(
        app.BootstrapOptions(
            requirements=[Requirement("broken")],
            repo=tmp_path / "repo",
            index_url=upstream.url,
            jobs=1,
            work_dir=tmp_path / "work",
            dask="local:1",
        )
    )
    error = result.failures["broken==1.0"]
    assert isinstance(error, BuildError) and error.step == "build-wheel"
    assert "on tcp://" in error.message
    assert error.log_path == tmp_path / "repo" / "logs" / "broken-1.0.log"
    log = error.log_path.read_text()
    # Not retried: the task ran once and returned the failure.
    assert log.count("on Dask worker") == 1
    assert "fails on purpose" in log
    assert not list((tmp_path / "repo" / "wheels").glob("*.whl"))


SLOW_HOOK = """
    _marker = {marker!r}
    if not os.path.exists(_marker):
        # First attempt: tell the test which process group to kill, then wait to be killed.
        with open(_marker + ".tmp", "w") as f:
            f.write(str(os.getpgid(0)))
        os.rename(_marker + ".tmp", _marker)
        import time
        time.sleep(30)
"""


def _slow_sdist(up: Upstream, name: str, marker: Path, **kwargs: Any) -> None:
    """An sdist whose first build_wheel hangs until killed (the next ones build at once)."""
    path = up.sdist(name, "1.0", **kwargs)
    members = []
    with tarfile.open(path) as tf:
        for member in tf:
            content = tf.extractfile(member) if member.isfile() else None
            members.append((member, content.read() if content is not None else None))
    hook = "def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):\n"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        for member, data in members:
            if member.name.endswith("_backend/tinybackend.py"):
                assert data is not None and hook.encode() in data
                data = data.replace(
                    hook.encode(), (hook + SLOW_HOOK.format(marker=str(marker))).encode()
                )
                member.size = len(data)
            tf.addfile(member, io.BytesIO(data) if data is not None else None)
    path.write_bytes(out.getvalue())
    up.index.add(path)


def test_a_worker_lost_mid_build_is_replaced(upstream: Upstream, tmp_path: Path) -> None:
    marker = tmp_path / "slow-build-started"
    upstream.sdist("tool-a", "1.0")
    _slow_sdist(upstream, "slow-pkg", marker, build_requires=["tool-a"])
    upstream.sdist("app", "1.0", build_requires=["tool-a"], install_requires=["slow-pkg"])

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            resources={worker_resource(): 1},
            dashboard_address="127.0.0.1:0",  # any free port: 8787 may be taken
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        outcome: list[BootstrapResult | BaseException] = []

        def run() -> None:
            try:
                # Without the sandbox: the slow build tells the test its process group through
                # a file outside its folder, which the sandbox would (rightly) not let it write.
                options = _options(
                    upstream,
                    tmp_path / "repo",
                    tmp_path / "work",
                    dask=cluster.scheduler_address,
                    sandbox=False,
                )
                outcome.append(app.bootstrap(options))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline and thread.is_alive(), outcome
            time.sleep(0.05)
        running = [
            a for a, keys in client.processing().items() if any("slow-pkg" in k for k in keys)
        ]
        assert len(running) == 1
        pid = client.run(os.getpid, workers=running)[running[0]]
        # The machine is gone: the worker and the build it ran.
        os.kill(pid, signal.SIGKILL)
        os.killpg(int(marker.read_text()), signal.SIGKILL)
        thread.join(60)
        assert not thread.is_alive()

    (result,) = outcome
    assert isinstance(result, BootstrapResult)
    assert result.ok, result.failures
    by_name = _check_repository(tmp_path / "repo")
    assert sorted(by_name) == ["app", "slow-pkg", "tool-a"]
    log = (tmp_path / "repo" / "logs" / "slow-pkg-1.0.log").read_text()
    # Only the attempt that finished reported back, from a worker other than the lost one.
    assert log.count("on Dask worker") == 1
    assert running[0] not in log


# -- a worker's task, outside Dask --------------------------------------------------------------


def _job(
    up: Upstream,
    tmp_path: Path,
    coordinator: str,
    *,
    fail_build: bool = False,
    attack: str | None = None,
    **changes: Any,
) -> Job:
    sdist = up.sdist("solo", "1.0", fail_build=fail_build, attack=attack)
    repo = Repository(tmp_path / "coordinator")
    repo.sdists_dir.mkdir(parents=True, exist_ok=True)
    (repo.sdists_dir / sdist.name).write_bytes(sdist.read_bytes())
    pin = Pin(
        name=canonicalize_name("solo"),
        version=Version("1.0"),
        sdist=IndexFile(sdist.name, f"{up.url}/x", sha256_file(sdist)),
    )
    fields: dict[str, Any] = {
        "job_id": "job1",
        "step": BUILD,
        "coordinator": coordinator,
        "token": "k" * 32,
        "pin": pin,
        "sdist_filename": sdist.name,
        "sdist_sha256": sha256_file(sdist),
        "env": EnvSpec(wheels=(), name="env"),
        "work_root": str(tmp_path / "build-root"),
        "settings": PackageSettings(),
        "patches": (),
        "build_timeout": 60.0,
        "isolate_network": True,
        **changes,
    }
    return Job(**fields)


@pytest.fixture
def coordinator(tmp_path: Path) -> Any:
    repo = Repository(tmp_path / "coordinator")
    repo.ensure_layout()
    with IndexServer(repo, upload_token="k" * 32) as server:
        yield server


def test_run_job_builds_and_uploads(
    upstream: Upstream, tmp_path: Path, coordinator: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWHEEL_WORKER_DIR", str(tmp_path / "worker"))
    job = _job(upstream, tmp_path, f"http://127.0.0.1:{coordinator.port}")
    result = run_job(job)
    assert result.error is None and result.wheel == "solo-1.0-py3-none-any.whl"
    assert result.log_uploaded and result.build_path == str(tmp_path / "build-root" / "solo-1.0")
    assert coordinator.upload_dir is not None
    staged = coordinator.upload_dir / "job1"
    assert sha256_file(staged / result.wheel) == result.sha256
    assert "build_wheel" in (staged / "solo-1.0.log").read_text()
    # The worker keeps nothing but its caches.
    assert not (tmp_path / "build-root" / "solo-1.0").exists()
    assert list((tmp_path / "worker" / "jobs").iterdir()) == []


READ_PATHS = r"""
import json, os


def attack(hook):
    if hook != "build_wheel":
        return None
    found = {}
    for label, path in json.loads(PATHS).items():
        try:
            found[label] = sorted(os.listdir(path)) if os.path.isdir(path) else open(path).read()
        except OSError:
            found[label] = None
    return found
"""


def test_a_workers_build_cannot_read_the_users_data_folder(
    upstream: Upstream, tmp_path: Path, coordinator: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWHEEL_WORKER_DIR", str(tmp_path / "worker"))
    # The worker's user keeps a signing key in its data folder, which is also a folder of tools
    # on PATH: the box shows such folders unless something hidden is below them.
    data = tmp_path / "data"
    keys = data / "rewheel" / "keys"
    keys.mkdir(parents=True)
    (keys / "signing-key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (data / "tool").write_text("#!/bin/sh\n")
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.setenv("PATH", f"{data}{os.pathsep}{os.environ['PATH']}")
    paths = {"key": str(keys / "signing-key.pem"), "keys": str(keys), "data": str(data)}
    code = READ_PATHS.replace("PATHS", repr(json.dumps(paths)))
    result = run_job(_job(upstream, tmp_path, f"http://127.0.0.1:{coordinator.port}", attack=code))
    assert result.error is None and result.wheel is not None, result.error
    assert coordinator.upload_dir is not None
    with zipfile.ZipFile(coordinator.upload_dir / "job1" / result.wheel) as zf:
        found = json.loads(zf.read("solo/_build_info.json"))["attack"]
    assert found == {"key": None, "keys": None, "data": None}, found


SOLO_PATCH = "".join(
    line + "\n"
    for line in (
        "--- a/solo/__init__.py",
        "+++ b/solo/__init__.py",
        "@@ -1,3 +1,4 @@",
        ' """solo: a rewheel test package."""',
        " ",  # the blank line, as context
        ' __version__ = "1.0"',
        "+PATCHED = True",
    )
)


def test_run_job_applies_the_settings_it_is_sent(
    upstream: Upstream, tmp_path: Path, coordinator: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWHEEL_WORKER_DIR", str(tmp_path / "worker"))
    patch = tmp_path / "settings" / "solo.patch"  # a path of the coordinator: not read here
    data = SOLO_PATCH.encode()
    settings = PackageSettings(
        patches=(Patch(path=patch, sha256=hashlib.sha256(data).hexdigest()),),
        config_settings={"answer": "42"},
    )
    url = f"http://127.0.0.1:{coordinator.port}"
    result = run_job(_job(upstream, tmp_path, url, settings=settings, patches=(data,)))
    assert result.error is None and result.wheel is not None
    assert coordinator.upload_dir is not None
    with zipfile.ZipFile(coordinator.upload_dir / "job1" / result.wheel) as zf:
        assert b"PATCHED = True" in zf.read("solo/__init__.py")
        assert json.loads(zf.read("solo/_build_info.json"))["config_settings"] == {"answer": "42"}


def test_run_job_raises_only_transfer_failures(
    upstream: Upstream, tmp_path: Path, coordinator: IndexServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REWHEEL_WORKER_DIR", str(tmp_path / "worker"))
    url = f"http://127.0.0.1:{coordinator.port}"
    with pytest.raises(WorkerTransferError, match="HTTP 401"):
        run_job(_job(upstream, tmp_path, url, token="wrong" * 8))
    with pytest.raises(WorkerTransferError, match="cannot fetch the sdist"):
        run_job(_job(upstream, tmp_path, url, sdist_sha256="0" * 64))
    # A build that fails is a result: nothing for Dask to retry.
    failed = run_job(_job(upstream, tmp_path, url, job_id="job2", fail_build=True))
    assert failed.error is not None and failed.error[0] == "BuildError"
    assert failed.error[2] == "build-wheel" and failed.log_uploaded


@pytest.mark.parametrize(
    ("script", "tries", "refused"),
    [
        ([201], 1, None),
        ([503, 422, 201], 3, None),  # the coordinator busy, then a body damaged on the way
        ([403, 201], 1, "HTTP 403"),  # refused: another try would be refused too
        ([503], 3, "HTTP 503"),
    ],
)
def test_the_uploader_tries_again_only_what_may_succeed(
    upstream: Upstream, tmp_path: Path, script: list[int], tries: int, refused: str | None
) -> None:
    wheel = tmp_path / "solo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"a wheel")
    sha256 = sha256_file(wheel)
    with ScriptedServer(script) as server, HttpClient() as client:
        uploader = _Uploader(_job(upstream, tmp_path, server.url), client)
        if refused is None:
            uploader.put(wheel, sha256)
        else:
            with pytest.raises(WorkerTransferError, match=refused) as info:
                uploader.put(wheel, sha256)
            error = info.value
            assert (error.package, error.version, error.step) == ("solo", "1.0", Step.UPLOAD)
    assert len(server.seen) == tries
    for seen in server.seen:
        assert seen.path == "/uploads/job1/solo-1.0-py3-none-any.whl" and seen.body == b"a wheel"
        assert seen.headers["authorization"] == "Bearer " + "k" * 32
        assert seen.headers[SHA256_HEADER.lower()] == sha256


# -- the coordinator's handling of task outcomes, with a fake Dask client -----------------------


class _FakeFuture:
    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.released = False

    def result(self) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def release(self) -> None:
        self.released = True


class _FakeClient:
    def __init__(self, outcome: Any) -> None:
        self.future = _FakeFuture(outcome)
        self.submitted: list[dict[str, Any]] = []

    def submit(self, fn: Any, job: Job, **kwargs: Any) -> _FakeFuture:
        self.submitted.append({"fn": fn, "job": job, **kwargs})
        return self.future


def _dask_steps(tmp_path: Path, client: _FakeClient) -> DaskSteps:
    repo = Repository(tmp_path / "repo")
    repo.logs_dir.mkdir(parents=True)
    local = SimpleNamespace(
        repo=repo,
        workspace=Workspace(work_root=tmp_path / "build-root", logs_dir=repo.logs_dir),
        builder=SimpleNamespace(build_timeout=None),
        sandbox=SandboxPolicy(bwrap=None),
        package_settings=lambda pin: PackageSettings(),
        witness=SimpleNamespace(saw_backend_requires=lambda pin, requires: None),
    )
    return DaskSteps(
        local,  # type: ignore[arg-type]
        client,  # type: ignore[arg-type]
        coordinator_url="http://127.0.0.1:1/",
        upload_token="k" * 32,
        upload_dir=tmp_path / "uploads",
        resource="py3.11-linux-x86_64",
    )


def _prepared(tmp_path: Path) -> Prepared:
    sdist = IndexFile("foo-1.0.tar.gz", "http://x/foo-1.0.tar.gz", "a" * 64)
    pin = Pin(name=canonicalize_name("foo"), version=Version("1.0"), sdist=sdist)
    return Prepared(
        pin=pin,
        sdist_path=tmp_path / "foo-1.0.tar.gz",
        sdist_sha256="a" * 64,
        source_dir=tmp_path,
        build_requires=(),
    )


def test_tasks_ask_for_the_resource_and_retry_only_transfers(tmp_path: Path) -> None:
    client = _FakeClient(JobResult(worker="tcp://w:1", requires=("cython",)))
    steps = _dask_steps(tmp_path, client)
    env = steps.create_env(_prepared(tmp_path), [], name="env")
    assert steps.get_requires(_prepared(tmp_path), env) == ["cython"]
    (call,) = client.submitted
    assert call["fn"] is run_job and call["resources"] == {"py3.11-linux-x86_64": 1}
    assert call["retries"] == 2 and call["key"].startswith("rewheel-get-requires-foo-1.0-")
    assert call["job"].coordinator == "http://127.0.0.1:1" and client.future.released
    log = (tmp_path / "repo" / "logs" / "foo-1.0.log").read_text()
    assert "=== get-requires on Dask worker tcp://w:1" in log and "did not arrive" in log


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (
            distributed.KilledWorker("k", SimpleNamespace(address="tcp://w:9"), 3),
            r"4 workers were lost while running it \(the last tcp://w:9\)",
        ),
        (WorkerTransferError("cannot upload x: HTTP 503"), "cannot upload x: HTTP 503"),
        (OSError("connection closed"), "the Dask task failed: OSError: connection closed"),
    ],
)
def test_lost_workers_and_transfers_become_build_errors(
    tmp_path: Path, outcome: BaseException, expected: str
) -> None:
    steps = _dask_steps(tmp_path, _FakeClient(outcome))
    prepared = _prepared(tmp_path)
    with pytest.raises(BuildError, match=expected) as caught:
        steps.build(prepared, steps.create_env(prepared, [], name="env"))
    assert caught.value.package == "foo" and caught.value.step == "build"
    assert caught.value.log_path == tmp_path / "repo" / "logs" / "foo-1.0.log"


# -- pure parts -----------------------------------------------------------------------------------


def test_parse_dask_target() -> None:
    assert parse_dask_target("local:3").local_workers == 3
    assert parse_dask_target(" tcp://10.0.0.1:8786 ").address == "tcp://10.0.0.1:8786"
    assert parse_dask_target("tls://sched:8786").address == "tls://sched:8786"
    for bad in ("local:0", "local:x", "local:", "sched:8786", "", "tcp://"):
        with pytest.raises(ConfigError):
            parse_dask_target(bad)


def test_worker_resource_names_interpreter_and_platform() -> None:
    name = worker_resource()
    assert name.startswith(f"py{sys.version_info.major}.{sys.version_info.minor}-")
    assert name.endswith(f"-{sys.platform}-{platform.machine().lower()}")


def test_worker_resource_for_the_dask_worker_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rewheel.dask.dask_worker"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"{worker_resource()}=1\n"


def test_error_from_result_keeps_kind_and_step(tmp_path: Path) -> None:
    sdist = IndexFile("foo-1.0.tar.gz", "http://x/foo-1.0.tar.gz", None)
    pin = Pin(name=canonicalize_name("foo"), version=Version("1.0"), sdist=sdist)
    log = tmp_path / "foo-1.0.log"
    err = error_from_result(
        JobResult(worker="tcp://w:1", error=("IntegrityError", "bad", "download")), pin, log
    )
    assert isinstance(err, IntegrityError)
    assert (err.package, err.version, err.step, err.log_path) == ("foo", "1.0", "download", log)
    assert err.message == "bad (on tcp://w:1)"
    # An error class the coordinator does not rebuild is reported as a BuildError.
    other = error_from_result(JobResult(error=("CommandFailed", "x", None)), pin, log)
    assert type(other) is BuildError and other.hint is None
    # What the worker found of the cause comes along, one clean line.
    hinted = error_from_result(
        JobResult(error=("BuildError", "failed", "build-wheel"), hint="install zlib1g-dev\x1b[2J"),
        pin,
        log,
    )
    assert hinted.hint == "install zlib1g-dev?[2J"


def test_a_worker_names_a_subclass_of_error_as_the_nearest_kind_the_coordinator_rebuilds(
    tmp_path: Path,
) -> None:
    from rewheel.core.errors import CommandFailed, DigestMismatch, HashMismatch
    from rewheel.dask.dask_worker import answer_error_kind

    digest = DigestMismatch("foo-1.0.tar.gz: sha256 abc, the index listed def", filename="f")
    assert answer_error_kind(digest) == "IntegrityError"
    refused = HashMismatch(package="foo", version="1.0", filename="f", found="a", expected=["b"])
    assert answer_error_kind(refused) == "IntegrityError"
    failed = CommandFailed("backend failed", cmd=["python"], returncode=1)
    assert answer_error_kind(failed) == "BuildError"
    sdist = IndexFile("foo-1.0.tar.gz", "http://x/foo-1.0.tar.gz", None)
    pin = Pin(name=canonicalize_name("foo"), version=Version("1.0"), sdist=sdist)
    kind = answer_error_kind(digest)
    err = error_from_result(JobResult(error=(kind, digest.message, "download")), pin, tmp_path)
    assert isinstance(err, IntegrityError)  # not "a build failed"


def test_claim_build_root_falls_back_when_the_package_is_busy(tmp_path: Path) -> None:
    preferred, fallback = tmp_path / "shared", tmp_path / "own"
    with claim_build_root(preferred, "foo-1.0", fallback) as first:
        assert first == preferred
        with claim_build_root(preferred, "foo-1.0", fallback) as second:
            assert second == fallback / "1"
        # Another package is free in the preferred root.
        with claim_build_root(preferred, "bar-1.0", fallback) as other:
            assert other == preferred
    # Released: the next job gets the preferred root again.
    with claim_build_root(preferred, "foo-1.0", fallback) as again:
        assert again == preferred
    fd = os.open(preferred / "foo-1.0.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody holds it any more
    finally:
        os.close(fd)


def test_unwritable_preferred_root_falls_back(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with claim_build_root(blocker / "sub", "foo-1.0", tmp_path / "own") as root:
        assert root == tmp_path / "own" / "1"


def test_a_preferred_root_that_is_a_link_or_open_to_others_is_passed_over(
    tmp_path: Path,
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    with claim_build_root(link, "foo-1.0", tmp_path / "own") as root:
        assert root == tmp_path / "own" / "1"
    assert list(target.iterdir()) == []  # nothing made through the link
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with claim_build_root(shared, "foo-1.0", tmp_path / "own") as root:
        assert root == tmp_path / "own" / "1"
    assert stat.S_IMODE((tmp_path / "own" / "1").stat().st_mode) == 0o700


def test_advertise_host_needs_dask() -> None:
    from click.testing import CliRunner

    from rewheel.cli import cli

    out = CliRunner().invoke(cli, ["bootstrap", "app", "--advertise-host", "10.1.2.3"])
    assert out.exit_code == 2 and "--advertise-host goes with --dask" in out.output
