"""CI context detection: GitHub, GitLab, Jenkins, Buildkite variables, and real git repositories."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from specwatch.collectors.context import CIContext, detect_context
from specwatch.collectors.context_cli import context_command
from specwatch.collectors.gitrepo import repository_url

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
TIME = "2024-05-06T07:08:09+00:00"
HEAD = "1" * 40
MERGE = "2" * 40
BASE = "3" * 40
DIFF_BASE = "4" * 40
REPO = "https://github.com/lsst/pipe_tasks"


def detect(environ: dict[str, str]) -> CIContext:
    return detect_context(environ, git=False, now=NOW)


# --- GitHub Actions ---------------------------------------------------------------------------


def github_env(tmp_path: Path, event_name: str, event: dict[str, Any]) -> dict[str, str]:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    pull = event_name == "pull_request"
    return {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "lsst/pipe_tasks",
        "GITHUB_WORKFLOW": "kpms",
        "GITHUB_RUN_ID": "9876543210",
        "GITHUB_RUN_ATTEMPT": "2",
        "GITHUB_EVENT_NAME": event_name,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_SHA": MERGE if pull else HEAD,
        "GITHUB_REF": "refs/pull/42/merge" if pull else "refs/heads/main",
        "GITHUB_REF_NAME": "42/merge" if pull else "main",
        "GITHUB_HEAD_REF": "tickets/DM-1234" if pull else "",
        "GITHUB_BASE_REF": "main" if pull else "",
    }


def pull_request_event(head_repo: str | None) -> dict[str, Any]:
    return {
        "action": "synchronize",
        "number": 42,
        "pull_request": {
            "number": 42,
            "html_url": f"{REPO}/pull/42",
            "head": {
                "ref": "tickets/DM-1234",
                "sha": HEAD,
                "repo": None if head_repo is None else {"full_name": head_repo},
            },
            "base": {"ref": "main", "sha": BASE, "repo": {"full_name": "lsst/pipe_tasks"}},
        },
    }


GITHUB_PR_META = {
    "repository": REPO,
    "commit": HEAD,
    "branch": "tickets/DM-1234",
    "pr": 42,
    "pr_url": f"{REPO}/pull/42",
    "build_url": f"{REPO}/actions/runs/9876543210/attempts/2",
    "base_commit": BASE,
    "ci_name": "kpms",
    "ci_id": "9876543210",
    "time": TIME,
}


def test_github_pull_request_uses_the_head_not_the_merge_commit(tmp_path: Path) -> None:
    context = detect(github_env(tmp_path, "pull_request", pull_request_event("lsst/pipe_tasks")))
    assert context.ci == "github"
    assert context.meta() == GITHUB_PR_META
    assert (context.target_branch, context.is_fork) == ("main", False)
    assert context.warnings == ()


@pytest.mark.parametrize("head_repo", ["contributor/pipe_tasks", None])
def test_github_fork_pull_request(tmp_path: Path, head_repo: str | None) -> None:
    context = detect(github_env(tmp_path, "pull_request", pull_request_event(head_repo)))
    assert context.meta() == GITHUB_PR_META
    assert context.is_fork


def test_github_push(tmp_path: Path) -> None:
    event = {"ref": "refs/heads/main", "before": BASE, "after": HEAD}
    context = detect(github_env(tmp_path, "push", event))
    assert context.meta() == {
        "repository": REPO,
        "commit": HEAD,
        "branch": "main",
        "build_url": f"{REPO}/actions/runs/9876543210/attempts/2",
        "ci_name": "kpms",
        "ci_id": "9876543210",
        "time": TIME,
    }
    assert (context.target_branch, context.pr, context.warnings) == (None, None, ())


def test_github_tag_build_has_no_branch(tmp_path: Path) -> None:
    env = github_env(tmp_path, "push", {}) | {
        "GITHUB_REF": "refs/tags/v1.0",
        "GITHUB_REF_NAME": "v1.0",
    }
    context = detect(env)
    assert context.branch is None
    assert context.warnings == ("no branch found (a detached HEAD, or a tag build)",)


def test_github_pull_request_without_event_file(tmp_path: Path) -> None:
    env = github_env(tmp_path, "pull_request", {})
    env["GITHUB_EVENT_PATH"] = str(tmp_path / "missing.json")
    context = detect(env)
    assert context.meta() == {
        "repository": REPO,
        "branch": "tickets/DM-1234",
        "pr": 42,
        "pr_url": f"{REPO}/pull/42",
        "build_url": f"{REPO}/actions/runs/9876543210/attempts/2",
        "ci_name": "kpms",
        "ci_id": "9876543210",
        "time": TIME,
    }
    assert context.target_branch == "main"
    assert any("cannot read the GitHub event" in w for w in context.warnings)
    assert "no commit found" in context.warnings


# --- GitLab CI --------------------------------------------------------------------------------

GITLAB_PROJECT = "https://gitlab.example.org/lsst/pipe_tasks"
GITLAB_COMMON = {
    "CI": "true",
    "GITLAB_CI": "true",
    "CI_SERVER_URL": "https://gitlab.example.org",
    "CI_PROJECT_URL": GITLAB_PROJECT,
    "CI_PROJECT_ID": "101",
    "CI_COMMIT_SHA": HEAD,
    "CI_PIPELINE_ID": "5550",
    "CI_PIPELINE_URL": f"{GITLAB_PROJECT}/-/pipelines/5550",
    "CI_JOB_ID": "991",
    "CI_JOB_URL": f"{GITLAB_PROJECT}/-/jobs/991",
    "CI_JOB_NAME": "kpms",
}


def test_gitlab_merge_request_pipeline_from_a_fork() -> None:
    env = GITLAB_COMMON | {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_COMMIT_REF_NAME": "tickets/DM-1234",
        "CI_MERGE_REQUEST_IID": "17",
        "CI_MERGE_REQUEST_PROJECT_ID": "101",
        "CI_MERGE_REQUEST_PROJECT_URL": GITLAB_PROJECT,
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "202",
        "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "tickets/DM-1234",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": DIFF_BASE,
    }
    context = detect(env)
    assert context.ci == "gitlab"
    assert context.meta() == {
        "repository": GITLAB_PROJECT,
        "commit": HEAD,
        "branch": "tickets/DM-1234",
        "pr": 17,
        "pr_url": f"{GITLAB_PROJECT}/-/merge_requests/17",
        "build_url": f"{GITLAB_PROJECT}/-/pipelines/5550",
        "merge_base": DIFF_BASE,
        "ci_name": "kpms",
        "ci_id": "5550",
        "time": TIME,
    }
    assert (context.target_branch, context.is_fork, context.warnings) == ("main", True, ())


def test_gitlab_branch_pipeline() -> None:
    env = GITLAB_COMMON | {
        "CI_PIPELINE_SOURCE": "push",
        "CI_COMMIT_BRANCH": "main",
        "CI_COMMIT_REF_NAME": "main",
        "CI_DEFAULT_BRANCH": "main",
    }
    context = detect(env)
    assert context.meta() == {
        "repository": GITLAB_PROJECT,
        "commit": HEAD,
        "branch": "main",
        "build_url": f"{GITLAB_PROJECT}/-/pipelines/5550",
        "ci_name": "kpms",
        "ci_id": "5550",
        "time": TIME,
    }
    assert (context.pr, context.target_branch, context.is_fork) == (None, None, False)


# --- Jenkins ----------------------------------------------------------------------------------


def test_jenkins_multibranch_pull_request() -> None:
    build_url = "https://ci.example.org/job/lsst/job/pipe_tasks/job/PR-42/7/"
    env = {
        "JENKINS_URL": "https://ci.example.org/",
        "JENKINS_HOME": "/var/jenkins_home",
        "JOB_NAME": "lsst/pipe_tasks/PR-42",
        "JOB_BASE_NAME": "PR-42",
        "BRANCH_NAME": "PR-42",
        "BUILD_ID": "7",
        "BUILD_NUMBER": "7",
        "BUILD_URL": build_url,
        "CHANGE_ID": "42",
        "CHANGE_URL": f"{REPO}/pull/42",
        "CHANGE_TARGET": "main",
        "CHANGE_BRANCH": "tickets/DM-1234",
        "CHANGE_FORK": "contributor",
        "GIT_COMMIT": HEAD,
        "GIT_BRANCH": "PR-42",
        "GIT_URL": "https://github.com/lsst/pipe_tasks.git",
    }
    context = detect(env)
    assert context.ci == "jenkins"
    assert context.meta() == {
        "repository": REPO,
        "commit": HEAD,
        "branch": "tickets/DM-1234",
        "pr": 42,
        "pr_url": f"{REPO}/pull/42",
        "build_url": build_url,
        "ci_name": "lsst/pipe_tasks",
        "ci_id": "7",
        "time": TIME,
        "env": {
            "ci_id": "7",
            "ci_url": build_url,
            "status": 0,
            "env_name": "jenkins",
            "date": TIME,
        },
    }
    assert (context.target_branch, context.is_fork, context.warnings) == ("main", True, ())


def test_jenkins_dispatch_verify_environment() -> None:
    build_url = "https://ci.lsst.codes/job/sqre/job/validate_drp/1234/"
    env = {
        "JENKINS_URL": "https://ci.lsst.codes/",
        "JOB_NAME": "sqre/validate_drp",
        "BUILD_ID": "1234",
        "BUILD_NUMBER": "1234",
        "BUILD_URL": build_url,
        "PRODUCT": "validate_drp",
        "dataset": "validation_data_cfht",
        "label": "centos-7",
        "refs": "tickets/DM-12345 master",
        "GIT_COMMIT": HEAD,
        "GIT_BRANCH": "origin/tickets/DM-12345",
        "GIT_URL": "git@github.com:lsst/validate_drp.git",
    }
    context = detect(env)
    assert context.meta() == {
        "repository": "https://github.com/lsst/validate_drp",
        "commit": HEAD,
        "branch": "tickets/DM-12345",
        "build_url": build_url,
        "ci_name": "validate_drp",
        "ci_id": "1234",
        "time": TIME,
        "dataset": "validation_data_cfht",
        "env": {
            "ci_id": "1234",
            "ci_name": "validate_drp",
            "ci_dataset": "validation_data_cfht",
            "ci_label": "centos-7",
            "ci_refs": "tickets/DM-12345 master",
            "ci_url": build_url,
            "status": 0,
            "env_name": "jenkins",
            "date": TIME,
        },
    }


def test_jenkins_pr_that_is_not_a_number_is_a_warning() -> None:
    context = detect({"JENKINS_URL": "https://ci/", "CHANGE_ID": "abc", "CHANGE_URL": "x"})
    assert (context.pr, context.pr_url) == (None, None)
    assert "pull request 'abc' is not a positive number: left out" in context.warnings


# --- Buildkite --------------------------------------------------------------------------------

BUILDKITE_COMMON = {
    "CI": "true",
    "BUILDKITE": "true",
    "BUILDKITE_REPO": "git@github.com:lsst/pipe_tasks.git",
    "BUILDKITE_COMMIT": HEAD,
    "BUILDKITE_BUILD_ID": "0190f0e4-8a1c-4b6e-9a7e-3c1b2a9d5e11",
    "BUILDKITE_BUILD_NUMBER": "812",
    "BUILDKITE_BUILD_URL": "https://buildkite.com/lsst/pipe-tasks/builds/812",
    "BUILDKITE_PIPELINE_SLUG": "pipe-tasks",
}


def test_buildkite_pull_request_from_a_fork() -> None:
    env = BUILDKITE_COMMON | {
        "BUILDKITE_BRANCH": "tickets/DM-1234",
        "BUILDKITE_PULL_REQUEST": "42",
        "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "main",
        "BUILDKITE_PULL_REQUEST_REPO": "git://github.com/contributor/pipe_tasks.git",
    }
    context = detect(env)
    assert context.ci == "buildkite"
    assert context.meta() == {
        "repository": REPO,
        "commit": HEAD,
        "branch": "tickets/DM-1234",
        "pr": 42,
        "pr_url": f"{REPO}/pull/42",
        "build_url": "https://buildkite.com/lsst/pipe-tasks/builds/812",
        "ci_name": "pipe-tasks",
        "ci_id": "812",
        "time": TIME,
    }
    assert (context.target_branch, context.is_fork, context.warnings) == ("main", True, ())


def test_buildkite_branch_build() -> None:
    env = BUILDKITE_COMMON | {
        "BUILDKITE_BRANCH": "main",
        "BUILDKITE_PULL_REQUEST": "false",
        "BUILDKITE_PULL_REQUEST_BASE_BRANCH": "",
        "BUILDKITE_PULL_REQUEST_REPO": "",
    }
    context = detect(env)
    assert context.meta() == {
        "repository": REPO,
        "commit": HEAD,
        "branch": "main",
        "build_url": "https://buildkite.com/lsst/pipe-tasks/builds/812",
        "ci_name": "pipe-tasks",
        "ci_id": "812",
        "time": TIME,
    }
    assert (context.pr, context.target_branch, context.is_fork) == (None, None, False)


# --- git --------------------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.org",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.org",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def commit(cwd: Path, message: str) -> str:
    git(cwd, "commit", "--allow-empty", "-q", "-m", message)
    return git(cwd, "rev-parse", "HEAD")


class Repo:
    """main: c1 → m2; feature: c1 → f1 (checked out); origin/main at m2."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir()
        git(path, "init", "-q", "-b", "main")
        self.c1 = commit(path, "c1")
        git(path, "checkout", "-q", "-b", "feature")
        self.f1 = commit(path, "f1")
        git(path, "checkout", "-q", "main")
        self.m2 = commit(path, "m2")
        git(path, "checkout", "-q", "feature")
        git(path, "remote", "add", "origin", "https://x-token:ghp_SECRET123@github.com/o/r.git")
        git(path, "update-ref", "refs/remotes/origin/main", self.m2)
        # Only the remote-tracking branch: a CI checkout has no local main.
        git(path, "branch", "-q", "-D", "main")
        self.environ = {"PATH": os.environ["PATH"], "HOME": str(path)}


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def test_git_alone_reads_the_checkout_and_strips_credentials(repo: Repo) -> None:
    context = detect_context(repo.environ, repo.path, now=NOW)
    assert context.ci == "git"
    assert context.meta() == {
        "repository": "https://github.com/o/r",
        "commit": repo.f1,
        "branch": "feature",
        "time": TIME,
    }
    assert context.warnings == ()
    assert "SECRET" not in repr(context)


@pytest.mark.parametrize("target_ref", ["origin/main", "main"])
def test_merge_base_with_the_target_branch(repo: Repo, target_ref: str) -> None:
    if target_ref == "main":  # a local target branch, no remote-tracking one
        git(repo.path, "branch", "-q", "main", repo.m2)
        git(repo.path, "update-ref", "-d", "refs/remotes/origin/main")
    env = (
        GITLAB_COMMON
        | repo.environ
        | {
            "CI_COMMIT_SHA": repo.f1,
            "CI_MERGE_REQUEST_IID": "17",
            "CI_MERGE_REQUEST_PROJECT_URL": GITLAB_PROJECT,
            "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
            "CI_MERGE_REQUEST_DIFF_BASE_SHA": DIFF_BASE,
        }
    )
    context = detect_context(env, repo.path, now=NOW)
    assert context.merge_base == repo.c1  # git's answer wins over the CI variable
    assert context.repository == GITLAB_PROJECT
    assert context.warnings == ()


def test_github_merge_commit_checkout_gives_the_head_from_git(repo: Repo, tmp_path: Path) -> None:
    """Without the event, the PR's head is the second parent of the merge commit checked out."""
    git(repo.path, "checkout", "-q", "--detach", "origin/main")
    git(repo.path, "merge", "-q", "--no-ff", "-m", "merge", "feature")
    merge = git(repo.path, "rev-parse", "HEAD")
    env = github_env(tmp_path, "pull_request", {}) | repo.environ | {"GITHUB_SHA": merge}
    del env["GITHUB_EVENT_PATH"]
    context = detect_context(env, repo.path, now=NOW)
    assert (context.commit, context.merge_base) == (repo.f1, repo.c1)
    assert context.branch == "tickets/DM-1234"


def test_missing_merge_base_is_a_warning(repo: Repo, tmp_path: Path) -> None:
    env = github_env(tmp_path, "pull_request", pull_request_event("lsst/pipe_tasks"))
    env = env | repo.environ | {"GITHUB_BASE_REF": "release"}
    event = pull_request_event("lsst/pipe_tasks")
    event["pull_request"]["base"]["ref"] = "release"
    Path(env["GITHUB_EVENT_PATH"]).write_text(json.dumps(event))
    context = detect_context(env, repo.path, now=NOW)
    assert context.merge_base is None
    assert context.warnings == (
        "no merge base with 'release': fetch the target branch and enough history "
        "(a shallow clone has neither; e.g. actions/checkout with fetch-depth: 0)",
    )


def test_detached_head_has_no_branch(repo: Repo) -> None:
    git(repo.path, "checkout", "-q", "--detach")
    context = detect_context(repo.environ, repo.path, now=NOW)
    assert (context.commit, context.branch) == (repo.f1, None)
    assert context.warnings == ("no branch found (a detached HEAD, or a tag build)",)


def test_ci_gaps_are_filled_from_git(repo: Repo) -> None:
    env = repo.environ | {"BUILDKITE": "true", "BUILDKITE_COMMIT": "HEAD"}
    context = detect_context(env, repo.path, now=NOW)
    assert (context.ci, context.repository, context.commit) == (
        "buildkite",
        "https://github.com/o/r",
        repo.f1,
    )


def test_without_git(repo: Repo, tmp_path: Path) -> None:
    nothing = detect_context({}, repo.path, git=False, now=NOW)
    assert nothing.ci == "none"
    assert nothing.meta() == {"time": TIME}
    assert "no commit found" in nothing.warnings

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    no_git = detect_context({"PATH": str(empty)}, repo.path, now=NOW)
    assert no_git.ci == "none"
    assert no_git.warnings[0] == "git is not on PATH: nothing read from the repository"

    not_a_repo = detect_context(repo.environ, empty, now=NOW)
    assert not_a_repo.warnings[0] == (
        f"{empty} is not a git work tree git can read "
        "(fatal: not a git repository (or any of the parent directories): .git)"
    )


@pytest.mark.parametrize(
    ("remote", "url"),
    [
        ("git@github.com:lsst/afw.git", "https://github.com/lsst/afw"),
        ("ssh://git@gitlab.example.org:2222/g/p.git", "https://gitlab.example.org/g/p"),
        ("https://oauth2:glpat-XYZ@gitlab.example.org/g/p.git/", "https://gitlab.example.org/g/p"),
        ("git+https://github.com/lsst/afw", "https://github.com/lsst/afw"),
        ("http://git.local:8080/a/b.git", "http://git.local:8080/a/b"),
        ("/srv/git/repo.git", None),
        ("file:///srv/git/repo.git", None),
        ("../repo", None),
    ],
)
def test_repository_url(remote: str, url: str | None) -> None:
    assert repository_url(remote) == url


def test_describe(tmp_path: Path) -> None:
    context = detect(github_env(tmp_path, "pull_request", pull_request_event("lsst/pipe_tasks")))
    rows = dict(context.describe())
    assert rows["ci"] == "github"
    assert rows["pr"] == "42"
    assert (rows["target_branch"], rows["fork"]) == ("main", "no")


# --- specwatch context ------------------------------------------------------------------------

CI_MARKERS = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "JENKINS_URL", "JENKINS_HOME")


def test_context_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    env: dict[str, str | None] = {marker: None for marker in (*CI_MARKERS, "VERIFY_ENV")}
    env |= {"BUILDKITE": "true", **BUILDKITE_COMMON, "BUILDKITE_BRANCH": "main"}
    Path("requirements.txt").write_text("numpy==1.26.4\n")
    table = runner.invoke(context_command, [], env=env, catch_exceptions=False)
    result = runner.invoke(
        context_command,
        ["--json", "--packages", "requirements.txt"],
        env=env,
        catch_exceptions=False,
    )
    bad = runner.invoke(context_command, ["--packages", "nope"], env=env)
    assert table.exit_code == 0
    assert "repository  https://github.com/lsst/pipe_tasks" in table.stdout
    assert "is not a git work tree git can read" in table.stderr
    assert result.exit_code == 0
    meta = json.loads(result.stdout)
    assert meta["commit"] == HEAD and meta["ci_id"] == "812"
    assert meta["packages"]["numpy"]["version"] == "1.26.4"
    assert bad.exit_code == 2
    assert bad.stderr.strip().startswith("specwatch: error: --packages 'nope': not pip")
