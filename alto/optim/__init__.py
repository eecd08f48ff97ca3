"""Optimizers: ALTO, the E adaptor, Lamb and LION (SGD/Adam/AdamW come from torch.optim)."""
from .adaptor import E
from .groups import param_groups
from .lamb_family import ALTO, Lamb
from .lion import Lion
from .registry import OPTIMIZERS, adaptor_defaults, build, optimizer_names, resolve, validate

__all__ = ["ALTO", "E", "Lamb", "Lion", "OPTIMIZERS", "adaptor_defaults", "build",
           "optimizer_names", "param_groups", "resolve", "validate"]
