"""Stages find the project's interpreter: dvc.yaml's `python3` may be a bare system one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pipelines import _interpreter
from tests.conftest import PROJECT_ROOT


def test_a_python_without_the_dependencies_re_executes_the_stage_in_the_project_venv():
    # `-S` skips site-packages: this interpreter has no torch or mlflow, like /usr/bin/python3.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [sys.executable, "-S", "pipelines/report.py", "--help"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: pipelines/report")


def test_without_a_project_venv_the_error_names_what_is_missing_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(_interpreter, "REQUIRED_MODULES", ("torch", "no_such_module_for_this_test"))
    with pytest.raises(SystemExit) as exit_info:
        _interpreter.use_project_interpreter(venv=tmp_path / ".venv")
    message = str(exit_info.value.code)
    assert "has no no_such_module_for_this_test and there is no project venv" in message  # torch is installed
    assert "make install" in message


def test_every_stage_command_runs_python3_and_every_stage_script_uses_the_project_interpreter():
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        interpreter, script = spec["cmd"].split()[:2]
        assert interpreter == "python3", name
        assert "use_project_interpreter()" in (PROJECT_ROOT / script).read_text(), script
