"""GitHub: a pull request's commit status and one summary comment kept up to date.

A ``PR_SUMMARY`` message sets the status of the head commit (``failure`` when a metric
regressed) and writes the comparison as one comment, found again by its marker and edited on
each new build, so a pull request never collects a comment per push.  ``TEST`` checks the
token (``GET /rate_limit``).  Rate limits answer 403 with ``x-ratelimit-remaining: 0`` (or
429): those are transient, with ``retry_after`` until the reset.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import httpx

from specwatch.metrics.alerts import AlertItem, Links, Message, NotificationEvent
from specwatch.metrics.alerts import PullRequestSummary as Summary
from specwatch.metrics.formatting import format_number, format_quantity

from .base import DeliveryError, classify, retry_after_seconds, send_unchecked

MARKER = "<!-- specwatch:pr-summary -->"
API_VERSION = "2022-11-28"
DESCRIPTION_CHARS = 140  # GitHub's limit on a status description
COMMENT_CHARS = 60_000  # GitHub refuses over 65,536
COMMENT_PAGES = 10  # of 100 comments each, searched for the marker
TABLE_ROWS = 50
CELL_CHARS = 200
RERUN_EVENT = "specwatch-rerun"

_REPOSITORY = re.compile(
    r"^https://github\.com/([A-Za-z0-9](?:[A-Za-z0-9-]{0,38}))/([A-Za-z0-9._-]{1,100}?)(?:\.git)?/?$"
)
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_MARKDOWN = str.maketrans(
    {
        "&": "&amp;",
        "|": "&#124;",
        "<": "&lt;",
        ">": "&gt;",
        "`": "&#96;",
        "[": "&#91;",
        "]": "&#93;",
        "\\": "&#92;",
        "@": "&#64;",  # no @mention from a metric name
    }
)


def owner_and_name(repository: str) -> tuple[str, str]:
    """``("lsst", "validate_drp")`` of ``https://github.com/lsst/validate_drp``.

    Raises:
        DeliveryError: permanent, for anything else (no other host, no path tricks).
    """
    match = _REPOSITORY.match(repository.strip())
    if not match or match.group(2) in (".", ".."):
        raise DeliveryError(
            f"not a GitHub repository URL (https://github.com/owner/name): {repository[:200]!r}",
            permanent=True,
        )
    return match.group(1), match.group(2)


def escape_markdown(text: str, limit: int = CELL_CHARS) -> str:
    """Untrusted text for a markdown table cell: one line, at most ``limit`` characters
    (before escaping), with ``| < > ` [ ]`` (and ``& \\ @``) as entities."""
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.translate(_MARKDOWN)


def status_description(summary: Summary) -> str:
    """``2 regressed, 1 improved of 28 metrics`` (at most 140 characters)."""
    text = (
        f"{summary.regressed} regressed, {summary.improved} improved of {summary.compared} metrics"
    )
    if summary.missing:
        text += f", {summary.missing} missing"
    return text[:DESCRIPTION_CHARS]


def status_body(summary: Summary, links: Links, context: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "state": "failure" if summary.regressed else "success",
        "description": status_description(summary),
        "context": context,
    }
    target = links.pull_request(summary.pr)
    if target:
        body["target_url"] = target
    return body


def _row(item: AlertItem) -> str:
    where = " / ".join(escape_markdown(part) for part in (item.dataset, item.filter) if part)
    unit = item.unit[:CELL_CHARS]
    if item.after is None and item.before is not None:
        change = f"{format_quantity(item.before, unit)} → missing"
    else:
        change = f"{format_quantity(item.before, unit)} → {format_quantity(item.after, unit)}"
    pct = (
        f"{format_number(item.delta_pct, 3, signed=True)} %" if item.delta_pct is not None else "—"
    )
    sigma = (
        f"{format_number(item.delta_sigma, 2, signed=True)}σ"
        if item.delta_sigma is not None
        else "—"
    )
    cells = (escape_markdown(item.metric), where or "—", escape_markdown(change, 3 * CELL_CHARS))
    return "| " + " | ".join((*cells, pct, sigma)) + " |"


def comment_body(summary: Summary, links: Links) -> str:
    """The pull-request comment: marker, title, counts, baseline, worst items, links.

    At most ``COMMENT_CHARS`` characters: rows that do not fit are counted, not shown.
    """
    icon = "❌" if summary.regressed else "✅"
    head = summary.head_sha[:12].translate(_MARKDOWN)
    lines = [
        MARKER,
        f"### {icon} Specwatch: {status_description(summary)}",
        "",
        f"**Regressed** {summary.regressed} · **Improved** {summary.improved} · "
        f"**Missing** {summary.missing} · **Compared** {summary.compared}",
        "",
        f"Head `{head}` (job {summary.job_id}) against {escape_markdown(summary.baseline, 500)}.",
    ]
    footer: list[str] = []
    page = links.pull_request(summary.pr)
    if page:
        footer = ["", f"[Pull request #{summary.pr} on the Specwatch dashboard]({page})"]
    if summary.worst:
        lines += [
            "",
            "| Metric | Dataset | Base → head | Δ % | σ |",
            "| --- | --- | --- | ---: | ---: |",
        ]
        used = sum(len(line) + 1 for line in lines + footer) + 100  # room for the "more" line
        shown = 0
        for item in summary.worst[:TABLE_ROWS]:
            row = _row(item)
            if used + len(row) + 1 > COMMENT_CHARS:
                break
            lines.append(row)
            used += len(row) + 1
            shown += 1
        hidden = len(summary.worst) - shown
        if hidden > 0:
            lines += ["", f"…and {hidden} more regressed or missing metrics."]
    return "\n".join(lines + footer)[:COMMENT_CHARS]


def _rate_limit(response: httpx.Response, now_s: float) -> DeliveryError | None:
    """GitHub's rate limits: 403 (or 429) with no requests left, or a secondary limit."""
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    wait = retry_after_seconds(headers)
    if headers.get("x-ratelimit-remaining") == "0":
        try:
            reset = float(headers.get("x-ratelimit-reset", ""))
        except ValueError:
            reset = math.nan
        if math.isfinite(reset):
            wait = max(wait or 0.0, reset - now_s, 0.0)
    elif wait is None and response.status_code == 403:
        return None  # a plain refusal: permission, not patience
    return DeliveryError(
        f"GitHub rate limit (HTTP {response.status_code})",
        status=response.status_code,
        retry_after=wait,
    )


class GitHubNotifier:
    """Commit statuses and pull-request comments through the GitHub REST API."""

    channel: str = "github"

    def __init__(
        self, api_url: str, token: str, client: httpx.AsyncClient, *, context: str = "specwatch"
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.client = client
        self.context = context

    def accepts(self, message: Message) -> bool:
        if message.event == NotificationEvent.PR_SUMMARY:
            return message.summary is not None
        return message.event == NotificationEvent.TEST

    async def send(self, message: Message) -> None:
        """Set the status and write the comment of a summary, or check the token (TEST).

        Raises:
            DeliveryError: permanent for a bad repository, token or request.
        """
        if message.event == NotificationEvent.TEST:
            await self._call("GET", f"{self.api_url}/rate_limit")
            return
        summary = message.summary
        if message.event != NotificationEvent.PR_SUMMARY or summary is None:
            raise DeliveryError(
                f"GitHub takes pull-request summaries, not {message.event.value!r}",
                permanent=True,
            )
        owner, name = owner_and_name(summary.repository)
        if not _SHA.match(summary.head_sha):
            raise DeliveryError(f"not a commit SHA: {summary.head_sha[:80]!r}", permanent=True)
        repo = f"{self.api_url}/repos/{owner}/{name}"
        status = status_body(summary, message.links, self.context)
        await self._call("POST", f"{repo}/statuses/{summary.head_sha}", json=status)
        body = comment_body(summary, message.links)
        existing = await self._find_comment(repo, summary.pr)
        if existing is None:
            await self._call("POST", f"{repo}/issues/{summary.pr}/comments", json={"body": body})
        else:
            await self._call("PATCH", f"{repo}/issues/comments/{existing}", json={"body": body})

    async def dispatch_rerun(self, repository: str, payload: dict[str, Any]) -> None:
        """Ask the repository's CI to rerun (a ``repository_dispatch`` ``specwatch-rerun``)."""
        owner, name = owner_and_name(repository)
        await self._call(
            "POST",
            f"{self.api_url}/repos/{owner}/{name}/dispatches",
            json={"event_type": RERUN_EVENT, "client_payload": payload},
        )

    async def _find_comment(self, repo: str, pr: int) -> int | None:
        """The id of the comment holding the marker, over at most ``COMMENT_PAGES`` pages."""
        url: str | None = f"{repo}/issues/{pr}/comments?per_page=100"
        for _ in range(COMMENT_PAGES):
            if url is None:
                break
            response = await self._call("GET", url)
            try:
                comments = response.json()
            except ValueError as error:
                raise DeliveryError("GitHub answered comments that are not JSON") from error
            if not isinstance(comments, list):
                raise DeliveryError("GitHub answered comments that are not a list")
            for comment in comments:
                if (
                    isinstance(comment, dict)
                    and MARKER in str(comment.get("body") or "")
                    and isinstance(comment.get("id"), int)
                ):
                    return int(comment["id"])
            url = self._next_page(response)
        return None

    def _next_page(self, response: httpx.Response) -> str | None:
        """The ``rel="next"`` link, only on our API's origin (the token goes with it)."""
        target = response.links.get("next", {}).get("url")
        if not target:
            return None
        base = httpx.URL(self.api_url)
        url = httpx.URL(target)
        if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
            return None
        return target

    async def _call(
        self, method: str, url: str, *, json: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        response = await send_unchecked(self.client, method, url, headers=headers, json=json)
        limited = _rate_limit(response, time.time())
        if limited is not None:
            raise limited
        classify(response)
        return response
