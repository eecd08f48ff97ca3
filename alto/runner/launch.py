"""Helpers behind the Launch and Live pages: form values into validated runs, what a comparison
will cost (runs, steps, a duration from the runs this database has seen), progress/ETA."""
from __future__ import annotations

import json
import math
import re
import statistics
import time
from dataclasses import dataclass

from alto.data import train_size
from alto.store import Store
from alto.train.config import RunConfig
from alto.train.presets import Preset, expand, parse_preset
from alto.user_code import is_import_path


def parse_lr_list(text: str, optimizer: str) -> list[float]:
    """'0.01, 0.03' -> [0.01, 0.03]; empty -> []. Bad entries -> ValueError naming the grid."""
    values = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"lr_grid for {optimizer}: {item!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"lr_grid for {optimizer}: learning rates must be finite and > 0, got {item}")
        values.append(value)
    return values


def _no_code(settings: dict) -> None:
    """Settings typed in the browser never name code to run: imports and commands come only from
    preset files (importing or starting them runs code)."""
    for field in ("command", "workdir"):
        if field in settings:
            raise ValueError(f"{field}: a command comes only from a preset file")
    for field in ("model", "dataset"):
        if is_import_path(settings.get(field)):
            raise ValueError(f"{field}: the Launch page takes registered names only; "
                             "your own factory belongs in a preset file")


def plan_runs(preset: Preset, *, optimizers: list[str], seeds: int, lr_grid: dict[str, list[float]],
              overrides: dict) -> list[RunConfig]:
    """Every run of the comparison, validated (ValueError names the offending field)."""
    if not optimizers:
        raise ValueError("optimizers: pick at least one optimizer")
    _no_code(overrides)
    return expand(preset, optimizers=optimizers, seeds=seeds,
                  lr_grid={k: v for k, v in lr_grid.items() if v and k in optimizers}, overrides=overrides)


def custom_preset(run: dict, optimizer_settings: dict[str, dict], *, title: str = "Custom comparison") -> Preset:
    """The comparison built on the Launch page, from registered names only."""
    _no_code(run)
    return parse_preset({"name": "custom", "title": title, "source": "ours", "description": "built on the Launch page",
                         "optimizers": list(optimizer_settings) or ["alto"], "run": run,
                         "optimizer": {k: v for k, v in optimizer_settings.items() if v}})


def field_for_error(message: str, fields: list[str]) -> str | None:
    """The form field an error message is about: the longest field name that the message names."""
    for name in sorted(fields, key=len, reverse=True):
        if re.search(rf"(^|[^\w]){re.escape(name)}([^\w]|$)", message):
            return name
    return None


def tuning_warning(configs: list[RunConfig]) -> str | None:
    """Why the comparison's LR grids are unfair, before it is queued (None when every optimizer
    tries as many LRs): the one with more trials is flattered (README, "Honesty rules")."""
    tried: dict[str, set] = {}
    for c in configs:
        tried.setdefault(c.optimizer, set()).add(c.optimizer_hparams()["lr"])
    counts = {opt: len(lrs) for opt, lrs in tried.items()}
    if len(set(counts.values())) <= 1:
        return None
    return ("Unequal tuning budgets: " + ", ".join(f"{o} tries {n} LR{'s' * (n > 1)}" for o, n in sorted(counts.items()))
            + ". The optimizer with more trials is flattered; give each the same number of LRs.")


def estimate_steps(config: RunConfig) -> int | None:
    """Optimizer steps one run will take, when the dataset size is known (else None)."""
    n = train_size(config.dataset, config.val_fraction, config.data_limit)
    if n is None:
        return config.max_steps
    batch = planned_batch(config)
    steps = max(1, math.ceil(config.epochs * max(1, n // batch)))
    return min(steps, config.max_steps) if config.max_steps else steps


def planned_batch(config: RunConfig) -> int | None:
    """The batch a run will train at: the whole training set for full batch or a larger batch."""
    n = train_size(config.dataset, config.val_fraction, config.data_limit)
    if n is None:
        return config.batch_size
    return min(config.batch_size or n, n)


def _kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _workload_key(dataset: str, model: str, model_kwargs: dict | None, device: str) -> str:
    return json.dumps([dataset, model, model_kwargs or {}, _kind(device)], sort_keys=True)


def run_history(store: Store, limit: int = 500) -> list[dict]:
    """The newest `limit` finished runs as the duration estimate needs them: what trained, where,
    at which batch, seconds per training step and seconds outside the steps (setup, evaluation)."""
    runs = store.list_runs(status="finished")[-limit:]
    out = []
    for run in runs:
        p = store.get_params(int(run["id"]))
        steps, train_s, wall_s = p.get("steps_run"), p.get("train_s"), p.get("wall_s")
        if not steps or train_s is None or wall_s is None or not p.get("batch_size"):
            continue
        c = run["config"]
        out.append({"key": _workload_key(c.get("dataset"), c.get("model"), c.get("model_kwargs"),
                                         run.get("device") or p.get("device") or "cpu"),
                    "batch": int(p["batch_size"]), "step_s": train_s / steps, "other_s": max(0.0, wall_s - train_s)})
    return out


@dataclass(frozen=True)
class DurationEstimate:
    seconds: float | None     # the runs one after the other; None: no run had a basis
    estimated: int            # runs the estimate covers
    runs: int
    basis: str                # what it rests on, in words


def estimate_duration(configs: list[RunConfig], history: list[dict], *, auto_device: str = "cpu") -> DurationEstimate:
    """How long the runs take one after the other, from finished runs of the same data, model and
    kind of device (`run_history`): per run, the seconds outside training plus its steps times the
    seconds per step at the nearest batch size measured, scaled up in proportion when the batch
    is larger (a rough bound: fixed per-step costs do not grow). `auto_device` is what "auto"
    resolves to here."""
    total, covered, scaled = 0.0, 0, 0
    by_key: dict[str, list[dict]] = {}
    for h in history:
        by_key.setdefault(h["key"], []).append(h)
    for config in configs:
        device = auto_device if config.device == "auto" else config.device
        seen = by_key.get(_workload_key(config.dataset, config.model, config.model_kwargs, device))
        steps, batch = estimate_steps(config), planned_batch(config)
        if not seen or not steps or not batch:
            continue
        nearest = min({h["batch"] for h in seen}, key=lambda b: (abs(math.log(batch / b)), -b))
        at = [h for h in seen if h["batch"] == nearest]
        step_s = statistics.median(h["step_s"] for h in at) * max(1.0, batch / nearest)
        scaled += nearest != batch
        total += statistics.median(h["other_s"] for h in at) + steps * step_s
        covered += 1
    if not covered:
        return DurationEstimate(None, 0, len(configs), "no finished run of this data and model on this kind of "
                                                         "device in this database yet: the first runs will tell")
    basis = f"from {len(history)} finished runs in this database"
    if scaled:
        basis += f"; {scaled} run{'s' * (scaled > 1)} at a batch size not measured yet, scaled from the nearest"
    if covered < len(configs):
        basis += f"; {len(configs) - covered} of {len(configs)} runs have nothing like them yet and are not counted"
    return DurationEstimate(total, covered, len(configs), basis)


def plan_summary(configs: list[RunConfig], sweep: dict) -> str:
    """"3 optimizers × 3 LRs × 5 batch_size values × 2 seeds": what multiplies into the run count."""
    def count(values) -> int:
        return len(set(values))
    optimizers = count(c.optimizer for c in configs)
    lrs = sorted({count(c.lr for c in configs if c.optimizer == o) for o in {c.optimizer for c in configs}})
    seeds = count(c.seed for c in configs)
    parts = [f"{optimizers} optimizer{'s' * (optimizers > 1)}"]
    if len(lrs) > 1:
        parts.append(f"{lrs[0]}–{lrs[-1]} LRs each")
    elif lrs[0] > 1:
        parts.append(f"{lrs[0]} LRs")
    parts += [f"{len(v)} {k} values" for k, v in sorted(sweep.items())]
    parts.append(f"{seeds} seed{'s' * (seeds > 1)}")
    return " × ".join(parts)


def progress(run: dict, now: float | None = None) -> dict:
    """Fraction done, steps, and an ETA from the run's own pace (seconds per step so far)."""
    now = time.time() if now is None else now
    total = run.get("total_steps")
    done = (run.get("last_step") + 1) if run.get("last_step") is not None else 0
    fraction = min(1.0, done / total) if total else 0.0
    eta = None
    started = run.get("started_at")
    if started and total and 0 < done < total:
        eta = (now - started) / done * (total - done)
    return {"done": done, "total": total, "fraction": fraction, "eta_s": eta}
