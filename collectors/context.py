"""The CI context of a build, for the ``meta`` of the jobs it uploads.

``detect_context(environ)`` reads GitHub Actions, GitLab CI, Buildkite or Jenkins variables
(the first whose marker is set), then fills what they lack from ``git`` in the work tree: the
repository, commit and branch, and the merge base of a pull request with its target branch.
Outside CI, git alone gives the context.  What cannot be found becomes a warning, never an
error.  ``.meta()`` gives the keys the server reads (``specwatch.metrics.jobs.parse_context``);
on Jenkins, ``meta.env`` is dispatch_verify's (``lsst.verify.metadata.jenkinsci``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from specwatch.metrics.limits import INT32_MAX

from .ci_variables import CI_READERS, OBJECT_ID, CISystem
from .gitrepo import GitCheckout

# The keys of ``meta`` the server reads, in the order ``describe`` shows them.
META_KEYS = (
    "repository",
    "commit",
    "branch",
    "pr",
    "pr_url",
    "build_url",
    "base_commit",
    "merge_base",
    "ci_name",
    "ci_id",
    "time",
    "dataset",
    "instrument",
    "filter",
)


@dataclass(frozen=True)
class CIContext:
    """What is known of a build: ``None`` (or empty) where it could not be found."""

    ci: CISystem = "none"
    repository: str | None = None
    commit: str | None = None
    branch: str | None = None
    pr: int | None = None
    pr_url: str | None = None
    build_url: str | None = None
    base_commit: str | None = None  # the target branch's commit the CI compared against
    merge_base: str | None = None  # where the PR branched off its target
    ci_name: str | None = None  # the pipeline (workflow, job), stable from build to build
    ci_id: str | None = None  # this run of it
    time: str | None = None  # ISO 8601, when the context was detected
    dataset: str | None = None
    instrument: str | None = None
    filter: str | None = None
    env: Mapping[str, Any] | None = None  # dispatch_verify's ``meta.env`` (Jenkins)
    target_branch: str | None = None  # the PR's target: the baseline of a comparison
    is_fork: bool = False
    warnings: tuple[str, ...] = ()

    def meta(self) -> dict[str, Any]:
        """The ``meta`` keys that were found (``pr`` an int, ``env`` an object)."""
        meta = {key: getattr(self, key) for key in META_KEYS if getattr(self, key) is not None}
        if self.env:
            meta["env"] = dict(self.env)
        return meta

    def describe(self) -> list[tuple[str, str]]:
        """``(key, value)`` rows for a person: the CI, what ``meta`` gets, the PR's target."""
        rows: list[tuple[str, str]] = [("ci", self.ci)]
        rows += [(key, str(value)) for key, value in self.meta().items() if key != "env"]
        rows += [(f"env.{key}", str(value)) for key, value in (self.env or {}).items()]
        if self.target_branch is not None:
            rows.append(("target_branch", self.target_branch))
        if self.pr is not None:
            rows.append(("fork", "yes" if self.is_fork else "no"))
        return rows


def detect_context(
    environ: Mapping[str, str],
    cwd: Path | None = None,
    *,
    git: bool = True,
    now: datetime | None = None,
) -> CIContext:
    """The build context from CI variables in ``environ``, completed by git in ``cwd``.

    ``git=False`` runs no ``git`` (the context is then the CI variables' alone).  ``time`` is
    ``now`` when given (also dispatch_verify's ``env.date`` on Jenkins), else the build's
    creation time where the CI says it (GitLab), else unset: the clock is not read, so that
    the same job uploaded twice is the same body, which the server stores once.
    """
    warnings: list[str] = []
    ci: CISystem = "none"
    values: dict[str, Any] = {}
    for name, marker, read in CI_READERS:
        if marker(environ):
            ci, values = name, read(environ, warnings)
            break
    stamp = now.astimezone(UTC).isoformat() if now else None
    if stamp is None and ci == "gitlab":
        stamp = environ.get("CI_PIPELINE_CREATED_AT") or None
    if ci == "jenkins" and stamp:
        values["env"] = {**values["env"], "date": stamp}
    checkout = GitCheckout(cwd or Path.cwd(), environ, warnings) if git else None
    if checkout is not None and checkout.usable:
        _fill_from_git(values, checkout, warnings)
        ci = "git" if ci == "none" else ci
    elif ci == "none" and not git:
        warnings.append("no CI system detected and git not asked: no repository or commit")
    values["pr"] = _pr_number(values.get("pr"), warnings)
    if values.get("pr") is None:
        values.pop("pr_url", None)
    for key in ("repository", "commit"):
        if not values.get(key):
            warnings.append(f"no {key} found")
    if values.get("commit") and not values.get("branch"):
        warnings.append("no branch found (a detached HEAD, or a tag build)")
    known = {f.name for f in fields(CIContext)}
    return CIContext(
        ci=ci,
        time=stamp,
        warnings=tuple(warnings),
        **{key: value for key, value in values.items() if key in known and value is not None},
    )


def _pr_number(value: Any, warnings: list[str]) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(str(value).strip().lstrip("#"))
    except ValueError:
        number = 0
    if isinstance(value, bool) or not 1 <= number <= INT32_MAX:
        warnings.append(f"pull request {str(value)[:40]!r} is not a positive number: left out")
        return None
    return number


def _fill_from_git(values: dict[str, Any], checkout: GitCheckout, warnings: list[str]) -> None:
    """Fill the repository, commit, branch and merge base the CI variables did not give."""
    values["repository"] = values.get("repository") or checkout.origin_url()
    head = checkout.commit()
    merge_commit = values.pop("merge_commit", None)
    if not values.get("commit"):
        # A GitHub PR checkout is the merge commit: its second parent is the PR's head.
        second = checkout.commit("HEAD^2") if head and head == merge_commit else None
        values["commit"] = second or (head if head != merge_commit else None)
    if not values.get("branch") and values.get("pr") is None:
        # Not for a PR: its checkout's local branch is the CI's own (``PR-12``), not the PR's.
        values["branch"] = checkout.branch()
    target = values.get("target_branch")
    if target:
        commit = values.get("commit")
        start = commit if commit and OBJECT_ID.match(commit) else "HEAD"
        values["merge_base"] = checkout.merge_base(start, target) or values.get("merge_base")
        if not values["merge_base"]:
            warnings.append(
                f"no merge base with {target!r}: fetch the target branch and enough history "
                "(a shallow clone has neither; e.g. actions/checkout with fetch-depth: 0)"
            )
