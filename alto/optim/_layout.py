"""Memory layout helpers: when a tensor's elements can be walked as one flat run of memory."""
from __future__ import annotations

from torch import Tensor


def is_dense(t: Tensor) -> bool:
    """True when t covers one gap-free block of memory (any dimension order)."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def share_one_dense_layout(tensors: tuple[Tensor, ...] | list[Tensor]) -> bool:
    """Whether the tensors are dense with one shape and one layout: walked in memory order, their
    elements then correspond one to one."""
    first = tensors[0]
    if first.is_contiguous():
        return all(t.shape == first.shape and t.is_contiguous() for t in tensors[1:])
    return is_dense(first) and all(t.shape == first.shape and t.stride() == first.stride() for t in tensors[1:])


def flat(t: Tensor) -> Tensor:
    """A 1-D view of a dense tensor in memory order."""
    return t.view(-1) if t.is_contiguous() else t.as_strided((t.numel(),), (1,))
