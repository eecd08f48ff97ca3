"""Your own training loop, recorded into the store: `alto.track`.

    import alto
    with alto.track("my-finetune", optimizer="alto", seed=0, lr=1e-3) as run:
        run.watch(optimizer)                          # the optimizer's telemetry
        for step, batch in enumerate(loader):
            ...
            run.log({"train/loss": loss}, step=step)  # device tensors stay on the device
            if step % 200 == 0:
                with run.paused():                    # evaluation is not training time
                    run.log({"val/acc": evaluate()}, step=step)

A tracked run follows the rules of the lab's own runs (README, "Honesty rules"): the same store,
statuses and telemetry keys, and the same clock. Inside the `with` block everything is training
time except paused() sections and the lab's own work (flushes, telemetry probes), so build the
model and data before it. The time of step k is the training time from the first log of step
k - 1 to the first log of step k. Logged tensors are detached and kept on their device; a flush
(every FLUSH_EVERY_S, at a new step) copies them out in one transfer per device, the only moment
the host waits for the device.

Endings: the block ends -> finished; an exception -> failed with its message (re-raised);
Ctrl-C -> cancelled; a killed process -> crashed (the supervisor's pid and heartbeat rules); a
non-finite train/loss found by a flush -> log() raises Diverged, and the block ends the run as
diverged and swallows it. Runs of one name form one experiment. When the lab launched this
process for a preset's command (ALTO_RUN_ID and ALTO_DB set), track() records into that run.
Under torchrun only rank 0 records; on the other ranks the run's calls do nothing.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from alto.paths import default_db
from alto.store import Store

from .run import error_text
from .telemetry import LoopClock, StepProbes, Telemetry, detail_every

TRACK_PRESET = "alto.track"   # the preset name of experiments made here, and the tag of their runs
PAUSES = ("eval", "checkpoint", "log")  # what a pause is timed as: time/<what>_ms, params <what>_s
HEARTBEAT_EVERY_S = 10.0      # a loop that logs rarely still shows it is alive (the optimizer hook beats)
_OPTIMIZER_NAME = re.compile(r"[A-Za-z0-9_.+\-]{1,64}")


class Diverged(Exception):
    """A flush found a non-finite train/loss: the run is diverged. Raised by Run.log so that the
    loop stops; the `with alto.track(...)` block swallows it."""


def track(name: str, *, optimizer: str, seed: int, lr: float, config: dict | None = None,
          targets: dict | None = None, total_steps: int | None = None, batch_size: int | None = None,
          db: str | Path | None = None) -> Run:
    """A run to record a training loop into, as a context manager (see the module docstring).

    name: the experiment (runs of one name are compared together); optimizer: its name in the
    comparison ("alto", "lamb", "adamw", or your own); seed, lr: what this run uses; config: your
    settings, shown with the run (JSON values; "workload" names the job in verdicts, default name);
    targets: {"metric": "val/acc", "mode": "max", "thresholds": [...]}, set when the experiment is
    made; total_steps: the planned steps (progress, the verdict's budget); batch_size: samples per
    step (the samples axis); db: the database (default ALTO_DB, else runs/alto.db). Bad arguments
    raise ValueError naming the argument.
    """
    return Run(name, optimizer=optimizer, seed=seed, lr=lr, config=config, targets=targets,
               total_steps=total_steps, batch_size=batch_size, db=db)


def _positive_int(name: str, value, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_targets(targets) -> dict:
    if targets is None:
        return {}
    if not isinstance(targets, Mapping) or not set(targets) <= {"metric", "mode", "thresholds"}:
        raise ValueError(f"targets must be a dict with metric, mode and thresholds, got {targets!r}")
    if not isinstance(targets.get("metric"), str) or targets.get("mode", "max") not in ("max", "min"):
        raise ValueError(f"targets needs a metric name and a mode of 'max' or 'min', got {dict(targets)!r}")
    thresholds = targets.get("thresholds", [])
    if not isinstance(thresholds, (list, tuple)) or not all(
            isinstance(t, numbers.Real) and not isinstance(t, bool) and math.isfinite(t) for t in thresholds):
        raise ValueError(f"targets: thresholds must be a list of finite numbers, got {thresholds!r}")
    return {"metric": targets["metric"], "mode": targets.get("mode", "max"), "thresholds": [float(t) for t in thresholds]}


def _database(db: str | Path | None) -> tuple[str, int | None]:
    """(database path, the run to record into when the lab launched this process, else None)."""
    launched = os.environ.get("ALTO_RUN_ID")
    if not launched:
        return str(db) if db is not None else default_db(), None
    lab_db = os.environ.get("ALTO_DB")
    if not lab_db or not launched.isdigit():
        raise ValueError(f"ALTO_RUN_ID={launched!r} needs a run id and ALTO_DB the lab's database "
                         "(both are set when the lab starts a preset's command)")
    if db is not None and Path(db).resolve() != Path(lab_db).resolve():
        raise ValueError(f"db: the lab launched this process for run {launched} of {lab_db}; leave db unset")
    return lab_db, int(launched)


def _hparams(optimizer: torch.optim.Optimizer) -> dict:
    """The first parameter group's settings that can be stored as JSON."""
    plain = (bool, int, float, str, type(None))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in optimizer.param_groups[0].items()
            if k not in ("params", "names") and (isinstance(v, plain) or
                                                 (isinstance(v, tuple) and all(isinstance(x, plain) for x in v)))}


def unwrap(optimizer) -> torch.optim.Optimizer:
    """The optimizer inside framework wrappers that keep it as `.optimizer` (accelerate's
    AcceleratedOptimizer, ...): the one whose step runs the update and fills the statistics."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


class Run:
    """One tracked run; made by `track`, recording between __enter__ and __exit__."""

    def __init__(self, name: str, *, optimizer: str, seed: int, lr: float, config: dict | None,
                 targets: dict | None, total_steps: int | None, batch_size: int | None, db: str | Path | None):
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError(f"name must be a non-empty string of at most 200 characters, got {name!r}")
        if not isinstance(optimizer, str) or not _OPTIMIZER_NAME.fullmatch(optimizer):
            raise ValueError(f"optimizer must be a name such as 'alto', 'lamb' or 'adamw' (letters, digits, "
                             f"_ . + -), got {optimizer!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        config = {} if config is None else config
        try:
            if not isinstance(config, Mapping) or not all(isinstance(k, str) for k in config):
                raise TypeError
            json.dumps(dict(config))
        except (TypeError, ValueError):
            raise ValueError(f"config must be a dict of JSON values (numbers, strings, lists, dicts), "
                             f"got {config!r}") from None
        self.name, self.optimizer, self.seed, self.lr = name.strip(), optimizer, int(seed), float(lr)
        self.config, self.targets = dict(config), _check_targets(targets)
        self.total_steps = _positive_int("total_steps", total_steps)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.db, self._launched = _database(db)
        self.id: int | None = None
        self.experiment_id: int | None = None
        self._open = False

    def __repr__(self) -> str:
        return f"<alto.track run {self.id} {self.optimizer} lr={self.lr:g} seed={self.seed} of {self.name!r}>"

    # -- start and end ---------------------------------------------------------------------

    def __enter__(self) -> Run:
        if self._open or self.id is not None:
            raise RuntimeError("a tracked run records once: call alto.track(...) again for another run")
        self._paused = None
        rank = os.environ.get("RANK", "0")
        self._other_rank = rank.isdigit() and int(rank) > 0
        if self._other_rank:  # under torchrun rank 0 records; the others' calls do nothing
            self._open = True
            return self
        self.store = Store(self.db)
        self.id = self._attach() if self._launched is not None else self._create()
        self.store.update_run(self.id, pgid=os.getpgid(0))
        self.writer = self.store.writer(self.id)
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        self.clock = LoopClock(cuda=cuda)
        position = (lambda step: {"samples": (step + 1) * self.batch_size}) if self.batch_size else (lambda step: {})
        self.telemetry = Telemetry(self.writer, self.clock, position=position, last_step=-1)
        self._step: int | None = None             # the step logged last
        self._divergence: str | None = None
        self._probes: StepProbes | None = None
        self._hooks: list = []
        self._optimizer_values: dict[str, Tensor] = {}  # from the latest optimizer step, for the next step logged
        self._optimizer_lr: dict[str, float] = {}
        self._optimizer_steps = 0
        self._detail_every = detail_every(self.total_steps)
        self._detail = False
        self._last_beat = time.monotonic()
        self._t0 = time.monotonic()
        self._open = True
        self.clock.switch(LoopClock.TRAIN)
        return self

    def _create(self) -> int:
        """A new run in the experiment of this name (made on first use)."""
        self.experiment_id = self.store.experiment_named(
            self.name, preset=TRACK_PRESET, config={"source": TRACK_PRESET, "targets": self.targets})
        if self.targets:
            own = self.store.get_experiment(self.experiment_id)["config"].get("targets") or {}
            if own != self.targets:
                raise ValueError(f"targets: experiment {self.name!r} already has targets {own or 'none'}; "
                                 "they are set by its first run")
        run_id = self.store.add_run(
            self.experiment_id, name=f"{self.optimizer} lr={self.lr:.3g} seed={self.seed}", optimizer=self.optimizer,
            seed=self.seed, lr=self.lr, config={"workload": self.name, **self.config}, total_steps=self.total_steps,
            tags=[TRACK_PRESET])
        self.store.claim_run(run_id, pid=os.getpid())
        return run_id

    def _attach(self) -> int:
        """The queued run the lab launched this process for, checked against this call's arguments."""
        run_id = self._launched
        try:
            run = self.store.get_run(run_id)
        except KeyError:
            raise ValueError(f"ALTO_RUN_ID={run_id}: no such run in {self.store.path}") from None
        if run["status"] not in ("queued", "running", "stalled"):
            raise ValueError(f"ALTO_RUN_ID={run_id}: the run has already ended ({run['status']}); "
                             "a launched command records one run")
        for arg, mine, queued in (("optimizer", self.optimizer, run["optimizer"]), ("seed", self.seed, run["seed"])):
            if mine != queued:
                raise ValueError(f"{arg}: the lab launched this process for run {run_id} with {arg} {queued!r}, "
                                 f"not {mine!r}")
        if not math.isclose(self.lr, run["lr"], rel_tol=1e-9):
            raise ValueError(f"lr: the lab launched this process for run {run_id} with lr {run['lr']!r}, not {self.lr!r}")
        self.experiment_id = run["experiment_id"]
        if run["status"] == "queued":
            self.store.claim_run(run_id, pid=os.getpid())
        # This process is the run's now: its pid, and a start no earlier than the process's own
        # (the supervisor's liveness check; `alto run` claimed the run before starting it).
        if not self.store.update_run_if(run_id, ("running", "stalled"), status="running", pid=os.getpid(),
                                        started_at=time.time(), error=None,
                                        **({"total_steps": self.total_steps} if self.total_steps else {})):
            raise ValueError(f"ALTO_RUN_ID={run_id}: the run ended meanwhile "
                             f"({self.store.get_run(run_id)['status']}); a launched command records one run")
        if self.config:
            self.store.set_params(run_id, {"config": self.config})
        return run_id

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self._open:
            return False
        self._open = False
        if self._other_rank:
            return False
        for hook in self._hooks:
            hook.remove()
        if self._probes is not None and self._probes.collects:  # the optimizer outlives the run
            self._probes.optimizer.collect_stats = self._collected
        if self._paused is not None:
            self.resume()
        try:
            if self._divergence is None:
                self._flush()  # also after an error: the steps before it are the interesting ones
        except Diverged:
            pass
        finally:
            self.writer.close()
        wall_s = time.monotonic() - self._t0
        status, error = self._ending(exc)
        steps = 0 if self._step is None else self._step + 1
        self.store.set_params(self.id, {"steps_run": steps, "train_s": round(self.telemetry.train_s, 6),
                                        "wall_s": round(wall_s, 3),
                                        **{k: round(v, 4) for k, v in self.telemetry.apart_s.items()}})
        self.store.update_run_if(self.id, ("running", "stalled"), status=status, finished_at=time.time(),
                                 last_step=self._step, error=error)
        return isinstance(exc, Diverged)

    def _ending(self, exc: BaseException | None) -> tuple[str, str | None]:
        if self._divergence is not None:
            return "diverged", self._divergence
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            return "finished", None
        if isinstance(exc, KeyboardInterrupt):
            return "cancelled", "stopped on request (KeyboardInterrupt)"
        return "failed", error_text(exc)

    # -- what a loop calls -------------------------------------------------------------------

    def _recording(self) -> bool:
        """Whether calls record: not on the other ranks of a torchrun job."""
        if not self._open:
            raise RuntimeError("the run is not recording: use it inside `with alto.track(...) as run:`")
        return not self._other_rank

    def watch(self, optimizer: torch.optim.Optimizer) -> None:
        """Record the optimizer's telemetry at every step (through step hooks): ALTO, Lamb, LION and
        E report their own (‖a‖, cos(g_t, g_t-1), trust ratios, ...); any other torch optimizer gets
        the gradient norm, and the update and parameter norms on detail steps. A framework's wrapper
        (accelerate's AcceleratedOptimizer) is looked through."""
        if not self._recording():
            return
        inner = unwrap(optimizer)
        if not isinstance(inner, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if self._probes is not None:
            if self._probes.optimizer is inner:
                return
            raise ValueError("optimizer: this run already watches another optimizer")
        params = [p for group in inner.param_groups for p in group["params"] if p.requires_grad]
        if not params:
            raise ValueError("optimizer has no parameters that require gradients")
        self._collected = getattr(inner, "collect_stats", False)
        self._probes = StepProbes(inner, params, enabled=True)  # turns ALTO's, Lamb's statistics on
        self.telemetry.layer_names = self._probes.layer_names()
        self._hooks = [inner.register_step_pre_hook(self._before_step),
                       inner.register_step_post_hook(self._after_step)]
        self.store.update_run(self.id, device=str(params[0].device))
        self.store.set_params(self.id, {"hparams": _hparams(inner), "optimizer_class": type(inner).__name__,
                                        "n_params": sum(p.numel() for p in params)})

    def log(self, values: Mapping[str, float | Tensor], step: int | None = None) -> None:
        """Record `values` (numbers or one-element tensors) at `step` (default: the step after the
        last one). Tensors are detached and stay on their device until a flush; steps never go back.
        Raises Diverged once a flush has found a non-finite train/loss."""
        if not self._recording():
            return
        if self._divergence is not None:
            raise Diverged(self._divergence)
        if step is None:
            step = 0 if self._step is None else self._step + 1
        if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        step = int(step)
        if self._step is not None and step < self._step:
            raise ValueError(f"step must not go back: {step} after {self._step}")
        device_values, host_values = _split(values)
        if step != self._step:
            self._start_step(step)
        self.telemetry.add(step, device_values, host_values)

    def pause(self, what: str = "eval") -> None:
        """Stop the training clock (waiting for the device first, so that queued training work is
        billed to training) until resume(); the time in between is `what`: eval, checkpoint or log."""
        if not self._recording():
            return
        if what not in PAUSES:
            raise ValueError(f"what must be one of {', '.join(PAUSES)}, got {what!r}")
        if self._paused is not None:
            raise RuntimeError("the run is paused already")
        self.clock.switch(LoopClock.OFF)
        if self.clock.cuda:
            torch.cuda.synchronize()
        self._paused = (what, time.perf_counter())

    def resume(self) -> None:
        """Restart the training clock after pause() (nothing to do when it runs)."""
        if self._paused is None:
            return
        what, t0 = self._paused
        if self.clock.cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        self._paused = None
        self.telemetry.apart_s[f"{what}_s"] += seconds
        extra = self.telemetry.host_extra  # logged with the next step, as the engine does
        extra[f"time/{what}_ms"] = extra.get(f"time/{what}_ms", 0.0) + seconds * 1e3
        self.clock.switch(LoopClock.TRAIN)

    @property
    def is_paused(self) -> bool:
        return self._open and self._paused is not None

    @contextmanager
    def paused(self, what: str = "eval") -> Iterator[None]:
        """`with run.paused():` evaluation, checkpoints: not training time (see pause)."""
        self.pause(what)
        try:
            yield
        finally:
            self.resume()

    # -- the machinery -----------------------------------------------------------------------

    def _start_step(self, step: int) -> None:
        """Close the previous step's lap of the clock and open `step`'s entry, with what the
        optimizer reported; flush first when due (the only host-device sync)."""
        if self.telemetry.due():
            self._flush()
        self.clock.lap()
        self.telemetry.add(step, self._optimizer_values, self._optimizer_lr)
        self._optimizer_values, self._optimizer_lr = {}, {}
        self._step = step

    def _flush(self) -> None:
        state = self.clock.state
        self.clock.switch(LoopClock.OFF)
        try:
            finite = self.telemetry.flush()
        finally:
            self.clock.switch(state)
        self._last_beat = time.monotonic()
        if not finite:
            self._divergence = f"non-finite training loss by step {self._step}"
            raise Diverged(self._divergence)

    def _before_step(self, optimizer, args, kwargs) -> None:
        self._resume_state = self.clock.state
        self.clock.switch(LoopClock.PROBE)
        self._detail = self._optimizer_steps % self._detail_every == 0
        self._optimizer_values = self._probes.before_step(self._detail, last=False)
        self.clock.switch(LoopClock.OPTIM)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.clock.switch(LoopClock.PROBE)
        self._optimizer_values.update(self._probes.after_step(self._detail))
        lr = optimizer.param_groups[0]["lr"]
        if isinstance(lr, Tensor):  # a capturable optimizer's: stays on the device too
            self._optimizer_values["lr"] = lr.detach().reshape(()).clone()
        else:
            self._optimizer_lr = {"lr": float(lr)}
        self._optimizer_steps += 1
        if time.monotonic() - self._last_beat >= HEARTBEAT_EVERY_S:
            self.writer.heartbeat()
            self._last_beat = time.monotonic()
        self.clock.switch(self._resume_state)


def _split(values: Mapping[str, float | Tensor]) -> tuple[dict[str, Tensor], dict[str, float]]:
    """(device tensors, detached and copied; host numbers) of a log() call, checked."""
    if not isinstance(values, Mapping):
        raise ValueError(f"values must be a dict of metric name -> number or one-element tensor, "
                         f"got {type(values).__name__}")
    device, host = {}, {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"values: metric names must be non-empty strings, got {key!r}")
        if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
            device[key] = value.detach().reshape(()).clone()  # the caller may reuse its tensor
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            host[key] = float(value)
        else:
            shape = f" of shape {tuple(value.shape)}" if isinstance(value, Tensor) else ""
            raise ValueError(f"values[{key!r}] must be a number or a one-element tensor, "
                             f"got {type(value).__name__}{shape}")
    return device, host
