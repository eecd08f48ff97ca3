"""E: the gradient-history adaptor, wrapping any torch.optim.Optimizer.

    a = b*a + (1-b)*(g - prev);  prev = g;  g~ = g + alpha*a;  base.step() on g~

alpha < 0 explores along low-loss valleys, alpha > 0 exploits; |alpha| < 1/(1-b) is enforced
unless allow_unstable=True. Unlike the reference, `a` and `prev` are part of the state dict.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _validate as check
from ._telemetry import G_SQ, StepStats, sumsq_each
from .clip import global_norm, group_by_device_dtype

INITS = ("zeros", "first_grad")


def adapt_gradients_(grads: list[Tensor], adaptors: list[Tensor], prevs: list[Tensor], *,
                     alpha: float, beta: float, stats: StepStats | None = None) -> None:
    """a = beta*a + (1-beta)*(g - prev); prev = g; g = g + alpha*a -- in place, no temporaries.

    Shared by E and ALTO's multi-tensor path. `prevs` doubles as scratch for prev - g. At
    alpha = 0 the gradients are left untouched, so E(base, alpha=0) is bit-identical to base.
    With `stats`, the gradient-history sums come from whole-list `_foreach_norm` passes (torch
    has no multi-tensor dot product): |g|^2 and |prev|^2 before the update, |g - prev|^2 and |a|^2
    after it; the dot products follow from exact algebra,
        <g, prev> = (|g|^2 + |prev|^2 - |g - prev|^2) / 2,
        <a, g> = (|g + alpha*a|^2 - |g|^2 - alpha^2*|a|^2) / (2*alpha),
    accurate to about 1e-7 * |g| * |prev| (resp. |g|^2 / |alpha|) in float32: cosines near zero
    come out with absolute, not relative, errors of that size.
    """
    if stats is not None:
        before = sumsq_each([grads, prevs])
    torch._foreach_sub_(prevs, grads)                         # prev - g
    torch._foreach_mul_(adaptors, beta)
    torch._foreach_add_(adaptors, prevs, alpha=-(1 - beta))  # a = beta*a + (1-beta)*(g - prev)
    if stats is not None:
        after = sumsq_each([prevs, adaptors])
        if alpha == 0:  # g~ = g carries no information about <a, g>: one dot per tensor
            a_g = torch.stack([torch.dot(a.reshape(-1), g.reshape(-1)) for a, g in zip(adaptors, grads)])
            a_g = a_g.to(after.dtype).sum().reshape(1)
    torch._foreach_copy_(prevs, grads)
    if alpha != 0:
        torch._foreach_add_(grads, adaptors, alpha=alpha)
    if stats is not None:
        if alpha != 0:
            a_g = (sumsq_each([grads]) - before[:1] - alpha * alpha * after[1:]) / (2 * alpha)
        g_prev = (before[0] + before[1] - after[0]) / 2
        stats.add_sums(G_SQ, torch.cat([before, g_prev.reshape(1), after, a_g]))


class E(Optimizer):
    """Feeds an EMA of gradient differences back into the gradient, then calls the base step.

    Shares `param_groups` with the base optimizer, so LR schedulers attached to the wrapper
    drive the base's learning rate. `init="first_grad"` sets prev = g_1 (so a_1 = 0), the
    reference's rule for tiny problems, here an explicit option.
    """

    def __init__(self, base_optimizer: Optimizer, alpha: float = -5.0, beta: float = 0.99,
                 init: str = "zeros", allow_unstable: bool = False) -> None:
        if not isinstance(base_optimizer, Optimizer):
            raise ValueError(f"E: base_optimizer must be a torch.optim.Optimizer, got {type(base_optimizer).__name__}")
        self.beta = check.beta("E", "beta", beta)
        self.alpha = check.alpha_within_bound("E", alpha, self.beta, allow_unstable, "beta")
        self.init = check.choice("E", "init", init, INITS)
        self.allow_unstable = bool(allow_unstable)
        self.collect_stats = False
        self.stats: dict[str, Tensor] = {}
        # Optimizer.__init__ sets up hooks and bookkeeping; then share the base's groups so that
        # schedulers and users changing lr on the wrapper change the base.
        super().__init__([p for g in base_optimizer.param_groups for p in g["params"]], {})
        self.base = base_optimizer
        self.param_groups = base_optimizer.param_groups
        self.defaults = base_optimizer.defaults

    def __repr__(self) -> str:
        return f"E(alpha={self.alpha}, beta={self.beta}, init={self.init!r}, base={self.base!r})"

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def adapt_gradients(self) -> None:
        """Replace every p.grad by g + alpha*a (and update a, prev); the base step follows."""
        ps = [p for p in self._params() if p.grad is not None]
        if not ps:
            return
        stats = StepStats() if self.collect_stats else None
        if stats is not None:
            stats.set("grad_norm", global_norm([p.grad for p in ps]))
        for p in ps:
            state = self.state[p]
            if not state:
                state["a"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["prev"] = (p.grad.clone(memory_format=torch.preserve_format) if self.init == "first_grad"
                                 else torch.zeros_like(p, memory_format=torch.preserve_format))
        for idx in group_by_device_dtype(ps).values():
            adapt_gradients_([ps[i].grad for i in idx], [self.state[ps[i]]["a"] for i in idx],
                             [self.state[ps[i]]["prev"] for i in idx], alpha=self.alpha, beta=self.beta,
                             stats=stats)
        if stats is not None:
            self.stats = stats.result(alpha=self.alpha)

    def step(self, closure: Callable[[], float] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.adapt_gradients()
        self.base.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict) -> None:
        if not hasattr(self, "base"):  # called by Optimizer.__init__ before the base is attached
            return super().add_param_group(param_group)
        self.base.add_param_group(param_group)

    def state_dict(self) -> dict:
        index = {id(p): i for i, p in enumerate(self._params())}
        adaptor_state = {index[id(p)]: {k: v for k, v in s.items()} for p, s in self.state.items()}
        return {
            "base": self.base.state_dict(),
            "adaptor": {"alpha": self.alpha, "beta": self.beta, "init": self.init,
                        "allow_unstable": self.allow_unstable, "state": adaptor_state},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != {"base", "adaptor"}:
            raise ValueError("E.load_state_dict: expected a dict with keys 'base' and 'adaptor' "
                             f"(from E.state_dict()), got keys {sorted(state_dict)}")
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups
        saved = state_dict["adaptor"]
        self.beta = check.beta("E", "beta", saved["beta"])
        self.allow_unstable = bool(saved.get("allow_unstable", False))
        self.alpha = check.alpha_within_bound("E", saved["alpha"], self.beta, self.allow_unstable, "beta")
        self.init = check.choice("E", "init", saved["init"], INITS)
        params = self._params()
        self.state.clear()
        for i, s in saved["state"].items():
            p = params[int(i)]
            self.state[p] = {k: v.to(device=p.device, dtype=p.dtype) for k, v in s.items()}
