"""dvc.yaml as DVC reads it: which stages a change of one param reruns, and that each stage's deps are complete.

Fast (no DVC run): the params each stage lists, and the dependency graph through outputs,
give the stages ``dvc repro`` would rerun; ``tests/test_pipeline.py`` checks the same with
DVC itself on a real run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stages() -> dict[str, dict]:
    text = (PROJECT_ROOT / "dvc.yaml").read_text()
    pipeline = yaml.safe_load(text)
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    values = {**params, **{k: v for entry in pipeline.get("vars", []) for k, v in entry.items()}}

    def lookup(match: re.Match) -> str:
        node = values
        for key in match.group(1).split("."):
            node = node[key]
        return str(node)

    return yaml.safe_load(re.sub(r"\$\{([\w.]+)\}", lookup, text))["stages"]


def paths(entries: list) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}


def outputs(stage: dict) -> set[str]:
    return paths(stage.get("outs")) | paths(stage.get("metrics")) | paths(stage.get("plots"))


def rerun_by(stages: dict[str, dict], dotted: str) -> set[str]:
    """The stages that list ``dotted`` (or a section holding it), and every stage downstream of them."""
    prefixes = {".".join(dotted.split(".")[:n]) for n in range(1, dotted.count(".") + 2)}
    dirty = {name for name, stage in stages.items() if prefixes & paths(stage.get("params"))}
    while True:
        produced = set().union(*(outputs(stages[name]) for name in dirty))
        more = {name for name, stage in stages.items() if paths(stage.get("deps")) & produced} - dirty
        if not more:
            return dirty
        dirty |= more


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("train.base_lr", {"train", "evaluate", "report"}),
        ("train.epochs", {"train", "evaluate", "report"}),
        ("train.optimizer", {"train", "evaluate", "profile", "report"}),  # the profile's training step uses it
        ("profile.repeats", {"profile", "report"}),  # never retrains
        ("evaluate.batch_size", {"evaluate", "report"}),
        ("report.top1_tolerance", {"report"}),
        ("data.synthetic.classes", {"prepare", "train", "evaluate", "report"}),
        ("model.lambda_implementation", {"train", "evaluate", "profile", "report"}),
        ("preset", {"prepare", "train", "evaluate", "profile", "report"}),
    ],
)
def test_a_param_change_reruns_only_the_stages_that_read_it(stages, dotted, expected):
    assert rerun_by(stages, dotted) == expected


def test_every_stage_depends_on_its_entry_point_the_stage_helper_and_the_presets(stages):
    for name, stage in stages.items():
        script = stage["cmd"].split()[1]
        assert {script, "pipelines/_stage.py", "pipelines/presets"} <= paths(stage["deps"]), name


def test_every_listed_param_and_code_dep_exists(stages):
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    for name, stage in stages.items():
        for dotted in paths(stage.get("params")):
            node = params
            for key in dotted.split("."):
                assert key in node, f"{name}: {dotted} is not in params.yaml"
                node = node[key]
        for dep in paths(stage["deps"]):
            if dep.startswith(("lambda_repro", "pipelines")):
                assert (PROJECT_ROOT / dep).exists(), f"{name}: {dep} does not exist"


def test_the_report_depends_on_the_published_table(stages):
    assert "lambda_repro/published.py" in paths(stages["report"]["deps"])


def test_output_paths_come_from_dvc_yaml(stages):
    # Each stage is told where the metrics files are; none hard-codes `metrics/`.
    for name, stage in stages.items():
        script = PROJECT_ROOT / stage["cmd"].split()[1]
        assert '"metrics/' not in script.read_text(), f"{script.name} hard-codes a metrics path"
        if name != "prepare":
            assert "--metrics-dir metrics" in stage["cmd"], name
