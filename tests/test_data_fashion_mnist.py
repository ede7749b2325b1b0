"""Fashion-MNIST: the IDX reader, the ImageNet-layout writer, and the missing-package error (on tiny fake files)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lambda_repro.config import load_effective_params
from lambda_repro.data import DataError, build_dataset, load_manifest
from lambda_repro.data.fashion_mnist import DEBIAN_DIR, FILES, FashionMnistSpec, class_folder_names
from lambda_repro.data.idx import read_idx, write_idx
from lambda_repro.data.prepare import prepare_fashion_mnist

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("prepare_stage_fm", PROJECT_ROOT / "pipelines" / "prepare.py")
prepare_stage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(prepare_stage)


@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_idx_round_trip_plain_and_gzipped(tmp_path, name):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, images)
    back = read_idx(tmp_path / name)
    assert back.dtype == np.uint8 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, images)


def test_idx_header_is_the_documented_layout(tmp_path):
    # Written by hand: magic 0x00000801 (unsigned bytes, 1 dimension), 3 entries, big-endian.
    (tmp_path / "labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels-idx1-ubyte"), [7, 0, 9])
    floats = np.array([[1.5, -2.0]], dtype=np.float32)
    write_idx(tmp_path / "f.idx", floats)
    assert (tmp_path / "f.idx").read_bytes()[:12] == bytes([0, 0, 0x0D, 2, 0, 0, 0, 1, 0, 0, 0, 2])
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "bad magic number empty"),
        (b"\x1f\x8b\x08\x00", "bad magic number 1f8b0800"),
        (bytes([0, 0, 8, 3, 0, 0]), "header cut short"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2]), "2 bytes, shape (5,) needs 5"),
    ],
)
def test_malformed_idx_names_the_file_and_the_fault(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match="bad-idx1-ubyte") as err:
        read_idx(path)
    assert message in str(err.value)


def _fake_package(root: Path, train_per_class: int = 6, test_per_class: int = 3) -> None:
    """Four gzipped IDX files like the Debian package's: image i of class c is filled with 10 * c + i."""
    root.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("val", test_per_class)):
        labels = np.tile(np.arange(10, dtype=np.uint8), per_class)
        images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i] = 10 * label + i // 10
            images[i, 0, 0] = 255  # a corner pixel, so a resize has something to blend
        images_name, labels_name = FILES[split]
        with gzip.open(root / images_name, "wb") as f:
            f.write(bytes([0, 0, 8, 3]) + np.array(images.shape, dtype=">u4").tobytes() + images.tobytes())
        write_idx(root / labels_name, labels)


def test_writes_an_imagenet_layout_of_rgb_images_chosen_by_seed(tmp_path):
    _fake_package(tmp_path / "fm")
    spec = FashionMnistSpec(train_per_class=4, val_per_class=2, image_size=28, path=str(tmp_path / "fm"))
    manifest = prepare_fashion_mnist(str(tmp_path / "out"), str(tmp_path / "manifest.json"), spec, seed=3)
    assert manifest["kind"] == "fashion_mnist" and manifest["name"] == "Fashion-MNIST"
    assert manifest["classes"] == class_folder_names() and manifest["classes"][0] == "0_t-shirt_top"
    assert manifest["classes"][9] == "9_ankle_boot" and manifest["classes"] == sorted(manifest["classes"])
    assert {s: manifest["splits"][s]["images"] for s in ("train", "val")} == {"train": 40, "val": 20}
    assert manifest["problems"] == [] and manifest["image_size"] == 28
    assert load_manifest(tmp_path / "manifest.json") == manifest
    train = build_dataset(manifest, "train", None)
    for index in range(len(train)):
        image, label = train[index]
        pixels = np.asarray(image)
        assert image.mode == "RGB" and pixels.shape == (28, 28, 3)
        assert (pixels[..., 0] == pixels[..., 2]).all()  # gray in all three channels
        assert pixels[5, 5, 0] // 10 == label  # the fake image's value encodes its class: the label is right
    # Same seed, same files; another seed picks other images.
    again = prepare_fashion_mnist(str(tmp_path / "out2"), str(tmp_path / "m2.json"), spec, seed=3)
    other = prepare_fashion_mnist(str(tmp_path / "out3"), str(tmp_path / "m3.json"), spec, seed=4)
    assert again["fingerprint"] == manifest["fingerprint"] != other["fingerprint"]
    names = sorted(p.name for p in (tmp_path / "out" / "train").rglob("*.png"))
    assert names != sorted(p.name for p in (tmp_path / "out3" / "train").rglob("*.png"))


def test_resizes_to_the_requested_side(tmp_path):
    _fake_package(tmp_path / "fm")
    spec = FashionMnistSpec(train_per_class=1, val_per_class=1, image_size=32, path=str(tmp_path / "fm"))
    manifest = prepare_fashion_mnist(str(tmp_path / "out"), str(tmp_path / "manifest.json"), spec, seed=0)
    image = Image.open(next((tmp_path / "out" / "val").rglob("*.png")))
    assert image.size == (32, 32) and image.mode == "RGB" and manifest["image_size"] == 32


def test_missing_package_is_one_error_naming_the_apt_package(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere"
    params = {"seed": 0, "data": {"root": None, "output": "data/prepared", "manifest": "data/manifest.json"}}
    params["data"].update(source="fashion_mnist", fashion_mnist={"path": str(missing)})
    with pytest.raises(DataError) as err:
        prepare_stage.prepare(params)
    message = str(err.value)
    assert "\n" not in message and "apt-get install dataset-fashion-mnist" in message
    assert str(missing / "train-images-idx3-ubyte.gz") in message
    assert not (tmp_path / "data").exists()  # nothing written


@pytest.mark.skipif(not Path(DEBIAN_DIR).is_dir(), reason="dataset-fashion-mnist not installed (.ci/run installs it)")
def test_the_debian_package_reads_as_fashion_mnist(tmp_path):
    spec = FashionMnistSpec(train_per_class=2, val_per_class=1, image_size=32)
    manifest = prepare_fashion_mnist(str(tmp_path / "out"), str(tmp_path / "manifest.json"), spec, seed=0)
    assert manifest["splits"]["train"]["images"] == 20 and manifest["splits"]["val"]["images"] == 10
    assert all(name.startswith("test_") for name in (p.name for p in (tmp_path / "out" / "val").rglob("*.png")))


def test_the_preset_switches_only_the_source_and_the_sizes(tmp_path, monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT)
    switched = tmp_path / "params.yaml"
    text = (PROJECT_ROOT / "params.yaml").read_text()
    switched.write_text(text.replace("preset: null", "preset: pipelines/presets/fashion_mnist.yaml"))
    params = load_effective_params(switched)
    assert params["data"]["source"] == "fashion_mnist" and params["data"]["root"] is None
    assert params["train"]["image_size"] == params["evaluate"]["image_size"] == 32
    assert params["data"]["fashion_mnist"] == {
        "path": None,
        "train_per_class": 300,
        "val_per_class": 100,
        "image_size": 32,
    }
