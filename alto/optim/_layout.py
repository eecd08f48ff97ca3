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


def flat_views(tensors: tuple[Tensor, ...] | list[Tensor]) -> list[Tensor] | None:
    """1-D views of tensors that share one dense layout, in memory order (element k of every view
    belongs to the same index of the original tensors); None when they do not share one."""
    first = tensors[0]
    if not is_dense(first) or any(t.shape != first.shape or t.stride() != first.stride() for t in tensors[1:]):
        return None
    if first.is_contiguous():
        return [t.view(-1) for t in tensors]
    return [t.as_strided((t.numel(),), (1,)) for t in tensors]
