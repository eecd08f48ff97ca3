"""Fused Triton kernels for ALTO and Lamb: the whole step in three launches per bucket.

The step is the one of `lamb_multi_tensor` and `lamb_cache_blocked` (the same quantities, so the
paths agree to rounding), reorganised around memory traffic:

    pass 1 (one launch)  per element: g = coef*g (global clip, coef read from the device);
                         ALTO only: a = b1*a - (1-b1)*(prev - g); prev = g; g~ = g + alpha*a;
                         m, v updated; u = wd*p + (sqrt(bc2)/bc1) * m/(sqrt(v) + eps*sqrt(bc2));
                         u is stored in the gradient buffer (as the other paths do), so pass 2
                         needs neither m nor v. Per block: partial sums of |p|^2 and |u|^2 (and,
                         with telemetry, of the E statistics, which are free here: all in registers).
    ratios (one launch)  one program per tensor adds its blocks' partial sums and writes the
                         trust ratio and the scale -lr*ratio of every tensor of the bucket.
    pass 2 (one launch)  p += scale[tensor]*u;  with telemetry also partial sums of the new |p|^2.

Bytes per fp32 parameter: clip norm 4 + pass 1 44 (reads g, a, prev, m, v, p; writes a, prev, m,
v, u) + pass 2 12 (reads p, u; writes p) = 60 for ALTO, 44 for Lamb: the bound in bench.py.

How one launch covers many tensors of mixed shapes. Parameters, gradients and state stay
ordinary, separately allocated tensors (state_dict, load_state_dict and user code see nothing
new); each step the host writes a small *pointer table* (one row per tensor: the int64 data_ptr
of p, g, m, v[, a, prev]) and the kernels cast the entries back to typed pointers. A *block
table*, cached per list of tensor sizes, maps every program id to (tensor id, block index within
that tensor, numel); blocks never straddle two tensors, so a block's partial sums belong to one
tensor and the per-tensor reduction is a loop over a contiguous range of blocks (deterministic,
no atomics). Addresses and sizes read from a table are unknown to the compiler, so when the host
has checked that all addresses are 16-byte aligned and all sizes multiples of N_DIV, the kernels
say so (tl.multiple_of) and the masked loads are vectorised like those of an ordinary kernel.

Both tables, the alignment check and the layout checks are built once per bucket and cached
(`bucket_plan`), keyed on every tensor's address and the parameters' and gradients' layouts:
a step whose tensors sit where they sat before (the usual case, also for gradients that are
freed and reallocated every step) only recomputes that key. The hyper-parameters and the
per-tensor bias-correction scalars travel as a small tensor in the bucket's dtype (pinned host
memory, non-blocking copy), never as kernel arguments that could change per step: nothing is
recompiled when the learning rate, the step or the number of tensors changes (the counts are
`do_not_specialize`), fp64 keeps full precision, and nothing in `lamb_fused` waits for the device.

Not under CUDA-graph capture (the tables and scalars are written from the host on every step:
`lamb_fused` refuses) and not inside torch.compile's graphs (the kernels reach tensors through
addresses the compiler cannot see: the optimizers run this module's functions outside them).

Supported: fp32 and fp64 tensors whose p, grad and state share one dense layout (anything else
is left to the multi-tensor path by the caller: `bucket_plan` returns None). On the CPU the kernels
run only through Triton's interpreter (TRITON_INTERPRET=1, set before this module is imported),
for tests. Works with Triton 3.x: nothing here reads Triton's configuration objects, whose API
changed between releases.
"""
from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor
from triton.runtime.interpreter import InterpretedFunction

from ._lamb_math import (PAPER_EPS2, PAPER_EPS3, applies_trust_ratio, bias_correction_scalars,
                         refuse_cuda_graph_capture)
from ._layout import is_dense
from ._transfer import to_device
from ._telemetry import G_SQ, P_SQ, StepStats

# Elements per program and warps per program on a GPU (memory-bound; tune with gpu_check), and
# the block used under the interpreter (small, so that tests cover multi-block tensors).
CUDA_BLOCK, CUDA_WARPS, INTERPRET_BLOCK = 2048, 8, 256
ALIGN_HINTS = True   # alignment hints for the compiler (the host checks they hold)
REDUCE_BLOCK = 1024  # partial sums added per iteration by the ratio kernel

# Layout of the scalar table `scal` (bucket dtype): group hyper-parameters, then per tensor
# eps_hat (eps*sqrt(bc2), or eps) and u_scale (sqrt(bc2)/bc1).
S_ALPHA = tl.constexpr(0)
S_BETA1 = tl.constexpr(1)
S_NEG_1MB1 = tl.constexpr(2)  # -(1 - beta1)
S_W = tl.constexpr(3)         # lerp weight of m: 1 - beta2
S_BETA3 = tl.constexpr(4)
S_1MB3 = tl.constexpr(5)      # 1 - beta3
S_WD = tl.constexpr(6)
S_NEG_LR = tl.constexpr(7)
S_EPS2 = tl.constexpr(8)
S_EPS3 = tl.constexpr(9)
N_GROUP_SCALARS = tl.constexpr(10)

# Rows of the per-block partial sums: 0 and 1 |p|^2 and |u|^2 before the update, 2 |p|^2 after
# it, then (telemetry of ALTO) |g|^2, |prev|^2, <g, prev>, |g - prev|^2, |a|^2, <a, g>: the E
# sums of alto.optim._telemetry, in its order.
R_P_NEW = tl.constexpr(2)
R_E = tl.constexpr(3)
N_ROWS, N_ROWS_E = 3, 9
MODE_NONE, MODE_REFERENCE, MODE_PAPER = 0, 1, 2

buckets_fused = 0  # buckets stepped by the kernels in this process (checks assert it moves)
plans_built = 0    # bucket plans built (`bucket_plan`): a steady training loop builds none


# ---------------------------------------------------------------------------------- kernels
# No helper @jit functions on purpose: under the interpreter every nested call costs milliseconds.
# PRECISE (fp32): `/` and tl.sqrt are approximate on GPUs while torch rounds correctly, so the
# _rn variants are used; fp64 division and square root are exact anyway.
# ALIGNED: every address is a multiple of 16 bytes and every numel of N_DIV elements (checked on
# the host); the hints let the compiler vectorise the masked loads, which it cannot prove for
# addresses and sizes read from a table.


@triton.jit(do_not_specialize=["n_tensors", "n_blocks"])
def _pass1_kernel(ptrs, layout, scal, coef_ptr, partials, n_tensors, n_blocks,
                  N_ROLES: tl.constexpr, ADAPT: tl.constexpr, BIAS_CORRECTION: tl.constexpr,
                  DECAY: tl.constexpr, NORMS: tl.constexpr, LOAD_P: tl.constexpr, LERP_FROM_END: tl.constexpr,
                  STATS: tl.constexpr, PRECISE: tl.constexpr, ALIGNED: tl.constexpr,
                  N_DIV: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    tid = tl.load(layout + pid)
    blk = tl.load(layout + n_blocks + pid)
    n = tl.load(layout + 2 * n_blocks + pid)
    # this tensor's row of the pointer table: p, g, m, v[, a, prev] as int64 addresses, cast
    # to the bucket's pointer type
    row = ptrs + tid * N_ROLES
    p_ptr = tl.load(row).to(scal.dtype)
    g_ptr = tl.load(row + 1).to(scal.dtype)
    m_ptr = tl.load(row + 2).to(scal.dtype)
    v_ptr = tl.load(row + 3).to(scal.dtype)
    if ALIGNED:
        n = tl.multiple_of(n, N_DIV)
        p_ptr = tl.multiple_of(p_ptr, 16)
        g_ptr = tl.multiple_of(g_ptr, 16)
        m_ptr = tl.multiple_of(m_ptr, 16)
        v_ptr = tl.multiple_of(v_ptr, 16)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n  # padding lanes read 0 and add nothing to the sums (u excepted, see below)
    out = partials + pid

    g = tl.load(g_ptr + offs, mask=mask, other=0.0) * tl.load(coef_ptr)
    if ADAPT:
        a_ptr = tl.load(row + 4).to(scal.dtype)
        prev_ptr = tl.load(row + 5).to(scal.dtype)
        if ALIGNED:
            a_ptr = tl.multiple_of(a_ptr, 16)
            prev_ptr = tl.multiple_of(prev_ptr, 16)
        a = tl.load(a_ptr + offs, mask=mask, other=0.0)
        prev = tl.load(prev_ptr + offs, mask=mask, other=0.0)
        d = prev - g
        a = a * tl.load(scal + S_BETA1)
        a = a + tl.load(scal + S_NEG_1MB1) * d
        tl.store(a_ptr + offs, a, mask=mask)
        tl.store(prev_ptr + offs, g, mask=mask)
        if STATS:
            tl.store(out + R_E * n_blocks, tl.sum(g * g, axis=0))
            tl.store(out + (R_E + 1) * n_blocks, tl.sum(prev * prev, axis=0))
            tl.store(out + (R_E + 2) * n_blocks, tl.sum(g * prev, axis=0))
            tl.store(out + (R_E + 3) * n_blocks, tl.sum(d * d, axis=0))
            tl.store(out + (R_E + 4) * n_blocks, tl.sum(a * a, axis=0))
            tl.store(out + (R_E + 5) * n_blocks, tl.sum(a * g, axis=0))
        g = g + tl.load(scal + S_ALPHA) * a
    # m: torch.lerp's two-sided formula, so that both paths round alike
    w = tl.load(scal + S_W)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    if LERP_FROM_END:
        m = g - (g - m) * (1.0 - w)
    else:
        m = m + w * (g - m)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0) * tl.load(scal + S_BETA3)
    v = v + tl.load(scal + S_1MB3) * g * g
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    # u = wd*p + (sqrt(bc2)/bc1) * (m / (sqrt(v) + eps*sqrt(bc2))), as the other paths compute it
    eps_hat = tl.load(scal + N_GROUP_SCALARS + tid)
    if PRECISE:
        u = tl.math.div_rn(m, tl.math.sqrt_rn(v) + eps_hat)
    else:
        u = m / (tl.sqrt(v) + eps_hat)
    if BIAS_CORRECTION:
        u = u * tl.load(scal + N_GROUP_SCALARS + n_tensors + tid)
    if LOAD_P:  # NORMS or DECAY
        p = tl.load(p_ptr + offs, mask=mask, other=0.0)
        if DECAY:
            u = tl.load(scal + S_WD) * p + u
        if NORMS:
            u_in = tl.where(mask, u, 0.0)  # padding lanes hold 0/eps, NaN when eps = 0
            # one reduction for both sums (rows R_P = 0 and R_U = 1 of `partials`)
            sums = tl.sum(tl.join(p * p, u_in * u_in), axis=0)
            tl.store(out + tl.arange(0, 2) * n_blocks, sums)
    tl.store(g_ptr + offs, u, mask=mask)


@triton.jit(do_not_specialize=["n_tensors", "n_blocks"])
def _ratio_kernel(layout, scal, partials, scales, ratios, u_norms, n_tensors, n_blocks,
                  NORMS: tl.constexpr, MODE: tl.constexpr, PRECISE: tl.constexpr,
                  RBLOCK: tl.constexpr):
    """One program per tensor: norms from its blocks' partial sums, trust ratio, -lr*ratio."""
    tid = tl.program_id(0)
    neg_lr = tl.load(scal + S_NEG_LR)
    if NORMS:
        first = tl.load(layout + 3 * n_blocks + tid)
        last = tl.load(layout + 3 * n_blocks + tid + 1)
        # column 0: partial sums of |p|^2 (row R_P = 0), column 1: of |u|^2 (row R_U = 1)
        rows = tl.arange(0, 2)[None, :] * n_blocks
        acc = tl.zeros([RBLOCK, 2], dtype=scal.dtype.element_ty)
        for start in range(first, last, RBLOCK):
            idx = start + tl.arange(0, RBLOCK)[:, None]
            acc += tl.load(partials + rows + idx, mask=(idx < last) & (rows >= 0), other=0.0)
        p_sq, u_sq = tl.split(tl.sum(acc, axis=0))
        if PRECISE:
            p_norm = tl.math.sqrt_rn(p_sq)
            u_norm = tl.math.sqrt_rn(u_sq)
        else:
            p_norm = tl.sqrt(p_sq)
            u_norm = tl.sqrt(u_sq)
        tl.store(u_norms + tid, u_norm)
        if MODE == 1:  # reference: |p|/|u| when both are non-zero, else 1
            ok = (p_norm > 0) & (u_norm > 0)
            num = p_norm
            den = tl.where(ok, u_norm, 1.0)
        elif MODE == 2:  # paper: phi(|p|) / (|u| + eps2*phi(|p|)), phi(x) = x + eps3
            num = p_norm + tl.load(scal + S_EPS3)
            den = u_norm + tl.load(scal + S_EPS2) * num
        else:
            num = p_norm * 0.0 + 1.0
            den = num
        if PRECISE:
            ratio = tl.math.div_rn(num, den)
        else:
            ratio = num / den
        if MODE == 1:
            ratio = tl.where(ok, ratio, 1.0)
        tl.store(ratios + tid, ratio)
        if MODE == 0:
            tl.store(scales + tid, neg_lr)
        else:
            tl.store(scales + tid, ratio * neg_lr)
    else:
        tl.store(scales + tid, neg_lr)


@triton.jit(do_not_specialize=["n_blocks"])
def _pass2_kernel(ptrs, layout, scales, partials, n_blocks, N_ROLES: tl.constexpr,
                  STATS: tl.constexpr, ALIGNED: tl.constexpr, N_DIV: tl.constexpr,
                  BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    tid = tl.load(layout + pid)
    blk = tl.load(layout + n_blocks + pid)
    n = tl.load(layout + 2 * n_blocks + pid)
    row = ptrs + tid * N_ROLES
    p_ptr = tl.load(row).to(scales.dtype)
    u_ptr = tl.load(row + 1).to(scales.dtype)  # the gradient buffer holds u
    if ALIGNED:
        n = tl.multiple_of(n, N_DIV)
        p_ptr = tl.multiple_of(p_ptr, 16)
        u_ptr = tl.multiple_of(u_ptr, 16)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    p = tl.load(p_ptr + offs, mask=mask, other=0.0)
    p = p + tl.load(u_ptr + offs, mask=mask, other=0.0) * tl.load(scales + tid)
    tl.store(p_ptr + offs, p, mask=mask)
    if STATS:
        tl.store(partials + R_P_NEW * n_blocks + pid, tl.sum(p * p, axis=0))


# ------------------------------------------------------------------------------------ host

# Whether the kernels above were built for Triton's interpreter (TRITON_INTERPRET=1 when this
# module was imported); decided by what @triton.jit returned, whatever the Triton version.
INTERPRETED = isinstance(_pass1_kernel, InterpretedFunction)


def unavailable_reason(device: torch.device) -> str | None:
    """Why the fused kernels cannot run on `device` in this process (None: they can)."""
    if device.type == "cuda":
        if INTERPRETED:
            return "cannot run on CUDA tensors while TRITON_INTERPRET=1 (the interpreter is CPU-only)"
        return None
    if device.type == "cpu":
        if not _env_interpret():
            return "runs on CUDA tensors; on the CPU only through Triton's interpreter (TRITON_INTERPRET=1)"
        if not INTERPRETED:
            return ("needs TRITON_INTERPRET=1 set before alto.optim.fused is imported "
                    "(it was imported without it)")
        return None
    return f"supports CUDA tensors only, not {device.type}"


def _env_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def can_fuse(lists: list[list[Tensor]]) -> bool:
    """Whether a bucket (aligned lists: params, grads, state...) fits the kernels' assumptions.

    fp32/fp64 only; every tensor of a parameter's row must share its dense layout, because the
    kernels treat each as `numel` consecutive elements in memory order.
    """
    params = lists[0]
    if not params or params[0].dtype not in (torch.float32, torch.float64):
        return False
    dtype, device = params[0].dtype, params[0].device
    for i, p in enumerate(params):
        if p.dtype != dtype or p.device != device or not is_dense(p):
            return False
        shape, stride = p.shape, p.stride()
        for lst in lists[1:]:
            t = lst[i]
            if t.dtype != dtype or t.device != device or t.shape != shape or t.stride() != stride:
                return False
    return True


def _block_table(numels: list[int], block: int) -> tuple[Tensor, int]:
    """int64 [per block: tensor id | block index within the tensor | the tensor's numel,
    then per tensor: first block (n+1 entries)], and the number of blocks."""
    sizes = torch.tensor(numels, dtype=torch.int64)
    counts = (sizes + block - 1) // block
    first = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    tids = torch.repeat_interleave(torch.arange(len(numels)), counts)
    blks = torch.arange(int(first[-1])) - first[tids]
    return torch.cat([tids, blks, sizes[tids], first]), int(first[-1])


def _alignment(addresses: list[int], numels: list[int]) -> int:
    """Largest N_DIV in (16, 8, 4, 2) dividing every numel when all addresses are 16-byte
    aligned (the kernels' ALIGNED hints), else 1."""
    if not ALIGN_HINTS or any(a % 16 for a in addresses):
        return 1
    for div in (16, 8, 4, 2):
        if all(n % div == 0 for n in numels):
            return div
    return 1


def _launch_config(device: torch.device) -> tuple[int, int]:
    return (CUDA_BLOCK, CUDA_WARPS) if device.type == "cuda" else (INTERPRET_BLOCK, 1)


@dataclass(frozen=True)
class BucketPlan:
    """What the kernels need to know about a bucket besides its values, built once per layout."""

    ptrs: Tensor      # int64 (n, roles): every tensor's address, on the device
    table: Tensor     # the block table (`_block_table`), on the device
    n_tensors: int
    n_blocks: int
    n_roles: int
    n_div: int        # 1, or the alignment the ALIGNED kernels may assume
    block: int
    warps: int


_PLANS: dict[tuple, BucketPlan | None] = {}
MAX_PLANS = 64


def _plan_key(lists: list[list[Tensor]]) -> tuple:
    """Everything a plan depends on: every tensor's address, the parameters' shapes and the
    parameters' and gradients' strides, and the bucket's device and dtype.

    The state tensors are the optimizer's own: one with a new layout also has a new address.
    """
    params, grads = lists[0], lists[1]
    return (params[0].device, params[0].dtype, tuple(map(Tensor.data_ptr, itertools.chain.from_iterable(lists))),
            tuple(map(Tensor.size, params)), tuple(map(Tensor.stride, params)), tuple(map(Tensor.stride, grads)))


def _build_plan(lists: list[list[Tensor]]) -> BucketPlan | None:
    if not can_fuse(lists):
        return None
    params = lists[0]
    device = params[0].device
    addresses = [t.data_ptr() for row in zip(*lists) for t in row]  # one row per tensor
    numels = [p.numel() for p in params]
    block, warps = _launch_config(device)
    table, n_blocks = _block_table(numels, block)
    n_div = _alignment(addresses, numels)  # (the interpreter ignores the hints but runs those variants)
    return BucketPlan(ptrs=to_device(torch.tensor(addresses, dtype=torch.int64), device),
                      table=to_device(table, device), n_tensors=len(params), n_blocks=n_blocks,
                      n_roles=len(lists), n_div=n_div, block=block, warps=warps)


def bucket_plan(lists: list[list[Tensor]]) -> BucketPlan | None:
    """The cached plan of a bucket (aligned lists: params, grads, exp_avgs, exp_avg_sqs[, a, prev]),
    or None when the kernels do not cover it (see `can_fuse`)."""
    if not lists[0]:
        return None
    global plans_built
    key = _plan_key(lists)
    if key not in _PLANS:
        if len(_PLANS) >= MAX_PLANS:
            _PLANS.pop(next(iter(_PLANS)))
        _PLANS[key] = _build_plan(lists)
        plans_built += 1
    return _PLANS[key]


def lamb_fused(plan: BucketPlan, params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
               exp_avg_sqs: list[Tensor], adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *,
               step_counts: Tensor, clip_coef: Tensor, alpha: float, beta1: float, beta2: float, beta3: float,
               lr: float, eps: float, weight_decay: float, bias_correction: bool, trust_ratio: str,
               stats: StepStats | None = None) -> None:
    """One ALTO (adaptors given) or Lamb step of a bucket, like `lamb_multi_tensor`.

    `plan` is `bucket_plan` of these lists. The gradients arrive unclipped and `clip_coef` (a
    device tensor) is applied in the kernel; afterwards the gradient buffers hold u (the unscaled
    update) as scratch. `step_counts` (CPU) are this step's counts, already incremented.
    Not for torch.compile's graphs: the kernels write tensors that they reach through the address
    table, which the compiler cannot see (the optimizers call it outside them).
    """
    global buckets_fused
    device, dtype = params[0].device, params[0].dtype
    refuse_cuda_graph_capture("the fused ALTO/Lamb kernels", device)
    n, n_blocks = plan.n_tensors, plan.n_blocks
    adapt = adaptors is not None

    group = torch.tensor([alpha, beta1, -(1 - beta1), 1 - beta2, beta3, 1 - beta3, weight_decay, -lr,
                          PAPER_EPS2, PAPER_EPS3], dtype=torch.float64)
    if bias_correction:
        per_tensor = list(bias_correction_scalars(step_counts, beta2, beta3, eps))
    else:
        per_tensor = [torch.full((n,), eps, dtype=torch.float64)]
    scal = to_device(torch.cat([group, *per_tensor]).to(dtype), device)
    coef = clip_coef.to(device=device, dtype=dtype).reshape(1)

    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    norms = apply_ratio or stats is not None
    with_stats = stats is not None
    rows = N_ROWS_E if with_stats and adapt else N_ROWS
    work = torch.empty(rows * max(n_blocks, 1) + 3 * n, device=device, dtype=dtype)
    partials = work[:rows * max(n_blocks, 1)].view(rows, max(n_blocks, 1))
    scales, ratios, u_norms = work[rows * max(n_blocks, 1):].view(3, n)
    mode = (MODE_PAPER if trust_ratio == "paper" else MODE_REFERENCE) if apply_ratio else MODE_NONE
    decay = weight_decay != 0
    aligned = dict(ALIGNED=plan.n_div > 1, N_DIV=plan.n_div, BLOCK=plan.block, num_warps=plan.warps)
    # Triton launches on the current CUDA device: make it the bucket's
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        if n_blocks:  # none when every tensor of the bucket is empty
            _pass1_kernel[(n_blocks,)](
                plan.ptrs, plan.table, scal, coef, partials, n, n_blocks, N_ROLES=plan.n_roles, ADAPT=adapt,
                BIAS_CORRECTION=bias_correction, DECAY=decay, NORMS=norms, LOAD_P=norms or decay,
                LERP_FROM_END=(1 - beta2) >= 0.5, STATS=with_stats and adapt, PRECISE=dtype == torch.float32,
                **aligned)
        _ratio_kernel[(n,)](plan.table, scal, partials, scales, ratios, u_norms, n, n_blocks,
                            NORMS=norms, MODE=mode, PRECISE=dtype == torch.float32, RBLOCK=REDUCE_BLOCK)
        if n_blocks:
            _pass2_kernel[(n_blocks,)](plan.ptrs, plan.table, scales, partials, n_blocks, N_ROLES=plan.n_roles,
                                       STATS=with_stats, **aligned)
    buckets_fused += 1

    if stats is not None:
        step_norm = u_norms * lr if not apply_ratio else u_norms * ratios * lr
        lamb = torch.stack([partials[R_P_NEW.value, :n_blocks].sum(), step_norm.square().sum()])
        stats.add_sums(P_SQ, lamb)
        if adapt:
            stats.add_sums(G_SQ, partials[R_E.value:, :n_blocks].sum(dim=1))
        if apply_ratio:
            stats.trust_ratios.append(ratios)
