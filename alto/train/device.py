"""Which device a run uses, and what it reports about memory."""
from __future__ import annotations

import resource

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda"/"cuda:N" only when CUDA is available
    (ValueError naming the device otherwise)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA max allocated on a GPU, resident set size on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
