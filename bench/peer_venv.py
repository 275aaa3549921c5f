"""A venv of its own for a peer tool (Otava pins numpy 2.2, the cpd tool pins its scorers)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path


def peer_python(given: str | None, name: str, pip_args: list[str], check: str) -> str:
    """``given``, or the Python of a venv ``name`` under the temp folder, created once with
    ``pip install *pip_args`` and kept while ``python -c check`` succeeds."""
    if given:
        return given
    venv = Path(tempfile.gettempdir()) / name
    python = venv / "bin" / "python"
    probe = [str(python), "-c", check]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    print(f"creating {venv} with {' '.join(pip_args)} …", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", *pip_args]
    subprocess.run(pip, check=True, capture_output=True)
    return str(python)
