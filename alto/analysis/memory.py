"""Memory is a cost too: optimizer state per parameter, each run's peak memory, and whether a
model still fits per GPU with the candidate's state.

State bytes are measured, not looked up: the optimizer is built on a small probe, takes one step
(optimizers create their buffers lazily) and the bytes of its per-parameter state tensors are
divided by the parameters' element count. ALTO keeps four fp32 buffers (16 bytes per parameter),
Lamb and AdamW two (8), SGD with momentum and LION one (4).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass

import torch
from torch.optim import Optimizer

from alto.store import Store

GIB = 2**30
PROBE_SHAPES = ((64, 32), (64,), (10, 64), (10,))  # a matrix and a vector, twice: enough for every rule


def state_bytes_per_param(optimizer: Optimizer) -> float:
    """Bytes of `optimizer`'s per-parameter state over its parameters' element count.

    Counts every state tensor with at least one dimension (0-d step counters exist once per
    tensor, not per parameter), including the state of an optimizer it wraps (the E adaptor
    keeps its base optimizer's state apart from its own). Call it after a step.
    """
    params = {id(p): p for group in optimizer.param_groups for p in group["params"]}
    count = sum(p.numel() for p in params.values())
    if count == 0:
        raise ValueError("optimizer has no parameters to measure the state of")
    return _state_bytes(optimizer, set()) / count


def _state_bytes(optimizer: Optimizer, seen: set[int]) -> int:
    if id(optimizer) in seen:
        return 0
    seen.add(id(optimizer))
    total = sum(t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values()
                if torch.is_tensor(t) and t.dim() > 0)
    wrapped = [v for v in vars(optimizer).values() if isinstance(v, Optimizer)]
    return total + sum(_state_bytes(w, seen) for w in wrapped)


@functools.lru_cache(maxsize=128)
def _measured(name: str, batch_size: int | None, hparams_json: str) -> float:
    from alto.optim import build

    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=gen)) for shape in PROBE_SHAPES]
    optimizer = build(name, params, batch_size, **json.loads(hparams_json))
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-2
    optimizer.step()
    return state_bytes_per_param(optimizer)


def optimizer_state_bytes_per_param(name: str, *, batch_size: int | None = None,
                                    hparams: dict | None = None) -> float:
    """State bytes per parameter of the lab's optimizer `name` with these settings (e.g.
    SGD without momentum keeps none), measured after one step on a probe."""
    return _measured(name, batch_size, json.dumps(hparams or {}, sort_keys=True))


def run_state_bytes(run: dict) -> float | None:
    """A run's optimizer state bytes per parameter, from its stored config; None for an
    optimizer the lab does not know (a run tracked from outside code, say)."""
    config = run.get("config") or {}
    try:
        return optimizer_state_bytes_per_param(run["optimizer"], batch_size=config.get("batch_size"),
                                               hparams=config.get("hparams") or {})
    except (ValueError, TypeError):
        return None


def peak_memory_mb(store: Store, run_ids: list[int]) -> dict[int, float | None]:
    """Each run's peak memory as the engine logged it at evaluations (`mem_mb`: CUDA max
    allocated on a GPU, resident set size of the whole process on a CPU)."""
    summary = store.summary(list(run_ids))
    return {rid: (summary[rid].get("mem_mb") or {}).get("max") for rid in run_ids}


# ------------------------------------------------------------------------- fitting per GPU

@dataclass(frozen=True)
class MemoryFit:
    """A baseline job's memory per GPU and what the candidate's optimizer state makes of it."""

    gpu_gib: float
    baseline_gib: float              # per GPU, with the baseline optimizer (given)
    candidate_gib: float             # per GPU with the candidate's state, on the baseline's GPU count
    gpus_baseline: int
    gpus_candidate: int | None       # GPUs the candidate needs; None: it fits on no count
    sharded: bool

    @property
    def fits(self) -> bool:
        return self.gpus_candidate == self.gpus_baseline

    @property
    def factor(self) -> float | None:
        """GPU-hours factor: baseline GPUs / candidate GPUs (1 when it fits, below 1 when it
        needs more GPUs, None when it does not fit at all)."""
        return None if self.gpus_candidate is None else self.gpus_baseline / self.gpus_candidate

    def sentence(self) -> str:
        where = (f"{self.candidate_gib:,.1f} GiB per GPU with the candidate's optimizer state vs "
                 f"{self.baseline_gib:,.1f} GiB with the baseline's, on {self.gpu_gib:g} GiB GPUs")
        if self.fits:
            return f"Fits: {where}."
        if self.gpus_candidate is None:
            return (f"Does not fit: {where}; with the optimizer state replicated on every GPU more GPUs do "
                    "not help (shard the state, or use GPUs with more memory).")
        return (f"Needs {self.gpus_candidate} GPUs instead of {self.gpus_baseline}: {where}; the sharded state "
                f"fits on {self.gpus_candidate} (the job's length is assumed unchanged, so its GPU-hours grow "
                f"{self.gpus_candidate / self.gpus_baseline:.2f}x).")


def _positive(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def memory_fit(*, n_params: float, baseline_gib_per_gpu: float, gpu_gib: float, candidate_bytes_per_param: float,
               baseline_bytes_per_param: float, gpus_per_job: int, sharded: bool = False) -> MemoryFit:
    """Whether a model of `n_params` parameters, using `baseline_gib_per_gpu` per GPU with the
    baseline optimizer, still fits on `gpu_gib` GPUs with the candidate's optimizer state.

    Only the optimizer state changes: weights, gradients and activations stay as they were. With
    `sharded` state (ZeRO stage 1 / FSDP) each of G GPUs holds 1/G of it, and the candidate gets
    the fewest GPUs it fits on; replicated state fits on the same count or on none.
    """
    n_params = _positive("n_params", n_params)
    baseline = _positive("baseline_gib_per_gpu", baseline_gib_per_gpu)
    gpu = _positive("gpu_gib", gpu_gib)
    if baseline > gpu:
        raise ValueError(f"baseline_gib_per_gpu ({baseline:g}) must not exceed the GPU's memory ({gpu:g} GiB)")
    if isinstance(gpus_per_job, bool) or not isinstance(gpus_per_job, int) or gpus_per_job < 1:
        raise ValueError(f"gpus_per_job must be an integer >= 1, got {gpus_per_job!r}")
    for name, value in (("candidate_bytes_per_param", candidate_bytes_per_param),
                        ("baseline_bytes_per_param", baseline_bytes_per_param)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    state_b = baseline_bytes_per_param * n_params / GIB
    state_c = candidate_bytes_per_param * n_params / GIB
    share = gpus_per_job if sharded else 1
    rest = baseline - state_b / share
    if rest < 0:
        raise ValueError(f"baseline_gib_per_gpu ({baseline:g}) is smaller than the baseline optimizer's state "
                         f"alone ({state_b / share:.2f} GiB per GPU for {n_params:,.0f} parameters)")
    candidate = rest + state_c / share
    if candidate <= gpu:
        needed: int | None = gpus_per_job
    elif sharded and gpu > rest:
        needed = max(gpus_per_job, math.ceil(state_c / (gpu - rest)))
    else:
        needed = None
    return MemoryFit(gpu, baseline, candidate, gpus_per_job, needed, sharded)
