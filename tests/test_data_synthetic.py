"""The embedded dataset: ImageNet's layout, varied sizes, byte-identical reruns, distinct class cues."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from lambda_repro.data import DataError
from lambda_repro.data.synthetic import SyntheticSpec, class_cues, class_names, generate_synthetic

SMALL = SyntheticSpec(classes=6, train_per_class=4, val_per_class=2, min_size=32, max_size=64)


def _file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.JPEG")}


def test_layout_is_imagenet_style_with_wnid_names(tmp_path):
    generate_synthetic(tmp_path / "d", SMALL, seed=0)
    names = class_names(6)
    assert names == ["n00000000", "n00000001", "n00000002", "n00000003", "n00000004", "n00000005"]
    for split, per_class in (("train", 4), ("val", 2)):
        assert sorted(p.name for p in (tmp_path / "d" / split).iterdir()) == names
        for wnid in names:
            assert len(list((tmp_path / "d" / split / wnid).glob("*.JPEG"))) == per_class
    assert (tmp_path / "d" / "train" / "n00000003" / "n00000003_1.JPEG").is_file()


def test_images_are_rgb_jpegs_of_varied_sizes(tmp_path):
    generate_synthetic(tmp_path / "d", SMALL, seed=0)
    sizes = set()
    for path in (tmp_path / "d").rglob("*.JPEG"):
        with Image.open(path) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB")
            assert all(32 <= side <= 64 for side in image.size)
            sizes.add(image.size)
    assert len(sizes) > 20  # 48 images, almost all of different shapes


def test_rerun_is_byte_identical_and_seed_changes_it(tmp_path):
    digest_a = generate_synthetic(tmp_path / "a", SMALL, seed=3)
    digest_b = generate_synthetic(tmp_path / "b", SMALL, seed=3)
    digest_c = generate_synthetic(tmp_path / "c", SMALL, seed=4)
    assert _file_hashes(tmp_path / "a") == _file_hashes(tmp_path / "b")
    assert digest_a == digest_b != digest_c
    assert _file_hashes(tmp_path / "a") != _file_hashes(tmp_path / "c")


def test_every_class_has_its_own_texture_and_colour_combination():
    for classes in (10, 23, 100):
        cues = [class_cues(label, classes) for label in range(classes)]
        assert len(set(cues)) == classes
    # Neither cue alone separates the 10 default classes: 2 textures x 5 colour families.
    textures = [class_cues(k, 10)[0] for k in range(10)]
    hues = [class_cues(k, 10)[1] for k in range(10)]
    assert (len(set(textures)), len(set(hues))) == (2, 5)
    assert len({class_cues(k, 100)[0] for k in range(100)}) == 5  # many classes use every texture


def test_refuses_to_write_into_an_existing_directory(tmp_path):
    with pytest.raises(DataError, match="already exists"):
        generate_synthetic(tmp_path, SMALL, seed=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"classes": 1}, "classes must be at least 2"), ({"min_size": 80}, "min_size"), ({"val_per_class": 0}, "val_per")],
)
def test_bad_parameters_name_the_param(tmp_path, changes, message):
    spec = SyntheticSpec(**{**SMALL.__dict__, **changes})
    with pytest.raises(DataError, match=f"data.synthetic.*{message}"):
        generate_synthetic(tmp_path / "d", spec, seed=0)
