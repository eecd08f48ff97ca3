"""Optimizer-step timing against the memory-bandwidth bound, measured side by side in one run.

An optimizer step on fp32 parameters is memory-bound: its floor is bytes moved per parameter
divided by the device's copy bandwidth (measured here, not taken from a data sheet).

Rows: each optimizer's default path (the C loop of alto/optim/cpu_kernel.py on the CPU, the Triton
kernels or the multi-tensor path on CUDA), on the CPU the torch path ALTO and Lamb take without
the C loop (`*_cache_blocked`), ALTO's portable multi-tensor path (`alto_multi_tensor`) and
per-tensor loop (`alto_per_tensor`), the previous implementation of ALTO and Lamb (`*_previous`, see
alto/optim/bench_previous.py: old and new timings in one run), torch's AdamW (fused on CUDA) and,
on CUDA only, the Triton kernels of ALTO and Lamb (`*_fused`) and torch.compile of the ALTO
multi-tensor step (`alto_compiled`). With `stats`, every row that collects telemetry is timed a
second time with it on. A row that fails is reported as an error record; the others still run.

Timing: on the CPU, time.perf_counter around each step (median of `repeats`); on CUDA, CUDA events
around STEPS_PER_TIMING back-to-back steps (median of `repeats` such groups), so that no host
synchronisation or launch gap sits inside the measured interval; the copy bandwidth likewise, over
a copy of at least 1 GiB on CUDA.
"""
from __future__ import annotations

import statistics
import time
from types import SimpleNamespace
from typing import Callable, Iterator

import torch

from . import cpu_kernel, lamb_family
from .bench_previous import PreviousLambFamily
from .lamb_family import ALTO, Lamb
from .lion import Lion

# Bytes read + written per fp32 parameter by the leanest correct implementation.
#   ALTO: clip-norm read of g (4) + pass 1 reads g, a, prev, m, v, p and writes a, prev, m, v (40)
#         + pass 2 reads p, m, v and writes p (16)                          = 60
#   Lamb: 4 + (g, m, v, p read; m, v written: 24) + 16                    = 44
#   AdamW: p, g, m, v read; p, m, v written = 28;  SGD-momentum and LION: p, g, buf/m read; p, buf written = 20
# The fused kernels reach these counts (u kept in the gradient buffer: see alto/optim/fused.py).
BYTES_PER_PARAM = {"alto": 60, "alto_multi_tensor": 60, "alto_per_tensor": 60, "alto_previous": 60,
                   "alto_cache_blocked": 60, "lamb": 44, "lamb_previous": 44, "lamb_cache_blocked": 44, "lion": 20, "sgd": 20, "adamw": 28,
                   "alto_fused": 60, "lamb_fused": 44, "alto_compiled": 60}
CUDA_ONLY = ("alto_fused", "lamb_fused", "alto_compiled")
IMPL = {"alto_multi_tensor": "multi-tensor", "alto_per_tensor": "per-tensor loop",
        "alto_cache_blocked": "cache-blocked (torch)", "lamb_cache_blocked": "cache-blocked (torch)",
        "alto_previous": "previous multi-tensor", "lamb_previous": "previous multi-tensor",
        "alto_fused": "fused (Triton)", "lamb_fused": "fused (Triton)",
        "alto_compiled": "torch.compile of the multi-tensor step"}
STEPS_PER_TIMING = 10      # CUDA: back-to-back steps between two events
CUDA_COPY_BYTES = 1 << 30  # CUDA: bytes per buffer of the bandwidth copy


def transformer_block(d: int) -> list[tuple[int, ...]]:
    """One GPT-2 block's parameter shapes: two layer norms, attention and MLP, weights and biases."""
    return [(d,), (d,), (d, 3 * d), (3 * d,), (d, d), (d,), (d,), (d,), (d, 4 * d), (4 * d,), (4 * d, d), (d,)]


def gpt2_shapes(layers: int = 24, d: int = 1024, vocab: int = 50257, context: int = 1024) -> list[tuple[int, ...]]:
    """GPT-2's parameter shapes (Radford et al. 2019; the output head tied to the token embedding):
    token and position embeddings, the blocks, the final layer norm. The defaults are GPT-2
    medium, about 355M parameters."""
    return [(vocab, d), (context, d), *transformer_block(d) * layers, (d,), (d,)]


def transformer_like_shapes(n_params: int, d: int = 512) -> list[tuple[int, ...]]:
    """Transformer blocks of width d until about n_params."""
    block = transformer_block(d)
    per_block = sum(torch.Size(s).numel() for s in block)
    return block * max(1, round(n_params / per_block))


def copy_bandwidth(device: torch.device, n_bytes: int = 1 << 28, repeats: int = 10) -> float:
    """Bytes per second of dst.copy_(src) (read + write counted); on CUDA over at least 1 GiB."""
    if device.type == "cuda":
        n_bytes = max(n_bytes, CUDA_COPY_BYTES)
    n = n_bytes // 4
    src = torch.empty(n, device=device).uniform_()
    dst = torch.empty_like(src)
    times = _time(lambda: dst.copy_(src), device, repeats)
    return 2 * n * 4 / statistics.median(times)


def _time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> list[float]:
    """Seconds per call of `fn`, `repeats` measurements (see the module docstring)."""
    for _ in range(warmup):
        fn()
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return times
    torch.cuda.synchronize(device)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        for _ in range(STEPS_PER_TIMING):
            fn()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) / 1e3 / STEPS_PER_TIMING for start, end in events]


def _compiled_alto(params: list) -> SimpleNamespace:
    """ALTO's multi-tensor step under torch.compile (compiled on the first calls)."""
    opt = ALTO(params, foreach=True)
    return SimpleNamespace(step=torch.compile(opt.step), optimizer=opt)


def _switched(cls: type, **switches) -> Callable[[list], SimpleNamespace]:
    """A row of cls whose steps run with lamb_family's module switches set (another CPU path)."""
    def factory(params: list) -> SimpleNamespace:
        opt = cls(params, foreach=True)

        def step() -> None:
            saved = {name: getattr(lamb_family, name) for name in switches}
            for name, value in switches.items():
                setattr(lamb_family, name, value)
            try:
                opt.step()
            finally:
                for name, value in saved.items():
                    setattr(lamb_family, name, value)
        return SimpleNamespace(step=step, optimizer=opt)
    return factory


def _factories(device: torch.device) -> dict[str, Callable[[list], object]]:
    """Name -> builder of an object with .step(); adamw first so every later row has it to compare with."""
    cuda = device.type == "cuda"
    rows = {
        "adamw": (lambda ps: torch.optim.AdamW(ps, fused=True)) if cuda else
                 (lambda ps: torch.optim.AdamW(ps, foreach=True)),
        "alto": lambda ps: ALTO(ps, foreach=True),
        "alto_multi_tensor": _switched(ALTO, CPU_KERNEL=False, CPU_BLOCK_ELEMS=None),
        "alto_per_tensor": lambda ps: ALTO(ps, foreach=False),
        "alto_previous": lambda ps: PreviousLambFamily(ps, with_adaptor=True),
        "lamb": lambda ps: Lamb(ps, foreach=True),
        "lamb_previous": lambda ps: PreviousLambFamily(ps, with_adaptor=False),
        "lion": lambda ps: Lion(ps, foreach=True),
        **({} if cuda else {"alto_cache_blocked": _switched(ALTO, CPU_KERNEL=False),
                            "lamb_cache_blocked": _switched(Lamb, CPU_KERNEL=False)}),
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True),
    }
    if cuda:
        rows.update({"alto_fused": lambda ps: ALTO(ps, fused=True),
                     "lamb_fused": lambda ps: Lamb(ps, fused=True),
                     "alto_compiled": _compiled_alto})
    return rows


def bench_optimizers(shapes: list[tuple[int, ...]], device: str | torch.device = "cpu",
                     repeats: int = 5, names: list[str] | None = None, stats: bool = False) -> Iterator[dict]:
    """Yield one record per optimizer (and a first one for the copy bandwidth).

    Every record has ms, bytes_per_param, bound_ms, ratio_to_bound (ms over the bandwidth bound)
    and, once AdamW has run, x_adamw (ms over AdamW's ms, fused AdamW on CUDA). With `stats`, rows
    whose optimizer collects telemetry also have ms_stats and stats_ratio (ms_stats over ms).
    Rows run one after the other, each on fresh parameters, timed back to back (warm caches).
    """
    device = torch.device(device)
    factories = _factories(device)
    wanted = list(names) if names else list(factories) + [n for n in CUDA_ONLY if n not in factories]
    skipped = [n for n in wanted if n not in factories]
    records = _rows([n for n in wanted if n in factories], factories, shapes, device, repeats, stats)
    yield next(records)  # the copy bandwidth
    if skipped:
        unknown = [n for n in skipped if n not in CUDA_ONLY]
        yield {"bench": "optim", "what": "note", "device": str(device),
               "note": (f"skipped on {device.type}: {', '.join(n for n in skipped if n in CUDA_ONLY)} "
                        "(CUDA only: Triton kernels; torch.compile of the step is too slow to build on a CPU)"
                        + (f"; unknown rows: {', '.join(unknown)}" if unknown else ""))}
    adamw_ms = None
    for record in records:
        if record["optimizer"] == "adamw" and "ms" in record:
            adamw_ms = record["ms"]
        if adamw_ms and "ms" in record:
            record["x_adamw"] = round(record["ms"] / adamw_ms, 2)
        yield record


def _bandwidth_record(device: torch.device, bandwidth: float) -> dict:
    return {"bench": "optim", "what": "copy_bandwidth", "device": str(device), "bytes_per_s": bandwidth,
            "GB_per_s": bandwidth / 1e9}


def _setup(name: str, factory: Callable[[list], object], shapes: list[tuple[int, ...]], device: torch.device):
    """The optimizer of a row on fresh parameters with gradients, and what its first step cost."""
    gen = torch.Generator(device=device).manual_seed(0)
    params = [torch.randn(s, device=device, generator=gen).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, device=device, generator=gen) * 1e-3
    opt = factory(params)
    extra: dict = {}
    if name == "alto_compiled":  # the first call compiles; report that time apart
        start = time.perf_counter()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        extra["compile_s"] = round(time.perf_counter() - start, 1)
    if device.type == "cpu" and name in ("alto", "lamb"):  # once per process (and machine), not per step
        extra["kernel_load_s"] = round(cpu_kernel.load_seconds(), 3)
    return opt, extra


def _collects(name: str, opt) -> object | None:
    """The optimizer whose collect_stats switches telemetry on, if the row has one."""
    telemetry = getattr(opt, "optimizer", opt)
    return telemetry if hasattr(telemetry, "collect_stats") and name != "alto_compiled" else None


def _record(name: str, shapes: list[tuple[int, ...]], device: torch.device, bandwidth: float, ms: float,
            ms_stats: float | None, extra: dict) -> dict:
    n_params = sum(torch.Size(s).numel() for s in shapes)
    bound_ms = BYTES_PER_PARAM[name] * n_params / bandwidth * 1e3
    record = {"bench": "optim", "optimizer": name, "impl": _impl(name, device), "device": str(device),
              "timing": "cuda_events" if device.type == "cuda" else "perf_counter", "params": n_params,
              "tensors": len(shapes), "ms": round(ms, 3), "bytes_per_param": BYTES_PER_PARAM[name],
              "bound_ms": round(bound_ms, 3), "ratio_to_bound": round(ms / bound_ms, 2), **extra}
    if ms_stats is not None:
        record.update(ms_stats=round(ms_stats, 3), stats_ratio=round(ms_stats / ms, 3))
    return record


def _error(name: str, device: torch.device, err: Exception) -> dict:
    return {"bench": "optim", "optimizer": name, "device": str(device), "error": repr(err)[:500]}


def _rows(rows, factories, shapes, device, repeats, stats) -> Iterator[dict]:
    n_params = sum(torch.Size(s).numel() for s in shapes)
    bandwidth = copy_bandwidth(device, n_bytes=min(1 << 28, max(1 << 22, n_params * 4)))
    yield _bandwidth_record(device, bandwidth)
    for name in rows:
        try:
            opt, extra = _setup(name, factories[name], shapes, device)
            telemetry = _collects(name, opt) if stats else None
            if telemetry is None:
                times = _time(opt.step, device, repeats, warmup=3 if name == "alto_compiled" else 2)
                ms, ms_stats = statistics.median(times) * 1e3, None
            else:  # alternate off and on, so that a change of load on the machine hits both alike
                off, on = [], []
                for _ in range(repeats):
                    for flag, times in ((False, off), (True, on)):
                        telemetry.collect_stats = flag
                        times += _time(opt.step, device, 1, warmup=1)
                ms, ms_stats = statistics.median(off) * 1e3, statistics.median(on) * 1e3
            record = _record(name, shapes, device, bandwidth, ms, ms_stats, extra)
        except Exception as err:  # one failing row must not lose the others
            record = _error(name, device, err)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        yield record


def _impl(name: str, device: torch.device) -> str:
    if name in IMPL:
        return IMPL[name]
    if device.type == "cuda":
        return "fused" if name == "adamw" else "multi-tensor"
    if name in ("alto", "lamb"):
        reason = cpu_kernel.unavailable_reason()
        return "C loop" if reason is None else f"cache-blocked (no C loop: {reason})"
    return "multi-tensor"
