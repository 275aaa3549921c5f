"""Slack: an incoming webhook posting Block Kit messages.

The blocks are typed models that hold Slack's limits by truncating with "…" (a message over a
limit is refused whole, 400 ``invalid_blocks``), so a 10,000-character metric name still
posts.  Every piece of untrusted text (metric, dataset, branch, note, package names) is
escaped for mrkdwn, so no name can ping ``<!channel>`` or draw a link of its own.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

from specwatch.metrics.alerts import (
    Alert,
    AlertItem,
    AlertKind,
    Culprit,
    Links,
    Message,
    NotificationEvent,
)
from specwatch.metrics.formatting import format_number, format_quantity, format_utc

from .base import request

HEADER_CHARS = 150
TEXT_CHARS = 3000
FIELD_CHARS = 2000
FIELDS = 10
CONTEXT_ELEMENTS = 10
BUTTON_CHARS = 75
URL_CHARS = 3000
ACTIONS = 25
BLOCKS = 50
FALLBACK_CHARS = 3000  # the notification text (Slack allows more; nobody reads more)

ITEM_SECTIONS = 10  # items shown in full; the rest are counted
CULPRITS = 5  # culprit candidates named per item
NAME_CHARS = 200  # an untrusted name, before escaping


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def truncate_mrkdwn(text: str, limit: int) -> str:
    """``truncate`` that never leaves half a link (``<url|…``) or half an entity (``&am…``)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    opening = cut.rfind("<")
    if opening > cut.rfind(">"):
        cut = cut[:opening]
    ampersand = cut.rfind("&")
    if ampersand > cut.rfind(";"):
        cut = cut[:ampersand]
    return cut + "…"


def escape(text: str, limit: int | None = NAME_CHARS) -> str:
    """Untrusted text for mrkdwn: at most ``limit`` characters (before escaping), one line,
    with ``&``, ``<``, ``>`` escaped (Slack's only special characters)."""
    text = " ".join(text.split())
    if limit is not None:
        text = truncate(text, limit)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) URL Slack accepts, else None."""
    if not url or len(url) > URL_CHARS or not url.startswith(("https://", "http://")):
        return None
    if any(c.isspace() for c in url):
        return None
    return url


def link(url: str | None, label: str) -> str:
    """A mrkdwn link to ``url`` labelled ``label`` (already escaped), or the bare label."""
    target = safe_url(url)
    if target is None:
        return label
    # inside <url|label>: & is an entity like anywhere else; | < > would end the link early
    target = quote(target, safe=":/?#[]@!$&'()*+,;=%~-._").replace("&", "&amp;")
    return f"<{target}|{label}>"


# --- Block Kit, typed ---------------------------------------------------------------------------

Header = Annotated[str, AfterValidator(partial(truncate_mrkdwn, limit=HEADER_CHARS))]
SectionText = Annotated[str, AfterValidator(partial(truncate_mrkdwn, limit=TEXT_CHARS))]
FieldText = Annotated[str, AfterValidator(partial(truncate_mrkdwn, limit=FIELD_CHARS))]
ButtonText = Annotated[str, AfterValidator(partial(truncate, limit=BUTTON_CHARS))]
FallbackText = Annotated[str, AfterValidator(partial(truncate_mrkdwn, limit=FALLBACK_CHARS))]


class _Block(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_slack(self) -> dict[str, Any]:
        raise NotImplementedError


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack links no bare URL, #channel or @mention we did not write as a link
    return {"type": "mrkdwn", "text": text, "verbatim": True}


class HeaderBlock(_Block):
    """Large plain text (at most 150 characters; escaped too: Slack parses ``&<>`` in every
    text object)."""

    text: Header

    def to_slack(self) -> dict[str, Any]:
        return {"type": "header", "text": {"type": "plain_text", "text": self.text, "emoji": True}}


class SectionBlock(_Block):
    """mrkdwn text (at most 3,000 characters) and/or up to 10 fields of at most 2,000."""

    text: SectionText | None = None
    fields: tuple[FieldText, ...] = ()

    @field_validator("fields")
    @classmethod
    def _at_most_ten(cls, fields: tuple[str, ...]) -> tuple[str, ...]:
        return fields[:FIELDS]

    def to_slack(self) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "section"}
        if self.text:
            block["text"] = _mrkdwn(self.text)
        if self.fields:
            block["fields"] = [_mrkdwn(text) for text in self.fields]
        if len(block) == 1:  # Slack wants one or the other
            block["text"] = _mrkdwn(" ")
        return block


class ContextBlock(_Block):
    """Small mrkdwn lines (at most 10 elements)."""

    elements: tuple[SectionText, ...]

    @field_validator("elements")
    @classmethod
    def _at_most_ten(cls, elements: tuple[str, ...]) -> tuple[str, ...]:
        return elements[:CONTEXT_ELEMENTS] or (" ",)

    def to_slack(self) -> dict[str, Any]:
        return {"type": "context", "elements": [_mrkdwn(text) for text in self.elements]}


class DividerBlock(_Block):
    def to_slack(self) -> dict[str, Any]:
        return {"type": "divider"}


class LinkButton(BaseModel):
    """A button that opens ``url`` (http or https, at most 3,000 characters)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: ButtonText
    url: str
    action_id: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if safe_url(url) is None:
            raise ValueError("a button links to an http(s) URL of at most 3,000 characters")
        return url

    def to_slack(self) -> dict[str, Any]:
        return {
            "type": "button",
            "text": {"type": "plain_text", "text": self.text, "emoji": True},
            "url": self.url,
            "action_id": self.action_id,
        }


class ActionsBlock(_Block):
    elements: tuple[LinkButton, ...]

    @field_validator("elements")
    @classmethod
    def _at_most(cls, elements: tuple[LinkButton, ...]) -> tuple[LinkButton, ...]:
        if not elements:
            raise ValueError("an actions block needs a button")
        return elements[:ACTIONS]

    def to_slack(self) -> dict[str, Any]:
        return {"type": "actions", "elements": [button.to_slack() for button in self.elements]}


Block = HeaderBlock | SectionBlock | ContextBlock | DividerBlock | ActionsBlock


class SlackMessage(BaseModel):
    """A whole message: the notification text (``text``) and at most 50 blocks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: FallbackText
    blocks: tuple[Block, ...] = ()

    @field_validator("blocks")
    @classmethod
    def _at_most_fifty(cls, blocks: tuple[Block, ...]) -> tuple[Block, ...]:
        return blocks[:BLOCKS]

    def to_slack(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": [block.to_slack() for block in self.blocks]}


# --- an alert as a message -------------------------------------------------------------------

_KIND = {
    AlertKind.REGRESSION: "Regression",
    AlertKind.SPEC_LEVEL: "Spec level lost",
    AlertKind.STALE: "Not reported",
}
_EVENT = {
    NotificationEvent.OPENED: "🚨 ",
    NotificationEvent.UPDATED: "🚨 Updated: ",
    NotificationEvent.RESOLVED: "✅ Resolved: ",
    NotificationEvent.TEST: "🧪 Test: ",
}


def headline(message: Message) -> str:
    """The header, unescaped: the event, kind, first metric and dataset, and how many more
    (``Regression: validate_drp.PA1 on HSC-RC2 (+1 more)``)."""
    prefix = _EVENT.get(message.event, "")
    alert = message.alert
    if alert is None:
        return f"{prefix}Specwatch can post to this channel"
    if not alert.items:
        return prefix + alert.title
    first = alert.items[0]
    where = truncate(first.metric, NAME_CHARS)
    if first.dataset:
        where += f" on {truncate(first.dataset, NAME_CHARS)}"
    more = f" (+{len(alert.items) - 1} more)" if len(alert.items) > 1 else ""
    if alert.kind == AlertKind.PR_REGRESSION:
        number = alert.pr if alert.pr is not None else first.pr
        what = f"PR #{number} regresses {where}" if number is not None else f"PR regresses {where}"
    else:
        what = f"{_KIND[alert.kind]}: {where}"
    return prefix + what + more


def _series(item: AlertItem) -> str:
    parts = [escape(part) for part in (item.dataset, item.filter) if part]
    return " / ".join(parts)


def _delta(item: AlertItem) -> str:
    parts = []
    if item.delta is not None:
        parts.append(f"Δ {format_number(item.delta, signed=True)} {escape(item.unit)}".rstrip())
    if item.delta_pct is not None:
        parts.append(f"{format_number(item.delta_pct, 3, signed=True)} %")
    if item.delta_sigma is not None:
        parts.append(f"{format_number(item.delta_sigma, 2, signed=True)}σ")
    return ", ".join(parts)


def _measure(kind: AlertKind, item: AlertItem) -> list[str]:
    """What happened to the series, in one or two lines."""
    unit = escape(item.unit)
    lines = []
    if kind == AlertKind.SPEC_LEVEL:
        value = format_quantity(item.value, unit)
        operator = f"{escape(item.operator)} " if item.operator else ""
        threshold = format_quantity(item.threshold, unit)
        line = f"{value} vs {operator}{threshold}"
        if item.spec:
            line += f" ({escape(item.spec)})"
        lines.append(line)
        before = escape(item.level_before) if item.level_before else "met"
        after = escape(item.level_after) if item.level_after else "below minimum"
        lines.append(f"Level: {before} → {after}")
    elif kind == AlertKind.STALE:
        missing = item.builds_missing
        lines.append(
            f"Missing from the last {missing} builds" if missing else "Missing from recent builds"
        )
        if item.value is not None:
            lines.append(f"Last value: {format_quantity(item.value, unit)}")
    else:
        if item.before is not None or item.after is not None:
            base = "Baseline " if kind == AlertKind.PR_REGRESSION else ""
            line = (
                f"{base}{format_quantity(item.before, unit)} → {format_quantity(item.after, unit)}"
            )
            delta = _delta(item)
            lines.append(f"{line} ({delta})" if delta else line)
        if item.confirming_builds:
            plural = "s" if item.confirming_builds != 1 else ""
            confidence = f"; confidence {escape(item.confidence)}" if item.confidence else ""
            lines.append(f"Confirmed by {item.confirming_builds} build{plural}{confidence}")
        elif item.confidence:
            lines.append(f"Confidence {escape(item.confidence)}")
        if item.threshold is not None:
            operator = f"{escape(item.operator)} " if item.operator else ""
            spec = f"{escape(item.spec)}: " if item.spec else ""
            line = f"Spec {spec}{operator}{format_quantity(item.threshold, unit)}"
            if item.level_before != item.level_after:
                before = escape(item.level_before) if item.level_before else "below minimum"
                after = escape(item.level_after) if item.level_after else "below minimum"
                line += f"; level {before} → {after}"
            lines.append(line)
    if not lines and item.summary:
        lines.append(escape(item.summary, 500))
    return lines


def _culprit(culprit: Culprit) -> str:
    before = culprit.version_before or (culprit.sha_before or "")[:7]
    after = culprit.version_after or (culprit.sha_after or "")[:7]
    if culprit.change == "added":
        change = f"added {after}".rstrip()
    elif culprit.change == "removed":
        change = "removed"
    else:
        change = f"{before or '?'} → {after or '?'}"
    return link(culprit.url, f"{escape(culprit.name, 100)} {escape(change, 100)}")


def item_section(kind: AlertKind, item: AlertItem, links: Links) -> SectionBlock:
    """One series: where, what happened, requirements, culprit candidates."""
    name = f"*{link(links.metric(item), escape(item.metric))}*"
    series = _series(item)
    first = f"{name} on {series}" if series else name
    if item.state == "resolved":
        first += " ✅ resolved"
    lines = [first, *_measure(kind, item)]
    if item.requirements:
        lines.append("Requirements: " + ", ".join(escape(r, 100) for r in item.requirements))
    if item.culprits:
        named = [_culprit(c) for c in item.culprits[:CULPRITS]]
        extra = len(item.culprits) - CULPRITS
        if extra > 0:
            named.append(f"{extra} more")
        lines.append("Culprit candidates: " + ", ".join(named))
    return SectionBlock(text="\n".join(lines))


def _commits(alert: Alert) -> str | None:
    first = alert.items[0] if alert.items else None
    if first is not None and (first.commit_before or first.commit_after):
        before = escape((first.commit_before or "?")[:12])
        after = escape((first.commit_after or "?")[:12])
        return link(first.compare_url, f"{before}…{after}")
    if alert.commit:
        return escape(alert.commit[:12])
    return None


def context_section(alert: Alert, links: Links) -> SectionBlock:
    """Rule, branch or pull request, commits, build."""
    fields = [f"*Rule*\n{escape(alert.rule)}"]
    pr_url = safe_url(alert.pr_url) or (links.pull_request(alert.pr) if alert.pr else None)
    if alert.pr is not None:
        fields.append(f"*Pull request*\n{link(pr_url, f'#{alert.pr}')}")
    if alert.branch:
        label = "Target branch" if alert.pr is not None else "Branch"
        fields.append(f"*{label}*\n{escape(alert.branch)}")
    commits = _commits(alert)
    if commits:
        fields.append(f"*Commits*\n{commits}")
    if alert.job_id is not None or alert.ci_url:
        build = [link(alert.ci_url, "CI")] if safe_url(alert.ci_url) else []
        if alert.job_id is not None:
            build.append(link(links.job(alert.job_id), f"job {alert.job_id}"))
        fields.append(f"*Build*\n{' · '.join(build)}")
    return SectionBlock(fields=tuple(fields))


def _buttons(alert: Alert, links: Links) -> list[LinkButton]:
    candidates = [
        ("Metric", links.metric(alert.items[0]) if alert.items else None, "metric"),
        ("Build", alert.ci_url, "build"),
        (
            "Pull request",
            safe_url(alert.pr_url)
            or (links.pull_request(alert.pr) if alert.pr is not None else None),
            "pull_request",
        ),
    ]
    return [
        LinkButton(text=text, url=url, action_id=action)
        for text, url, action in candidates
        if safe_url(url) is not None and url is not None
    ]


def slack_message(message: Message) -> SlackMessage:
    """The Block Kit message of an alert event (or of a test without an alert)."""
    title = escape(headline(message), None)
    alert = message.alert
    if alert is None:
        text = "A test message from Specwatch: alerts will be posted here."
        return SlackMessage(text=title, blocks=(HeaderBlock(text=title), SectionBlock(text=text)))
    links = message.links
    blocks: list[Block] = [HeaderBlock(text=title), context_section(alert, links)]
    when = f"Raised {format_utc(alert.created_at)}"
    if message.event == NotificationEvent.RESOLVED and alert.resolved_at is not None:
        when = f"Resolved {format_utc(alert.resolved_at)}"
    about = [when]
    if alert.note:
        about.append(f"Note: {escape(alert.note, 1000)}")
    blocks.append(ContextBlock(elements=tuple(about)))
    blocks.append(DividerBlock())
    blocks.extend(item_section(alert.kind, item, links) for item in alert.items[:ITEM_SECTIONS])
    hidden = len(alert.items) - ITEM_SECTIONS
    if hidden > 0:
        more = f"and {hidden} more metric{'s' if hidden != 1 else ''}"
        blocks.append(ContextBlock(elements=(link(links.alerts(), more),)))
    buttons = _buttons(alert, links)
    if buttons:
        blocks.append(ActionsBlock(elements=tuple(buttons)))
    return SlackMessage(text=title, blocks=tuple(blocks))


def slack_payload(message: Message) -> dict[str, Any]:
    """The JSON body posted to the incoming webhook.  Pure."""
    return slack_message(message).to_slack()


class SlackNotifier:
    """Posts alert events to a Slack incoming webhook (not pull-request summaries)."""

    channel: str = "slack"

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    def accepts(self, message: Message) -> bool:
        if message.event == NotificationEvent.PR_SUMMARY:
            return False
        return message.alert is not None or message.event == NotificationEvent.TEST

    async def send(self, message: Message) -> None:
        """Post the message.  Raises ``DeliveryError`` (Slack answers 200 ``ok``)."""
        await request(self.client, "POST", self.url, json=slack_payload(message))
