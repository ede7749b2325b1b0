"""build_dataset: labels follow the manifest's sorted classes; skipped files are left out; workers can load it."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from lambda_repro.data import DataError, build_dataset, eval_transform, load_manifest
from lambda_repro.data.prepare import prepare_synthetic
from lambda_repro.data.synthetic import SyntheticSpec

SPEC = SyntheticSpec(classes=3, train_per_class=4, val_per_class=2, min_size=32, max_size=48)


@pytest.fixture
def manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the manifest's paths are relative, as in the pipeline
    prepare_synthetic("data/prepared", "data/manifest.json", SPEC, seed=0)
    return load_manifest("data/manifest.json")


def test_labels_index_the_sorted_classes(manifest):
    dataset = build_dataset(manifest, "train", None)
    assert len(dataset) == 12
    for i in range(len(dataset)):
        wnid = dataset.path(i).split("/")[-2]
        assert int(dataset.labels[i]) == manifest["classes"].index(wnid)
    image, label = dataset[5]
    assert image.mode == "RGB" and label == 1


def test_yields_normalised_tensors_through_a_worker_process(manifest):
    dataset = build_dataset(manifest, "val", eval_transform(32))
    restored = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(restored[0][0], dataset[0][0])
    batches = list(DataLoader(dataset, batch_size=6, num_workers=1))
    assert batches[0][0].shape == (6, 3, 32, 32)
    assert batches[0][1].tolist() == [0, 0, 1, 1, 2, 2]


def test_excludes_files_the_manifest_lists_as_skipped(manifest):
    dropped = build_dataset(manifest, "train", None).path(0)
    manifest["problems"].append({"path": dropped, "problem": "undecodable: test", "action": "skipped"})
    manifest["problems"].append({"path": dropped.replace("_0", "_1"), "problem": "CMYK", "action": "converted"})
    manifest["splits"]["train"]["images"] = 11
    dataset = build_dataset(manifest, "train", None)
    assert len(dataset) == 11 and dropped not in {dataset.path(i) for i in range(11)}


def test_tree_changed_since_prepare_is_an_error(manifest, tmp_path):
    (tmp_path / "data/prepared/train/n00000001/n00000001_2.JPEG").unlink()
    with pytest.raises(DataError, match="lists 12 usable images but 11 are there now"):
        build_dataset(manifest, "train", None)


def test_unknown_split_and_unknown_class_folder_are_errors(manifest, tmp_path):
    with pytest.raises(DataError, match="unknown split 'test'"):
        build_dataset(manifest, "test", None)
    (tmp_path / "data/prepared/val/n09999999").mkdir()
    with pytest.raises(DataError, match="class folders not in the manifest: n09999999"):
        build_dataset(manifest, "val", None)
