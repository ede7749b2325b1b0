"""Microbenchmarks at the real shapes of Lambda-ResNet-50's 16 lambda layers (224x224 input).

Run with ``pytest --benchmark-only`` (the default ``pytest`` run skips them). For each
distinct layer shape (grouped by shape; identical layers are benchmarked once, ``count``
says how many share it) and for forward and forward + backward:

* ``lambda-fast``: :class:`LambdaLayer` default (``"auto"``), ``lambda-reference``: the
  published formulation;
* ``conv3x3``: the ResNet-50 3x3 convolution the lambda layer replaces (stride on the
  convolution, as torchvision's ResNet-50 v1.5);
* ``mhsa-global``: 4-head self-attention over all positions (``scaled_dot_product_attention``,
  which does not materialise the attention matrix), with 1x1 q/k/v and output projections;
* ``mhsa-local7x7``: the same 4-head self-attention (same projections, same stride-2 pooling),
  but each query attends only to the keys of its 7x7 neighbourhood; keys beyond the map's
  border are masked out of the softmax (not attended as zero keys). Computed block-wise
  (7x7 query blocks against their 13x13 halo, with a mask that keeps exactly each query's
  own neighbourhood): dense matmuls instead of copying 49 neighbours per position.

Knobs (environment): ``LAMBDA_BENCH_BATCH`` (8), ``LAMBDA_BENCH_ROUNDS`` (3),
``LAMBDA_BENCH_DEVICE`` (``cuda`` if available, else ``cpu``). CUDA timings synchronise
inside the timed function; the CUDA path was never run here (no GPU was available).
``extra_info`` records device, dtype, shape, torch version, threads and peak memory
(CUDA: ``max_memory_allocated``; CPU: the process's max RSS, a high-water mark over the
whole session, so only its growth is attributable to a benchmark).
"""

from __future__ import annotations

import os
import resource

import pytest
import torch

from lambda_repro.profiling.contenders import CONTENDERS, build_contender
from lambda_repro.profiling.layer_shapes import LAMBDA_RESNET50_LAYER_SHAPES

BATCH = int(os.environ.get("LAMBDA_BENCH_BATCH", "8"))
ROUNDS = int(os.environ.get("LAMBDA_BENCH_ROUNDS", "3"))
DEVICE = torch.device(os.environ.get("LAMBDA_BENCH_DEVICE", "cuda" if torch.cuda.is_available() else "cpu"))

SHAPES = list(LAMBDA_RESNET50_LAYER_SHAPES)
SHAPE_IDS = [f"c{c}-{s}x{s}-stride{st}" for c, st, s, _ in SHAPES]


build = build_contender  # the library's contenders, shared with the profile stage's claims table


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def peak_memory_mib() -> float:
    if DEVICE.type == "cuda":
        return torch.cuda.max_memory_allocated(DEVICE) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("kind", CONTENDERS)
@pytest.mark.parametrize("mode", ["forward", "forward+backward"])
@pytest.mark.parametrize(("channels", "stride", "side", "count"), SHAPES, ids=SHAPE_IDS)
def test_layer(benchmark, kind, mode, channels, stride, side, count):
    benchmark.group = f"{channels}ch {side}x{side} stride {stride} (x{count} in lambda_resnet50)"
    torch.manual_seed(0)
    module = build(kind, channels, stride).to(DEVICE).train()
    x = torch.randn(BATCH, channels, side, side, device=DEVICE, requires_grad=mode != "forward")

    def forward() -> torch.Tensor:
        with torch.no_grad():
            out = module(x)
        synchronize()
        return out

    def forward_backward() -> torch.Tensor:
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out.sum().backward()
        synchronize()
        return out

    if DEVICE.type == "cuda":
        torch.cuda.reset_peak_memory_stats(DEVICE)
    rss_before = peak_memory_mib()
    out = benchmark.pedantic(
        forward if mode == "forward" else forward_backward, rounds=ROUNDS, iterations=1, warmup_rounds=1
    )
    benchmark.extra_info.update(
        {
            "device": str(DEVICE),
            "dtype": str(x.dtype),
            "input_shape": list(x.shape),
            "output_shape": list(out.shape),
            "layers_sharing_shape": count,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "peak_memory_mib": round(peak_memory_mib(), 1),
            "peak_memory_growth_mib": round(peak_memory_mib() - rss_before, 1),
            "peak_memory_kind": "cuda max_memory_allocated" if DEVICE.type == "cuda" else "process max RSS",
        }
    )
    # The same output shape for every contender: they are interchangeable in the block.
    assert out.shape == (BATCH, channels, side // stride, side // stride)
