"""Per-step statistics an optimizer fills in while it steps.

The cores hand over partial sums (of squares and products) that they computed during their own
passes over the data, one short vector per bucket: device tensors on CUDA, so that collecting
statistics never synchronises with the host (the training loop copies them to the host in
batches), or Python floats where the core already holds them on the host (the CPU path).
`StepStats.result` turns the totals into norms, cosines and ratios with the same formulas either
way: a handful of vector operations on the device, plain float arithmetic on the host.
"""
from __future__ import annotations

import math
import operator
from typing import Callable, Sequence

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


def _host_div(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan  # 0/0 (first step, prev = 0): undefined, reported as NaN


def derived(t: Sequence, present: set[int], alpha: float | None, sqrt: Callable, div: Callable) -> dict:
    """The reported statistics from the totals t (indexed like SUMS; floats or 0-d tensors)."""
    out = {}
    if P_SQ in present:
        out.update(param_norm=sqrt(t[P_SQ]), update_norm=sqrt(t[UPD_SQ]))
    if A_SQ in present:
        g, prev, a = sqrt(t[G_SQ]), sqrt(t[PREV_SQ]), sqrt(t[A_SQ])
        out.update(a_norm=a, grad_diff_norm=sqrt(t[DIFF_SQ]), cos_grad_prev=div(t[G_PREV_DOT], g * prev),
                   cos_a_grad=div(t[A_G_DOT], a * g))
        if alpha is not None:
            out["alpha_a_share"] = div(abs(alpha) * a, g)
    return out


class StepStats:
    """Partial sums from every (group, device, dtype) bucket, combined once per step."""

    def __init__(self) -> None:
        self.sums: list[tuple[int, Tensor | list[float]]] = []  # (index of the first sum in SUMS, values)
        self.scalars: dict[str, Tensor] = {}                      # reported as they are: grad_norm, clip_coef
        self.trust_ratios: list[Tensor | list[float]] = []        # per bucket, one per tensor

    def add_sums(self, first: int, values: Tensor | list[float]) -> None:
        """Add `values` to the sums SUMS[first], SUMS[first + 1], ..."""
        self.sums.append((first, values))

    def set(self, key: str, value: Tensor) -> None:
        self.scalars[key] = value

    def _on_host(self) -> bool:
        parts = [v for _, v in self.sums] + self.trust_ratios
        return (all(not isinstance(v, Tensor) for v in parts)
                and all(v.device.type == "cpu" for v in self.scalars.values()))

    def result(self, alpha: float | None = None) -> dict[str, Tensor]:
        """0-d tensors per key (views into one vector), plus the 1-D per-layer `trust_ratios`."""
        present = {first + i for first, values in self.sums for i in range(len(values))}
        if self._on_host():
            return self._result_on_host(present, alpha)
        keys, values = list(self.scalars), list(self.scalars.values())
        if self.sums:
            device = next(v for _, v in self.sums if isinstance(v, Tensor)).device
            fp64 = any(getattr(v, "dtype", None) == torch.float64 for _, v in self.sums)
            dtype = torch.float64 if fp64 else torch.float32
            totals = torch.zeros(len(SUMS), device=device, dtype=dtype)
            for first, part in self.sums:
                part = torch.as_tensor(part, dtype=dtype).to(device)
                totals[first:first + len(part)] += part
            stats = derived(totals.unbind(), present, alpha, torch.sqrt, operator.truediv)
            keys, values = keys + list(stats), values + list(stats.values())
        out: dict[str, Tensor] = {}
        if values:
            device = values[0].device
            dtype = torch.float64 if any(v.dtype == torch.float64 for v in values) else torch.float32
            out = dict(zip(keys, torch.stack([v.to(device=device, dtype=dtype) for v in values]).unbind()))
        if self.trust_ratios:
            tensors = [r for r in self.trust_ratios if isinstance(r, Tensor)]
            device = tensors[0].device if tensors else torch.device("cpu")
            dtype = torch.float64 if any(r.dtype == torch.float64 for r in tensors) else torch.float32
            ratios = torch.cat([torch.as_tensor(r, dtype=dtype).to(device).reshape(-1) for r in self.trust_ratios])
            low, high = torch.aminmax(ratios)
            out.update(trust_ratios=ratios, trust_ratio_min=low, trust_ratio_max=high,
                       trust_ratio_mean=ratios.mean())
        return out

    def _result_on_host(self, present: set[int], alpha: float | None) -> dict[str, Tensor]:
        """Everything is already on the host (the CPU path): float arithmetic, one tensor."""
        totals = [0.0] * len(SUMS)
        for first, part in self.sums:
            for i, value in enumerate(part):
                totals[first + i] += value
        out = {k: v.item() for k, v in self.scalars.items()}
        out.update(derived(totals, present, alpha, math.sqrt, _host_div))
        ratios = [r for part in self.trust_ratios for r in part]
        if ratios:
            out.update(trust_ratio_min=min(ratios), trust_ratio_max=max(ratios),
                       trust_ratio_mean=math.fsum(ratios) / len(ratios))
        dtype = torch.float64 if any(v.dtype == torch.float64 for v in self.scalars.values()) else torch.float32
        result = dict(zip(out, torch.tensor(list(out.values()), dtype=dtype).unbind()))
        if ratios:
            result["trust_ratios"] = torch.tensor(ratios, dtype=dtype)
        return result
