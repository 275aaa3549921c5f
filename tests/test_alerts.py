"""Alerts end to end: histories in, the messages a fake Slack (and GitHub) receives out.

Each rule fires on data that should fire it and stays silent otherwise; items of one build
group into one message; keys de-duplicate; cooldown, silences, acknowledgement and automatic
resolution hold; delivery survives a receiver that is down and honours Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Stack, truncate_all
from fakes import FakeGitHub, FakeSlack, FakeWebhook

from specwatch.alerts.webhook import sign
from specwatch.config import Settings
from specwatch.metrics.alerts import AlertFilter, AlertState
from specwatch.metrics.definitions import parse_definition_files
from specwatch.metrics.records import ChangeFilter
from specwatch.services.context import ProcessContext
from specwatch.services.demo import load_demo

REPOSITORY = "https://github.com/lsst/pipe_tasks"
DEFINITIONS = {
    "metrics/al.yaml": (
        "PA1:\n  unit: mmag\n  tags: [kpm]\n"
        "AM1:\n  unit: marcsec\n  tags: [kpm]\n"
        "TIME:\n  unit: s\n  tags: [timing]\n"
        "COMP:\n  unit: '%'\n  direction: higher\n"
    ),
    "specs/al/PA1.yaml": (
        "name: minimum\nmetric: PA1\nlevel: minimum\nrequirements: [DMS-REQ-0275]\n"
        "threshold: {value: 8.0, unit: mmag, operator: '<='}\n"
        "---\n"
        "name: design\nmetric: PA1\nlevel: design\nrequirements: [DMS-REQ-0275]\n"
        "threshold: {value: 5.0, unit: mmag, operator: '<='}\n"
    ),
}
TOKEN = "ghp_test"
WEBHOOK_KEY = "webhook-key"


@dataclass
class Fakes:
    slack: FakeSlack
    github: FakeGitHub
    webhook: FakeWebhook


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    with FakeSlack() as slack, FakeGitHub(TOKEN) as github, FakeWebhook(WEBHOOK_KEY) as webhook:
        yield Fakes(slack, github, webhook)


def alert_settings(stack: Stack, fakes: Fakes, **extra: Any) -> Settings:
    return Settings(
        **{
            **stack.settings.model_dump(),
            "slack_webhook_url": fakes.slack.url + "/services/T0/B0/x",
            "github_token": TOKEN,
            "github_api_url": fakes.github.url,
            "public_url": "https://specwatch.example.org",
            "alert_group_wait_s": 0.0,
            "alert_retry_initial_s": 0.05,
            "alert_retry_max_s": 0.2,
            **extra,
        }
    )


def _settings(url: str) -> Settings:
    return Settings(database_url=url, series_write_wait_s=5.0, influxdb_timeout_s=2.0)


@contextlib.asynccontextmanager
async def alert_context(
    sqlite_url: str,
    fakes: Fakes,
    *,
    rules: str | None = None,
    folder: Path | None = None,
    **extra: Any,
) -> AsyncIterator[ProcessContext]:
    """A process context on an empty SQLite database with the test definitions, its channels
    at the fakes (and its rules from ``rules``, written in ``folder``); nothing in the
    background (tests call each step)."""
    await truncate_all(sqlite_url)
    if rules is not None:
        assert folder is not None
        path = folder / "rules.yaml"
        path.write_text(rules)
        extra["alert_rules"] = path
    settings = alert_settings(Stack("sqlite", _settings(sqlite_url), None), fakes, **extra)
    context = await ProcessContext.open(settings, background=False)
    try:
        await context.definitions().import_definitions(parse_definition_files(DEFINITIONS))
        yield context
    finally:
        await context.close()


@pytest.fixture
async def lite(sqlite_url: str, fakes: Fakes) -> AsyncIterator[ProcessContext]:
    async with alert_context(sqlite_url, fakes) as context:
        yield context


def job(
    n: int,
    values: dict[str, float],
    *,
    dataset: str = "D",
    branch: str = "main",
    pr: int | None = None,
    commit: str | None = None,
    packages: dict[str, Any] | None = None,
    base_commit: str | None = None,
) -> bytes:
    """An lsst.verify job of build ``n`` (one minute apart) of ``dataset``."""
    meta: dict[str, Any] = {
        "dataset": dataset,
        "filter": "r",
        "instrument": "HSC",
        "branch": branch,
        "commit": commit or f"{n:040x}",
        "time": (datetime(2026, 8, 1, tzinfo=UTC) + timedelta(minutes=n)).isoformat(),
        "repository": REPOSITORY,
        "ci_name": "ci_hsc",
        "ci_id": str(1000 + n),
        "build_url": f"https://ci.example.org/job/ci_hsc/{1000 + n}/",
    }
    if pr is not None:
        meta.update(pr=pr, pr_url=f"{REPOSITORY}/pull/{pr}", base_commit=base_commit)
    if packages is not None:
        meta["packages"] = packages
    return json.dumps(
        {
            "measurements": [
                {"metric": f"al.{k}", "value": v, "unit": ""} for k, v in values.items()
            ],
            "meta": meta,
        }
    ).encode()


async def ingest(context: ProcessContext, bodies: Sequence[bytes]) -> list[int]:
    service = context.jobs()
    return [(await service.ingest(body)).id for body in bodies]


async def settle(context: ProcessContext, job_ids: Sequence[int]) -> int:
    """What the background does after an ingest: deliver points, detect, evaluate the builds'
    rules, send.  Returns how many notifications were sent."""
    await context.deliverer.drain()
    regressions = context.regressions()
    await regressions.detect_many(await regressions.all_keys(min_builds=1))
    await context.alerts().evaluate_jobs(job_ids)
    assert context.dispatcher is not None
    return await context.dispatcher.drain()


def noise(n: int, seed: int, sigma: float = 0.05) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).normal(0.0, sigma, n)


def headers_of(slack: FakeSlack) -> list[str]:
    return [message["blocks"][0]["text"]["text"] for message in slack.messages]


async def alerts_of(context: ProcessContext, state: str | None = None) -> list[Any]:
    return await context.alerts().list_alerts(AlertFilter(state=state), after=None, limit=100)


# --- regressions -------------------------------------------------------------------------------


async def test_a_step_in_two_datasets_is_one_message_then_resolves_when_accepted(
    lite: ProcessContext, fakes: Fakes
) -> None:
    """PA1 steps up (worse, within design) at build 30 in both datasets; COMP steps up
    (better): one alert
    with two items, sent once; more builds send nothing; accepting both changes resolves it."""
    e1, e2, e3 = noise(60, 1), noise(60, 2), noise(60, 3)
    bodies = []
    for n in range(40):
        step = 1.0 if n >= 30 else 0.0
        packages = {"meas_algorithms": {"version": "w.40" if n >= 30 else "w.39"}}
        for dataset, e in (("D", e1), ("E", e2)):
            bodies.append(
                job(
                    n,
                    {"PA1": 3.0 + step + e[n], "COMP": 90 + 5 * step + e3[n]},
                    dataset=dataset,
                    packages=packages,
                )
            )
    assert await settle(lite, await ingest(lite, bodies)) == 1
    [message] = fakes.slack.messages
    header = message["blocks"][0]["text"]["text"]
    assert "Regression" in header and "al.PA1" in header and "(+1 more)" in header
    text = json.dumps(message)
    assert "meas_algorithms" in text and "w.39" in text and "w.40" in text  # culprit
    assert "https://specwatch.example.org/dashboard/metric/al.PA1" in text
    assert "compare/" in text  # the commit range links GitHub's compare view
    assert "Spec al.PA1.design: &lt;= 5 mmag" in text  # the value against its spec
    assert "DMS-REQ-0275" in text
    assert "<https://ci.example.org/job/ci_hsc/1030/|CI>" in text  # the build of the change
    [alert] = await alerts_of(lite)
    assert alert.rule == "regression" and len(alert.items) == 2
    assert {i.dataset for i in alert.items} == {"D", "E"}
    item = alert.items[0]
    assert item.delta is not None and 0.9 < item.delta < 1.1
    assert item.delta_sigma is not None and item.delta_sigma > 5
    assert item.confirming_builds == 10
    assert item.commit_before == f"{29:040x}" and item.commit_after == f"{30:040x}"

    # Ten more builds at the new level: the same changes, no new message.
    more = [
        job(n, {"PA1": 4.0 + e[n], "COMP": 95 + e3[n]}, dataset=d)
        for n in range(40, 50)
        for d, e in (("D", e1), ("E", e2))
    ]
    assert await settle(lite, await ingest(lite, more)) == 0
    [alert] = await alerts_of(lite)
    assert {i.confirming_builds for i in alert.items} == {20}

    regressions = lite.regressions()
    for item in alert.items:
        assert item.change_id is not None
        await regressions.set_status(item.change_id, "accepted", "new algorithm")
    assert await lite.dispatcher.drain() == 1  # type: ignore[union-attr]
    assert (
        headers_of(fakes.slack)[1].startswith("✅ Resolved")
        or "Resolved" in headers_of(fakes.slack)[1]
    )
    [resolved] = await alerts_of(lite, "resolved")
    assert resolved.id == alert.id and resolved.resolved_at is not None


async def test_confirm_waits_for_that_many_builds(
    sqlite_url: str, fakes: Fakes, tmp_path: Path
) -> None:
    rules = "rules:\n  - {name: slow, kind: regression, confirm: 12}\n"
    async with alert_context(sqlite_url, fakes, rules=rules, folder=tmp_path) as context:
        e = noise(60, 4)
        values = [4.0 + (1.0 if n >= 30 else 0.0) + e[n] for n in range(60)]
        ids = await ingest(context, [job(n, {"PA1": values[n]}) for n in range(38)])
        assert await settle(context, ids) == 0  # found after 8 builds, not confirmed yet
        assert await context.regressions().changes(
            ChangeFilter(),
            after=None,
            limit=10,
        )
        ids = await ingest(context, [job(n, {"PA1": values[n]}) for n in range(38, 42)])
        assert await settle(context, ids) == 1  # the 12th build after the change
        [alert] = await alerts_of(context)
        assert alert.rule == "slow" and alert.items[0].confirming_builds == 12


async def test_improvements_outliers_and_monitor_only_metrics_raise_nothing(
    sqlite_url: str, fakes: Fakes, tmp_path: Path
) -> None:
    rules = "monitor_only: ['al.TI*']\nrules:\n  - {name: regression, kind: regression}\n"
    async with alert_context(sqlite_url, fakes, rules=rules, folder=tmp_path) as context:
        e = noise(60, 5)
        bodies = []
        for n in range(50):
            bodies.append(
                job(
                    n,
                    {
                        "PA1": 5.0 - (1.0 if n >= 25 else 0.0) + e[n],  # better
                        "AM1": 10.0 + (5.0 if n in (20, 33) else 0.0) + e[n],  # two outliers
                        "TIME": 30.0 + (10.0 if n >= 25 else 0.0) + e[n],  # worse, monitored
                    },
                )
            )
        assert await settle(context, await ingest(context, bodies)) == 0
        assert await alerts_of(context, None) == []
        changes = await context.regressions().changes(
            ChangeFilter(),
            after=None,
            limit=10,
        )
        assert {c.key.metric for c in changes} == {"al.PA1", "al.TIME"}  # found, not alerted


# --- spec levels -------------------------------------------------------------------------------


async def test_spec_level_needs_two_builds_each_way_and_cools_down(
    sqlite_url: str, fakes: Fakes, tmp_path: Path
) -> None:
    """PA1 design is <= 5 mmag.  One build over it says nothing; two open an alert; one back
    under keeps it; two resolve it; losing it again within the cooldown stays quiet."""
    rules = "rules:\n  - {name: spec-level, kind: spec_level, confirm: 2}\n"
    async with alert_context(sqlite_url, fakes, rules=rules, folder=tmp_path) as lite:
        levels = [4.0] * 20 + [5.5] + [4.0] * 5 + [5.5, 5.6] + [4.2] + [5.4] + [4.1, 4.0]
        levels += [5.5, 5.5]  # lost again, inside the default hour of cooldown
        sent = []
        ids: list[int] = []
        for n, value in enumerate(levels):
            ids = await ingest(lite, [job(n, {"AM1": 10.0, "PA1": value})])
            await settle(lite, ids)
            sent.append(len(fakes.slack.messages))
        # Messages: opened after build 27 (the second over), resolved after build 31.
        assert sent[26] == 0 and sent[27] == 1
        assert sent[28:31] == [1, 1, 1] and sent[31] == 2
        assert sent[-1] == 2  # cooldown
        opened, resolved = headers_of(fakes.slack)
        assert "Spec level lost" in opened and "al.PA1" in opened
        assert "Resolved" in resolved
        text = json.dumps(fakes.slack.messages[0])
        assert "DMS-REQ-0275" in text and "design" in text
        alerts = await alerts_of(lite, None)
        assert len(alerts) == 1
        item = alerts[0].items[0]
        assert item.level_before == "design" and item.level_after == "minimum"
        assert item.threshold == 5.0 and item.operator == "<="


async def test_failing_the_minimum_alerts_even_without_history_of_passing(
    lite: ProcessContext, fakes: Fakes
) -> None:
    e = noise(10, 7)
    ids = await ingest(lite, [job(n, {"PA1": 9.0 + e[n]}) for n in range(10)])
    await settle(lite, ids)
    [alert] = await alerts_of(lite)
    assert alert.rule == "spec-level"
    # Design was never met: only the minimum is news.
    assert [(i.level_before, i.level_after) for i in alert.items] == [("minimum", None)]


# --- stale metrics -----------------------------------------------------------------------------


async def test_a_metric_missing_from_three_builds_alerts_and_resolves_when_back(
    lite: ProcessContext, fakes: Fakes
) -> None:
    ids = await ingest(lite, [job(n, {"PA1": 4.0, "AM1": 10.0}) for n in range(10)])
    await settle(lite, ids)
    for n in (10, 11):
        await settle(lite, await ingest(lite, [job(n, {"PA1": 4.0})]))
    assert fakes.slack.messages == []  # two builds without AM1: not yet
    await settle(lite, await ingest(lite, [job(12, {"PA1": 4.0})]))
    [message] = fakes.slack.messages
    assert "Not reported" in message["blocks"][0]["text"]["text"]
    assert "al.AM1" in json.dumps(message)
    await settle(lite, await ingest(lite, [job(13, {"PA1": 4.0})]))
    assert len(fakes.slack.messages) == 1  # still missing: the same alert, no new message
    await settle(lite, await ingest(lite, [job(14, {"PA1": 4.0, "AM1": 10.0})]))
    assert "Resolved" in headers_of(fakes.slack)[1]


# --- pull requests -----------------------------------------------------------------------------


async def test_a_regressing_pull_request_alerts_once_and_keeps_one_github_comment(
    lite: ProcessContext, fakes: Fakes
) -> None:
    e = noise(40, 6)
    main = [job(n, {"PA1": 4.0 + e[n], "AM1": 10.0 + e[n]}) for n in range(20)]
    await settle(lite, await ingest(lite, main))
    base = f"{19:040x}"
    head1, head2, head3 = "a" * 40, "b" * 40, "c" * 40
    # Push 1 regresses PA1 by 20 %.
    ids = await ingest(
        lite,
        [job(30, {"PA1": 4.8, "AM1": 10.0}, pr=7, commit=head1, branch="t/x", base_commit=base)],
    )
    assert await settle(lite, ids) == 2  # Slack + GitHub summary
    [message] = fakes.slack.messages
    assert "PR #7 regresses al.PA1" in message["blocks"][0]["text"]["text"]
    [status] = fakes.github.statuses[head1]
    assert status["state"] == "failure" and status["context"] == "specwatch"
    assert status["target_url"] == "https://specwatch.example.org/dashboard/pr/7"
    [comment] = fakes.github.comments_on("lsst", "pipe_tasks", 7)
    assert "al.PA1" in comment.body
    # Push 2 still regresses: no new Slack message; the comment is updated, not added.
    ids = await ingest(
        lite,
        [job(31, {"PA1": 4.9, "AM1": 10.0}, pr=7, commit=head2, branch="t/x", base_commit=base)],
    )
    await settle(lite, ids)
    assert len(fakes.slack.messages) == 1
    assert fakes.github.statuses[head2][0]["state"] == "failure"
    [comment] = fakes.github.comments_on("lsst", "pipe_tasks", 7)
    assert "4.9" in comment.body
    # Push 3 fixes it: the alert resolves, the status is success, still one comment.
    ids = await ingest(
        lite,
        [job(32, {"PA1": 4.0, "AM1": 10.0}, pr=7, commit=head3, branch="t/x", base_commit=base)],
    )
    await settle(lite, ids)
    assert "Resolved" in headers_of(fakes.slack)[1]
    assert fakes.github.statuses[head3][0]["state"] == "success"
    assert len(fakes.github.comments_on("lsst", "pipe_tasks", 7)) == 1
    [alert] = await alerts_of(lite, "resolved")
    assert alert.pr == 7 and alert.commit == head1


# --- silences, triage --------------------------------------------------------------------------


async def test_a_silence_records_the_alert_without_sending_it(
    lite: ProcessContext, fakes: Fakes
) -> None:
    await lite.alerts().add_silence(
        rule=None,
        metric="al.PA*",
        dataset=None,
        branch=None,
        pr=None,
        ends_at=datetime.now(UTC) + timedelta(hours=1),
        reason="known, DM-1",
        created_by="test",
    )
    ids = await ingest(lite, [job(n, {"PA1": 9.0}) for n in range(5)])
    assert await settle(lite, ids) == 0
    [alert] = await alerts_of(lite)
    assert alert.silenced
    # Resolving a silenced alert sends nothing either.
    await lite.alerts().set_state(alert.id, AlertState.RESOLVED, "done")
    assert await lite.dispatcher.drain() == 0  # type: ignore[union-attr]
    assert fakes.slack.requests == []


async def test_acknowledged_alerts_still_resolve_by_themselves(
    lite: ProcessContext, fakes: Fakes
) -> None:
    ids = await ingest(lite, [job(n, {"PA1": 9.0}) for n in range(5)])
    await settle(lite, ids)
    [alert] = await alerts_of(lite)
    acknowledged = await lite.alerts().set_state(alert.id, AlertState.ACKNOWLEDGED, "on it")
    assert acknowledged.state is AlertState.ACKNOWLEDGED and acknowledged.note == "on it"
    ids = await ingest(lite, [job(n, {"PA1": 4.0}) for n in range(5, 7)])
    await settle(lite, ids)
    [resolved] = await alerts_of(lite, "resolved")
    assert resolved.id == alert.id
    assert [h.split(" ")[1] for h in headers_of(fakes.slack)][-1].startswith("Resolved")


# --- no false alarms ---------------------------------------------------------------------------


async def test_stationary_noise_over_2000_builds_raises_no_alert(
    lite: ProcessContext, fakes: Fakes
) -> None:
    """Two metrics of pure noise, one 3 σ under its design threshold (it crosses it alone a
    few times), detected every 25 builds as the background would: not one alert."""
    rng = np.random.default_rng(2000)
    sigma = 0.1
    pa1 = 5.0 - 3 * sigma + rng.normal(0, sigma, 2000)
    am1 = 10.0 + rng.normal(0, 0.3, 2000)
    assert (pa1 > 5.0).sum() >= 1  # single builds over the threshold happen
    for start in range(0, 2000, 25):
        bodies = [job(n, {"PA1": pa1[n], "AM1": am1[n]}) for n in range(start, start + 25)]
        await settle(lite, await ingest(lite, bodies))
    assert await alerts_of(lite, None) == []
    assert fakes.slack.requests == []


# --- delivery ----------------------------------------------------------------------------------


async def test_a_receiver_down_for_a_while_gets_every_message_once(
    lite: ProcessContext, fakes: Fakes
) -> None:
    fakes.slack.stop()
    ids = await ingest(
        lite, [job(n, {"PA1": 9.0, "AM1": 10.0}, dataset=d) for n in range(5) for d in "DE"]
    )
    assert await settle(lite, ids) == 0
    dispatcher = lite.dispatcher
    assert dispatcher is not None
    for _ in range(3):  # retried while down
        await asyncio.sleep(0.25)
        assert await dispatcher.deliver_due() == 0
    detail = (await lite.alerts().get((await alerts_of(lite))[0].id))[1]
    assert detail[0]["attempts"] >= 3 and "ConnectError" in detail[0]["last_error"]
    fakes.slack.start()
    await asyncio.sleep(0.25)
    assert await dispatcher.deliver_due() == 1
    assert await dispatcher.drain() == 0
    assert len(fakes.slack.messages) == 1  # one alert (two items), delivered once
    assert await dispatcher.pending() == 0


async def test_retry_after_is_honoured_and_a_refusal_is_not_retried(
    lite: ProcessContext, fakes: Fakes
) -> None:
    fakes.slack.script(429, "rate_limited", retry_after=1)
    ids = await ingest(lite, [job(n, {"PA1": 9.0}) for n in range(3)])
    await settle(lite, ids)  # the first attempt gets 429
    dispatcher = lite.dispatcher
    assert dispatcher is not None
    assert len(fakes.slack.requests) == 1
    await asyncio.sleep(0.5)
    assert await dispatcher.deliver_due() == 0 and len(fakes.slack.requests) == 1
    await asyncio.sleep(0.7)
    assert await dispatcher.deliver_due() == 1
    first, second = fakes.slack.requests
    assert second.at - first.at >= 1.0
    # A revoked webhook (404): recorded as failed, never sent again.
    fakes.slack.script(404, "no_service")
    [alert] = await alerts_of(lite)
    await lite.alerts().set_state(alert.id, AlertState.RESOLVED, None)
    assert await dispatcher.drain() == 0
    assert await dispatcher.drain() == 0
    assert len(fakes.slack.requests) == 3
    _, notifications = await lite.alerts().get(alert.id)
    assert notifications[-1]["failed_at"] is not None and "404" in notifications[-1]["last_error"]


async def test_the_webhook_gets_signed_json(sqlite_url: str, fakes: Fakes) -> None:
    async with alert_context(
        sqlite_url,
        fakes,
        alert_webhook_url=fakes.webhook.url + "/hook",
        alert_webhook_secret=WEBHOOK_KEY,
        slack_webhook_url=None,
    ) as context:
        bodies = [job(n, {"PA1": 9.0}) for n in range(3)]
        assert await settle(context, await ingest(context, bodies)) == 1
    [request] = fakes.webhook.requests
    assert request.headers["X-Specwatch-Signature-256"] == sign(WEBHOOK_KEY, request.body)
    assert request.headers["X-Specwatch-Event"] == "opened"
    document = request.json()
    assert document["alert"]["rule"] == "spec-level"
    assert document["alert"]["items"][0]["metric"] == "al.PA1"


# --- the demo ----------------------------------------------------------------------------------


async def test_the_demo_raises_the_alerts_a_person_expects_and_no_others(
    lite: ProcessContext, fakes: Fakes
) -> None:
    """Its injected steps for the worse (two of them in both datasets: one message each), the
    design level AM1 loses on CI-HiTS with its step, and the regressing PR #1063; not the
    improvements, the outliers, the gaps, the NaN, the drift or the harmless PRs."""
    await load_demo(lite)
    assert lite.dispatcher is not None
    await lite.dispatcher.drain()
    alerts = await alerts_of(lite, None)
    found = sorted((a.rule, tuple(sorted((i.metric, i.dataset) for i in a.items))) for a in alerts)
    assert found == [
        ("pr-regression", (("validate_drp.PA1", "CI-HiTS"), ("validate_drp.PA1", "HSC-RC2"))),
        (
            "regression",
            (
                ("ap_association.DiaPipelineMemory", "CI-HiTS"),
                ("ap_association.DiaPipelineMemory", "HSC-RC2"),
            ),
        ),
        ("regression", (("ip_diffim.fracDiaSourcesToSciSources", "HSC-RC2"),)),
        (
            "regression",
            (
                ("pipe_tasks.processCcd_wallTime", "CI-HiTS"),
                ("pipe_tasks.processCcd_wallTime", "HSC-RC2"),
            ),
        ),
        ("regression", (("validate_drp.AM1", "CI-HiTS"),)),
        ("spec-level", (("validate_drp.AM1", "CI-HiTS"),)),
    ]
    assert len(fakes.slack.messages) == 6
    pr = next(a for a in alerts if a.rule == "pr-regression")
    assert pr.pr == 1063
    # GitHub heard about each of the three pull requests: one status on each head, one comment.
    assert len(fakes.github.statuses) == 3
    states = sorted(s[0]["state"] for s in fakes.github.statuses.values())
    assert states == ["failure", "success", "success"]


async def test_a_suspected_change_asks_ci_for_a_rerun_once_and_alerts_when_it_agrees(
    sqlite_url: str, fakes: Fakes, tmp_path: Path
) -> None:
    rules = "rules:\n  - {name: rr, kind: regression, confirm: 20, rerun: true}\n"
    async with alert_context(sqlite_url, fakes, rules=rules, folder=tmp_path) as context:
        e = noise(60, 8)
        values = [4.0 + (1.0 if n >= 30 else 0.0) + e[n] for n in range(60)]
        await settle(
            context, await ingest(context, [job(n, {"AM1": values[n]}) for n in range(34)])
        )
        await settle(context, await ingest(context, [job(34, {"AM1": values[34]})]))
        # Found, not confirmed (20 builds): one dispatch naming the change's commit, no alert.
        [dispatch] = fakes.github.dispatches
        assert dispatch["event_type"] == "specwatch-rerun"
        payload = dispatch["client_payload"]
        assert payload["commit"] == f"{30:040x}" and payload["branch"] == "main"
        assert payload["series"] == {
            "metric": "al.AM1",
            "dataset": "D",
            "filter": "r",
            "instrument": "HSC",
        }
        assert payload["ci"]["url"] == "https://ci.example.org/job/ci_hsc/1030/"
        assert fakes.github.requests[-1].route == "/repos/lsst/pipe_tasks/dispatches"
        assert await alerts_of(context) == []
        assert fakes.slack.messages == []
        # CI reruns the build of that commit: it lands at the new level, the alert goes out.
        rerun = job(35, {"AM1": 5.0}, commit=f"{30:040x}")
        await settle(context, await ingest(context, [rerun]))
        [alert] = await alerts_of(context)
        assert alert.rule == "rr" and alert.items[0].confidence == "high"
        assert len(fakes.slack.messages) == 1
        assert len(fakes.github.dispatches) == 1  # asked once


async def test_an_alert_outlives_the_detection_window_of_its_change(
    lite: ProcessContext, fakes: Fakes
) -> None:
    """Detection reads the last 500 builds; a change older than that stays as it was found,
    and so does its alert (it is not 'no longer found')."""
    e = noise(700, 9)
    values = [4.0 + (1.0 if n >= 20 else 0.0) + e[n] for n in range(700)]
    await settle(lite, await ingest(lite, [job(n, {"AM1": values[n]}) for n in range(40)]))
    [alert] = await alerts_of(lite)
    for start in range(40, 640, 150):
        bodies = [job(n, {"AM1": values[n]}) for n in range(start, start + 150)]
        await settle(lite, await ingest(lite, bodies))
    [still] = await alerts_of(lite)
    assert still.id == alert.id and still.state is AlertState.OPEN
    assert len(fakes.slack.messages) == 1
