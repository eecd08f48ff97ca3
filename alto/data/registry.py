"""load_dataset: one entry point for every dataset name."""
from __future__ import annotations

import os
from pathlib import Path

from alto.user_code import is_import_path

from .cifar import LAYOUTS, load_cifar
from .digits import load_digits_arrays
from .image import make_image_data
from .mnist import load_mnist_like
from .text import STDLIB_CHARS, file_text, make_text_data, stdlib_text
from .types import ImageData, TextData
from .user import load_user_dataset

TEXT_FILE_PREFIX = "text-file:"
_IMAGE = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
_TEXT = ("stdlib-chars",)
# Images per class in each set's pool of training data, before the validation hold-out (digits:
# the 80% of scikit-learn's 1,797 images that are not its test split).
CLASS_COUNTS = {
    "digits": (142, 146, 142, 146, 145, 146, 145, 143, 139, 144),
    "mnist": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "fashion-mnist": (6000,) * 10,
    "cifar10": (5000,) * 10,
    "cifar100": (500,) * 100,
}


def dataset_names() -> list[str]:
    """Registered names; any 'text-file:PATH' is accepted as well, and in a preset a factory of
    its own, 'package.module:factory' (see alto.data.user)."""
    return sorted(_IMAGE + _TEXT)


def train_size(name: str, val_fraction: float = 0.1, limit: int | None = None) -> int | None:
    """Training samples of image set `name` once the stratified `val_fraction` is held out (the
    split rounds per class, as `splits.stratified_split` does; digits at 0.1: 1,295), capped by
    `limit`. None for text sets, whose batches are sequences drawn at random."""
    counts = CLASS_COUNTS.get(name)
    if counts is None:
        return None
    n = sum(c - round(val_fraction * c) for c in counts)
    return min(n, limit) if limit else n


def default_root() -> Path:
    """$ALTO_DATA, else runs/data in the repository."""
    env = os.environ.get("ALTO_DATA")
    return Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "runs" / "data"


def load_dataset(name: str, *, root: str | Path | None = None, download: bool = False,
                 val_fraction: float = 0.1, seed: int = 0,
                 limit: int | None = None) -> ImageData | TextData:
    """Load a dataset by name.

    Image sets: val is a stratified `val_fraction` of the official training data chosen by
    `seed`; `limit` caps the training samples. Text sets: fixed contiguous 90/5/5 split;
    `limit` caps the corpus in characters (stdlib-chars defaults to 4M). A user's factory
    ("package.module:factory", alto.data.user) is split like an image set.
    """
    if not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 0.5:
        raise ValueError(f"val_fraction must be in [0, 0.5), got {val_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    root = Path(root).expanduser() if root is not None else default_root()

    if is_import_path(name):
        return load_user_dataset(name, val_fraction=val_fraction, seed=seed, limit=limit)
    if name.startswith(TEXT_FILE_PREFIX):
        path = name[len(TEXT_FILE_PREFIX):]
        if not path:
            raise ValueError("text-file needs a path: text-file:PATH")
        return make_text_data(name, file_text(path, limit))
    if name == "stdlib-chars":
        return make_text_data(name, stdlib_text(limit or STDLIB_CHARS))

    if name == "digits":
        arrays, num_classes = load_digits_arrays(), 10
    elif name in ("mnist", "fashion-mnist"):
        arrays, num_classes = load_mnist_like(name, root, download), 10
    elif name in LAYOUTS:
        arrays, num_classes = load_cifar(name, root, download), LAYOUTS[name].num_classes
    else:
        raise ValueError(f"unknown dataset {name!r}; valid names: "
                         f"{', '.join(dataset_names())}, or {TEXT_FILE_PREFIX}PATH")
    return make_image_data(name, *arrays, num_classes, val_fraction=val_fraction,
                           seed=seed, limit=limit)
