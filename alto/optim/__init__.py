"""Optimizers: ALTO, the E adaptor, Lamb and LION (SGD/Adam/AdamW come from torch.optim)."""
from .adaptor import E
from .groups import param_groups
from .lamb_family import ALTO, Lamb
from .lion import Lion
from .registry import (LARGE_BATCH, OPTIMIZERS, adaptor_defaults, build, held_defaults, optimizer_names, resolve,
                       validate)

__all__ = ["ALTO", "E", "LARGE_BATCH", "Lamb", "Lion", "OPTIMIZERS", "adaptor_defaults", "build",
           "held_defaults", "optimizer_names", "param_groups", "resolve", "validate"]
