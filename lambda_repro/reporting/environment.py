"""Where the report was made: code version and software, for the report's environment section."""

from __future__ import annotations

import os
import platform

from lambda_repro.tracking import git_tags


def git_commit(repo_dir: str | os.PathLike = ".") -> dict[str, str]:
    """The commit of ``repo_dir`` and whether tracked files differ from it (``unknown`` outside git)."""
    tags = git_tags(repo_dir)
    return {"commit": tags["mlflow.source.git.commit"], "uncommitted changes": tags["git.dirty"]}


def software_versions() -> dict[str, str]:
    """Versions of the packages the pipeline's figures depend on, and this machine's devices."""
    import matplotlib
    import pandas
    import torch

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "CUDA (torch build)": str(torch.version.cuda),
        "CUDA devices here": str(torch.cuda.device_count()),
        "pandas": pandas.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        versions["GPU names"] = ", ".join(names)
    try:
        import mlflow

        versions["mlflow"] = mlflow.__version__
    except ImportError:
        pass
    return versions
