"""Device-side per-step statistics an optimizer can fill in while it steps.

Everything stays a tensor on the parameters' device, so collecting statistics adds kernels but
never a host-device synchronisation; the training loop copies them to the host in batches.
"""
from __future__ import annotations

import torch
from torch import Tensor


def sumsq(tensors: list[Tensor]) -> Tensor:
    """Sum of squares over a list of tensors, as a float32 0-d tensor (float64 kept)."""
    norms = torch._foreach_norm(tensors)
    dtype = torch.float64 if norms[0].dtype == torch.float64 else torch.float32
    return torch.stack(norms).to(dtype).pow(2).sum()


def dot(xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    dtype = torch.float64 if xs[0].dtype == torch.float64 else torch.float32
    return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)).to(dtype) for x, y in zip(xs, ys)]).sum()


class StepStats:
    """Partial sums from every (group, device, dtype) bucket, combined once per step."""

    def __init__(self) -> None:
        self.parts: dict[str, list[Tensor]] = {}
        self.trust_ratios: list[Tensor] = []

    def add(self, key: str, value: Tensor) -> None:
        self.parts.setdefault(key, []).append(value)

    def total(self, key: str) -> Tensor | None:
        values = self.parts.get(key)
        if not values:
            return None
        device = values[0].device
        return torch.stack([v.to(device=device, dtype=values[0].dtype) for v in values]).sum()

    def result(self, alpha: float | None = None) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for key in ("grad_norm", "clip_coef"):
            if key in self.parts:
                out[key] = self.total(key)
        for key, name in (("p_sq", "param_norm"), ("upd_sq", "update_norm")):
            total = self.total(key)
            if total is not None:
                out[name] = total.sqrt()
        if self.trust_ratios:
            device = self.trust_ratios[0].device
            ratios = torch.cat([r.to(device=device, dtype=torch.float32).reshape(-1) for r in self.trust_ratios])
            out["trust_ratios"] = ratios
            out["trust_ratio_min"], out["trust_ratio_max"] = ratios.min(), ratios.max()
            out["trust_ratio_mean"] = ratios.mean()
        if "a_sq" in self.parts:
            g = self.total("g_sq").sqrt()
            prev = self.total("prev_sq").sqrt()
            a = self.total("a_sq").sqrt()
            out["a_norm"] = a
            out["grad_diff_norm"] = self.total("diff_sq").sqrt()
            # 0/0 (first step, prev = 0) is reported as NaN: the cosine is undefined there.
            out["cos_grad_prev"] = self.total("g_prev_dot") / (g * prev)
            out["cos_a_grad"] = self.total("a_g_dot") / (a * g)
            if alpha is not None:
                out["alpha_a_share"] = abs(alpha) * a / g
        return out
