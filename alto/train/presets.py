"""Presets: TOML files describing a comparison (shared run settings, optimizers, seeds, LR grids).

    name, title, source ("ours" or the paper table it reproduces), description
    optimizers = [...]; seeds = N
    [run]               RunConfig fields shared by every run
    [optimizer.NAME]    per-optimizer settings: lr and any hyper-parameter override
    [lr_grid]           NAME = [lr, ...]: one run per LR (and seed)
    [sweep]             one RunConfig field = [values]: one run per value (e.g. batch_size)
    batch_defaults      in a batch sweep, the optimizer defaults that depend on the batch (ALTO's
                        alpha and beta1 switch at 1024): "fixed" (default) holds them at their
                        value for the sweep's largest batch; "paper" lets them switch per batch
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

from alto.data import train_size
from alto.optim import held_defaults

from .config import RunConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).resolve().parents[2] / "runs" / "presets"
TOP_KEYS = {"name", "title", "source", "description", "optimizers", "seeds", "run", "optimizer",
            "lr_grid", "sweep", "batch_defaults", "targets", "command"}
BATCH_DEFAULTS = ("fixed", "paper")


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
    batch_defaults: str = "fixed"


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
    for key in ("name", "title", "source", "description", "batch_defaults"):
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
        targets=dict(data.get("targets", {})), command=data.get("command"), folder=folder,
        batch_defaults=data.get("batch_defaults", "fixed"))
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
    # the preset's grids of optimizers left out of this comparison do not apply to it
    grid = {**{k: v for k, v in preset.lr_grid.items() if optimizers is None or k in names}, **(lr_grid or {})}
    for opt, lrs in grid.items():
        if opt not in names:
            raise ValueError(f"lr_grid names optimizer {opt!r}, which is not in this comparison {names}")
        if not isinstance(lrs, list) or not lrs:
            raise ValueError(f"lr_grid.{opt} must be a non-empty list of learning rates")
    sweep_keys = _check_sweep(preset, overrides or {})
    own = {}  # what a preset's own command adds to every run
    if preset.command is not None:
        own = {"command": preset.command, "workdir": preset.folder, "workload": preset.name}
    configs = []
    for opt in names:
        settings = dict(preset.optimizer.get(opt, {}))
        if not isinstance(settings, dict):
            raise ValueError(f"optimizer.{opt} must be a table of settings")
        base_lr = settings.pop("lr", None)
        held = _held(preset, opt)
        for lr in grid.get(opt, [base_lr]):
            for values in itertools.product(*(preset.sweep[k] for k in sweep_keys)):
                for seed in range(seeds):
                    fields = {**own, **preset.run, **(overrides or {}), **dict(zip(sweep_keys, values))}
                    fields.update(optimizer=opt, lr=lr, seed=seed,
                                  hparams={**held, **fields.get("hparams", {}), **settings})
                    try:
                        configs.append(RunConfig.from_dict(fields))
                    except ValueError as err:
                        raise ValueError(f"{opt}: {err}") from None
    if "batch_size" in preset.sweep:
        _refuse_clamped(configs)
    return configs


def _check_sweep(preset: Preset, overrides: dict) -> list[str]:
    """The swept settings, sorted; ValueError for an empty or repeated list, a setting that an
    override would silently replace, or an unknown batch_defaults."""
    keys = sorted(preset.sweep)
    for key in keys:
        values = preset.sweep[key]
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep.{key} must be a non-empty list")
        repeated = sorted({repr(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"sweep.{key} lists {', '.join(repeated)} more than once")
        if key in overrides:
            raise ValueError(f"{key}: this comparison sweeps {key} over {values}; leave {key} unset "
                             "(a single value would replace the sweep)")
    if preset.batch_defaults not in BATCH_DEFAULTS:
        raise ValueError(f"batch_defaults must be one of {list(BATCH_DEFAULTS)}, got {preset.batch_defaults!r}")
    return keys


def _held(preset: Preset, optimizer: str) -> dict:
    """The batch-dependent defaults a batch sweep holds fixed for `optimizer` (see the module
    docstring); {} when the batch is not swept or they may switch."""
    sizes = [b for b in preset.sweep.get("batch_size", []) if isinstance(b, int) and not isinstance(b, bool)]
    if not sizes or preset.batch_defaults != "fixed":
        return {}
    try:
        return held_defaults(optimizer, sizes)
    except ValueError:  # an unknown optimizer or a bad batch size: RunConfig names it
        return {}


def _refuse_clamped(configs: list[RunConfig]) -> None:
    """A batch larger than the training set trains on the whole set: two such sweep values would
    be one run under two labels. ValueError naming them."""
    too_big: dict[tuple[str, int], set[int]] = {}
    for c in configs:
        n = train_size(c.dataset, c.val_fraction, c.data_limit)
        if n is not None and c.batch_size is not None and c.batch_size > n:
            too_big.setdefault((c.dataset, n), set()).add(c.batch_size)
    for (dataset, n), sizes in sorted(too_big.items()):
        listed = " and ".join(f"{b:,}" for b in sorted(sizes))
        raise ValueError(f"sweep.batch_size: {listed} {'is' if len(sizes) == 1 else 'are'} larger than the "
                         f"{n:,} training samples of {dataset} (after the validation hold-out), so "
                         f"{'it' if len(sizes) == 1 else 'each'} would train at batch {n:,} under another "
                         f"label. Use batch sizes up to {n:,} ({n:,} = full batch).")


def held_note(preset: Preset, optimizers: list[str] | None = None) -> str | None:
    """What a batch sweep does with the defaults that depend on the batch, in a sentence;
    None when the batch is not swept or no default of these optimizers depends on it."""
    sizes = preset.sweep.get("batch_size")
    if not sizes:
        return None
    parts = []
    for opt in optimizers or preset.optimizers:
        try:
            changing = held_defaults(opt, sizes)
        except ValueError:
            continue
        given = {**preset.run.get("hparams", {}), **preset.optimizer.get(opt, {})}
        free = {k: v for k, v in changing.items() if k not in given}
        if changing and not free:
            parts.append(f"{opt}: {', '.join(sorted(changing))} set by the preset, the same at every batch size")
        elif free and preset.batch_defaults == "fixed":
            held = ", ".join(f"{k} = {_plain(v)}" for k, v in free.items())
            parts.append(f"{opt}: {held} at every batch size (held fixed: the paper's default at the "
                         f"sweep's largest batch, {max(sizes):,})")
        elif free:
            parts.append(f"{opt}: {' and '.join(free)} follow the paper's batch rule and switch within the "
                         "sweep, so the batch's effect and the switch's are mixed")
    return "; ".join(parts) or None


def _plain(value) -> str:
    return ", ".join(f"{v:g}" for v in value).join("()") if isinstance(value, (list, tuple)) else f"{value:g}"


def run_name(config: RunConfig, sweep_keys: list[str] = ()) -> str:
    lr = f"{config.optimizer_hparams()['lr']:.3g}"
    extra = "".join(f" {k}={getattr(config, k)}" for k in sweep_keys)
    return f"{config.optimizer} lr={lr}{extra} seed={config.seed}"
