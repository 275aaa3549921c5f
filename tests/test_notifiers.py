"""The notifiers against local fakes of Slack, GitHub and a webhook receiver.

Exact payloads where a person reads them, Slack's limits and mrkdwn escaping where a name is
hostile, and the delivery errors the alert service retries on (or gives up at).
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from fakes import FakeGitHub, FakeSlack, FakeWebhook
from pydantic import ValidationError

from specwatch.alerts.base import (
    DeliveryError,
    Notifier,
    classify,
    retry_after_seconds,
    sample_message,
)
from specwatch.alerts.github import MARKER, GitHubNotifier, comment_body
from specwatch.alerts.slack import (
    DividerBlock,
    HeaderBlock,
    LinkButton,
    SectionBlock,
    SlackMessage,
    SlackNotifier,
    slack_payload,
    truncate_mrkdwn,
)
from specwatch.alerts.webhook import WebhookNotifier, sign, webhook_document
from specwatch.metrics.alerts import (
    Alert,
    AlertItem,
    AlertKind,
    Culprit,
    Links,
    Message,
    NotificationEvent,
    PullRequestSummary,
)

NOW = datetime(2026, 12, 3, 5, 27, tzinfo=UTC)
DASHBOARD = "https://specwatch.example.org/dashboard/"
LINKS = Links(DASHBOARD)
TOKEN = "ghp-test-token"
SHA = "9be07d3c5a1f2e4b6d8c0a9e7f5b3d1c2a4e6f80"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(TOKEN) as fake:
        yield fake


def sample(event: NotificationEvent = NotificationEvent.TEST) -> Message:
    return dataclasses.replace(sample_message(NOW, LINKS), event=event)


def alert_message(
    event: NotificationEvent = NotificationEvent.OPENED, links: Links = LINKS, **changes: Any
) -> Message:
    """The sample alert with ``changes`` (fields of ``Alert``), as ``event``."""
    message = sample_message(NOW, links)
    assert message.alert is not None
    alert = dataclasses.replace(message.alert, **changes)
    return dataclasses.replace(message, event=event, alert=alert)


def texts(payload: dict[str, Any]) -> list[str]:
    """Every text of a Slack payload, in order."""
    found = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            found.append(block["text"]["text"])
        found += [field["text"] for field in block.get("fields", [])]
        found += [
            element["text"]["text"] for element in block.get("elements", []) if "url" in element
        ]
        found += [element["text"] for element in block.get("elements", []) if "url" not in element]
    return found


# --- Slack ---------------------------------------------------------------------------------------

PA1 = f"{DASHBOARD}metric/validate_drp.PA1?dataset=HSC-RC2"
METRIC_I = f"{PA1}&filter=HSC-I&instrument=HSC&branch=main&change=41"
METRIC_R = f"{PA1}&filter=HSC-R&instrument=HSC&branch=main&change=42"
CULPRITS = (
    "Culprit candidates: <https://github.com/lsst/meas_algorithms/compare/1a2b3c4d5e6f...6f5e4d3c2b1a"
    "|meas_algorithms w.2026.47 → w.2026.48>, "
    "<https://github.com/lsst/pipe_tasks/compare/77aa01...88bb02|pipe_tasks w.2026.47 → w.2026.48>"
)


def mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def button(text: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "url": url,
        "action_id": action_id,
    }


SAMPLE_PAYLOAD = {
    "text": "🧪 Test: Regression: validate_drp.PA1 on HSC-RC2 (+1 more)",
    "blocks": [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": "🧪 Test: Regression: validate_drp.PA1 on HSC-RC2 (+1 more)",
                "emoji": True,
            },
        },
        {
            "type": "section",
            "fields": [
                mrkdwn("*Rule*\nregression"),
                mrkdwn("*Branch*\nmain"),
                mrkdwn(
                    "*Commits*\n<https://github.com/lsst/validate_drp/compare/4f2c9a1...9be07d3"
                    "|4f2c9a1…9be07d3>"
                ),
                mrkdwn(
                    "*Build*\n<https://github.com/lsst/validate_drp/actions/runs/1234|CI> · "
                    "<https://specwatch.example.org/dashboard/job/1234|job 1234>"
                ),
            ],
        },
        {
            "type": "context",
            "elements": [
                mrkdwn("Raised 2026-12-03 05:22 UTC"),
                mrkdwn("Note: A test message from `specwatch alerts test`: nothing is wrong."),
            ],
        },
        {"type": "divider"},
        {
            "type": "section",
            "text": mrkdwn(
                f"*<{METRIC_I.replace('&', '&amp;')}|validate_drp.PA1>* on HSC-RC2 / HSC-I\n"
                "6.012 mmag → 7.43 mmag (Δ +1.418 mmag, +23.6 %, +7.9σ)\n"
                "Confirmed by 3 builds\n"
                "Requirements: OSS-REQ-0387\n" + CULPRITS
            ),
        },
        {
            "type": "section",
            "text": mrkdwn(
                f"*<{METRIC_R.replace('&', '&amp;')}|validate_drp.PA1>* on HSC-RC2 / HSC-R\n"
                "5.871 mmag → 6.644 mmag (Δ +0.773 mmag, +13.2 %, +4.3σ)\n"
                "Confirmed by 3 builds\n"
                "Requirements: OSS-REQ-0387\n" + CULPRITS
            ),
        },
        {
            "type": "actions",
            "elements": [
                button("Metric", METRIC_I, "metric"),
                button("Build", "https://github.com/lsst/validate_drp/actions/runs/1234", "build"),
            ],
        },
    ],
}


async def test_the_sample_alert_posts_exactly_this_payload(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    message = sample()
    assert slack_payload(message) == SAMPLE_PAYLOAD
    await SlackNotifier(f"{slack.url}/services/T0/B0/secret", http).send(message)
    assert slack.messages == [SAMPLE_PAYLOAD]
    [request] = slack.requests
    assert (request.method, request.route) == ("POST", "/services/T0/B0/secret")
    assert request.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("event", "kind", "changes", "header"),
    [
        (
            NotificationEvent.OPENED,
            AlertKind.REGRESSION,
            {},
            "🚨 Regression: validate_drp.PA1 on HSC-RC2 (+1 more)",
        ),
        (
            NotificationEvent.UPDATED,
            AlertKind.STALE,
            {},
            "🚨 Updated: Not reported: validate_drp.PA1 on HSC-RC2 (+1 more)",
        ),
        (
            NotificationEvent.RESOLVED,
            AlertKind.SPEC_LEVEL,
            {"resolved_at": NOW},
            "✅ Resolved: Spec level lost: validate_drp.PA1 on HSC-RC2 (+1 more)",
        ),
        (
            NotificationEvent.OPENED,
            AlertKind.PR_REGRESSION,
            {"pr": 1063, "pr_url": "https://github.com/lsst/validate_drp/pull/1063"},
            "🚨 PR #1063 regresses validate_drp.PA1 on HSC-RC2 (+1 more)",
        ),
    ],
)
async def test_the_header_names_event_kind_metric_and_dataset(
    slack: FakeSlack,
    http: httpx.AsyncClient,
    event: NotificationEvent,
    kind: AlertKind,
    changes: dict[str, Any],
    header: str,
) -> None:
    message = alert_message(event, kind=kind, **changes)
    payload = slack_payload(message)
    assert payload["blocks"][0]["text"]["text"] == header
    assert payload["text"] == header
    await SlackNotifier(slack.url, http).send(message)
    assert slack.messages == [payload]


def test_a_pull_request_alert_links_the_pull_request() -> None:
    payload = slack_payload(
        alert_message(
            kind=AlertKind.PR_REGRESSION,
            pr=1063,
            branch="main",
            pr_url="https://github.com/lsst/validate_drp/pull/1063",
        )
    )
    fields = [field["text"] for field in payload["blocks"][1]["fields"]]
    assert "*Pull request*\n<https://github.com/lsst/validate_drp/pull/1063|#1063>" in fields
    assert "*Target branch*\nmain" in fields
    buttons = {b["text"]["text"]: b["url"] for b in payload["blocks"][-1]["elements"]}
    assert buttons["Pull request"] == "https://github.com/lsst/validate_drp/pull/1063"
    # without a CI URL, the dashboard's page of the pull request
    payload = slack_payload(alert_message(kind=AlertKind.PR_REGRESSION, pr=7, ci_url=None))
    buttons = {b["text"]["text"]: b["url"] for b in payload["blocks"][-1]["elements"]}
    assert buttons == {"Metric": METRIC_I, "Pull request": f"{DASHBOARD}pr/7"}


def test_spec_level_and_stale_items_say_what_they_are_about() -> None:
    level = AlertItem(
        dedup_key="k1",
        metric="validate_drp.PA1",
        unit="mmag",
        dataset="HSC-RC2",
        value=7.4,
        threshold=6.0,
        operator="<=",
        spec="validate_drp.PA1.minimum",
        level_before="design",
        level_after=None,
        requirements=("OSS-REQ-0387", "LPM-17"),
    )
    payload = slack_payload(alert_message(kind=AlertKind.SPEC_LEVEL, items=(level,)))
    assert payload["blocks"][4]["text"]["text"] == (
        f"*<{DASHBOARD}metric/validate_drp.PA1?dataset=HSC-RC2|validate_drp.PA1>* on HSC-RC2\n"
        "7.4 mmag vs &lt;= 6 mmag (validate_drp.PA1.minimum)\n"
        "Level: design → below minimum\n"
        "Requirements: OSS-REQ-0387, LPM-17"
    )
    stale = AlertItem(dedup_key="k2", metric="ap_pipe.latency", unit="s", builds_missing=3)
    payload = slack_payload(alert_message(kind=AlertKind.STALE, items=(stale,), links=Links()))
    assert payload["blocks"][4]["text"]["text"] == (
        "*ap_pipe.latency*\nMissing from the last 3 builds"
    )
    assert payload["blocks"][0]["text"]["text"] == "🚨 Not reported: ap_pipe.latency"
    # no dashboard: no metric button, the build's still there
    assert [b["text"]["text"] for b in payload["blocks"][-1]["elements"]] == ["Build"]


async def test_limits_hold_with_100_items_and_10k_character_names(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    huge = "x" * 10_000
    culprits = tuple(
        Culprit(name=f"{huge}{n}", change="changed", version_before=huge, url="https://e/" + huge)
        for n in range(20)
    )
    items = tuple(
        AlertItem(
            dedup_key=f"k{n}",
            metric=f"{huge}.{n}",
            unit=huge,
            dataset=huge,
            filter=huge,
            before=1.0,
            after=2.0,
            delta=1.0,
            requirements=(huge,) * 30,
            culprits=culprits,
            commit_before=huge,
            commit_after=huge,
            compare_url="https://github.com/" + huge,
        )
        for n in range(100)
    )
    message = alert_message(
        items=items, rule=huge, branch=huge, note=huge, ci_url="https://ci/" + "y" * 3000
    )
    await SlackNotifier(slack.url, http).send(message)
    [payload] = slack.messages
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) == 150 and header.endswith("…")
    sections = [b for b in payload["blocks"] if b["type"] == "section" and "text" in b]
    assert len(sections) == 10
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert payload["blocks"][-1] == {
        "type": "context",
        "elements": [mrkdwn(f"<{DASHBOARD}regressions|and 90 more metrics>")],
    }
    # the metric's and the build's URLs are over 3,000 characters: no links, no buttons
    assert "actions" not in [block["type"] for block in payload["blocks"]]
    build = f"*Build*\n<{DASHBOARD}job/1234|job 1234>"  # the CI's long URL left out
    assert build in [field["text"] for field in payload["blocks"][1]["fields"]]
    assert len(payload["blocks"]) <= 50
    assert max(len(text) for text in texts(payload)) <= 3000


def test_block_models_truncate_to_slacks_limits() -> None:
    header = HeaderBlock(text="h" * 200)
    assert header.text == "h" * 149 + "…"
    section = SectionBlock(text="s" * 5000, fields=tuple("f" * 2500 for _ in range(12)))
    assert len(section.fields) == 10
    assert all(field == "f" * 1999 + "…" for field in section.fields)
    assert section.text == "s" * 2999 + "…"
    message = SlackMessage(text="t", blocks=tuple(DividerBlock() for _ in range(60)))
    assert len(message.to_slack()["blocks"]) == 50
    assert LinkButton(text="b" * 100, url="https://x", action_id="a").text == "b" * 74 + "…"
    with pytest.raises(ValidationError):
        LinkButton(text="b", url="javascript:alert(1)", action_id="a")
    # a cut never leaves half a link or half an entity
    assert truncate_mrkdwn("a" * 2990 + "<https://example.org|a link>", 3000) == "a" * 2990 + "…"
    assert truncate_mrkdwn("a" * 2997 + "&amp;", 3000) == "a" * 2997 + "…"


async def test_untrusted_text_cannot_ping_or_link(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    hostile = AlertItem(
        dedup_key="k",
        metric="<!channel> pa1",
        unit="<!here>",
        dataset="<https://evil.example|click me>",
        filter="a&b",
        before=1.0,
        after=2.0,
        requirements=("<@U123>",),
        culprits=(Culprit(name="<!everyone>", change="added", version_after="1>0"),),
    )
    message = alert_message(items=(hostile,), branch="<#C123>", note="<!subteam^S1>", rule="r<")
    await SlackNotifier(slack.url, http).send(message)
    [payload] = slack.messages
    sent = json.dumps(payload, ensure_ascii=False)
    for raw in ("<!channel>", "<!here>", "<https://evil", "<@U123>", "<#C123>", "<!subteam"):
        assert raw not in sent
    assert "<!everyone>" not in sent
    assert payload["blocks"][0]["text"]["text"] == (
        "🚨 Regression: &lt;!channel&gt; pa1 on &lt;https://evil.example|click me&gt;"
    )
    item_text = payload["blocks"][4]["text"]["text"]
    assert "on &lt;https://evil.example|click me&gt; / a&amp;b" in item_text
    assert "Culprit candidates: &lt;!everyone&gt; added 1&gt;0" in item_text


def test_only_http_urls_become_links_or_buttons() -> None:
    message = alert_message(ci_url="javascript:alert(1)", pr=5, pr_url="ftp://example.org/5")
    assert message.alert is not None
    item = dataclasses.replace(message.alert.items[0], compare_url="javascript:x")
    message = alert_message(
        ci_url="javascript:alert(1)", pr=5, pr_url="ftp://example.org/5", items=(item,)
    )
    payload = slack_payload(message)
    fields = [field["text"] for field in payload["blocks"][1]["fields"]]
    assert "*Commits*\n4f2c9a1…9be07d3" in fields
    assert f"*Build*\n<{DASHBOARD}job/1234|job 1234>" in fields
    assert f"*Pull request*\n<{DASHBOARD}pr/5|#5>" in fields
    buttons = {b["text"]["text"]: b["url"] for b in payload["blocks"][-1]["elements"]}
    assert buttons == {"Metric": METRIC_I, "Pull request": f"{DASHBOARD}pr/5"}
    assert "javascript" not in json.dumps(payload)


@pytest.mark.parametrize(
    ("status", "body", "retry_after", "expected_wait", "permanent"),
    [
        (429, "rate_limited", 2, 2.0, False),
        (500, "internal_error", None, None, False),
        (503, "", 7, 7.0, False),
        (400, "invalid_payload", None, None, True),
        (403, "invalid_token", None, None, True),
        (404, "no_service", None, None, True),
        (410, "channel_is_archived", None, None, True),
    ],
)
async def test_slack_answers_become_delivery_errors(
    slack: FakeSlack,
    http: httpx.AsyncClient,
    status: int,
    body: str,
    retry_after: int | None,
    expected_wait: float | None,
    permanent: bool,
) -> None:
    slack.script(status, body, retry_after=retry_after)
    notifier = SlackNotifier(f"{slack.url}/services/T0/B0/s3cr3t", http)
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(sample())
    error = caught.value
    assert (error.status, error.retry_after, error.permanent) == (status, expected_wait, permanent)
    assert f"HTTP {status}" in str(error) and body in str(error)
    assert "s3cr3t" not in str(error)  # the webhook's path is its secret
    await notifier.send(sample())  # the script is used up: the fake's own answer
    assert len(slack.messages) == 1


async def test_fake_slack_refuses_what_slack_refuses(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    bad_payloads: list[Any] = [
        [],
        {},
        {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
        {"blocks": [{"type": "divider"}] * 51},
        {"blocks": [{"type": "video"}]},
        {"blocks": [{"type": "section"}]},
        {"text": "t", "blocks": [{"type": "section", "text": mrkdwn("s" * 3001)}]},
        {
            "blocks": [
                {"type": "actions", "elements": [button("b", "https://x/" + "u" * 3000, "a")]}
            ]
        },
        {"blocks": [{"type": "actions", "elements": [button("b" * 76, "https://x", "a")]}]},
    ]
    for bad in bad_payloads:
        response = await http.post(slack.url, json=bad)
        assert (response.status_code, response.text) == (400, "invalid_blocks"), bad
    with pytest.raises(DeliveryError) as caught:
        classify(await http.post(slack.url, json={"blocks": [{"type": "video"}]}))
    assert caught.value.permanent
    assert slack.messages == []
    assert len(slack.refusals) == len(bad_payloads) + 1


async def test_connection_refused_is_transient_and_the_fake_returns_on_its_port(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    notifier = SlackNotifier(slack.url, http)
    port = slack.port
    slack.stop()
    with pytest.raises(DeliveryError) as caught:
        await notifier.send(sample())
    assert (caught.value.status, caught.value.permanent) == (None, False)
    slack.start()
    assert slack.port == port
    await notifier.send(sample())
    assert len(slack.messages) == 1


async def test_a_test_message_without_an_alert_posts(
    slack: FakeSlack, http: httpx.AsyncClient
) -> None:
    await SlackNotifier(slack.url, http).send(Message(NotificationEvent.TEST, "t-1"))
    [payload] = slack.messages
    assert payload["text"] == "🧪 Test: Specwatch can post to this channel"


async def test_each_channel_accepts_its_events(http: httpx.AsyncClient) -> None:
    notifiers: list[Notifier] = [
        SlackNotifier("https://hooks.slack.com/services/x", http),
        WebhookNotifier("https://example.org/hook", None, http),
        GitHubNotifier("https://api.github.com", TOKEN, http),
    ]
    assert [n.channel for n in notifiers] == ["slack", "webhook", "github"]
    accepted = {
        event: [n.channel for n in notifiers if n.accepts(message)]
        for event, message in (
            (NotificationEvent.OPENED, alert_message(NotificationEvent.OPENED)),
            (NotificationEvent.UPDATED, alert_message(NotificationEvent.UPDATED)),
            (NotificationEvent.RESOLVED, alert_message(NotificationEvent.RESOLVED)),
            (NotificationEvent.TEST, sample()),
            (NotificationEvent.PR_SUMMARY, summary_message(summary())),
        )
    }
    assert accepted == {
        NotificationEvent.OPENED: ["slack", "webhook"],
        NotificationEvent.UPDATED: ["slack", "webhook"],
        NotificationEvent.RESOLVED: ["slack", "webhook"],
        NotificationEvent.TEST: ["slack", "webhook", "github"],
        NotificationEvent.PR_SUMMARY: ["webhook", "github"],
    }


# --- the shared answer rules ---------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds({"Retry-After": "120"}) == 120.0
    assert retry_after_seconds({"retry-after": " 1.5 "}) == 1.5
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds({"Retry-After": later}, now=NOW) == 90.0
    earlier = format_datetime(NOW - timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds({"Retry-After": earlier}, now=NOW) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"Retry-After": "nan"}) is None
    assert retry_after_seconds({}) is None


def answer(status: int, body: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://hooks.slack.com/services/T0/B0/secret")
    return httpx.Response(status, text=body, headers=headers, request=request)


def test_classify_sorts_answers_into_ok_transient_and_permanent() -> None:
    for status in (200, 201, 204):
        classify(answer(status))
    with pytest.raises(DeliveryError) as caught:
        classify(answer(408))
    assert (caught.value.permanent, caught.value.retry_after) == (False, None)
    with pytest.raises(DeliveryError) as caught:
        classify(answer(302, "moved"))
    assert caught.value.permanent
    with pytest.raises(DeliveryError) as caught:
        classify(answer(422, "e" * 1000))
    error = caught.value
    assert error.permanent and error.status == 422
    assert str(error) == "hooks.slack.com answered HTTP 422: " + "e" * 199 + "…"
    assert "secret" not in str(error)


# --- the webhook ---------------------------------------------------------------------------------


def field_names(record: type[Any]) -> set[str]:
    return {field.name for field in dataclasses.fields(record)}


async def test_the_webhook_posts_every_field_signed(http: httpx.AsyncClient) -> None:
    message = sample()
    with FakeWebhook("s3cret") as fake:
        await WebhookNotifier(f"{fake.url}/hooks/specwatch", "s3cret", http).send(message)
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", "/hooks/specwatch")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Specwatch-Event"] == "test"
    assert request.headers["X-Specwatch-Delivery"] == message.delivery_id
    digest = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Specwatch-Signature-256"] == f"sha256={digest}"
    assert sign("s3cret", request.body) == f"sha256={digest}"
    document = webhook_document(message)
    assert request.body == json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")
    assert fake.deliveries == [document]
    assert set(document) == {"event", "delivery_id", "alert", "summary", "links"}
    assert (document["event"], document["summary"]) == ("test", None)
    assert document["links"] == {"dashboard": DASHBOARD}
    alert = document["alert"]
    assert set(alert) == field_names(Alert)
    assert (alert["kind"], alert["state"]) == ("regression", "open")
    assert alert["created_at"] == "2026-12-03T05:22:00Z"
    assert alert["updated_at"] == "2026-12-03T05:27:00Z"
    assert alert["resolved_at"] is None
    first = alert["items"][0]
    assert set(first) == field_names(AlertItem)
    assert (first["metric"], first["filter"], first["after"]) == ("validate_drp.PA1", "HSC-I", 7.43)
    assert first["requirements"] == ["OSS-REQ-0387"]
    assert set(first["culprits"][0]) == field_names(Culprit)


async def test_the_webhook_sends_summaries_unsigned_without_a_secret(
    http: httpx.AsyncClient,
) -> None:
    worst = dataclasses.replace(summary().worst[0], delta_sigma=float("nan"))
    message = summary_message(dataclasses.replace(summary(), worst=(worst,)))
    with FakeWebhook() as fake:
        await WebhookNotifier(fake.url, None, http).send(message)
    [request] = fake.requests
    assert "X-Specwatch-Signature-256" not in request.headers
    assert request.headers["X-Specwatch-Event"] == "pr_summary"
    [document] = fake.deliveries
    assert document["alert"] is None
    assert set(document["summary"]) == field_names(PullRequestSummary)
    assert document["summary"]["worst"][0]["delta_sigma"] is None  # NaN is not JSON


async def test_a_wrong_secret_is_refused_for_good(http: httpx.AsyncClient) -> None:
    with FakeWebhook("right") as fake:
        with pytest.raises(DeliveryError) as caught:
            await WebhookNotifier(fake.url, "wrong", http).send(sample())
        with pytest.raises(DeliveryError):
            await WebhookNotifier(fake.url, None, http).send(sample())
    assert (caught.value.status, caught.value.permanent) == (401, True)
    assert fake.deliveries == []


# --- GitHub --------------------------------------------------------------------------------------


def worst_item(metric: str = "validate_drp.PA1", **changes: Any) -> AlertItem:
    item = AlertItem(
        dedup_key=f"pr:{metric}",
        metric=metric,
        unit="mmag",
        dataset="HSC-RC2",
        filter="HSC-I",
        pr=1063,
        before=6.012,
        after=7.43,
        delta=1.418,
        delta_pct=23.59,
        delta_sigma=7.9,
    )
    return dataclasses.replace(item, **changes)


def summary(**changes: Any) -> PullRequestSummary:
    value = PullRequestSummary(
        repository="https://github.com/lsst/validate_drp",
        pr=1063,
        head_sha=SHA,
        job_id=88,
        regressed=2,
        improved=1,
        missing=0,
        compared=28,
        baseline="main at 4f2c9a1 (last 5 builds)",
        worst=(
            worst_item(),
            worst_item("validate_drp.AM1", unit="marcsec", before=8.1, after=9.0, delta_pct=11.1),
        ),
    )
    return dataclasses.replace(value, **changes)


def summary_message(value: PullRequestSummary, delivery_id: str = "pr-1") -> Message:
    return Message(NotificationEvent.PR_SUMMARY, delivery_id, summary=value, links=LINKS)


def notifier(github: FakeGitHub, http: httpx.AsyncClient, token: str = TOKEN) -> GitHubNotifier:
    return GitHubNotifier(github.url, token, http)


async def test_a_summary_sets_the_status_and_writes_one_comment(
    github: FakeGitHub, http: httpx.AsyncClient
) -> None:
    await notifier(github, http).send(summary_message(summary()))
    [status] = github.statuses[SHA]
    assert {k: v for k, v in status.items() if k != "id"} == {
        "state": "failure",
        "description": "2 regressed, 1 improved of 28 metrics",
        "context": "specwatch",
        "target_url": f"{DASHBOARD}pr/1063",
    }
    [comment] = github.comments_on("lsst", "validate_drp", 1063)
    assert comment.body == (
        f"{MARKER}\n"
        "### ❌ Specwatch: 2 regressed, 1 improved of 28 metrics\n"
        "\n"
        "**Regressed** 2 · **Improved** 1 · **Missing** 0 · **Compared** 28\n"
        "\n"
        "Head `9be07d3c5a1f` (job 88) against main at 4f2c9a1 (last 5 builds).\n"
        "\n"
        "| Metric | Dataset | Base → head | Δ % | σ |\n"
        "| --- | --- | --- | ---: | ---: |\n"
        "| validate_drp.PA1 | HSC-RC2 / HSC-I | 6.012 mmag → 7.43 mmag | +23.6 % | +7.9σ |\n"
        "| validate_drp.AM1 | HSC-RC2 / HSC-I | 8.1 marcsec → 9 marcsec | +11.1 % | +7.9σ |\n"
        "\n"
        f"[Pull request #1063 on the Specwatch dashboard]({DASHBOARD}pr/1063)"
    )
    calls = [(r.method, r.path) for r in github.requests]
    assert calls == [
        ("POST", f"/repos/lsst/validate_drp/statuses/{SHA}"),
        ("GET", "/repos/lsst/validate_drp/issues/1063/comments?per_page=100"),
        ("POST", "/repos/lsst/validate_drp/issues/1063/comments"),
    ]
    for request in github.requests:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/vnd.github+json"
        assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"


async def test_the_next_summary_edits_the_same_comment(
    github: FakeGitHub, http: httpx.AsyncClient
) -> None:
    github.add_comment("lsst", "validate_drp", 1063, "LGTM")
    github_notifier = notifier(github, http)
    await github_notifier.send(summary_message(summary()))
    fixed = summary(regressed=0, improved=3, worst=())
    await github_notifier.send(summary_message(fixed, "pr-2"))
    assert [s["state"] for s in github.statuses[SHA]] == ["failure", "success"]
    assert github.statuses[SHA][1]["description"] == "0 regressed, 3 improved of 28 metrics"
    comments = github.comments_on("lsst", "validate_drp", 1063)
    assert comments[0].body == "LGTM"
    [ours] = [c for c in comments if MARKER in c.body]
    assert len(comments) == 2
    assert ours.body.startswith(f"{MARKER}\n### ✅ Specwatch: 0 regressed, 3 improved")
    assert "| Metric |" not in ours.body
    assert github.requests[-1].method == "PATCH"
    assert github.requests[-1].path == f"/repos/lsst/validate_drp/issues/comments/{ours.id}"


async def test_the_comment_is_found_on_a_later_page(
    github: FakeGitHub, http: httpx.AsyncClient
) -> None:
    for n in range(150):
        github.add_comment("lsst", "validate_drp", 1063, f"comment {n}")
    ours = github.add_comment("lsst", "validate_drp", 1063, f"{MARKER}\nold summary")
    await notifier(github, http).send(summary_message(summary()))
    pages = [r.path for r in github.requests if r.method == "GET"]
    assert pages == [
        "/repos/lsst/validate_drp/issues/1063/comments?per_page=100",
        "/repos/lsst/validate_drp/issues/1063/comments?per_page=100&page=2",
    ]
    comments = github.comments_on("lsst", "validate_drp", 1063)
    assert len(comments) == 151
    assert comments[-1].id == ours and "### ❌ Specwatch" in comments[-1].body


@pytest.mark.parametrize(
    "repository",
    [
        "https://gitlab.com/lsst/validate_drp",
        "https://github.com/lsst",
        "https://github.com/lsst/../admin",
        "https://github.com/lsst/validate_drp/issues",
        "git@github.com:lsst/validate_drp.git",
        "",
    ],
)
async def test_a_repository_not_on_github_is_refused_for_good(
    github: FakeGitHub, http: httpx.AsyncClient, repository: str
) -> None:
    with pytest.raises(DeliveryError) as caught:
        await notifier(github, http).send(summary_message(summary(repository=repository)))
    assert caught.value.permanent
    assert repr(repository) in str(caught.value)
    assert github.requests == []


async def test_a_bad_token_is_refused_for_good(github: FakeGitHub, http: httpx.AsyncClient) -> None:
    for message in (summary_message(summary()), sample()):
        with pytest.raises(DeliveryError) as caught:
            await notifier(github, http, "expired").send(message)
        assert (caught.value.status, caught.value.permanent) == (401, True)
        assert "Bad credentials" in str(caught.value)
    assert github.statuses == {}


async def test_rate_limits_say_how_long_to_wait(
    github: FakeGitHub, http: httpx.AsyncClient
) -> None:
    reset = int(time.time()) + 120
    github.script(
        403,
        {"message": "API rate limit exceeded"},
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    github.script(429, {"message": "slow down"}, retry_after=30)
    github.script(403, {"message": "secondary rate limit"}, retry_after=60)
    github.script(403, {"message": "Resource not accessible by integration"})
    github_notifier = notifier(github, http)
    waits = []
    for _ in range(3):
        with pytest.raises(DeliveryError) as caught:
            await github_notifier.send(summary_message(summary()))
        assert not caught.value.permanent
        waits.append(caught.value.retry_after)
    assert waits[0] is not None and 110 <= waits[0] <= 121
    assert waits[1:] == [30.0, 60.0]
    with pytest.raises(DeliveryError) as caught:
        await github_notifier.send(summary_message(summary()))
    assert (caught.value.status, caught.value.permanent) == (403, True)
    await github_notifier.send(summary_message(summary()))  # the scripts are used up
    assert len(github.statuses[SHA]) == 1


async def test_a_server_error_is_transient(github: FakeGitHub, http: httpx.AsyncClient) -> None:
    github.script(502, "bad gateway")
    with pytest.raises(DeliveryError) as caught:
        await notifier(github, http).send(summary_message(summary()))
    assert (caught.value.status, caught.value.permanent) == (502, False)


async def test_the_comment_escapes_names_and_stays_bounded(
    github: FakeGitHub, http: httpx.AsyncClient
) -> None:
    hostile = worst_item("a|b <img src=x> `c` [d](https://e) @lsst/all", dataset="x|y")
    await notifier(github, http).send(summary_message(summary(worst=(hostile,))))
    [comment] = github.comments_on("lsst", "validate_drp", 1063)
    row = comment.body.splitlines()[9]
    assert row == (
        "| a&#124;b &lt;img src=x&gt; &#96;c&#96; &#91;d&#93;(https://e) &#64;lsst/all"
        " | x&#124;y / HSC-I | 6.012 mmag → 7.43 mmag | +23.6 % | +7.9σ |"
    )
    many = tuple(worst_item(f"{'m' * 10_000}{n}", dataset="<" * 10_000) for n in range(5000))
    await notifier(github, http).send(summary_message(summary(worst=many)))
    [comment] = github.comments_on("lsst", "validate_drp", 1063)
    assert len(comment.body) <= 60_000
    assert comment.body.startswith(MARKER)
    assert "more regressed or missing metrics." in comment.body
    assert len(comment_body(summary(worst=many), Links())) <= 60_000


async def test_a_test_message_checks_the_token(github: FakeGitHub, http: httpx.AsyncClient) -> None:
    await notifier(github, http).send(sample())
    assert [(r.method, r.path) for r in github.requests] == [("GET", "/rate_limit")]


async def test_a_rerun_is_a_repository_dispatch(
    github: FakeGitHub, http: httpx.AsyncClient
) -> None:
    payload = {"job_id": 88, "commit": SHA, "reason": "suspected change 41"}
    await notifier(github, http).dispatch_rerun("https://github.com/lsst/validate_drp", payload)
    assert github.dispatches == [{"event_type": "specwatch-rerun", "client_payload": payload}]
    assert github.requests[-1].path == "/repos/lsst/validate_drp/dispatches"


async def test_fake_github_refuses_bad_fields(github: FakeGitHub, http: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    statuses = f"{github.url}/repos/o/r/statuses/{SHA}"
    for body in ({"state": "broken"}, {"state": "success", "description": "d" * 141}):
        response = await http.post(statuses, json=body, headers=headers)
        assert response.status_code == 422
    response = await http.post(
        f"{github.url}/repos/o/r/issues/1/comments", json={"body": " "}, headers=headers
    )
    assert response.status_code == 422
    response = await http.get(f"{github.url}/rate_limit")
    assert response.status_code == 401
    assert github.statuses == {}
