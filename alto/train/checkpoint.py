"""Checkpoints: model + optimizer + RNG state, written atomically, loaded without pickled code."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def save_checkpoint(path: Path, model: nn.Module, optimizer, text_gen: torch.Generator, step: int,
                    wall_s: float, config) -> None:
    """Write to a temporary file, then rename: a crash mid-write leaves the previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "wall_s": wall_s, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "cpu_rng": torch.get_rng_state(),
                "text_rng": text_gen.get_state().cpu(), "config": config.to_dict()}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: nn.Module, optimizer, text_gen: torch.Generator) -> tuple[int, float]:
    """Restore in place; returns (last completed step, wall seconds spent so far)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["cpu_rng"])
    text_gen.set_state(state["text_rng"].to(text_gen.device) if text_gen.device.type != "cpu"
                       else state["text_rng"])
    return int(state["step"]), float(state["wall_s"])


def save_weights(path: Path, model: nn.Module, config) -> None:
    """The trained model alone (what flatness analysis loads), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, tmp)
    os.replace(tmp, path)


def load_weights(path: Path, model: nn.Module) -> dict:
    """Load final weights into `model`; returns the run config saved with them."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    return state["config"]
