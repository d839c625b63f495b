"""HttpClient's uploads and reachability probes, against a local server each test starts."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.fake_index import FakeIndex
from support.scripted_server import ScriptedServer

from rewheel.core.errors import Step, UpstreamError
from rewheel.index.http import HttpClient, RetryPolicy

FAST = RetryPolicy(attempts=3, backoff_base=0.001, backoff_max=0.005, read_timeout=5.0)
BODY = b"a wheel, or what passes for one" * 1000
Serve = Callable[[list[int]], ScriptedServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Starts ``ScriptedServer``s, stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda script: stack.enter_context(ScriptedServer(script))


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "demo-1.0-py3-none-any.whl"
    path.write_bytes(BODY)
    return path


@pytest.fixture
def client() -> Iterator[HttpClient]:
    with HttpClient(policy=FAST) as c:
        yield c


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- upload -----------------------------------------------------------------------------------


def test_an_upload_is_retried_on_503_then_succeeds(
    serve: Serve, client: HttpClient, wheel: Path
) -> None:
    server = serve([503, 503, 201])
    status = client.upload(f"{server.url}/up/x.whl", wheel, {"Authorization": "Bearer t"})
    assert status == 201
    assert [s.method for s in server.seen] == ["PUT"] * 3
    # Every try sends the whole file again, with the caller's headers and its size.
    for seen in server.seen:
        assert seen.path == "/up/x.whl" and seen.body == BODY
        assert seen.headers["authorization"] == "Bearer t"
        assert seen.headers["content-length"] == str(len(BODY))
        assert seen.headers["content-type"] == "application/octet-stream"


def test_an_upload_refused_with_403_is_not_tried_again(
    serve: Serve, client: HttpClient, wheel: Path
) -> None:
    server = serve([403, 201])
    assert client.upload(f"{server.url}/up", wheel) == 403
    assert len(server.seen) == 1


def test_an_upload_that_keeps_failing_returns_the_last_status(
    serve: Serve, client: HttpClient, wheel: Path
) -> None:
    server = serve([500, 502, 503, 201])
    assert client.upload(f"{server.url}/up", wheel) == 503
    assert len(server.seen) == FAST.attempts


@pytest.mark.parametrize(("retry_statuses", "expected", "tries"), [((), 422, 1), ((422,), 201, 2)])
def test_more_statuses_are_retried_only_when_asked(
    serve: Serve,
    client: HttpClient,
    wheel: Path,
    retry_statuses: tuple[int, ...],
    expected: int,
    tries: int,
) -> None:
    server = serve([422, 201])
    assert client.upload(f"{server.url}/up", wheel, retry_statuses=retry_statuses) == expected
    assert len(server.seen) == tries


def test_an_upload_nobody_answers_fails_after_every_attempt(
    client: HttpClient, wheel: Path
) -> None:
    with pytest.raises(UpstreamError, match="failed after 3 attempts") as info:
        client.upload(f"http://127.0.0.1:{_free_port()}/up", wheel)
    assert info.value.step == Step.UPLOAD


def test_an_upload_takes_its_own_policy(serve: Serve, client: HttpClient, wheel: Path) -> None:
    server = serve([503])
    once = RetryPolicy(attempts=1)
    assert client.upload(f"{server.url}/up", wheel, policy=once) == 503
    assert len(server.seen) == 1


# -- reachable --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "expected"), [(200, True), (404, True), (503, False)])
def test_reachable_when_the_server_answers_below_500(
    serve: Serve, client: HttpClient, status: int, expected: bool
) -> None:
    server = serve([status])
    assert client.reachable(f"{server.url}/config.json", timeout=3.0) is expected
    [seen] = server.seen  # one try, no retry
    assert seen.method == "HEAD" and seen.path == "/config.json"


def test_unreachable_when_nothing_listens(client: HttpClient) -> None:
    assert client.reachable(f"http://127.0.0.1:{_free_port()}/", timeout=3.0) is False


def test_unreachable_when_the_server_never_answers(client: HttpClient) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        started = time.monotonic()
        assert client.reachable(f"http://127.0.0.1:{port}/", timeout=0.3) is False
        assert time.monotonic() - started < 2.0


# -- deadlines --------------------------------------------------------------------------------


def test_the_deadlines_of_many_requests_share_one_thread(tmp_path: Path) -> None:
    """Every request has a deadline, kept by one thread of the client's: a thread started per
    request cost a no-op re-run, which asks for some sixty pages, tens of milliseconds."""
    (tmp_path / "foo-1.0.tar.gz").write_bytes(b"one")
    started: set[str] = set()

    def first_call(frame: object, event: str, arg: object) -> None:
        started.add(threading.current_thread().name)
        sys.setprofile(None)  # once per thread is enough

    with FakeIndex() as index, HttpClient(policy=FAST) as client:
        index.add(tmp_path / "foo-1.0.tar.gz")
        threading.setprofile(first_call)
        try:
            for _ in range(20):
                assert client.get(f"{index.url}/foo/").status == 200
        finally:
            threading.setprofile(None)  # type: ignore[arg-type]
    # The index answers each request in a thread of its own (process_request_thread).
    ours = {name for name in started if "process_request_thread" not in name}
    assert ours == {"rewheel-http-deadlines"}
