"""A local HTTP server that answers each request with the next status of a script.

Usage::

    with ScriptedServer([503, 201]) as server:   # 127.0.0.1, an ephemeral port
        client.upload(f"{server.url}/up", path)  # 503, then 201 (the last status is repeated)
        assert [s.method for s in server.seen] == ["PUT", "PUT"]

It answers PUT and HEAD with an empty body, and records every request (``Seen``: method, path,
headers with lower-case names, body) in ``seen``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass(frozen=True)
class Seen:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Answers the n-th request with the n-th status of ``script`` (the last one once it runs
    out) and records every request it gets."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.seen.append(Seen(self.command, self.path, headers, body))
                status = outer.script[min(len(outer.seen), len(outer.script)) - 1]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = _answer
            do_HEAD = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
