"""The metric trend page's use cases: a metric's history with its context, and the culprit
candidates of a change point.

``TrendService.trend`` reads, with bounded queries, one series (a metric on a branch of one
dataset, filter and instrument) with each build's context (commit, CI build, PR), the builds
of that context that did not measure it (gaps), the pull-request builds of the same context,
other series overlaid, the change points, the excluded jobs and the specifications that apply.
``TrendService.culprits`` says what changed between the builds around a change point: the
commit range and the packages whose version or commit moved (from the jobs' ``meta.packages``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from specwatch.exceptions import InvalidInputError, NotFoundError, UnitConversionError
from specwatch.metrics.model import Metric, Specification, split_metric_name
from specwatch.metrics.records import ChangeFilter, ChangeRecord, StoredJob, package_version
from specwatch.metrics.verification import query_matches, threshold_in
from specwatch.store.changes import ChangeStore
from specwatch.store.definitions import DefinitionStore
from specwatch.store.jobs import JobStore
from specwatch.store.series.base import Series, SeriesQuery, TimeSeriesStore
from specwatch.store.trend_queries import TrendQueries, WindowBuilds

from .delivery import point_time_ns
from .metrics import to_ns
from .verification import job_metadata

DEFAULT_LIMIT = 2000
MAX_LIMIT = 20_000
MAX_OVERLAYS = 4
MAX_PRS = 30  # pull requests overlaid, newest first
PR_POINTS = 200  # builds per pull request
RECENT_JOBS = 2000  # branch builds whose contexts are offered as choices
MAX_CHANGES = 200
MAX_EXCLUDED = 100_000  # exclusions read around a window's builds
_TEXT_CHARS = 200  # a package's name, version or sha as shown
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, order=True)
class SeriesSelection:
    """One context of a series: dataset, filter and instrument (``''`` when unset)."""

    dataset: str = ""
    filter: str = ""
    instrument: str = ""

    @classmethod
    def parse(cls, text: str) -> SeriesSelection:
        """``dataset|filter|instrument`` (trailing parts may be left out)."""
        parts = [*text.split("|")[:3], "", ""]
        return cls(parts[0], parts[1], parts[2])

    @property
    def key(self) -> str:
        return f"{self.dataset}|{self.filter}|{self.instrument}"

    @property
    def label(self) -> str:
        return " · ".join(part for part in (self.dataset, self.filter, self.instrument) if part)

    def tags(self) -> dict[str, str]:
        return {"dataset": self.dataset, "filter": self.filter, "instrument": self.instrument}


@dataclass(frozen=True, slots=True)
class TrendRequest:
    """What the page asks for; ``None`` fields take the metric's most recent build's."""

    dataset: str | None = None
    filter: str | None = None
    instrument: str | None = None
    branch: str = "main"
    overlays: tuple[str, ...] = ()  # ``dataset|filter[|instrument]``
    prs: bool = True
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    change_id: int | None = None  # without a dataset: the selection of that change's series


@dataclass(slots=True)
class TrendPoints:
    """Builds of one series, oldest first, as columns; ``value`` None is a NaN value or a
    build of the context that did not measure the metric (``missing``)."""

    selection: SeriesSelection
    branch: str
    time_ns: list[int] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    job_id: list[int] = field(default_factory=list)
    commit: list[str | None] = field(default_factory=list)
    branch_of: list[str | None] = field(default_factory=list)
    pr: list[int | None] = field(default_factory=list)
    ci: list[str | None] = field(default_factory=list)  # "ci_hsc #2496"
    ci_url: list[str | None] = field(default_factory=list)
    excluded: list[bool] = field(default_factory=list)
    missing: list[bool] = field(default_factory=list)
    truncated: bool = False  # older builds of the window were left out (the limit)

    def __len__(self) -> int:
        return len(self.time_ns)


@dataclass(frozen=True, slots=True)
class SpecThreshold:
    """A specification that applies to the series, its threshold in the metric's unit."""

    name: str
    level: str | None
    operator: str
    threshold: float


@dataclass(frozen=True, slots=True)
class SeriesChoice:
    selection: SeriesSelection
    latest_ns: int  # the newest point's time


@dataclass(frozen=True, slots=True)
class Trend:
    metric: Metric
    selection: SeriesSelection
    branch: str
    main: TrendPoints
    prs: TrendPoints
    overlays: tuple[TrendPoints, ...]
    specs: tuple[SpecThreshold, ...]
    changes: tuple[ChangeRecord, ...]  # newest first
    choices: tuple[SeriesChoice, ...]  # newest first
    branches: tuple[str, ...]
    limit: int
    truncated: bool  # the main series holds ``limit`` points: older ones are left out


@dataclass(frozen=True, slots=True)
class PackageChange:
    name: str
    change: str  # changed | added | removed
    version_before: str | None
    version_after: str | None
    sha_before: str | None
    sha_after: str | None
    url: str | None  # the package at the sha after (before, when removed), http(s) only
    compare_url: str | None  # GitHub's compare view of the two shas


@dataclass(frozen=True, slots=True)
class Culprits:
    """What changed between the last build before a change point and the first after it."""

    change: ChangeRecord
    before: StoredJob | None
    after: StoredJob | None
    repository: str | None
    compare_url: str | None
    packages: tuple[PackageChange, ...]
    unchanged: int  # packages with the same version and sha on both sides
    known: bool  # both builds carry meta.packages


def time_of(time_ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=time_ns // 1000)


class TrendService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], series: TimeSeriesStore
    ) -> None:
        self._sessionmaker = sessionmaker
        self._series = series

    async def trend(self, name: str, request: TrendRequest) -> Trend:
        """The page's data.  Raises ``NotFoundError`` (unknown metric or change) and
        ``InvalidInputError`` (a limit outside 1…``MAX_LIMIT``, a bad window)."""
        if not 1 <= request.limit <= MAX_LIMIT:
            raise InvalidInputError(
                f"limit must be between 1 and {MAX_LIMIT:,}", location=["query", "limit"]
            )
        since_ns = to_ns(request.since) if request.since else None
        until_ns = to_ns(request.until, location="until") if request.until else None
        package, short = split_metric_name(name)
        async with self._sessionmaker() as session:
            definitions = DefinitionStore(session)
            metric = await definitions.get_metric(name)
            if metric is None:
                raise NotFoundError(f"no metric {name!r}", location=["path", "name"])
            all_specs = await definitions.specs_for_metric(name)
            contexts = await TrendQueries(session).recent_contexts(jobs=RECENT_JOBS)
            change = None
            if request.change_id is not None and request.dataset is None:
                change = await ChangeStore(session).get(request.change_id)
                if change is not None and change.key.metric != name:
                    change = None  # another metric's change: its culprits, this metric's view
        branch = change.key.branch if change is not None else request.branch
        candidates = sorted({SeriesSelection(*c[1:]) for c in contexts if c[0] == branch})
        probes = await self._series.query_many(
            [
                SeriesQuery(package, short, {"branch": branch}, limit=1),
                *(
                    SeriesQuery(package, short, {**c.tags(), "branch": branch}, limit=1)
                    for c in candidates
                ),
            ]
        )
        choices = {
            c: SeriesChoice(c, probe.time_ns[-1])
            for c, probe in zip(candidates, probes[1:], strict=True)
            if len(probe)
        }
        if len(probes[0]) and not any(
            c.latest_ns == probes[0].time_ns[-1] for c in choices.values()
        ):
            async with self._sessionmaker() as session:
                newest = await TrendQueries(session).context_of(probes[0].job_id[-1])
            if newest is not None:
                found = SeriesSelection(*newest)
                choices[found] = SeriesChoice(found, probes[0].time_ns[-1])
        ordered = tuple(sorted(choices.values(), key=lambda c: (-c.latest_ns, c.selection)))
        if change is not None:
            selection = SeriesSelection(
                change.key.dataset, change.key.filter, change.key.instrument
            )
        else:
            selection = _resolve(request.dataset, request.filter, request.instrument, ordered)
        main = await self._points(
            metric, selection, branch, since_ns, until_ns, request.limit, prs=False
        )
        start_ns = main.time_ns[0] if len(main) else since_ns
        overlays: list[TrendPoints] = []
        for text in dict.fromkeys(request.overlays):
            wanted = SeriesSelection.parse(text)
            other = _resolve(
                wanted.dataset, wanted.filter or None, wanted.instrument or None, ordered
            )
            if other != selection and len(overlays) < MAX_OVERLAYS:
                overlays.append(
                    await self._points(
                        metric, other, branch, start_ns, until_ns, request.limit, prs=False
                    )
                )
        prs = TrendPoints(selection, branch)
        if request.prs:
            prs = await self._points(
                metric, selection, branch, start_ns, until_ns, PR_POINTS, prs=True
            )
        async with self._sessionmaker() as session:
            changes = await ChangeStore(session).search(
                ChangeFilter(
                    metric=name,
                    dataset=selection.dataset,
                    branch=branch,
                    since=time_of(start_ns) if start_ns is not None else None,
                ),
                after=None,
                limit=MAX_CHANGES,
            )
            latest = await JobStore(session).get(main.job_id[-1]) if len(main) else None
        changes = [
            c
            for c in changes
            if c.key.filter == selection.filter and c.key.instrument == selection.instrument
        ]
        return Trend(
            metric=metric,
            selection=selection,
            branch=branch,
            main=main,
            prs=prs,
            overlays=tuple(overlays),
            specs=applicable_specs(metric, all_specs, latest, selection, branch),
            changes=tuple(changes),
            choices=ordered,
            branches=tuple(sorted({c[0] for c in contexts} | {branch}, key=_branch_order)),
            limit=request.limit,
            truncated=main.truncated,
        )

    async def _points(
        self,
        metric: Metric,
        selection: SeriesSelection,
        branch: str,
        since_ns: int | None,
        until_ns: int | None,
        limit: int,
        *,
        prs: bool,
    ) -> TrendPoints:
        """One series with its builds' context; with ``prs``, the pull-request builds of the
        selection (each pull request's last ``limit``) instead of the branch's."""
        tags = selection.tags()
        older = False
        async with self._sessionmaker() as session:
            queries = TrendQueries(session)
            if prs:
                builds = await queries.window_builds(
                    **tags,
                    branch=None,
                    since=time_of(since_ns) if since_ns is not None else None,
                    until=time_of(until_ns) if until_ns is not None else None,
                    limit=MAX_PRS * limit,
                )
                numbers = list(dict.fromkeys(pr for pr in builds.pr if pr is not None))
                found = await self._series.query_many(
                    [
                        SeriesQuery(
                            metric.package,
                            metric.name,
                            {**tags, "pr": str(number)},
                            since_ns,
                            until_ns,
                            limit,
                        )
                        for number in numbers[:MAX_PRS]
                    ]
                )
                series = _merge(found)
            else:
                # One more than asked: whether older builds were left out.
                series = await self._series.query(
                    SeriesQuery(
                        metric.package,
                        metric.name,
                        {**tags, "branch": branch},
                        since_ns,
                        until_ns,
                        limit + 1,
                    )
                )
                if len(series) > limit:
                    older = True
                    for column in (series.time_ns, series.value, series.job_id, series.commit):
                        del column[0]
                builds = WindowBuilds()
                if len(series):  # the builds of the window, for their context and the gaps
                    builds = await queries.window_builds(
                        **tags,
                        branch=branch,
                        since=time_of(series.time_ns[0]) - timedelta(microseconds=1),
                        until=time_of(series.time_ns[-1]) + timedelta(microseconds=1),
                        limit=2 * len(series) + 1000,
                    )
            known = set(builds.id)
            unknown = [job_id for job_id in series.job_id if job_id not in known]
            if unknown:  # beyond the window's bound: by id
                more = await queries.builds(unknown)
                for name in WindowBuilds.__slots__:
                    getattr(builds, name).extend(getattr(more, name))
            excluded: set[int] = set()
            if len(series):
                excluded = await queries.excluded_between(
                    min(series.job_id), max(series.job_id), limit=MAX_EXCLUDED
                )
        points = _columns(selection, branch, series, builds, excluded, gaps=not prs)
        points.truncated = older
        return points

    async def culprits(self, change_id: int) -> Culprits:
        """The commit range and the package changes around a change point.

        Raises ``NotFoundError`` when there is no such change.
        """
        async with self._sessionmaker() as session:
            change = await ChangeStore(session).get(change_id)
            if change is None:
                raise NotFoundError(f"no change {change_id}", location=["query", "change"])
            ids = [i for i in (change.previous_job_id, change.job_id) if i is not None]
            jobs = {job.id: job for job in await JobStore(session).get_many(ids)}
        before = jobs.get(change.previous_job_id) if change.previous_job_id else None
        after = jobs.get(change.job_id)
        repository = next(
            (j.context.repository for j in (after, before) if j and j.context.repository), None
        )
        old = (before.packages if before else None) or {}
        new = (after.packages if after else None) or {}
        changes, unchanged = package_changes(old, new)
        return Culprits(
            change=change,
            before=before,
            after=after,
            repository=repository,
            compare_url=compare_url(repository, change.commit_before, change.commit_after),
            packages=tuple(changes),
            unchanged=unchanged,
            known=bool(old) and bool(new),
        )


def _resolve(
    dataset: str | None,
    filter_: str | None,
    instrument: str | None,
    choices: Sequence[SeriesChoice],
) -> SeriesSelection:
    """The newest choice that agrees with the given parts; else the parts as given."""
    for choice in choices:
        s = choice.selection
        if all(
            wanted is None or wanted == have
            for wanted, have in (
                (dataset, s.dataset),
                (filter_, s.filter),
                (instrument, s.instrument),
            )
        ):
            return s
    return SeriesSelection(dataset or "", filter_ or "", instrument or "")


def _branch_order(branch: str) -> tuple[int, str]:
    return (0 if branch == "main" else 1, branch)


def _merge(parts: Sequence[Series]) -> Series:
    rows = sorted(
        (t, j, v, c)
        for part in parts
        for t, v, j, c in zip(part.time_ns, part.value, part.job_id, part.commit, strict=True)
    )
    return Series(
        time_ns=[r[0] for r in rows],
        value=[r[2] for r in rows],
        job_id=[r[1] for r in rows],
        commit=[r[3] for r in rows],
    )


def _columns(
    selection: SeriesSelection,
    branch: str,
    series: Series,
    builds: WindowBuilds,
    excluded: set[int],
    *,
    gaps: bool,
) -> TrendPoints:
    """The points with their builds' context; with ``gaps``, the builds of the same pipeline
    (CI name) in the window that have no point are added as missing values."""
    times, values, ids, commits = series.time_ns, series.value, series.job_id, series.commit
    row_of = {job_id: i for i, job_id in enumerate(builds.id)}
    missing = [False] * len(times)
    if gaps and len(series):
        have = set(ids)
        pipelines = {builds.ci_name[row_of[i]] for i in have if i in row_of}
        extra = [
            row
            for job_id, row in row_of.items()
            if job_id not in have and builds.ci_name[row] in pipelines
        ]
        if extra:
            rows = sorted(
                [
                    *zip(times, values, ids, commits, missing, strict=True),
                    *(
                        (
                            point_time_ns(builds.id[r], builds.time_ns[r]),
                            None,
                            builds.id[r],
                            builds.commit[r],
                            True,
                        )
                        for r in extra
                    ),
                ],
                key=lambda row: (row[0], row[2]),
            )
            times, values, ids = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
            commits, missing = [r[3] for r in rows], [r[4] for r in rows]
    rows_of_points = [row_of.get(job_id) for job_id in ids]

    def column(values: list[Any]) -> list[Any]:
        return [None if r is None else values[r] for r in rows_of_points]

    ci = [
        " #".join(part for part in (name, number) if part) or None
        for name, number in zip(column(builds.ci_name), column(builds.ci_id), strict=True)
    ]
    return TrendPoints(
        selection,
        branch,
        time_ns=list(times),
        value=list(values),
        job_id=list(ids),
        commit=list(commits),
        branch_of=column(builds.branch),
        pr=column(builds.pr),
        ci=ci,
        ci_url=column(builds.ci_url),
        excluded=[job_id in excluded for job_id in ids] if excluded else [False] * len(ids),
        missing=missing,
    )


def applicable_specs(
    metric: Metric,
    specs: Sequence[Specification],
    latest: StoredJob | None,
    selection: SeriesSelection,
    branch: str,
) -> tuple[SpecThreshold, ...]:
    """The specs whose metadata query matches the series' newest build (or, with no build,
    its context), one per level and threshold (the most specific spec's name)."""
    if latest is not None:
        metadata: dict[str, Any] = job_metadata(latest)
    else:
        metadata = {k: v for k, v in {**selection.tags(), "branch": branch}.items() if v}
    found: dict[tuple[str | None, str, float], SpecThreshold] = {}
    for spec in sorted(specs, key=lambda s: (-len(s.metadata_query), s.full_name)):
        if not query_matches(spec.metadata_query, metadata):
            continue
        try:
            threshold = threshold_in(spec, metric.unit)
        except UnitConversionError:
            continue
        level = spec.level.value if spec.level else None
        key = (level, spec.operator, round(threshold, 12))
        found.setdefault(key, SpecThreshold(spec.full_name, level, spec.operator, threshold))
    rank = {"minimum": 1, "design": 2, "stretch": 3}
    return tuple(sorted(found.values(), key=lambda s: (rank.get(s.level or "", 0), s.threshold)))


# --- culprit candidates ----------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)[:_TEXT_CHARS]


def github_base(url: str | None) -> str | None:
    """``https://github.com/owner/name`` of a GitHub repository URL (https or ssh form)."""
    if not url:
        return None
    url = url.strip()
    if url.startswith("git@github.com:"):
        url = "https://github.com/" + url.removeprefix("git@github.com:")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in (
        "github.com",
        "www.github.com",
    ):
        return None
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) < 2:
        return None
    return f"https://github.com/{parts[0]}/{parts[1].removesuffix('.git')}"


def compare_url(repository: str | None, before: str | None, after: str | None) -> str | None:
    """GitHub's compare view of ``before...after`` (None for other hosts or a missing sha)."""
    base = github_base(repository)
    if base is None or not before or not after or before == after:
        return None
    return f"{base}/compare/{before}...{after}"


def commit_url(repository: str | None, sha: str | None) -> str | None:
    """A link to a package's repository at a sha: GitHub's commit page; else the http(s)
    repository URL itself."""
    base = github_base(repository)
    if base is not None and sha:
        return f"{base}/commit/{sha}"
    if repository and urlparse(repository.strip()).scheme in ("http", "https"):
        return repository.strip()
    return None


def _package_fields(name: str, entry: Any) -> tuple[str | None, str | None, str | None]:
    """(version, sha, repository URL) of a ``meta.packages`` entry."""
    found = package_version(name, entry)
    return _text(found.version), _text(found.sha), _text(found.url)


def package_changes(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[list[PackageChange], int]:
    """Packages whose version or sha differ (changed), that appear (added) or go (removed);
    and how many stayed the same.  Sorted: changed, added, removed, then by name."""
    found: list[PackageChange] = []
    unchanged = 0
    for name in sorted(set(before) | set(after)):
        old = _package_fields(name, before[name]) if name in before else None
        new = _package_fields(name, after[name]) if name in after else None
        if old is not None and new is not None:
            if old[:2] == new[:2]:
                unchanged += 1
                continue
            repository = new[2] or old[2]
            found.append(
                PackageChange(
                    _text(name) or "",
                    "changed",
                    old[0],
                    new[0],
                    old[1],
                    new[1],
                    commit_url(repository, new[1]),
                    compare_url(repository, old[1], new[1]),
                )
            )
        elif new is not None:
            found.append(
                PackageChange(
                    _text(name) or "",
                    "added",
                    None,
                    new[0],
                    None,
                    new[1],
                    commit_url(new[2], new[1]),
                    None,
                )
            )
        elif old is not None:
            found.append(
                PackageChange(
                    _text(name) or "",
                    "removed",
                    old[0],
                    None,
                    old[1],
                    None,
                    commit_url(old[2], old[1]),
                    None,
                )
            )
    order = {"changed": 0, "added": 1, "removed": 2}
    found.sort(key=lambda p: (order[p.change], p.name))
    return found, unchanged
