"""lambda-repro validate / predict / benchmark on a tiny checkpoint built here (resnet50, 3 classes, 32 px).

The classifier is zeroed and its bias set, so the logits are the bias for every image: the
expected top-1, top-5 and probabilities are known exactly.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from lambda_repro.cli import main
from lambda_repro.commands.benchmark import combine_rounds, interleaved_schedule
from lambda_repro.models import create_model, save_checkpoint
from lambda_repro.profiling import count_params

CLASSES = ["cat", "dog", "emu"]  # recorded order; the bias favours "emu"
BIAS = torch.tensor([0.5, -1.0, 3.0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("resnet50", num_classes=3)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.copy_(BIAS)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint({"state_dict": model.state_dict(), "arch": "resnet50", "classes": CLASSES, "epoch": 1}, path)
    return str(path)


def _image(path, colour, size=(40, 36)):
    Image.new("RGB", size, colour).save(path)
    return str(path)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """train/ + val/ with the classes as folders; val holds 2 cat, 1 dog, 3 emu images."""
    root = tmp_path_factory.mktemp("tree")
    for split, counts in (("train", {"cat": 1, "dog": 1, "emu": 1}), ("val", {"cat": 2, "dog": 1, "emu": 3})):
        for name, count in counts.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                _image(root / split / name / f"{i}.png", (40 * i, 80, 120))
    return root


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_scores_by_class_name(capsys, checkpoint, image_tree):
    code, out, err = _run(
        capsys, "validate", checkpoint, str(image_tree), "--img-size", "32", "--workers", "0", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["data"].endswith("val")  # a train/ + val/ tree is read from val/
    assert result["images"] == 6 and result["classes"] == 3
    assert result["top1"] == pytest.approx(50.0)  # the 3 emu images of 6
    assert result["top5"] == pytest.approx(100.0)
    expected_loss = -torch.log_softmax(BIAS, 0)[[0, 0, 1, 2, 2, 2]].mean().item()
    assert result["loss"] == pytest.approx(expected_loss, abs=1e-4)
    assert (result["img_size"], result["resize"]) == (32, 37)

    # A subset of the classes is scored by name: only the dog folder, so no image is right.
    code, out, _ = _run(capsys, "validate", checkpoint, str(image_tree / "val"), "--img-size", "32", "--workers", "0",
                        "--resize", "48", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["top1"] == pytest.approx(50.0) and json.loads(out)["resize"] == 48


def test_validate_bad_input_is_one_line_and_exit_1(capsys, checkpoint, image_tree, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    _image(flat / "a.png", (1, 2, 3))
    other = tmp_path / "other"
    (other / "cat").mkdir(parents=True)
    (other / "wolf").mkdir()
    _image(other / "cat" / "a.png", (1, 2, 3))
    _image(other / "wolf" / "a.png", (1, 2, 3))
    cases = {
        (checkpoint, str(tmp_path / "nowhere")): "data folder not found",
        (str(tmp_path / "missing.pt"), str(image_tree)): "checkpoint not found",
        (checkpoint, str(flat)): "not in <wnid>/ class folders",
        (checkpoint, str(other)): "1 of the 2 class folders",
    }
    for (ckpt, data), expected in cases.items():
        code, out, err = _run(capsys, "validate", ckpt, data, "--img-size", "32", "--workers", "0")
        assert code == 1, (ckpt, data, out)
        assert expected in err and err.startswith("lambda-repro validate: error:")
        assert err.count("\n") == 1 and "Traceback" not in err

    # A file that fails to decode inside a loader worker: its path, on one line, without the worker's traceback.
    corrupt = tmp_path / "corrupt"
    (corrupt / "cat").mkdir(parents=True)
    (corrupt / "cat" / "broken.JPEG").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, _, err = _run(capsys, "validate", checkpoint, str(corrupt), "--img-size", "32", "--workers", "1")
    assert code == 1 and "cannot decode" in err and "broken.JPEG" in err
    assert err.count("\n") == 1 and "Traceback" not in err and "worker process" not in err


def test_validate_checkpoint_without_class_names_uses_sorted_folders(capsys, checkpoint, image_tree, tmp_path):
    bare = tmp_path / "published_style.pth.tar"
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    torch.save({"arch": "resnet50", "state_dict": {f"module.{k}": v for k, v in state.items()}}, bare)
    code, out, _ = _run(capsys, "validate", str(bare), str(image_tree), "--img-size", "32", "--workers", "0")
    assert code == 0
    assert "top-1 50.000 %" in out and "sorted folder names" in out  # index 2 is "emu" in sorted order too
    # 2 class folders for a 3-output checkpoint without names: nothing to match them by.
    two = tmp_path / "two"
    for name in ("cat", "dog"):
        (two / name).mkdir(parents=True)
        _image(two / name / "a.png", (9, 9, 9))
    code, _, err = _run(capsys, "validate", str(bare), str(two), "--img-size", "32", "--workers", "0")
    assert code == 1 and "2 class folders but the checkpoint has 3 outputs" in err


def test_predict_top_labels_and_probabilities(capsys, checkpoint, image_tree, tmp_path):
    images = [str(image_tree / "val" / "cat" / "0.png"), _image(tmp_path / "big.jpg", (200, 10, 10), (300, 200))]
    code, out, err = _run(capsys, "predict", checkpoint, *images, "--img-size", "32", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    probabilities = torch.softmax(BIAS, 0).tolist()
    for row, image in zip(rows, images, strict=True):
        assert row["image"] == image
        assert [t["label"] for t in row["top"]] == ["emu", "cat", "dog"]  # top-5 of 3 classes: all 3, best first
        assert [t["probability"] for t in row["top"]] == pytest.approx([probabilities[i] for i in (2, 0, 1)])

    labels = tmp_path / "labels.txt"
    labels.write_text("tabby\nbeagle\nemu bird\n")
    code, out, _ = _run(capsys, "predict", checkpoint, images[0], "--img-size", "32", "--top-k", "1", "--labels",
                        str(labels))  # fmt: skip
    assert code == 0
    assert out.splitlines() == [images[0], f"  1. {'emu bird':<24} {100 * probabilities[2]:6.2f} %"]


def test_predict_bad_input_is_one_line_and_exit_1(capsys, checkpoint, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    good = _image(tmp_path / "ok.png", (1, 1, 1))
    short_labels = tmp_path / "labels.txt"
    short_labels.write_text("one\n")
    cases = [
        ((checkpoint, str(tmp_path / "missing.png")), "image not found"),
        ((checkpoint, str(text)), "is not an image that can be decoded"),
        ((str(text), good), "notes.jpg"),  # a file that is no checkpoint
        ((checkpoint, good, "--labels", str(short_labels)), "has 1 labels but the checkpoint has 3 classes"),
        ((checkpoint, good, "--device", "cuda:0"), "torch sees no CUDA device"),
    ]
    if torch.cuda.is_available():
        cases.pop()
    for argv, expected in cases:
        code, _, err = _run(capsys, "predict", *argv, "--img-size", "32")
        assert code == 1, argv
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_interleaved_schedule_and_rounds_combined():
    assert interleaved_schedule(["a", "b"], 3) == ["a", "b", "b", "a", "a", "b"]
    assert interleaved_schedule(["a"], 2) == ["a", "a"]

    def measured(train, infer, latency, peak):
        return {
            "model": "m", "params": 5, "macs": 7, "flops": 14, "macs_resolution": 224, "memory_kind": "rss",
            "train": {"bs8": {"median": train}}, "inference": {"bs8": {"median": infer}, "bs1": {"error": "oom"}},
            "latency_ms": {"p50": latency}, "peak_memory_mb": {"train": peak},
        }  # fmt: skip

    combined = combine_rounds([measured(3.0, 10.0, 5.0, 100.0), measured(1.0, 30.0, 7.0, 300.0),
                               measured(2.0, 20.0, 6.0, 200.0)])  # fmt: skip
    assert combined["train"]["bs8"] == {"median": 2.0, "min": 1.0, "max": 3.0, "rounds": 3}
    assert combined["inference"]["bs8"]["median"] == 20.0 and combined["inference"]["bs1"] == {"error": "oom"}
    assert combined["latency_ms_p50"] == 6.0 and combined["peak_memory_mb"]["train"] == 200.0


def test_benchmark_against_baseline_with_gpu_switches_forced_on_cpu(capsys, tmp_path):
    out_json = tmp_path / "bench.json"
    code, out, err = _run(
        capsys, "benchmark", "lambda_resnet26", "--baseline", "resnet50", "--rounds", "2", "--resolution", "32",
        "--train-batch-sizes", "2", "--inference-batch-sizes", "2", "--warmup", "0", "--repeats", "1",
        "--min-repeats", "1", "--latency-repeats", "1", "--macs-resolution", "32", "--threads", "1",
        "--precision", "bf16", "--channels-last", "on", "--device", "cpu", "--in-process", "--json", str(out_json),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out_json.read_text())
    results = report["results"]
    assert list(results) == ["lambda_resnet26", "resnet50"]
    assert results["resnet50"]["params"] == count_params(create_model("resnet50"))
    assert results["lambda_resnet26"]["params"] == count_params(create_model("lambda_resnet26"))
    assert report["settings"]["precision"] == "bf16" and report["settings"]["channels_last"] is True
    assert report["settings"]["rounds"] == 2
    for entry in results.values():
        assert entry["train"]["bs2"]["rounds"] == 2 and entry["train"]["bs2"]["median"] > 0
        assert math.isfinite(entry["inference"]["bs2"]["median"])
    ratio = results["lambda_resnet26"]["train"]["bs2"]["median"] / results["resnet50"]["train"]["bs2"]["median"]
    row = next(line for line in out.splitlines() if line.startswith("lambda_resnet26"))
    assert f"({ratio:.2f}x)" in row
    assert "2 interleaved rounds" in out


def test_benchmark_bad_option_names_the_option(capsys):
    code, _, err = _run(capsys, "benchmark", "resnet50", "--repeats", "0", "--in-process")
    assert code == 1 and "--repeats" in err and err.count("\n") == 1
    if not torch.cuda.is_available():
        code, _, err = _run(capsys, "benchmark", "resnet50", "--device", "cuda", "--in-process")
        assert code == 1 and "torch sees no CUDA device" in err and err.count("\n") == 1


def test_every_command_has_help(capsys):
    for command in ("summary", "validate", "benchmark", "predict", "mlflow-replay"):
        with pytest.raises(SystemExit) as info:
            main([command, "--help"])
        assert info.value.code == 0
        assert f"usage: lambda-repro {command}" in capsys.readouterr().out
