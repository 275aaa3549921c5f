"""What each CI system's environment variables say about the build.

One reader per system, each returning the ``CIContext`` fields it found (raw: ``pr`` as given),
plus ``merge_commit`` for a GitHub PR whose head is unknown.  ``CI_READERS`` holds them with
the marker variable that says the build runs there, in the order they are tried.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from .gitrepo import repository_url

CISystem = Literal["github", "gitlab", "jenkins", "buildkite", "git", "none"]
OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")  # SHA-1 or SHA-256, in full


def _get(environ: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set to something other than blanks."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


# --- GitHub Actions ---------------------------------------------------------------------------


def _github(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    server = (_get(environ, "GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    slug = _get(environ, "GITHUB_REPOSITORY")
    run_id, attempt = _get(environ, "GITHUB_RUN_ID"), _get(environ, "GITHUB_RUN_ATTEMPT")
    values: dict[str, Any] = {
        "repository": repository_url(f"{server}/{slug}") if slug else None,
        "ci_name": _get(environ, "GITHUB_WORKFLOW"),
        "ci_id": run_id,
    }
    if slug and run_id:
        attempts = f"/attempts/{attempt}" if attempt else ""
        values["build_url"] = f"{server}/{slug}/actions/runs/{run_id}{attempts}"
    ref = _get(environ, "GITHUB_REF") or ""
    if _get(environ, "GITHUB_EVENT_NAME") in ("pull_request", "pull_request_target"):
        values.update(_github_pull_request(environ, values["repository"], warnings))
    else:
        values["commit"] = _get(environ, "GITHUB_SHA")
        if ref.startswith("refs/heads/"):
            values["branch"] = _get(environ, "GITHUB_REF_NAME") or ref.removeprefix("refs/heads/")
    return values


def _github_pull_request(
    environ: Mapping[str, str], repository: str | None, warnings: list[str]
) -> dict[str, Any]:
    """The PR of a ``pull_request`` event: its head, not the merge commit in ``GITHUB_SHA``."""
    event = _read_event(_get(environ, "GITHUB_EVENT_PATH"), warnings)
    pull = _object(event.get("pull_request"))
    head, base = _object(pull.get("head")), _object(pull.get("base"))
    ref_number = re.fullmatch(
        r"refs/pull/([^/]+)/(?:merge|head)", _get(environ, "GITHUB_REF") or ""
    )
    number = event.get("number") or pull.get("number") or (ref_number and ref_number[1])
    values: dict[str, Any] = {
        "pr": number,
        "commit": head.get("sha"),
        "branch": head.get("ref") or _get(environ, "GITHUB_HEAD_REF"),
        "target_branch": base.get("ref") or _get(environ, "GITHUB_BASE_REF"),
        "base_commit": base.get("sha"),
        "pr_url": pull.get("html_url") or (f"{repository}/pull/{number}" if repository else None),
    }
    if pull:
        head_repo, base_repo = _object(head.get("repo")), _object(base.get("repo"))
        # A deleted fork leaves ``head.repo`` null.
        values["is_fork"] = head_repo.get("full_name") != base_repo.get("full_name")
    if not values["commit"]:
        values["merge_commit"] = _get(environ, "GITHUB_SHA")
        warnings.append("no pull request head commit in the event: GITHUB_SHA is the merge commit")
    return values


def _read_event(path: str | None, warnings: list[str]) -> dict[str, Any]:
    if path is None:
        warnings.append("GITHUB_EVENT_PATH is not set: the pull request read from variables only")
        return {}
    try:
        event = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        warnings.append(f"cannot read the GitHub event {path}: {error}")
        return {}
    return _object(event)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --- GitLab CI --------------------------------------------------------------------------------


def _gitlab(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    project = _get(environ, "CI_MERGE_REQUEST_PROJECT_URL", "CI_PROJECT_URL")
    values: dict[str, Any] = {
        "repository": repository_url(project) if project else None,
        # A merged-results pipeline builds a merge commit; SOURCE_BRANCH_SHA is the MR's head.
        "commit": _get(environ, "CI_MERGE_REQUEST_SOURCE_BRANCH_SHA", "CI_COMMIT_SHA"),
        "build_url": _get(environ, "CI_PIPELINE_URL", "CI_JOB_URL"),
        "ci_name": _get(environ, "CI_JOB_NAME"),
        "ci_id": _get(environ, "CI_PIPELINE_ID", "CI_JOB_ID"),
    }
    iid = _get(environ, "CI_MERGE_REQUEST_IID")
    if iid is None:
        values["branch"] = _get(environ, "CI_COMMIT_BRANCH") or (
            None if _get(environ, "CI_COMMIT_TAG") else _get(environ, "CI_COMMIT_REF_NAME")
        )
        return values
    source = _get(environ, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
    target = _get(environ, "CI_MERGE_REQUEST_PROJECT_ID")
    values |= {
        "pr": iid,
        "pr_url": f"{values['repository']}/-/merge_requests/{iid}"
        if values["repository"]
        else None,
        "branch": _get(environ, "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
        "target_branch": _get(environ, "CI_MERGE_REQUEST_TARGET_BRANCH_NAME"),
        "base_commit": _get(environ, "CI_MERGE_REQUEST_TARGET_BRANCH_SHA"),
        "merge_base": _get(environ, "CI_MERGE_REQUEST_DIFF_BASE_SHA"),
        "is_fork": source is not None and target is not None and source != target,
    }
    return values


# --- Buildkite --------------------------------------------------------------------------------


def _buildkite(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    remote = _get(environ, "BUILDKITE_REPO")
    repository = repository_url(remote) if remote else None
    commit = _get(environ, "BUILDKITE_COMMIT")
    values: dict[str, Any] = {
        "repository": repository,
        # A build started by hand may say "HEAD": git resolves it.
        "commit": commit if commit and OBJECT_ID.match(commit) else None,
        "branch": _get(environ, "BUILDKITE_BRANCH"),
        "build_url": _get(environ, "BUILDKITE_BUILD_URL"),
        "ci_name": _get(environ, "BUILDKITE_PIPELINE_SLUG"),
        "ci_id": _get(environ, "BUILDKITE_BUILD_NUMBER", "BUILDKITE_BUILD_ID"),
    }
    number = _get(environ, "BUILDKITE_PULL_REQUEST")
    if number in (None, "false"):
        return values
    source = _get(environ, "BUILDKITE_PULL_REQUEST_REPO")
    values |= {
        "pr": number,
        "pr_url": _forge_pr_url(repository, number),
        "target_branch": _get(environ, "BUILDKITE_PULL_REQUEST_BASE_BRANCH"),
        "is_fork": bool(source) and repository_url(source or "") != repository,
    }
    return values


def _forge_pr_url(repository: str | None, number: str) -> str | None:
    """The page of PR ``number`` on GitHub or GitLab (other hosts: unknown)."""
    if repository is None:
        return None
    if repository.startswith("https://github.com/"):
        return f"{repository}/pull/{number}"
    if repository.startswith("https://gitlab."):
        return f"{repository}/-/merge_requests/{number}"
    return None


# --- Jenkins ----------------------------------------------------------------------------------


def _jenkins(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    """Jenkins (multibranch ``CHANGE_*`` for PRs) and dispatch_verify's ``meta.env``.

    dispatch_verify writes ``"unknown"`` for a missing variable; here a missing one is left
    out, else the server would read ``env.ci_dataset`` as a dataset named "unknown".
    """
    remote = _get(environ, "GIT_URL")
    refs = (_get(environ, "refs") or "").split()
    branch = _get(environ, "CHANGE_BRANCH", "GIT_LOCAL_BRANCH")
    if branch is None and (git_branch := _get(environ, "GIT_BRANCH")):
        branch = git_branch.removeprefix("refs/remotes/").removeprefix("origin/")
    if branch is None and _get(environ, "CHANGE_ID") is None:
        branch = _get(environ, "BRANCH_NAME") or (refs[0] if refs else None)
    values: dict[str, Any] = {
        "repository": repository_url(remote) if remote else None,
        "commit": _get(environ, "GIT_COMMIT"),
        "branch": branch,
        "pr": _get(environ, "CHANGE_ID"),
        "pr_url": _get(environ, "CHANGE_URL"),
        "target_branch": _get(environ, "CHANGE_TARGET"),
        "is_fork": _get(environ, "CHANGE_FORK") is not None,
        "build_url": _get(environ, "BUILD_URL"),
        "ci_name": _get(environ, "PRODUCT") or _jenkins_job(environ),
        "ci_id": _get(environ, "BUILD_ID", "BUILD_NUMBER"),
        "dataset": _get(environ, "dataset"),
    }
    env: dict[str, Any] = {
        "ci_id": _get(environ, "BUILD_ID"),
        "ci_name": _get(environ, "PRODUCT"),
        "ci_dataset": _get(environ, "dataset"),
        "ci_label": _get(environ, "label"),
        "ci_refs": " ".join(refs) or None,  # older dispatch_verify's key
        "ci_url": _get(environ, "BUILD_URL"),
    }
    values["env"] = {key: value for key, value in env.items() if value is not None} | {
        "status": 0,
        "env_name": "jenkins",
    }
    return values


def _jenkins_job(environ: Mapping[str, str]) -> str | None:
    """``JOB_NAME`` without a multibranch job's branch (``stack/PR-12`` → ``stack``)."""
    job, branch = _get(environ, "JOB_NAME"), _get(environ, "BRANCH_NAME")
    suffix = f"/{quote(branch, safe='')}" if branch else None
    if job and suffix and job.endswith(suffix):
        return job.removesuffix(suffix)
    return job


_Reader = Callable[[Mapping[str, str], list[str]], dict[str, Any]]
CI_READERS: tuple[tuple[CISystem, Callable[[Mapping[str, str]], bool], _Reader], ...] = (
    ("github", lambda env: env.get("GITHUB_ACTIONS") == "true", _github),
    ("gitlab", lambda env: env.get("GITLAB_CI") == "true", _gitlab),
    ("buildkite", lambda env: env.get("BUILDKITE") == "true", _buildkite),
    (
        "jenkins",
        lambda env: bool(
            env.get("JENKINS_URL")
            or env.get("JENKINS_HOME")
            or env.get("VERIFY_ENV") == "jenkins"
            or (env.get("BUILD_URL") and env.get("JOB_NAME"))
        ),
        _jenkins,
    ),
)
