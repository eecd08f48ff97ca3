"""Named optimizers with the paper's defaults, built with one shared parameter-grouping rule."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim import Optimizer

from .adaptor import E
from .groups import param_groups
from .lamb_family import ALTO, Lamb
from .lion import Lion

LARGE_BATCH = 1024  # the paper switches alpha and beta1 at this batch size


def adaptor_defaults(batch_size: int | None) -> tuple[float, float]:
    """(alpha, beta1) from the paper: batch < 1024 -> (0.5, 0.01); batch >= 1024 -> (-5, 0.99).

    Unknown batch size means the large-batch setting, ALTO's intended regime.
    """
    if batch_size is not None and batch_size < LARGE_BATCH:
        return 0.5, 0.01
    return -5.0, 0.99


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    label: str
    summary: str
    defaults: Callable[[int | None], dict]
    make: Callable[[list, dict], Optimizer]


def _alto_defaults(batch_size):
    alpha, beta1 = adaptor_defaults(batch_size)
    return dict(lr=1e-3, betas=(beta1, 0.9, 0.99), alpha=alpha, eps=1e-6, weight_decay=1e-4,
                grad_clip=1.0, bias_correction=True, trust_ratio="reference", allow_unstable=False, fused=None)


def _lamb_defaults(bias_correction):
    return lambda batch_size: dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-6, weight_decay=1e-4,
                                   grad_clip=1.0, bias_correction=bias_correction,
                                   trust_ratio="reference", fused=None)


def _sgd_defaults(batch_size):
    return dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=5e-4)


def _adam_defaults(batch_size):
    return dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)


def _adamw_defaults(batch_size):
    return dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)


def _with_adaptor(base_defaults):
    def defaults(batch_size):
        alpha, beta = adaptor_defaults(batch_size)
        return {**base_defaults(batch_size), "alpha": alpha, "beta": beta, "init": "zeros",
                "allow_unstable": False}
    return defaults


_E_KEYS = ("alpha", "beta", "init", "allow_unstable")


def _wrapped(base_cls):
    def make(groups, hp):
        base = base_cls(groups, **{k: v for k, v in hp.items() if k not in _E_KEYS})
        return E(base, **{k: hp[k] for k in _E_KEYS})
    return make


OPTIMIZERS: dict[str, OptimizerSpec] = {spec.name: spec for spec in [
    OptimizerSpec("alto", "ALTO", "E fused into Lamb (the paper's optimizer)", _alto_defaults,
                  lambda g, hp: ALTO(g, **hp)),
    OptimizerSpec("lamb", "Lamb", "large-batch Lamb, no bias correction (the paper's baseline)",
                  _lamb_defaults(False), lambda g, hp: Lamb(g, **hp)),
    OptimizerSpec("lamb_bc", "Lamb+BC", "Lamb with bias correction (= ALTO with alpha = 0)",
                  _lamb_defaults(True), lambda g, hp: Lamb(g, **hp)),
    OptimizerSpec("lion", "LION", "sign of interpolated momentum (Chen et al. 2023)",
                  lambda b: dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0),
                  lambda g, hp: Lion(g, **hp)),
    OptimizerSpec("sgd", "SGD", "torch.optim.SGD with momentum", _sgd_defaults,
                  lambda g, hp: torch.optim.SGD(g, **hp)),
    OptimizerSpec("adamw", "AdamW", "torch.optim.AdamW", _adamw_defaults,
                  lambda g, hp: torch.optim.AdamW(g, **hp)),
    OptimizerSpec("e_sgd", "E-SGD", "E adaptor on SGD with momentum", _with_adaptor(_sgd_defaults),
                  _wrapped(torch.optim.SGD)),
    OptimizerSpec("e_adam", "E-Adam", "E adaptor on Adam", _with_adaptor(_adam_defaults),
                  _wrapped(torch.optim.Adam)),
    OptimizerSpec("e_adamw", "E-AdamW", "E adaptor on AdamW", _with_adaptor(_adamw_defaults),
                  _wrapped(torch.optim.AdamW)),
]}


def optimizer_names() -> list[str]:
    return list(OPTIMIZERS)


def resolve(name: str, batch_size: int | None = None, **overrides) -> dict:
    """The full hyper-parameter set `build` would use: defaults for the batch size + overrides."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {optimizer_names()}, got {name!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    hp = OPTIMIZERS[name].defaults(batch_size)
    unknown = sorted(set(overrides) - set(hp))
    if unknown:
        raise ValueError(f"{name}: unknown hyper-parameter {unknown[0]!r}; allowed: {sorted(hp)}")
    hp.update(overrides)
    if "betas" in hp:
        hp["betas"] = tuple(hp["betas"])
    return hp


def held_defaults(name: str, batch_sizes: Iterable[int]) -> dict:
    """The defaults of `name` that change across `batch_sizes` (ALTO's and E's alpha and beta1
    switch at LARGE_BATCH), at the largest of them: given as overrides to every run of a batch
    sweep, they hold those settings fixed, so the sweep measures the batch size alone. {} when
    no default changes."""
    sizes = sorted(set(batch_sizes))
    if not sizes:
        raise ValueError("batch_sizes must name at least one batch size")
    largest = resolve(name, sizes[-1])
    changing = {k for b in sizes[:-1] for k, v in resolve(name, b).items() if v != largest[k]}
    return {k: largest[k] for k in sorted(changing)}


def validate(name: str, batch_size: int | None = None, **overrides) -> dict:
    """Resolve and run the optimizer's own checks (on a throw-away parameter); returns the
    hyper-parameters. Any problem is a ValueError naming the hyper-parameter."""
    hp = resolve(name, batch_size, **overrides)
    if hp.get("fused") not in (None, True, False):
        raise ValueError(f"{name}: fused must be None (automatic), true or false, got {hp['fused']!r}")
    try:  # the kernels' device is the run's, not this throw-away parameter's: check the rest here
        OPTIMIZERS[name].make([torch.zeros(1, requires_grad=True)], {**hp, **({"fused": False} if "fused" in hp else {})})
    except TypeError as err:  # e.g. a string where a number belongs
        raise ValueError(f"{name}: invalid hyper-parameter value: {err}") from None
    return hp


def build(name: str, model_or_params: nn.Module | Iterable, batch_size: int | None = None,
          **overrides) -> Optimizer:
    """Build optimizer `name` with the paper's small/large-batch defaults and `overrides`.

    A model is split by `param_groups` (norm layers and biases without weight decay), the same
    rule for every optimizer; an iterable of parameters or groups is used as given.
    """
    hp = resolve(name, batch_size, **overrides)
    if isinstance(model_or_params, nn.Module):
        groups = param_groups(model_or_params, hp.get("weight_decay", 0.0))
    else:
        groups = list(model_or_params)
    return OPTIMIZERS[name].make(groups, hp)
