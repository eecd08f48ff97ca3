"""ALTO and Lamb on the CPU in one loop of C (lamb_cpu.c): the path of fp32 and fp64 CPU buckets.

torch's CPU operations each make their own pass over the data, and even in cache-sized blocks
the dozen operations of ALTO's update cost twice its memory traffic. One C loop reads each
parameter, gradient and state value once (pass 1: state, update u, sums) and, once a tensor's
trust ratio is known, updates the parameter (pass 2): the two passes the bound of
alto/optim/bench.py counts.

The loop is compiled on first use, once per dtype, with the machine's C compiler for its own CPU
(`cc -O3 -march=native`, a fraction of a second), kept in a cache folder (ALTO_CACHE_DIR, else
~/.cache/alto-lab) under a name that hashes the source, the flags, the compiler and the CPU, and
loaded with ctypes. A process without a compiler, with ALTO_CPU_KERNEL=0, or whose build fails
uses the torch path instead (`unavailable_reason` says why). Work above MIN_ELEMS_PER_THREAD
elements per thread is split over torch's CPU thread count (ctypes releases the GIL).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from ._lamb_math import applies_trust_ratio, bias_correction_scalars, trust_ratio_of
from ._telemetry import A_G_DOT, P_SQ, StepStats

SOURCE = Path(__file__).with_name("lamb_cpu.c")
# Native code for this CPU; the math flags let the compiler vectorise the sums (reassociation)
# and skip errno for sqrt. Infinities and NaN still propagate, so divergence stays visible.
FLAGS = ("-O3", "-fno-math-errno", "-fno-trapping-math", "-fassociative-math", "-fno-signed-zeros",
         "-fPIC", "-shared")
NATIVE = ("-march=native",)
DTYPE_FLAGS = {torch.float32: (), torch.float64: ("-DREAL_DOUBLE",)}
ROLES = 6                     # pointers per piece: p, g, m, v, a, prev (lamb_cpu.c)
MIN_ELEMS_PER_THREAD = 1 << 16
ALIGN_ELEMS = 16              # thread boundaries inside a tensor fall on 64-byte lines
BUILD_TIMEOUT_S = 120


def cache_dir() -> Path:
    """Where built kernels are kept: ALTO_CACHE_DIR, else $XDG_CACHE_HOME/alto-lab, else ~/.cache/alto-lab."""
    if os.environ.get("ALTO_CACHE_DIR"):
        return Path(os.environ["ALTO_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "alto-lab"


def _private_dir(path: Path) -> Path:
    """path, created 0700; refused when someone else could place a library there."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{path} is not a folder only this user can write (set ALTO_CACHE_DIR)")
    return path


def _compiler() -> str:
    return os.environ.get("CC") or "cc"


def _build_key(flags: tuple[str, ...]) -> str:
    """A hash of everything the built library depends on."""
    version = subprocess.run([_compiler(), "--version"], capture_output=True, text=True, timeout=30).stdout
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        lines = Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
        cpu = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    parts = [SOURCE.read_bytes(), " ".join(flags).encode(), version.encode(), platform.machine().encode(), cpu.encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:20]


def _build(flags: tuple[str, ...]) -> Path:
    """The library built with flags: from the cache, or compiled into it (atomically)."""
    folder = _private_dir(cache_dir())
    target = folder / f"lamb_cpu-{_build_key(flags)}.so"
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        done = subprocess.run([_compiler(), *flags, str(SOURCE), "-o", tmp, "-lm"], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{_compiler()} failed: {done.stderr.strip()[-400:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


@functools.cache
def _load(dtype: torch.dtype) -> tuple[ctypes.CDLL | None, str | None, float]:
    """(library, None, seconds) or (None, why not, seconds spent finding out): once per process and dtype."""
    start = time.perf_counter()
    if os.environ.get("ALTO_CPU_KERNEL", "1") == "0":
        return None, "switched off by ALTO_CPU_KERNEL=0", 0.0
    if dtype not in DTYPE_FLAGS:
        return None, f"built for float32 and float64 only, not {dtype}", 0.0
    errors = []
    for flags in (FLAGS + NATIVE, FLAGS):  # some compilers do not know -march=native
        try:
            lib = ctypes.CDLL(str(_build(flags + DTYPE_FLAGS[dtype])))
            break
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            errors.append(f"{type(err).__name__}: {err}")
    else:
        return None, "; ".join(errors)[:600], time.perf_counter() - start
    p, i64, i, d = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    lib.lamb_cpu_pass1.argtypes = [i64, p, p, p, p, i, i, d, d, d, d, d, d, p]
    lib.lamb_cpu_pass1.restype = None
    lib.lamb_cpu_pass2.argtypes = [i64, p, p, p, i, p]
    lib.lamb_cpu_pass2.restype = None
    return lib, None, time.perf_counter() - start


def unavailable_reason(dtype: torch.dtype = torch.float32) -> str | None:
    """Why CPU buckets of dtype cannot use the C loop in this process, or None (builds it once)."""
    return _load(dtype)[1]


def load_seconds(dtype: torch.dtype = torch.float32) -> float:
    """What building (or finding) and loading the library for dtype cost this process."""
    return _load(dtype)[2]


def covers(dtype: torch.dtype) -> bool:
    """Whether a CPU bucket of this dtype takes the C loop (the others take the torch path)."""
    return unavailable_reason(dtype) is None


def split(numels: list[int], parts: int) -> list[list[tuple[int, int, int]]]:
    """The elements of tensors of these sizes as at most `parts` spans of about equal size, each a
    list of pieces (tensor index, start, stop); a tensor may be cut between spans."""
    total = sum(numels)
    per = -(-total // parts)
    per += -per % ALIGN_ELEMS
    spans: list[list[tuple[int, int, int]]] = [[]]
    room = per
    for i, n in enumerate(numels):
        start = 0
        while start < n:
            if room == 0:
                spans.append([])
                room = per
            take = min(n - start, room)
            spans[-1].append((i, start, start + take))
            start += take
            room -= take
    return spans


# (pid, workers, pool), made in the process that steps (a forked child makes its own). The threads
# touch no SQLite, so their names stay out of the "alto-" prefix the fork-safety checks look for.
_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _run_spans(fn, spans: list) -> list:
    global _pool
    if len(spans) <= 1:
        return [fn(span) for span in spans]
    if _pool is None or _pool[0] != os.getpid() or _pool[1] < len(spans) - 1:
        _pool = (os.getpid(), len(spans) - 1, ThreadPoolExecutor(len(spans) - 1, thread_name_prefix="lamb-cpu"))
    rest = [_pool[2].submit(fn, span) for span in spans[1:]]
    return [fn(spans[0])] + [r.result() for r in rest]


def lamb_cpu_loop(params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], exp_avg_sqs: list[Tensor],
                  adaptors: list[Tensor] | None, prevs: list[Tensor] | None, *, step_counts: Tensor,
                  clip_coef: float, alpha: float, beta1: float, beta2: float, beta3: float, lr: float, eps: float,
                  weight_decay: float, bias_correction: bool, trust_ratio: str,
                  stats: StepStats | None = None) -> None:
    """One ALTO (adaptors given) or Lamb step of a bucket of fp32 or fp64 CPU tensors whose rows
    (parameter, gradient, state) share one dense layout, in the C loop. Like the other paths it
    leaves u, not the gradient, in the gradient buffers."""
    if not params:
        return
    lib = _load(params[0].dtype)[0]
    with_a = adaptors is not None
    count = len(params)
    if bias_correction:
        eps_hat, u_scale = bias_correction_scalars(step_counts, beta2, beta3, eps)
    else:
        eps_hat, u_scale = torch.full((count,), eps, dtype=torch.float64), torch.ones(count, dtype=torch.float64)
    roles = [params, grads, exp_avgs, exp_avg_sqs] + ([adaptors, prevs] if with_a else [params, params])
    base = torch.tensor([[t.data_ptr() for t in role] for role in roles], dtype=torch.int64).T
    numels = [p.numel() for p in params]
    threads = max(1, min(torch.get_num_threads(), sum(numels) // MIN_ELEMS_PER_THREAD))
    tables = []
    for span in split(numels, threads) if sum(numels) else []:  # (all empty: nothing to walk)
        index, start, stop = torch.tensor(span, dtype=torch.int64).T
        offsets = params[0].element_size() * start[:, None]
        tables.append((index, (base[index] + offsets).contiguous(), (stop - start).contiguous()))

    def pass1(table) -> Tensor:
        index, rows, n = table
        out = torch.zeros(len(index), 8, dtype=torch.float64)
        scale, eps_k = u_scale[index].contiguous(), eps_hat[index].contiguous()
        lib.lamb_cpu_pass1(len(index), rows.data_ptr(), n.data_ptr(), scale.data_ptr(), eps_k.data_ptr(), with_a,
                           stats is not None, clip_coef, alpha, beta1, beta2, beta3, weight_decay, out.data_ptr())
        return out

    sums = torch.zeros(count, 8, dtype=torch.float64)
    for (index, _, _), out in zip(tables, _run_spans(pass1, tables)):
        sums.index_add_(0, index, out)
    p_sq, u_sq = sums[:, 0].tolist(), sums[:, 1].tolist()
    apply_ratio = applies_trust_ratio(trust_ratio, weight_decay)
    ratios = [trust_ratio_of(p ** 0.5, u ** 0.5, trust_ratio) if apply_ratio else 1.0 for p, u in zip(p_sq, u_sq)]
    scales = torch.tensor([-lr * r for r in ratios], dtype=torch.float64)

    def pass2(table) -> Tensor:
        index, rows, n = table
        out = torch.zeros(len(index), dtype=torch.float64)
        scale = scales[index].contiguous()  # (held in a name: the call reads its memory)
        lib.lamb_cpu_pass2(len(index), rows.data_ptr(), n.data_ptr(), scale.data_ptr(), stats is not None,
                           out.data_ptr())
        return out

    p_sq_after = _run_spans(pass2, tables)
    if stats is not None:
        new_p_sq = sum(out.sum().item() for out in p_sq_after)
        upd_sq = sum((lr * r) ** 2 * u for r, u in zip(ratios, u_sq))
        totals = sums.sum(dim=0).tolist()
        stats.add_sums(P_SQ, [new_p_sq, upd_sq] + (totals[2:A_G_DOT + 1] if with_a else []))
        if apply_ratio:
            stats.trust_ratios.append(ratios)
