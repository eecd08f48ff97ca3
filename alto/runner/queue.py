"""Turn a comparison (preset + choices) into one experiment row and its queued run rows."""
from __future__ import annotations

from alto.store import Store
from alto.train.config import RunConfig
from alto.train.presets import Preset, run_name


def queue_experiment(store: Store, preset: Preset, configs: list[RunConfig], *, name: str | None = None,
                     notes: str = "") -> int:
    """Insert the experiment and one `queued` run per config; returns the experiment id."""
    if not configs:
        raise ValueError("configs must contain at least one run")
    sweep_keys = sorted(preset.sweep)
    experiment_id = store.create_experiment(
        name or preset.title, preset=preset.name, notes=notes,
        config={"preset": preset.name, "source": preset.source, "description": preset.description,
                "targets": preset.targets, "optimizers": sorted({c.optimizer for c in configs}),
                "seeds": sorted({c.seed for c in configs}), "sweep": preset.sweep})
    for config in configs:
        store.add_run(experiment_id, name=run_name(config, sweep_keys), optimizer=config.optimizer,
                      seed=config.seed, lr=config.optimizer_hparams()["lr"], config=config.to_dict(),
                      tags=[preset.name])
    return experiment_id
