"""Prometheus metrics of the process: what ``GET /metrics`` exposes.

Counters and histograms live in prometheus_client's default registry (its idiom: one
definition per process, shared by every layer, which is why this module sits at the top and
imports nothing of Specwatch).  Layers record through the small functions below, never
through the metric objects, so names and labels stay in this file.

Several processes (``specwatch serve --workers N``): set ``PROMETHEUS_MULTIPROC_DIR`` to an
empty directory, the same for every worker, before the server starts (prometheus_client reads
it at import).  Each worker then writes its samples to files there, and a scrape of any worker
answers the sum of all (``MultiProcessCollector``).  Empty the directory at each start.

Backlog gauges are not kept here: they are counted from the database when scraped
(``exposition``), so every worker answers the same, current values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

# Request latencies: ingests take milliseconds, dashboard callbacks up to seconds.
_HTTP_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_WORK_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Any other method a client sends is counted as "other": labels must stay few.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "specwatch_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "specwatch_http_request_duration_seconds",
    "Time to answer an HTTP request (body included), by method and route template.",
    ["method", "route"],
    buckets=_HTTP_BUCKETS_S,
)
JOBS_INGESTED = Counter("specwatch_jobs_ingested", "Jobs stored (a replayed job not counted).")
MEASUREMENTS_INGESTED = Counter(
    "specwatch_measurements_ingested", "Measurements of the jobs stored."
)
DETECTION_SECONDS = Histogram(
    "specwatch_detection_seconds",
    "Time of one change detection pass over the series of a package and context.",
    buckets=_WORK_BUCKETS_S,
)
SERIES_WRITE_SECONDS = Histogram(
    "specwatch_series_write_seconds",
    "Time of one write of points to the time-series store, by backend.",
    ["backend"],
    buckets=_WORK_BUCKETS_S,
)
SERIES_WRITE_ERRORS = Counter(
    "specwatch_series_write_errors",
    "Writes the time-series store refused or could not take (the outbox keeps their points).",
    ["backend"],
)

for _backend in ("embedded", "influxdb"):  # at 0 from the start, so that rate() sees the first
    SERIES_WRITE_ERRORS.labels(_backend)

# (method, route, status) -> its counter and histogram children: ``labels()`` takes a lock
# and builds a key on every call; this is one dict lookup on the request path.
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request.  ``route`` is a route template (or "unmatched"), never a
    raw path: each distinct value is a time series."""
    if method not in _METHODS:
        method = "other"
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        children = _request_children[key] = (
            HTTP_REQUESTS.labels(method, route, str(status)),
            HTTP_REQUEST_SECONDS.labels(method, route),
        )
    children[0].inc()
    children[1].observe(seconds)


def record_ingest(jobs: int, measurements: int) -> None:
    """Count stored jobs and their measurements (not the replays of a job already stored)."""
    JOBS_INGESTED.inc(jobs)
    MEASUREMENTS_INGESTED.inc(measurements)


def observe_detection(seconds: float) -> None:
    """Time one detection pass (one package and context: one read, one write)."""
    DETECTION_SECONDS.observe(seconds)


def observe_series_write(backend: str, seconds: float, *, failed: bool = False) -> None:
    """Time one write to the series store; ``failed``: it raised (counted as an error)."""
    SERIES_WRITE_SECONDS.labels(backend).observe(seconds)
    if failed:
        SERIES_WRITE_ERRORS.labels(backend).inc()


def multiprocess_dir() -> str | None:
    """The directory of multi-process mode, or None (one process: the default registry).

    prometheus_client's own variable (it reads it at import to choose where values live),
    not a Specwatch setting: read here the same way, so that the two never disagree.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Scrape(Collector):
    """What one scrape shows: the process's (or all workers') metrics, then ``extra``."""

    def __init__(self, extra: Iterable[Metric]) -> None:
        directory = multiprocess_dir()
        self._base: Collector = REGISTRY
        if directory is not None:
            # Read per scrape: the files of every worker, as they are now.  (The ignore:
            # prometheus_client leaves this constructor unannotated.)
            self._base = MultiProcessCollector(None, directory)  # type: ignore[no-untyped-call]
        self._extra = list(extra)

    def collect(self) -> Iterator[Metric]:
        yield from self._base.collect()
        yield from self._extra


def backlog_gauges(
    *, outbox_pending: int, outbox_oldest_age_s: float, alerts_unsent: int, detection_pending: int
) -> list[Metric]:
    """The backlog of every process, as read from the database for one scrape."""
    values = (
        (
            "specwatch_outbox_pending_jobs",
            "Jobs whose points wait for the series store.",
            outbox_pending,
        ),
        (
            "specwatch_outbox_oldest_age_seconds",
            "Seconds since the oldest job waiting for the series store was ingested (0: none).",
            outbox_oldest_age_s,
        ),
        (
            "specwatch_alert_notifications_pending",
            "Alert notifications neither delivered nor refused for good.",
            alerts_unsent,
        ),
        ("specwatch_detection_pending", "Series queued for change detection.", detection_pending),
    )
    found: list[Metric] = []
    for name, documentation, value in values:
        gauge = GaugeMetricFamily(name, documentation)
        gauge.add_metric([], float(value))
        found.append(gauge)
    return found


def exposition(accept: str, extra: Iterable[Metric] = ()) -> tuple[bytes, str]:
    """The body and content type of a scrape (Prometheus text, or OpenMetrics when the
    ``Accept`` header asks for it), with ``extra`` metrics read for this scrape."""
    encode, content_type = choose_encoder(accept)
    return encode(_Scrape(extra)), content_type
