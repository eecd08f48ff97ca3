"""Training engine: validated run configs, LR schedules, the loop, checkpoints, run execution."""
from .config import RunConfig
from .loop import RunResult, evaluate, resolve_device, train
from .schedule import lr_at, scaled_lr

__all__ = ["RunConfig", "RunResult", "evaluate", "lr_at", "resolve_device", "scaled_lr", "train"]
