"""Which MLflow runs are runs of the same recipe, and may be pooled over seeds.

Two runs are of the same recipe when they agree on

* the code: the commit they ran from (tag ``mlflow.source.git.commit``);
* the data: the dataset's kind and name (tags ``dataset.kind``, ``dataset.name``);
* every setting that decides what is trained and how it is scored: each logged param of the
  ``data``, ``train``, ``evaluate`` and ``model`` sections, ``preset``, and the world size
  (``distributed.nproc_per_node``, ``distributed.nnodes``),

except the model's name and the seed, which are what an experiment set varies, and the
settings below that change where files go or how fast they load but not the result (the
loader and sync settings are proven bit-identical in ``tests/test_gpu_switches_on_cpu.py``).
A param one run lacks counts as a value of its own, so runs logged by other code never pool.
Not covered: uncommitted code changes (tag ``git.dirty`` says only that some tracked file,
params.yaml included, differed from the commit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COMMIT_TAG = "mlflow.source.git.commit"
RECIPE_TAGS = (COMMIT_TAG, "dataset.kind", "dataset.name")
RECIPE_SECTIONS = ("data.", "train.", "evaluate.", "model.")
RECIPE_PARAMS = ("preset", "distributed.nproc_per_node", "distributed.nnodes")
VARIED = ("model.name", "seed")
NOT_RECIPE = (
    "evaluate.checkpoint_used",  # logged by the evaluate stage: the path it read, same as evaluate.checkpoint
    "train.checkpoint",
    "data.manifest",
    "data.output",
    "data.verify",
    "data.verify_workers",
    "train.workers",
    "train.persistent_workers",
    "train.pin_memory",
    "train.sync_every",
    "evaluate.batch_size",
)


@dataclass(frozen=True)
class RecipeKey:
    """The tags and params that identify a recipe, as sorted ``(name, value)`` pairs (values as MLflow holds them)."""

    tags: tuple[tuple[str, str | None], ...]
    params: tuple[tuple[str, str], ...]

    def value(self, name: str) -> str | None:
        return dict(self.tags + self.params).get(name)

    def describe(self) -> str:
        """E.g. ``commit 1d6394b, Fashion-MNIST (fashion_mnist), 8 epochs, train 32 px, 41 settings compared``."""
        commit = self.value(COMMIT_TAG)
        parts = [f"commit {commit[:10]}" if commit else "commit unknown"]
        kind, name = self.value("dataset.kind"), self.value("dataset.name")
        parts.append(f"{name} ({kind})" if name and kind and name != kind else (kind or name or "dataset unknown"))
        for key, label in (("train.epochs", "{} epochs"), ("train.image_size", "train {} px")):
            if self.value(key) is not None:
                parts.append(label.format(self.value(key)))
        if self.value("evaluate.image_size") is not None:
            parts.append(f"eval {self.value('evaluate.image_size')} px")
        parts.append(f"{len(self.params)} setting{'' if len(self.params) == 1 else 's'} compared")
        return ", ".join(parts)


def is_recipe_param(name: str) -> bool:
    if name in VARIED or name in NOT_RECIPE:
        return False
    return name in RECIPE_PARAMS or name.startswith(RECIPE_SECTIONS)


def recipe_key(tags: dict, params: dict, with_commit: bool = True) -> RecipeKey:
    """The key of one run from its tags and params (``{name: value}``, e.g. a row of ``mlflow.search_runs``).

    ``with_commit=False`` leaves the commit out (pooling runs of several commits: the caller says so).
    """
    names = RECIPE_TAGS if with_commit else RECIPE_TAGS[1:]
    return RecipeKey(
        tuple((name, text_value(tags.get(name))) for name in names),
        # A param the run lacks is left out (search_runs fills it with NaN when another run has it).
        tuple(
            sorted(
                (name, text_value(value))
                for name, value in params.items()
                if is_recipe_param(name) and text_value(value) is not None
            )
        ),
    )


def key_of_row(row, with_commit: bool = True) -> RecipeKey:
    """The key of a ``mlflow.search_runs`` row (``tags.*`` and ``params.*`` columns)."""
    tags = {c.removeprefix("tags."): row[c] for c in row.index if c.startswith("tags.")}
    params = {c.removeprefix("params."): row[c] for c in row.index if c.startswith("params.")}
    return recipe_key(tags, params, with_commit)


def text_value(value) -> str | None:
    """A tag or param as text; None for a missing one."""
    # search_runs gives NaN / None where a run lacks a column that another run has.
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)
