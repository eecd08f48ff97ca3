"""A dataset from a user's factory: `dataset = "package.module:factory"` in a preset.

The factory is called with no arguments and returns (x_train, y_train, x_test, y_test) tensors:
x as float32 or uint8 with one row per sample (any per-sample shape, e.g. (N, C, H, W) or (N, D)),
y as integer class labels 0..K-1. The lab then holds out its stratified validation split from the
training data and normalises with the training statistics, as for its own datasets.
"""
from __future__ import annotations

import torch
from torch import Tensor

from alto.user_code import call_factory

from .image import make_image_data
from .types import ImageData

_NAMES = ("x_train", "y_train", "x_test", "y_test")


def _check(path: str, got: object) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    def wrong(what: str) -> ValueError:
        return ValueError(f"dataset = {path!r} must return (x_train, y_train, x_test, y_test) tensors: {what}")

    if not isinstance(got, (tuple, list)) or len(got) != 4:
        raise wrong(f"got {type(got).__name__}" + (f" of {len(got)}" if isinstance(got, (tuple, list)) else ""))
    for name, t in zip(_NAMES, got):
        if not isinstance(t, Tensor):
            raise wrong(f"{name} is a {type(t).__name__}")
    x, y, x_test, y_test = got
    for name, t in (("x_train", x), ("x_test", x_test)):
        if t.dtype not in (torch.float32, torch.uint8) or t.dim() < 2:
            raise wrong(f"{name} must be float32 or uint8 with one row per sample, got {t.dtype} {tuple(t.shape)}")
    if x.shape[1:] != x_test.shape[1:]:
        raise wrong(f"x_train samples are {tuple(x.shape[1:])} but x_test samples are {tuple(x_test.shape[1:])}")
    for name, labels, inputs in (("y_train", y, x), ("y_test", y_test, x_test)):
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
            raise wrong(f"{name} must be a 1-D tensor of integer labels, got {labels.dtype} {tuple(labels.shape)}")
        if len(labels) != len(inputs):
            raise wrong(f"{name} has {len(labels)} labels for {len(inputs)} samples")
        if len(labels) and int(labels.min()) < 0:
            raise wrong(f"{name} holds negative labels")
    if len(y) == 0:
        raise wrong("x_train is empty")
    return x.cpu(), y.cpu().long(), x_test.cpu(), y_test.cpu().long()


def load_user_dataset(path: str, *, val_fraction: float, seed: int, limit: int | None) -> ImageData:
    """Call the factory `path` names, check what it returns, split and normalise it."""
    x, y, x_test, y_test = _check(path, call_factory(path, "dataset"))
    num_classes = int(max(y.max(), y_test.max() if len(y_test) else 0)) + 1
    return make_image_data(path, x, y, x_test, y_test, num_classes, val_fraction=val_fraction, seed=seed, limit=limit)
