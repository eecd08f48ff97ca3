"""Dataset containers and errors shared by all loaders."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

_IMAGE_SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


class DatasetUnavailable(Exception):
    """The data is not on disk; the message says how to get it."""


class DataFormatError(ValueError):
    """A data file exists but is not in the expected format."""


@dataclass(eq=False)
class ImageData:
    """A classification dataset with all splits held as tensors.

    x is uint8 (N, C, H, W) pixels, float32 (N, C, H, W) in [0, 1], or float32 (N, D).
    The val split is held out of the official training data; test is the official test split.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # (device, dtype, ndim) -> (shift, scale) tensors, so normalize() never copies host -> device
    _stats: dict = field(default_factory=dict, init=False, repr=False)

    def to(self, device: torch.device | str) -> "ImageData":
        return replace(self, **{k: getattr(self, k).to(device) for k in _IMAGE_SPLITS})

    def normalize(self, x: Tensor) -> Tensor:
        """Batch -> float32 normalised with the training-set statistics."""
        key = (x.device, x.dtype, x.dim())
        if key not in self._stats:
            unit = 255.0 if x.dtype == torch.uint8 else 1.0  # stats are in [0, 1] pixel units
            shape = (1, -1) + (1,) * (x.dim() - 2)
            mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device) * unit
            std = torch.tensor(self.std, dtype=torch.float32, device=x.device) * unit
            self._stats[key] = (mean.view(shape), std.view(shape))
        mean, std = self._stats[key]
        return (x.float() - mean) / std


@dataclass(eq=False)
class TextData:
    """A character-level corpus: contiguous train / val / test token ids."""

    name: str
    train: Tensor
    val: Tensor
    test: Tensor
    vocab: list[str]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def to(self, device: torch.device | str) -> "TextData":
        return replace(self, train=self.train.to(device), val=self.val.to(device),
                       test=self.test.to(device))

    def decode(self, ids: Tensor | list[int]) -> str:
        ids = ids.tolist() if isinstance(ids, Tensor) else ids
        return "".join(self.vocab[i] for i in ids)
