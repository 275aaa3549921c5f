"""Local fakes of Slack, GitHub and a webhook receiver, for the notifier tests.

Each serves on a loopback port from a thread and records every request whole (method, path,
headers, body, monotonic arrival time).  Use one as a context manager, or ``start()`` and
``stop()`` it: it comes back on the same port, and while stopped connections are refused, so
a test can take a receiver down for a while.  ``script()`` queues answers given before the
fake's own behaviour (a 429 with ``Retry-After``, a 500, a rate limit).

The fakes check what the real services check, where a notifier could get it wrong: Slack's
Block Kit limits, GitHub's token and required fields, the webhook's signature.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import httpx


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def route(self) -> str:
        """The path without its query."""
        return urlsplit(self.path).path


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, document: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(
            status,
            json.dumps(document).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    @classmethod
    def of_text(cls, status: int, text: str, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain", **(headers or {})})


class FakeService:
    """A threaded HTTP server on a fixed loopback port, recording every request."""

    def __init__(self) -> None:
        self.port = 0  # chosen by the first start, kept afterwards
        self.requests: list[Recorded] = []
        self.lock = threading.Lock()
        self._scripted: list[Reply] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError("the fake was never started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> Self:
        if self._server is not None:
            return self
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = httpx.Headers(list(self.headers.items()))  # case-insensitive
                received = Recorded(self.command, self.path, headers, body, time.monotonic())
                reply = fake._receive(received)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any  # http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # the base's signature
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: connections are refused until ``start()``."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def script(
        self,
        status: int,
        body: str | Mapping[str, Any] = "",
        *,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue an answer, given (in order) before the fake's own behaviour."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        if isinstance(body, str):
            reply = Reply.of_text(status, body, extra)
        else:
            reply = Reply.of_json(status, body, extra)
        with self.lock:
            self._scripted.append(reply)

    def _receive(self, received: Recorded) -> Reply:
        with self.lock:
            self.requests.append(received)
            if self._scripted:
                return self._scripted.pop(0)
            try:
                return self.handle(received)
            except Exception as error:  # a fake's bug shows as a 500 the test will see
                return Reply.of_text(500, f"fake failed: {type(error).__name__}: {error}")

    def handle(self, request: Recorded) -> Reply:
        """The fake's own answer (under ``self.lock``)."""
        raise NotImplementedError


# --- Slack ---------------------------------------------------------------------------------------

_BLOCK_KEYS = {
    "header": {"type", "text", "block_id"},
    "section": {"type", "text", "fields", "accessory", "block_id", "expand"},
    "context": {"type", "elements", "block_id"},
    "actions": {"type", "elements", "block_id"},
    "divider": {"type", "block_id"},
}


def _text_problems(text: Any, where: str, limit: int, kinds: tuple[str, ...]) -> list[str]:
    if not isinstance(text, dict):
        return [f"{where}: not a text object"]
    problems = []
    kind = text.get("type")
    if kind not in kinds:
        problems.append(f"{where}: type {kind!r} not in {kinds}")
    allowed = {"type", "text", "emoji"} if kind == "plain_text" else {"type", "text", "verbatim"}
    if set(text) - allowed:
        problems.append(f"{where}: unknown keys {sorted(set(text) - allowed)}")
    value = text.get("text")
    if not isinstance(value, str) or not value:
        problems.append(f"{where}: text missing or empty")
    elif len(value) > limit:
        problems.append(f"{where}: {len(value)} characters > {limit}")
    return problems


def _button_problems(button: Any, where: str) -> list[str]:
    if not isinstance(button, dict) or button.get("type") != "button":
        return [f"{where}: only buttons are expected"]
    problems = _text_problems(button.get("text"), f"{where}.text", 75, ("plain_text",))
    if set(button) - {"type", "text", "url", "action_id", "value", "style"}:
        problems.append(f"{where}: unknown keys")
    url = button.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > 3000 or not url):
        problems.append(f"{where}.url: missing or over 3000 characters")
    action_id = button.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > 255):
        problems.append(f"{where}.action_id: over 255 characters")
    return problems


def _block_problems(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict):
        return [f"{where}: not an object"]
    kind = block.get("type")
    if kind not in _BLOCK_KEYS:
        return [f"{where}: unknown block type {kind!r}"]
    problems = []
    if set(block) - _BLOCK_KEYS[kind]:
        problems.append(f"{where}: unknown keys {sorted(set(block) - _BLOCK_KEYS[kind])}")
    if kind == "header":
        problems += _text_problems(block.get("text"), f"{where}.text", 150, ("plain_text",))
    elif kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"{where}: a section needs text or fields")
        if "text" in block:
            problems += _text_problems(
                block["text"], f"{where}.text", 3000, ("plain_text", "mrkdwn")
            )
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not 1 <= len(fields) <= 10:
                problems.append(f"{where}.fields: 1 to 10 fields")
            else:
                for i, text in enumerate(fields):
                    problems += _text_problems(
                        text, f"{where}.fields[{i}]", 2000, ("plain_text", "mrkdwn")
                    )
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            problems.append(f"{where}.elements: 1 to 10 elements")
        else:
            for i, text in enumerate(elements):
                problems += _text_problems(
                    text, f"{where}.elements[{i}]", 3000, ("plain_text", "mrkdwn")
                )
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            problems.append(f"{where}.elements: 1 to 25 elements")
        else:
            for i, button in enumerate(elements):
                problems += _button_problems(button, f"{where}.elements[{i}]")
            ids = [b.get("action_id") for b in elements if isinstance(b, dict)]
            ids = [i for i in ids if i is not None]
            if len(ids) != len(set(ids)):
                problems.append(f"{where}: action_id repeated")
    return problems


def slack_problems(payload: Any) -> list[str]:
    """What Slack would refuse in an incoming-webhook payload (empty: it posts)."""
    if not isinstance(payload, dict):
        return ["not a JSON object"]
    text, blocks = payload.get("text"), payload.get("blocks")
    problems = []
    if not (isinstance(text, str) and text) and not blocks:
        problems.append("neither text nor blocks")
    if text is not None and (not isinstance(text, str) or len(text) > 40_000):
        problems.append("text: not a string of at most 40,000 characters")
    if blocks is not None:
        if not isinstance(blocks, list) or len(blocks) > 50:
            problems.append("blocks: not a list of at most 50")
        else:
            for i, block in enumerate(blocks):
                problems += _block_problems(block, f"blocks[{i}]")
    return problems


class FakeSlack(FakeService):
    """An incoming webhook: 200 ``ok`` for a valid payload, 400 ``invalid_blocks`` otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Any] = []  # the accepted payloads, parsed
        self.refusals: list[list[str]] = []  # why each refused payload was refused

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST":
            return Reply.of_text(405, "invalid_method")
        try:
            payload = request.json()
        except ValueError:
            return Reply.of_text(400, "invalid_payload")
        problems = slack_problems(payload)
        if problems:
            self.refusals.append(problems)
            return Reply.of_text(400, "invalid_blocks")
        self.messages.append(payload)
        return Reply.of_text(200, "ok")


# --- GitHub --------------------------------------------------------------------------------------

_NAME = r"([A-Za-z0-9._-]+)"
_STATUS = re.compile(rf"^/repos/{_NAME}/{_NAME}/statuses/([0-9a-fA-F]+)$")
_COMMENTS = re.compile(rf"^/repos/{_NAME}/{_NAME}/issues/([0-9]+)/comments$")
_COMMENT = re.compile(rf"^/repos/{_NAME}/{_NAME}/issues/comments/([0-9]+)$")
_DISPATCH = re.compile(rf"^/repos/{_NAME}/{_NAME}/dispatches$")
STATES = ("error", "failure", "pending", "success")


@dataclass
class Comment:
    id: int
    owner: str
    repo: str
    pr: int
    body: str


class FakeGitHub(FakeService):
    """The REST endpoints the notifier uses, with state: statuses per SHA, issue comments per
    (owner, repo, pr), repository dispatches.  401 without ``Bearer <token>``, 422 for a
    missing or bad field, 404 for anything else."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        self.comments: dict[tuple[str, str, int], list[Comment]] = {}
        self.dispatches: list[dict[str, Any]] = []
        self._ids = itertools.count(1001)

    def add_comment(self, owner: str, repo: str, pr: int, body: str) -> int:
        """A comment someone else wrote (thread-safe; returns its id)."""
        with self.lock:
            return self._add(owner, repo, pr, body).id

    def comments_on(self, owner: str, repo: str, pr: int) -> list[Comment]:
        with self.lock:
            return list(self.comments.get((owner, repo, pr), []))

    def _add(self, owner: str, repo: str, pr: int, body: str) -> Comment:
        comment = Comment(next(self._ids), owner, repo, pr, body)
        self.comments.setdefault((owner, repo, pr), []).append(comment)
        return comment

    def _comment_json(self, comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "body": comment.body,
            "html_url": f"https://github.com/{comment.owner}/{comment.repo}/pull/{comment.pr}"
            f"#issuecomment-{comment.id}",
            "user": {"login": "specwatch-bot"},
        }

    def handle(self, request: Recorded) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Reply.of_json(401, {"message": "Bad credentials"})
        route, query = urlsplit(request.path).path, parse_qs(urlsplit(request.path).query)
        if request.method == "GET" and route == "/rate_limit":
            rate = {"limit": 5000, "remaining": 4999, "reset": int(time.time()) + 3600, "used": 1}
            return Reply.of_json(200, {"resources": {"core": rate}, "rate": rate})
        try:
            document = request.json() if request.body else None
        except ValueError:
            return Reply.of_json(400, {"message": "Problems parsing JSON"})
        method = request.method
        if (match := _STATUS.match(route)) and method == "POST":
            return self._status(match.group(3), document)
        if match := _COMMENTS.match(route):
            owner, repo, pr = match.group(1), match.group(2), int(match.group(3))
            if method == "GET":
                return self._list(owner, repo, pr, query)
            if method == "POST":
                body = _comment_text(document)
                if body is None:
                    return _unprocessable("body")
                return Reply.of_json(201, self._comment_json(self._add(owner, repo, pr, body)))
        if (match := _COMMENT.match(route)) and method == "PATCH":
            return self._edit(match.group(1), match.group(2), int(match.group(3)), document)
        if _DISPATCH.match(route) and method == "POST":
            return self._dispatch(document)
        return Reply.of_json(404, {"message": "Not Found"})

    def _status(self, sha: str, document: Any) -> Reply:
        if not isinstance(document, dict) or document.get("state") not in STATES:
            return _unprocessable("state")
        description = document.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 140):
            return _unprocessable("description")
        status = {"id": next(self._ids), **document}
        self.statuses.setdefault(sha, []).append(status)
        return Reply.of_json(201, status)

    def _list(self, owner: str, repo: str, pr: int, query: dict[str, list[str]]) -> Reply:
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        page = max(int(query.get("page", ["1"])[0]), 1)
        comments = self.comments.get((owner, repo, pr), [])
        chunk = comments[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(comments):
            last = -(-len(comments) // per_page)
            base = f"{self.url}/repos/{owner}/{repo}/issues/{pr}/comments?per_page={per_page}"
            headers["Link"] = (
                f'<{base}&page={page + 1}>; rel="next", <{base}&page={last}>; rel="last"'
            )
        return Reply.of_json(200, [self._comment_json(c) for c in chunk], headers)

    def _edit(self, owner: str, repo: str, comment_id: int, document: Any) -> Reply:
        body = _comment_text(document)
        if body is None:
            return _unprocessable("body")
        for (o, r, _), comments in self.comments.items():
            for comment in comments:
                if (o, r, comment.id) == (owner, repo, comment_id):
                    comment.body = body
                    return Reply.of_json(200, self._comment_json(comment))
        return Reply.of_json(404, {"message": "Not Found"})

    def _dispatch(self, document: Any) -> Reply:
        if not isinstance(document, dict):
            return _unprocessable("event_type")
        event_type = document.get("event_type")
        if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100:
            return _unprocessable("event_type")
        payload = document.get("client_payload", {})
        if not isinstance(payload, dict) or len(payload) > 10:
            return _unprocessable("client_payload")
        self.dispatches.append(document)
        return Reply(204)


def _comment_text(document: Any) -> str | None:
    if not isinstance(document, dict):
        return None
    body = document.get("body")
    if not isinstance(body, str) or not body.strip() or len(body) > 65_536:
        return None
    return body


def _unprocessable(name: str) -> Reply:
    return Reply.of_json(
        422,
        {"message": "Validation Failed", "errors": [{"field": name, "code": "invalid"}]},
    )


# --- a webhook receiver --------------------------------------------------------------------------


class FakeWebhook(FakeService):
    """Takes JSON posts; with a secret, only those signed with it (401 otherwise)."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.deliveries: list[Any] = []  # the accepted bodies, parsed

    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST":
            return Reply.of_text(405, "POST only")
        if self.secret is not None:
            expected = (
                "sha256=" + hmac.new(self.secret.encode(), request.body, hashlib.sha256).hexdigest()
            )
            given = request.headers.get("X-Specwatch-Signature-256", "")
            if not hmac.compare_digest(expected, given):
                return Reply.of_text(401, "bad signature")
        try:
            self.deliveries.append(request.json())
        except ValueError:
            return Reply.of_text(400, "not JSON")
        return Reply.of_text(200, "ok")
