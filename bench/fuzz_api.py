"""Run the schemathesis fuzz test (tests/test_fuzz_api.py) and print its distinct failures.

    .venv/bin/python bench/fuzz_api.py                         # the test's defaults
    .venv/bin/python bench/fuzz_api.py --examples 500 --stateful 200 --json fuzz.json

Runs pytest on the test file with ``SPECWATCH_FUZZ_*`` set from the options, times it, and
prints the failures grouped by (operation, check, status): the 5xx first, then the rest, each
with how often it occurred and the smallest reproducing request. Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _request(finding: dict[str, Any]) -> str:
    parts = [finding["method"], finding["path"]]
    if finding.get("query"):
        parts.append("query=" + json.dumps(finding["query"], ensure_ascii=False))
    if finding.get("headers"):
        parts.append("headers=" + json.dumps(finding["headers"], ensure_ascii=False))
    if finding.get("body") is not None:
        parts.append("body=" + finding["body"])
    return " ".join(parts)


def print_report(report: dict[str, Any], seconds: float) -> None:
    findings: list[dict[str, Any]] = report["findings"]
    requests = sum(report["requests"].values())
    print(
        f"{len(report['requests'])} operations, {requests} requests "
        f"({report['stateful_steps']} stateful), seed {report['seed']}, "
        f"{report['examples']} examples/mode, {seconds:.0f} s; "
        f"{sum(f['count'] for f in findings)} failing check results, {len(findings)} distinct"
    )
    if report.get("untyped_responses"):
        print(f"2xx responses without a schema: {report['untyped_responses']}")
    if report.get("unsent"):
        print(f"requests the client could not send: {report['unsent']}")
    server = [f for f in findings if (f["key"]["status"] or 0) >= 500]
    for title, group in (("5xx", server), ("other", [f for f in findings if f not in server])):
        print(f"\n{title}: {len(group)}")
        for f in group:
            key = f["key"]
            print(f"  {key['operation']} | {key['check']} | {key['status']} | x{f['count']}")
            print(f"      {f['title']}: {f['detail'][:160]}")
            print(f"      {f['phase']}/{f['mode']}: {_request(f)[:300]}")
            if f["answer"]:
                print(f"      answer: {f['answer'][:300]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, help="examples per operation and mode")
    parser.add_argument("--stateful", type=int, help="stateful scenarios (0: none)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--json", type=Path, help="keep the JSON report here")
    args = parser.parse_args()
    env = dict(os.environ)
    for name, value in (
        ("EXAMPLES", args.examples),
        ("STATEFUL", args.stateful),
        ("SEED", args.seed),
    ):
        if value is not None:
            env[f"SPECWATCH_FUZZ_{name}"] = str(value)
    with tempfile.TemporaryDirectory(prefix="specwatch-fuzz-") as tmp:
        report_path = args.json or Path(tmp) / "fuzz.json"
        env["SPECWATCH_FUZZ_REPORT"] = str(report_path)
        command = [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_fuzz_api.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "--show-capture=no",
            "--tb=no",
        ]
        started = time.perf_counter()
        status = subprocess.call(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        if not report_path.exists():
            print(f"pytest exited with {status} and wrote no report", file=sys.stderr)
            return status or 1
        print_report(json.loads(report_path.read_text(encoding="utf-8")), seconds)
    return status


if __name__ == "__main__":
    sys.exit(main())
