"""Manifest reading and validation: clear errors that name the file and the bad key."""

from __future__ import annotations

import json

import pytest

from lambda_repro.data import DataError, load_manifest, write_manifest


def _manifest(**changes) -> dict:
    manifest = {
        "kind": "synthetic",
        "root": "data/prepared",
        "image_size": 64,
        "classes": ["n00000000", "n00000001"],
        "splits": {
            "train": {"images": 4, "path": "data/prepared/train", "skipped": 0},
            "val": {"images": 2, "path": "data/prepared/val", "skipped": 0},
        },
        "problems": [],
    }
    manifest.update(changes)
    return manifest


def test_written_manifest_reads_back_equal(tmp_path):
    path = tmp_path / "sub" / "manifest.json"
    write_manifest(_manifest(), path)
    assert load_manifest(path) == _manifest()
    assert not [p for p in path.parent.iterdir() if p.name != "manifest.json"], "no temp file left behind"


def test_missing_manifest_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"manifest not found: .*nope\.json; run the prepare stage"):
        load_manifest(tmp_path / "nope.json")


def test_invalid_json_is_a_clear_error(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "cifar"}, "'kind' is 'cifar'"),
        ({"classes": []}, "'classes' must be a non-empty list"),
        ({"classes": ["b", "a"]}, "must be sorted"),
        ({"classes": ["a", "a"]}, "duplicates"),
        ({"splits": {"train": {"images": 4, "path": "t"}}}, "missing split 'val'"),
        ({"splits": {"train": {"images": 0, "path": "t"}, "val": {"images": 1, "path": "v"}}}, "positive integer"),
        ({"problems": [{"path": "x"}]}, "needs 'path' and 'problem'"),
        ({"problems": [{"path": "x", "problem": "y", "action": "deleted"}]}, "action 'deleted'"),
    ],
)
def test_invalid_manifest_names_the_bad_key(tmp_path, changes, message):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(_manifest(**changes)))
    with pytest.raises(DataError, match=message) as err:
        load_manifest(path)
    assert str(path) in str(err.value)


def test_missing_key_is_named(tmp_path):
    manifest = _manifest()
    del manifest["root"]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="missing key 'root'"):
        load_manifest(path)
