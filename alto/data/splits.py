"""Deterministic splits and batch orders, each from its own torch.Generator."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def _generator(*keys: int) -> torch.Generator:
    # SeedSequence mixes (seed, epoch) so that nearby pairs never share a stream
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def stratified_split(y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices of labels y into (kept, held); held has ~fraction of every class."""
    g = _generator(seed, 0x5EED)
    held = [torch.empty(0, dtype=torch.long)]
    for c in torch.unique(y.cpu()):
        idx = (y.cpu() == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        held.append(idx[: round(fraction * len(idx))])
    held_idx = torch.cat(held).sort().values
    keep = torch.ones(len(y), dtype=torch.bool)
    keep[held_idx] = False
    return keep.nonzero().flatten(), held_idx


def subsample(idx: Tensor, limit: int | None, seed: int) -> Tensor:
    """At most `limit` entries of idx, chosen by seed, in their original order."""
    if limit is None or limit >= len(idx):
        return idx
    g = _generator(seed, 0x11A1)
    return idx[torch.randperm(len(idx), generator=g)[:limit].sort().values]


def batch_indices(n: int, batch_size: int, epoch: int, seed: int,
                  drop_last: bool = True) -> list[Tensor]:
    """Index batches for one epoch: a fixed permutation per (seed, epoch).

    batch_size >= n gives one full batch (full-batch training).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    if epoch < 0 or seed < 0:
        raise ValueError(f"need epoch >= 0 and seed >= 0, got epoch={epoch}, seed={seed}")
    if batch_size >= n:
        return [torch.arange(n)]
    perm = torch.randperm(n, generator=_generator(seed, epoch))
    batches = list(perm.split(batch_size))
    if drop_last and len(batches[-1]) < batch_size:
        batches.pop()
    return batches
