"""The prepare stage's entry point: params in, dataset + manifest out, one-line errors with exit 1."""

from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lambda_repro.data import build_dataset, load_manifest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("prepare_stage", PROJECT_ROOT / "pipelines" / "prepare.py")
prepare_stage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_stage)

SMALL = {"classes": 3, "train_per_class": 4, "val_per_class": 2, "min_size": 32, "max_size": 48}


def _write_params(tmp_path: Path, **data_changes) -> None:
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["data"]["synthetic"] = dict(SMALL)
    params["data"].update(data_changes)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    _write_params(tmp_path)
    return tmp_path


def test_synthetic_run_writes_dataset_and_manifest(project, capsys):
    assert prepare_stage.main([]) == 0
    manifest = load_manifest("data/manifest.json")
    assert manifest["kind"] == "synthetic" and manifest["root"] == "data/prepared"
    assert manifest["splits"]["train"]["images"] == 12 and manifest["splits"]["val"]["images"] == 6
    assert len(build_dataset(manifest, "train", None)) == 12
    out = capsys.readouterr().out
    assert "prepare: synthetic dataset at data/prepared: 3 classes, train 12 images" in out


def test_rerun_replaces_the_dataset_with_identical_files(project):
    assert prepare_stage.main([]) == 0
    first = {p: p.read_bytes() for p in Path("data").rglob("*") if p.is_file()}
    (project / "data/prepared/train/n00000000/stale.JPEG").write_bytes(b"left over")
    assert prepare_stage.main([]) == 0
    second = {p: p.read_bytes() for p in Path("data").rglob("*") if p.is_file()}
    assert second == first  # the stale file is gone, everything else byte-identical
    assert sorted(p.name for p in Path("data").iterdir()) == ["manifest.json", "prepared"]  # no temp dirs left


def test_changing_a_param_changes_the_manifest_fingerprint(project):
    assert prepare_stage.main([]) == 0
    before = json.loads(Path("data/manifest.json").read_text())["fingerprint"]
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["seed"] = 1
    Path("params.yaml").write_text(yaml.safe_dump(params))
    assert prepare_stage.main([]) == 0
    assert json.loads(Path("data/manifest.json").read_text())["fingerprint"] != before


def test_never_deletes_a_directory_it_did_not_write(project, capsys):
    user_file = project / "data/prepared/precious.txt"
    user_file.parent.mkdir(parents=True)
    user_file.write_text("mine")
    assert prepare_stage.main([]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip().splitlines()[-1].startswith("prepare: error: data/prepared exists and was not written by prepare")
    )
    assert user_file.read_text() == "mine"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"synthetic": {**SMALL, "classes": 1}}, "data.synthetic.classes.* 2"),
        ({"synthetic": {**SMALL, "min_size": 12}}, "data.synthetic.min_size / max_size must satisfy 16 <= min_size"),
        ({"synthetic": {**SMALL, "colours": 3}}, "data.synthetic.colours"),
        ({"verify": "thorough"}, "data.verify.*thorough"),
        ({"root": "no/such/imagenet"}, "data.root.*no/such/imagenet"),
    ],
)
def test_bad_params_exit_1_with_a_one_line_error(project, capsys, changes, message):
    _write_params(project, **changes)
    assert prepare_stage.main([]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1].startswith("prepare: error: ")
    assert re.search(message, err_lines[-1]), err_lines[-1]


@pytest.mark.faults
def test_undecodable_imagenet_files_are_printed_in_full(project, capsys):
    for split in ("train", "val"):
        for wnid in ("n01", "n02"):
            folder = project / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(12):
                (folder / f"{i}.JPEG").write_bytes(b"" if split == "train" and i < 6 else _tiny_jpeg())
    _write_params(project, root="imagenet", expect_full_imagenet=False)
    assert prepare_stage.main([]) == 1
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert err_lines[-1].startswith("prepare: error: 12 undecodable image(s)")
    assert "... and 2 more" in err_lines[-1]  # the one-line error lists ten ...
    listed = [line.strip() for line in err_lines[:-1] if line.startswith("  ")]
    assert len(listed) == 12 and all(line.endswith(": empty file (0 bytes)") for line in listed)  # ... the lines all


def _tiny_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.faults
def test_skipped_converted_and_ignored_files_are_printed_by_path(project, capsys, monkeypatch):
    # 60 zero-byte images (skipped), one grayscale JPEG (converted), one text file (ignored): more than the limit.
    for split in ("train", "val"):
        for wnid in ("n01", "n02"):
            folder = project / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"ok{i}.JPEG").write_bytes(_tiny_jpeg())
    train = project / "imagenet" / "train" / "n01"
    for i in range(60):
        (train / f"empty{i:02d}.JPEG").write_bytes(b"")
    gray = io.BytesIO()
    Image.new("L", (8, 8), 7).save(gray, "JPEG")
    (train / "gray.JPEG").write_bytes(gray.getvalue())
    (train / "notes.txt").write_text("not an image")
    _write_params(project, root="imagenet", expect_full_imagenet=False, skip_undecodable=True)
    assert prepare_stage.main([]) == 0
    captured = capsys.readouterr()
    listed = [line.strip() for line in captured.err.splitlines() if line.startswith("  ")]
    manifest = json.loads((project / "data" / "manifest.json").read_text())
    assert len(manifest["problems"]) == 62
    shown = manifest["problems"][:50]
    assert listed[:50] == [f"{p['action']}: {p['path']}: {p['problem']}" for p in shown]
    assert listed[50] == "... and 12 more (all 62 are listed in data/manifest.json)"
    actions = {p["action"] for p in manifest["problems"]}
    assert actions == {"skipped", "converted", "ignored"}
    assert "problems: 1 converted, 1 ignored, 60 skipped" in captured.out
