"""Training engine: validated run configs, LR schedules, the loop, checkpoints, run execution."""
from .config import RunConfig
from .device import resolve_device
from .loop import RunResult, evaluate, train
from .schedule import lr_at, scaled_lr

__all__ = ["RunConfig", "RunResult", "evaluate", "lr_at", "resolve_device", "scaled_lr", "train"]
