"""What a Dask worker runs for ``dask_steps``: one step of one package, reported back small.

A task gets a ``Job`` and, on its worker:

1. downloads the sdist from the coordinator's index server (``/sdists/<file>``), checking its
   sha256;
2. extracts it in a build folder of its own (the coordinator's build path when it is free there,
   so that paths baked into wheels are the same as in a local run) and applies the package's
   patches;
3. creates the build environment with uv from the coordinator's index (``/simple``);
4. calls ``get_requires_for_build_wheel`` and, if that asks for nothing more, builds right away in
   the same environment (as a local run does); or builds in the environment it is given;
5. uploads the wheel and the log to the coordinator (``PUT /uploads/<job>/<file>``, token and
   sha256 checked there) and returns a ``JobResult``: names, hashes, times.

Steps 1-4 are a ``LocalSteps`` of the worker's own, so a build on a worker is the same code as a
local one. A build that fails is returned as a result, never raised, so that Dask does not retry
it; only a failed transfer (``WorkerTransferError``) is raised, for ``retries=`` to try again.

Workers advertise a Dask resource naming the interpreter and platform they build for
(``worker_resource()``, e.g. ``py3.11-linux-x86_64``): ``python -m rewheel.dask.dask_worker`` prints
the ``--resources`` value to start a worker with. ``REWHEEL_WORKER_DIR`` moves the worker's own
folder (scratch space, uv's cache, fallback build folders; default: the temporary directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import platform
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from distributed import get_worker
from packaging.utils import NormalizedName
from packaging.version import Version

from ..build.buildenv import EnvBuilder
from ..build.builder import CoreBudget, FreshWheel
from ..build.conditions import HostProbe
from ..build.pipeline import BuildParts, build_parts
from ..build.publisher import keep_in
from ..build.reproducible import ensure_private_dir
from ..build.runner import SubprocessRunner
from ..build.sandbox import limits_with, make_policy
from ..build.settings import PackageSettings, Patch, Settings
from ..build.workspace import Workspace
from ..core.bootstrap import Prepared
from ..core.errors import (
    BuildError,
    ConfigError,
    IntegrityError,
    RepositoryError,
    RewheelError,
    Step,
    UnsafeArchiveError,
    UpstreamError,
)
from ..core.fsutil import remove_tree, sha256_file
from ..core.resolver import Pin
from ..core.types import IndexFile, WheelRef
from ..index.http import HttpClient, RetryPolicy
from ..repo.repository import Repository
from ..serve.server import SHA256_HEADER

GET_REQUIRES = Step.GET_REQUIRES
BUILD = Step.BUILD
WORKER_DIR_ENV = "REWHEEL_WORKER_DIR"


def worker_resource() -> str:
    """The Dask resource a worker advertises: the interpreter and platform it builds for.

    ``py3.11-linux-x86_64`` for CPython 3.11 on x86-64 Linux; other implementations use their
    name instead of ``py`` (``pypy3.10-linux-x86_64``).
    """
    impl = sys.implementation
    prefix = "py" if impl.name == "cpython" else impl.name
    machine = platform.machine().lower() or "unknown"
    return f"{prefix}{sys.version_info.major}.{sys.version_info.minor}-{sys.platform}-{machine}"


class WorkerTransferError(BuildError):
    """A worker could not fetch from, or upload to, the coordinator. Worth another try."""


# -- what travels through the scheduler -----------------------------------------------------------


@dataclass(frozen=True)
class EnvSpec:
    """The "handle" of a build environment on the coordinator: what the worker must install."""

    wheels: tuple[WheelRef, ...]
    name: str


@dataclass(frozen=True)
class Job:
    """One task: everything a worker needs, and nothing large."""

    job_id: str
    step: str  # GET_REQUIRES (then build if nothing more is needed) or BUILD
    coordinator: str  # http://HOST:PORT of the coordinator's index server
    token: str  # for uploads
    pin: Pin
    sdist_filename: str
    sdist_sha256: str
    env: EnvSpec
    work_root: str  # the coordinator's build root: used on the worker when free there
    settings: PackageSettings
    patches: tuple[bytes, ...]  # the content of each of settings.patches, in order
    build_timeout: float | None
    isolate_network: bool
    sandbox: bool = True  # the worker refuses to build when it cannot sandbox, unless False


@dataclass(frozen=True)
class JobResult:
    """What a task returns: small. ``error`` is (error class name, message, step)."""

    worker: str = ""
    requires: tuple[str, ...] | None = None
    wheel: str | None = None
    sha256: str | None = None
    seconds: float = 0.0
    started: float = 0.0  # wall clock, for the provenance
    build_path: str = ""
    env_path: str = ""
    python: str = ""
    reproducibility: Mapping[str, str] = field(default_factory=dict)
    # How the build ran on the worker (``conditions.BuildConditions.as_record()``: umask,
    # compilers, what the wheel links there), for the provenance; None: not recorded.
    conditions: Mapping[str, Any] | None = None
    error: tuple[str, str, str | None] | None = None
    hint: str | None = None  # the error's: what to do about it (the cause its log shows)
    log_uploaded: bool = False


# -- the worker side ------------------------------------------------------------------------------


def worker_dir() -> Path:
    """The worker's own folder: per-job scratch space, uv's cache, fallback build folders."""
    explicit = os.environ.get(WORKER_DIR_ENV)
    if explicit:
        return Path(explicit)
    return Path(tempfile.gettempdir()) / f"rewheel-worker-{os.getuid()}"


@contextlib.contextmanager
def claim_build_root(preferred: Path, name_version: str, fallback: Path) -> Iterator[Path]:
    """A root R whose ``R/<name_version>`` this process holds (a flock on ``R/<nv>.lock``).

    ``preferred`` (the coordinator's root: the same build path as a local run) when it can be
    created and no other job holds that package there, else ``fallback/1``, ``fallback/2``...
    Lock files are left in place: removing one could let two holders in. Roots are checked as
    ``reproducible.ensure_private_dir`` does for a local run.
    """
    candidates = [preferred, *(fallback / str(n) for n in range(1, 101))]
    for root in candidates:
        try:
            # Private to this user, as a local run's root: another user's folder, a link or a
            # folder others can write to is passed over.
            root.parent.mkdir(parents=True, exist_ok=True)
            ensure_private_dir(root)
            lock = root / f"{name_version}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except (OSError, RepositoryError):
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            yield root
            return
        finally:
            os.close(fd)
    raise BuildError(
        f"no free build folder for {name_version} under {fallback}", step=Step.WORK_DIR
    )


class _CoordinatorSdist:
    """The ``SdistSource`` of a worker's preparer: the job's sdist, from the coordinator."""

    def __init__(self, client: HttpClient, job: Job) -> None:
        self._client = client
        self._job = job

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        job = self._job
        url = f"{job.coordinator}/sdists/{quote(job.sdist_filename, safe='')}"
        target = dest_dir / job.sdist_filename
        try:
            dest_dir.mkdir(parents=True, exist_ok=True)
            self._client.download_to(url, target, job.sdist_sha256)
        except (RewheelError, OSError) as exc:
            raise WorkerTransferError(
                f"cannot fetch the sdist from the coordinator: {exc}",
                package=job.pin.name,
                version=str(job.pin.version),
                step=Step.DOWNLOAD,
            ) from exc
        return target


class _JobSettings(Settings):
    """The settings of the job's one package, as the coordinator merged them."""

    def __init__(self, package: PackageSettings) -> None:
        super().__init__()
        self._package = package

    def for_package(self, name: NormalizedName, version: Version) -> PackageSettings:
        return self._package


def _job_settings(job: Job, folder: Path) -> PackageSettings:
    """The job's settings with its patches written to ``folder`` (checked against their sha256)."""
    patches = []
    folder.mkdir(parents=True, exist_ok=True)
    for n, (patch, data) in enumerate(zip(job.settings.patches, job.patches, strict=True)):
        path = folder / f"{n:03d}-{patch.path.name}"
        path.write_bytes(data)
        if sha256_file(path) != patch.sha256:
            raise WorkerTransferError(
                f"patch {patch.path.name} arrived damaged",
                package=job.pin.name,
                version=str(job.pin.version),
                step=Step.PATCH,
            )
        patches.append(Patch(path=path, sha256=patch.sha256))
    return dataclasses.replace(job.settings, patches=tuple(patches))


# One budget for the builds of this worker process: a build alone gets every core of the machine,
# builds running side by side share them (as in a local run).
_cores: CoreBudget | None = None
_cores_lock = threading.Lock()


def _core_budget() -> CoreBudget:
    global _cores
    with _cores_lock:
        if _cores is None:
            _cores = CoreBudget()
        return _cores


# One probe for the builds of this worker process: it asks the machine each thing once.
_probe: HostProbe | None = None


def _host_probe() -> HostProbe:
    global _probe
    with _cores_lock:
        if _probe is None:
            _probe = HostProbe()
        return _probe


def _worker_name() -> str:
    try:
        return str(get_worker().address)
    except ValueError:
        return platform.node()


# Uploads go to the run's own coordinator: a few tries, and time for it to check a large wheel.
_UPLOAD_POLICY = RetryPolicy(attempts=3, backoff_base=0.5, read_timeout=300.0)


class _Uploader:
    """Puts files of a job (its wheel, its log) into the coordinator's upload folder for it.

    201 is success; 5xx and 422 (the file arrived damaged) are tried again, any other answer is a
    refusal (token, name, size) that another try would meet too.
    """

    def __init__(self, job: Job, client: HttpClient) -> None:
        self._job = job
        self._client = client

    def put(self, path: Path, sha256: str) -> None:
        """Upload ``path``; raises ``WorkerTransferError`` when the coordinator never takes it."""
        job = self._job
        url = f"{job.coordinator}/uploads/{job.job_id}/{quote(path.name, safe='')}"
        headers = {"Authorization": f"Bearer {job.token}", SHA256_HEADER: sha256}
        try:
            status = self._client.upload(
                url, path, headers, policy=_UPLOAD_POLICY, retry_statuses=(422,)
            )
        except UpstreamError as exc:  # no answer at all
            raise self._failed(path, exc.message) from exc
        if status != 201:
            raise self._failed(path, f"HTTP {status}")

    def _failed(self, path: Path, why: str) -> WorkerTransferError:
        return WorkerTransferError(
            f"cannot upload {path.name} to the coordinator: {why}",
            package=self._job.pin.name,
            version=str(self._job.pin.version),
            step=Step.UPLOAD,
        )


def _worker_parts(job: Job, scratch: Path, build_root: Path, client: HttpClient) -> BuildParts:
    """The same preparation and build code as a local run, for this job."""
    upstream = _CoordinatorSdist(client, job)
    repo = Repository(scratch / "repo")
    # Each worker boxes builds with its own bwrap, or refuses (the coordinator's --no-sandbox
    # is the only way out).
    sandbox = make_policy(
        enabled=job.sandbox,
        limits=limits_with(job.build_timeout),
        hidden=[scratch.resolve(), worker_dir().resolve()],
    )
    runner = SubprocessRunner(sandbox=sandbox)
    workspace = Workspace(
        work_root=build_root,
        logs_dir=repo.logs_dir,
        isolate_network=job.isolate_network,
        box_root=sandbox.work_in_box,
    )
    return build_parts(
        workspace=workspace,
        sdists=upstream,
        sdists_dir=repo.sdists_dir,
        env_builder=EnvBuilder(
            index_url=f"{job.coordinator}/simple",
            runner=runner,
            cache_dir=worker_dir() / "uv-cache",
        ),
        runner=runner,
        settings=_JobSettings(_job_settings(job, scratch / "patches")),
        build_timeout=job.build_timeout,
        cores=_core_budget(),
        # How each build ran here, for the coordinator's provenance (it cannot see this machine).
        probe=_host_probe(),
    )


def _run_steps(job: Job, parts: BuildParts, out_dir: Path) -> JobResult:
    pin = job.pin
    prepared = parts.preparer.prepare(pin)
    env = parts.builder.create_env(prepared, job.env.wheels, name=job.env.name)
    # The build environment holds what the backend asked for too: a Rust build tool there
    # makes it a Rust build (a local run learns it from get_requires).
    parts.preparer.recheck_rust(prepared, [w.name for w in job.env.wheels])
    requires: tuple[str, ...] | None = None
    if job.step == GET_REQUIRES:
        requires = tuple(parts.builder.get_requires(prepared, env))
        if requires:
            return JobResult(requires=requires)
    fresh: list[FreshWheel] = []
    keep = keep_in(out_dir)

    def deliver(prepared: Prepared, wheel: FreshWheel) -> WheelRef:
        fresh.append(wheel)  # what the coordinator's provenance statement needs
        return keep(prepared, wheel)

    built = parts.builder.build(prepared, env, deliver)
    (made,) = fresh
    return JobResult(
        requires=requires,
        wheel=built.wheel.filename,
        sha256=built.wheel.sha256,
        seconds=built.seconds,
        started=made.started,
        build_path=str(made.build_path),
        env_path=str(made.env.path),
        python=str(made.env.python),
        reproducibility=dict(made.reproducibility),
        conditions=None if made.conditions is None else made.conditions.as_record(),
    )


def run_job(job: Job) -> JobResult:
    """The Dask task: one step of one package on this worker. Build failures are returned."""
    pin = job.pin
    name_version = f"{pin.name}-{pin.version}"
    base = worker_dir()
    scratch = base / "jobs" / job.job_id
    shutil.rmtree(scratch, ignore_errors=True)
    out_dir = scratch / "out"
    client = HttpClient(policy=RetryPolicy(attempts=4, backoff_base=0.2, backoff_max=2.0))
    uploader = _Uploader(job, client)
    log: Path | None = None
    try:
        try:
            with claim_build_root(Path(job.work_root), name_version, base / "work") as root:
                try:
                    parts = _worker_parts(job, scratch, root, client)
                    log = parts.workspace.log(pin)
                    result = _run_steps(job, parts, out_dir)
                finally:
                    # The log goes to the coordinator; nobody looks in a worker's folders.
                    with contextlib.suppress(OSError):
                        remove_tree(root / name_version)
            if result.wheel is not None and result.sha256 is not None:
                uploader.put(out_dir / result.wheel, result.sha256)
        except WorkerTransferError:
            raise  # Dask tries the task again (retries=)
        except RewheelError as exc:
            result = JobResult(
                error=(answer_error_kind(exc), exc.message, exc.step or job.step), hint=exc.hint
            )
        except Exception as exc:  # a bug, or an OS failure: still this build's failure only
            result = JobResult(error=("BuildError", f"unexpected error: {exc!r}", job.step))
        uploaded = False
        if log is not None and log.is_file():
            with contextlib.suppress(WorkerTransferError, OSError):
                uploader.put(log, sha256_file(log))
                uploaded = True
        return dataclasses.replace(result, worker=_worker_name(), log_uploaded=uploaded)
    finally:
        client.close()
        shutil.rmtree(scratch, ignore_errors=True)


# The kinds of error a worker's answer may name. A subclass travels as the nearest of them (a
# DigestMismatch as an IntegrityError, not as "a build failed"), for the coordinator rebuilds
# an error from its kind's name only.
ANSWER_ERRORS: tuple[type[RewheelError], ...] = (
    BuildError,
    ConfigError,
    IntegrityError,
    UnsafeArchiveError,
    UpstreamError,
)


def answer_error_kind(exc: RewheelError) -> str:
    """The name of the nearest of ``ANSWER_ERRORS`` that ``exc`` is (BuildError if none)."""
    for cls in type(exc).__mro__:
        if cls in ANSWER_ERRORS:
            return cls.__name__
    return BuildError.__name__


if __name__ == "__main__":
    # For starting workers:
    #   dask worker tcp://... --resources "$(python -m rewheel.dask.dask_worker)"
    print(f"{worker_resource()}=1")
