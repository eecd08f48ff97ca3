"""The previous ALTO/Lamb step, kept only as a baseline for `alto bench optim` (rows `*_previous`).

This is the multi-tensor implementation the optimizers used before the cache-blocked CPU path and
the leaner multi-tensor path: the global clip as a pass of its own, one foreach operation per step
of the formula over blocks of 2^20 elements, per-tensor step counters, and telemetry from one dot
product per tensor. Printing its timings beside the current ones in the same run keeps the
comparison honest on a noisy machine. Nothing else imports it; its numbers match the current
path's (tests/test_optim.py checks that), only its speed differs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._lamb_math import applies_trust_ratio, trust_ratio_of
from .clip import clip_grads_, group_by_device_dtype

BLOCK_ELEMS = 1 << 20


def _sumsq(tensors: list[Tensor]) -> Tensor:
    return torch.stack(torch._foreach_norm(tensors)).pow(2).sum()


def _dot(xs: list[Tensor], ys: list[Tensor]) -> Tensor:
    return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(xs, ys)]).sum()


def _chunk(lists: list[list[Tensor]], max_elems: int) -> tuple[list[list[Tensor]], list[int]]:
    out: list[list[Tensor]] = [[] for _ in lists]
    owners: list[int] = []
    for i in range(len(lists[0])):
        tensors = [lst[i] for lst in lists]
        if tensors[0].numel() <= max_elems or not all(t.is_contiguous() for t in tensors):
            pieces = [[t] for t in tensors]
        else:
            pieces = [list(t.view(-1).split(max_elems)) for t in tensors]
        for o, piece in zip(out, pieces):
            o.extend(piece)
        owners.extend([i] * len(pieces[0]))
    return out, owners


def _blocks(chunks: list[Tensor], max_elems: int | None) -> list[list[int]]:
    if max_elems is None:
        return [list(range(len(chunks)))]
    blocks, current, size = [], [], 0
    for j, c in enumerate(chunks):
        if current and size + c.numel() > max_elems:
            blocks.append(current)
            current, size = [], 0
        current.append(j)
        size += c.numel()
    return blocks + [current] if current else blocks


def _step_bucket(params, grads, exp_avgs, exp_avg_sqs, steps, adaptors, prevs, *, alpha, beta1, beta2, beta3,
                 lr, eps, weight_decay, bias_correction, trust_ratio, sums: dict, block_elems) -> None:
    torch._foreach_add_(steps, 1)
    lists = [params, grads, exp_avgs, exp_avg_sqs] + ([adaptors, prevs] if adaptors is not None else [])
    if block_elems is not None:
        lists, owners = _chunk(lists, block_elems)
    else:
        owners = list(range(len(params)))
    ps, us, ms, vs = lists[:4]
    blocks = _blocks(ps, block_elems)
    if bias_correction:
        ts = [s.item() for s in steps]
        eps_scaled = [eps * math.sqrt(1 - beta3 ** ts[i]) for i in owners]
        u_scale = [math.sqrt(1 - beta3 ** ts[i]) / (1 - beta2 ** ts[i]) for i in owners]
    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    stats = sums is not None
    p_sq, u_sq = [], []
    for block in blocks:  # pass 1
        p, u, m, v = ([lst[j] for j in block] for lst in (ps, us, ms, vs))
        if adaptors is not None:
            a, prev = [lists[4][j] for j in block], [lists[5][j] for j in block]
            if stats:
                sums["g_sq"].append(_sumsq(u))
                sums["prev_sq"].append(_sumsq(prev))
                sums["g_prev_dot"].append(_dot(u, prev))
            torch._foreach_sub_(prev, u)
            torch._foreach_mul_(a, beta1)
            torch._foreach_add_(a, prev, alpha=-(1 - beta1))
            if stats:
                sums["diff_sq"].append(_sumsq(prev))
                sums["a_sq"].append(_sumsq(a))
                sums["a_g_dot"].append(_dot(a, u))
            torch._foreach_copy_(prev, u)
            if alpha != 0:
                torch._foreach_add_(u, a, alpha=alpha)
        torch._foreach_lerp_(m, u, 1 - beta2)
        torch._foreach_mul_(v, beta3)
        torch._foreach_addcmul_(v, u, u, value=1 - beta3)
        torch._foreach_copy_(u, v)
        torch._foreach_sqrt_(u)
        torch._foreach_add_(u, [eps_scaled[j] for j in block] if bias_correction else eps)
        torch._foreach_reciprocal_(u)
        torch._foreach_mul_(u, m)
        if bias_correction:
            torch._foreach_mul_(u, [u_scale[j] for j in block])
        if weight_decay != 0:
            torch._foreach_add_(u, p, alpha=weight_decay)
        if apply_ratio or stats:
            p_sq.extend(torch._foreach_norm(p))
            u_sq.extend(torch._foreach_norm(u))
    ratio = None
    if apply_ratio or stats:
        p_norm, u_norm = torch.stack(p_sq), torch.stack(u_sq)
        if block_elems is not None:
            owner_index = torch.tensor(owners, device=params[0].device)
            p_norm = torch.zeros(len(params), device=p_norm.device, dtype=p_norm.dtype).index_add_(
                0, owner_index, p_norm.square()).sqrt()
            u_norm = torch.zeros_like(p_norm).index_add_(0, owner_index, u_norm.square()).sqrt()
    if apply_ratio:
        ratio = trust_ratio_of(p_norm, u_norm, trust_ratio)
        scales = ratio * -lr
        scales = (scales if block_elems is None else scales[owner_index]).unbind(0)
    for block in blocks:  # pass 2
        p, u = [ps[j] for j in block], [us[j] for j in block]
        if ratio is not None:
            torch._foreach_mul_(u, [scales[j] for j in block])
            torch._foreach_add_(p, u)
        else:
            torch._foreach_add_(p, u, alpha=-lr)
    if stats:
        step_norm = u_norm * lr if ratio is None else u_norm * ratio * lr
        sums["upd_sq"].append(step_norm.square().sum())
        sums["p_sq"].append(_sumsq(params))
        if ratio is not None:
            sums["trust_ratios"].append(ratio)


class PreviousLambFamily(Optimizer):
    """ALTO (with_adaptor=True, the paper's large-batch defaults) or Lamb, the previous way."""

    def __init__(self, params, with_adaptor: bool) -> None:
        betas = (0.99, 0.9, 0.99) if with_adaptor else (0.0, 0.9, 0.99)
        defaults = dict(lr=1e-3, betas=betas, alpha=-5.0 if with_adaptor else 0.0, eps=1e-6, weight_decay=1e-4,
                        bias_correction=with_adaptor, trust_ratio="reference")
        super().__init__(params, defaults)
        self.with_adaptor = with_adaptor
        self.collect_stats = False
        self.stats: dict[str, Tensor] = {}

    @torch.no_grad()
    def step(self, closure=None):
        with_grad = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
        all_grads = [p.grad for ps in with_grad for p in ps]
        norm, coef = clip_grads_(all_grads, 1.0)
        sums = {k: [] for k in ("g_sq", "prev_sq", "g_prev_dot", "diff_sq", "a_sq", "a_g_dot", "upd_sq", "p_sq",
                                "trust_ratios")} if self.collect_stats else None
        for group, ps in zip(self.param_groups, with_grad):
            beta1, beta2, beta3 = group["betas"]
            for (device, _), idx in group_by_device_dtype(ps).items():
                bucket = [ps[i] for i in idx]
                for p in bucket:
                    state = self.state[p]
                    if not state:
                        state["step"] = torch.tensor(0.0)
                        for key in ("exp_avg", "exp_avg_sq") + (("a", "prev") if self.with_adaptor else ()):
                            state[key] = torch.zeros_like(p)
                states = [self.state[p] for p in bucket]
                _step_bucket(bucket, [p.grad for p in bucket], [s["exp_avg"] for s in states],
                             [s["exp_avg_sq"] for s in states], [s["step"] for s in states],
                             [s["a"] for s in states] if self.with_adaptor else None,
                             [s["prev"] for s in states] if self.with_adaptor else None,
                             alpha=group["alpha"], beta1=beta1, beta2=beta2, beta3=beta3, lr=group["lr"],
                             eps=group["eps"], weight_decay=group["weight_decay"],
                             bias_correction=group["bias_correction"], trust_ratio=group["trust_ratio"],
                             sums=sums, block_elems=BLOCK_ELEMS if device.type == "cpu" else None)
        if sums is not None:
            self.stats = self._result(norm, coef, sums, self.param_groups[0]["alpha"])

    @staticmethod
    def _result(norm: Tensor, coef: Tensor, sums: dict, alpha: float) -> dict[str, Tensor]:
        total = {k: torch.stack(v).sum() for k, v in sums.items() if v and k != "trust_ratios"}
        out = {"grad_norm": norm, "clip_coef": coef, "param_norm": total["p_sq"].sqrt(),
               "update_norm": total["upd_sq"].sqrt()}
        if sums["trust_ratios"]:
            ratios = torch.cat(sums["trust_ratios"])
            out.update(trust_ratios=ratios, trust_ratio_min=ratios.min(), trust_ratio_max=ratios.max(),
                       trust_ratio_mean=ratios.mean())
        if "a_sq" in total:
            g, prev, a = total["g_sq"].sqrt(), total["prev_sq"].sqrt(), total["a_sq"].sqrt()
            out.update(a_norm=a, grad_diff_norm=total["diff_sq"].sqrt(), cos_grad_prev=total["g_prev_dot"] / (g * prev),
                       cos_a_grad=total["a_g_dot"] / (a * g), alpha_a_share=abs(alpha) * a / g)
        return out
