"""``model.to(memory_format=torch.channels_last)`` works on every Lambda-ResNet and changes nothing else.

The 5-D ``lambda_conv.weight`` keeps its published key and shape; outputs and every gradient
with channels_last inputs equal those of the contiguous model (float64).
"""

from __future__ import annotations

import pytest
import torch

from lambda_repro.models import LambdaLayer, create_model, list_models, load_checkpoint, save_checkpoint

LAMBDA_MODELS = [name for name in list_models() if name.startswith("lambda_resnet")]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


@pytest.mark.parametrize("name", LAMBDA_MODELS)
def test_every_lambda_resnet_converts_keeping_keys_and_shapes(name):
    model = create_model(name, num_classes=10)
    before = shapes(model)
    converted = model.to(memory_format=torch.channels_last)
    assert converted is model
    assert shapes(model) == before
    assert model.layer1[0].conv2.lambda_conv.weight.dim() == 5
    # The 4-D weights really are channels_last now (the conversion did its job).
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.conv1.weight.is_contiguous()


def test_published_state_dict_after_conversion(architecture_facts):
    model = create_model("lambda_resnet50").to(memory_format=torch.channels_last)
    expected = [(key, shape, dtype) for key, shape, dtype in architecture_facts["lambda_resnet50_state_dict"]]
    actual = [
        (key, list(value.shape), str(value.dtype).removeprefix("torch.")) for key, value in model.state_dict().items()
    ]
    assert actual == expected


def test_checkpoint_round_trip_through_channels_last(tmp_path):
    torch.manual_seed(0)
    source = create_model("lambda_resnet26", num_classes=10).to(memory_format=torch.channels_last)
    save_checkpoint({"state_dict": source.state_dict()}, tmp_path / "cl.pt")
    target = create_model("lambda_resnet26", num_classes=10)
    load_checkpoint(target, tmp_path / "cl.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def gradients(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    out = model(x)
    out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape))
    result = {"output": out.detach(), "input": x.grad}
    result.update({name: p.grad for name, p in model.named_parameters()})
    return result


def test_model_forward_backward_exact_with_channels_last_float64():
    torch.manual_seed(0)
    contiguous = create_model("lambda_resnet26", num_classes=10).double()
    channels_last = create_model("lambda_resnet26", num_classes=10).double()
    channels_last.load_state_dict(contiguous.state_dict())
    channels_last.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 64, 48, dtype=torch.float64)
    expected = gradients(contiguous, x)
    actual = gradients(channels_last, x.contiguous(memory_format=torch.channels_last))
    errors = {name: rel(actual[name], expected[name]) for name in expected}
    assert max(errors.values()) < 1e-10, errors


@pytest.mark.parametrize("implementation", ["reference", "dense", "spectral", "auto"])
@pytest.mark.parametrize("stride", [1, 2])
def test_layer_keeps_the_layout_and_the_function(implementation, stride):
    torch.manual_seed(0)
    layer = LambdaLayer(16, stride, implementation=implementation).double()
    twin = LambdaLayer(16, stride, implementation=implementation).double()
    twin.load_state_dict(layer.state_dict())
    twin.to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, 10, 9, dtype=torch.float64)
    expected = gradients(layer, x)
    actual = gradients(twin, x.contiguous(memory_format=torch.channels_last))
    assert actual["output"].is_contiguous(memory_format=torch.channels_last)
    errors = {name: rel(actual[name], expected[name]) for name in expected}
    assert max(errors.values()) < 1e-12, errors


def test_other_conversion_errors_still_raise():
    from lambda_repro.models.lambda_conv import LambdaConv

    conv = LambdaConv(1, 4, (1, 3, 3))

    def broken(tensor):
        raise RuntimeError("something else went wrong")

    with pytest.raises(RuntimeError, match="something else"):
        conv._apply(broken)
    conv.to(memory_format=torch.channels_last_3d)  # the 5-D format still applies to the 5-D kernel as is
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.parametrize("stride", [1, 2])
def test_spectral_inference_hands_back_channels_last_training_nchw_same_values(stride):
    """Without grad the spectral output comes back as (N, H, W, C) memory (no cache-missing transpose); with grad,
    the layout it had before (the layout the BatchNorm backward after it is fast on); same values either way."""
    torch.manual_seed(0)
    fast = LambdaLayer(32, stride, implementation="spectral").double()
    reference = LambdaLayer(32, stride, implementation="reference").double()
    reference.load_state_dict(fast.state_dict())
    fast.eval(), reference.eval()
    x = torch.randn(3, 32, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        out, expected = fast(x), reference(x)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert rel(out, expected) < 1e-12
    with_grad = fast(x.requires_grad_())
    assert not with_grad.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(with_grad.detach(), out)
    with_grad.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("intra_depth", [1, 2])
def test_gradients_keep_the_strides_of_their_parameters(intra_depth):
    """DDP lays its gradient buckets out like the parameters and warns on every step ("grad strides do not match
    bucket view strides") when a gradient comes with other strides: with intra_depth 1 the 5-D kernel's
    channels_last strides differ from the plain ones only on size-1 dims, which no gradient reproduces."""
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 1), LambdaLayer(16, intra_depth=intra_depth))
    block.to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 10, 9).contiguous(memory_format=torch.channels_last)
    block(x).square().sum().backward()
    mismatched = {
        name: (p.stride(), p.grad.stride()) for name, p in block.named_parameters() if p.stride() != p.grad.stride()
    }
    assert not mismatched
    kernel = block[1].lambda_conv.weight
    if intra_depth > 1:  # memory really laid out channels_last through the 4-D view
        assert kernel.is_contiguous(memory_format=torch.channels_last_3d) and not kernel.is_contiguous()
