"""Measure the fast lambda layer against the published formulation, in one run.

Prints the host frame first and last (sgemm and oneDNN / cuDNN 3x3-convolution GFLOP/s, the
copy bandwidth, load average: every ratio below depends on them), then tables of medians of interleaved
repetitions, so that load from other processes hits every contender alike:

1. the 16 lambda layers of Lambda-ResNet-50 at 224, forward + backward (train mode) and
   forward only (eval, no grad);
2. whole-model throughput, ``lambda_resnet50`` vs torchvision's ``resnet50``: training
   (forward, backward, SGD step) and inference (eval, no grad), in images/s, per batch
   (``--channels-last``: every model and input in that layout); ``layouts``: each model in NCHW
   and in channels_last, all four interleaved (ms per step);
3. peak training memory: max RSS of a fresh subprocess per configuration;
4. ``scaling``: the default 64-channel layer's cost per position at several map sides, with
   whole rows by a DFT GEMM, whole rows by a real FFT and the default (rows cut in tiles where
   ``spectral.row_tile`` says), interleaved (forward + backward and forward), and the spectral
   backward / forward ratio at the 7 shapes of the 16 layers;
5. ``formulations``: every exact formulation at each of the 7 shapes, training and inference,
   interleaved, against the fixed rule's pick (does the rule hold within 5%?); ``rowdft``: the
   spectral kernel's inverse row DFT (and its adjoint) on ``torch.mm`` against ``small_times_wide``
   (oneDNN on CPU float32), at the widths ``spectral`` runs at;
6. ``ops``: where each model spends a training / inference step (``torch.profiler`` top ops);
7. ``compile``: the default model, ``torch.compile`` against eager, inference and a training
   step, interleaved (compile time printed apart);
8. ``keeping`` (CPU): lambda_resnet50 training with the spectral layer's lambdas kept for the backward at
   any size (what a kept heap gets) against the size limit of glibc's default heap, beside resnet50.

Usage::

    python scripts/bench_lambda.py                          # everything (CPU: ~10-20 min on 2 cores)
    python scripts/bench_lambda.py --only layers            # layers | models | memory
    python scripts/bench_lambda.py --only models --batch 8 32 --with-reference-model
    python scripts/bench_lambda.py --only layouts --batch 8 --rounds 9     # NCHW against channels_last
    python scripts/bench_lambda.py --only scaling --only formulations   # per-position cost, the rule
    python scripts/bench_lambda.py --only compile --batch 2                # compile vs eager (minutes)
    python scripts/bench_lambda.py --device cuda --precision bf16   # GPU, bf16 autocast
    python scripts/bench_lambda.py --only models --heap default     # glibc's heap trimming, as a script of yours
    python scripts/bench_lambda.py --only keeping --batch 8 32      # lambdas kept at any size vs the CPU size limit

By default this process keeps its freed heap (``lambda_repro.process_heap``), as the stages'
processes do: on CPU, glibc otherwise hands large freed blocks back to the kernel and every
training step pays page faults for them again (batch 32: ~25% of resnet50's step).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from lambda_repro import process_heap
from lambda_repro.models import LambdaLayer, benchmark_formulations, create_model
from lambda_repro.models.lambda_formulations import chooser, spectral
from lambda_repro.models.lambda_formulations.chooser import SWITCH_MARGIN, candidate_formulations, rule_formulation
from lambda_repro.models.lambda_formulations.wide_product import small_times_wide, uses_onednn
from lambda_repro.process_heap import keep_heap
from lambda_repro.profiling.layer_shapes import LAMBDA_RESNET50_LAYER_SHAPES

LAYER_SHAPES = LAMBDA_RESNET50_LAYER_SHAPES


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def interleaved_medians(contenders: dict, rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each contender, run in turn ``rounds`` times after one warm-up."""
    for fn in contenders.values():
        fn()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


PRECISION = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str):
    dtype = PRECISION[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def host_frame(device: torch.device) -> str:
    """sgemm and 3x3-convolution GFLOP/s of this host now, the copy bandwidth, and the load average.

    The bandwidth (a 64 MiB copy: read + write) matters beside the two GEMM-bound figures: the fast lambda
    layer streams its lambdas through memory, the published one's convolution mostly computes, so on a host
    whose memory bandwidth is shared (a VM with busy neighbours) the fast layer loses more than the frame's
    GFLOP/s show."""
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    conv = nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device)
    x = torch.randn(8, 64, 56, 56, device=device)
    source = torch.randn(16 * 2**20, device=device)
    target = torch.empty_like(source)
    with torch.no_grad():
        contenders = {"sgemm": lambda: a @ b, "conv": lambda: conv(x), "copy": lambda: target.copy_(source)}
        medians = interleaved_medians(contenders, 5, device)
    sgemm = 2 * 2048**3 / medians["sgemm"] / 1e9
    conv_gflops = 2 * 8 * 64 * 64 * 9 * 56 * 56 / medians["conv"] / 1e9
    copy_gbs = 2 * source.numel() * source.element_size() / medians["copy"] / 1e9
    load = "n/a"
    with contextlib.suppress(OSError):
        load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    kind = "cuDNN" if device.type == "cuda" else "oneDNN"
    return (
        f"host frame: sgemm {sgemm:.0f} GFLOP/s, {kind} 3x3 conv {conv_gflops:.0f} GFLOP/s, "
        f"copy {copy_gbs:.0f} GB/s, load average {load}"
    )


def layout_name(memory_format: torch.memory_format) -> str:
    return "channels_last" if memory_format == torch.channels_last else "NCHW"


def layer_step(layer: nn.Module, x: torch.Tensor, precision: str = "fp32"):
    def step() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        with autocast(x.device, precision):
            out = layer(x)
        out.float().sum().backward()

    return step


def layer_forward(layer: nn.Module, x: torch.Tensor, precision: str = "fp32"):
    def step() -> None:
        with torch.no_grad(), autocast(x.device, precision):
            layer(x)

    return step


def bench_layers(
    batch: int,
    rounds: int,
    device: torch.device,
    precision: str,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> None:
    layout = layout_name(memory_format)
    for mode in ("forward + backward", "forward"):
        print(f"\n16 lambda layers of lambda_resnet50 at 224, batch {batch}, {layout}, {mode} (ms, median of {rounds})")
        print(f"{'shape (C, HxW, stride)':<24}{'count':>6}{'reference':>12}{'fast':>10}{'speed-up':>10}  auto runs")
        totals = {"reference": 0.0, "auto": 0.0}
        for channels, stride, side, count in LAYER_SHAPES:
            torch.manual_seed(0)
            reference = LambdaLayer(channels, stride, implementation="reference").to(device)
            fast = LambdaLayer(channels, stride).to(device)
            fast.load_state_dict(reference.state_dict())
            reference.to(memory_format=memory_format), fast.to(memory_format=memory_format)
            x = torch.randn(batch, channels, side, side, device=device).contiguous(memory_format=memory_format)
            x.requires_grad_(mode != "forward")
            make = layer_forward if mode == "forward" else layer_step
            if mode == "forward":
                reference.eval(), fast.eval()
            steps = {"reference": make(reference, x, precision), "auto": make(fast, x, precision)}
            medians = interleaved_medians(steps, rounds, device)
            for name in totals:
                totals[name] += count * medians[name]
            shape = f"{channels}, {side}x{side}, {stride}"
            ref_ms, fast_ms = 1e3 * medians["reference"], 1e3 * medians["auto"]
            print(
                f"{shape:<24}{count:>6}{ref_ms:>12.1f}{fast_ms:>10.1f}{ref_ms / fast_ms:>9.1f}x  "
                f"{fast.last_formulation}",
                flush=True,
            )
        ref_ms, fast_ms = 1e3 * totals["reference"], 1e3 * totals["auto"]
        print(f"{'all 16 layers':<24}{16:>6}{ref_ms:>12.1f}{fast_ms:>10.1f}{ref_ms / fast_ms:>9.1f}x")


def train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor, precision: str = "fp32"):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device, precision):
            loss = loss_fn(model(x), target)
        loss.backward()
        optimizer.step()

    return step


def infer_step(model: nn.Module, x: torch.Tensor, precision: str = "fp32"):
    def step() -> None:
        with torch.no_grad(), autocast(x.device, precision):
            model(x)

    return step


def build(name: str, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    if name == "lambda_resnet50_reference":
        return create_model("lambda_resnet50", lambda_implementation="reference").to(device)
    if name == "lambda_resnet50_measured":  # formulations timed on this host (benchmark_formulations)
        model = create_model("lambda_resnet50").to(device)
        benchmark_formulations(model)
        return model
    return create_model(name).to(device)


def bench_models(
    batch: int,
    rounds: int,
    device: torch.device,
    with_reference: bool,
    with_measured: bool,
    precision: str,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> None:
    """Every model and its input in ``memory_format`` (the pipeline's ``channels_last`` switch)."""
    names = ["lambda_resnet50", "resnet50"] + (["lambda_resnet50_reference"] if with_reference else [])
    names += ["lambda_resnet50_measured"] if with_measured else []
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=memory_format)
    target = torch.randint(0, 1000, (batch,), device=device)
    models = {name: build(name, device).to(memory_format=memory_format) for name in names}
    layout = layout_name(memory_format)
    for mode in ("train", "inference"):
        steps = {}
        for name, model in models.items():
            model.train(mode == "train")
            steps[name] = (
                train_step(model, x, target, precision) if mode == "train" else infer_step(model, x, precision)
            )
        medians = interleaved_medians(steps, rounds, device)
        baseline = batch / medians["resnet50"]
        print(f"\n{mode}, batch {batch} at 224, {precision}, {layout} (images/s, median of {rounds} interleaved steps)")
        for name in names:
            rate = batch / medians[name]
            print(f"{name:<28}{rate:>8.2f}  {rate / baseline:.2f}x resnet50", flush=True)


def bench_layouts(batch: int, rounds: int, device: torch.device, resolution: int, precision: str) -> None:
    """Each model in NCHW and in channels_last (the pipeline's ``channels_last`` switch), all four interleaved."""
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)
    layouts = (torch.contiguous_format, torch.channels_last)
    models = {
        (name, layout): build(name, device).to(memory_format=layout)
        for name in ("lambda_resnet50", "resnet50")
        for layout in layouts
    }
    for mode in ("train", "inference"):
        steps = {}
        for (name, layout), model in models.items():
            model.train(mode == "train")
            batch_x = x.contiguous(memory_format=layout)
            steps[name, layout] = (
                train_step(model, batch_x, target, precision)
                if mode == "train"
                else infer_step(model, batch_x, precision)
            )
        medians = interleaved_medians(steps, rounds, device)
        print(f"\n{mode}, batch {batch} at {resolution}, {precision} (ms per step, median of {rounds} interleaved)")
        print(f"{'model':<20}{'NCHW':>10}{'channels_last':>15}{'NCHW / channels_last':>22}")
        for name in ("lambda_resnet50", "resnet50"):
            nchw, nhwc = (medians[name, layout] for layout in layouts)
            print(f"{name:<20}{1e3 * nchw:>10.1f}{1e3 * nhwc:>15.1f}{nchw / nhwc:>21.2f}x", flush=True)


def resident_peak_mib() -> float:
    """Peak resident memory of this process (Linux VmHWM; ru_maxrss elsewhere, which a child inherits)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_resident_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # Linux: reset the peak resident set size to the current one
    except OSError:
        pass


def peak_memory_child(name: str, batch: int) -> None:
    """Run in a fresh process: peak RSS (MiB) during two training steps, and its growth, as JSON."""
    device = torch.device("cpu")
    model = build(name, device)
    step = train_step(model, torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,)))
    reset_resident_peak()
    before = resident_peak_mib()
    step()
    step()
    after = resident_peak_mib()
    print(json.dumps({"name": name, "peak_growth_mib": after - before, "max_rss_mib": after}))


def bench_memory(batch: int, heap: str) -> None:
    print(f"\npeak training memory, batch {batch} at 224, CPU (fresh process each; RSS, MiB)")
    print(f"{'model':<28}{'peak RSS':>10}{'growth in 2 steps':>20}")
    for name in ("lambda_resnet50", "lambda_resnet50_reference", "resnet50"):
        command = [sys.executable, __file__, "--memory-child", name, "--batch", str(batch), "--heap", heap]
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        print(f"{name:<28}{result['max_rss_mib']:>10.0f}{result['peak_growth_mib']:>20.0f}", flush=True)


ROW_TRANSFORMS = ("whole", "fft", "default")
"""How the scaling sweep runs the rows: ``whole`` rows by the DFT GEMM, ``fft`` whole rows by a real FFT,
``default`` what the layer picks (whole rows below ``spectral.TILE_MIN_WIDTH``, tiles from there, see
``spectral.row_tile``)."""


@contextlib.contextmanager
def row_transform(kind: str):
    """Force the spectral row transform at every width: one of ``ROW_TRANSFORMS``."""
    saved = spectral.FFT_MIN_WIDTH, spectral.TILE_MIN_WIDTH
    if kind != "default":
        spectral.FFT_MIN_WIDTH = 1 if kind == "fft" else 10**9
        spectral.TILE_MIN_WIDTH = 10**9
    try:
        yield
    finally:
        spectral.FFT_MIN_WIDTH, spectral.TILE_MIN_WIDTH = saved


def with_row_transform(kind: str, step):
    def run() -> None:
        with row_transform(kind):
            step()

    return run


SCALING_SIDES = (56, 112, 160, 224)


def bench_scaling(
    batch: int, rounds: int, device: torch.device, precision: str, sides: tuple[int, ...] = SCALING_SIDES
) -> None:
    """Per-position cost of the 64-channel spectral layer (layer1's) at each side: whole rows by GEMM or FFT,
    and the default (tiled rows where ``row_tile`` cuts them), all interleaved."""
    for mode in ("forward + backward", "forward"):
        contenders, positions = {}, {}
        for side in sides:
            torch.manual_seed(0)
            layer = LambdaLayer(64, implementation="spectral").to(device)
            x = torch.randn(batch, 64, side, side, device=device, requires_grad=mode != "forward")
            if mode == "forward":
                layer.eval()
            make = layer_forward if mode == "forward" else layer_step
            positions[side] = batch * side * side
            for kind in ROW_TRANSFORMS:
                contenders[(side, kind)] = with_row_transform(kind, make(layer, x, precision))
        medians = interleaved_medians(contenders, rounds, device)
        print(f"\n64-channel spectral layer, batch {batch}, {mode}: us per position (median of {rounds}, interleaved)")
        print(
            f"{'side':<6}{'whole rows':>11}{'FFT rows':>10}{'default':>9}  {'tile':<6}"
            f"{'default / whole':>16}{f'default / default at {sides[0]}':>25}"
        )
        per_position = {key: 1e6 * seconds / positions[key[0]] for key, seconds in medians.items()}
        at_first = per_position[(sides[0], "default")]
        for side in sides:
            whole, fft, default = (per_position[(side, kind)] for kind in ROW_TRANSFORMS)
            tile = spectral.row_tile(side, 23, spectral.row_block(side) + 22)
            print(
                f"{side:<6}{whole:>11.2f}{fft:>10.2f}{default:>9.2f}  {tile:<6}"
                f"{default / whole:>16.2f}{default / at_first:>25.2f}",
                flush=True,
            )


def bench_backward_ratio(batch: int, rounds: int, device: torch.device, precision: str) -> None:
    """Spectral layer: the backward's time over the (training) forward's, at the 7 shapes, interleaved."""
    cases = []
    for channels, stride, side, count in LAYER_SHAPES:
        torch.manual_seed(0)
        layer = LambdaLayer(channels, stride, implementation="spectral").to(device)
        x = torch.randn(batch, channels, side, side, device=device, requires_grad=True)
        cases.append((channels, stride, side, count, layer, x))
    times = {id(case[4]): ([], []) for case in cases}
    for repeat in range(rounds + 1):  # the first round warms up
        for *_, layer, x in cases if repeat % 2 == 0 else cases[::-1]:
            layer.zero_grad(set_to_none=True)
            x.grad = None
            synchronize(device)
            start = time.perf_counter()
            with autocast(device, precision):
                out = layer(x).float().sum()
            synchronize(device)
            middle = time.perf_counter()
            out.backward()
            synchronize(device)
            if repeat:
                forward, backward = times[id(layer)]
                forward.append(middle - start)
                backward.append(time.perf_counter() - middle)
    print(f"\nspectral layer, batch {batch}: training forward and backward (ms, median of {rounds}, interleaved)")
    print(f"{'shape (C, HxW, stride)':<24}{'count':>6}{'forward':>10}{'backward':>10}{'bwd/fwd':>9}")
    total_f = total_b = 0.0
    for channels, stride, side, count, layer, _ in cases:
        forward, backward = (statistics.median(v) for v in times[id(layer)])
        total_f, total_b = total_f + count * forward, total_b + count * backward
        shape = f"{channels}, {side}x{side}, {stride}"
        print(f"{shape:<24}{count:>6}{1e3 * forward:>10.1f}{1e3 * backward:>10.1f}{backward / forward:>9.2f}")
    print(f"{'all 16 layers':<24}{16:>6}{1e3 * total_f:>10.1f}{1e3 * total_b:>10.1f}{total_b / total_f:>9.2f}")


def bench_row_dft(batch: int, rounds: int, device: torch.device) -> None:
    """The spectral kernel's inverse row DFT of one row block (and its adjoint, in the backward), float32:
    ``torch.mm`` (MKL on CPU) against ``small_times_wide`` (oneDNN where ``uses_onednn``), interleaved."""
    key_dim, r = 16, 23
    print(f"\ninverse row DFT of one row block, batch {batch}, fp32 (ms, median of {rounds}, interleaved)")
    print(f"{'shape (C, W)':<18}{'product':>24}{'mm':>8}{'GFLOP/s':>9}{'wide':>8}{'GFLOP/s':>9}{'mm/wide':>9}  path")
    seen = set()
    for channels, _, side, _ in LAYER_SHAPES:
        if (channels, side) in seen or spectral.uses_fft(side) or rule_formulation(side, side) != "spectral":
            continue  # the shapes `spectral` runs at with DFT GEMM rows, once each
        seen.add((channels, side))
        rx = min(r, 2 * side - 1)
        dft = spectral.RowDFT(side, rx, torch.float32, device, spectral.circular_length(side, rx))
        columns = key_dim * spectral.row_block(side) * batch * (channels // 4)
        product = torch.randn(dft.inverse.shape[1], columns, device=device)
        grad = torch.randn(side, columns, device=device)
        flops = 2 * dft.inverse.numel() * columns
        for name, small, wide in (("inverse", dft.inverse, product), ("adjoint", dft.inverse.t(), grad)):
            contenders = {
                "mm": lambda small=small, wide=wide: torch.mm(small, wide),
                "wide": lambda small=small, wide=wide: small_times_wide(small, wide),
            }
            medians = interleaved_medians(contenders, rounds, device)
            mm, fast = medians["mm"], medians["wide"]
            path = "oneDNN" if uses_onednn(small, wide) else "mm"
            shape = f"{channels}, {side} {name}"
            size = f"({small.shape[0]}x{small.shape[1]})@({wide.shape[0]}x{wide.shape[1]})"
            print(
                f"{shape:<18}{size:>24}{1e3 * mm:>8.2f}{flops / mm / 1e9:>9.0f}{1e3 * fast:>8.2f}"
                f"{flops / fast / 1e9:>9.0f}{mm / fast:>9.2f}  {path}",
                flush=True,
            )


def bench_formulations(batch: int, rounds: int, device: torch.device, precision: str) -> None:
    """Every exact formulation per shape, training and inference: is the rule's pick within 5% of the best?"""
    for mode in ("train", "inference"):
        print(f"\nexact formulations per shape, batch {batch}, {mode} (ms, median of {rounds}, interleaved)")
        print(
            f"{'shape (C, HxW, stride)':<24}{'reference':>11}{'dense':>9}{'spectral':>10}"
            "  rule      best      rule/best"
        )
        totals = {"rule": 0.0, "best": 0.0}
        for channels, stride, side, count in LAYER_SHAPES:
            names = candidate_formulations(side, side)
            torch.manual_seed(0)
            layers = {name: LambdaLayer(channels, stride, implementation=name).to(device) for name in names}
            for layer in layers.values():
                layer.load_state_dict(layers["reference"].state_dict())
                layer.train(mode == "train")
            x = torch.randn(batch, channels, side, side, device=device, requires_grad=mode == "train")
            make = layer_step if mode == "train" else layer_forward
            medians = interleaved_medians({n: make(layer, x, precision) for n, layer in layers.items()}, rounds, device)
            rule, best = rule_formulation(side, side), min(medians, key=medians.__getitem__)
            totals["rule"] += count * medians[rule]
            totals["best"] += count * medians[best]
            cells = "".join(
                f"{1e3 * medians[n]:>{w}.1f}" if n in medians else f"{'-':>{w}}"
                for n, w in (("reference", 11), ("dense", 9), ("spectral", 10))
            )
            ratio = medians[rule] / medians[best]
            verdict = "holds" if ratio <= 1 + SWITCH_MARGIN else "DOES NOT HOLD"
            shape = f"{channels}, {side}x{side}, {stride}"
            print(f"{shape:<24}{cells}  {rule:<10}{best:<10}{ratio:.3f} {verdict}", flush=True)
        ratio = totals["rule"] / totals["best"]
        print(
            f"all 16 layers (count-weighted): rule {1e3 * totals['rule']:.1f} ms, best {1e3 * totals['best']:.1f} ms, "
            f"rule/best {ratio:.3f}"
        )


def bench_compile(
    batch: int, rounds: int, device: torch.device, precision: str, resolution: int, with_functional: bool
) -> None:
    """The default model compiled (inductor, default mode) against eager: inference and a training step.

    ``with_functional`` adds a compiled twin that captures the spectral formulation as plain tensor
    ops (what export sees) instead of the eager kernel as one custom op (what compile runs).
    """
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)
    variants = {"compiled": True, **({"compiled, functional spectral": False} if with_functional else {})}
    for mode in ("inference", "train"):
        eager = build("lambda_resnet50", device).train(mode == "train")

        def make(model: nn.Module, mode: str = mode):
            return train_step(model, x, target, precision) if mode == "train" else infer_step(model, x, precision)

        steps = {"eager": make(eager)}
        for name, as_op in variants.items():
            step = make(torch.compile(build("lambda_resnet50", device).train(mode == "train")))
            steps[name] = with_spectral_capture(as_op, step)
            start = time.perf_counter()
            steps[name]()  # compiles
            print(f"\n{name} ({mode}): first call (compiling) {time.perf_counter() - start:.1f} s", flush=True)
        medians = interleaved_medians(steps, rounds, device)
        print(f"{mode}, batch {batch} at {resolution}, {precision}, ms per step (median of {rounds}, interleaved):")
        for name, seconds in medians.items():
            print(f"  {name:<32}{1e3 * seconds:>9.1f}  {seconds / medians['eager']:.2f}x eager's time", flush=True)


def with_spectral_capture(as_op: bool, step):
    """Run ``step`` with compile capturing the spectral kernel as one op (True) or as plain tensor ops."""

    def run() -> None:
        saved = chooser.COMPILE_SPECTRAL_AS_OP
        chooser.COMPILE_SPECTRAL_AS_OP = as_op
        try:
            step()
        finally:
            chooser.COMPILE_SPECTRAL_AS_OP = saved

    return run


def with_lambda_size_limit(step):
    """Run ``step`` as in a process with glibc's default heap: lambdas over ``KEEP_LAMBDAS_MAX_BYTES_CPU`` are
    rebuilt in the backward (the heap this process keeps stays kept; only the spectral layer's choice changes)."""

    def run() -> None:
        saved = process_heap.heap_kept
        process_heap.heap_kept = lambda: False
        try:
            step()
        finally:
            process_heap.heap_kept = saved

    return run


def bench_keeping(batch: int, rounds: int, device: torch.device, precision: str) -> None:
    """lambda_resnet50 training with its lambdas kept at any size (a kept heap) against the CPU size limit."""
    x = torch.randn(batch, 3, 224, 224, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)
    models = {name: build(name.split(" ")[0], device) for name in ("lambda_resnet50 keep", "lambda_resnet50 limit")}
    models["resnet50"] = build("resnet50", device)
    steps = {name: train_step(model.train(), x, target, precision) for name, model in models.items()}
    steps["lambda_resnet50 limit"] = with_lambda_size_limit(steps["lambda_resnet50 limit"])
    medians = interleaved_medians(steps, rounds, device)
    limit_mib = spectral.KEEP_LAMBDAS_MAX_BYTES_CPU / 2**20
    print(
        f"\ntrain, batch {batch} at 224, {precision}: lambdas kept at any size or up to {limit_mib:.0f} MiB per layer"
    )
    print(f"(ms per step, median of {rounds} interleaved; heap {'kept' if process_heap.heap_kept() else 'default'})")
    for name, seconds in medians.items():
        print(f"{name:<28}{1e3 * seconds:>9.0f}  {medians['resnet50'] / seconds:.3f}x resnet50", flush=True)


def bench_ops(batch: int, device: torch.device, precision: str, rows: int = 18) -> None:
    """Where each model spends a step (torch.profiler, self time per op), training and inference."""
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch, 3, 224, 224, device=device)
    target = torch.randint(0, 1000, (batch,), device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for mode in ("train", "inference"):
        for name in ("lambda_resnet50", "resnet50"):
            model = build(name, device).train(mode == "train")
            step = train_step(model, x, target, precision) if mode == "train" else infer_step(model, x, precision)
            step()  # warm-up
            with profile(activities=activities) as prof:
                step()
                synchronize(device)
            key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
            print(f"\n{name}, {mode}, batch {batch} at 224: top ops by self time")
            print(prof.key_averages().table(sort_by=key, row_limit=rows), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=(
            "layers",
            "models",
            "layouts",
            "memory",
            "scaling",
            "formulations",
            "rowdft",
            "compile",
            "ops",
            "keeping",
        ),
        action="append",
    )
    parser.add_argument("--resolution", type=int, default=224, help="input side of --only compile and layouts")
    parser.add_argument("--compile-functional", action="store_true", help="compile: also the functional spectral")
    parser.add_argument("--batch", type=int, nargs="+", default=[8], help="one or more batch sizes")
    parser.add_argument("--precision", choices=sorted(PRECISION), default="fp32", help="autocast dtype")
    parser.add_argument("--with-measured", action="store_true", help="also lambda_resnet50 with measured choices")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved repetitions per contender")
    parser.add_argument("--sides", type=int, nargs="+", default=list(SCALING_SIDES), help="scaling: map sides")
    parser.add_argument("--with-reference-model", action="store_true", help="also time the whole reference model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--heap",
        choices=("keep", "default"),
        default="keep",
        help="keep: this process keeps its freed heap, as the stages' processes do (lambda_repro.process_heap); "
        "default: glibc's own trimming (what a script of your own gets)",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="layers, models: layers, models and inputs channels_last (the pipeline's channels_last: auto on CPU)",
    )
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    heap = keep_heap() if args.heap == "keep" else {"heap": "default"}
    if args.memory_child:
        peak_memory_child(args.memory_child, args.batch[0])
        return
    device = torch.device(args.device)
    parts = args.only or ["layers", "models", "memory"]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, device {device}, threads {threads}, {args.precision}, heap {heap['heap']}")
    print(host_frame(device), flush=True)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    for batch in args.batch:
        if "layers" in parts:
            bench_layers(batch, args.rounds, device, args.precision, layout)
        if "models" in parts:
            bench_models(
                batch, args.rounds, device, args.with_reference_model, args.with_measured, args.precision, layout
            )
        if "layouts" in parts:
            bench_layouts(batch, args.rounds, device, args.resolution, args.precision)
        if "memory" in parts and device.type == "cpu":
            bench_memory(batch, args.heap)
        if "scaling" in parts:
            bench_scaling(batch, args.rounds, device, args.precision, tuple(args.sides))
            bench_backward_ratio(batch, args.rounds, device, args.precision)
        if "formulations" in parts:
            bench_formulations(batch, args.rounds, device, args.precision)
        if "rowdft" in parts:
            bench_row_dft(batch, args.rounds, device)
        if "ops" in parts:
            bench_ops(batch, device, args.precision)
        if "keeping" in parts and device.type == "cpu":
            bench_keeping(batch, args.rounds, device, args.precision)
        if "compile" in parts:
            bench_compile(batch, args.rounds, device, args.precision, args.resolution, args.compile_functional)
    print("\n" + host_frame(device))


if __name__ == "__main__":
    main()
