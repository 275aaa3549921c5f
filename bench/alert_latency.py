"""Benchmark: time from the build that confirms a change to the Slack message.

Starts ``specwatch serve`` (SQLite, embedded series store, default settings: detection
debounce 5 s, grouping wait 1 s) with its Slack webhook at a local fake Slack, then per trial
posts 20 builds of noise for a new dataset, then builds with a 20 σ step, one at a time,
until the regression alert arrives.  The latency is from the answer to the POST of the build
that made the detector report the change to the message's arrival.  The reference, in the
same run: the same message posted straight to the fake Slack (the network and receiver's
share), and the floor the settings impose (debounce + grouping wait).

    .venv/bin/python bench/alert_latency.py [--trials 5] [--debounce 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fakes import FakeSlack  # noqa: E402
from served import ServedSpecwatch  # noqa: E402

DEFINITIONS = {"metrics/latency.yaml": "KPM:\n  unit: mmag\n"}
TARGET_S = 10.0


def body(n: int, dataset: str, value: float) -> bytes:
    return json.dumps(
        {
            "measurements": [{"metric": "latency.KPM", "value": value, "unit": "mmag"}],
            "meta": {
                "dataset": dataset,
                "branch": "main",
                "commit": f"{n:040x}",
                "time": f"2026-09-01T{n // 60:02d}:{n % 60:02d}:00Z",
            },
        }
    ).encode()


def trial(served: ServedSpecwatch, slack: FakeSlack, auth: dict[str, str], k: int) -> float:
    """One step in a new dataset; the latency of its alert (s)."""
    rng = np.random.default_rng(k)
    dataset = f"bench-{k}"
    with httpx.Client(base_url=served.url, headers=auth, timeout=30) as client:
        for n in range(20):
            client.post("/api/v1/jobs", content=body(n, dataset, 3.0 + rng.normal(0, 0.05)))
        time.sleep(7)  # let the baseline's detection pass
        seen = len(slack.messages)
        for n in range(20, 40):
            response = client.post(
                "/api/v1/jobs", content=body(n, dataset, 4.0 + rng.normal(0, 0.05))
            )
            assert response.status_code == 201, response.text
            posted = time.monotonic()
            deadline = posted + 15
            while time.monotonic() < deadline:
                if len(slack.messages) > seen:
                    arrival = next(r.at for r in reversed(slack.requests) if r.method == "POST")
                    return arrival - posted
                time.sleep(0.01)
    raise RuntimeError(f"no alert for dataset {dataset}")


def reference(slack: FakeSlack) -> float:
    """Median time to post a Slack message straight to the fake (s)."""
    message = slack.messages[-1]
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            start = time.perf_counter()
            client.post(slack.url + "/services/T0/B0/x", json=message)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--debounce", type=float, default=None, help="SPECWATCH_DETECT_DEBOUNCE_S")
    args = parser.parse_args()
    settings = {"SPECWATCH_LOG_LEVEL": "WARNING"}
    if args.debounce is not None:
        settings["SPECWATCH_DETECT_DEBOUNCE_S"] = str(args.debounce)
    debounce = args.debounce if args.debounce is not None else 5.0
    with FakeSlack() as slack, tempfile.TemporaryDirectory(prefix="specwatch-latency-") as tmp:
        served = ServedSpecwatch(
            Path(tmp), SPECWATCH_SLACK_WEBHOOK_URL=slack.url + "/services/T0/B0/x", **settings
        )
        served.start()
        try:
            token = served.token("write:jobs", "write:definitions")
            auth = {"Authorization": f"Bearer {token}"}
            httpx.post(
                f"{served.url}/api/v1/definitions", json={"files": DEFINITIONS}, headers=auth
            ).raise_for_status()
            latencies = [trial(served, slack, auth, k) for k in range(args.trials)]
        finally:
            served.stop()
        direct = reference(slack)
    p50 = statistics.median(latencies)
    floor = debounce + 1.0
    print(f"alert latency, {args.trials} trials: " + ", ".join(f"{x:.2f}" for x in latencies))
    print(
        f"  p50 {p50:.2f} s  (target < {TARGET_S:.0f} s: {'met' if p50 < TARGET_S else 'NOT met'})"
    )
    print(f"  floor of the settings (debounce {debounce:g} s + grouping wait 1 s): {floor:.2f} s")
    print(f"  p50 / floor: {p50 / floor:.2f}")
    print(f"  reference, the message posted straight to the receiver: {direct * 1000:.1f} ms")


if __name__ == "__main__":
    main()
