"""The code version a run used: the git commit and whether the tree had uncommitted changes."""

from __future__ import annotations

import os
import subprocess


def git_tags(repo_dir: str | os.PathLike = ".") -> dict[str, str]:
    """MLflow tags naming the commit of ``repo_dir``: ``mlflow.source.git.commit`` and ``git.dirty``.

    ``git.dirty`` is ``"true"`` when tracked files differ from the commit (untracked files,
    such as pipeline outputs, do not count). Outside a git checkout, or without git, the
    commit is ``"unknown"`` and ``git.error`` says why: a run is never refused for it.
    """
    try:
        commit = _git(repo_dir, "rev-parse", "HEAD")
        dirty = bool(_git(repo_dir, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError) as err:
        reason = err.stderr.strip().splitlines()[0] if getattr(err, "stderr", None) else str(err)
        return {"mlflow.source.git.commit": "unknown", "git.dirty": "unknown", "git.error": reason}
    return {"mlflow.source.git.commit": commit, "git.dirty": "true" if dirty else "false"}


def _git(repo_dir: str | os.PathLike, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo_dir, capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.strip()
