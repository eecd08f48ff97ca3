"""build_model: one entry point for every model name."""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from torch import nn

from alto.user_code import call_factory, is_import_path

from .gpt import GPT
from .mlp import MLP, SmallCNN
from .resnet import resnet18, resnet20
from .vgg import VGG


def _mlp(input_shape: tuple[int, ...], num_classes: int, hidden=(256, 256)) -> nn.Module:
    return MLP(math.prod(input_shape), num_classes, tuple(hidden))


def _cnn_small(input_shape: tuple[int, ...], num_classes: int, width: int = 32) -> nn.Module:
    return SmallCNN(input_shape[0], num_classes, width)


def _resnet20(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return resnet20(input_shape[0], num_classes)


def _resnet18(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return resnet18(input_shape[0], num_classes)


def _vgg16_bn(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return VGG(input_shape[0], num_classes)


def _gpt_tiny(vocab_size: int, block_size: int, n_layer: int = 4, n_head: int = 4,
              n_embd: int = 128, dropout: float = 0.0) -> nn.Module:
    return GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout)


# name -> (builder, kind): "image" takes any input_shape, "conv" needs (C, H, W), "text" token ids
_MODELS: dict[str, tuple[Callable[..., nn.Module], str]] = {
    "mlp": (_mlp, "image"),
    "cnn-small": (_cnn_small, "conv"),
    "resnet20": (_resnet20, "conv"),
    "vgg16-bn": (_vgg16_bn, "conv"),
    "resnet18": (_resnet18, "conv"),
    "gpt-tiny": (_gpt_tiny, "text"),
}
_FIXED_ARGS = {"input_shape", "num_classes", "vocab_size", "block_size"}


def model_names() -> list[str]:
    """The registered names; a preset may also name a factory of its own (see build_model)."""
    return list(_MODELS)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements; tied weights count once."""
    return sum(p.numel() for p in model.parameters())


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def build_model(name: str, *, input_shape: tuple[int, ...] | None = None,
                num_classes: int | None = None, vocab_size: int | None = None,
                block_size: int = 128, **kwargs) -> nn.Module:
    """Build a freshly initialised model (deterministic under torch.manual_seed).

    Image models need input_shape (per sample, e.g. (3, 32, 32)) and num_classes;
    gpt-tiny needs vocab_size (and block_size). Extra kwargs go to the model (e.g. hidden=...).
    `name` may be a user's factory, "package.module:factory", called as
    factory(input_shape, num_classes, **kwargs) and returning a torch.nn.Module.
    """
    if is_import_path(name):
        return _user_model(name, input_shape, num_classes, kwargs)
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_MODELS)}")
    builder, kind = _MODELS[name]
    allowed = set(inspect.signature(builder).parameters) - _FIXED_ARGS
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"model {name!r} does not take {', '.join(unknown)}; "
                         f"options: {', '.join(sorted(allowed)) or 'none'}")
    if kind == "text":
        if vocab_size is None:
            raise ValueError(f"model {name!r} needs vocab_size")
        _positive("vocab_size", vocab_size)
        _positive("block_size", block_size)
        return builder(vocab_size, block_size, **kwargs)
    if input_shape is None:
        raise ValueError(f"model {name!r} needs input_shape")
    if num_classes is None:
        raise ValueError(f"model {name!r} needs num_classes")
    input_shape = tuple(input_shape)
    if kind == "conv" and len(input_shape) != 3:
        raise ValueError(f"model {name!r} needs input_shape (C, H, W), got {input_shape}")
    for d in input_shape:
        _positive("input_shape entries", d)
    _positive("num_classes", num_classes)
    return builder(input_shape, num_classes, **kwargs)


def _user_model(path: str, input_shape: tuple[int, ...] | None, num_classes: int | None, kwargs: dict) -> nn.Module:
    if input_shape is None or num_classes is None:
        raise ValueError(f"model = {path!r}: a model factory takes (input_shape, num_classes); "
                         "text datasets need the lab's gpt-tiny")
    model = call_factory(path, "model", tuple(input_shape), num_classes, **kwargs)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model = {path!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model
