"""Numerical health of an evaluation: non-finite logits and loss, activations out of range; flagged, never a dash."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lambda_repro.evaluation import ActivationMonitor, evaluate, stage_modules
from lambda_repro.models import create_model
from lambda_repro.reporting import ReportConfig, build_report
from lambda_repro.reporting.comparison import (
    HEALTH_UNKNOWN,
    HEALTHY,
    NOT_COMPARABLE,
    UNHEALTHY,
    compare_accuracy,
    health_verdict,
)

CPU = torch.device("cpu")


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Poison(nn.Module):
    """Turns the images whose channel 1 is set into ``value`` (NaN or inf)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        marked = x[:, 1:2].amax(dim=(2, 3), keepdim=True) > 0
        return torch.where(marked, torch.full_like(x, self.value), x)


class Staged(nn.Module):
    """Stages named like a ResNet's (layer1.0, layer1.1, fc): the label is the mean of channel 0."""

    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(*blocks)
        self.fc = nn.Linear(1, 4)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, -0.5, -2.0, -4.5]))  # logit k = k*x - k^2/2: argmax = nearest k

    def forward(self, x):
        x = self.layer1(x)
        return self.fc(x[:, :1].mean(dim=(2, 3)))


def dataset(images: int = 10, marked: int = 0) -> TensorDataset:
    labels = torch.arange(images) % 4
    x = torch.zeros(images, 2, 3, 3)
    x[:, 0] = labels.float().view(-1, 1, 1)
    x[:marked, 1] = 1.0
    return TensorDataset(x, labels)


def score(model: nn.Module, data: TensorDataset, **kwargs) -> dict:
    return evaluate(model, data, batch_size=4, device=CPU, progress=False, health=True, **kwargs)


def test_healthy_model_is_ok_with_its_activation_maxima():
    scores = score(Staged(nn.Identity(), Scale(1.0)), dataset())
    health = scores["health"]
    assert scores["top1"] == 100.0 and health["ok"] is True and health["problems"] == []
    assert health["nonfinite_logits"] == 0 and health["nonfinite_loss"] == 0
    assert health["max_abs_activation"] == {"layer1.0": 3.0, "layer1.1": 3.0, "fc": 4.5}
    assert health["nonfinite_activations"] == {}


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_injected_non_finite_images_are_counted_and_flagged(value):
    scores = score(Staged(Poison(value), Scale(1.0)), dataset(images=10, marked=3))
    health = scores["health"]
    assert health["ok"] is False
    assert health["nonfinite_logits"] == 3 and health["nonfinite_loss"] == 3
    assert math.isnan(scores["loss"])  # the mean loss over all images is not a number ...
    assert "3 of 10 images have non-finite (NaN / inf) logits" in health["problems"][0]  # ... and this says why
    # 3 images x 2x3x3 values in each block, x 4 logits in the classifier
    assert health["nonfinite_activations"] == {"layer1.0": 3 * 18, "layer1.1": 3 * 18, "fc": 3 * 4}
    assert health["max_abs_activation"]["layer1.0"] == 3.0  # the maxima are over the finite values
    assert any("non-finite activations in 3 stage(s), from layer1.0" in p for p in health["problems"])


def test_activations_out_of_range_are_flagged_by_stage():
    scores = score(Staged(nn.Identity(), Scale(1e6)), dataset())
    health = scores["health"]
    assert health["ok"] is False and health["nonfinite_logits"] == 0
    assert health["max_abs_activation"]["layer1.1"] == 3e6
    assert health["problems"] == ["activations above 10000 in 2 stage(s), from layer1.1 (largest 9e+06 at fc)"]
    relaxed = score(Staged(nn.Identity(), Scale(1e6)), dataset(), max_abs_activation=1e13)["health"]
    assert relaxed["ok"] is True and relaxed["max_abs_activation_limit"] == 1e13


def test_without_health_nothing_is_watched_and_hooks_are_removed():
    model = Staged(nn.Identity(), Scale(1.0))
    assert "health" not in evaluate(model, dataset(), batch_size=4, device=CPU, progress=False)
    score(model, dataset())
    assert all(not m._forward_hooks for m in model.modules())


def test_resnet_stages_are_its_blocks_and_the_classifier():
    names = list(stage_modules(create_model("resnet50", num_classes=10)))
    assert names[:3] == ["layer1.0", "layer1.1", "layer1.2"] and names[-2:] == ["layer4.2", "fc"]
    assert len(names) == 3 + 4 + 6 + 3 + 1
    with ActivationMonitor(create_model("lambda_resnet26", num_classes=3)) as monitor:
        assert "layer4.1" in monitor.stages


def _eval(**changes) -> dict:
    metrics = {"top1": 65.8, "top5": 97.0, "loss": None, "images": 1000, "resolution": 32, "resize": 37}
    metrics.update(model="lambda_resnet50", dataset="fashion_mnist", dataset_name="Fashion-MNIST", classes=10)
    metrics.update(epochs_trained=8)
    metrics.update(changes)
    return metrics


UNHEALTHY_HEALTH = {
    "ok": False,
    "problems": ["3 of 1000 images have non-finite (NaN / inf) logits"],
    "nonfinite_logits": 3,
    "nonfinite_loss": 3,
    "max_abs_activation_limit": 1e4,
    "max_abs_activation": {"layer3.2": 1.6e4, "layer4.1": 9.8e8, "layer4.2": 7.3e12, "fc": 1e3},
    "nonfinite_activations": {},
}


def test_health_verdict_reads_eval_json():
    bad = health_verdict(_eval(health=UNHEALTHY_HEALTH))
    assert bad.verdict == UNHEALTHY
    assert bad.lines[0] == "the eval loss is not a finite number (null in eval.json)"
    assert "3 of 1000 images have non-finite (NaN / inf) logits" in bad.lines
    assert bad.lines[-1] == "largest |activation| 7.3e+12 at layer4.2 (limit 10000)"
    healthy = {**UNHEALTHY_HEALTH, "ok": True, "problems": [], "max_abs_activation": {"fc": 12.5}}
    good = health_verdict(_eval(loss=0.41, health=healthy))
    assert good.verdict == HEALTHY and good.lines == ("largest |activation| 12.5 at fc (limit 10000)",)
    # eval.json from before the health check: a null loss is still flagged, a finite one is "not checked".
    assert health_verdict(_eval()).verdict == UNHEALTHY
    assert health_verdict(_eval(loss=0.4)).verdict == HEALTH_UNKNOWN


def test_other_datasets_are_not_imagenet_and_top5_of_10_classes_is_not_compared():
    comparison = compare_accuracy(_eval(health=UNHEALTHY_HEALTH))
    assert comparison.verdict == NOT_COMPARABLE
    assert "evaluated on Fashion-MNIST (fashion_mnist), not ImageNet" in comparison.reasons
    assert "10 classes, the published figures are over ImageNet's 1000" in comparison.reasons
    assert not any("ImageNet validation images" in reason for reason in comparison.reasons)
    top5 = comparison.metrics[1]
    assert top5.verdict == NOT_COMPARABLE and top5.note == "top-5 of 10 classes is not the 1000-class top-5"
    folder = compare_accuracy(_eval(dataset="imagefolder", dataset_name="my_photos"))
    assert "evaluated on my_photos (an image folder), not ImageNet" in folder.reasons
    subset = compare_accuracy(_eval(dataset="imagenet", dataset_name="ImageNet", classes=100, images=5000))
    assert "evaluated on 5,000 of the 50,000 ImageNet validation images" in subset.reasons
    assert subset.metrics[1].note == "top-5 of 100 classes is not the 1000-class top-5"


def test_report_verdict_box_shows_the_health_findings(tmp_path):
    (tmp_path / "metrics").mkdir()  # the other stages' files missing: listed in the report, not fatal
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps(_eval(health=UNHEALTHY_HEALTH)))
    config = ReportConfig(metrics_dir=str(tmp_path / "metrics"), output_dir=str(tmp_path / "reports"))
    result = build_report(config)
    for text in (result.markdown.read_text(), result.html.read_text()):
        assert "Numerical health of the evaluation: UNHEALTHY" in text
        assert "3 of 1000 images have non-finite (NaN / inf) logits" in text
        assert "7.3e+12 at layer4.2" in text
        assert "Fashion-MNIST (fashion_mnist), not ImageNet" in text
        assert "top-5 of 10 classes is not the 1000-class top-5" in text


def _sharded_health(rank: int, world_size: int, init_file: str, results) -> None:
    import torch.distributed as dist

    from lambda_repro.distributed import DistributedContext

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        context = DistributedContext(rank, rank, world_size, CPU, "gloo")
        # Rank 1's shard holds the images with the largest labels: the maximum must come from it.
        scores = evaluate(
            Staged(Poison(math.nan), Scale(1.0)), dataset(10, marked=3), batch_size=2, device=CPU,
            context=context, progress=False, health=True,
        )  # fmt: skip
        results[rank] = scores
    finally:
        dist.destroy_process_group()


def test_sharded_evaluation_adds_counts_and_takes_the_largest_activation(tmp_path):
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_sharded_health, args=(2, str(tmp_path / "init"), results), nprocs=2, join=True)
        results = dict(results)
    alone = score(Staged(Poison(math.nan), Scale(1.0)), dataset(10, marked=3))
    assert results[0]["health"] == results[1]["health"] == alone["health"]
    assert results[0]["health"]["nonfinite_logits"] == 3 and results[0]["top1"] == alone["top1"]
