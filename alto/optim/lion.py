"""LION (Chen et al. 2023): the sign of an interpolated momentum, with decoupled weight decay.

    c = b1*m + (1-b1)*g;  p = p - lr*(sign(c) + wd*p);  m = b2*m + (1-b2)*g
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _validate as check
from ._telemetry import P_SQ, StepStats, sumsq_each
from .clip import global_norm, group_by_device_dtype


def lion_multi_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *,
                      lr: float, beta1: float, beta2: float, weight_decay: float,
                      stats: StepStats | None = None) -> None:
    updates = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
    torch._foreach_sign_(updates)
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)  # decay uses the pre-update p
    torch._foreach_add_(params, updates, alpha=-lr)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta2)
    if stats is not None:
        p_sq, sign_sq = sumsq_each([params, updates])
        stats.add_sums(P_SQ, torch.stack([p_sq, sign_sq * (lr * lr)]))


def lion_single_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], *,
                       lr: float, beta1: float, beta2: float, weight_decay: float,
                       stats: StepStats | None = None) -> None:
    if stats is not None:
        return lion_multi_tensor(params, grads, exp_avgs, lr=lr, beta1=beta1, beta2=beta2,
                                 weight_decay=weight_decay, stats=stats)
    for p, g, m in zip(params, grads, exp_avgs):
        update = m.lerp(g, 1 - beta1).sign_()
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        p.add_(update, alpha=-lr)
        m.lerp_(g, 1 - beta2)


class Lion(Optimizer):
    """LION. Typical settings: lr 3-10x smaller and weight_decay 3-10x larger than AdamW."""

    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0, foreach: bool | None = None) -> None:
        defaults = dict(
            lr=check.non_negative("Lion", "lr", lr),
            betas=check.betas("Lion", betas, ("interpolation", "momentum")),
            weight_decay=check.non_negative("Lion", "weight_decay", weight_decay),
        )
        self.foreach = True if foreach is None else bool(foreach)
        self.collect_stats = False
        self.stats: dict[str, Tensor] = {}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        stats = StepStats() if self.collect_stats else None
        core = lion_multi_tensor if self.foreach else lion_single_tensor
        all_grads = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            all_grads += [p.grad for p in ps]
            beta1, beta2 = group["betas"]
            for idx in group_by_device_dtype(ps).values():
                bucket = [ps[i] for i in idx]
                for p in bucket:
                    if not self.state[p]:
                        self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                core(bucket, [p.grad for p in bucket], [self.state[p]["exp_avg"] for p in bucket],
                     lr=group["lr"], beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"],
                     stats=stats)
        if stats is not None and all_grads:
            stats.set("grad_norm", global_norm(all_grads))
            self.stats = stats.result()
        return loss
