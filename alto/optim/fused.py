"""Fused Triton kernels for ALTO and Lamb: the whole step in three launches per bucket.

The step is the one of `lamb_multi_tensor` (same operations in the same order, so the two paths
agree to rounding), reorganised around memory traffic:

    pass 1 (one launch)  per element: g = coef*g (global clip, coef read from the device);
                         ALTO only: a = b1*a - (1-b1)*(prev - g); prev = g; g~ = g + alpha*a;
                         m, v updated; u = (m/bc1)/(sqrt(v/bc2) + eps) + wd*p; u is stored in
                         the gradient buffer (as the multi-tensor path does), so pass 2 needs
                         neither m nor v. Per block: partial sums of |p|^2 and |u|^2 (and, with
                         telemetry, of the E statistics, which are free here: all in registers).
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

The hyper-parameters, the per-tensor bias-correction scalars and the tables travel as small
tensors in the bucket's dtype (pinned host memory, non-blocking copies), never as kernel
arguments that could change per step: nothing is recompiled when the learning rate or the step
changes, fp64 keeps full precision, and nothing in `lamb_fused` waits for the device.

Supported: fp32 and fp64 tensors whose p, grad and state share one dense layout (anything else
is left to the multi-tensor path by the caller, see `can_fuse`). On the CPU the kernels run only
through Triton's interpreter (TRITON_INTERPRET=1, set before this module is imported), for tests.
"""
from __future__ import annotations

import contextlib
import functools
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._telemetry import StepStats
from .clip import global_norm
from ._lamb_math import PAPER_EPS2, PAPER_EPS3, applies_trust_ratio, bias_corrections

# Kernels built by @triton.jit below are interpreted or compiled depending on this, once.
INTERPRETED = bool(triton.knobs.runtime.interpret)

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

# Rows of the per-block partial sums.
R_P_NEW = tl.constexpr(2)  # rows 0 and 1: |p|^2 and |u|^2 before the update
E_STATS = ("g_sq", "prev_sq", "g_prev_dot", "diff_sq", "a_sq", "a_g_dot")  # rows 3..8
MODE_NONE, MODE_REFERENCE, MODE_PAPER = 0, 1, 2


# ---------------------------------------------------------------------------------- kernels
# No helper @jit functions on purpose: under the interpreter every nested call costs milliseconds.
# PRECISE (fp32): `/` and tl.sqrt are approximate on GPUs while torch rounds correctly, so the
# _rn variants are used; fp64 division and square root are exact anyway.
# ALIGNED: every address is a multiple of 16 bytes and every numel of N_DIV elements (checked on
# the host); the hints let the compiler vectorise the masked loads, which it cannot prove for
# addresses and sizes read from a table.


@triton.jit
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
        if STATS:
            tl.store(out + 3 * n_blocks, tl.sum(g * g, axis=0))
            tl.store(out + 4 * n_blocks, tl.sum(prev * prev, axis=0))
            tl.store(out + 5 * n_blocks, tl.sum(g * prev, axis=0))
            tl.store(out + 6 * n_blocks, tl.sum(d * d, axis=0))
        a = a * tl.load(scal + S_BETA1)
        a = a + tl.load(scal + S_NEG_1MB1) * d
        tl.store(a_ptr + offs, a, mask=mask)
        tl.store(prev_ptr + offs, g, mask=mask)
        if STATS:
            tl.store(out + 7 * n_blocks, tl.sum(a * a, axis=0))
            tl.store(out + 8 * n_blocks, tl.sum(a * g, axis=0))
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
    # u = (sqrt(bc2)/bc1) * m / (sqrt(v) + eps*sqrt(bc2)): a reciprocal times m, as in the foreach path
    eps_hat = tl.load(scal + N_GROUP_SCALARS + tid)
    if PRECISE:
        u = tl.math.div_rn(tl.full([BLOCK], 1.0, v.dtype), tl.math.sqrt_rn(v) + eps_hat) * m
    else:
        u = 1.0 / (tl.sqrt(v) + eps_hat) * m
    if BIAS_CORRECTION:
        u = u * tl.load(scal + N_GROUP_SCALARS + n_tensors + tid)
    if LOAD_P:  # NORMS or DECAY
        p = tl.load(p_ptr + offs, mask=mask, other=0.0)
        if DECAY:
            u = u + tl.load(scal + S_WD) * p
        if NORMS:
            u_in = tl.where(mask, u, 0.0)  # padding lanes hold 0/eps, NaN when eps = 0
            # one reduction for both sums (rows R_P = 0 and R_U = 1 of `partials`)
            sums = tl.sum(tl.join(p * p, u_in * u_in), axis=0)
            tl.store(out + tl.arange(0, 2) * n_blocks, sums)
    tl.store(g_ptr + offs, u, mask=mask)


@triton.jit
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


@triton.jit
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


def _dense(t: Tensor) -> bool:
    """True when t covers one gap-free block of memory (any dimension order)."""
    if t.is_contiguous():
        return True
    expected = 1
    for stride, size in sorted((s, n) for s, n in zip(t.stride(), t.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def can_fuse(lists: list[list[Tensor]]) -> bool:
    """Whether a bucket (aligned lists: params, grads, state...) fits the kernels' assumptions.

    fp32/fp64 only; every tensor of a parameter's row must share its dense layout, because the
    kernels treat each as `numel` consecutive elements in memory order.
    """
    params = lists[0]
    if not params or params[0].dtype not in (torch.float32, torch.float64):
        return False
    for i, p in enumerate(params):
        if not _dense(p):
            return False
        for lst in lists[1:]:
            t = lst[i]
            if t.dtype != p.dtype or t.device != p.device or t.shape != p.shape or t.stride() != p.stride():
                return False
    return True


def clip_coefficient(grads: list[Tensor], max_norm: float | None, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """(global norm, coefficient) as clip.clip_grads_ computes them, without scaling the grads.

    The fused kernel multiplies by the coefficient while it reads g, saving a read and a write
    of every gradient.
    """
    norm = global_norm(grads)
    if max_norm is None:
        return norm, torch.ones_like(norm)
    return norm, torch.clamp(max_norm / (norm + eps), max=1.0)


def _to_device(values: list, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A small host list as a device tensor without a sync (pinned memory, non-blocking copy)."""
    if device.type != "cuda":
        return torch.tensor(values, dtype=dtype, device=device)
    # The caching host allocator keeps the pinned block alive until the copy has run.
    return torch.tensor(values, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


@functools.lru_cache(maxsize=32)
def _block_table(numels: tuple[int, ...], block: int, device: torch.device) -> tuple[Tensor, int]:
    """int64 [per block: tensor id | block index within the tensor | the tensor's numel,
    then per tensor: first block (n+1 entries)], and the number of blocks."""
    sizes = torch.tensor(numels, dtype=torch.int64)
    counts = (sizes + block - 1) // block
    first = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    tids = torch.repeat_interleave(torch.arange(len(numels)), counts)
    blks = torch.arange(int(first[-1])) - first[tids]
    table = torch.cat([tids, blks, sizes[tids], first])
    if device.type == "cuda":
        table = table.pin_memory().to(device, non_blocking=True)
    return table, int(first[-1])


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


def lamb_fused(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor],
               exp_avg_sqs: list[Tensor], steps: list[Tensor],
               adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *, clip_coef: Tensor,
               alpha: float, beta1: float, beta2: float, beta3: float, lr: float, eps: float,
               weight_decay: float, bias_correction: bool, trust_ratio: str,
               stats: StepStats | None = None) -> None:
    """One ALTO (adaptors given) or Lamb step of a bucket, like `lamb_multi_tensor`.

    Differences: the gradients arrive UNclipped and `clip_coef` (a device tensor) is applied in
    the kernel; afterwards the gradient buffers hold u (the unscaled update) as scratch. The
    bucket must pass `can_fuse`.
    """
    if not params:
        return
    device, dtype = params[0].device, params[0].dtype
    n = len(params)
    adapt = adaptors is not None
    torch._foreach_add_(steps, 1)  # CPU step counters, as in the multi-tensor path

    roles = [params, grads, exp_avgs, exp_avg_sqs] + ([adaptors, prevs] if adapt else [])
    addresses = [t.data_ptr() for row in zip(*roles) for t in row]  # one row per tensor
    ptrs = _to_device(addresses, torch.int64, device)
    block, warps = _launch_config(device)
    table, n_blocks = _block_table(tuple(p.numel() for p in params), block, device)

    scalars = [alpha, beta1, -(1 - beta1), 1 - beta2, beta3, 1 - beta3, weight_decay, -lr,
               PAPER_EPS2, PAPER_EPS3]
    if bias_correction:
        bc1, bc2_sqrt = bias_corrections(steps, beta2, beta3)
        scalars += [eps * b for b in bc2_sqrt] + [b2 / b1 for b1, b2 in zip(bc1, bc2_sqrt)]
    else:
        scalars += [eps] * n
    scal = _to_device(scalars, dtype, device)
    coef = clip_coef.to(device=device, dtype=dtype).reshape(1)

    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    norms = apply_ratio or stats is not None
    with_stats = stats is not None
    precise = dtype == torch.float32
    n_div = _alignment(addresses, [p.numel() for p in params]) if device.type == "cuda" else 1
    partials = torch.empty((9 if with_stats else 3, max(n_blocks, 1)), device=device, dtype=dtype)
    scales = torch.empty(n, device=device, dtype=dtype)
    ratios = torch.empty(n, device=device, dtype=dtype)
    u_norms = torch.empty(n, device=device, dtype=dtype)
    mode = (MODE_PAPER if trust_ratio == "paper" else MODE_REFERENCE) if apply_ratio else MODE_NONE

    decay = weight_decay != 0
    aligned = dict(ALIGNED=n_div > 1, N_DIV=n_div, BLOCK=block, num_warps=warps)
    # Triton launches on the current CUDA device: make it the bucket's
    with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
        if n_blocks:  # none when every tensor of the bucket is empty
            _pass1_kernel[(n_blocks,)](
                ptrs, table, scal, coef, partials, n, n_blocks, N_ROLES=len(roles), ADAPT=adapt,
                BIAS_CORRECTION=bias_correction, DECAY=decay, NORMS=norms, LOAD_P=norms or decay,
                LERP_FROM_END=(1 - beta2) >= 0.5, STATS=with_stats and adapt, PRECISE=precise, **aligned)
        _ratio_kernel[(n,)](table, scal, partials, scales, ratios, u_norms, n, n_blocks,
                            NORMS=norms, MODE=mode, PRECISE=precise, RBLOCK=REDUCE_BLOCK)
        if n_blocks:
            _pass2_kernel[(n_blocks,)](ptrs, table, scales, partials, n_blocks, N_ROLES=len(roles),
                                       STATS=with_stats, **aligned)

    if stats is not None:
        if adapt:
            sums = partials[3:9, :n_blocks].sum(dim=1)
            for key, value in zip(E_STATS, sums.unbind()):
                stats.add(key, value)
        step_norm = u_norms * lr if not apply_ratio else u_norms * ratios * lr
        stats.add("upd_sq", step_norm.square().sum())
        stats.add("p_sq", partials[R_P_NEW.value, :n_blocks].sum())
        if apply_ratio:
            stats.trust_ratios.append(ratios)
