"""Pure helpers behind the Launch and Live pages: form values into validated runs, progress/ETA."""
from __future__ import annotations

import math
import re
import time

from alto.train.config import RunConfig
from alto.train.presets import Preset, expand, parse_preset
from alto.user_code import is_import_path

# Approximate training-split sizes (after the 10% validation hold-out) for run-count estimates.
TRAIN_SIZES = {"digits": 1293, "mnist": 54000, "fashion-mnist": 54000, "cifar10": 45000, "cifar100": 45000}


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


def estimate_steps(config: RunConfig) -> int | None:
    """Optimizer steps one run will take, when the dataset size is known (else None)."""
    n = TRAIN_SIZES.get(config.dataset)
    if n is None:
        return config.max_steps
    if config.data_limit:
        n = min(n, config.data_limit)
    batch = min(config.batch_size or n, n)
    steps = max(1, math.ceil(config.epochs * max(1, n // batch)))
    return min(steps, config.max_steps) if config.max_steps else steps


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
