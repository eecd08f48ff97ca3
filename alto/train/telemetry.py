"""Telemetry of a training run: the training clock, per-step values kept on the device, and the
flush that copies a batch of them to the host and writes them to the store.

The clock times exactly what training costs (README, "Honesty rules"): the data, forward and
backward segment and the optimizer segment of every step. Telemetry work between the two (the
curvature probe, gradient norms) and everything between steps (flushes, evaluation,
checkpoints) is timed apart. On a GPU the clock reads CUDA events, and a flush is the only
moment the host waits for the device. The engine's loop drives a StepClock; a loop the lab does
not own (alto.track) drives a LoopClock from its log() calls, optimizer hooks and pauses.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from alto.optim._lamb_math import applies_trust_ratio

FLUSH_EVERY_S = 0.5          # copy telemetry to the host and the store this often...
FLUSH_EVERY_STEPS = 200      # ...or after this many steps, whichever comes first
DIST_FLUSH_EVERY_STEPS = 20  # under torchrun every rank flushes (and checks for a stop) at the same steps
DETAIL_PER_RUN = 200         # detail telemetry (per-layer ratios, curvature) about this often a run...
DETAIL_MIN_EVERY = 10        # ...and never more often than every 10th step


def detail_every(total_steps: int | None) -> int:
    """Optimizer steps between detail steps (unknown length: every DETAIL_MIN_EVERY-th)."""
    return max(DETAIL_MIN_EVERY, (total_steps or 0) // DETAIL_PER_RUN)


@runtime_checkable
class CollectsStats(Protocol):
    """An optimizer that fills `stats` (device tensors) during step() when collect_stats is on:
    ALTO, Lamb, LION and the E adaptor. Others get the gradient norm from the engine."""

    collect_stats: bool
    stats: dict[str, Tensor]


class StepClock:
    """Times the two training segments of every step, [begin, pause] and [resume, end]: data,
    forward and backward, then the optimizer step. The gap between them is telemetry work.

    On the CPU with perf_counter; on a GPU with CUDA events (host timers only see when work was
    queued), read when the telemetry is flushed, after the copy that already waited for them.
    """

    MARKS = 4  # begin, pause, resume, end

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list[list] = []  # per step: four perf_counter values or CUDA events
        self._spare: list = []

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = self._spare.pop() if self._spare else torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def begin(self) -> None:
        self.pending.append([self._mark()])

    def pause(self) -> None:
        self.pending[-1].append(self._mark())

    def resume(self) -> None:
        self.pending[-1].append(self._mark())

    def end(self) -> None:
        self.pending[-1].append(self._mark())

    def resolve(self) -> list[tuple[float, float, float]]:
        """(train ms, optimizer ms, telemetry ms) of every pending step, oldest first."""
        out = []
        for begin, pause, resume, end in self.pending:
            if self.cuda:  # complete: the telemetry copy before this waited for them
                spans = (begin.elapsed_time(pause), pause.elapsed_time(resume), resume.elapsed_time(end))
                self._spare += (begin, pause, resume, end)
            else:
                spans = ((pause - begin) * 1e3, (resume - pause) * 1e3, (end - resume) * 1e3)
            fwd_bwd, gap, optim = spans
            out.append((fwd_bwd + optim, optim, gap))
        self.pending.clear()
        return out


class LoopClock:
    """The training clock of a loop the lab does not drive (alto.track). It runs from the first
    switch to TRAIN on and is read per logged step: lap() closes the time since the previous lap.
    In between, switch() moves it to OPTIM (an optimizer step: training time, also counted as
    optimizer time), PROBE (the telemetry's own work, timed apart) or OFF (evaluation, flushes,
    checkpoints: not counted; their host time is measured by whoever pauses).

    Marks are perf_counter values on the CPU and CUDA events on a GPU, read at a flush.
    """

    TRAIN, OPTIM, PROBE, OFF = "train", "optim", "probe", "off"

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.pending: list[list[tuple[str, object]]] = []  # closed laps: (state, mark) ..., ("end", mark)
        self._lap: list[tuple[str, object]] = []           # the open lap; starts at the last lap's end
        self._spare: list = []

    _mark = StepClock._mark  # the same marks: perf_counter values or recycled CUDA events

    @property
    def state(self) -> str:
        return self._lap[-1][0] if self._lap else self.OFF

    def switch(self, state: str) -> None:
        if state != self.state:
            self._lap.append((state, self._mark()))

    def lap(self) -> None:
        end = self._mark()
        self.pending.append([*self._lap, ("end", end)])
        self._lap = [(self.state, end)]

    def resolve(self) -> list[tuple[float, float, float]]:
        """(train ms, optimizer ms, telemetry ms) of every closed lap, oldest first."""
        if self.cuda and self.pending:
            self.pending[-1][-1][1].synchronize()  # normally done already: the flush's copy waited
        out = []
        for marks in self.pending:
            spent = {self.TRAIN: 0.0, self.OPTIM: 0.0, self.PROBE: 0.0, self.OFF: 0.0}
            for (state, start), (_, stop) in zip(marks, marks[1:]):
                spent[state] += start.elapsed_time(stop) if self.cuda else (stop - start) * 1e3
            if self.cuda:  # every mark but the end, which opens the next lap
                self._spare += [mark for _, mark in marks[:-1]]
            out.append((spent[self.TRAIN] + spent[self.OPTIM], spent[self.OPTIM], spent[self.PROBE]))
        self.pending.clear()
        return out


def gather_by_device(values: list[Tensor]) -> list[tuple[list[int], Tensor]]:
    """The values flattened into one float32 tensor per device they live on (with the indices
    of the values it holds): what to_host copies out, one copy per device."""
    by_device: dict[torch.device, list[int]] = {}
    for i, t in enumerate(values):
        by_device.setdefault(t.device, []).append(i)
    return [(idx, torch.cat([values[i].detach().float().reshape(-1) for i in idx])) for idx in by_device.values()]


def to_host(values: list[Tensor]) -> list[list[float]]:
    """Each tensor's values as floats, with one device-to-host copy per device."""
    out: list[list[float]] = [[] for _ in values]
    for idx, flat in gather_by_device(values):
        host, offset = flat.cpu().tolist(), 0
        for i in idx:
            out[i] = host[offset:offset + values[i].numel()]
            offset += len(out[i])
    return out


class Telemetry:
    """Per-step values, device tensors kept on the device until a flush copies them out in one
    batch, adds the step times from the clock and writes everything to the store."""

    def __init__(self, writer, clock: StepClock | LoopClock, *, layer_names: list[str] = (),
                 position: Callable[[int], dict[str, float]] = lambda step: {},
                 count_steps: bool = False, train_s: float = 0.0, last_step: int | None = None):
        self.writer, self.clock, self.layer_names, self.position = writer, clock, list(layer_names), position
        self.count_steps = count_steps
        self.last_step = last_step  # the step before the first one added; None: each entry is one step
        self.pending: list[tuple[int, dict[str, Tensor], dict[str, float]]] = []
        self.last_flush = time.monotonic()
        self.latest: dict[str, float] = {}
        self.train_s = train_s  # training clock at the end of the last flushed step
        self.apart_s = {"eval_s": 0.0, "log_s": 0.0, "checkpoint_s": 0.0, "telemetry_s": 0.0}
        self.host_extra: dict[str, float] = {}  # measured outside the steps, logged with the next step

    def add(self, step: int, device_values: dict[str, Tensor], host_values: dict[str, float]) -> None:
        """The values of step `step`; more values of the step added last join its entry."""
        if self.pending and self.pending[-1][0] == step:
            self.pending[-1][1].update(device_values)
            self.pending[-1][2].update(host_values)
            return
        self.pending.append((step, dict(device_values), {**host_values, **self.host_extra}))
        self.host_extra = {}

    def due(self) -> bool:
        if self.count_steps:  # under torchrun every rank must decide alike: count steps, not seconds
            return len(self.pending) >= DIST_FLUSH_EVERY_STEPS
        return (len(self.pending) >= FLUSH_EVERY_STEPS
                or time.monotonic() - self.last_flush >= FLUSH_EVERY_S)

    def device_values(self) -> tuple[list[Tensor], list[tuple[int, str]]]:
        """The pending device tensors in one list, and where each belongs (pending index, key)."""
        tensors, where = [], []
        for i, (_, values, _) in enumerate(self.pending):
            for key, t in values.items():
                tensors.append(t)
                where.append((i, key))
        return tensors, where

    def flush(self) -> bool:
        """Write pending steps; returns False if a logged loss is not finite (divergence)."""
        t0 = time.perf_counter()
        finite = True
        if self.pending:
            tensors, where = self.device_values()
            host = to_host(tensors)
            times = self.clock.resolve()
            rows = [dict(h) for _, _, h in self.pending]
            for (i, key), got in zip(where, host):
                if len(got) == 1:
                    rows[i][key] = got[0]
                else:  # per-layer trust ratios
                    names = self.layer_names if len(self.layer_names) == len(got) else \
                        [f"layer_{j}" for j in range(len(got))]
                    rows[i].update({f"layer_trust/{name}": v for name, v in zip(names, got)})
            for (step, _, _), row, (train_ms, optim_ms, telemetry_ms) in zip(self.pending, rows, times):
                self.train_s += train_ms / 1e3
                self.apart_s["telemetry_s"] += telemetry_ms / 1e3
                steps = 1  # steps this entry's times cover: a tracked loop may log every few steps
                if self.last_step is not None:
                    steps, self.last_step = max(1, step - self.last_step), step
                row.update({"time/step_ms": train_ms / steps, "time/optim_ms": optim_ms / steps,
                            "time/telemetry_ms": telemetry_ms / steps})
                if not math.isfinite(row.get("train/loss", 0.0)):
                    finite = False
                self.latest.update(row)
                if self.writer is not None:
                    self.writer.log(step, row, wall_time=self.train_s, **self.position(step))
            self.pending.clear()
        if self.writer is not None:
            self.writer.flush()
        self.last_flush = time.monotonic()
        log_s = time.perf_counter() - t0
        self.apart_s["log_s"] += log_s
        self.host_extra["time/log_ms"] = log_s * 1e3
        return finite

    def log_now(self, step: int, values: dict[str, float]) -> None:
        """Values measured outside the steps (evaluation), at the training clock of step `step`."""
        self.latest.update(values)
        if self.writer is not None:
            self.writer.log(step, values, wall_time=self.train_s, **self.position(step))
            self.writer.flush()


def _global_norm(tensors: list[Tensor]) -> Tensor:
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def _grads(params: list[Tensor]) -> list[Tensor]:
    """The gradients, zeros for a parameter that got none this step (in a user's model)."""
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


class CurvatureProbe:
    """<d theta, d g> / |d theta|^2 along one optimizer step, the sign of the paper's
    "acceleration": snapshot (theta_t, g_t) before a detail step, measure after the next backward.
    Costs two parameter copies, so only on detail steps."""

    def __init__(self, params: list[Tensor]):
        self.params = params
        self.snapshot: tuple[list[Tensor], list[Tensor]] | None = None

    def take(self) -> None:
        self.snapshot = ([p.detach().clone() for p in self.params], [g.clone() for g in _grads(self.params)])

    def measure(self) -> Tensor | None:
        if self.snapshot is None:
            return None
        d_theta = torch._foreach_sub([p.detach() for p in self.params], self.snapshot[0])
        d_grad = torch._foreach_sub(_grads(self.params), self.snapshot[1])
        self.snapshot = None
        dot = torch.stack([torch.vdot(a.reshape(-1), b.reshape(-1)) for a, b in zip(d_theta, d_grad)]).sum()
        return dot / torch.stack(torch._foreach_norm(d_theta)).square().sum()


class StepProbes:
    """The telemetry a step adds around its optimizer step. Before it, while the gradients are
    intact (ALTO and Lamb use their buffers as scratch): the curvature along the previous step
    and, for optimizers that report nothing themselves, the gradient norm. After it: the
    optimizer's own statistics, with the per-layer trust ratios on detail steps only; for the
    others, on detail steps, the update and parameter norms (from the curvature's snapshot)."""

    def __init__(self, optimizer, params: list[Tensor], enabled: bool):
        self.optimizer, self.params, self.enabled = optimizer, params, enabled
        self.collects = isinstance(optimizer, CollectsStats)
        if self.collects:
            optimizer.collect_stats = enabled
        self.curvature = CurvatureProbe(params)

    def before_step(self, detail: bool, last: bool) -> dict[str, Tensor]:
        values = {}
        if not self.enabled:
            return values
        bend = self.curvature.measure()
        if bend is not None:
            values["step_curvature"] = bend
        if not self.collects:
            values["grad_norm"] = _global_norm(_grads(self.params))
        if detail and not last:
            self.curvature.take()
        return values

    def after_step(self, detail: bool) -> dict[str, Tensor]:
        if not self.enabled:
            return {}
        if not self.collects:
            before = self.curvature.snapshot
            if not detail or before is None:
                return {}
            params = [p.detach() for p in self.params]
            return {"update_norm": _global_norm(torch._foreach_sub(params, before[0])),
                    "param_norm": _global_norm(params)}
        stats = dict(self.optimizer.stats)
        ratios = stats.pop("trust_ratios", None)
        if detail and ratios is not None:
            stats["trust_ratios"] = ratios
        return stats

    def layer_names(self) -> list[str]:
        """Names of the tensors a Lamb/ALTO trust ratio applies to, in the order the stats list them."""
        names = []
        for group in self.optimizer.param_groups:
            if "trust_ratio" in group and applies_trust_ratio(group["trust_ratio"], group.get("weight_decay", 0)):
                names += group.get("names", [f"param_{i}" for i in range(len(group["params"]))])
        return names
