"""Parameter shapes of named models, to time an optimizer step at a real model's size
(`alto bench optim --shapes NAME`) without training it.

The GPT-2 family comes from the optimizer benchmark's own table (alto.optim.bench.gpt2_shapes); the
lab's models are built on the meta device, so no memory is allocated for their weights.
"""
from __future__ import annotations

import torch

from alto.optim.bench import gpt2_shapes

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
