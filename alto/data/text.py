"""Character-level corpora: the Python standard library source, or a user's UTF-8 file."""
from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .types import DatasetUnavailable, TextData

STDLIB_CHARS = 4_000_000  # default corpus size: a few MB keeps CPU runs and tokenising quick
SPLIT_FRACTION = 0.05  # the last 5% is test, the 5% before it val
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__"}


def _python_files(directory: Path) -> Iterator[Path]:
    """*.py files depth-first in sorted order, so the corpus is the same on every run."""
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False):
            if entry.name not in _SKIP_DIRS:
                yield from _python_files(Path(entry.path))
        elif entry.name.endswith(".py") and entry.is_file():
            yield Path(entry.path)


def stdlib_text(limit: int | None = STDLIB_CHARS) -> str:
    """The first `limit` characters of the concatenated stdlib sources (None: all of it)."""
    parts, size = [], 0
    for path in _python_files(Path(sysconfig.get_paths()["stdlib"])):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few test fixtures are deliberately not UTF-8
        parts.append(text)
        size += len(text)
        if limit is not None and size >= limit:
            break
    corpus = "".join(parts)
    return corpus if limit is None else corpus[:limit]


def file_text(path: str | Path, limit: int | None = None) -> str:
    """The contents of a UTF-8 text file, optionally cut to `limit` characters."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetUnavailable(f"text file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not valid UTF-8: {e}") from e
    if not text:
        raise ValueError(f"text file is empty: {path}")
    return text if limit is None else text[:limit]


def make_text_data(name: str, text: str) -> TextData:
    """Tokenise by character (vocab = sorted set) and split contiguously: train | val | test."""
    n = len(text)
    n_hold = max(1, int(n * SPLIT_FRACTION))
    if n - 2 * n_hold < 1:
        raise ValueError(f"{name}: corpus of {n} characters is too small to split")
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    present = np.zeros(0x110000, dtype=bool)
    present[codes] = True
    points = present.nonzero()[0]
    lookup = np.zeros(0x110000, dtype=np.int64)
    lookup[points] = np.arange(len(points))
    ids = torch.from_numpy(lookup[codes])
    return TextData(
        name=name,
        train=ids[: n - 2 * n_hold].clone(),
        val=ids[n - 2 * n_hold: n - n_hold].clone(),
        test=ids[n - n_hold:].clone(),
        vocab=[chr(p) for p in points],
    )


def text_batch(data: Tensor, batch_size: int, block_size: int,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random windows x (B, T) from 1-D token ids and targets y = x shifted by one."""
    if data.dim() != 1:
        raise ValueError(f"text data must be 1-D token ids, got shape {tuple(data.shape)}")
    starts = data.numel() - block_size
    if starts < 1:
        raise ValueError(f"need more than block_size={block_size} tokens, got {data.numel()}")
    ix = torch.randint(starts, (batch_size,), generator=generator, device=generator.device)
    window = ix.to(data.device)[:, None] + torch.arange(block_size + 1, device=data.device)
    tokens = data[window]
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
