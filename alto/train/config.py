"""The validated description of one training run.

Every field is checked in `RunConfig.__post_init__`; an invalid value raises ValueError naming the
field and what is allowed, so the CLI and the Launch page can show the message next to the input.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

from alto.command import check_command
from alto.data import dataset_names
from alto.models import model_names
from alto.optim import optimizer_names, validate
from alto.user_code import is_import_path

SCHEDULES = ("constant", "step", "multistep", "cosine")
LR_SCALINGS = ("none", "linear", "sqrt")
PRECISIONS = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def _fail(name: str, allowed: str, value: Any) -> None:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, f"an integer >= {minimum}" + (" or None" if allow_none else ""), value)


def _float(name: str, value: Any, lo: float, hi: float | None = None, *, lo_open: bool = False,
           allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
        _fail(name, f"a finite number {bound}" + (" or None" if allow_none else ""), value)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        _fail(name, f"one of {list(allowed)}", value)


@dataclass
class RunConfig:
    """One run: data, model, optimizer and its hyper-parameters, schedule, budget, device."""

    dataset: str = "digits"              # a registered name, text-file:PATH, or "package.module:factory"
    model: str = "mlp"                   # a registered name or "package.module:factory"
    optimizer: str = "alto"
    lr: float | None = None              # base LR before scaling; None = the optimizer's default
    hparams: dict = field(default_factory=dict)   # other overrides for alto.optim.build
    seed: int = 0
    batch_size: int | None = None        # effective batch per optimizer step; None = full batch
    accumulation: int = 1                # micro-batches per step (the optimizer sees their mean)
    epochs: float = 10.0
    max_steps: int | None = None         # caps the step budget implied by epochs
    lr_scaling: str = "none"             # none | linear | sqrt relative to base_batch
    base_batch: int = 256
    warmup_steps: int = 0
    schedule: str = "constant"           # constant | step (x0.1 each quarter) | multistep | cosine
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # fractions of the run (multistep)
    gamma: float = 0.1
    eval_every: int | None = None        # steps between evaluations; None = about 20 per run
    eval_batches: int = 8                # text: batches per evaluation
    precision: str = "fp32"              # bf16 = autocast on CUDA
    device: str = "auto"
    val_fraction: float = 0.1
    data_limit: int | None = None        # cap on training samples (quick demos, tests)
    download: bool = False
    block_size: int = 128                # text models: context length
    model_kwargs: dict = field(default_factory=dict)
    checkpoint_every: int | None = None  # steps; None = no checkpoints
    save_final: bool = True              # keep the final weights (flatness analysis needs them)
    telemetry: bool = True
    threads: int | None = None           # torch CPU threads for this run; None = leave as is
    nproc_per_node: int = 1              # > 1: torchrun data-parallel processes on each node
    nnodes: int = 1                      # > 1: multi-node; the others join at rdzv_endpoint
    rdzv_endpoint: str | None = None     # HOST:PORT of the rendezvous (multi-node only)
    command: list | None = None          # the user's own program instead of the lab's loop (alto.command)
    workdir: str | None = None           # the folder `command` runs in: the preset file's own
    workload: str | None = None          # what verdicts call the job; default "dataset (model)"

    def __post_init__(self) -> None:
        if not is_import_path(self.dataset):
            _choice("dataset", self.dataset if not str(self.dataset).startswith("text-file:") else "text-file",
                    [*dataset_names(), "text-file", "package.module:factory"])
        if not is_import_path(self.model):
            _choice("model", self.model, [*model_names(), "package.module:factory"])
        _choice("optimizer", self.optimizer, optimizer_names())
        _float("lr", self.lr, 0.0, lo_open=True, allow_none=True)
        if not isinstance(self.hparams, dict):
            _fail("hparams", "a dict of optimizer hyper-parameters", self.hparams)
        if "lr" in self.hparams:
            raise ValueError("hparams must not contain 'lr'; set the lr field instead")
        _int("seed", self.seed, 0)
        _int("batch_size", self.batch_size, 1, allow_none=True)
        _int("accumulation", self.accumulation, 1)
        if self.batch_size is not None and self.batch_size % self.accumulation:
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by accumulation "
                             f"({self.accumulation}): each micro-batch has batch_size/accumulation samples")
        _float("epochs", self.epochs, 0.0, lo_open=True)
        _int("max_steps", self.max_steps, 1, allow_none=True)
        _choice("lr_scaling", self.lr_scaling, LR_SCALINGS)
        _int("base_batch", self.base_batch, 1)
        _int("warmup_steps", self.warmup_steps, 0)
        _choice("schedule", self.schedule, SCHEDULES)
        if (not isinstance(self.milestones, (list, tuple))
                or not all(isinstance(m, (int, float)) and 0 < m < 1 for m in self.milestones)
                or list(self.milestones) != sorted(self.milestones)):
            _fail("milestones", "an increasing list of fractions of the run in (0, 1)", self.milestones)
        self.milestones = list(self.milestones)
        _float("gamma", self.gamma, 0.0, 1.0, lo_open=True)
        _int("eval_every", self.eval_every, 1, allow_none=True)
        _int("eval_batches", self.eval_batches, 1)
        _choice("precision", self.precision, PRECISIONS)
        if not (self.device in DEVICES or (isinstance(self.device, str) and self.device.startswith("cuda:")
                                           and self.device[5:].isdigit())):
            _fail("device", "auto, cpu, cuda or cuda:N", self.device)
        _float("val_fraction", self.val_fraction, 0.0, 0.5)
        if self.val_fraction >= 0.5:
            _fail("val_fraction", "a fraction in [0, 0.5)", self.val_fraction)
        _int("data_limit", self.data_limit, 1, allow_none=True)
        _int("block_size", self.block_size, 2)
        _int("checkpoint_every", self.checkpoint_every, 1, allow_none=True)
        _int("threads", self.threads, 1, allow_none=True)
        _int("nproc_per_node", self.nproc_per_node, 1)
        _int("nnodes", self.nnodes, 1)
        if self.nnodes > 1 and not (isinstance(self.rdzv_endpoint, str)
                                    and re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", self.rdzv_endpoint)):
            _fail("rdzv_endpoint", "HOST:PORT when nnodes > 1", self.rdzv_endpoint)
        world = self.nproc_per_node * self.nnodes
        if self.batch_size is not None and self.batch_size % (world * self.accumulation):
            raise ValueError(f"batch_size ({self.batch_size}) must be divisible by nproc_per_node x nnodes x "
                             f"accumulation ({world * self.accumulation}): every rank takes an equal share")
        for name in ("download", "telemetry", "save_final"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, "true or false", getattr(self, name))
        if not isinstance(self.model_kwargs, dict):
            _fail("model_kwargs", "a dict", self.model_kwargs)
        if self.command is not None:
            self.command = check_command(self.command)
            if world > 1:
                raise ValueError("nproc_per_node and nnodes must be 1 with a command: it starts its own processes")
        for name in ("workdir", "workload"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and value.strip()):
                _fail(name, "a non-empty string or None", value)
        # the optimizer's own checks (unknown keys, betas, the alpha bound) with this batch size
        self.optimizer_hparams()

    def optimizer_hparams(self) -> dict:
        """Full hyper-parameters the optimizer will use (paper defaults for this batch + overrides)."""
        overrides = dict(self.hparams)
        if self.lr is not None:
            overrides["lr"] = self.lr
        try:
            hp = validate(self.optimizer, self.batch_size, **overrides)
        except ValueError as err:
            raise ValueError(f"hparams: {err}") from None
        return hp

    @property
    def base_lr(self) -> float:
        return self.optimizer_hparams()["lr"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown run setting {unknown[0]!r}; known: {sorted(known)}")
        return cls(**data)
