"""Run a stage in the project's environment, whichever ``python3`` DVC found on PATH.

dvc.yaml's commands are ``python3 pipelines/<stage>.py``. Outside an activated venv (e.g.
``.venv/bin/dvc exp run ...``) that is the system interpreter, which lacks torch and mlflow:
the stage then re-executes itself with the project's ``.venv/bin/python``. An interpreter
that has the dependencies (an activated venv, a conda env) is kept. Standard library only:
it runs before anything of the project is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REQUIRED_MODULES = ("torch", "mlflow")


def missing_modules() -> list[str]:
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def use_project_interpreter(venv: Path = PROJECT_ROOT / ".venv") -> None:
    """Re-execute this script with ``venv``'s python when the running one lacks the dependencies."""
    missing = missing_modules()
    if not missing:
        return
    venv_python = venv / "bin" / "python"
    if venv_python.is_file() and Path(sys.prefix).resolve() != venv.resolve():
        os.execv(venv_python, [str(venv_python), *sys.argv])
    sys.exit(
        f"error: {sys.executable} has no {', '.join(missing)} and there is no project venv at {venv}: "
        "run `make install` (or activate the environment that has them)"
    )
