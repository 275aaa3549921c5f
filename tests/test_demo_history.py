"""The seeded demo history: shipped definitions, determinism and the injected events."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest
import yaml

from specwatch.metrics.units import conversion_factor
from specwatch.services.demo_history import (
    DEFAULT_NOW,
    DemoEvent,
    DemoJob,
    demo_definition_files,
    demo_events,
    demo_jobs,
)

HEX40 = re.compile(r"^[0-9a-f]{40}$")
Series = dict[int, float]  # main build index -> value in the metric's unit


@pytest.fixture(scope="module")
def jobs() -> list[DemoJob]:
    return demo_jobs()


@pytest.fixture(scope="module")
def events() -> list[DemoEvent]:
    return demo_events()


@pytest.fixture(scope="module")
def units() -> dict[str, str]:
    """Full metric name -> unit, from the shipped metrics files."""
    result = {}
    for path, text in demo_definition_files().items():
        if path.startswith("metrics/"):
            package = path.removeprefix("metrics/").removesuffix(".yaml")
            for name, body in yaml.safe_load(text).items():
                result[f"{package}.{name}"] = body["unit"]
    return result


def main_jobs(jobs: list[DemoJob], dataset: str) -> dict[int, DemoJob]:
    return {
        int(job.idempotency_key.rsplit("/", 1)[1]): job
        for job in jobs
        if job.body["meta"]["branch"] == "main" and job.body["meta"]["dataset"] == dataset
    }


def value_of(job: DemoJob, metric: str, units: dict[str, str]) -> float | None:
    """The measurement of ``metric`` in ``job``, converted to the metric's unit."""
    for item in job.body["measurements"]:
        if item["metric"] == metric:
            return float(item["value"]) * conversion_factor(item["unit"], units[metric])
    return None


def series(jobs: list[DemoJob], metric: str, dataset: str, units: dict[str, str]) -> Series:
    values = {b: value_of(job, metric, units) for b, job in main_jobs(jobs, dataset).items()}
    return {b: v for b, v in values.items() if v is not None and math.isfinite(v)}


def clean_window(data: Series, builds: range, events: list[DemoEvent], metric: str) -> list[float]:
    """Values in ``builds`` without the outliers injected on ``metric``."""
    bad = {e.build for e in events if e.metric == metric and e.kind == "outlier"}
    return [data[b] for b in builds if b in data and b not in bad]


# --- definitions ---------------------------------------------------------------------------


def test_definition_files_are_lsst_verify_yaml() -> None:
    files = demo_definition_files()
    metrics: set[str] = set()
    for path, text in files.items():
        if path.startswith("metrics/"):
            package = path.removeprefix("metrics/").removesuffix(".yaml")
            for name, body in yaml.safe_load(text).items():
                assert {"description", "unit"} <= body.keys(), name
                assert body.get("direction", "lower") in {"lower", "higher", "none"}
                metrics.add(f"{package}.{name}")
    assert len(metrics) >= 22
    spec_paths = [path for path in files if path.startswith("specs/")]
    assert spec_paths
    assert all(re.fullmatch(r"specs/\w+/(\w+/)?[\w-]+\.yaml", path) for path in spec_paths)
    for path in spec_paths:
        package = path.split("/")[1]
        documents = list(yaml.safe_load_all(files[path]))
        assert documents, path
        for document in documents:
            assert ("id" in document) != ("name" in document), (path, document)
            if "metric" in document:
                assert f"{package}.{document['metric']}" in metrics, (path, document)
            if "name" in document:
                assert "metric" in document or "base" in document, (path, document)


def test_definitions_parse_with_specwatch() -> None:
    definitions = pytest.importorskip("specwatch.metrics.definitions")
    parsed = definitions.parse_definition_files(demo_definition_files())
    names = {metric.full_name for metric in parsed.metrics}
    assert len(names) >= 20
    assert {spec.metric_full_name for spec in parsed.specs} <= names
    assert {str(spec.level) for spec in parsed.specs} == {"minimum", "design", "stretch"}
    assert all(spec.requirements for spec in parsed.specs)
    assert any(spec.metadata_query.get("dataset") == "HSC-RC2" for spec in parsed.specs)
    assert any("filter" in spec.metadata_query for spec in parsed.specs)
    kpm_levels: dict[str, set[str]] = {}
    for spec in parsed.specs:
        kpm_levels.setdefault(spec.metric_full_name, set()).add(str(spec.level))
    assert kpm_levels["validate_drp.PA1"] == {"minimum", "design", "stretch"}
    assert kpm_levels["pipe_tasks.processCcd_wallTime"] == {"minimum", "design", "stretch"}
    pa1_design = next(s for s in parsed.specs if s.full_name == "validate_drp.PA1.design_gri")
    assert (pa1_design.threshold, pa1_design.unit, pa1_design.operator) == (5.0, "mmag", "<=")


# --- jobs ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bodies(jobs: list[DemoJob]) -> None:
    again = demo_jobs()
    assert [job.idempotency_key for job in again] == [job.idempotency_key for job in jobs]
    assert json.dumps([job.body for job in again]) == json.dumps([job.body for job in jobs])
    assert demo_events() == demo_events()
    other = demo_jobs(seed=7)
    assert json.dumps(other[0].body) != json.dumps(jobs[0].body)


def test_keys_are_unique_and_jobs_in_time_order(jobs: list[DemoJob]) -> None:
    keys = [job.idempotency_key for job in jobs]
    assert len(set(keys)) == len(keys)
    assert all(key.startswith("demo/") for key in keys)
    times = [datetime.fromisoformat(job.body["meta"]["time"]) for job in jobs]
    assert times == sorted(times)
    assert all(t.tzinfo is not None for t in times)


@pytest.mark.parametrize("dataset", ["HSC-RC2", "CI-HiTS"])
def test_main_history_spans_half_a_year_of_uneven_builds(jobs: list[DemoJob], dataset: str) -> None:
    builds = main_jobs(jobs, dataset)
    assert len(builds) >= 300
    times = [datetime.fromisoformat(builds[b].body["meta"]["time"]) for b in sorted(builds)]
    assert 150 <= (times[-1] - times[0]).days <= 200
    gaps_h = np.diff([t.timestamp() for t in times]) / 3600
    assert gaps_h.min() < 12 and gaps_h.max() > 5 * 24  # extra daytime builds, a CI outage
    assert len(set(sorted(builds))) < max(builds) + 1  # missing build numbers
    assert times[-1] < DEFAULT_NOW == datetime(2026, 11, 20, tzinfo=UTC)


def test_now_moves_the_history() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    times = [datetime.fromisoformat(job.body["meta"]["time"]) for job in demo_jobs(now=now)]
    assert max(times) < now
    assert (now - min(times)).days <= 181


def test_body_has_the_api_shape(jobs: list[DemoJob]) -> None:
    for job in jobs:
        body = job.body
        assert set(body) == {"measurements", "blobs", "metrics", "specs", "meta"}
        meta = body["meta"]
        assert HEX40.match(meta["commit"])
        assert meta["repository"] == "https://github.com/lsst/pipe_tasks"
        assert meta["env"]["ci_dataset"] == meta["dataset"]
        assert meta["env"]["env_name"] == "jenkins"
        assert meta["build_url"] == meta["env"]["ci_url"]
        assert 2 <= len(meta["packages"]) <= 4
        assert all(HEX40.match(p["git_sha"]) for p in meta["packages"].values())
        assert meta["packages"]["pipe_tasks"]["git_sha"] == meta["commit"]
        assert (meta["instrument"], meta["filter"]) in {("HSC", "HSC-I"), ("DECam", "g")}
        ids = [m["identifier"] for m in body["measurements"]]
        assert len(set(ids)) == len(ids)


def test_every_metric_is_measured_in_a_convertible_unit(
    jobs: list[DemoJob], units: dict[str, str]
) -> None:
    measured = Counter(m["metric"] for job in jobs for m in job.body["measurements"])
    assert len(measured) >= 20
    assert set(measured) <= set(units)
    metric_units = {units[name] for name in measured}
    assert {"mmag", "%", "s", "MB", "ct", ""} <= metric_units
    assert metric_units & {"marcsec", "mas", "milliarcsecond"}
    sent = {(m["unit"], units[m["metric"]]) for job in jobs for m in job.body["measurements"]}
    assert {("min", "s"), ("ms", "s"), ("arcsec", "marcsec"), ("MB", "byte")} <= sent
    for sent_unit, metric_unit in sent:
        conversion_factor(sent_unit, metric_unit)  # raises when not convertible
    wall = series(jobs, "pipe_tasks.processCcd_wallTime", "HSC-RC2", units)
    assert 25 < float(np.median(list(wall.values()))) < 80  # seconds, sent in minutes
    am1 = series(jobs, "validate_drp.AM1", "CI-HiTS", units)
    assert 5 < float(np.median(list(am1.values()))) < 15  # mas, sent in arcsec


def test_most_jobs_measure_every_metric_and_gaps_are_listed(
    jobs: list[DemoJob], events: list[DemoEvent], units: dict[str, str]
) -> None:
    main = [job for job in jobs if job.body["meta"]["branch"] == "main"]
    short = {
        (job.body["meta"]["dataset"], int(job.idempotency_key[-4:]), metric)
        for job in main
        for metric in set(units) - {m["metric"] for m in job.body["measurements"]}
    }
    gaps = {(e.dataset, e.build, e.metric) for e in events if e.kind == "gap" and e.metric}
    assert short == gaps
    assert 0 < len(short) < len(main) / 20
    for event in events:
        if event.kind == "gap" and event.metric is None and event.dataset is not None:
            assert event.build not in main_jobs(jobs, event.dataset)


def test_exactly_one_nan(jobs: list[DemoJob], events: list[DemoEvent]) -> None:
    nans = [
        (job.body["meta"]["dataset"], int(job.idempotency_key[-4:]), m["metric"])
        for job in jobs
        for m in job.body["measurements"]
        if math.isnan(m["value"])
    ]
    assert nans == [(e.dataset, e.build, e.metric) for e in events if e.kind == "nan"]
    assert len(nans) == 1


def test_blobs_are_small_referenced_and_occasional(jobs: list[DemoJob]) -> None:
    with_blobs = [job for job in jobs if job.body["blobs"]]
    assert 0 < len(with_blobs) < len(jobs) / 5
    for job in with_blobs:
        blob_ids = {blob["identifier"] for blob in job.body["blobs"]}
        refs = {ref for m in job.body["measurements"] for ref in m["blob_refs"]}
        assert refs == blob_ids
        for blob in job.body["blobs"]:
            for item in blob["data"].values():
                assert {"value", "unit", "label", "description"} <= item.keys()
                values = item["value"] if isinstance(item["value"], list) else [item["value"]]
                assert len(values) <= 50


# --- injected events -----------------------------------------------------------------------


def test_steps_and_drift_show_in_the_data(
    jobs: list[DemoJob], events: list[DemoEvent], units: dict[str, str]
) -> None:
    shifts = [e for e in events if e.kind in {"step", "drift"}]
    assert len([e for e in shifts if e.kind == "step"]) >= 4
    assert any(e.size < 0 for e in shifts) and any(e.size > 0 for e in shifts)
    for event in shifts:
        assert event.metric and event.dataset
        data = series(jobs, event.metric, event.dataset, units)
        if event.kind == "step":
            before = clean_window(data, range(event.build - 25, event.build), events, event.metric)
            after = clean_window(data, range(event.build, event.build + 25), events, event.metric)
            sigma = float(np.std(before, ddof=1))
            change = float(np.mean(after) - np.mean(before))
            assert 2 <= abs(event.size) / sigma <= 6, event
            assert change == pytest.approx(event.size, rel=0.4), event
        else:
            assert event.end_build is not None
            builds = range(event.build, event.end_build + 1)
            xs = [b for b in builds if b in data]
            slope = float(np.polyfit(xs, [data[b] for b in xs], 1)[0])
            assert slope * (event.end_build - event.build) == pytest.approx(event.size, rel=0.3)


def test_outliers_stand_out(
    jobs: list[DemoJob], events: list[DemoEvent], units: dict[str, str]
) -> None:
    outliers = [e for e in events if e.kind == "outlier"]
    assert len(outliers) >= 3
    for event in outliers:
        assert event.metric and event.dataset
        data = series(jobs, event.metric, event.dataset, units)
        around = clean_window(data, range(event.build - 15, event.build + 15), events, event.metric)
        excess = data[event.build] - float(np.median(around))
        assert excess > 4 * float(np.std(around)), event
        assert excess == pytest.approx(event.size, rel=0.35), event


def test_three_open_prs_one_regressing_pa1_over_design(
    jobs: list[DemoJob], events: list[DemoEvent], units: dict[str, str]
) -> None:
    pr_jobs = [job for job in jobs if job.body["meta"]["pr"] is not None]
    by_pr: dict[int, list[DemoJob]] = {}
    for job in pr_jobs:
        by_pr.setdefault(job.body["meta"]["pr"], []).append(job)
    assert len(by_pr) == 3
    main_commits = {
        job.body["meta"]["commit"]: job for job in jobs if job.body["meta"]["branch"] == "main"
    }
    for pr_number, pr_builds in by_pr.items():
        metas = [job.body["meta"] for job in pr_builds]
        assert 1 <= len({meta["commit"] for meta in metas}) <= 3
        assert all(re.fullmatch(r"tickets/DM-\d+", meta["branch"]) for meta in metas)
        assert all(meta["pr_url"].endswith(f"/pull/{pr_number}") for meta in metas)
        for meta in metas:
            base = main_commits[meta["base_commit"]].body["meta"]
            assert meta["time"] > base["time"]
    regressions = [e for e in events if e.kind == "pr_regression"]
    assert {e.pr for e in regressions} == {1063}
    hsc = next(e for e in regressions if e.dataset == "HSC-RC2")
    assert hsc.metric == "validate_drp.PA1"
    history = series(jobs, hsc.metric, "HSC-RC2", units)
    baseline = [history[b] for b in range(hsc.build - 30, hsc.build + 1) if b in history]
    mean, sigma = float(np.mean(baseline)), float(np.std(baseline, ddof=1))
    for job in by_pr[1063]:
        if job.body["meta"]["dataset"] == "HSC-RC2":
            value = value_of(job, hsc.metric, units)
            assert value is not None
            assert value > 5.0  # validate_drp.PA1.design_gri
            assert (value - mean) / sigma > 5
            assert value - mean == pytest.approx(hsc.size, rel=0.35)
    for pr_number in set(by_pr) - {1063}:  # the others stay within the noise
        for job in by_pr[pr_number]:
            if job.body["meta"]["dataset"] == "HSC-RC2":
                value = value_of(job, hsc.metric, units)
                assert value is not None
                assert abs(value - mean) < 4 * sigma
