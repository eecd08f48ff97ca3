"""Presets: TOML files describing a comparison (shared run settings, optimizers, seeds, LR grids).

    name, title, source ("ours" or the paper table it reproduces), description
    optimizers = [...]; seeds = N
    [run]               RunConfig fields shared by every run
    [optimizer.NAME]    per-optimizer settings: lr and any hyper-parameter override
    [lr_grid]           NAME = [lr, ...]: one run per LR (and seed)
    [sweep]             one RunConfig field = [values]: one run per value (e.g. batch_size)
    [targets]           metric = "val/acc", mode = "max", thresholds = [...]
    command = [...]     your own training program instead of the lab's loop, once per run: an argv
                        list with {optimizer}, {lr}, {seed}, run in this file's folder (alto.command)

[run] may name your own code as well: model = "package.module:factory" and
dataset = "package.module:factory" (alto.user_code), imported when a run starts.
"""
from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parents[2] / "runs" / "presets"
TOP_KEYS = {"name", "title", "source", "description", "optimizers", "seeds", "run", "optimizer",
            "lr_grid", "sweep", "targets", "command"}


@dataclass
class Preset:
    name: str
    title: str
    source: str
    description: str
    optimizers: list[str]
    seeds: int
    run: dict
    optimizer: dict[str, dict] = field(default_factory=dict)
    lr_grid: dict[str, list[float]] = field(default_factory=dict)
    sweep: dict[str, list] = field(default_factory=dict)
    targets: dict = field(default_factory=dict)
    command: list[str] | None = None   # argv template, see alto.command
    folder: str | None = None          # the preset file's folder: where `command` runs


def preset_names(directory: Path = PRESET_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.toml"))


def load_preset(name_or_path: str | Path, directory: Path = PRESET_DIR) -> Preset:
    """Load and validate a preset by name (from runs/presets) or path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = directory / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(f"preset must be one of {preset_names(directory)} or a .toml path, got {name_or_path!r}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise ValueError(f"preset {path}: cannot read it as TOML: {err}") from None
    return parse_preset(data, default_name=path.stem, folder=str(path.resolve().parent))


def parse_preset(data: dict, default_name: str = "custom", folder: str | None = None) -> Preset:
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ValueError(f"preset: unknown key {unknown[0]!r}; allowed: {sorted(TOP_KEYS)}")
    for key, kind in (("run", dict), ("optimizer", dict), ("lr_grid", dict), ("sweep", dict), ("targets", dict),
                      ("optimizers", list)):
        if key in data and not isinstance(data[key], kind):
            raise ValueError(f"preset: {key} must be a {'table' if kind is dict else 'list'}")
    for key in ("name", "title", "source", "description"):
        if key in data and not isinstance(data[key], str):
            raise ValueError(f"preset: {key} must be a string")
    if not all(isinstance(name, str) for name in data.get("optimizers", [])):
        raise ValueError("preset: optimizers must be a list of optimizer names (strings)")
    for name, settings in data.get("optimizer", {}).items():
        if not isinstance(settings, dict):
            raise ValueError(f"preset: optimizer.{name} must be a table of settings")
    if not isinstance(data.get("run", {}).get("hparams", {}), dict):
        raise ValueError("preset: run.hparams must be a table of optimizer hyper-parameters")
    for key in ("command", "workdir"):
        if key in data.get("run", {}):
            raise ValueError(f"preset: run.{key}: give command at the top of the preset; it runs in the "
                             "preset file's folder")
    preset = Preset(
        name=data.get("name", default_name), title=data.get("title", data.get("name", default_name)),
        source=data.get("source", "ours"), description=" ".join(data.get("description", "").split()),
        optimizers=list(data.get("optimizers", ["alto", "lamb", "sgd", "lion"])),
        seeds=data.get("seeds", 1), run=dict(data.get("run", {})), optimizer=dict(data.get("optimizer", {})),
        lr_grid=dict(data.get("lr_grid", {})), sweep=dict(data.get("sweep", {})),
        targets=dict(data.get("targets", {})), command=data.get("command"), folder=folder)
    expand(preset)  # validates every run it describes
    return preset


def _check_seeds(seeds) -> int:
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 100:
        raise ValueError(f"seeds must be an integer from 1 to 100, got {seeds!r}")
    return seeds


def expand(preset: Preset, *, optimizers: list[str] | None = None, seeds: int | None = None,
           lr_grid: dict[str, list[float]] | None = None, overrides: dict | None = None) -> list[RunConfig]:
    """One RunConfig per (optimizer, LR, sweep value, seed), validated."""
    seeds = _check_seeds(preset.seeds if seeds is None else seeds)
    names = list(optimizers or preset.optimizers)
    if not names:
        raise ValueError("optimizers must name at least one optimizer")
    grid = {**preset.lr_grid, **(lr_grid or {})}
    for opt, lrs in grid.items():
        if opt not in names:
            raise ValueError(f"lr_grid names optimizer {opt!r}, which is not in this comparison {names}")
        if not isinstance(lrs, list) or not lrs:
            raise ValueError(f"lr_grid.{opt} must be a non-empty list of learning rates")
    sweep_keys = sorted(preset.sweep)
    for key in sweep_keys:
        if not isinstance(preset.sweep[key], list) or not preset.sweep[key]:
            raise ValueError(f"sweep.{key} must be a non-empty list")
    own = {}  # what a preset's own command adds to every run
    if preset.command is not None:
        own = {"command": preset.command, "workdir": preset.folder, "workload": preset.name}
    configs = []
    for opt in names:
        settings = dict(preset.optimizer.get(opt, {}))
        if not isinstance(settings, dict):
            raise ValueError(f"optimizer.{opt} must be a table of settings")
        base_lr = settings.pop("lr", None)
        for lr in grid.get(opt, [base_lr]):
            for values in itertools.product(*(preset.sweep[k] for k in sweep_keys)):
                for seed in range(seeds):
                    fields = {**own, **preset.run, **(overrides or {}), **dict(zip(sweep_keys, values))}
                    fields.update(optimizer=opt, lr=lr, seed=seed,
                                  hparams={**fields.get("hparams", {}), **settings})
                    try:
                        configs.append(RunConfig.from_dict(fields))
                    except ValueError as err:
                        raise ValueError(f"{opt}: {err}") from None
    return configs


def run_name(config: RunConfig, sweep_keys: list[str] = ()) -> str:
    lr = f"{config.optimizer_hparams()['lr']:.3g}"
    extra = "".join(f" {k}={getattr(config, k)}" for k in sweep_keys)
    return f"{config.optimizer} lr={lr}{extra} seed={config.seed}"
