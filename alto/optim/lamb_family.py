"""ALTO and Lamb: one functional core with a multi-tensor and a per-tensor path.

Lamb is ALTO without the gradient-difference term `a`. Both first clip all gradients together
(global L2 norm), then per tensor:

    a = b1*a + (1-b1)*(g - prev);  g~ = g + alpha*a;  prev = g          (ALTO only)
    m = b2*m + (1-b2)*g~;  v = b3*v + (1-b3)*g~^2
    u = (m / (1-b2^t)) / (sqrt(v / (1-b3^t)) + eps)                   (bias correction optional)
    reference trust ratio: if wd != 0: u += wd*p; p -= lr * (|p|/|u| or 1) * u
                           else:       p -= lr * u
    paper trust ratio:     u += wd*p; p -= lr * phi(|p|) / (|u| + eps2*phi(|p|)) * u, phi(x) = x + eps3

See shared/spec/OPTIMIZERS.md section 2. Nothing here reads a tensor value on the host.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _validate as check
from ._telemetry import StepStats, sumsq
from .clip import clip_grads_, group_by_device_dtype

TRUST_RATIOS = ("reference", "paper", "none")
PAPER_EPS2, PAPER_EPS3 = 1e-6, 1e-10


def _bias_corrections(steps: list[Tensor], beta2: float, beta3: float) -> tuple[list[float], list[float]]:
    # `step` lives on the CPU (as in torch.optim.AdamW), so .item() is not a device sync.
    ts = [s.item() for s in steps]
    return [1 - beta2 ** t for t in ts], [math.sqrt(1 - beta3 ** t) for t in ts]


def _trust_ratio(p_norm: Tensor, u_norm: Tensor, mode: str) -> Tensor:
    if mode == "paper":
        phi = p_norm + PAPER_EPS3
        return phi / (u_norm + PAPER_EPS2 * phi)
    ok = (p_norm > 0) & (u_norm > 0)
    return torch.where(ok, p_norm / torch.where(ok, u_norm, 1), torch.ones_like(p_norm))


def _applies_trust_ratio(mode: str, weight_decay: float) -> bool:
    return mode == "paper" or (mode == "reference" and weight_decay != 0)


def lamb_multi_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                      exp_avg_sqs: list[Tensor], steps: list[Tensor],
                      adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
                      alpha: float, beta1: float, beta2: float, beta3: float, lr: float, eps: float,
                      weight_decay: float, bias_correction: bool, trust_ratio: str,
                      stats: StepStats | None = None) -> None:
    """One ALTO (adaptors given) or Lamb (adaptors None) step on already-clipped gradients.

    All lists must share one device and dtype (callers bucket them).
    """
    if not params:
        return
    torch._foreach_add_(steps, 1)
    update_dir = grads
    if adaptors is not None:
        diffs = torch._foreach_sub(grads, prevs)
        torch._foreach_lerp_(adaptors, diffs, 1 - beta1)
        if stats is not None:
            stats.add_adaptor(grads, prevs, diffs, adaptors)
        del diffs
        torch._foreach_copy_(prevs, grads)
        if alpha != 0:
            update_dir = torch._foreach_add(grads, adaptors, alpha=alpha)

    torch._foreach_lerp_(exp_avgs, update_dir, 1 - beta2)
    torch._foreach_mul_(exp_avg_sqs, beta3)
    torch._foreach_addcmul_(exp_avg_sqs, update_dir, update_dir, value=1 - beta3)
    del update_dir

    denom = torch._foreach_sqrt(exp_avg_sqs)
    if bias_correction:
        bc1, bc2_sqrt = _bias_corrections(steps, beta2, beta3)
        torch._foreach_div_(denom, bc2_sqrt)
    torch._foreach_add_(denom, eps)
    updates = torch._foreach_div(exp_avgs, denom)
    del denom
    if bias_correction:
        torch._foreach_div_(updates, bc1)

    apply_ratio = _applies_trust_ratio(trust_ratio, weight_decay)
    if weight_decay != 0:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    if apply_ratio or stats is not None:
        p_norm = torch.stack(torch._foreach_norm(params))
        u_norm = torch.stack(torch._foreach_norm(updates))
    if apply_ratio:
        ratio = _trust_ratio(p_norm, u_norm, trust_ratio)
        torch._foreach_mul_(updates, (ratio * -lr).unbind(0))
        torch._foreach_add_(params, updates)
    else:
        ratio = None
        torch._foreach_add_(params, updates, alpha=-lr)

    if stats is not None:
        step_norm = u_norm * lr if ratio is None else u_norm * ratio * lr
        stats.add("upd_sq", step_norm.pow(2).sum())
        stats.add("p_sq", sumsq(params))
        if ratio is not None:
            stats.trust_ratios.append(ratio)


def lamb_single_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                       exp_avg_sqs: list[Tensor], steps: list[Tensor],
                       adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
                       alpha: float, beta1: float, beta2: float, beta3: float, lr: float, eps: float,
                       weight_decay: float, bias_correction: bool, trust_ratio: str,
                       stats: StepStats | None = None) -> None:
    """The same step, one tensor at a time (the shape of the authors' reference loop)."""
    if stats is not None:  # telemetry is a multi-tensor feature; reuse that path for it
        return lamb_multi_tensor(params, grads, exp_avgs, exp_avg_sqs, steps, adaptors, prevs,
                                 alpha=alpha, beta1=beta1, beta2=beta2, beta3=beta3, lr=lr, eps=eps,
                                 weight_decay=weight_decay, bias_correction=bias_correction,
                                 trust_ratio=trust_ratio, stats=stats)
    apply_ratio = _applies_trust_ratio(trust_ratio, weight_decay)
    for i, (p, g, m, v, step) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs, steps)):
        step += 1
        d = g
        if adaptors is not None:
            a, prev = adaptors[i], prevs[i]
            a.lerp_(g - prev, 1 - beta1)
            prev.copy_(g)
            if alpha != 0:
                d = g.add(a, alpha=alpha)
        m.lerp_(d, 1 - beta2)
        v.mul_(beta3).addcmul_(d, d, value=1 - beta3)
        if bias_correction:
            t = step.item()
            u = (m / (1 - beta2 ** t)) / ((v / (1 - beta3 ** t)).sqrt() + eps)
        else:
            u = m / (v.sqrt() + eps)
        if weight_decay != 0:
            u.add_(p, alpha=weight_decay)
        if apply_ratio:
            ratio = _trust_ratio(torch.linalg.vector_norm(p), torch.linalg.vector_norm(u), trust_ratio)
            p.add_(u * ratio, alpha=-lr)
        else:
            p.add_(u, alpha=-lr)


class _LambFamily(Optimizer):
    """Shared driver: gather gradients, clip them globally, run the core per group and bucket."""

    _with_adaptor: bool = False
    _name = "Lamb"

    def __init__(self, params, defaults: dict, *, grad_clip: float | None, foreach: bool | None) -> None:
        self.grad_clip = check.optional_positive(self._name, "grad_clip", grad_clip)
        self.foreach = True if foreach is None else bool(foreach)
        self.collect_stats = False
        self.stats: dict[str, Tensor] = {}
        super().__init__(params, defaults)

    def _group_hparams(self, group: dict) -> dict:
        raise NotImplementedError

    def _state_for(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if self._with_adaptor:
                state["a"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["prev"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        with_grad = [[p for p in group["params"] if p.grad is not None] for group in self.param_groups]
        all_grads = [p.grad for ps in with_grad for p in ps]
        if not all_grads:
            return loss
        if any(g.is_sparse for g in all_grads):
            raise RuntimeError(f"{self._name} does not support sparse gradients")

        stats = StepStats() if self.collect_stats else None
        norm, coef = clip_grads_(all_grads, self.grad_clip, foreach=self.foreach)
        if stats is not None:
            stats.add("grad_norm", norm)
            stats.add("clip_coef", coef)

        core = lamb_multi_tensor if self.foreach else lamb_single_tensor
        for group, ps in zip(self.param_groups, with_grad):
            if not ps:
                continue
            hp = self._group_hparams(group)
            for idx in group_by_device_dtype(ps).values():
                bucket = [ps[i] for i in idx]
                states = [self._state_for(p) for p in bucket]
                core([p for p in bucket], [p.grad for p in bucket],
                     [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                     [s["step"] for s in states],
                     [s["a"] for s in states] if self._with_adaptor else None,
                     [s["prev"] for s in states] if self._with_adaptor else None,
                     stats=stats, **hp)
        if stats is not None:
            self.stats = stats.result(alpha=self.param_groups[0].get("alpha"))
        return loss


class Lamb(_LambFamily):
    """Large-batch Lamb (You et al.) as the ALTO authors' baseline: global clip, no bias correction."""

    _name = "Lamb"

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.99),
                 eps: float = 1e-6, weight_decay: float = 1e-4, grad_clip: float | None = 1.0,
                 bias_correction: bool = False, trust_ratio: str = "reference",
                 foreach: bool | None = None) -> None:
        defaults = dict(
            lr=check.non_negative("Lamb", "lr", lr),
            betas=check.betas("Lamb", betas, ("first moment", "second moment")),
            eps=check.non_negative("Lamb", "eps", eps),
            weight_decay=check.non_negative("Lamb", "weight_decay", weight_decay),
            bias_correction=bool(bias_correction),
            trust_ratio=check.choice("Lamb", "trust_ratio", trust_ratio, TRUST_RATIOS),
        )
        super().__init__(params, defaults, grad_clip=grad_clip, foreach=foreach)

    def _group_hparams(self, group: dict) -> dict:
        beta2, beta3 = group["betas"]
        return dict(alpha=0.0, beta1=0.0, beta2=beta2, beta3=beta3, lr=group["lr"], eps=group["eps"],
                    weight_decay=group["weight_decay"], bias_correction=group["bias_correction"],
                    trust_ratio=group["trust_ratio"])


class ALTO(_LambFamily):
    """ALTO: the E adaptor fused into Lamb (Zhao et al., NeurIPS 2025), reference semantics.

    betas = (beta1, beta2, beta3) = (EMA of gradient differences, first moment, second moment).
    alpha < 0 explores along valleys, alpha > 0 exploits; |alpha| < 1/(1 - beta1) is enforced
    unless allow_unstable=True. Large-batch defaults from the paper.
    """

    _with_adaptor = True
    _name = "ALTO"

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float, float] = (0.99, 0.9, 0.99), alpha: float = -5.0,
                 eps: float = 1e-6, weight_decay: float = 1e-4, grad_clip: float | None = 1.0,
                 bias_correction: bool = True, trust_ratio: str = "reference",
                 allow_unstable: bool = False, foreach: bool | None = None) -> None:
        betas = check.betas("ALTO", betas, ("beta1: gradient-difference EMA", "beta2: first moment",
                                            "beta3: second moment"))
        defaults = dict(
            lr=check.non_negative("ALTO", "lr", lr),
            betas=betas,
            alpha=check.alpha_within_bound("ALTO", alpha, betas[0], allow_unstable, "betas[0]"),
            eps=check.non_negative("ALTO", "eps", eps),
            weight_decay=check.non_negative("ALTO", "weight_decay", weight_decay),
            bias_correction=bool(bias_correction),
            trust_ratio=check.choice("ALTO", "trust_ratio", trust_ratio, TRUST_RATIOS),
            allow_unstable=bool(allow_unstable),
        )
        super().__init__(params, defaults, grad_clip=grad_clip, foreach=foreach)
        for group in self.param_groups:  # groups may override alpha/betas: check each
            b = check.betas("ALTO", group["betas"], ("beta1", "beta2", "beta3"))
            check.alpha_within_bound("ALTO", group["alpha"], b[0], group["allow_unstable"], "betas[0]")

    def _group_hparams(self, group: dict) -> dict:
        beta1, beta2, beta3 = group["betas"]
        return dict(alpha=group["alpha"], beta1=beta1, beta2=beta2, beta3=beta3, lr=group["lr"],
                    eps=group["eps"], weight_decay=group["weight_decay"],
                    bias_correction=group["bias_correction"], trust_ratio=group["trust_ratio"])
