"""Static checks on the package as it installs (``specwatch.api`` = ``api/``, …).

mypy (strict, tests and benchmarks included) and import-linter (the layer contracts of
pyproject.toml) do not follow setuptools' package-dir mapping of an editable install, so this
builds a tree of links in the shape of the installed package and runs both on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="specwatch-mypy-") as tmp:
        top = Path(tmp)
        root_package = top / "specwatch"
        root_package.mkdir()
        for source in (ROOT / mapping["specwatch"]).glob("*.py"):
            (root_package / source.name).symlink_to(source)
        for package, folder in sorted(mapping.items()):
            if package.count(".") != 1:
                continue  # the root is built above; nested mappings follow their parent's link
            (root_package / package.split(".")[1]).symlink_to(
                ROOT / folder, target_is_directory=True
            )
        for extra in ("tests", "bench"):
            if (ROOT / extra).is_dir():
                (top / extra).symlink_to(ROOT / extra, target_is_directory=True)
        command = [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--exclude",
            "/migrations/",
            "specwatch",
            *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("tests/*.py"))),
            *(str(p.relative_to(ROOT)) for p in sorted(ROOT.glob("bench/*.py"))),
        ]
        env = {**os.environ, "MYPYPATH": str(top / "tests")}
        status = subprocess.call(command, cwd=tmp, env=env)
        linter = [
            str(Path(sys.executable).with_name("lint-imports")),
            str(ROOT / "pyproject.toml"),
            "--no-cache",
        ]
        env = {**os.environ, "PYTHONPATH": tmp}
        return status or subprocess.call(linter, cwd=tmp, env=env)


if __name__ == "__main__":
    sys.exit(main())
