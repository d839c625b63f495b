"""Builds on a Dask cluster: ``DaskSteps`` runs the heavy steps of a bootstrap as Dask tasks.

The coordinator (the machine running ``rewheel bootstrap --dask ...``) keeps everything that needs
the repository: resolution, the cache, downloads from upstream, publishing, records. Creating
build environments, asking backends for requirements and building are ``dask_worker.run_job``
tasks, submitted as soon as the bootstrap asks for them (it already waits for the wheels of a
build environment before it does, so the build graph is the task graph).

A task returns a small ``JobResult``. Wheels never travel through the Dask scheduler: the worker
uploads each one to the coordinator's index server, and the coordinator publishes it only after
checking that the task's result names it and that the uploaded file has the hash the worker
claimed.

Retries: Dask reruns a task elsewhere when the worker running it is lost (up to the scheduler's
``distributed.scheduler.allowed-failures``, 3 by default; after that ``KilledWorker``, reported
here as a build failure), and, with ``retries=``, after a failed transfer between worker and
coordinator. A build that fails is a result, not an exception, so it is never retried blindly.

Every task asks for one unit of the resource ``dask_worker.worker_resource()`` names (the
interpreter and platform of the coordinator), so that it only runs on workers that build for the
same target.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import reprlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dask.config
from distributed import Client, Future, KilledWorker, LocalCluster
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from ..build.buildenv import BuildEnvironment
from ..build.conditions import RecordedConditions
from ..build.diagnose import clean_line
from ..build.pipeline import LocalSteps
from ..core.bootstrap import Built, Cached, Prepared, RunIo
from ..core.errors import (
    BuildError,
    ConfigError,
    IntegrityError,
    RewheelError,
    Step,
    UnsafeArchiveError,
)
from ..core.fsutil import remove_tree, sha256_file
from ..core.records import BuildExtras, BuildRecord
from ..core.resolver import Pin, Resolution
from ..core.types import EdgeKind, WheelRef
from ..repo.wheelfile import READ_ERRORS, read_metadata_bytes, wheel_name_version
from ..serve.server import IndexServer
from .dask_worker import (
    ANSWER_ERRORS,
    BUILD,
    GET_REQUIRES,
    EnvSpec,
    Job,
    JobResult,
    run_job,
    worker_resource,
)

# Reruns of a task after a failed transfer between worker and coordinator (not after a failed
# build, which is returned as a result and never raised).
TRANSFER_RETRIES = 2

_A = TypeVar("_A")


@dataclass(frozen=True)
class DaskTarget:
    """Where to run builds: an existing scheduler, or a local cluster of ``local_workers``."""

    address: str | None = None
    local_workers: int | None = None


def parse_dask_target(text: str) -> DaskTarget:
    """``tcp://HOST:PORT`` (any Dask address with a scheme) or ``local:N``."""
    text = text.strip()
    if text.startswith("local:"):
        count = text.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise ConfigError(f"--dask {text!r}: local:N needs a number of workers N >= 1")
        return DaskTarget(local_workers=int(count))
    scheme, sep, rest = text.partition("://")
    if not sep or not scheme or not rest:
        raise ConfigError(
            f"--dask {text!r}: give a scheduler address (tcp://HOST:PORT) or local:N",
        )
    return DaskTarget(address=text)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


_RESULT_ERRORS: dict[str, type[RewheelError]] = {cls.__name__: cls for cls in ANSWER_ERRORS}


# What a worker's answer may carry of how a build ran (conditions, reproducibility), as JSON.
MAX_RECORDED_BYTES = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _untrusted_hint(worker: str) -> str:
    return (
        "nothing of it was published; a worker is trusted with builds, not with what it answers: "
        f"check the worker {worker} (its machine and its rewheel version), or build this package "
        "without --dask"
    )


def _from(worker: object) -> str:
    return worker if isinstance(worker, str) and worker else "(unnamed)"


def _shape_problems(result: JobResult) -> list[str]:
    """What in a task's answer is not of the type ``JobResult`` declares (a worker's answer
    arrives unpickled: its fields may hold anything)."""
    problems = []

    def strings(value: object) -> bool:
        return isinstance(value, tuple | list) and all(isinstance(v, str) for v in value)

    def number(value: object) -> bool:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )

    checks: list[tuple[str, bool]] = [
        ("worker", isinstance(result.worker, str)),
        ("requires", result.requires is None or strings(result.requires)),
        ("wheel", result.wheel is None or isinstance(result.wheel, str)),
        (
            "sha256",
            result.sha256 is None
            or (isinstance(result.sha256, str) and _SHA256.fullmatch(result.sha256) is not None),
        ),
        ("seconds", number(result.seconds)),
        ("started", number(result.started)),
        ("build_path", isinstance(result.build_path, str)),
        ("env_path", isinstance(result.env_path, str)),
        ("python", isinstance(result.python, str)),
        (
            "reproducibility",
            isinstance(result.reproducibility, Mapping)
            and all(
                isinstance(k, str) and isinstance(v, str) for k, v in result.reproducibility.items()
            ),
        ),
        ("conditions", result.conditions is None or _json_mapping(result.conditions)),
        (
            "error",
            result.error is None
            or (
                isinstance(result.error, tuple)
                and len(result.error) == 3
                and isinstance(result.error[0], str)
                and isinstance(result.error[1], str)
                and (result.error[2] is None or isinstance(result.error[2], str))
            ),
        ),
        ("hint", result.hint is None or isinstance(result.hint, str)),
        ("log_uploaded", isinstance(result.log_uploaded, bool)),
    ]
    for name, ok in checks:
        if not ok:
            problems.append(f"{name} = {clean_line(reprlib.repr(getattr(result, name)))}")
    return problems


def _json_mapping(value: object) -> bool:
    """A mapping that is JSON data of at most ``MAX_RECORDED_BYTES`` (it goes into provenance)."""
    if not isinstance(value, Mapping):
        return False
    try:
        return len(json.dumps(value, allow_nan=False)) <= MAX_RECORDED_BYTES
    except (TypeError, ValueError, RecursionError):
        return False


def checked_result(answer: object, pin: Pin, step: str, log: Path) -> JobResult:
    """``answer``, what a task returned, once it has the shape of a ``JobResult``; else an
    ``IntegrityError`` naming the package, the step and the worker."""
    worker = _from(getattr(answer, "worker", None))
    if not isinstance(answer, JobResult):
        what = f"a {type(answer).__name__}, not the answer of a rewheel task"
    elif problems := _shape_problems(answer):
        what = "wrong types: " + "; ".join(problems)
    else:
        return answer
    raise IntegrityError(
        f"the answer of worker {worker} is refused: {what}",
        package=pin.name,
        version=str(pin.version),
        step=step,
        log_path=log,
        hint=_untrusted_hint(worker),
    )


def error_from_result(result: JobResult, pin: Pin, log: Path) -> RewheelError:
    """The error a failed task reported, as raised on the coordinator (its log path there)."""
    assert result.error is not None
    kind, message, step = result.error
    cls = _RESULT_ERRORS.get(kind, BuildError)
    where = f" (on {result.worker})" if result.worker else ""
    error = cls(
        message + where, package=pin.name, version=str(pin.version), step=step, log_path=log
    )
    error.hint = clean_line(result.hint) if result.hint else None
    return error


# -- the coordinator side ------------------------------------------------------------------------


class DaskTasks:
    """The coordinator's one use of the Dask client: a call run as a task on a worker that
    offers ``resource`` (one unit of it), waited for, and its answer returned as it came.

    ``pure=False`` (every call runs, even with the same arguments), ``retries`` reruns after an
    exception (only ``WorkerTransferError`` is raised by ``run_job``); what ``run`` raises is
    what waiting for the task raised (``KilledWorker``, the task's own exception, a lost
    cluster). The answer comes from a worker: ``checked_result`` checks it before use.
    """

    def __init__(self, client: Client, resource: str, *, retries: int = TRANSFER_RETRIES) -> None:
        self.client = client
        self.resource = resource
        self.retries = retries

    def _submit(self, fn: Callable[[_A], object], arg: _A, key: str) -> Future[object]:
        future: Future[object] = self.client.submit(
            fn,
            arg,
            key=key,
            resources={self.resource: 1},
            retries=self.retries,
            pure=False,
        )
        return future

    def run(self, fn: Callable[[_A], object], arg: _A, *, key: str) -> object:
        """``fn(arg)`` on a worker, as the task ``key``; blocks until it answers."""
        future = self._submit(fn, arg, key)
        try:
            return future.result()
        finally:
            future.release()  # type: ignore[no-untyped-call]

    async def run_async(self, fn: Callable[[_A], object], arg: _A, *, key: str) -> object:
        """``run`` from an event loop: submitted from its thread and awaited there, no thread
        blocked meanwhile (the client's own loop fetches the answer and wakes this one). It
        raises what ``run`` raises."""
        future = self._submit(fn, arg, key)
        try:
            fetch = self.client.gather(future, asynchronous=True)  # type: ignore[no-untyped-call]
            loop = self.client.loop.asyncio_loop  # type: ignore[union-attr]
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fetch, loop))
        finally:
            future.release()  # type: ignore[no-untyped-call]


class DaskSteps:
    """``bootstrap.Steps`` that run the builds of a ``LocalSteps`` on a Dask cluster.

    Everything but creating environments, asking for requirements and building is delegated to
    ``local``, which also does the coordinator's share of a build: its download, its log, and
    publishing what the worker uploaded. A bootstrap awaits get-requires and build on its event
    loop (``core.bootstrap.AwaitedSteps``: ``get_requires_async``, ``build_async``);
    ``get_requires`` and ``build`` do the same in a thread they block. What a worker answers
    and uploads is checked before use (``checked_result``, ``_publish``).
    """

    def __init__(
        self,
        local: LocalSteps,
        client: Client,
        *,
        coordinator_url: str,
        upload_token: str,
        upload_dir: Path,
        resource: str | None = None,
        retries: int = TRANSFER_RETRIES,
    ) -> None:
        self.local = local
        self.tasks = DaskTasks(
            client, resource if resource is not None else worker_resource(), retries=retries
        )
        self.coordinator_url = coordinator_url.rstrip("/")
        self.upload_token = upload_token
        self.upload_dir = upload_dir
        self._lock = threading.Lock()
        # A wheel built by the get-requires task (nothing more was needed), until build() asks.
        self._early: dict[tuple[str, str], tuple[EnvSpec, JobResult, str]] = {}

    # -- delegated ---------------------------------------------------------------------------

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kinds: Mapping[str, EdgeKind],
        parent: Pin | None,
        preferred: Mapping[NormalizedName, Version],
        purpose: str,
    ) -> Resolution:
        return self.local.resolve(
            requirements, kinds=kinds, parent=parent, preferred=preferred, purpose=purpose
        )

    def cached(self, pin: Pin) -> Cached | None:
        return self.local.cached(pin)

    def cache_key(self, pin: Pin, build_env: Sequence[WheelRef]) -> str:
        return self.local.cache_key(pin, build_env)

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool:
        return self.local.drifted(pin, built_metadata)

    def prebuilt(self, pin: Pin) -> Built | None:
        return self.local.prebuilt(pin)

    def record_extras(self, pin: Pin) -> BuildExtras:
        return self.local.record_extras(pin)

    def save_record(self, record: BuildRecord) -> BuildRecord:
        return self.local.save_record(record)

    def prepare(self, pin: Pin) -> Prepared:
        prepared = self.local.prepare(pin)
        # The workers extract it themselves; this copy was only for reading build-system.
        with contextlib.suppress(OSError):
            remove_tree(self.local.workspace.folder(pin))
        return prepared

    # -- remote ------------------------------------------------------------------------------

    def create_env(self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str) -> EnvSpec:
        return EnvSpec(wheels=tuple(wheels), name=name)

    def get_requires(self, prepared: Prepared, env: EnvSpec) -> list[str]:
        job = self._job(prepared, env, GET_REQUIRES)
        try:
            answer = self.tasks.run(run_job, job, key=_task_key(job))
        except Exception as exc:
            raise self._task_failed(job, exc) from exc
        return self._asked(prepared, env, job, answer)

    def build(self, prepared: Prepared, env: EnvSpec) -> Built:
        early = self._take_early(prepared, env)
        if early is not None:
            return self._publish(prepared, env, *early)
        job = self._job(prepared, env, BUILD)
        try:
            answer = self.tasks.run(run_job, job, key=_task_key(job))
        except Exception as exc:
            raise self._task_failed(job, exc) from exc
        return self._built(prepared, env, job, answer)

    # ``core.bootstrap.AwaitedSteps``: the same, with the task awaited on the bootstrap's event
    # loop (no thread of its pool blocked for the build's duration) and the rest through ``io``.

    async def get_requires_async(self, prepared: Prepared, env: EnvSpec, io: RunIo) -> list[str]:
        job = await self._job_async(prepared, env, GET_REQUIRES, io)
        try:
            answer = await self.tasks.run_async(run_job, job, key=_task_key(job))
        except Exception as exc:
            raise self._task_failed(job, exc) from exc
        return await io(self._asked, prepared, env, job, answer)

    async def build_async(self, prepared: Prepared, env: EnvSpec, io: RunIo) -> Built:
        early = self._take_early(prepared, env)
        if early is not None:
            return await io(self._publish, prepared, env, *early)
        job = await self._job_async(prepared, env, BUILD, io)
        try:
            answer = await self.tasks.run_async(run_job, job, key=_task_key(job))
        except Exception as exc:
            raise self._task_failed(job, exc) from exc
        return await io(self._built, prepared, env, job, answer)

    def _asked(self, prepared: Prepared, env: EnvSpec, job: Job, answer: object) -> list[str]:
        """What the get-requires task answered: the backend's requirements, and the wheel it
        built when there were none (kept for ``build``)."""
        result = self._took(job, answer)
        requires = list(result.requires or ())
        self.local.witness.saw_backend_requires(prepared.pin, requires)
        if result.wheel is not None:
            with self._lock:
                self._early[_key(prepared.pin)] = (env, result, job.job_id)
        return requires

    def _built(self, prepared: Prepared, env: EnvSpec, job: Job, answer: object) -> Built:
        return self._publish(prepared, env, self._took(job, answer), job.job_id)

    def _take_early(self, prepared: Prepared, env: EnvSpec) -> tuple[JobResult, str] | None:
        """The wheel the get-requires task built, if it was built in ``env``; else None (and
        a wheel built in another environment is thrown away)."""
        with self._lock:
            early = self._early.pop(_key(prepared.pin), None)
        if early is None:
            return None
        if early[0] != env:
            shutil.rmtree(self.upload_dir / early[2], ignore_errors=True)
            return None
        return early[1], early[2]

    def _log(self, pin: Pin) -> Path:
        return self.local.workspace.log(pin)

    def _job(self, prepared: Prepared, env: EnvSpec, step: str) -> Job:
        settings = self.local.package_settings(prepared.pin)
        return Job(
            job_id=secrets.token_hex(8),
            step=step,
            coordinator=self.coordinator_url,
            token=self.upload_token,
            pin=prepared.pin,
            sdist_filename=prepared.sdist_path.name,
            sdist_sha256=prepared.sdist_sha256,
            env=env,
            work_root=str(self.local.workspace.work_root),
            settings=settings,
            patches=tuple(p.path.read_bytes() for p in settings.patches),
            build_timeout=self.local.builder.build_timeout,
            isolate_network=self.local.workspace.isolate_network,
            sandbox=self.local.sandbox.enabled,
        )

    async def _job_async(self, prepared: Prepared, env: EnvSpec, step: str, io: RunIo) -> Job:
        """``_job``, made on the event loop unless it has patch files to read."""
        if self.local.package_settings(prepared.pin).patches:
            return await io(self._job, prepared, env, step)
        return self._job(prepared, env, step)

    def _task_failed(self, job: Job, exc: Exception) -> BuildError:
        """What waiting for the task of ``job`` raised, as the package's build error."""
        pin = job.pin
        if isinstance(exc, KilledWorker):
            lost = getattr(exc, "allowed_failures", 0) + 1
            last = getattr(getattr(exc, "last_worker", None), "address", "?")
            message = (
                f"{lost} workers were lost while running it (the last {last}); a build that "
                "kills its workers is not tried again"
            )
        elif isinstance(exc, RewheelError):  # WorkerTransferError, after its retries
            message = exc.message
        else:  # the cluster went away, the task was cancelled, ...
            message = f"the Dask task failed: {type(exc).__name__}: {exc}"
        shutil.rmtree(self.upload_dir / job.job_id, ignore_errors=True)
        return BuildError(
            message,
            package=pin.name,
            version=str(pin.version),
            step=job.step,
            log_path=self._log(pin),
        )

    def _took(self, job: Job, answer: object) -> JobResult:
        """The task's answer, checked, with the worker's log appended to the package's; its
        error raised."""
        pin = job.pin
        log = self._log(pin)
        try:
            result = checked_result(answer, pin, job.step, log)
        except RewheelError:
            shutil.rmtree(self.upload_dir / job.job_id, ignore_errors=True)
            raise
        self._append_log(log, job, result)
        if result.wheel is None:  # nothing to publish later: nothing to keep
            shutil.rmtree(self.upload_dir / job.job_id, ignore_errors=True)
        if result.error is not None:
            raise error_from_result(result, pin, log)
        return result

    def _append_log(self, log: Path, job: Job, result: JobResult) -> None:
        staged = self.upload_dir / job.job_id / log.name
        with contextlib.suppress(OSError), log.open("ab") as out:
            out.write(
                f"\n=== {job.step} on Dask worker {result.worker} (job {job.job_id})\n".encode()
            )
            if result.log_uploaded and staged.is_file():
                with staged.open("rb") as src:
                    shutil.copyfileobj(src, out)
            else:
                out.write(b"=== the worker's log did not arrive\n")

    def _publish(self, prepared: Prepared, env: EnvSpec, result: JobResult, job_id: str) -> Built:
        """Publish the wheel the worker uploaded for ``job_id``, after checking that it is the
        one its answer names, of this package, and readable; whatever is wrong with it is an
        error naming the package, the publish step and the worker, and nothing is published."""
        pin = prepared.pin
        log = self._log(pin)
        staged_dir = self.upload_dir / job_id
        worker = _from(result.worker)

        def fail(cls: type[RewheelError], message: str) -> RewheelError:
            return cls(
                f"{message} (from worker {worker})",
                package=pin.name,
                version=str(pin.version),
                step=Step.PUBLISH,
                log_path=log,
                hint=_untrusted_hint(worker),
            )

        try:
            if result.wheel is None or result.sha256 is None:
                raise fail(BuildError, "the worker returned no wheel")
            if Path(result.wheel).name != result.wheel or not result.wheel.endswith(".whl"):
                raise fail(IntegrityError, f"the worker named {result.wheel!r}, not a wheel file")
            try:
                name, version = wheel_name_version(result.wheel)
            except RewheelError:
                raise fail(
                    IntegrityError, f"the worker named {result.wheel!r}, not a wheel file"
                ) from None
            if name != canonicalize_name(pin.name) or Version(version) != pin.version:
                raise fail(BuildError, f"the worker built {result.wheel}, not a wheel of {pin}")
            staged = staged_dir / result.wheel
            if not staged.is_file():
                raise fail(BuildError, f"the worker reported {result.wheel} but did not upload it")
            if sha256_file(staged) != result.sha256:
                raise fail(IntegrityError, f"uploaded {result.wheel} is not the one built")
            try:
                metadata = read_metadata_bytes(staged)
            except RewheelError as exc:  # no single .dist-info, METADATA too large
                raise fail(IntegrityError, f"uploaded {result.wheel}: {exc.message}") from exc
            except READ_ERRORS as exc:  # the worker's file: anything may be in it
                raise fail(
                    IntegrityError,
                    f"uploaded {result.wheel} is not a readable wheel ({type(exc).__name__}: "
                    f"{clean_line(str(exc))})",
                ) from exc
            try:
                ref = self.local.publisher.publish(
                    prepared,
                    staged,
                    env=BuildEnvironment(
                        path=Path(result.env_path),
                        python=Path(result.python),
                        environ={},
                        installed=env.wheels,
                    ),
                    reproducibility=result.reproducibility,
                    started=result.started,
                    build_path=Path(result.build_path),
                    log=log,
                    system=self.local.system_tools(pin),
                    expected_sha256=result.sha256,
                    conditions=(
                        None if result.conditions is None else RecordedConditions(result.conditions)
                    ),
                )
            except (IntegrityError, UnsafeArchiveError) as exc:  # what is in the wheel
                raise fail(type(exc), exc.message) from exc
        finally:
            shutil.rmtree(staged_dir, ignore_errors=True)
        return Built(wheel=ref, metadata=metadata, seconds=result.seconds, log=log)

    def close(self) -> None:
        with self._lock:
            leftovers, self._early = list(self._early.values()), {}
        for _, _, job_id in leftovers:
            shutil.rmtree(self.upload_dir / job_id, ignore_errors=True)


def _key(pin: Pin) -> tuple[str, str]:
    return (pin.name, str(pin.version))


def _task_key(job: Job) -> str:
    return f"rewheel-{job.step}-{job.pin.name}-{job.pin.version}-{job.job_id}"


def _matching_workers(client: Client, resource: str) -> dict[str, dict[str, Any]]:
    workers: dict[str, dict[str, Any]] = client.scheduler_info()["workers"]
    return {a: w for a, w in workers.items() if (w.get("resources") or {}).get(resource, 0) >= 1}


# What the coordinator's client needs of Dask, and no more: its cached copy of the scheduler's
# identity (every worker's details) is only for its repr and dashboards, which rewheel never
# shows, and refreshing it every 2 s (the default) cost 0.5 ms of CPU per second of a run; rewheel
# asks the scheduler itself when it needs to know (``scheduler_info()`` asks afresh).
CLIENT_CONFIG: dict[str, Any] = {"distributed.client.scheduler-info-interval": "1h"}


def _client(address: str | LocalCluster, **kwargs: Any) -> Client:
    """A client of ``address`` made with ``CLIENT_CONFIG``; not the default client of the
    process (rewheel computes no Dask collections)."""
    with dask.config.set(CLIENT_CONFIG):
        return Client(address, set_as_default=False, **kwargs)  # type: ignore[no-untyped-call]


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def dask_client(
    target: str,
    *,
    connect_timeout: float = 10.0,
    wait_for_workers: float = 30.0,
) -> Iterator[tuple[Client, str]]:
    """A client of the cluster ``target`` names (see ``parse_dask_target``; ``local:N`` starts
    one on this machine), once a worker offers this interpreter's resource, with that resource's
    name, for the time of the ``with`` block."""
    parsed = parse_dask_target(target)
    resource = worker_resource()
    with contextlib.ExitStack() as stack:
        try:
            if parsed.local_workers is not None:
                cluster = stack.enter_context(
                    LocalCluster(  # type: ignore[no-untyped-call]
                        n_workers=parsed.local_workers,
                        threads_per_worker=1,
                        processes=True,
                        resources={resource: 1},
                        dashboard_address="127.0.0.1:0",  # any free port: 8787 may be taken
                    )
                )
                client = stack.enter_context(_client(cluster))
            else:
                assert parsed.address is not None  # not local:N
                client = stack.enter_context(_client(parsed.address, timeout=connect_timeout))
        except (OSError, TimeoutError, RuntimeError) as exc:  # RuntimeError: workers did not start
            raise ConfigError(
                f"cannot start or reach Dask at {target}: {exc}", step=Step.DASK
            ) from exc
        deadline = time.monotonic() + wait_for_workers
        while not _matching_workers(client, resource):
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"no worker of the Dask cluster {target} offers the resource {resource!r}; "
                    f"start workers with: dask worker ... --resources {resource}=1",
                    step=Step.DASK,
                )
            time.sleep(0.2)
        yield client, resource


@contextlib.contextmanager
def dask_steps(
    local: LocalSteps,
    target: str,
    *,
    server: IndexServer,
    advertise_host: str | None = None,
    connect_timeout: float = 10.0,
    wait_for_workers: float = 30.0,
) -> Iterator[DaskSteps]:
    """``DaskSteps`` over ``local``, connected to the cluster ``target`` names (see
    ``parse_dask_target``), for the time of the ``with`` block.

    ``server`` must have an upload token; workers reach it at ``advertise_host`` (this machine's
    loopback address when None, which suits only workers on this machine).
    """
    parse_dask_target(target)
    if server.upload_token is None or server.upload_dir is None:
        raise ConfigError("the index server takes no uploads (no upload token)", step=Step.DASK)
    with dask_client(
        target, connect_timeout=connect_timeout, wait_for_workers=wait_for_workers
    ) as (client, resource):
        workers = _matching_workers(client, resource)
        remote = sorted(a for a, w in workers.items() if not _is_loopback(str(w.get("host"))))
        if advertise_host is None and remote:
            raise ConfigError(
                f"workers on other machines ({', '.join(remote[:3])}) cannot reach this "
                "machine's loopback address: give --advertise-host with an address they can reach",
                step=Step.DASK,
            )
        host = _url_host(advertise_host or "127.0.0.1")
        steps = DaskSteps(
            local,
            client,
            coordinator_url=f"http://{host}:{server.port}",
            upload_token=server.upload_token,
            upload_dir=server.upload_dir,
            resource=resource,
        )
        try:
            yield steps
        finally:
            steps.close()
