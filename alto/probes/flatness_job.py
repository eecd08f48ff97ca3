"""The flatness job: sharpness of every finished run of an experiment, stored as one artifact.

`queue_flatness_job` adds a `jobs` row; the supervisor starts
`python -m alto.probes.flatness_job JOB_ID --db PATH` for it (its own session, a log file), and
`execute_job` records the outcome: `finished` with a "flatness" artifact, `failed` with the error,
or `cancelled` on SIGTERM.

What is measured, per run with final weights (`final.pt`), on ONE fixed batch of the training
split (the same samples for every run; the model in eval mode, so BatchNorm uses its running
statistics):
* the loss on that batch;
* the top Hessian eigenvalue (power iteration on Hessian-vector products);
* the Hessian trace (Hutchinson, Rademacher vectors: mean and standard error);
* a 1-D loss profile along a filter-normalised random direction drawn from the SAME seed for
  every run (Li et al. 2018), so the curves are comparable across runs of one architecture;
and, per seed that has both optimizers of the chosen pair, each at the learning rate Compare
chooses (the best seed-mean final value of the validation metric), the loss along the straight
line between their final weights (t = 0: the first optimizer's run, t = 1: the second's).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alto.analysis.verdicts import chosen_lrs
from alto.data import ImageData, load_dataset, text_batch
from alto.models import build_model
from alto.paths import checkpoint_dir, default_db
from alto.probes.flatness import hessian_trace, interpolate, profile_1d, random_directions, top_hessian_eigenvalue
from alto.stats.aggregate import mean_std
from alto.store import Store
from alto.train.checkpoint import load_weights
from alto.train.config import RunConfig
from alto.train.device import resolve_device
from alto.train.loop import SPLIT_SEED
from alto.train.memory import keep_freed_memory

KIND = "flatness"
DEFAULTS = {"pair": ["alto", "lamb"], "batch_size": 512, "iters": 20, "trace_samples": 30,
            "profile_points": 21, "profile_radius": 1.0, "interp_points": 21, "seed": 0}
BATCH_SEED = 1234  # which training samples make up the fixed batch


class JobCancelled(Exception):
    """SIGTERM arrived (the supervisor's cancel)."""


def flatness_settings(payload: dict | None = None) -> dict:
    """DEFAULTS overridden by `payload`, validated (ValueError naming the field)."""
    settings = {**DEFAULTS, **(payload or {})}
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown flatness setting(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    pair = settings["pair"]
    if (not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(p, str) for p in pair)
            or pair[0] == pair[1]):
        raise ValueError(f"pair must be two different optimizer names, got {pair!r}")
    settings["pair"] = list(pair)
    limits = {"batch_size": (1, 65536), "iters": (1, 1000), "trace_samples": (2, 1000),
              "profile_points": (3, 401), "interp_points": (2, 401), "seed": (0, 2**31 - 1)}
    for name, (lo, hi) in limits.items():
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    radius = settings["profile_radius"]
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not (0 < radius < math.inf):
        raise ValueError(f"profile_radius must be a finite number > 0, got {radius!r}")
    return settings


def queue_flatness_job(store: Store, experiment_id: int, **payload) -> int:
    """Validate the settings and queue a flatness job for the experiment; returns the job id."""
    store.get_experiment(experiment_id)  # KeyError if missing
    return store.add_job(KIND, experiment_id=experiment_id, payload=flatness_settings(payload))


# --------------------------------------------------------------------------- the fixed batch

@dataclass
class Probe:
    """A model builder and a deterministic loss on a fixed batch, for one data/model setting."""

    build: Callable[[], nn.Module]
    loss: Callable[[nn.Module], Tensor]
    samples: int


def _data_key(config: RunConfig) -> tuple:
    return (config.dataset, config.val_fraction, config.data_limit, config.model,
            repr(sorted(config.model_kwargs.items())), config.block_size)


def make_probe(config: RunConfig, batch_size: int, device: torch.device) -> Probe:
    """The fixed batch for a run config: `batch_size` training samples (at most the split) chosen
    by a fixed seed from the same train/val partition the runs trained on."""
    data = load_dataset(config.dataset, download=False, val_fraction=config.val_fraction,
                        seed=SPLIT_SEED, limit=config.data_limit)
    if isinstance(data, ImageData):
        n = min(batch_size, len(data.y_train))
        idx = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(BATCH_SEED))[:n]
        x, y = data.normalize(data.x_train[idx]).to(device), data.y_train[idx].to(device)

        def build() -> nn.Module:
            return build_model(config.model, input_shape=data.input_shape, num_classes=data.num_classes,
                               **config.model_kwargs).to(device)

        def loss(model: nn.Module) -> Tensor:
            return F.cross_entropy(model(x), y)
    else:
        n = batch_size
        x, y = text_batch(data.train, n, config.block_size, torch.Generator().manual_seed(BATCH_SEED))
        x, y = x.to(device), y.to(device)

        def build() -> nn.Module:
            return build_model(config.model, vocab_size=data.vocab_size, block_size=config.block_size,
                               **config.model_kwargs).to(device)

        def loss(model: nn.Module) -> Tensor:
            logits = model(x)
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    return Probe(build=build, loss=loss, samples=n)


# --------------------------------------------------------------------------- measuring

def measurable_runs(store: Store, experiment_id: int) -> list[dict]:
    """Finished runs of the experiment whose final weights exist, each with `weights` (a path)."""
    runs = []
    for run in store.list_runs(experiment_id=experiment_id, status="finished"):
        path = checkpoint_dir(store.path, run["id"]) / "final.pt"
        if path.exists():
            runs.append({**run, "weights": path})
    return runs


def _measure_run(model: nn.Module, probe: Probe, settings: dict) -> dict:
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    closure = lambda: probe.loss(model)  # noqa: E731
    with torch.no_grad():
        loss = float(probe.loss(model))
    eig, eig_iters = top_hessian_eigenvalue(closure, params, iters=settings["iters"], seed=settings["seed"])
    trace, trace_se = hessian_trace(closure, params, samples=settings["trace_samples"], seed=settings["seed"])
    (direction,) = random_directions(model, seed=settings["seed"])
    ts, losses = profile_1d(model, direction, probe.loss, radius=settings["profile_radius"],
                            points=settings["profile_points"])
    return {"loss": loss, "top_eigenvalue": eig, "eig_iters": eig_iters, "trace": trace, "trace_se": trace_se,
            "profile": {"t": ts, "loss": losses}}


def measure_flatness(store: Store, experiment_id: int, settings: dict | None = None,
                     *, log: Callable[[str], None] = print) -> dict:
    """Measure every finished run with final weights; returns the artifact payload."""
    settings = flatness_settings(settings)
    runs = measurable_runs(store, experiment_id)
    if not runs:
        raise ValueError(f"experiment {experiment_id} has no finished run with final weights (final.pt); "
                         "only runs trained with save_final = true that finished can be measured")
    device = resolve_device("auto")
    probes: dict[tuple, Probe] = {}
    keys: dict[int, tuple] = {}
    states: dict[int, dict] = {}
    per_run = []
    t0 = time.monotonic()
    for i, run in enumerate(runs, 1):
        config = RunConfig.from_dict(run["config"])
        key = keys[run["id"]] = _data_key(config)
        if key not in probes:
            probes[key] = make_probe(config, settings["batch_size"], device)
        probe = probes[key]
        model = probe.build()
        load_weights(run["weights"], model)
        numbers = _measure_run(model, probe, settings)
        states[run["id"]] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        per_run.append({"run_id": run["id"], "name": run["name"], "optimizer": run["optimizer"],
                        "seed": run["seed"], "lr": run["lr"], "samples": probe.samples,
                        "n_params": sum(p.numel() for p in model.parameters()), **numbers})
        log(f"[{i}/{len(runs)}] run {run['id']} {run['name']}: loss {numbers['loss']:.4g}, "
            f"top eigenvalue {numbers['top_eigenvalue']:.4g}, trace {numbers['trace']:.4g} "
            f"± {numbers['trace_se']:.2g}")

    a, b = settings["pair"]
    best = chosen_lrs(store, experiment_id)
    lrs = {name: best.get(name) for name in (a, b)}
    for name in (a, b):
        if lrs[name] is None and any(r["optimizer"] == name for r in per_run):
            log(f"{name}: no validation metric logged to choose its learning rate; no interpolation")
    by_arm = {(r["optimizer"], r["seed"]): r for r in per_run if r["lr"] == lrs.get(r["optimizer"])}
    interpolations = []
    for seed in sorted({r["seed"] for r in per_run}):
        ra, rb = by_arm.get((a, seed)), by_arm.get((b, seed))
        if ra is None or rb is None:
            continue
        if keys[ra["run_id"]] != keys[rb["run_id"]]:
            log(f"seed {seed}: {a} and {b} differ in data or model; no interpolation")
            continue
        probe = probes[keys[ra["run_id"]]]
        ts, losses = interpolate(states[ra["run_id"]], states[rb["run_id"]], probe.build, probe.loss,
                                 points=settings["interp_points"])
        interpolations.append({"seed": seed, "run_a": ra["run_id"], "run_b": rb["run_id"], "t": ts, "loss": losses})
    log(f"measured {len(per_run)} runs and {len(interpolations)} interpolations in {time.monotonic() - t0:.1f} s")
    return {"experiment_id": experiment_id, "settings": settings, "device": str(device),
            "mode": "eval", "runs": per_run, "pair": [a, b], "pair_lrs": [lrs[a], lrs[b]],
            "interpolations": interpolations}


def summarize(payload: dict) -> list[dict]:
    """One row per optimizer (per optimizer and LR when it has several): n, and mean and std over
    seeds of the top eigenvalue, the trace and the loss on the fixed batch."""
    groups: dict[str, list[dict]] = {}
    lrs: dict[str, set] = {}
    for r in payload["runs"]:
        lrs.setdefault(r["optimizer"], set()).add(r["lr"])
    for r in payload["runs"]:
        label = r["optimizer"] if len(lrs[r["optimizer"]]) == 1 else f"{r['optimizer']} lr={r['lr']:g}"
        groups.setdefault(label, []).append(r)
    rows = []
    for label, rs in sorted(groups.items()):
        row = {"optimizer": label, "n": len(rs)}
        for key in ("top_eigenvalue", "trace", "loss"):
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([float(r[key]) for r in rs])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the job process

def execute_job(store: Store, job_id: int, *, log: Callable[[str], None] = print) -> str:
    """Run flatness job `job_id` and record its outcome; returns the final status."""
    job = store.get_job(job_id)
    if job["kind"] != KIND:
        store.update_job(job_id, status="failed", finished_at=time.time(),
                         error=f"unknown job kind {job['kind']!r}; this process runs {KIND!r} jobs")
        return "failed"
    if job["status"] not in ("queued", "running"):  # cancelled (or done) before the process started
        return job["status"]
    store.update_job(job_id, status="running", started_at=job.get("started_at") or time.time(),
                     pid=os.getpid(), pgid=os.getpgid(0), error=None)
    try:
        payload = measure_flatness(store, job["experiment_id"], job["payload"], log=log)
        payload["job_id"] = job_id
        artifact_id = store.put_artifact(kind=KIND, name=f"flatness (job {job_id})", payload=payload,
                                         experiment_id=job["experiment_id"])
    except JobCancelled:
        store.update_job(job_id, status="cancelled", finished_at=time.time(), error="cancelled on request")
        return "cancelled"
    except BaseException as err:  # noqa: BLE001 - every failure is recorded, then re-raised if fatal
        tail = "".join(traceback.format_exception(type(err), err, err.__traceback__)[-4:])
        store.update_job(job_id, status="failed", finished_at=time.time(),
                         error=f"{type(err).__name__}: {err}\n\n{tail}"[-4000:])
        if isinstance(err, (KeyboardInterrupt, SystemExit)):
            raise
        return "failed"
    store.update_job(job_id, status="finished", finished_at=time.time())
    log(f"job {job_id}: finished (artifact {artifact_id})")
    return "finished"


def _on_sigterm(signum, frame) -> None:
    raise JobCancelled()


def main(argv: list[str] | None = None) -> int:
    """`python -m alto.probes.flatness_job JOB_ID [--db PATH]`: what the supervisor starts."""
    keep_freed_memory()
    parser = argparse.ArgumentParser(prog="python -m alto.probes.flatness_job")
    parser.add_argument("job_id", type=int)
    parser.add_argument("--db", default=default_db())
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    status = execute_job(Store(args.db), args.job_id, log=lambda line: print(line, flush=True))
    print(f"job {args.job_id}: {status}", flush=True)
    return 0 if status in ("finished", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
