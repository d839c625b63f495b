"""What the coordinator asks of the Dask client, and no more: round trips per package, and the
client features it turns off (each cost coordinator CPU per task or per second of a run)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.sdists import SdistSpec, make_wheel

distributed = pytest.importorskip("distributed")

from support.fake_dask import WHEEL, FakeWorker, built, dask_steps, prepared_foo  # noqa: E402

from rewheel.dask.dask_steps import DaskTasks, dask_client  # noqa: E402
from rewheel.dask.dask_worker import JobResult  # noqa: E402


def test_a_package_whose_backend_needs_nothing_more_costs_one_task(tmp_path: Path) -> None:
    """get-requires builds the wheel when the backend asks for nothing more; build() then only
    publishes it: one task submitted, waited for once, released once."""
    data = make_wheel(SdistSpec("foo", "1.0"), tmp_path / "made").read_bytes()
    worker = FakeWorker(tmp_path / "uploads", built(WHEEL, data), {WHEEL: data})
    steps = dask_steps(tmp_path, worker)
    prepared = prepared_foo(tmp_path)
    env = steps.create_env(prepared, [], name="env")
    assert steps.get_requires(prepared, env) == []
    steps.build(prepared, env)
    assert (len(worker.submitted), worker.results, worker.released) == (1, 1, 1)


def test_a_package_whose_backend_asks_for_more_costs_two_tasks(tmp_path: Path) -> None:
    data = make_wheel(SdistSpec("foo", "1.0"), tmp_path / "made").read_bytes()
    answers = iter(
        [lambda job: JobResult(worker="tcp://w:1", requires=("cython",)), built(WHEEL, data)]
    )
    worker = FakeWorker(tmp_path / "uploads", lambda job: next(answers)(job), {WHEEL: data})
    steps = dask_steps(tmp_path, worker)
    prepared = prepared_foo(tmp_path)
    assert steps.get_requires(prepared, steps.create_env(prepared, [], name="env")) == ["cython"]
    steps.build(prepared, steps.create_env(prepared, [], name="env2"))
    assert [job.step for job in worker.submitted] == ["get-requires", "build"]
    assert (worker.results, worker.released) == (2, 2)


def test_the_client_refreshes_no_scheduler_identity_and_is_not_the_default() -> None:
    """The client's periodic copy of the scheduler's identity (for its repr and dashboards)
    cost 0.5 ms of CPU per second of a run; rewheel asks the scheduler when it needs to know."""
    with dask_client("local:1") as (client, _resource):
        refresh = client._periodic_callbacks["scheduler-info"].callback_time  # milliseconds
        assert refresh >= 3600 * 1000
        with pytest.raises(ValueError):
            distributed.default_client()
        assert client.scheduler_info()["workers"]  # asked afresh all the same


def test_messages_are_not_measured_for_offloading() -> None:
    """Importing rewheel's Dask modules first turns off distributed's offloading of large
    messages, whose size check on every message cost more than the small messages it guards."""
    code = "import rewheel.dask.dask_steps, distributed.comm.utils as u; print(u.OFFLOAD_THRESHOLD)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "False"


def test_a_task_awaited_on_an_event_loop_answers_and_fails_as_one_waited_for() -> None:
    """``DaskTasks.run_async`` (what the bootstrap's event loop awaits) gives the answer, raises
    the task's exception, raises Dask's ``FutureCancelledError`` for a task cancelled on the
    cluster (an ordinary exception, reported as that package's failure, not the cancellation
    of the coroutine awaiting it), and releases the task when that coroutine is cancelled."""
    with dask_client("local:1") as (client, resource):
        tasks = DaskTasks(client, resource, retries=0)

        async def main() -> None:
            assert await tasks.run_async(abs, -3, key="rewheel-test-abs") == 3
            with pytest.raises(ValueError, match="invalid literal"):
                await tasks.run_async(int, "x", key="rewheel-test-int")

            waiting = asyncio.create_task(tasks.run_async(time.sleep, 3, key="rewheel-test-c1"))
            await asyncio.sleep(0.5)
            cancel = distributed.Future("rewheel-test-c1", client)
            await asyncio.to_thread(client.cancel, [cancel])
            cancel.release()
            with pytest.raises(distributed.client.FutureCancelledError):
                await waiting

            waiting = asyncio.create_task(tasks.run_async(time.sleep, 3, key="rewheel-test-c2"))
            await asyncio.sleep(0.5)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            for _ in range(50):
                if "rewheel-test-c2" not in client.refcount:
                    break
                await asyncio.sleep(0.1)
            assert "rewheel-test-c2" not in client.refcount  # released

        asyncio.run(main())
