"""Read-only questions to a git checkout, and remote URLs made safe to publish.

Every answer is ``None`` on failure (no git, not a repository, a shallow clone, a timeout);
what went wrong is added once to ``warnings``, so a build never fails for lack of context.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

GIT_TIMEOUT_S = 10.0
# ``user@host:owner/repo.git``: git's scp-like syntax (no scheme; a colon before any slash).
_SCP_URL = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:]{2,}):(?P<path>[^/].*)$")
_GIT_FORGE_SCHEMES = {"ssh": "https", "git": "https", "http": "http", "https": "https"}


def repository_url(remote: str) -> str | None:
    """The web URL of a git remote: https, no credentials, no port for ssh, no ``.git``.

    ``git@github.com:o/r.git`` and ``ssh://git@github.com/o/r`` become
    ``https://github.com/o/r``; ``https://x-token:SECRET@host/o/r.git`` becomes
    ``https://host/o/r``.  Plain ``http`` stays ``http`` (a server that only speaks http would
    not answer on https).  A local path or ``file://`` URL has no web page: ``None``.
    """
    remote = remote.strip()
    if "://" in remote:
        parts = urlsplit(remote)
        scheme = _GIT_FORGE_SCHEMES.get(parts.scheme.lower().removeprefix("git+"))
        try:
            host, port = parts.hostname, parts.port
        except ValueError:  # a port that is not a number
            return None
        if scheme is None or not host:
            return None
        keep_port = port is not None and parts.scheme.lower().endswith(("http", "https"))
        netloc = f"{host}:{port}" if keep_port else host
        path = parts.path
    else:
        match = _SCP_URL.match(remote)
        if match is None:
            return None
        scheme, netloc, path = "https", match["host"].lower(), "/" + match["path"]
    path = path.rstrip("/").removesuffix(".git").rstrip("/")
    return urlunsplit((scheme, netloc, path, "", "")) if path else None


def strip_credentials(url: str) -> str:
    """``url`` without a user name, password or token (``https://user:tok@host/…``)."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class GitCheckout:
    """The git work tree at ``cwd``, asked through the ``git`` on ``environ``'s ``PATH``."""

    def __init__(self, cwd: Path, environ: Mapping[str, str], warnings: list[str]) -> None:
        self.cwd = cwd
        self.warnings = warnings
        self._env = {**environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        self._git = shutil.which("git", path=environ.get("PATH") or None)
        self.usable = False
        self._error = ""
        if self._git is None:
            warnings.append("git is not on PATH: nothing read from the repository")
        elif self._run("rev-parse", "--is-inside-work-tree") != "true":
            # Say why: "not a git repository", or "dubious ownership" in a CI container.
            reason = f" ({self._error})" if self._error else ""
            warnings.append(f"{cwd} is not a git work tree git can read{reason}")
        else:
            self.usable = True

    def _run(self, *args: str) -> str | None:
        if self._git is None:
            return None
        try:
            done = subprocess.run(
                [self._git, *args],
                cwd=self.cwd,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=GIT_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            self._error = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            return None
        if done.returncode != 0:
            self._error = (done.stderr.strip().splitlines() or [""])[0][:200]
            return None
        return done.stdout.strip()

    def ask(self, *args: str) -> str | None:
        """The output of ``git ARGS`` (stripped), or ``None`` if it failed."""
        if not self.usable:
            return None
        return self._run(*args) or None

    def origin_url(self) -> str | None:
        """The web URL of the ``origin`` remote (see ``repository_url``)."""
        remote = self.ask("remote", "get-url", "origin")
        return repository_url(remote) if remote else None

    def origin_remote(self) -> str | None:
        """The URL of the ``origin`` remote as git fetches it, credentials removed."""
        remote = self.ask("remote", "get-url", "origin")
        return strip_credentials(remote) if remote else None

    def commit(self, revision: str = "HEAD") -> str | None:
        """The full object id of ``revision``'s commit."""
        return self.ask("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")

    def branch(self) -> str | None:
        """The checked-out branch; ``None`` when HEAD is detached."""
        return self.ask("symbolic-ref", "--quiet", "--short", "HEAD")

    def merge_base(self, commit: str, target: str) -> str | None:
        """The merge base of ``commit`` and ``origin/<target>`` (else the local ``target``)."""
        for ref in (f"refs/remotes/origin/{target}", f"refs/heads/{target}"):
            if self.commit(ref) is not None:
                return self.ask("merge-base", commit, ref)
        return None
