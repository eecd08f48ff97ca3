"""Maths shared by every implementation of the Lamb family (cache-blocked CPU, multi-tensor,
per-tensor, fused).

The trust ratio scales a tensor's update u by |p|/|u| (You et al.'s Lamb); the reference code
of the ALTO paper applies it only where weight decay is non-zero, the paper's variant always,
as phi(|p|) / (|u| + eps2*phi(|p|)) with phi(x) = x + eps3.
"""
from __future__ import annotations

import torch
from torch import Tensor

TRUST_RATIOS = ("reference", "paper", "none")
PAPER_EPS2, PAPER_EPS3 = 1e-6, 1e-10


def applies_trust_ratio(mode: str, weight_decay: float) -> bool:
    """Whether a group with this trust-ratio mode and weight decay scales by the trust ratio."""
    return mode == "paper" or (mode == "reference" and weight_decay != 0)


def trust_ratio_of(p_norm, u_norm, mode: str):
    """Trust ratios from the norms of the parameters and of their updates: per-tensor tensors
    (all tensors at once, on the device) or Python floats (one tensor, on the host)."""
    if mode == "paper":
        phi = p_norm + PAPER_EPS3
        return phi / (u_norm + PAPER_EPS2 * phi)
    if isinstance(p_norm, float):
        return p_norm / u_norm if p_norm > 0 and u_norm > 0 else 1.0
    ok = (p_norm > 0) & (u_norm > 0)
    return torch.where(ok, p_norm / torch.where(ok, u_norm, 1), torch.ones_like(p_norm))


def bias_correction_scalars(step_counts: Tensor, beta2: float, beta3: float,
                            eps: float) -> tuple[Tensor, Tensor]:
    """Per tensor (eps_hat, u_scale), float64 CPU tensors, for the step counts t (1-D, CPU):

        u = (m / (1-beta2^t)) / (sqrt(v / (1-beta3^t)) + eps) = u_scale * m / (sqrt(v) + eps_hat)
        eps_hat = eps * sqrt(1-beta3^t),  u_scale = sqrt(1-beta3^t) / (1-beta2^t)

    The counts live on the CPU (as in torch.optim.AdamW), so reading them is not a device sync.
    """
    t = step_counts.double()
    bc2_sqrt = (1 - beta3 ** t).sqrt()
    return eps * bc2_sqrt, bc2_sqrt / (1 - beta2 ** t)


def refuse_cuda_graph_capture(what: str, device: torch.device) -> None:
    """Raise a clear error when `what` would be captured into a CUDA graph.

    Every step writes host-side values that change from step to step (the step counters' bias
    corrections, the learning rate, the fused kernels' tables of tensor addresses); a captured
    graph would replay the first step's values forever.
    """
    # (CUDA not initialised: nothing can be capturing, e.g. fake CUDA tensors on a CPU machine)
    if device.type == "cuda" and torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(f"{what} cannot be captured in a CUDA graph: it passes step-dependent values "
                           "(bias corrections, learning rate, tensor addresses) from the host on every step; "
                           "call it outside torch.cuda.graph / make_graphed_callables")
