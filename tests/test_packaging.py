"""The wheel ships every module and data file of the source folders, at its mapped place.

An editable install finds modules through the source tree, so a folder missing from
``pyproject.toml``'s ``packages`` only shows in a real install (a container image, a wheel):
this builds the wheel and compares.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from wheel_build import build_wheel

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> its place in the installed package; store/migrations links to alembic/.
FOLDERS = {
    "specwatch": "specwatch",
    "api": "specwatch/api",
    "metrics": "specwatch/metrics",
    "store": "specwatch/store",
    "alembic": "specwatch/store/migrations",
    "services": "specwatch/services",
    "collectors": "specwatch/collectors",
    "dashboard": "specwatch/dashboard",
    "alerts": "specwatch/alerts",
}
SHIPPED_SUFFIXES = (".py", ".yaml", ".mako")


def source_files() -> set[str]:
    expected: set[str] = set()
    for folder, target in FOLDERS.items():
        for directory, subdirs, files in os.walk(ROOT / folder):  # links are not followed
            subdirs[:] = [d for d in subdirs if d != "__pycache__"]
            relative = Path(directory).relative_to(ROOT / folder)
            expected.update(
                (Path(target) / relative / name).as_posix()
                for name in files
                if name.endswith(SHIPPED_SUFFIXES)
            )
    return expected


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_every_source_and_data_file(wheel: Path) -> None:
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = source_files()
    assert "specwatch/api/routes/jobs.py" in expected
    assert "specwatch/store/migrations/versions/0001_initial_schema.py" in expected
    assert "specwatch/services/demo/requirements.yaml" in expected
    assert sorted(expected - shipped) == []
    # Nothing bare in site-packages: every module lives under specwatch/.
    tops = {name.split("/")[0] for name in shipped}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"specwatch"}


def test_the_collector_installs_and_runs_without_the_server(wheel: Path, tmp_path: Path) -> None:
    """A CI job's install: the wheel and its base dependencies only (from the package index)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=600)
    specwatch = str(venv / "bin" / "specwatch")
    frozen = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True
    ).stdout.lower()
    for server_only in ("fastapi", "sqlalchemy", "numpy", "astropy", "pydantic"):
        assert f"{server_only}==" not in frozen
    job = tmp_path / "job.json"
    job.write_text('{"measurements": [{"metric": "a.b", "value": 1, "unit": "s"}]}')
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [specwatch, *args], env=env, cwd=tmp_path, capture_output=True, text=True
        )

    dry = run("upload", str(job), "--dry-run", "--meta", "commit=abc")
    assert dry.returncode == 0, dry.stderr
    assert '"commit": "abc"' in dry.stdout
    assert run("context", "--json").returncode == 0
    assert run("collect", "--help").returncode == 0
    bench = tmp_path / "bench.json"
    bench.write_text(
        '{"commit_info": {"id": "abc"}, "datetime": "2026-12-01T00:00:00Z", '
        '"benchmarks": [{"name": "test_x", "fullname": "t.py::test_x", "group": null, '
        '"params": null, "stats": {"min": 1, "max": 1, "mean": 1, "median": 1, '
        '"stddev": 0, "rounds": 1}}]}'
    )
    imported = run("collect", "pytest-benchmark", str(bench), "--package", "demo")
    assert imported.returncode == 0, imported.stderr
    serve = run("serve")
    assert serve.returncode == 2
    assert "pip install 'specwatch[server]'" in serve.stderr
    catalog = run("collect", "catalog", str(job), "--dataset", "d", "--filter", "r")
    assert catalog.returncode == 2
    assert "pip install 'specwatch[kpm]'" in catalog.stderr
