"""``meta.packages`` from pip, conda, lsstsw and files, in dispatch_verify's shape."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from specwatch.collectors.errors import BadInputError
from specwatch.collectors.packages import PACKAGE_KEYS, collect_packages

SHARED = Path(__file__).resolve().parents[2] / "shared"
LSSTSW = SHARED / "datasets/lsst/verify/lsstsw"
VERIFY_JOB = SHARED / "datasets/lsst/squash/verify_job.json"
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_pip_lists_the_running_environment() -> None:
    packages = collect_packages("pip", git=False)
    assert packages["click"]["version"] == importlib.metadata.version("click")
    assert packages["click"]["name"] == "click"
    assert packages["click"]["eups_version"] is None
    assert all(tuple(entry)[: len(PACKAGE_KEYS)] == PACKAGE_KEYS for entry in packages.values())


def write_distribution(site: Path, name: str, direct_url: dict[str, object]) -> None:
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "direct_url.json").write_text(json.dumps(direct_url))


def test_pip_vcs_and_editable_installs(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.org",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.org",
    }
    for args in (
        ["init", "-q", "-b", "tickets/DM-1"],
        ["commit", "-q", "--allow-empty", "-m", "one"],
        ["remote", "add", "origin", "https://user:s3cret@github.com/lsst/faro.git"],
    ):
        subprocess.run(["git", *args], cwd=checkout, env=env, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=checkout, env=env, check=True, capture_output=True
    ).stdout.decode()
    site = tmp_path / "site-packages"
    write_distribution(
        site,
        "verify",
        {
            "url": "https://tok@github.com/lsst/verify.git",
            "vcs_info": {"vcs": "git", "commit_id": SHA, "requested_revision": "main"},
        },
    )
    write_distribution(site, "faro", {"url": checkout.as_uri(), "dir_info": {"editable": True}})
    write_distribution(site, "plain", {"url": "file:///wheels/plain.whl", "archive_info": {}})

    packages = collect_packages(f"pip:{site}", environ=env)
    assert packages == {
        "faro": {
            "name": "faro",
            "version": "1.2.3",
            "git_url": "https://github.com/lsst/faro.git",
            "git_sha": head.strip(),
            "git_branch": "tickets/DM-1",
            "eups_version": None,
        },
        "plain": {
            "name": "plain",
            "version": "1.2.3",
            "git_url": None,
            "git_sha": None,
            "git_branch": None,
            "eups_version": None,
        },
        "verify": {
            "name": "verify",
            "version": "1.2.3",
            "git_url": "https://github.com/lsst/verify.git",
            "git_sha": SHA,
            "git_branch": None,
            "eups_version": None,
        },
    }
    assert collect_packages(f"pip:{site}", environ=env, git=False)["faro"]["git_sha"] is None


@pytest.mark.skipif(not LSSTSW.is_dir(), reason=f"the shared lsstsw data is absent ({LSSTSW})")
def test_lsstsw_reads_the_manifest_and_repos_yaml() -> None:
    packages = collect_packages(f"lsstsw:{LSSTSW}")
    manifest = [
        line.split()
        for line in (LSSTSW / "build/manifest.txt").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "BUILD"))
    ]
    assert list(packages) == [parts[0] for parts in manifest]  # manifest order
    assert packages["wcslib"] == {
        "name": "wcslib",
        "version": "5.13.lsst1",
        "git_url": "https://github.com/lsst/wcslib.git",
        "git_sha": "373bd44add489cc091272d3393ae8d9857bcd34d",
        "git_branch": None,
        "eups_version": "5.13.lsst1",
    }
    # repos.yaml's mapping form (url + ref, url + lfs)
    assert packages["xrootd"]["git_url"] == "https://github.com/lsst/xrootd.git"
    assert packages["xrootd"]["git_sha"] == "5f6a5d06db488e44bee6fe1104d4d9e4d5357c70"
    assert packages["sims_sed_library"]["git_url"] == "https://github.com/lsst/sims_sed_library.git"
    last = manifest[-1]
    assert (packages[last[0]]["git_sha"], packages[last[0]]["eups_version"]) == (last[1], last[2])
    assert collect_packages("lsstsw", environ={"LSSTSW": str(LSSTSW)}) == packages


@pytest.mark.skipif(not VERIFY_JOB.is_file(), reason=f"the shared job is absent ({VERIFY_JOB})")
def test_a_job_document_gives_its_packages() -> None:
    packages = collect_packages(str(VERIFY_JOB))
    original = json.loads(VERIFY_JOB.read_text())["meta"]["packages"]
    assert packages == {
        name: {**entry, "version": entry["eups_version"]} for name, entry in original.items()
    }


def test_json_list_in_dispatch_verify_shape(tmp_path: Path) -> None:
    path = tmp_path / "packages.json"
    path.write_text(
        json.dumps(
            [
                {
                    "name": "afw",
                    "git_branch": "main",
                    "git_url": "https://github.com/lsst/afw.git",
                    "git_sha": SHA,
                    "eups_version": "g0123456789+1",
                }
            ]
        )
    )
    assert collect_packages("packages.json", cwd=tmp_path) == {
        "afw": {
            "name": "afw",
            "version": "g0123456789+1",
            "git_url": "https://github.com/lsst/afw.git",
            "git_sha": SHA,
            "git_branch": "main",
            "eups_version": "g0123456789+1",
        }
    }


def test_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "packages.yaml"
    path.write_text(yaml.safe_dump({"afw": {"eups_version": "26.0.0", "git_sha": SHA}, "np": 2}))
    assert collect_packages(str(path)) == {
        "afw": {
            "name": "afw",
            "version": "26.0.0",
            "git_url": None,
            "git_sha": SHA,
            "git_branch": None,
            "eups_version": "26.0.0",
        },
        "np": {
            "name": "np",
            "version": "2",
            "git_url": None,
            "git_sha": None,
            "git_branch": None,
            "eups_version": None,
        },
    }


def test_requirements_text(tmp_path: Path) -> None:
    path = tmp_path / "requirements.txt"
    path.write_text(
        "# pip freeze\n"
        "--index-url https://pypi.org/simple\n"
        "\n"
        "numpy==1.26.4\n"
        "astropy[recommended]==6.0.1 ; python_version >= '3.11'  # pinned\n"
        f"lsst-verify @ git+https://user:tok@github.com/lsst/verify.git@{SHA}\n"
        f"-e git+https://github.com/lsst/faro.git@{SHA}#egg=faro\n"
    )
    packages = collect_packages(str(path))
    assert {name: entry["version"] for name, entry in packages.items()} == {
        "numpy": "1.26.4",
        "astropy": "6.0.1",
        "lsst-verify": None,
        "faro": None,
    }
    assert packages["lsst-verify"]["git_url"] == "https://github.com/lsst/verify.git"
    assert packages["lsst-verify"]["git_sha"] == SHA
    assert (packages["faro"]["git_url"], packages["faro"]["git_sha"]) == (
        "https://github.com/lsst/faro.git",
        SHA,
    )


def test_conda(tmp_path: Path) -> None:
    listed = [
        {"name": "numpy", "version": "1.26.4", "channel": "conda-forge", "build_string": "py0"},
        {"name": "python", "version": "3.11.7", "channel": "conda-forge", "build_string": "h1"},
    ]
    conda = tmp_path / "bin" / "conda"
    conda.parent.mkdir()
    # Only the shell's builtins: PATH holds nothing but this fake conda.
    conda.write_text(f"#!/bin/sh\nprintf '%s\\n' '{json.dumps(listed)}'\n")
    conda.chmod(0o755)
    packages = collect_packages("conda", environ={"PATH": str(conda.parent)})
    assert packages["numpy"] == {
        "name": "numpy",
        "version": "1.26.4",
        "git_url": None,
        "git_sha": None,
        "git_branch": None,
        "eups_version": None,
        "channel": "conda-forge",
    }
    assert list(packages) == ["numpy", "python"]

    conda.write_text(
        "#!/bin/sh\necho 'EnvironmentLocationNotFound: Not a conda environment' >&2\nexit 1\n"
    )
    with pytest.raises(BadInputError, match=r"conda list failed \(EnvironmentLocationNotFound"):
        collect_packages("conda", environ={"PATH": str(conda.parent)})


def bad(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return name


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nope.json", r"--packages 'nope.json': not pip, pip:DIR, conda, lsstsw:DIR or an exist"),
        ("conda", r"--packages conda: conda is not on PATH"),
        ("lsstsw", r"--packages lsstsw: \$LSSTSW is not set"),
        ("lsstsw:missing", r"--packages lsstsw:.*missing: No such file or directory"),
        ("pip:missing", r"--packages pip:.*missing: not a directory"),
        ("bad.json", r"--packages .*bad.json: Expecting"),
        ("scalar.yaml", r"--packages .*scalar.yaml: not a list or a mapping of packages"),
        ("noname.json", r"--packages .*noname.json: .* is not a package"),
        ("reqs.txt", r"reqs.txt:2: 'numpy>=1.0' is not 'name==version'"),
    ],
)
def test_bad_sources(tmp_path: Path, source: str, message: str) -> None:
    bad(tmp_path, "bad.json", "{not json")
    bad(tmp_path, "scalar.yaml", "just text\n")
    bad(tmp_path, "noname.json", json.dumps([{"git_sha": SHA}]))
    bad(tmp_path, "reqs.txt", "click==8.1\nnumpy>=1.0\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    with pytest.raises(BadInputError, match=message) as caught:
        collect_packages(source, environ={"PATH": str(empty_bin)}, cwd=tmp_path)
    assert "\n" not in str(caught.value)
