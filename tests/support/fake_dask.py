"""A fake Dask client for ``DaskSteps``, playing the worker too, without a cluster.

``FakeWorker(upload_dir, answer, files)`` is what ``DaskSteps`` takes as its client: its
``submit`` stages ``files`` into the coordinator's upload folder for the job (as a worker's
uploads would) and returns a future whose ``result()`` is ``answer(job)``. It counts what a
package costs in round trips: tasks submitted, results waited for, futures released.
``dask_steps(tmp_path, worker)`` is a ``DaskSteps`` over a real repository and publisher.

For the awaited steps (``get_requires_async``, ``build_async``), ``awaited(call, worker)`` runs
one on an event loop that also plays the client's own loop, with ``io`` in a thread, as the
bootstrap does.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from rewheel.build.publisher import HowBuilt, Publisher
from rewheel.build.sandbox import SandboxPolicy
from rewheel.build.settings import PackageSettings
from rewheel.build.workspace import Workspace
from rewheel.core.bootstrap import Prepared
from rewheel.core.records import Attestation
from rewheel.core.resolver import Pin, Resolution
from rewheel.core.types import IndexFile, WheelRef
from rewheel.dask.dask_steps import DaskSteps
from rewheel.dask.dask_worker import Job, JobResult

WORKER = "tcp://10.9.8.7:4242"
WHEEL = "foo-1.0-py3-none-any.whl"


class FakeFuture:
    def __init__(self, owner: FakeWorker, outcome: Any) -> None:
        self.owner = owner
        self.outcome = outcome

    def result(self) -> Any:
        self.owner.results += 1
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def release(self) -> None:
        self.owner.released += 1


class FakeWorker:
    """A fake Dask client whose "worker" uploads ``files`` for each job and answers
    ``answer(job)``."""

    def __init__(
        self,
        upload_dir: Path,
        answer: Callable[[Job], Any],
        files: dict[str, bytes] | None = None,
    ) -> None:
        self.upload_dir = upload_dir
        self.answer = answer
        self.files = files or {}
        self.submitted: list[Job] = []
        self.results = 0
        self.released = 0
        self.loop: Any = None  # the client's loop, for the awaited steps: ``awaited``

    def submit(self, fn: Any, job: Job, **kwargs: Any) -> FakeFuture:
        self.submitted.append(job)
        staged = self.upload_dir / job.job_id
        staged.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (staged / name).write_bytes(data)
        return FakeFuture(self, self.answer(job))

    def gather(self, future: FakeFuture, asynchronous: bool = False) -> Any:
        assert asynchronous, "DaskSteps waits with future.result() or an awaited gather"

        async def fetch() -> Any:
            return future.result()

        return fetch()


def awaited(call: Callable[[Any], Awaitable[Any]], worker: FakeWorker) -> Any:
    """``call(io)`` run on an event loop that also plays ``worker``'s own loop, with ``io``
    running blocking work in a thread (the bootstrap's pool)."""

    async def io(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def main() -> Any:
        worker.loop = SimpleNamespace(asyncio_loop=asyncio.get_running_loop())
        return await call(io)

    return asyncio.run(main())


class RecordingWitness:
    def __init__(self) -> None:
        self.attested: list[str] = []

    def saw_resolution(self, resolution: Resolution) -> None:
        return None

    def saw_backend_requires(self, pin: Pin, requires: Any) -> None:
        return None

    def attest(self, prepared: Prepared, wheel: WheelRef, how: HowBuilt) -> Path:
        self.attested.append(wheel.filename)
        return Path("/nonexistent")

    def attestation(self, name: str, version: str) -> Attestation | None:
        return None


def dask_steps(tmp_path: Path, worker: FakeWorker) -> DaskSteps:
    from rewheel.repo.repository import Repository

    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    local = SimpleNamespace(
        repo=repo,
        workspace=Workspace(work_root=tmp_path / "build-root", logs_dir=repo.logs_dir),
        builder=SimpleNamespace(build_timeout=None),
        sandbox=SandboxPolicy(bwrap=None),
        package_settings=lambda pin: PackageSettings(),
        witness=RecordingWitness(),
        publisher=Publisher(repo, witness=RecordingWitness()),
        system_tools=lambda pin: (),
    )
    return DaskSteps(
        local,  # type: ignore[arg-type]
        worker,  # type: ignore[arg-type]
        coordinator_url="http://127.0.0.1:1/",
        upload_token="k" * 32,
        upload_dir=worker.upload_dir,
        resource="py3.11-linux-x86_64",
    )


def prepared_foo(tmp_path: Path) -> Prepared:
    sdist = IndexFile("foo-1.0.tar.gz", "http://x/foo-1.0.tar.gz", "a" * 64)
    pin = Pin(name=canonicalize_name("foo"), version=Version("1.0"), sdist=sdist)
    return Prepared(
        pin=pin,
        sdist_path=tmp_path / "foo-1.0.tar.gz",
        sdist_sha256="a" * 64,
        source_dir=tmp_path,
        build_requires=(),
    )


def built(wheel: str, data: bytes, **changes: Any) -> Callable[[Job], JobResult]:
    """The answer of a worker that built ``wheel`` (uploaded as ``data``)."""
    fields: dict[str, Any] = {
        "worker": WORKER,
        "requires": (),
        "wheel": wheel,
        "sha256": hashlib.sha256(data).hexdigest(),
        "seconds": 1.0,
        "started": 1.7e9,
        "build_path": "/build",
        "env_path": "/env",
        "python": "/env/bin/python",
        "log_uploaded": False,
        **changes,
    }
    return lambda job: JobResult(**fields)
