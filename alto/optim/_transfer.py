"""Small host values sent to the device without making the host wait for it."""
from __future__ import annotations

import torch
from torch import Tensor


def to_device(host: Tensor, device: torch.device) -> Tensor:
    """`host` (a small CPU tensor) on `device`: on CUDA a non-blocking copy from pinned memory,
    which does not synchronise (the caching host allocator keeps the pinned block alive until the
    copy has run); elsewhere an ordinary copy."""
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)
