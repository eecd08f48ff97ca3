"""Maths shared by every implementation of the Lamb family (multi-tensor, per-tensor, fused).

The trust ratio scales a tensor's update u by |p|/|u| (You et al.'s Lamb); the reference code
of the ALTO paper applies it only where weight decay is non-zero, the paper's variant always,
as phi(|p|) / (|u| + eps2*phi(|p|)) with phi(x) = x + eps3.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

TRUST_RATIOS = ("reference", "paper", "none")
PAPER_EPS2, PAPER_EPS3 = 1e-6, 1e-10


def applies_trust_ratio(mode: str, weight_decay: float) -> bool:
    """Whether a group with this trust-ratio mode and weight decay scales by the trust ratio."""
    return mode == "paper" or (mode == "reference" and weight_decay != 0)


def trust_ratio_of(p_norm: Tensor, u_norm: Tensor, mode: str) -> Tensor:
    """Per-tensor trust ratios from the norms of the parameters and of their updates."""
    if mode == "paper":
        phi = p_norm + PAPER_EPS3
        return phi / (u_norm + PAPER_EPS2 * phi)
    ok = (p_norm > 0) & (u_norm > 0)
    return torch.where(ok, p_norm / torch.where(ok, u_norm, 1), torch.ones_like(p_norm))


def bias_corrections(steps: list[Tensor], beta2: float, beta3: float) -> tuple[list[float], list[float]]:
    """Per tensor (1 - beta2^t, sqrt(1 - beta3^t)) for the step counts `steps`.

    `step` lives on the CPU (as in torch.optim.AdamW), so .item() is not a device sync.
    """
    ts = [s.item() for s in steps]
    return [1 - beta2 ** t for t in ts], [math.sqrt(1 - beta3 ** t) for t in ts]
