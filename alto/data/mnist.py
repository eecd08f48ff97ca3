"""MNIST and Fashion-MNIST from IDX files: system package, torchvision root, or download."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .idx import read_idx
from .types import DataFormatError, DatasetUnavailable

# searched before the torchvision root; a module constant so tests can point it elsewhere
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
    "mnist": (),
}
TORCHVISION_NAMES = {"fashion-mnist": "FashionMNIST", "mnist": "MNIST"}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _find_files(directory: Path) -> list[Path] | None:
    """The four IDX files in directory (plain preferred over .gz), or None if any is missing."""
    found = []
    for stem in FILES:
        path = next((p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def _read_pair(images_path: Path, labels_path: Path) -> tuple[Tensor, Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype.itemsize != 1:
        raise DataFormatError(f"{images_path}: expected uint8 images (N, H, W), "
                              f"got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataFormatError(f"{labels_path}: expected {len(images)} labels, "
                              f"got shape {labels.shape}")
    if len(labels) and not 0 <= labels.min() <= labels.max() <= 9:
        raise DataFormatError(f"{labels_path}: labels outside 0..9")
    x = torch.from_numpy(images.astype("uint8")).unsqueeze(1)
    return x, torch.from_numpy(labels.astype("int64"))


def _download(name: str, root: Path) -> None:
    try:
        import torchvision.datasets as tvd
        cls = getattr(tvd, TORCHVISION_NAMES[name])
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)
    except Exception as e:  # network, checksum, disk: all mean "not available"
        raise DatasetUnavailable(f"downloading {name} into {root} failed: {e}") from e


def load_mnist_like(name: str, root: Path,
                    download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(x_train, y_train, x_test, y_test) for 'mnist' / 'fashion-mnist'; x is uint8 (N,1,28,28)."""
    raw = root / TORCHVISION_NAMES[name] / "raw"
    searched = [*SYSTEM_DIRS[name], raw]
    files = next((f for f in map(_find_files, searched) if f is not None), None)
    if files is None and download:
        _download(name, root)
        files = _find_files(raw)
    if files is None:
        how = ("apt-get install dataset-fashion-mnist (Debian/Ubuntu), or "
               if name == "fashion-mnist" else "")
        raise DatasetUnavailable(
            f"{name}: IDX files not found in {', '.join(map(str, searched))}. "
            f"To get them: {how}rerun with --download (load_dataset(..., download=True)) "
            f"to fetch them with torchvision into {root}.")
    x_train, y_train = _read_pair(files[0], files[1])
    x_test, y_test = _read_pair(files[2], files[3])
    return x_train, y_train, x_test, y_test
