"""Bad data on the ImageNet-verification path (issue 6): every fault is reported by path, never silently.

A tiny fake "ImageNet" (two classes, `expect_full_imagenet: false`) gets one oddity at a time.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from lambda_repro.data import DataError, build_dataset, eval_transform, load_manifest
from lambda_repro.data.prepare import prepare_imagenet

pytestmark = pytest.mark.faults

CLASSES = ("n01440764", "n01443537")


def _jpeg(mode: str = "RGB", size=(40, 30), fmt: str = "JPEG") -> bytes:
    colour = {"RGB": (200, 30, 30), "CMYK": (0, 200, 200, 30), "L": 128}[mode]
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def _noisy_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def imagenet(tmp_path) -> Path:
    root = tmp_path / "imagenet"
    for split, count in (("train", 3), ("val", 2)):
        for wnid in CLASSES:
            (root / split / wnid).mkdir(parents=True)
            for i in range(count):
                (root / split / wnid / f"{wnid}_{i}.JPEG").write_bytes(_jpeg())
    return root


def _prepare(root: Path, **options) -> dict:
    options.setdefault("expect_full_imagenet", False)
    return prepare_imagenet(str(root), str(root.parent / "prepared"), str(root.parent / "manifest.json"), **options)


def _add_undecodable(root: Path) -> dict[str, str]:
    """Write the three undecodable kinds; returns path -> the problem text expected for it."""
    truncated = root / "train" / CLASSES[0] / "truncated.JPEG"
    truncated.write_bytes(_noisy_jpeg()[:1500])
    empty = root / "train" / CLASSES[1] / "empty.JPEG"
    empty.write_bytes(b"")
    garbage = root / "val" / CLASSES[0] / "garbage.JPEG"
    garbage.write_bytes(b"this is not an image at all" * 10)
    return {str(truncated): "truncated", str(empty): "empty file (0 bytes)", str(garbage): "cannot identify"}


def _add_decodable_oddities(root: Path) -> dict[str, str]:
    oddities = {
        root / "train" / CLASSES[0] / "cmyk.JPEG": (_jpeg("CMYK"), "CMYK colour mode"),
        root / "train" / CLASSES[1] / "gray.JPEG": (_jpeg("L"), "L colour mode"),
        root / "val" / CLASSES[1] / "png.JPEG": (_jpeg("RGB", fmt="PNG"), "PNG data in a file named .JPEG"),
    }
    for path, (data, _) in oddities.items():
        path.write_bytes(data)
    return {str(path): problem for path, (_, problem) in oddities.items()}


def test_clean_tree_gives_a_manifest_with_counts(imagenet):
    manifest = _prepare(imagenet)
    assert manifest["kind"] == "imagenet" and manifest["classes"] == list(CLASSES)
    assert {s: manifest["splits"][s]["images"] for s in ("train", "val")} == {"train": 6, "val": 4}
    assert manifest["problems"] == []
    assert load_manifest(imagenet.parent / "manifest.json") == manifest
    # Nothing copied: the output is only a README, so DVC has an output to track.
    assert [p.name for p in (imagenet.parent / "prepared").iterdir()] == ["README.txt"]


def test_undecodable_files_fail_prepare_with_every_path(imagenet):
    expected = _add_undecodable(imagenet)
    with pytest.raises(DataError, match=r"3 undecodable image\(s\) \(set data.skip_undecodable: true") as err:
        _prepare(imagenet)
    assert len(err.value.details) == 3
    for path, problem in expected.items():
        assert path in str(err.value)
        assert any(line.startswith(path) and problem in line for line in err.value.details), (path, problem)
    assert not (imagenet.parent / "manifest.json").exists(), "no manifest for a failed check"


def test_skip_undecodable_leaves_them_out_and_lists_them(imagenet):
    expected = _add_undecodable(imagenet)
    manifest = _prepare(imagenet, skip_undecodable=True)
    skipped = {p["path"]: p["problem"] for p in manifest["problems"] if p["action"] == "skipped"}
    assert set(skipped) == set(expected)
    for path, problem in expected.items():
        assert problem in skipped[path]
    assert manifest["splits"]["train"] == {"images": 6, "path": str(imagenet / "train"), "skipped": 2}
    assert manifest["splits"]["val"]["images"] == 4 and manifest["splits"]["val"]["skipped"] == 1
    for split in ("train", "val"):
        dataset = build_dataset(manifest, split, None)
        loaded = {dataset.path(i) for i in range(len(dataset))}
        assert not loaded & set(expected)
        assert all(dataset[i][0].mode == "RGB" for i in range(len(dataset)))


def test_decodable_oddities_are_reported_and_load_as_rgb(imagenet):
    expected = _add_decodable_oddities(imagenet)
    manifest = _prepare(imagenet)
    reported = {p["path"]: p for p in manifest["problems"]}
    assert set(reported) == set(expected)
    for path, problem in expected.items():
        assert problem in reported[path]["problem"] and reported[path]["action"] == "converted"
    for split in ("train", "val"):
        dataset = build_dataset(manifest, split, eval_transform(16))
        by_path = {dataset.path(i): i for i in range(len(dataset))}
        for path in set(expected) & set(by_path):
            image, label = dataset[by_path[path]]
            assert image.shape == (3, 16, 16)
            assert label == CLASSES.index(Path(path).parent.name)
    cmyk = build_dataset(manifest, "train", None)
    cmyk_image = cmyk[
        [cmyk.path(i) for i in range(len(cmyk))].index(str(imagenet / "train" / CLASSES[0] / "cmyk.JPEG"))
    ]
    assert cmyk_image[0].mode == "RGB" and cmyk_image[0].getpixel((5, 5))[0] > 150  # CMYK (0,200,200,30) is reddish


def test_header_mode_misses_truncation_but_loading_names_the_file(imagenet):
    expected = _add_undecodable(imagenet)
    truncated = next(p for p, problem in expected.items() if problem == "truncated")
    manifest = _prepare(imagenet, verify="header", skip_undecodable=True)
    skipped = {p["path"] for p in manifest["problems"] if p["action"] == "skipped"}
    assert skipped == set(expected) - {truncated}  # zero-byte and garbage are caught from the header alone
    dataset = build_dataset(manifest, "train", None)
    with pytest.raises(DataError, match=f"cannot decode {truncated}"):
        dataset[[dataset.path(i) for i in range(len(dataset))].index(truncated)]


def test_non_image_files_are_listed_as_ignored(imagenet):
    stray = imagenet / "train" / CLASSES[0] / "notes.txt"
    stray.write_text("hello")
    manifest = _prepare(imagenet)
    assert manifest["problems"] == [
        {"path": str(stray), "problem": "not an image file (only .JPEG/.jpg/.png are loaded)", "action": "ignored"}
    ]
    assert len(build_dataset(manifest, "train", None)) == 6


def test_empty_class_folder_is_an_error_naming_it(imagenet):
    (imagenet / "val" / CLASSES[1]).joinpath(f"{CLASSES[1]}_0.JPEG").unlink()
    (imagenet / "val" / CLASSES[1]).joinpath(f"{CLASSES[1]}_1.JPEG").unlink()
    with pytest.raises(DataError, match=f"1 empty class folder\\(s\\): {imagenet / 'val' / CLASSES[1]}"):
        _prepare(imagenet)


def test_class_left_empty_by_skipping_is_an_error(imagenet):
    for i in range(2):
        (imagenet / "val" / CLASSES[1] / f"{CLASSES[1]}_{i}.JPEG").write_bytes(b"")
    with pytest.raises(DataError, match=f"no decodable image left in class folder\\(s\\): .*val/{CLASSES[1]}"):
        _prepare(imagenet, skip_undecodable=True)


def test_missing_split_is_an_error_naming_it(imagenet, tmp_path):
    (imagenet / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(DataError, match=f"missing split: {imagenet / 'val'} is not a directory"):
        _prepare(imagenet)


def test_val_classes_must_match_train(imagenet):
    (imagenet / "val" / CLASSES[1]).rename(imagenet / "val" / "n99999999")
    with pytest.raises(
        DataError, match="1 missing from val \\(n01443537\\); 1 in val but not in train \\(n99999999\\)"
    ):
        _prepare(imagenet)


def test_flat_val_folder_says_to_sort_it_into_classes(imagenet):
    for path in list((imagenet / "val").rglob("*.JPEG")):
        path.rename(imagenet / "val" / path.name)
    for wnid in CLASSES:
        (imagenet / "val" / wnid).rmdir()
    with pytest.raises(DataError, match="holds 4 images directly, not in <wnid>/ class folders"):
        _prepare(imagenet)


def test_full_imagenet_counts_are_enforced_unless_disabled(imagenet):
    with pytest.raises(DataError, match="expected 1000 classes / 1,281,167 train / 50,000 val images, found 2 / 6 / 4"):
        _prepare(imagenet, expect_full_imagenet=True)


def test_missing_root_names_the_param(tmp_path):
    with pytest.raises(DataError, match=r"dataset root not found: .*nowhere is not a directory \(data.root\)"):
        _prepare(tmp_path / "nowhere")


def test_verification_in_a_process_pool_matches_in_process(imagenet, monkeypatch):
    _add_decodable_oddities(imagenet)
    _add_undecodable(imagenet)
    in_process = _prepare(imagenet, skip_undecodable=True, workers=1)
    monkeypatch.setattr("lambda_repro.data.verify._POOL_THRESHOLD", 0)
    pooled = _prepare(imagenet, skip_undecodable=True, workers=2)
    assert json.dumps(pooled, sort_keys=True) == json.dumps(in_process, sort_keys=True)
