"""Global L2 gradient clipping that keeps the coefficient on the device."""
from __future__ import annotations

import torch
from torch import Tensor


def group_by_device_dtype(tensors: list[Tensor]) -> dict[tuple, list[int]]:
    """Indices of `tensors` bucketed by (device, dtype), the unit a foreach kernel can take."""
    buckets: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        buckets.setdefault((t.device, t.dtype), []).append(i)
    return buckets


def global_norm(grads: list[Tensor], foreach: bool = True) -> Tensor:
    """L2 norm of all gradients together (float64 if any gradient is float64)."""
    if foreach:
        norms = []
        for idx in group_by_device_dtype(grads).values():
            norms.extend(torch._foreach_norm([grads[i] for i in idx]))
    else:
        norms = [torch.linalg.vector_norm(g) for g in grads]
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in grads) else torch.float32
    device = grads[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device=device, dtype=dtype) for n in norms]))


def clip_coefficient(grads: list[Tensor], max_norm: float | None, eps: float = 1e-6,
                     foreach: bool = True) -> tuple[Tensor, Tensor]:
    """(norm of all gradients together, coefficient to scale them by), both on the device.

    The reference rule is c = max_norm / (N + 1e-6), applied only when c < 1; clamping c at 1
    makes the "no clip" case an exact multiplication by one, with no Python branch on a tensor.
    The Lamb-family cores apply c while they read each gradient, saving a pass over them.
    """
    norm = global_norm(grads, foreach)
    if max_norm is None:
        return norm, torch.ones_like(norm)
    return norm, torch.clamp(max_norm / (norm + eps), max=1.0)


def clip_grads_(grads: list[Tensor], max_norm: float | None, eps: float = 1e-6,
                foreach: bool = True) -> tuple[Tensor, Tensor]:
    """Scale `grads` in place so their joint norm is at most about `max_norm`.

    Returns (norm before clipping, coefficient applied), see `clip_coefficient`.
    """
    norm, coef = clip_coefficient(grads, max_norm, eps, foreach)
    if max_norm is None:
        return norm, coef
    if foreach:
        for (device, dtype), idx in group_by_device_dtype(grads).items():
            torch._foreach_mul_([grads[i] for i in idx], coef.to(device=device, dtype=dtype))
    else:
        for g in grads:
            g.mul_(coef.to(device=g.device, dtype=g.dtype))
    return norm, coef
