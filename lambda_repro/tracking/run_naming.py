"""What an MLflow run is called and tagged with, so that the run list says what ran.

The names of a DVC experiment come in as arguments (the stage reads DVC's environment):
the library itself knows nothing of DVC.
"""

from __future__ import annotations

# Tags every training run carries (beside git_tags()'s commit): filterable in the UI and search_runs.
DVC_EXPERIMENT_TAG = "dvc.exp_name"
DVC_BASELINE_TAG = "dvc.baseline_rev"


def run_name(model: str, dataset: str, epochs: int, seed: int, experiment: str | None = None) -> str:
    """``lambda_resnet50 synthetic 8ep seed0``, prefixed with the DVC experiment's name when there is one."""
    what = f"{model} {dataset} {epochs}ep seed{seed}"
    return f"{experiment}: {what}" if experiment else what


def run_tags(
    model: str,
    dataset: str,
    epochs: int,
    seed: int,
    experiment: str | None = None,
    baseline_rev: str | None = None,
) -> dict[str, str]:
    """The recipe's identity as tags, and the DVC experiment (name, baseline commit) when the run is one."""
    tags = {"model": model, "dataset": dataset, "epochs": str(epochs), "seed": str(seed)}
    if experiment:
        tags[DVC_EXPERIMENT_TAG] = experiment
    if baseline_rev:
        tags[DVC_BASELINE_TAG] = baseline_rev
    return tags
