"""Alerts from real processes: ``specwatch serve`` killed between an alert's commit and its
delivery, ``specwatch worker`` sending for a server that does not, and ``specwatch alerts``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeSlack
from served import SPECWATCH, ServedSpecwatch
from test_alerts import DEFINITIONS, job

FAST = {
    "SPECWATCH_DETECT_DEBOUNCE_S": "0.2",
    "SPECWATCH_ALERT_GROUP_WAIT_S": "0",
    "SPECWATCH_ALERT_RETRY_INITIAL_S": "0.2",
    "SPECWATCH_ALERT_RETRY_MAX_S": "0.5",
    "SPECWATCH_PUBLIC_URL": "https://specwatch.example.org",
}


def wait_for(condition: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def post_failing_pa1(served: ServedSpecwatch, builds: int = 3) -> None:
    """Definitions, then builds whose PA1 fails its minimum (a spec-level alert)."""
    auth = {"Authorization": f"Bearer {served.token('write:jobs', 'write:definitions')}"}
    response = httpx.post(
        f"{served.url}/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth
    )
    assert response.status_code == 200, response.text
    for n in range(builds):
        response = httpx.post(
            f"{served.url}/api/v1/jobs", content=job(n, {"PA1": 9.0 + 0.1 * n}), headers=auth
        )
        assert response.status_code == 201, response.text


def alerts(served: ServedSpecwatch) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = served.get("/api/v1/alerts").json()["alerts"]
    return found


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def test_an_alert_committed_before_a_kill_is_delivered_once_after_the_restart(
    tmp_path: Path, slack: FakeSlack
) -> None:
    slack.stop()  # Slack unreachable: the alert is committed, its message cannot go
    served = ServedSpecwatch(
        tmp_path, SPECWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/x", **FAST
    )
    served.start()
    try:
        post_failing_pa1(served)
        [alert] = wait_for(lambda: alerts(served))
        assert alert["rule"] == "spec-level" and alert["items"][0]["metric"] == "al.PA1"

        def tried() -> bool:
            detail = served.get(f"/api/v1/alerts/{alert['id']}").json()
            return bool(detail["notifications"]) and detail["notifications"][0]["attempts"] >= 1

        wait_for(tried)
        assert served.get("/healthz").json()["alerts_unsent"] == 1
        served.kill()
        slack.start()
        assert slack.messages == []
        served.start()
        wait_for(lambda: slack.messages)
        time.sleep(1.5)  # a second copy would come within this
        [message] = slack.messages
        assert "Spec level lost" in message["blocks"][0]["text"]["text"]
        assert served.get("/healthz").json()["alerts_unsent"] == 0
        detail = served.get(f"/api/v1/alerts/{alert['id']}").json()
        assert detail["notifications"][0]["delivered_at"] is not None
    finally:
        served.stop()


def test_a_worker_sends_for_a_server_that_does_not(tmp_path: Path, slack: FakeSlack) -> None:
    served = ServedSpecwatch(
        tmp_path,
        SPECWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/x",
        SPECWATCH_ALERT_DELIVERY="false",
        **FAST,
    )
    served.start()
    worker: subprocess.Popen[bytes] | None = None
    try:
        post_failing_pa1(served)
        wait_for(lambda: alerts(served))
        time.sleep(1.0)
        assert slack.requests == []  # the server raises alerts but does not send them
        with (tmp_path / "worker.log").open("wb") as log:
            env = {**served.env, "SPECWATCH_ALERT_DELIVERY": "true"}
            worker = subprocess.Popen(
                [SPECWATCH, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(lambda: slack.messages)
        assert len(slack.messages) == 1
    finally:
        if worker is not None:
            worker.terminate()
            assert worker.wait(timeout=20) == 0
        served.stop()
    assert "alert channels slack" in (tmp_path / "worker.log").read_text()


def test_alerts_test_sends_a_sample_and_says_what_is_missing(
    tmp_path: Path, slack: FakeSlack
) -> None:
    served = ServedSpecwatch(tmp_path, SPECWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/x")
    output = served.cli("alerts", "test", "--channel", "slack")
    assert output.strip() == "alerts test: a sample message was sent to slack"
    [message] = slack.messages
    assert message["blocks"][0]["text"]["text"].startswith("🧪 Test")
    off = subprocess.run(
        [SPECWATCH, "alerts", "test", "--channel", "github"],
        env=served.env,
        capture_output=True,
        text=True,
    )
    assert off.returncode == 2
    assert off.stderr.strip() == (
        "specwatch: error: the github channel is off: set SPECWATCH_GITHUB_TOKEN"
    )
    slack.stop()
    down = subprocess.run(
        [SPECWATCH, "alerts", "test", "--channel", "slack"],
        env=served.env,
        capture_output=True,
        text=True,
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1
    assert "ConnectError" in down.stderr and "T0" not in down.stderr


def test_alerts_rules_checks_a_file(tmp_path: Path) -> None:
    served = ServedSpecwatch(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "monitor_only: ['pipe_tasks.*Time']\n"
        "rules:\n"
        "  - {name: kpm, kind: regression, tags: [kpm], channels: [slack], confirm: 4}\n"
    )
    output = served.cli("alerts", "rules", "--file", str(rules))
    assert output.splitlines() == [
        f"{rules}: 1 rules",
        "  kpm: regression → slack; tags=kpm, branches=main",
        "  monitor only: pipe_tasks.*Time",
    ]
    rules.write_text("rules:\n  - {name: kpm, kind: regresion}\n")
    bad = subprocess.run(
        [SPECWATCH, "alerts", "rules", "--file", str(rules)],
        env=served.env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"specwatch: error: {rules}: rule 'kpm' (rules[0]).kind:")
    # The server and the worker refuse to start on it, with the same one line.
    for command in (["serve", "--port", "1"], ["worker"]):
        refused = subprocess.run(
            [SPECWATCH, *command],
            env={**served.env, "SPECWATCH_ALERT_RULES": str(rules)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.count("\n") == 1 and "rule 'kpm' (rules[0]).kind" in refused.stderr
