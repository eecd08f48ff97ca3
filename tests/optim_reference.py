"""Deliberately plain per-tensor implementations written from shared/spec/OPTIMIZERS.md.

They share no code with alto.optim: every rule is spelled out with Python floats for norms and
scalars, so an agreement over many steps says the fast paths implement the spec.
"""
from __future__ import annotations

import math

import torch


class PlainLambFamily:
    """ALTO (use_a=True) or Lamb (use_a=False), sections 2 and 3 of the spec."""

    def __init__(self, groups, *, lr, betas, alpha=0.0, eps=1e-6, grad_clip=1.0,
                 bias_correction=True, trust_ratio="reference", use_a=True):
        # groups: list of (list_of_tensors, weight_decay)
        self.groups = groups
        self.lr, self.alpha, self.eps = lr, alpha, eps
        if use_a:
            self.b1, self.b2, self.b3 = betas
        else:
            self.b1, (self.b2, self.b3) = 0.0, betas
        self.grad_clip, self.bias_correction, self.trust_ratio, self.use_a = (
            grad_clip, bias_correction, trust_ratio, use_a)
        self.state = {}

    def step(self, grads):
        """grads: dict id(param) -> gradient tensor (missing = no gradient this step)."""
        if self.grad_clip is not None:
            total = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
            c = self.grad_clip / (total + 1e-6)
            if c < 1:
                grads = {k: g * c for k, g in grads.items()}
        for params, wd in self.groups:
            for p in params:
                if id(p) not in grads:
                    continue
                g = grads[id(p)]
                st = self.state.setdefault(id(p), dict(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p),
                                                       a=torch.zeros_like(p), prev=torch.zeros_like(p)))
                gt = g
                if self.use_a:
                    st["a"] = self.b1 * st["a"] + (1 - self.b1) * (g - st["prev"])
                    gt = g + self.alpha * st["a"]
                st["t"] += 1
                t = st["t"]
                st["m"] = self.b2 * st["m"] + (1 - self.b2) * gt
                st["v"] = self.b3 * st["v"] + (1 - self.b3) * gt * gt
                if self.bias_correction:
                    m_hat, v_hat = st["m"] / (1 - self.b2 ** t), st["v"] / (1 - self.b3 ** t)
                else:
                    m_hat, v_hat = st["m"], st["v"]
                u = m_hat / (v_hat.sqrt() + self.eps)
                if self.trust_ratio == "paper":
                    u = u + wd * p
                    phi = float(p.norm()) + 1e-10
                    tau = phi / (float(u.norm()) + 1e-6 * phi)
                    p.sub_(self.lr * tau * u)
                elif self.trust_ratio == "reference" and wd != 0:
                    u = u + wd * p
                    pn, un = float(p.norm()), float(u.norm())
                    tau = pn / un if pn > 0 and un > 0 else 1.0
                    p.sub_(self.lr * tau * u)
                else:
                    if wd != 0:
                        u = u + wd * p
                    p.sub_(self.lr * u)
                st["prev"] = g.clone()


class PlainLion:
    def __init__(self, groups, *, lr, betas, weight_decay):
        self.groups, self.lr, (self.b1, self.b2), self.wd = groups, lr, betas, weight_decay
        self.m = {}

    def step(self, grads):
        for params, _ in self.groups:
            for p in params:
                g = grads[id(p)]
                m = self.m.setdefault(id(p), torch.zeros_like(p))
                c = self.b1 * m + (1 - self.b1) * g
                p.copy_(p - self.lr * (torch.sign(c) + self.wd * p))
                self.m[id(p)] = self.b2 * m + (1 - self.b2) * g


class PlainE:
    """E around a plain heavy-ball SGD (torch.optim.SGD's rule: buf = mu*buf + g; p -= lr*buf)."""

    def __init__(self, params, *, lr, momentum, alpha, beta, init="zeros"):
        self.params, self.lr, self.mu, self.alpha, self.beta, self.init = params, lr, momentum, alpha, beta, init
        self.st = {}

    def step(self, grads):
        for p in self.params:
            g = grads[id(p)]
            if id(p) not in self.st:
                prev = g.clone() if self.init == "first_grad" else torch.zeros_like(p)
                self.st[id(p)] = dict(a=torch.zeros_like(p), prev=prev, buf=None)
            st = self.st[id(p)]
            st["a"] = self.beta * st["a"] + (1 - self.beta) * (g - st["prev"])
            st["prev"] = g.clone()
            gt = g + self.alpha * st["a"]
            st["buf"] = gt.clone() if st["buf"] is None else self.mu * st["buf"] + gt
            p.sub_(self.lr * st["buf"])
