"""Device-side per-step statistics an optimizer fills in while it steps.

The cores hand over partial sums (of squares and products) that they computed during their own
passes over the data, as one small vector per bucket; `StepStats.result` turns the totals into
norms, cosines and ratios with a handful of vector operations. Everything stays a tensor on the
parameters' device, so collecting statistics never synchronises with the host; the training loop
copies them to the host in batches.
"""
from __future__ import annotations

import torch
from torch import Tensor

# Partial sums, in this order. p_sq is |p|^2 after the update, upd_sq |p_new - p|^2; the rest are
# the gradient-history sums of the E adaptor (g is the clipped gradient, prev the previous one,
# a the EMA of gradient differences after this step's update).
SUMS = ("p_sq", "upd_sq", "g_sq", "prev_sq", "g_prev_dot", "diff_sq", "a_sq", "a_g_dot")
P_SQ, UPD_SQ, G_SQ, PREV_SQ, G_PREV_DOT, DIFF_SQ, A_SQ, A_G_DOT = range(len(SUMS))


def sumsq_each(lists: list[list[Tensor]]) -> Tensor:
    """Sum of squares of each list of tensors (one bucket's lists, equally long), as one vector.

    One `_foreach_norm` over all the lists together: a single launch on CUDA, no per-tensor work
    in Python.
    """
    flat = [t for lst in lists for t in lst]
    norms = torch.stack(torch._foreach_norm(flat)).view(len(lists), -1)
    if norms.dtype not in (torch.float32, torch.float64):
        norms = norms.float()
    return norms.square().sum(dim=1)


class StepStats:
    """Partial sums from every (group, device, dtype) bucket, combined once per step."""

    def __init__(self) -> None:
        self.sums: list[tuple[int, Tensor]] = []  # (index of the first sum in SUMS, values)
        self.scalars: dict[str, Tensor] = {}      # reported as they are: grad_norm, clip_coef
        self.trust_ratios: list[Tensor] = []

    def add_sums(self, first: int, values: Tensor) -> None:
        """Add `values` to the sums SUMS[first], SUMS[first + 1], ..."""
        self.sums.append((first, values))

    def set(self, key: str, value: Tensor) -> None:
        self.scalars[key] = value

    def _totals(self) -> tuple[Tensor, set[int]]:
        device = self.sums[0][1].device
        dtype = torch.float64 if any(v.dtype == torch.float64 for _, v in self.sums) else torch.float32
        totals = torch.zeros(len(SUMS), device=device, dtype=dtype)
        present: set[int] = set()
        for first, values in self.sums:
            totals[first:first + len(values)] += values.to(device=device, dtype=dtype)
            present.update(range(first, first + len(values)))
        return totals, present

    def result(self, alpha: float | None = None) -> dict[str, Tensor]:
        """0-d tensors per key (views into one vector), plus the 1-D per-layer `trust_ratios`."""
        keys, values = list(self.scalars), list(self.scalars.values())
        if self.sums:
            totals, present = self._totals()
            roots = totals.sqrt()
            if P_SQ in present:
                keys += ["param_norm", "update_norm"]
                values += [roots[P_SQ], roots[UPD_SQ]]
            if A_SQ in present:
                g, prev, a = roots[G_SQ], roots[PREV_SQ], roots[A_SQ]
                # 0/0 (first step, prev = 0) is reported as NaN: the cosine is undefined there
                keys += ["a_norm", "grad_diff_norm", "cos_grad_prev", "cos_a_grad"]
                values += [a, roots[DIFF_SQ], totals[G_PREV_DOT] / (g * prev), totals[A_G_DOT] / (a * g)]
                if alpha is not None:
                    keys.append("alpha_a_share")
                    values.append(abs(alpha) * a / g)
        out: dict[str, Tensor] = {}
        if values:
            device = values[0].device
            dtype = torch.float64 if any(v.dtype == torch.float64 for v in values) else torch.float32
            vector = torch.stack([v.to(device=device, dtype=dtype) for v in values])
            out = dict(zip(keys, vector.unbind()))
        if self.trust_ratios:
            device = self.trust_ratios[0].device
            ratios = torch.cat([r.to(device=device, dtype=torch.float32).reshape(-1) for r in self.trust_ratios])
            low, high = torch.aminmax(ratios)
            out.update(trust_ratios=ratios, trust_ratio_min=low, trust_ratio_max=high,
                       trust_ratio_mean=ratios.mean())
        return out
