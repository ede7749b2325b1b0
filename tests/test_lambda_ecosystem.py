"""The default lambda layer and model under the tools PyTorch users reach for first.

``torch.compile`` (inference and a training step), ``torch.export.export`` (also called
with grad enabled), ONNX export (dynamo) run in onnxruntime, and ``torch.jit.trace``: each
captured graph computes what eager mode computes. Graph capture takes the functional form
of the spectral formulation, so both the small-map (dense) and the large-map (spectral)
paths are captured here: small models and maps, where the point is the graph.
"""

from __future__ import annotations

import pytest
import torch

from lambda_repro.models import LambdaLayer, benchmark_formulations, create_model
from lambda_repro.models.lambda_formulations import chooser

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach() - b.detach()).norm() / b.detach().norm())


def calibrated(module: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Eval mode with BN statistics of ``x`` (a fresh model's eval output overflows otherwise)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        module.train()(x)
    return module.eval()


def small_model(side: int = 96) -> tuple[torch.nn.Module, torch.Tensor]:
    """lambda_resnet26 at ``side`` px: layer1 runs at side/4 (96 px: 24x24, spectral), the rest dense."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, side, side - 16)
    return calibrated(create_model("lambda_resnet26", num_classes=10), x), x


def layer_and_input(implementation: str, channels: int = 16, side: int = 22) -> tuple[LambdaLayer, torch.Tensor]:
    torch.manual_seed(0)
    layer = LambdaLayer(channels, implementation=implementation)
    with torch.no_grad():
        for p in layer.parameters():
            if p.dim() == 1:
                p.normal_()
    return layer, torch.randn(2, channels, side, side - 3)


def test_auto_uses_both_fast_paths_at_these_sizes():
    assert chooser.rule_formulation(22, 19) == "spectral"
    assert chooser.rule_formulation(6, 5) == "dense"


def test_graph_capture_never_times_candidates(monkeypatch):
    """Under capture the fixed rule decides: timing inside a graph would be meaningless."""
    layer, x = layer_and_input("auto")
    benchmark_formulations(layer)

    def fail(*args, **kwargs):
        raise AssertionError("timed during graph capture")

    monkeypatch.setattr(chooser.FormulationChooser, "choose", fail)
    exported = torch.export.export(layer.eval(), (x,))
    assert layer.last_formulation is None  # nothing recorded while capturing
    monkeypatch.undo()
    with torch.no_grad():
        assert rel(exported.module()(x), layer(x)) < 1e-5


@pytest.mark.parametrize("implementation", ["auto", "spectral", "dense"])
def test_export_with_grad_enabled_matches_eager_output_and_gradients(implementation):
    layer, x = layer_and_input(implementation)
    layer.eval()
    exported = torch.export.export(layer, (x,)).module()
    x_eager, x_graph = x.clone().requires_grad_(), x.clone().requires_grad_()
    expected, actual = layer(x_eager), exported(x_graph)
    assert actual.requires_grad
    assert rel(actual, expected) < 1e-5
    grad = torch.randn_like(expected)
    expected.backward(grad)
    actual.backward(grad)
    assert rel(x_graph.grad, x_eager.grad) < 1e-5


def test_spectral_functional_form_matches_the_eager_kernel_float64():
    from lambda_repro.models.lambda_formulations.spectral import (
        lambda_output_spectral,
        lambda_output_spectral_functional,
    )

    torch.manual_seed(0)
    height, width, n, heads, key_dim, value_dim = 13, 30, 2, 4, 16, 8
    tensors = [
        torch.randn(n, heads, key_dim, height * width, dtype=torch.float64, requires_grad=True),
        torch.randn(n, 1, value_dim, height * width, dtype=torch.float64, requires_grad=True),
        torch.randn(n, key_dim, value_dim, dtype=torch.float64, requires_grad=True),
        torch.randn(key_dim, 1, 1, 23, 23, dtype=torch.float64, requires_grad=True),
        torch.randn(key_dim, dtype=torch.float64, requires_grad=True),
    ]
    grad = torch.randn(n, heads, value_dim, height * width, dtype=torch.float64)
    results = []
    for formulation in (lambda_output_spectral, lambda_output_spectral_functional):
        out = formulation(*tensors, height, width)
        grads = torch.autograd.grad(out, tensors, grad)
        results.append((out, *grads))
    for eager, functional in zip(*results, strict=True):
        assert rel(functional, eager) < 1e-12


def test_jit_trace_matches_eager():
    model, x = small_model()
    traced = torch.jit.trace(model, (x,), check_trace=False)
    with torch.no_grad():
        assert rel(traced(x), model(x)) < 1e-4  # float32: the functional spectral form sums in another order


@pytest.mark.slow
def test_model_export_and_onnx_in_onnxruntime_match_eager(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="dev extra: onnx, onnxscript, onnxruntime")
    model, x = small_model()
    with torch.no_grad():
        expected = model(x)
    exported = torch.export.export(model, (x,))
    assert rel(exported.module()(x), expected) < 1e-4
    path = tmp_path / "lambda_resnet26.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert rel(torch.from_numpy(actual), expected) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("implementation", ["auto", "spectral"])
def test_compiled_layer_inference_and_training_step_match_eager(implementation):
    layer, x = layer_and_input(implementation)
    twin, _ = layer_and_input(implementation)
    compiled = torch.compile(twin)
    with torch.no_grad():
        assert rel(compiled.eval()(x), layer.eval()(x)) < 1e-5
    layer.train(), compiled.train()
    grad = torch.randn(layer(x).shape)
    layer.zero_grad()
    layer(x).backward(grad)
    compiled(x).backward(grad)
    for (name, p), q in zip(layer.named_parameters(), twin.parameters(), strict=True):
        assert rel(q.grad, p.grad) < 1e-4, name


def spectral_operands_float64(height: int = 13, width: int = 30):
    from lambda_repro.models.lambda_formulations.spectral import SpectralOperands

    torch.manual_seed(0)
    n, heads, key_dim, value_dim = 2, 4, 16, 8
    tensors = [
        torch.randn(n, heads, key_dim, height * width, dtype=torch.float64),
        torch.randn(n, 1, value_dim, height * width, dtype=torch.float64),
        torch.randn(n, key_dim, value_dim, dtype=torch.float64),
        torch.randn(key_dim, 1, 1, 23, 23, dtype=torch.float64),
        torch.randn(key_dim, dtype=torch.float64),
    ]
    ops = SpectralOperands(*tensors, height, width)
    leaves = [t.detach().requires_grad_() for t in (ops.q_rows, ops.spectra, ops.toeplitz)]
    return (*leaves, ops.inverse, ops.shared.detach().requires_grad_(), height, width, ops.block, ops.fft_length)


@pytest.mark.parametrize("width", [30, 100], ids=["dft-rows", "fft-rows"])
def test_the_spectral_custom_op_passes_opcheck_and_equals_the_autograd_function(width):
    """Schema, fake tensors and the registered backward (torch.library.opcheck), and the same values."""
    from lambda_repro.models.lambda_formulations.spectral import RowBlockContraction
    from lambda_repro.models.lambda_formulations.spectral_op import spectral_rows

    args = spectral_operands_float64(width=width)
    torch.library.opcheck(spectral_rows, args)
    out = spectral_rows(*args)
    grad = torch.randn_like(out)
    tensors = [args[i] for i in (0, 1, 2, 4)]
    grads_op = torch.autograd.grad(out, tensors, grad)
    expected = RowBlockContraction.apply(*args)
    grads_function = torch.autograd.grad(expected, tensors, grad)
    assert rel(out, expected) == 0
    for mine, theirs in zip(grads_op, grads_function, strict=True):
        assert rel(mine, theirs) == 0


def test_compile_runs_the_eager_kernel_as_one_op_in_one_graph_and_export_the_functional_form(monkeypatch):
    """fullgraph=True: no graph break; the row-block kernel ran (forward and backward); export has no custom op."""
    from lambda_repro.models.lambda_formulations import spectral_op

    calls = {"forward": 0, "backward": 0}
    real_forward, real_backward = spectral_op.row_block_forward, spectral_op.row_block_backward

    def counting(kind, function):
        def run(*args, **kwargs):
            calls[kind] += 1
            return function(*args, **kwargs)

        return run

    monkeypatch.setattr(spectral_op, "row_block_forward", counting("forward", real_forward))
    monkeypatch.setattr(spectral_op, "row_block_backward", counting("backward", real_backward))
    layer, x = layer_and_input("spectral")
    twin, _ = layer_and_input("spectral")
    compiled = torch.compile(twin, fullgraph=True)
    grad = torch.randn(layer(x).shape)
    layer.zero_grad()
    layer(x).backward(grad)
    out = compiled(x)
    out.backward(grad)
    assert calls == {"forward": 1, "backward": 1}
    assert rel(out, layer(x)) < 1e-5
    for (name, p), q in zip(layer.named_parameters(), twin.parameters(), strict=True):
        assert rel(q.grad, p.grad) < 1e-4, name
    exported = torch.export.export(layer.eval(), (x,))
    assert "lambda_repro" not in exported.graph_module.code
