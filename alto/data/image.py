"""Turning a labelled train pool + test set into an ImageData."""
from __future__ import annotations

import torch
from torch import Tensor

from .splits import stratified_split, subsample
from .types import ImageData


def channel_stats(x: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units (uint8 is divided by 255); flat data is one channel."""
    unit = 255.0 if x.dtype == torch.uint8 else 1.0
    x = x.reshape(x.shape[0], 1 if x.dim() == 2 else x.shape[1], -1)
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for chunk in x.split(4096):  # chunks keep the float64 copy small
        c = chunk.to(torch.float64)
        total += c.sum((0, 2))
        total_sq += (c * c).sum((0, 2))
    n = max(x.shape[0] * x.shape[2], 1)
    mean = total / n
    std = (total_sq / n - mean**2).clamp_min(0).sqrt()
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant data: leave it unscaled
    return tuple((mean / unit).tolist()), tuple((std / unit).tolist())


def make_image_data(name: str, x: Tensor, y: Tensor, x_test: Tensor, y_test: Tensor,
                    num_classes: int, *, val_fraction: float, seed: int,
                    limit: int | None) -> ImageData:
    """Hold out a stratified val split (by seed), cap train at `limit`, compute stats."""
    train_idx, val_idx = stratified_split(y, val_fraction, seed)
    train_idx = subsample(train_idx, limit, seed)
    x_train = x[train_idx]
    mean, std = channel_stats(x_train)
    return ImageData(
        name=name,
        x_train=x_train, y_train=y[train_idx].long(),
        x_val=x[val_idx], y_val=y[val_idx].long(),
        x_test=x_test, y_test=y_test.long(),
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),
        mean=mean, std=std,
    )
