"""ALTO and Lamb: one update rule, run three ways (plus the Triton kernels of alto.optim.fused).

Lamb is ALTO without the gradient-difference term `a`. Both first clip all gradients together
(global L2 norm, coefficient c), then per tensor:

    g = c*g
    a = b1*a + (1-b1)*(g - prev);  g~ = g + alpha*a;  prev = g          (ALTO only)
    m = b2*m + (1-b2)*g~;  v = b3*v + (1-b3)*g~^2
    u = (m / (1-b2^t)) / (sqrt(v / (1-b3^t)) + eps)                   (bias correction optional)
    reference trust ratio: if wd != 0: u += wd*p; p -= lr * (|p|/|u| or 1) * u
                           else:       p -= lr * u
    paper trust ratio:     u += wd*p; p -= lr * phi(|p|) / (|u| + eps2*phi(|p|)) * u, phi(x) = x + eps3

The update rule is section 3 of the paper (Algorithm 1). CPU buckets of fp32 run it in one loop
of C (alto.optim.cpu_kernel) where that builds; the three implementations here:

* `lamb_cache_blocked`, the CPU path otherwise: in cache-sized blocks (chunks of large tensors,
  packs of small ones), each going through the whole update while it is in the cache.
* `lamb_multi_tensor`, the portable path (CUDA without the kernels, dtypes they do not cover):
  multi-tensor operations over the whole bucket; nothing in it reads a tensor value on the host.
* `lamb_single_tensor`, a plain loop in the shape of the authors' reference code (foreach=False).

The first two let torch's fused Adam and SGD kernels compute m, v, u (and a, g~) in single
passes. All compute the same quantities, so they agree to rounding; the differential tests in
tests/test_optim.py hold every path to a plain loop written from the paper.
"""
from __future__ import annotations

import functools
import warnings
from types import ModuleType
from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from . import _validate as check, cpu_kernel
from ._lamb_math import TRUST_RATIOS, applies_trust_ratio, refuse_cuda_graph_capture, trust_ratio_of
from ._layout import flat, share_one_dense_layout
from ._transfer import to_device
from ._telemetry import (A_G_DOT, A_SQ, DIFF_SQ, G_PREV_DOT, G_SQ, P_SQ, PREV_SQ, UPD_SQ, StepStats,
                         sumsq_each)
from .adaptor import adapt_gradients_
from .clip import clip_coefficient, group_by_device_dtype

# CPU buckets of fp32 take the C loop of alto.optim.cpu_kernel when it builds here (False: never).
CPU_KERNEL = True
# Elements per block of the cache-blocked CPU path: a block (a chunk of a tensor, or several small tensors),
# its five state buffers and three scratch rows (9 x 1 MiB in fp32) stay in the L2+L3 of a 2-core
# EPYC VM while the whole update runs on them; 2^18 and 2^19 measured best of 2^14..2^20 there.
CPU_BLOCK_ELEMS = 1 << 18
# The multi-tensor path expands per-tensor scales to per-element ones in runs of at most this
# many elements (128 MiB in fp32), see `_add_scaled_`.
EXPAND_ELEMS = 1 << 25


def _in_one_dense_layout(lists: list[list[Tensor]]) -> tuple[list[list[Tensor]], list[tuple[Tensor, Tensor]]]:
    """The bucket's lists with every row (a parameter, its gradient and its state) in one dense
    layout, which torch's fused kernels and the cache-blocked path need: a row that is not
    (state loaded from a parameter of another layout, a non-dense parameter) is replaced by
    contiguous copies. Returns the lists and the (original, copy) pairs to write back afterwards.
    """
    write_back = []
    rows = list(zip(*lists))
    for i, row in enumerate(rows):
        if not share_one_dense_layout(row):
            copies = tuple(t.contiguous() for t in row)
            write_back += [(t, c) for t, c in zip(row, copies) if c is not t]
            rows[i] = copies
    if not write_back:
        return lists, []
    return [list(col) for col in zip(*rows)], write_back


# The per-tensor bias corrections of torch's fused Adam kernel are 1 - beta^step: a step this large
# makes them exactly 1, for the variants without bias correction.
NO_BIAS_CORRECTION_STEP = 2.0 ** 60


def _dot(x: Tensor, y: Tensor) -> float:
    return torch.dot(x, y).item()


def _squared_norms(xs: list[Tensor]) -> list[float]:
    return [_dot(x, x) for x in xs]  # (on the CPU as fast as _foreach_norm, and more accurate)


def _pack(out_row: Tensor, outs: list[Tensor], xs: list[Tensor], s: float) -> None:
    """out = s*x for every pair, the outs being consecutive views of out_row."""
    if len(xs) == 1:
        torch.mul(xs[0], s, out=outs[0])
        return
    torch.cat(xs, out=out_row)
    if s != 1.0:
        out_row.mul_(s)


def _add_scaled_host(xs: list[Tensor], us: list[Tensor], scales: list[float]) -> None:
    """x += scale*u for every pair (host scales)."""
    if len(xs) == 1:
        xs[0].add_(us[0], alpha=scales[0])
    else:
        torch._foreach_mul_(us, scales)
        torch._foreach_add_(xs, us)


def _blocks(rows: list[tuple[Tensor, ...]], block_elems: int):
    """The bucket's work in cache-sized blocks: yields (indices, pieces, last), the pieces being
    flat views of (p, g, m, v[, a, prev]). Small tensors are packed together: one piece per
    tensor, indices of them all, last True. A tensor larger than block_elems comes as chunks:
    one piece each, its index, last True on its last chunk."""
    group, size = [], 0
    for i, row in enumerate(rows):
        n = row[0].numel()
        if group and (n > block_elems or size + n > block_elems):
            yield [j for j, _ in group], [piece for _, piece in group], True
            group, size = [], 0
        views = tuple(flat(t) for t in row)
        if n > block_elems:
            for start in range(0, n, block_elems):
                yield [i], [tuple(v[start:start + block_elems] for v in views)], start + block_elems >= n
        else:
            group.append((i, views))
            size += n
    if group:
        yield [j for j, _ in group], [piece for _, piece in group], True


def lamb_cache_blocked(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                       exp_avg_sqs: list[Tensor], adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
                       step_counts: Tensor, clip_coef: float, alpha: float, beta1: float, beta2: float,
                       beta3: float, lr: float, eps: float, weight_decay: float, bias_correction: bool,
                       trust_ratio: str, stats: StepStats | None = None,
                       block_elems: int = CPU_BLOCK_ELEMS) -> None:
    """One ALTO (adaptors given) or Lamb (adaptors None) step of a bucket of CPU tensors whose
    rows (parameter, gradient, state) share one dense layout.

    A pass of torch operations over data that does not fit in the cache costs a trip to memory
    each. Here the bucket goes in blocks of at most block_elems elements (a chunk of a large
    tensor, or several small tensors together) and each block goes through the whole update
    while it is in the cache; once a tensor is complete its trust ratio is known, and the
    parameter update runs over it, still in the cache for all but the largest tensors. Two of
    torch's fused CPU kernels do most of the work in one pass each:

        _fused_sgd_   momentum buffer a, "gradient" prev - g maximised, dampening b1, "lr" -alpha:
                      a = b1*a + (1-b1)*(g - prev) and g~ = g + alpha*a
        _fused_adam_  "parameter" wd*p, "lr" -1, betas (b2, b3): m, v and
                      u = wd*p + (m/(1-b2^t)) / (sqrt(v/(1-b3^t)) + eps)

    The gradients arrive unclipped and are only read; prev - g, g~ and u live in block-sized
    scratch rows (u is copied to the gradient buffer when a tensor spans several blocks).
    Per-tensor scalars (clip coefficient, trust ratios) are host numbers: on the CPU, reading a
    tensor is not a device synchronisation. Telemetry sums come from dot products of the rows.
    """
    if not params:
        return
    c = clip_coef
    with_a = adaptors is not None
    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    need_norms = apply_ratio or stats is not None
    steps = step_counts.unbind() if bias_correction else [torch.tensor(NO_BIAS_CORRECTION_STEP)] * len(params)
    scratch = torch.empty(3, min(block_elems, sum(p.numel() for p in params)), dtype=params[0].dtype)
    sums = [0.0] * (A_G_DOT + 1 if with_a else 2)  # telemetry, in the order of _telemetry.SUMS
    ratios = [1.0] * len(params)
    roles = [params, grads, exp_avgs, exp_avg_sqs] + ([adaptors, prevs] if with_a else [])
    large: list[tuple[Tensor, Tensor]] = []  # (p, u) chunks of the large tensor in progress
    large_p_sq = large_u_sq = 0.0

    for indices, pieces, last in _blocks(list(zip(*roles)), block_elems):
        sizes = [piece[0].numel() for piece in pieces]
        u_row, gt_row, diff_row = scratch[:, :sum(sizes)]
        us, gts, diffs = (list(row.split(sizes)) for row in (u_row, gt_row, diff_row))
        xs, gs, ms, vs = ([piece[j] for piece in pieces] for j in range(4))
        if with_a:
            as_, prevs_ = [piece[4] for piece in pieces], [piece[5] for piece in pieces]
            _pack(gt_row, gts, gs, c)                      # c*g
            if len(pieces) == 1:                           # prev - c*g
                torch.sub(prevs_[0], gs[0], alpha=c, out=diffs[0])
            else:
                torch.cat(prevs_, out=diff_row).sub_(gt_row)
            if stats is not None:                          # <c*g, prev> = <c*g, diff> + |c*g|^2
                gg, dd, gd = _dot(gt_row, gt_row), _dot(diff_row, diff_row), _dot(gt_row, diff_row)
                sums[G_SQ] += gg
                sums[PREV_SQ] += sum(_squared_norms(prevs_))
                sums[G_PREV_DOT] += gd + gg
                sums[DIFF_SQ] += dd
            torch._foreach_copy_(prevs_, gts)
            # maximize negates the "gradient": a = b1*a + (1-b1)*(c*g - prev); g~ = c*g + alpha*a
            torch._fused_sgd_(gts, diffs, as_, weight_decay=0.0, momentum=beta1, lr=-alpha, dampening=beta1,
                              nesterov=False, maximize=True, is_first_step=False)
            if stats is not None:  # <a, c*g> = <a, g~> - alpha*|a|^2
                a_row = as_[0] if len(as_) == 1 else torch.cat(as_, out=u_row)
                aa = _dot(a_row, a_row)
                sums[A_SQ] += aa
                sums[A_G_DOT] += _dot(a_row, gt_row) - alpha * aa
        elif c != 1.0:
            _pack(gt_row, gts, gs, c)
        else:
            gts = gs
        if weight_decay != 0:
            _pack(u_row, us, xs, weight_decay)
        else:
            u_row.zero_()
        torch._fused_adam_(us, gts, ms, vs, [], [steps[i] for i in indices], lr=-1.0, beta1=beta2, beta2=beta3,
                           weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
        p_sqs = _squared_norms(xs) if need_norms else [0.0] * len(xs)
        u_sqs = _squared_norms(us) if need_norms else [0.0] * len(xs)

        if last and not large:  # whole tensors, still in the cache: update them now
            for i, ps, us_ in zip(indices, p_sqs, u_sqs):
                ratios[i] = trust_ratio_of(ps ** 0.5, us_ ** 0.5, trust_ratio) if apply_ratio else 1.0
                sums[UPD_SQ] += (lr * ratios[i]) ** 2 * us_
            _add_scaled_host(xs, us, [-lr * ratios[i] for i in indices])
        else:  # a chunk of a large tensor: u waits in its gradient buffer until the tensor is complete
            large.append((xs[0], gs[0].copy_(us[0])))
            large_p_sq, large_u_sq = large_p_sq + p_sqs[0], large_u_sq + u_sqs[0]
            if not last:
                continue
            i = indices[0]
            ratios[i] = trust_ratio_of(large_p_sq ** 0.5, large_u_sq ** 0.5, trust_ratio) if apply_ratio else 1.0
            sums[UPD_SQ] += (lr * ratios[i]) ** 2 * large_u_sq
            xs = [x for x, _ in large]
            torch._foreach_add_(xs, [u for _, u in large], alpha=-lr * ratios[i])
            large, large_p_sq, large_u_sq = [], 0.0, 0.0
        if stats is not None:
            sums[P_SQ] += sum(_squared_norms(xs))
    if stats is not None:
        stats.add_sums(P_SQ, sums)
        if apply_ratio:
            stats.trust_ratios.append(ratios)


def _runs(numels: list[int], max_elems: int) -> list[tuple[int, int]]:
    """(start, stop) index ranges of consecutive tensors holding at most max_elems elements
    together (a larger tensor gets a run of its own)."""
    runs, start, size = [], 0, 0
    for i, n in enumerate(numels):
        if i > start and size + n > max_elems:
            runs.append((start, i))
            start, size = i, 0
        size += n
    return runs + [(start, len(numels))]


@functools.lru_cache(maxsize=64)
def _device_numels(numels: tuple[int, ...], device: torch.device) -> Tensor:
    return to_device(torch.tensor(numels, dtype=torch.int64), device)


def _add_scaled_(params: list[Tensor], updates: list[Tensor], scales: Tensor) -> None:
    """params[i] += scales[i] * updates[i] for every i, `scales` a device tensor, in few launches.

    torch's multi-tensor kernels take per-tensor scalars only as host numbers; given a list of 0-d
    device tensors they fall back to one launch per tensor. Expanding the scales to one value per
    element (in runs of at most EXPAND_ELEMS elements) keeps every launch a multi-tensor one, for
    8 more bytes of traffic per fp32 parameter.
    """
    numels = [p.numel() for p in params]
    device = params[0].device
    for start, stop in _runs(numels, EXPAND_ELEMS):
        sizes = numels[start:stop]
        per_element = torch.repeat_interleave(scales[start:stop], _device_numels(tuple(sizes), device),
                                              output_size=sum(sizes))
        views = [e.view(p.shape) for e, p in zip(per_element.split(sizes), params[start:stop])]
        torch._foreach_addcmul_(params[start:stop], updates[start:stop], views)


def lamb_multi_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                      exp_avg_sqs: list[Tensor], adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
                      step_counts: Tensor, clip_coef: Tensor, alpha: float, beta1: float, beta2: float,
                      beta3: float, lr: float, eps: float, weight_decay: float, bias_correction: bool,
                      trust_ratio: str, stats: StepStats | None = None) -> None:
    """One ALTO (adaptors given) or Lamb (adaptors None) step of a bucket, in multi-tensor ops.

    All lists must share one device and dtype (callers bucket them). Two passes, like the fused
    kernels: the first updates the state and computes u and the per-tensor norms; the trust
    ratios of all tensors are then computed in one op; the second applies them. Every operation
    is one launch over the whole bucket (about 128 bytes of traffic per fp32 parameter, against
    the fused kernels' 60); torch's fused Adam kernel does m, v and u in one of them:

        _fused_adam_  "parameters" u = wd*p, "lr" -1, betas (b2, b3): m, v and
                      u = wd*p + (m/(1-b2^t)) / (sqrt(v/(1-b3^t)) + eps)

    Temporaries: u, and in the second pass the per-element scales.
    """
    if not params:
        return
    device, dtype = params[0].device, params[0].dtype
    torch._foreach_mul_(grads, clip_coef.to(device=device, dtype=dtype))
    if adaptors is not None:
        adapt_gradients_(grads, adaptors, prevs, alpha=alpha, beta=beta1, stats=stats)
    if weight_decay != 0:
        updates = list(torch._foreach_mul(params, weight_decay))
    else:
        updates = [torch.zeros_like(p) for p in params]
    # the kernel's bias corrections are 1 - beta^step, from step counts on the device
    steps = (to_device(step_counts, device) if bias_correction else
             torch.full((len(params),), NO_BIAS_CORRECTION_STEP, device=device))
    torch._fused_adam_(updates, grads, exp_avgs, exp_avg_sqs, [], list(steps.unbind()), lr=-1.0, beta1=beta2,
                       beta2=beta3, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)

    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    if apply_ratio or stats is not None:
        p_norm, u_norm = torch.stack(torch._foreach_norm(params + updates)).view(2, -1)
    if apply_ratio:
        ratio = trust_ratio_of(p_norm, u_norm, trust_ratio)
        _add_scaled_(params, updates, ratio * -lr)
    else:
        torch._foreach_add_(params, updates, alpha=-lr)

    if stats is not None:
        step_norm = u_norm * lr if not apply_ratio else u_norm * ratio * lr
        stats.add_sums(P_SQ, torch.cat([sumsq_each([params]), step_norm.square().sum().reshape(1)]))
        if apply_ratio:
            stats.trust_ratios.append(ratio)


def lamb_single_tensor(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
                       exp_avg_sqs: list[Tensor], adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
                       step_counts: Tensor, clip_coef: Tensor, alpha: float, beta1: float, beta2: float,
                       beta3: float, lr: float, eps: float, weight_decay: float, bias_correction: bool,
                       trust_ratio: str, stats: StepStats | None = None) -> None:
    """The same step, one tensor at a time (the shape of the authors' reference loop); no statistics:
    with collect_stats on, `step` takes the bucket paths, which compute them in their own passes."""
    if stats is not None:
        raise ValueError("lamb_single_tensor computes no statistics; use a bucket path (foreach=True)")
    for g in grads:
        g.mul_(clip_coef.to(device=g.device, dtype=g.dtype))
    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    for i, (p, g, m, v) in enumerate(zip(params, grads, exp_avgs, exp_avg_sqs)):
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
            t = step_counts[i].item()
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
SELF_TEST_TOL = 1e-5  # float32, relative to each tensor's largest value (the spec's tolerance)


def _fused_self_test(cls: type, device: torch.device) -> str | None:
    """Before `fused=None` trusts the kernels on a device, run them once there against the
    multi-tensor path on small tensors (compilation and numbers); returns why not, or None.

    Covers a bucket with odd sizes (the plain kernels) and one whose sizes are all multiples of 16
    (the vectorised kernels real models take), and compares parameters and every state tensor.
    Done once per (optimizer class, device) and per process; it costs a few tiny launches.
    """
    from ._agreement import max_relative_error

    key = (cls.__name__, str(device))
    if key not in _SELF_TESTS:
        try:
            gen = torch.Generator(device=device).manual_seed(0)
            shapes = [(7,), (33, 5), (1,), (4096,), (64, 48)]
            start = [torch.randn(s, device=device, generator=gen) for s in shapes]
            grads = [[torch.randn(s, device=device, generator=gen) for s in shapes] for _ in range(3)]
            runs = []
            for fused in (True, False):
                params = [t.clone().requires_grad_() for t in start]
                opt = cls([{"params": params[:2]}, {"params": params[2:3], "weight_decay": 0.0},
                           {"params": params[3:]}], lr=0.01, fused=fused, foreach=None if fused else True)
                launched = _fused_module().buckets_fused
                for g in grads:
                    for p, gi in zip(params, g):
                        p.grad = gi.clone()
                    opt.step()
                if fused and _fused_module().buckets_fused - launched != 3 * len(opt.param_groups):
                    raise RuntimeError("the kernels did not run on every bucket")
                runs.append((params, opt))
            err = max_relative_error(*runs[0], *runs[1])
            _SELF_TESTS[key] = (None if err <= SELF_TEST_TOL else
                                f"the kernels disagree with the multi-tensor path (error {err:.1e})")
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
    (dtypes other than fp32/fp64, non-dense layouts) take the multi-tensor path; CPU buckets take
    the cache-blocked path.
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
        self._step_buffers: dict[tuple, tuple[list[Tensor], Tensor]] = {}
        super().__init__(params, defaults)
        if fused:
            for device in {p.device for group in self.param_groups for p in group["params"]}:
                reason = _fused_unavailable(device)
                if reason is not None:
                    raise ValueError(f"{self._name}: fused=True {reason}")

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_step_buffers", {})

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

    def prepare(self) -> None:
        """Make now the one-time choices a first step would make: on CUDA, whether the fused kernels
        run (their self-test compiles and runs them once per device). The training loop calls it
        before its clock starts, so that cost is setup time, not training time."""
        params = [p for group in self.param_groups for p in group["params"]]
        if params:
            self._use_fused(params)

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

    def _step_counts(self, bucket: tuple, states: list[dict]) -> Tensor:
        """The bucket's step counters as one CPU tensor whose elements ARE the states' "step" tensors.

        Each state keeps its own 0-d "step" tensor (state_dict and load_state_dict see nothing
        new), but they are views into one buffer per bucket, so that one add counts a step for
        every tensor and one read gives all bias corrections. The buffer is rebuilt, from the
        current values, whenever the bucket's step tensors are not its views (first step, a
        parameter without a gradient on this step, a loaded state dict).
        """
        steps = [s["step"] for s in states]
        cached = self._step_buffers.get(bucket)
        if cached is not None and len(cached[0]) == len(steps) and all(a is b for a, b in zip(cached[0], steps)):
            return cached[1]
        counts = torch.stack([s.detach().reshape(()).to("cpu", torch.float32) for s in steps])
        views = list(counts.unbind())
        for state, view in zip(states, views):
            state["step"] = view
        self._step_buffers[bucket] = (views, counts)
        return counts

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
        for device in {g.device for g in all_grads if g.is_cuda}:
            refuse_cuda_graph_capture(f"{self._name}.step()", device)

        stats = StepStats() if self.collect_stats else None
        fused = self._use_fused([p for ps in with_grad for p in ps])
        norm, coef = clip_coefficient(all_grads, self.grad_clip, foreach=self.foreach)
        if stats is not None:
            stats.set("grad_norm", norm)
            stats.set("clip_coef", coef)

        for index, (group, ps) in enumerate(zip(self.param_groups, with_grad)):
            if not ps:
                continue
            hp = self._group_hparams(group)
            for (device, dtype), idx in group_by_device_dtype(ps).items():
                bucket = [ps[i] for i in idx]
                states = [self._state_for(p) for p in bucket]
                lists = [bucket, [p.grad for p in bucket], [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states]]
                lists += [[s["a"] for s in states], [s["prev"] for s in states]] if self._with_adaptor else [None, None]
                counts = self._step_counts((index, device, dtype), states)
                counts += 1
                kw = dict(step_counts=counts, stats=stats, **hp)
                if not self.foreach and stats is None:  # (statistics come from the bucket paths)
                    lamb_single_tensor(*lists, clip_coef=coef, **kw)
                elif fused and self._run_fused(lists, device, coef, kw):
                    pass
                else:
                    rows, write_back = _in_one_dense_layout([lst for lst in lists if lst is not None])
                    rows += [None, None] if not self._with_adaptor else []
                    if device.type == "cpu" and CPU_KERNEL and cpu_kernel.covers(dtype):
                        cpu_kernel.lamb_cpu_loop(*rows, clip_coef=coef.item(), **kw)
                    elif device.type == "cpu" and CPU_BLOCK_ELEMS is not None:
                        lamb_cache_blocked(*rows, clip_coef=coef.item(), block_elems=CPU_BLOCK_ELEMS, **kw)
                    else:
                        lamb_multi_tensor(*rows, clip_coef=coef, **kw)
                    for original, copy in write_back:
                        original.copy_(copy)
        if stats is not None:
            self.stats = stats.result(alpha=self.param_groups[0].get("alpha"))
        return loss

    def _run_fused(self, lists: list, device: torch.device, coef: Tensor, kw: dict) -> bool:
        """Step a bucket with the kernels; False when they do not cover it (the caller falls back).

        Under torch.compile this runs outside the graph (a graph break): the kernels write tensors
        they reach through a table of addresses, which the compiler cannot see. (Decided per call:
        a decorator would import torch's compiler, a second of start-up, into every process.)
        """
        if torch.compiler.is_compiling():
            return torch.compiler.disable(self._fused_bucket)(lists, device, coef, kw)
        return self._fused_bucket(lists, device, coef, kw)

    def _fused_bucket(self, lists: list, device: torch.device, coef: Tensor, kw: dict) -> bool:
        module = _fused_module()
        if self.fused and (reason := module.unavailable_reason(device)) is not None:
            raise RuntimeError(f"{self._name}: fused=True {reason}")
        plan = module.bucket_plan([lst for lst in lists if lst is not None])
        if plan is None:
            return False
        module.lamb_fused(plan, *lists, clip_coef=coef, **kw)
        return True


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
