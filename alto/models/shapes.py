"""Parameter shapes of named models, to time an optimizer step at a real model's size
(`alto bench optim --shapes NAME`) without training it.

The GPT-2 family is written out (Radford et al. 2019: vocabulary 50257, context 1024); the lab's
own models are built on the meta device, so no memory is allocated for their weights.
"""
from __future__ import annotations

import torch

from .registry import build_model

GPT2 = {"gpt2-small": (12, 768), "gpt2-medium": (24, 1024), "gpt2-large": (36, 1280), "gpt2-xl": (48, 1600)}
LAB = {  # name -> (model, build_model arguments): the workloads of runs/presets
    "mlp-digits": ("mlp", {"input_shape": (1, 8, 8), "num_classes": 10}),
    "resnet20-cifar10": ("resnet20", {"input_shape": (3, 32, 32), "num_classes": 10}),
    "resnet18-cifar10": ("resnet18", {"input_shape": (3, 32, 32), "num_classes": 10}),
    "vgg16-bn-cifar100": ("vgg16-bn", {"input_shape": (3, 32, 32), "num_classes": 100}),
}


def shape_names() -> list[str]:
    return [*GPT2, *LAB]


def gpt2_shapes(layers: int, d: int, vocab: int = 50257, context: int = 1024) -> list[tuple[int, ...]]:
    """Token and position embeddings, per block two layer norms, attention and MLP (weights and
    biases), and the final layer norm; the output head is tied to the token embedding."""
    block = [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]
    return [(vocab, d), (context, d), *block * layers, (d,), (d,)]


def model_shapes(name: str) -> list[tuple[int, ...]]:
    """The parameter shapes of model `name` (one of shape_names())."""
    if name in GPT2:
        return gpt2_shapes(*GPT2[name])
    if name in LAB:
        model, kwargs = LAB[name]
        with torch.device("meta"):
            built = build_model(model, **kwargs)
        return [tuple(p.shape) for p in built.parameters()]
    raise ValueError(f"shapes must be one of {', '.join(shape_names())}, got {name!r}")
