"""What a Dask worker answers is untrusted: a damaged, oversized or mislabelled wheel, or an
answer of the wrong shape, ends that package with a ``RewheelError`` that names the package, the
step and the worker, and loses nothing already published.

The worker is played by a fake client (``support.fake_dask.FakeWorker``): its ``submit`` stages
what a hostile worker would upload into the coordinator's upload folder and returns its answer.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.sdists import SdistSpec, make_wheel

from rewheel.core.errors import RewheelError, Step
from rewheel.core.fsutil import sha256_file
from rewheel.repo.repository import Repository
from rewheel.repo.wheelfile import MAX_METADATA_BYTES

pytest.importorskip("distributed")

from support.fake_dask import (
    WHEEL,
    WORKER,
    FakeWorker,
    awaited,
    built,
    dask_steps,
    prepared_foo,
)

from rewheel.dask.dask_worker import GET_REQUIRES

# How the coordinator waits: a thread blocked on the task (``build``), or the bootstrap's event
# loop (``build_async``, what the bootstrap uses).
MODES = ("thread", "loop")


def _build(steps: Any, env: Any, worker: FakeWorker, mode: str, tmp_path: Path) -> Any:
    prepared = prepared_foo(tmp_path)
    if mode == "thread":
        return steps.build(prepared, env)
    return awaited(lambda io: steps.build_async(prepared, env, io), worker)


def _good_wheel(tmp_path: Path, name: str = "foo") -> bytes:
    return make_wheel(SdistSpec(name, "1.0"), tmp_path / f"made-{name}").read_bytes()


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _oversized_metadata() -> bytes:
    """A small file whose METADATA inflates past what rewheel reads."""
    head = b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n\n"
    return _zip(
        {
            "foo-1.0.dist-info/METADATA": head + b" " * MAX_METADATA_BYTES,
            "foo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\n",
            "foo-1.0.dist-info/RECORD": b"",
        }
    )


def _two_dist_infos(tmp_path: Path) -> bytes:
    good = zipfile.ZipFile(io.BytesIO(_good_wheel(tmp_path)))
    members = {info.filename: good.read(info) for info in good.infolist()}
    members["bar-1.0.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: bar\nVersion: 1.0\n"
    return _zip(members)


DAMAGED: dict[str, Callable[[Path], bytes]] = {
    "truncated": lambda tmp: _good_wheel(tmp)[: len(_good_wheel(tmp)) // 2],
    "garbage": lambda tmp: b"\x00not a zip at all\xff" * 64,
    "oversized METADATA": lambda tmp: _oversized_metadata(),
    "another project's metadata": lambda tmp: _good_wheel(tmp, "bar"),
    "two .dist-info folders": _two_dist_infos,
}


def _assert_names_it(error: RewheelError, step: str, tmp_path: Path) -> None:
    assert (error.package, error.version, error.step) == ("foo", "1.0", step)
    assert WORKER in error.message, error.message
    assert error.log_path == tmp_path / "repo" / "logs" / "foo-1.0.log"
    assert error.hint and "worker" in error.hint


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_a_damaged_wheel_from_a_worker_is_refused_naming_package_step_and_worker(
    tmp_path: Path, kind: str, mode: str
) -> None:
    data = DAMAGED[kind](tmp_path)
    worker = FakeWorker(tmp_path / "uploads", built(WHEEL, data), {WHEEL: data})
    steps = dask_steps(tmp_path, worker)
    repo: Repository = steps.local.repo
    # Something built before: it must survive the refusal.
    earlier = make_wheel(SdistSpec("earlier", "1.0"), tmp_path / "earlier")
    kept = repo.publish_wheel(earlier)
    prepared = prepared_foo(tmp_path)
    env = steps.create_env(prepared, [], name="env")

    with pytest.raises(RewheelError) as caught:
        _build(steps, env, worker, mode, tmp_path)

    _assert_names_it(caught.value, Step.PUBLISH, tmp_path)
    assert [w.filename for w in repo.wheels()] == [kept.filename]
    assert sha256_file(repo.wheels_dir / kept.filename) == kept.sha256
    assert not any((tmp_path / "uploads").iterdir())  # the upload is thrown away


@pytest.mark.parametrize(
    ("wheel", "changes"),
    [
        ("../foo-1.0-py3-none-any.whl", {}),  # a path, not a file name
        ("foo-1.0.tar.gz", {}),  # not a wheel's name
        (WHEEL, {"sha256": 5}),
        (WHEEL, {"seconds": "slow"}),
        (WHEEL, {"requires": ["ok", 7]}),
        (WHEEL, {"error": ("BuildError",)}),
        (WHEEL, {"reproducibility": {"SOURCE_DATE_EPOCH": 1}}),
        (WHEEL, {"conditions": {"umask": object()}}),
        (WHEEL, {"worker": None}),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_an_answer_of_the_wrong_shape_is_refused_naming_package_step_and_worker(
    tmp_path: Path, wheel: str, changes: dict[str, Any], mode: str
) -> None:
    data = _good_wheel(tmp_path)
    worker = FakeWorker(tmp_path / "uploads", built(wheel, data, **changes), {WHEEL: data})
    steps = dask_steps(tmp_path, worker)
    prepared = prepared_foo(tmp_path)
    env = steps.create_env(prepared, [], name="env")

    with pytest.raises(RewheelError) as caught:
        _build(steps, env, worker, mode, tmp_path)

    error = caught.value
    assert (error.package, error.version) == ("foo", "1.0")
    assert error.step in (Step.GET_REQUIRES, Step.BUILD, Step.PUBLISH)
    if changes.get("worker", WORKER) is not None:
        assert WORKER in error.message, error.message
    assert list(steps.local.repo.wheels()) == []


def test_an_answer_that_is_no_job_result_is_refused(tmp_path: Path) -> None:
    worker = FakeWorker(tmp_path / "uploads", lambda job: {"wheel": WHEEL}, {})
    steps = dask_steps(tmp_path, worker)
    prepared = prepared_foo(tmp_path)
    with pytest.raises(RewheelError, match="not the answer of a rewheel task") as caught:
        steps.get_requires(prepared, steps.create_env(prepared, [], name="env"))
    assert (caught.value.package, caught.value.step) == ("foo", GET_REQUIRES)


@pytest.mark.parametrize("mode", MODES)
def test_a_good_answer_is_published(tmp_path: Path, mode: str) -> None:
    """The same fake worker with a sound wheel: what the refusals above are measured against."""
    data = _good_wheel(tmp_path)
    worker = FakeWorker(tmp_path / "uploads", built(WHEEL, data), {WHEEL: data})
    steps = dask_steps(tmp_path, worker)
    prepared = prepared_foo(tmp_path)
    made = _build(steps, steps.create_env(prepared, [], name="env"), worker, mode, tmp_path)
    assert made.wheel.filename == WHEEL and b"Name: foo" in made.metadata
    assert [w.filename for w in steps.local.repo.wheels()] == [WHEEL]
