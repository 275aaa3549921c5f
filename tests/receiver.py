"""A local HTTP receiver with scripted answers, recording every request it gets.

For what a real server cannot be made to do on cue: answer 429 with ``Retry-After``, fail
with 503 twice, refuse with 422.  The requests are kept whole (method, path, headers, body,
arrival time) so tests assert exactly what the collector sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    answers: list[Answer]
    default: Answer
    requests: list[Received] = field(default_factory=list)


def created(job_id: int = 1) -> Answer:
    return Answer(
        201,
        {
            "id": job_id,
            "url": f"http://x/api/v1/jobs/{job_id}",
            "created": True,
            "specs_ignored": 0,
        },
    )


@contextmanager
def receiver(*answers: Answer, default: Answer | None = None) -> Iterator[Receiver]:
    """Serve on a free loopback port: the scripted answers in order, then ``default``."""
    state = Receiver("", list(answers), default or created())
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state.requests.append(
                    Received(self.command, self.path, dict(self.headers), body, time.monotonic())
                )
                answer = state.answers.pop(0) if state.answers else state.default
            payload = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            content_type = (
                "application/problem+json" if answer.status >= 400 else "application/json"
            )
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _answer  # http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # the base's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
