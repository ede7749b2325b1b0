"""Why does a trained model's eval-mode output blow up? Per-stage max |activation| under BatchNorm variants.

Runs the val split through the checkpoint's model several ways and prints, per variant, the
largest |activation| of every residual block, the images with non-finite logits, top-1 and
the loss::

    python scripts/diagnose_activations.py --checkpoint checkpoints/last.pt --model lambda_resnet50 \\
        --manifest data/manifest.json --image-size 32 [--json out.json]

Variants (each on a fresh copy of the trained model):

* ``eval``: as evaluated, BatchNorm with its running statistics;
* ``batch_stats``: every BatchNorm normalises with the batch's own statistics (train-mode BN, running
  statistics untouched): the statistics the network was trained with;
* ``lambda_bn_batch_stats`` / ``block_bn_batch_stats``: batch statistics only in the lambda layers'
  ``norm_q`` / ``norm_v``, or only in the other BatchNorms;
* ``recalibrated_train_aug`` / ``recalibrated``: running statistics recomputed (cumulative average,
  no gradient) over ``--calibration-images`` training images with the training augmentation, or with
  the eval preprocessing, then eval mode;
* ``no_crop``: eval mode, val images resized to the crop size (no 256/224 centre crop).

It also prints, per BatchNorm, how far its running variance is from the variance it sees in
eval mode on val images (worst first), and checks how a lambda layer's eval-mode output scales
with its input (degree 2: scaling the input by 2 scales the output by 4, where a convolution's
scales by 2), which is why a mismatch compounds with depth.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402

from lambda_repro.data import build_dataset, eval_transform, load_manifest, train_transform  # noqa: E402
from lambda_repro.evaluation import evaluate, model_for_checkpoint  # noqa: E402
from lambda_repro.models import LambdaLayer  # noqa: E402


def shuffled(dataset, images: int | None = None) -> Subset:
    """A fixed random order: the splits are sorted by class, and a batch of one class has no representative
    statistics (batch-statistics variants and recalibration would measure within-class variance only)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    return Subset(dataset, order[:images])


def lambda_norms(model: nn.Module) -> set[nn.Module]:
    return {m for layer in model.modules() if isinstance(layer, LambdaLayer) for m in (layer.norm_q, layer.norm_v)}


def use_batch_stats(model: nn.Module, which: set[nn.Module] | None = None) -> nn.Module:
    """Batch statistics in the chosen BatchNorms (all by default), leaving their running statistics as they are."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and (which is None or module in which):
            # Without running statistics BatchNorm normalises by the batch's, in eval mode too.
            module.running_mean = module.running_var = None
    return model


def recalibrate(model: nn.Module, dataset, images: int, batch_size: int) -> nn.Module:
    """Recompute every BatchNorm's running statistics as the cumulative average over ``images`` images."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    loader = DataLoader(shuffled(dataset, images), batch_size=batch_size, shuffle=False)
    model.train()
    with torch.no_grad():
        for batch, _ in loader:
            model(batch)
    return model.eval()


def variance_mismatch(model: nn.Module, dataset, batch_size: int, top: int) -> list[tuple[str, float]]:
    """Per BatchNorm: max over channels of |log10(variance of its input on val images / its running variance)|,
    worst first; BatchNorms whose input is already non-finite are left out."""
    observed: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):

            def hook(mod, inputs, _out, name=name):
                x = inputs[0].detach().double()
                observed.setdefault(name, []).append(x.transpose(0, 1).reshape(x.shape[1], -1))

            handles.append(module.register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        batch = next(iter(DataLoader(dataset, batch_size=batch_size, shuffle=False)))[0]
        model(batch)
    for handle in handles:
        handle.remove()
    modules = dict(model.named_modules())
    ratios = []
    for name, chunks in observed.items():
        values = torch.cat(chunks, dim=1)
        seen = values.var(dim=1).clamp_min(1e-30)
        running = modules[name].running_var.double().clamp_min(1e-30)
        log_ratio = torch.log10(seen / running)
        if torch.isfinite(log_ratio).all():  # a stage fed NaN / inf has no variance to compare
            ratios.append((name, float(log_ratio.abs().max())))
    return sorted(ratios, key=lambda item: -item[1])[:top]


def lambda_scaling_degree(model: nn.Module, dataset) -> dict[str, float]:
    """log2(|f(2x)| / |f(x)|) of each lambda layer in eval mode, on its real input: 2 = quadratic, 1 = linear."""
    inputs: dict[str, torch.Tensor] = {}

    def keep_input(name: str):
        def hook(_module, args, _out) -> None:  # returns None: a forward hook's return value replaces the output
            inputs.setdefault(name, args[0].detach())

        return hook

    handles = [
        module.register_forward_hook(keep_input(name))
        for name, module in model.named_modules()
        if isinstance(module, LambdaLayer)
    ]
    model.eval()
    with torch.no_grad():
        model(next(iter(DataLoader(dataset, batch_size=16, shuffle=False)))[0])
        for handle in handles:
            handle.remove()
        modules = dict(model.named_modules())
        return {
            name: math.log2(float(modules[name](2 * x).norm() / modules[name](x).norm())) for name, x in inputs.items()
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", default="data/manifest.json")
    parser.add_argument("--image-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--calibration-images", type=int, default=2000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    manifest = load_manifest(args.manifest)
    trained, _ = model_for_checkpoint(args.checkpoint, args.model, manifest["classes"])
    trained.eval()
    size = args.image_size
    val = shuffled(build_dataset(manifest, "val", eval_transform(size)))
    val_no_crop = shuffled(build_dataset(manifest, "val", eval_transform(size, resize_size=size)))
    train_aug = build_dataset(manifest, "train", train_transform(size))
    train_plain = build_dataset(manifest, "train", eval_transform(size))

    def fresh() -> nn.Module:
        return copy.deepcopy(trained)

    def block_norms(model: nn.Module) -> set[nn.Module]:
        inner = lambda_norms(model)
        return {m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m not in inner}

    variants = {
        "eval": (fresh, val),
        "batch_stats": (lambda: use_batch_stats(fresh()), val),
        "lambda_bn_batch_stats": (lambda: (lambda m: use_batch_stats(m, lambda_norms(m)))(fresh()), val),
        "block_bn_batch_stats": (lambda: (lambda m: use_batch_stats(m, block_norms(m)))(fresh()), val),
        "recalibrated_train_aug": (
            lambda: recalibrate(fresh(), train_aug, args.calibration_images, args.batch_size),
            val,
        ),
        "recalibrated": (lambda: recalibrate(fresh(), train_plain, args.calibration_images, args.batch_size), val),
        "no_crop": (fresh, val_no_crop),
    }
    results = {}
    for name, (build, dataset) in variants.items():
        started = time.perf_counter()
        model = build()
        scores = evaluate(
            model, dataset, batch_size=args.batch_size, device=torch.device("cpu"), progress=False, health=True
        )
        results[name] = scores
        activations = scores["health"]["max_abs_activation"]
        stages = "  ".join(f"{stage}={value:.2g}" for stage, value in activations.items() if value is not None)
        print(
            f"{name:24s} top-1 {scores['top1']:5.1f}%  loss {scores['loss']:.4g}  "
            f"non-finite logits {scores['health']['nonfinite_logits']}  ({time.perf_counter() - started:.0f} s)\n"
            f"    {stages}",
            flush=True,
        )
    mismatch = variance_mismatch(copy.deepcopy(trained), val, args.batch_size, top=8)
    print("BatchNorms whose running variance is furthest from what they see on val images (|log10 ratio|):")
    for name, worst in mismatch:
        print(f"    {name:32s} {worst:.2f}")
    degrees = lambda_scaling_degree(copy.deepcopy(trained), val)
    print("lambda layers' eval-mode degree in their input (2 = doubling the input quadruples the output):")
    print("    " + "  ".join(f"{name}={degree:.2f}" for name, degree in degrees.items()))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"variants": results, "bn_variance_mismatch": mismatch, "lambda_degree": degrees}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
