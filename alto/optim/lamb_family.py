"""ALTO and Lamb: one functional core with a multi-tensor and a per-tensor path.

Lamb is ALTO without the gradient-difference term `a`. Both first clip all gradients together
(global L2 norm), then per tensor:

    a = b1*a + (1-b1)*(g - prev);  g~ = g + alpha*a;  prev = g          (ALTO only)
    m = b2*m + (1-b2)*g~;  v = b3*v + (1-b3)*g~^2
    u = (m / (1-b2^t)) / (sqrt(v / (1-b3^t)) + eps)                   (bias correction optional)
    reference trust ratio: if wd != 0: u += wd*p; p -= lr * (|p|/|u| or 1) * u
                           else:       p -= lr * u
    paper trust ratio:     u += wd*p; p -= lr * phi(|p|) / (|u| + eps2*phi(|p|)) * u, phi(x) = x + eps3

The update rule is section 3 of the paper (Algorithm 1). Nothing here reads a tensor value on the host.
"""
from __future__ import annotations

import functools
import warnings
from types import ModuleType
from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _validate as check
from ._lamb_math import TRUST_RATIOS, applies_trust_ratio, bias_corrections, trust_ratio_of
from ._telemetry import StepStats, sumsq
from .adaptor import adapt_gradients_
from .clip import clip_grads_, group_by_device_dtype

CPU_BLOCK_ELEMS = 1 << 20  # 4 MB per fp32 buffer: measured best of 2^14..2^30 on a 2-core EPYC VM


def _split_into_chunks(lists: list[list[Tensor]], max_elems: int) -> tuple[list[list[Tensor]], list[int]]:
    """Cut every large contiguous tensor into flat views of at most max_elems elements.

    Returns the chunked lists (aligned across `lists`) and, per chunk, the index of its tensor.
    """
    out: list[list[Tensor]] = [[] for _ in lists]
    owners: list[int] = []
    for i in range(len(lists[0])):
        tensors = [lst[i] for lst in lists]
        n = tensors[0].numel()
        if n <= max_elems or not all(t.is_contiguous() for t in tensors):
            pieces = [[t] for t in tensors]
        else:
            pieces = [list(t.view(-1).split(max_elems)) for t in tensors]
        for o, piece in zip(out, pieces):
            o.extend(piece)
        owners.extend([i] * len(pieces[0]))
    return out, owners


def _blocks(chunks: list[Tensor], max_elems: int | None) -> list[list[int]]:
    """Consecutive chunk indices grouped into blocks of at most max_elems elements (None: one block)."""
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


def lamb_multi_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                      exp_avg_sqs: list[Tensor], steps: list[Tensor],
                      adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
                      alpha: float, beta1: float, beta2: float, beta3: float, lr: float, eps: float,
                      weight_decay: float, bias_correction: bool, trust_ratio: str,
                      stats: StepStats | None = None, block_elems: int | None = None) -> None:
    """One ALTO (adaptors given) or Lamb (adaptors None) step on already-clipped gradients.

    All lists must share one device and dtype (callers bucket them). Two passes, like a fused
    kernel: pass 1 updates the state, writes u into the gradient buffer and collects per-tensor
    norms; the trust ratios of all tensors are then computed in one op; pass 2 applies them.
    Nothing is allocated per parameter: `prevs` is scratch for g - prev and the gradient buffers
    hold g~ (as the reference hands g~ on), then u. With `block_elems` (used on the CPU) each
    pass runs over cache-sized blocks of tensor chunks instead of over all tensors at once.
    """
    if not params:
        return
    torch._foreach_add_(steps, 1)
    lists = [params, grads, exp_avgs, exp_avg_sqs] + ([adaptors, prevs] if adaptors is not None else [])
    if block_elems is not None:
        lists, owners = _split_into_chunks(lists, block_elems)
    else:
        owners = list(range(len(params)))
    ps, us, ms, vs = lists[:4]
    blocks = _blocks(ps, block_elems)
    if bias_correction:
        bc1, bc2_sqrt = bias_corrections(steps, beta2, beta3)
        eps_scaled = [eps * bc2_sqrt[i] for i in owners]
        u_scale = [bc2_sqrt[i] / bc1[i] for i in owners]
    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    need_norms = apply_ratio or stats is not None
    p_sq, u_sq = [], []

    for block in blocks:  # pass 1
        p, u, m, v = ([lst[j] for j in block] for lst in (ps, us, ms, vs))
        if adaptors is not None:
            adapt_gradients_(u, [lists[4][j] for j in block], [lists[5][j] for j in block],
                             alpha=alpha, beta=beta1, stats=stats)
        torch._foreach_lerp_(m, u, 1 - beta2)
        torch._foreach_mul_(v, beta3)
        torch._foreach_addcmul_(v, u, u, value=1 - beta3)
        # u = (m/bc1) / (sqrt(v/bc2) + eps) = (sqrt(bc2)/bc1) * m / (sqrt(v) + eps*sqrt(bc2))
        torch._foreach_copy_(u, v)
        torch._foreach_sqrt_(u)
        torch._foreach_add_(u, [eps_scaled[j] for j in block] if bias_correction else eps)
        torch._foreach_reciprocal_(u)
        torch._foreach_mul_(u, m)
        if bias_correction:
            torch._foreach_mul_(u, [u_scale[j] for j in block])
        if weight_decay != 0:
            torch._foreach_add_(u, p, alpha=weight_decay)
        if need_norms:
            p_sq.extend(torch._foreach_norm(p))
            u_sq.extend(torch._foreach_norm(u))

    ratio = None
    if need_norms:
        p_norm, u_norm = torch.stack(p_sq), torch.stack(u_sq)
        if block_elems is not None:  # chunk norms -> tensor norms (CPU only: the index is built on the host)
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

    if stats is not None:
        step_norm = u_norm * lr if ratio is None else u_norm * ratio * lr
        stats.add("upd_sq", step_norm.square().sum())
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
    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
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
            ratio = trust_ratio_of(torch.linalg.vector_norm(p), torch.linalg.vector_norm(u), trust_ratio)
            p.add_(u * ratio, alpha=-lr)
        else:
            p.add_(u, alpha=-lr)


@functools.cache
def _fused_module() -> ModuleType | str:
    """alto.optim.fused (imported on first need: it imports Triton), or why it cannot be imported."""
    try:
        from . import fused
    except Exception as err:  # ImportError, or a Triton install that fails on import
        return f"needs Triton, which cannot be imported ({err!r})"
    return fused


_SELF_TESTS: dict[tuple[str, str], str | None] = {}


def _fused_self_test(cls: type, device: torch.device) -> str | None:
    """Before `fused=None` trusts the kernels on a device, run them once there against the
    multi-tensor path on small tensors (compilation and numbers); returns why not, or None.

    Done once per (optimizer class, device) and per process; it costs a few tiny launches.
    """
    key = (cls.__name__, str(device))
    if key not in _SELF_TESTS:
        try:
            gen = torch.Generator(device=device).manual_seed(0)
            shapes = [(7,), (33, 5), (1,), (4096,)]
            start = [torch.randn(s, device=device, generator=gen) for s in shapes]
            grads = [[torch.randn(s, device=device, generator=gen) for s in shapes] for _ in range(3)]
            results = []
            for fused in (True, False):
                params = [t.clone().requires_grad_() for t in start]
                opt = cls([{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.0}], lr=0.01,
                          fused=fused, foreach=None if fused else True)
                for g in grads:
                    for p, gi in zip(params, g):
                        p.grad = gi.clone()
                    opt.step()
                results.append([p.detach() for p in params])
            ok = all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(*results))
            _SELF_TESTS[key] = None if ok else "the kernels disagree with the multi-tensor path"
        except Exception as err:  # noqa: BLE001 - any failure means: do not use them here
            _SELF_TESTS[key] = f"{type(err).__name__}: {err}"[:500]
    return _SELF_TESTS[key]


def _fused_unavailable(device: torch.device) -> str | None:
    module = _fused_module()
    return module if isinstance(module, str) else module.unavailable_reason(device)


class _LambFamily(Optimizer):
    """Shared driver: gather gradients, clip them globally, run the core per group and bucket.

    Like the reference (which clips p.grad in place and hands g~ on), step() consumes the
    gradients: it uses their buffers as scratch, so p.grad holds no gradient afterwards. This
    saves two parameter-sized allocations per step; call zero_grad() before the next backward.

    fused=None picks the Triton kernels (alto.optim.fused) when every parameter is a CUDA tensor,
    Triton works and foreach was not given; True requires them (on the CPU only under
    TRITON_INTERPRET=1, for tests); False never uses them. Buckets the kernels do not cover
    (dtypes other than fp32/fp64, non-dense layouts) take the multi-tensor path.
    """

    _with_adaptor: bool = False
    _name = "Lamb"

    def __init__(self, params, defaults: dict, *, grad_clip: float | None, foreach: bool | None,
                 fused: bool | None = None) -> None:
        self.grad_clip = check.optional_positive(self._name, "grad_clip", grad_clip)
        self.foreach = True if foreach is None else bool(foreach)
        if fused is not None and not isinstance(fused, bool):
            raise ValueError(f"{self._name}: fused must be None, True or False, got {fused!r}")
        if fused and foreach is False:
            raise ValueError(f"{self._name}: fused=True contradicts foreach=False (the per-tensor loop); "
                             "pass one of them")
        self.fused = fused
        self._auto_fused = fused is None and foreach is None
        self.collect_stats = False
        self.stats: dict[str, Tensor] = {}
        super().__init__(params, defaults)
        if fused:
            for device in {p.device for group in self.param_groups for p in group["params"]}:
                reason = _fused_unavailable(device)
                if reason is not None:
                    raise ValueError(f"{self._name}: fused=True {reason}")

    def _use_fused(self, params: list[Tensor]) -> bool:
        """Whether this step runs the fused kernels (decided on the host, from devices only)."""
        if self.fused:
            return True
        if not self._auto_fused or not all(p.is_cuda for p in params):
            return False
        if _fused_unavailable(params[0].device) is not None:
            return False
        reason = _fused_self_test(type(self), params[0].device)
        if reason is not None:
            warnings.warn(f"{self._name}: fused kernels disabled on {params[0].device}, using the "
                          f"multi-tensor path: {reason}", RuntimeWarning, stacklevel=3)
            self._auto_fused = False
        return reason is None

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
        fused = self._use_fused([p for ps in with_grad for p in ps])
        if fused:  # the kernel scales g by coef as it reads it
            norm, coef = _fused_module().clip_coefficient(all_grads, self.grad_clip)
        else:
            norm, coef = clip_grads_(all_grads, self.grad_clip, foreach=self.foreach)
        if stats is not None:
            stats.add("grad_norm", norm)
            stats.add("clip_coef", coef)

        for group, ps in zip(self.param_groups, with_grad):
            if not ps:
                continue
            hp = self._group_hparams(group)
            for (device, dtype), idx in group_by_device_dtype(ps).items():
                if self.foreach:
                    core = lamb_multi_tensor
                    extra = {"block_elems": CPU_BLOCK_ELEMS if device.type == "cpu" else None}
                else:
                    core, extra = lamb_single_tensor, {}
                bucket = [ps[i] for i in idx]
                states = [self._state_for(p) for p in bucket]
                lists = [bucket, [p.grad for p in bucket],
                         [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]]
                adaptors = [s["a"] for s in states] if self._with_adaptor else None
                prevs = [s["prev"] for s in states] if self._with_adaptor else None
                if fused:
                    module = _fused_module()
                    if self.fused and (reason := module.unavailable_reason(device)) is not None:
                        raise RuntimeError(f"{self._name}: fused=True {reason}")
                    if module.can_fuse(lists + ([adaptors, prevs] if adaptors is not None else [])):
                        module.lamb_fused(*lists, [s["step"] for s in states], adaptors, prevs,
                                          clip_coef=coef, stats=stats, **hp)
                        continue
                    # not covered by the kernels: clip here, then the multi-tensor path
                    torch._foreach_mul_(lists[1], coef.to(device=device, dtype=dtype))
                core(*lists, [s["step"] for s in states], adaptors, prevs, stats=stats, **hp, **extra)
        if stats is not None:
            self.stats = stats.result(alpha=self.param_groups[0].get("alpha"))
        return loss


class Lamb(_LambFamily):
    """Large-batch Lamb (You et al.) as the ALTO authors' baseline: global clip, no bias correction."""

    _name = "Lamb"

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.99),
                 eps: float = 1e-6, weight_decay: float = 1e-4, grad_clip: float | None = 1.0,
                 bias_correction: bool = False, trust_ratio: str = "reference",
                 foreach: bool | None = None, fused: bool | None = None) -> None:
        defaults = dict(
            lr=check.non_negative("Lamb", "lr", lr),
            betas=check.betas("Lamb", betas, ("first moment", "second moment")),
            eps=check.non_negative("Lamb", "eps", eps),
            weight_decay=check.non_negative("Lamb", "weight_decay", weight_decay),
            bias_correction=bool(bias_correction),
            trust_ratio=check.choice("Lamb", "trust_ratio", trust_ratio, TRUST_RATIOS),
        )
        super().__init__(params, defaults, grad_clip=grad_clip, foreach=foreach, fused=fused)

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
                 allow_unstable: bool = False, foreach: bool | None = None,
                 fused: bool | None = None) -> None:
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
        super().__init__(params, defaults, grad_clip=grad_clip, foreach=foreach, fused=fused)
        for group in self.param_groups:  # groups may override alpha/betas: check each
            b = check.betas("ALTO", group["betas"], ("beta1", "beta2", "beta3"))
            check.alpha_within_bound("ALTO", group["alpha"], b[0], group["allow_unstable"], "betas[0]")

    def _group_hparams(self, group: dict) -> dict:
        beta1, beta2, beta3 = group["betas"]
        return dict(alpha=group["alpha"], beta1=beta1, beta2=beta2, beta3=beta3, lr=group["lr"],
                    eps=group["eps"], weight_decay=group["weight_decay"],
                    bias_correction=group["bias_correction"], trust_ratio=group["trust_ratio"])
