"""The fast formulations of the lambda layer compute the published function, and its gradients.

Every formulation is compared with ``"reference"`` (the published conv3d + einsum): in
float64 to rounding error (outputs and every gradient), in float32 within 1e-4 relative
at the real shapes of Lambda-ResNet-50, and against the golden fixtures of the published
code. Speed is measured by ``scripts/bench_lambda.py`` and ``tests/benchmarks``, not here.
"""

from __future__ import annotations

import pytest
import torch
from conftest import calibrated_outputs, relative_error
from fill import fill_state_dict

from lambda_repro.models import LambdaLayer
from lambda_repro.models.lambda_formulations import spectral as spectral_module
from lambda_repro.models.lambda_formulations.chooser import choose_formulation, lambda_output
from lambda_repro.models.lambda_formulations.dense import relative_position_rows
from lambda_repro.models.lambda_formulations.spectral import RowDFT, lambda_output_spectral, row_block
from lambda_repro.models.lambda_layer import IMPLEMENTATIONS

FAST = ("dense", "spectral", "auto")


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def outputs_and_gradients(layer: LambdaLayer, x: torch.Tensor, grad: torch.Tensor) -> dict[str, torch.Tensor]:
    """Train-mode output and the gradients of the input and of every parameter."""
    layer.train()
    layer.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = layer(x)
    out.backward(grad)
    result = {"output": out.detach(), "input.grad": x.grad}
    result.update({f"{name}.grad": p.grad for name, p in layer.named_parameters()})
    return result


def twin_layers(channels: int, stride: int, implementation: str, dtype: torch.dtype, **kwargs):
    torch.manual_seed(0)
    reference = LambdaLayer(channels, stride, implementation="reference", **kwargs).to(dtype)
    # Non-trivial affine norms and bias, so that their gradients are checked too.
    with torch.no_grad():
        for p in reference.parameters():
            if p.dim() == 1:
                p.normal_()
    fast = LambdaLayer(channels, stride, implementation=implementation, **kwargs).to(dtype)
    fast.load_state_dict(reference.state_dict())
    return reference, fast


def assert_same_function(reference, fast, x, tolerance):
    grad = torch.randn(reference(x).shape, dtype=x.dtype)
    expected = outputs_and_gradients(reference, x, grad)
    actual = outputs_and_gradients(fast, x, grad)
    assert expected.keys() == actual.keys()
    errors = {name: rel(actual[name], expected[name]) for name in expected}
    assert max(errors.values()) < tolerance, errors


def test_default_is_auto_and_names_are_listed():
    assert LambdaLayer(16).implementation == "auto"
    assert set(IMPLEMENTATIONS) == {"auto", "reference", "dense", "spectral"}


@pytest.mark.parametrize(("side", "expected"), [(7, "dense"), (14, "dense"), (28, "spectral"), (56, "spectral")])
def test_auto_chooses_by_map_size(side, expected):
    assert choose_formulation(side, side) == expected


@pytest.mark.parametrize("implementation", FAST)
@pytest.mark.parametrize(
    ("channels", "stride", "height", "width", "intra_depth"),
    [
        (16, 1, 7, 7, 1),
        (16, 2, 12, 9, 1),  # non-square, odd side, pooling
        (8, 1, 3, 2, 1),  # map far smaller than the 23x23 window
        (16, 1, 30, 26, 1),  # map larger than the window: the kernel is not cropped
        (8, 1, 9, 13, 2),  # intra-depth u > 1
    ],
)
def test_same_function_and_gradients_float64(implementation, channels, stride, height, width, intra_depth):
    reference, fast = twin_layers(channels, stride, implementation, torch.float64, intra_depth=intra_depth)
    x = torch.randn(2, channels, height, width, dtype=torch.float64)
    assert_same_function(reference, fast, x, 1e-10)


@pytest.mark.parametrize("implementation", ["dense", "spectral"])
def test_smaller_context_window(implementation):
    reference, fast = twin_layers(8, 1, implementation, torch.float64, context_size=5)
    assert_same_function(reference, fast, torch.randn(2, 8, 11, 10, dtype=torch.float64), 1e-10)


@pytest.mark.parametrize(
    ("channels", "stride", "side"),
    [(64, 1, 56), (128, 2, 28), (256, 1, 14), (512, 1, 7)],
    ids=["layer1-56x56", "layer3.0-28x28", "layer3-14x14", "layer4-7x7"],
)
def test_float32_within_1e4_of_reference_at_real_shapes(channels, stride, side):
    reference, fast = twin_layers(channels, stride, "auto", torch.float32)
    assert_same_function(reference, fast, torch.randn(2, channels, side, side), 1e-4)


def test_comparison_detects_a_wrong_position_term():
    """The float32 comparison can fail: a perturbed position embedding is caught."""
    reference, fast = twin_layers(64, 1, "auto", torch.float32)
    with torch.no_grad():
        fast.lambda_conv.weight[0, 0, 0, 11, 12] += 0.05
    with pytest.raises(AssertionError):
        assert_same_function(reference, fast, torch.randn(2, 64, 28, 28), 1e-4)


@pytest.mark.parametrize("implementation", FAST)
@pytest.mark.parametrize("index", range(5))
def test_each_fast_formulation_matches_golden(layer_golden, implementation, index):
    config, arrays = layer_golden
    case = config["configs"][index]
    layer = LambdaLayer(case["d"], stride=case["stride"], implementation=implementation)
    fill_state_dict(layer, config["seed"] + index)
    layer.double()
    train_out, eval_out = calibrated_outputs(layer, torch.from_numpy(arrays[f"c{index}_input"]))
    assert relative_error(train_out, arrays[f"c{index}_train_output"]) < 1e-9
    assert relative_error(eval_out, arrays[f"c{index}_eval_output"]) < 1e-9


@pytest.mark.parametrize(("height", "width", "depth", "r"), [(4, 5, 2, 5), (9, 3, 1, 7), (6, 6, 1, 3)])
def test_spectral_position_term_gradcheck(height, width, depth, r):
    """Its hand-written backward (row blocks, lambdas rebuilt) against finite differences."""
    torch.manual_seed(0)
    args = (
        torch.randn(2, 2, 3, height * width, dtype=torch.float64, requires_grad=True),
        torch.randn(2, depth, 2, height * width, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True),
        torch.randn(3, depth, 1, r, r, dtype=torch.float64, requires_grad=True),
        torch.randn(3, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(lambda q, v, c, w, b: lambda_output_spectral(q, v, c, w, b, height, width), args)


@pytest.mark.parametrize("width", [1, 2, 7, 28, 56, 57])
def test_row_dft_round_trip_and_no_wrap_around(width):
    """inverse(forward(x)) = x for every kept position, and a tap at the edge meets zeros, not
    the other end of the row (the circular length leaves room for the kernel)."""
    dft = RowDFT(width, 23, torch.float64, torch.device("cpu"))
    rows = torch.randn(3, width, dtype=torch.float64)
    assert rel(rows @ dft.forward @ dft.inverse.T, rows) < 1e-12
    # Shifting right by 11 (the farthest tap) through the spectra: the first 11 outputs are zero.
    spectra = (rows @ dft.forward).view(3, -1, 2)
    tap = dft.taps.view(23, -1, 2)[0]  # tap dx = -11: out[x] = row[x - 11]
    shifted = torch.view_as_complex(spectra.contiguous()) * torch.view_as_complex(tap.contiguous())
    out = torch.view_as_real(shifted).reshape(3, -1) @ dft.inverse.T
    expected = torch.nn.functional.pad(rows, (11, 0))[:, :width]
    assert rel(out, expected) < 1e-12 if expected.norm() > 0 else out.abs().max() < 1e-12


@pytest.mark.parametrize(("height", "expected"), [(56, 4), (28, 4), (14, 7), (7, 7), (10, 5), (13, 4)])
def test_row_block_divides_the_map_when_it_can(height, expected):
    assert row_block(height) == expected


def saved_for_backward(implementation: str, side: int) -> list[int]:
    """Sizes (elements) of the tensors autograd keeps for the position term's backward."""
    torch.manual_seed(0)
    queries = torch.randn(2, 4, 16, side * side, requires_grad=True)
    values = torch.randn(2, 1, 16, side * side, requires_grad=True)
    content = torch.randn(2, 16, 16, requires_grad=True)
    weight = torch.randn(16, 1, 1, 23, 23, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        lambda_output(implementation, queries, values, content, weight, None, side, side)
    return saved


@pytest.mark.parametrize("side", [28, 56])
def test_spectral_keeps_its_lambdas_once_and_about_what_the_published_layer_keeps(side):
    """By default training keeps every block's lambdas (one lambda-sized tensor, as the published layer)."""
    lambdas = 2 * 16 * 16 * side * side
    spectral, reference = saved_for_backward("spectral", side), saved_for_backward("reference", side)
    assert max(reference) >= lambdas  # the published layer keeps its lambdas
    assert max(spectral) <= lambdas and sorted(spectral)[-2] < lambdas * 0.6, sorted(spectral)[-3:]
    assert sum(spectral) < 1.15 * sum(reference), (sum(spectral), sum(reference))


@pytest.mark.parametrize("why", ["switched off", "over the CPU size limit"])
@pytest.mark.parametrize("side", [28, 56])
def test_spectral_rebuilding_its_lambdas_keeps_less_than_the_published_layer(side, why, monkeypatch):
    """The lower-memory backward: no lambda-sized tensor is kept, and less in total."""
    if why == "switched off":
        monkeypatch.setattr(spectral_module, "KEEP_LAMBDAS_FOR_BACKWARD", False)
    else:  # lambdas of 2 * 16 * 16 * side**2 floats, far over 1 KiB, in a process with glibc's default heap
        from lambda_repro import process_heap

        monkeypatch.setattr(spectral_module, "KEEP_LAMBDAS_MAX_BYTES_CPU", 1024)
        monkeypatch.setattr(process_heap, "heap_kept", lambda: False)  # an earlier test may have kept this one's
    lambdas = 2 * 16 * 16 * side * side
    spectral, reference = saved_for_backward("spectral", side), saved_for_backward("reference", side)
    assert max(spectral) < lambdas * 0.6, (max(spectral), lambdas)
    assert sum(spectral) < sum(reference), (sum(spectral), sum(reference))


@pytest.mark.parametrize("side", [28, 56])
def test_a_kept_heap_keeps_lambdas_over_the_cpu_size_limit(side, monkeypatch):
    """Where the process keeps its heap (no page faults for fresh tensors) the size limit does not apply."""
    from lambda_repro import process_heap

    monkeypatch.setattr(spectral_module, "KEEP_LAMBDAS_MAX_BYTES_CPU", 1024)
    monkeypatch.setattr(process_heap, "heap_kept", lambda: True)
    lambdas = 2 * 16 * 16 * side * side
    assert max(saved_for_backward("spectral", side)) >= lambdas


def test_kept_and_rebuilt_lambdas_give_the_same_gradients(monkeypatch):
    """The backward from the kept lambdas and the one that rebuilds them compute the same numbers."""
    torch.manual_seed(0)
    layer = LambdaLayer(32, implementation="spectral").double()
    x = torch.randn(2, 32, 13, 11, dtype=torch.float64)  # 13 rows: a partial last block of rows

    def gradients() -> list[torch.Tensor]:
        layer.zero_grad()
        inputs = x.clone().requires_grad_()
        layer(inputs).square().sum().backward()
        return [inputs.grad, *(p.grad for p in layer.parameters())]

    kept = gradients()
    monkeypatch.setattr(spectral_module, "KEEP_LAMBDAS_FOR_BACKWARD", False)
    rebuilt = gradients()
    assert all(torch.equal(a, b) for a, b in zip(kept, rebuilt, strict=True))


def test_relative_position_rows_are_the_convolution():
    torch.manual_seed(0)
    weight = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    maps = torch.randn(2, 2, 4, 6, dtype=torch.float64)
    table = relative_position_rows(weight, 4, 6)  # (P, k, (u, reversed key position))
    expected = torch.nn.functional.conv2d(maps, weight, padding=2).reshape(2, 3, 24)
    actual = torch.einsum("pkq,bq->bkp", table, maps.flip(-1, -2).reshape(2, 48))
    assert rel(actual, expected) < 1e-12
    assert table[0, 0, 24 - 1 - 23] == 0  # (0,0) -> (3,5) is outside the 5x5 window
    assert table[0, 0, 24 - 1 - 0] == weight[0, 0, 2, 2]  # the centre tap


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("implementation", ["dense", "spectral"])
def test_autocast_gives_finite_outputs_and_gradients(implementation, dtype):
    """bf16 and fp16 autocast run on CPU; the fast position term is accumulated in float32."""
    torch.manual_seed(0)
    layer = LambdaLayer(32, implementation=implementation)
    x = (100 * torch.randn(2, 32, 12, 12)).requires_grad_()  # large activations: fp16 overflow bait
    with torch.autocast("cpu", dtype=dtype):
        out = layer(x)
    assert out.dtype == dtype
    out.float().square().mean().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("implementation", ["spectral", "dense", "auto"])
@pytest.mark.parametrize("shape", [(4, 13), (7, 7)])
def test_batch_of_one_same_function_and_gradients_float64(implementation, shape):
    """A batch of 1 gives tensors size-1 strides that fool layout checks. The spectral backward once
    wrote its query gradient into a buffer with the queries' permuted strides and got it wrong; the
    dense path handed BatchNorm a gradient whose strides torch's CPU BatchNorm backward misreads
    (input gradient off by ~140%, see models/gradient_layout.py)."""
    reference, fast = twin_layers(8, 1, implementation, torch.float64)
    assert_same_function(reference, fast, torch.randn(1, 8, *shape, dtype=torch.float64), 1e-10)


def test_canonical_gradient_copies_only_misleading_strides():
    from lambda_repro.models.gradient_layout import canonical_gradient

    x = torch.randn(1, 8, 4, 13, dtype=torch.float64, requires_grad=True)
    misleading = torch.empty_strided((1, 8, 4, 13), (8, 1, 104, 8), dtype=torch.float64)
    misleading.copy_(torch.randn(1, 8, 4, 13, dtype=torch.float64))
    (grad,) = torch.autograd.grad(canonical_gradient(x), x, misleading)
    assert grad.stride() == (416, 52, 13, 1)
    assert torch.equal(grad, misleading)
    plain = torch.randn(1, 8, 4, 13, dtype=torch.float64)
    (same,) = torch.autograd.grad(canonical_gradient(x), x, plain)
    assert same.data_ptr() == plain.data_ptr()
