"""alto.models: shapes, sizes, causality, deterministic init, argument errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from alto.models import build_model, count_parameters, model_names

torch.set_num_threads(1)

IMAGE_CASES = [
    ("mlp", (1, 8, 8)), ("mlp", (64,)), ("mlp", (3, 32, 32)),
    ("cnn-small", (1, 8, 8)), ("cnn-small", (1, 28, 28)), ("cnn-small", (3, 32, 32)),
    ("resnet20", (3, 32, 32)), ("resnet20", (1, 28, 28)), ("resnet20", (1, 8, 8)),
    ("vgg16-bn", (3, 32, 32)), ("vgg16-bn", (1, 28, 28)),
    ("resnet18", (3, 32, 32)),
]


@pytest.mark.parametrize("name,shape", IMAGE_CASES)
def test_image_model_output_shape(name: str, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = build_model(name, input_shape=shape, num_classes=7)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    out.sum().backward()


def test_gpt_tiny_output_shape_and_limits() -> None:
    model = build_model("gpt-tiny", vocab_size=50, block_size=32)
    assert model(torch.randint(0, 50, (3, 32))).shape == (3, 32, 50)
    assert model(torch.randint(0, 50, (1, 5))).shape == (1, 5, 50)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.randint(0, 50, (1, 33)))


def test_parameter_counts() -> None:
    resnet20 = count_parameters(build_model("resnet20", input_shape=(3, 32, 32), num_classes=10))
    assert resnet20 == pytest.approx(270_000, rel=0.02)
    resnet18 = count_parameters(build_model("resnet18", input_shape=(3, 32, 32), num_classes=10))
    assert resnet18 == pytest.approx(11.17e6, rel=0.01)
    mlp = build_model("mlp", input_shape=(1, 8, 8), num_classes=10, hidden=(32,))
    assert count_parameters(mlp) == 64 * 32 + 32 + 32 * 10 + 10


def test_gpt_weights_are_tied_and_counted_once() -> None:
    model = build_model("gpt-tiny", vocab_size=65)
    assert model.head.weight is model.tok_emb.weight
    unique = {id(p): p.numel() for p in model.parameters()}
    assert count_parameters(model) == sum(unique.values())
    assert 0.7e6 < count_parameters(model) < 0.9e6


def test_gpt_tiny_is_causal() -> None:
    torch.manual_seed(0)
    model = build_model("gpt-tiny", vocab_size=30, block_size=16, n_layer=2).eval()
    idx = torch.randint(0, 30, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 30
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("name", ["cnn-small", "resnet20", "gpt-tiny"])
def test_same_seed_same_weights(name: str) -> None:
    kwargs = dict(input_shape=(3, 32, 32), num_classes=10, vocab_size=40)
    states = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        states.append(build_model(name, **kwargs).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_normalisation_layers_are_standard_modules() -> None:
    gpt = build_model("gpt-tiny", vocab_size=20)
    assert sum(isinstance(m, nn.LayerNorm) for m in gpt.modules()) == 2 * 4 + 1
    cnn = build_model("resnet20", input_shape=(3, 32, 32), num_classes=10)
    assert any(isinstance(m, nn.BatchNorm2d) for m in cnn.modules())
    one_dim = [n for n, p in gpt.named_parameters() if p.dim() == 1]
    assert all(n.endswith(("bias", "weight")) for n in one_dim)
    assert any(n.endswith("bias") for n in one_dim)


def test_argument_errors() -> None:
    expected = {"mlp", "cnn-small", "resnet20", "vgg16-bn", "resnet18", "gpt-tiny"}
    assert set(model_names()) == expected
    with pytest.raises(ValueError, match="resnet20"):  # lists valid names
        build_model("resnet50", input_shape=(3, 32, 32), num_classes=10)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet20", input_shape=(3, 32, 32))
    with pytest.raises(ValueError, match="input_shape"):
        build_model("mlp", num_classes=10)
    with pytest.raises(ValueError, match="input_shape"):
        build_model("cnn-small", input_shape=(64,), num_classes=10)
    with pytest.raises(ValueError, match="vocab_size"):
        build_model("gpt-tiny")
    with pytest.raises(ValueError, match="depth"):
        build_model("mlp", input_shape=(4,), num_classes=2, depth=3)
