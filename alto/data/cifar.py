"""CIFAR-10/100 from torchvision's python-pickle layout (cifar-10-batches-py, cifar-100-python)."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .types import DataFormatError, DatasetUnavailable


@dataclass(frozen=True)
class _Layout:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    label_key: str
    num_classes: int
    torchvision_class: str


LAYOUTS = {
    "cifar10": _Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                       ("test_batch",), "labels", 10, "CIFAR10"),
    "cifar100": _Layout("cifar-100-python", ("train",), ("test",), "fine_labels", 100, "CIFAR100"),
}


def _unpickle(path: Path) -> dict:
    # Only for files the user put in the data directory, exactly as torchvision does.
    with open(path, "rb") as f:
        try:
            d = pickle.load(f, encoding="latin1")
        except Exception as e:
            raise DataFormatError(f"{path}: not a CIFAR pickle ({e})") from e
    if not isinstance(d, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _read(paths: list[Path], label_key: str, num_classes: int) -> tuple[Tensor, Tensor]:
    xs, ys = [], []
    for path in paths:
        d = _unpickle(path)
        if "data" not in d or label_key not in d:
            raise DataFormatError(f"{path}: missing 'data' or {label_key!r} entry")
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
            raise DataFormatError(f"{path}: expected data (N, 3072) and N labels, "
                                  f"got {data.shape} and {labels.shape}")
        if len(labels) and not 0 <= labels.min() <= labels.max() < num_classes:
            raise DataFormatError(f"{path}: labels outside 0..{num_classes - 1}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_cifar(name: str, root: Path, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) for 'cifar10' / 'cifar100'; x is uint8 (N,3,32,32)."""
    layout = LAYOUTS[name]
    folder = root / layout.folder
    needed = [folder / f for f in layout.train + layout.test]
    if not all(p.is_file() for p in needed) and download:
        try:
            import torchvision.datasets as tvd
            getattr(tvd, layout.torchvision_class)(str(root), train=True, download=True)
        except Exception as e:
            raise DatasetUnavailable(f"downloading {name} into {root} failed: {e}") from e
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise DatasetUnavailable(
            f"{name}: missing {', '.join(missing)} in {folder}. To get it: rerun with --download "
            f"(load_dataset(..., download=True)) to fetch it with torchvision into {root}, or "
            f"unpack the python version of the archive there.")
    n_train = len(layout.train)
    x_train, y_train = _read(needed[:n_train], layout.label_key, layout.num_classes)
    x_test, y_test = _read(needed[n_train:], layout.label_key, layout.num_classes)
    return x_train, y_train, x_test, y_test
