"""The versions of the packages a build ran with, for ``meta.packages``.

Each entry has dispatch_verify's keys (``name``, ``git_url``, ``git_sha``, ``git_branch``,
``eups_version``; ``lsst.verify.bin.dispatchverify.insert_lsstsw_metadata``) plus ``version``,
the one to compare across sources: the EUPS version for lsstsw, the distribution's version for
pip and conda, whose ``eups_version`` stays ``None`` (they are not EUPS products).  A key that
is not known is ``None``.  Sources (``collect_packages``):

- ``pip`` (or ``pip:DIR``): the distributions importable here (or installed in ``DIR``); a VCS
  install's ``git_url``/``git_sha`` from its ``direct_url.json``; an editable one's from git.
- ``conda``: ``conda list --json`` of the active environment.
- ``lsstsw:DIR`` (or ``lsstsw``: ``$LSSTSW``): ``build/manifest.txt`` and ``etc/repos.yaml``.
- a file: JSON or YAML, a list of entries or a mapping name → entry (dispatch_verify's shape,
  or a whole job document: its ``meta.packages``); else ``name==version`` lines (pip freeze).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

import yaml

from .errors import BadInputError
from .gitrepo import GitCheckout, strip_credentials

PACKAGE_KEYS = ("name", "version", "git_url", "git_sha", "git_branch", "eups_version")
CONDA_TIMEOUT_S = 120.0
_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r"(?:===?\s*(?P<version>[^\s;,]+)|@\s*(?P<url>[^\s;]+))\s*(?:;.*)?$"
)
_EGG = re.compile(r"[#&]egg=(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")


def package_entry(name: str, **values: Any) -> dict[str, Any]:
    """An entry of ``meta.packages``: every key of ``PACKAGE_KEYS``, ``None`` where unknown."""
    entry: dict[str, Any] = dict.fromkeys(PACKAGE_KEYS)
    entry.update(values, name=name)
    return entry


def collect_packages(
    source: str,
    *,
    environ: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
    git: bool = True,
) -> dict[str, dict[str, Any]]:
    """``meta.packages`` from ``source``: package name → entry (see the module's docstring).

    ``cwd`` resolves relative paths (default: the working directory); ``git=False`` skips the
    git questions about editable installs.

    Raises:
        BadInputError: an unknown source, an unreadable or malformed file, no conda.
    """
    base = cwd or Path.cwd()
    kind, _, argument = source.partition(":")
    if kind == "pip" and (argument or source == "pip"):
        paths = [str(base / argument)] if argument else None
        return _pip(paths, environ, git)
    if source == "conda":
        return _conda(environ)
    if kind == "lsstsw" and (argument or source == "lsstsw"):
        directory = argument or environ.get("LSSTSW")
        if not directory:
            raise BadInputError("--packages lsstsw: $LSSTSW is not set (or use lsstsw:DIR)")
        return lsstsw_packages(base / directory)
    path = base / source
    if not path.is_file():
        raise BadInputError(
            f"--packages {source!r}: not pip, pip:DIR, conda, lsstsw:DIR or an existing file"
        )
    return _file(path)


# --- pip --------------------------------------------------------------------------------------


def _pip(
    paths: list[str] | None, environ: Mapping[str, str], git: bool
) -> dict[str, dict[str, Any]]:
    if paths is not None and not Path(paths[0]).is_dir():
        raise BadInputError(f"--packages pip:{paths[0]}: not a directory")
    found = (
        importlib.metadata.distributions(path=paths)
        if paths
        else importlib.metadata.distributions()
    )
    packages: dict[str, dict[str, Any]] = {}
    for distribution in found:
        name = distribution.metadata["Name"]
        if not name or name in packages:  # the first on the path is the one imported
            continue
        packages[name] = package_entry(
            name, version=distribution.version, **_direct_url(distribution, environ, git)
        )
    return dict(sorted(packages.items(), key=lambda item: item[0].lower()))


def _direct_url(
    distribution: importlib.metadata.Distribution, environ: Mapping[str, str], git: bool
) -> dict[str, Any]:
    """``git_url``/``git_sha`` of a VCS or editable install (PEP 610 ``direct_url.json``)."""
    try:
        info = json.loads(distribution.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}
    url = info.get("url") if isinstance(info, dict) else None
    if not isinstance(url, str):
        return {}
    vcs, directory = info.get("vcs_info"), info.get("dir_info")
    if isinstance(vcs, dict) and vcs.get("vcs") == "git":
        return {"git_url": strip_credentials(url), "git_sha": vcs.get("commit_id")}
    editable = isinstance(directory, dict) and directory.get("editable")
    if not (git and editable and url.startswith("file://")):
        return {}
    checkout = GitCheckout(Path(url2pathname(urlsplit(url).path)), environ, [])
    if not checkout.usable:
        return {}
    return {
        "git_url": checkout.origin_remote(),
        "git_sha": checkout.commit(),
        "git_branch": checkout.branch(),
    }


# --- conda ------------------------------------------------------------------------------------


def _conda(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    conda = environ.get("CONDA_EXE") or shutil.which("conda", path=environ.get("PATH") or None)
    if not conda:
        raise BadInputError("--packages conda: conda is not on PATH (nor in $CONDA_EXE)")
    try:
        done = subprocess.run(
            [conda, "list", "--json"],
            env=dict(environ),
            capture_output=True,
            text=True,
            timeout=CONDA_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BadInputError(f"--packages conda: cannot run {conda}: {error}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BadInputError(f"--packages conda: conda list failed ({last[:200]})")
    try:
        listed = json.loads(done.stdout)
    except ValueError:
        listed = None
    if not isinstance(listed, list):
        raise BadInputError("--packages conda: conda list --json did not print a JSON list")
    packages: dict[str, dict[str, Any]] = {}
    for item in listed:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            packages[item["name"]] = package_entry(
                item["name"], version=_text(item.get("version")), channel=item.get("channel")
            )
    return packages


# --- lsstsw -----------------------------------------------------------------------------------


def lsstsw_packages(directory: Path) -> dict[str, dict[str, Any]]:
    """The packages of an lsstsw build, as dispatch_verify's ``insert_lsstsw_metadata``.

    ``git_branch`` is ``None`` (dispatch_verify asks the clones in ``build/``, with
    GitPython); a package missing from ``repos.yaml`` gets ``git_url`` ``None``.

    Raises:
        BadInputError: a file missing or malformed.
    """
    manifest_path, repos_path = directory / "build" / "manifest.txt", directory / "etc/repos.yaml"
    try:
        manifest = manifest_path.read_text(encoding="utf-8")
        repos = yaml.safe_load(repos_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise BadInputError(f"--packages lsstsw:{directory}: {_reason(error)}") from None
    if not isinstance(repos, dict):
        raise BadInputError(f"{repos_path}: not a mapping of package name to repository")
    packages: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(manifest.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", "BUILD")):
            continue
        parts = line.split()
        if len(parts) < 3:
            raise BadInputError(f"{manifest_path}:{number}: not 'name sha version [deps]'")
        name, sha, version = parts[:3]
        spec = repos.get(name)
        url = spec.get("url") if isinstance(spec, dict) else spec
        packages[name] = package_entry(
            name,
            version=version,
            git_url=strip_credentials(url) if isinstance(url, str) else None,
            git_sha=sha,
            eups_version=version,
        )
    return packages


# --- files ------------------------------------------------------------------------------------


def _file(path: Path) -> dict[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"--packages {path}: {_reason(error)}") from None
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        return _requirements(path, text.splitlines())
    try:
        document = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise BadInputError(f"--packages {path}: {_reason(error)}") from None
    meta = document.get("meta") if isinstance(document, dict) else None
    if isinstance(meta, dict) and "packages" in meta:  # a whole job document
        document = meta["packages"]
    if isinstance(document, list):
        items: Iterable[tuple[Any, Any]] = ((None, item) for item in document)
    elif isinstance(document, dict):
        items = document.items()
    else:
        raise BadInputError(f"--packages {path}: not a list or a mapping of packages")
    packages: dict[str, dict[str, Any]] = {}
    for key, item in items:
        entry = _entry(key, item)
        if entry is None:
            raise BadInputError(f"--packages {path}: {str(key or item)[:60]!r} is not a package")
        packages[entry["name"]] = entry
    return packages


def _entry(key: Any, item: Any) -> dict[str, Any] | None:
    """An entry from ``{name, …}`` (keyed or not) or from ``name: version``."""
    if isinstance(item, dict):
        name = item.get("name") or key
        values = {k: _text(item.get(k)) for k in PACKAGE_KEYS if k != "name"}
        values["version"] = values["version"] or values["eups_version"]
    elif isinstance(key, str) and isinstance(item, str | int | float):
        name, values = key, {"version": str(item)}
    else:
        return None
    return package_entry(name, **values) if isinstance(name, str) and name else None


def _requirements(path: Path, lines: list[str]) -> dict[str, dict[str, Any]]:
    """``name==version``, ``name @ git+URL@SHA`` and ``-e git+URL@SHA#egg=name`` lines."""
    packages: dict[str, dict[str, Any]] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.partition(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-e ", "--editable")):
            url = line.split(None, 1)[-1].removeprefix("--editable=").strip()
            egg = _EGG.search(url)
            if egg is not None:
                packages[egg["name"]] = package_entry(egg["name"], **_vcs(url))
            continue
        if line.startswith("-"):  # pip's options (-r, --index-url, …) name no package
            continue
        match = _REQUIREMENT.match(line)
        if match is None:
            raise BadInputError(f"{path}:{number}: {line[:60]!r} is not 'name==version'")
        packages[match["name"]] = package_entry(
            match["name"], version=match["version"], **_vcs(match["url"] or "")
        )
    return packages


def _vcs(url: str) -> dict[str, Any]:
    """``git_url``/``git_sha`` of a pip VCS URL (``git+https://host/o/r.git@SHA#egg=…``)."""
    if not url.startswith("git+"):
        return {}
    parts = urlsplit(url.removeprefix("git+"))
    path, _, revision = parts.path.partition("@")
    git_url = strip_credentials(urlunsplit(parts._replace(path=path, query="", fragment="")))
    return {"git_url": git_url, "git_sha": revision if _SHA.match(revision) else None}


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value)


def _reason(error: Exception) -> str:
    """One line: the error's first line, without a traceback's context."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}"
    return (str(error).splitlines() or [type(error).__name__])[0][:200]
