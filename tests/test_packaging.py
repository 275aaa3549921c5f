"""The wheel ships every module and data file of the source folders, at its mapped place.

An editable install finds modules through the source tree, so a folder missing from
``pyproject.toml``'s ``packages`` only shows in a real install (a container image, a wheel):
this builds the wheel and compares.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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


def test_the_wheel_holds_every_source_and_data_file(tmp_path: Path) -> None:
    # From a copy: an in-tree build/ folder of an earlier build would hide missing packages.
    source = tmp_path / "src"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "*.sqlite3*"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("specwatch-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = source_files()
    assert "specwatch/api/routes/jobs.py" in expected
    assert "specwatch/store/migrations/versions/0001_initial_schema.py" in expected
    assert "specwatch/services/demo/requirements.yaml" in expected
    assert sorted(expected - shipped) == []
    # Nothing bare in site-packages: every module lives under specwatch/.
    tops = {name.split("/")[0] for name in shipped}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"specwatch"}
