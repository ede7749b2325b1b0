"""load_checkpoint: our format, the published format, bare state dicts, and what it refuses."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from lambda_repro.models import CheckpointError, create_model, load_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(0)
    return create_model("lambda_resnet26", num_classes=10)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_published_training_dict_with_module_prefix(tmp_path, source_model):
    optimizer = torch.optim.SGD(source_model.parameters(), lr=0.1, momentum=0.9)
    published = {
        "epoch": 130,
        "arch": "lambda_resnet26",
        "state_dict": {f"module.{k}": v for k, v in source_model.state_dict().items()},
        "best_acc1": torch.tensor(78.208),
        "optimizer": optimizer.state_dict(),
    }
    path = tmp_path / "model_best.pth.tar"
    torch.save(published, path)
    target = create_model("lambda_resnet26", num_classes=10)
    assert not _same_weights(target, source_model)
    checkpoint = load_checkpoint(target, path)
    assert _same_weights(target, source_model)
    assert checkpoint["epoch"] == 130
    assert checkpoint["arch"] == "lambda_resnet26"
    assert float(checkpoint["best_acc1"]) == pytest.approx(78.208)


def test_bare_state_dict_and_own_format(tmp_path, source_model):
    bare = tmp_path / "bare.pt"
    torch.save(source_model.state_dict(), bare)
    target = create_model("lambda_resnet26", num_classes=10)
    load_checkpoint(target, bare)
    assert _same_weights(target, source_model)

    own = tmp_path / "own.pt"
    save_checkpoint({"state_dict": source_model.state_dict(), "epoch": 3}, own)
    target = create_model("lambda_resnet26", num_classes=10)
    assert load_checkpoint(target, own)["epoch"] == 3
    assert _same_weights(target, source_model)


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"fc.weight": _RunsCode(str(marker))}}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(create_model("lambda_resnet26"), path)
    assert not marker.exists()


def test_malicious_torch_save_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "payload": _RunsCode(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(create_model("lambda_resnet26"), path)
    assert not marker.exists()


def test_mismatch_names_missing_unexpected_and_misshapen_keys(tmp_path, source_model):
    state = dict(source_model.state_dict())
    del state["layer1.0.conv2.lambda_conv.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["fc.bias"] = torch.zeros(7)
    path = tmp_path / "broken.pt"
    torch.save({"state_dict": state}, path)
    target = create_model("lambda_resnet26", num_classes=10)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target, path)
    message = str(info.value)
    assert "missing keys (1): layer1.0.conv2.lambda_conv.weight" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "fc.bias: checkpoint (7,) vs model (10,)" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items()), "a failed load changed weights"


def test_missing_and_garbage_files(tmp_path):
    model = create_model("lambda_resnet26")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(model, tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(model, garbage)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"state_dict": {"w": torch.ones(2)}, "epoch": 1}, path)

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint({"state_dict": {"w": torch.zeros(2)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"], "temporary file left behind"
