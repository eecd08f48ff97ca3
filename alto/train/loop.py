"""The training loop: one run from a RunConfig, telemetry kept on the device, logged in batches.

Read `train` top to bottom: set up (device, data, model, optimizer), then the step loop. A step
is its batch, forward and backward over the micro-batches, and the optimizer step; the training
clock times exactly that (README, "Honesty rules"). Evaluation, flushes to the store,
checkpoints and the telemetry's own extra work happen between or beside those segments and are
timed apart, so how often a run evaluates or how much an optimizer logs never changes its time
to target. Host-device synchronisation happens only when a batch of telemetry is copied out.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alto.data import ImageData, TextData, batch_indices, load_dataset, text_batch
from alto.models import build_model, count_parameters
from alto.optim import build, resolve

from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .config import RunConfig
from .device import peak_memory_mb, resolve_device
from .distributed import Dist
from .schedule import lr_at, scaled_lr
from .telemetry import StepClock, StepProbes, Telemetry, detail_every, to_host

TEXT_BATCH_DEFAULT = 64  # sequences per step when a text run gives no batch size
SPLIT_SEED = 0           # every run of every seed sees the same train/val partition


@dataclass
class RunResult:
    status: str                       # finished | diverged | cancelled
    steps: int                        # optimizer steps run (a cancelled run counts those it ran)
    train_s: float                    # the training clock: batches, forward, backward, optimizer
    wall_s: float                     # elapsed from the first step to the end, everything included
    final: dict = field(default_factory=dict)
    message: str = ""
    setup_s: float = 0.0              # data loading and model building, before the first step
    apart_s: dict = field(default_factory=dict)  # eval, log, checkpoint, telemetry: outside train_s


class Plan:
    """Sizes derived from the config and the data: batch, steps, LR, eval schedule."""

    def __init__(self, config: RunConfig, data: ImageData | TextData, world: int = 1):
        self.text = isinstance(data, TextData)
        if self.text:
            self.n_train = data.train.numel()
            self.batch = config.batch_size or TEXT_BATCH_DEFAULT
            samples_per_epoch = max(1, self.n_train // config.block_size)  # non-overlapping windows
        else:
            self.n_train = len(data.y_train)
            self.batch = min(config.batch_size or self.n_train, self.n_train)
            if config.batch_size is None:  # full batch: the largest size every rank can share equally
                self.batch -= self.batch % (config.accumulation * world)
            samples_per_epoch = self.n_train
        if self.batch % (config.accumulation * world):
            raise ValueError(f"batch_size ({self.batch}) must be divisible by accumulation x ranks "
                             f"({config.accumulation} x {world})")
        self.world = world
        self.micro = self.batch // (config.accumulation * world)  # per rank, per micro-batch
        self.steps_per_epoch = max(1, samples_per_epoch // self.batch)
        self.total_steps = max(1, math.ceil(config.epochs * self.steps_per_epoch))
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.samples_per_epoch = samples_per_epoch
        self.peak_lr = scaled_lr(config.base_lr, self.batch, config.base_batch, config.lr_scaling)
        self.eval_every = config.eval_every or max(1, self.total_steps // 20)
        self.detail_every = detail_every(self.total_steps)

    def position(self, step: int) -> dict[str, float]:
        """The x axes of the step that has just run (PROTOCOL: after step k, k + 1 steps)."""
        samples = (step + 1) * self.batch
        return {"samples": samples, "epoch": samples / self.samples_per_epoch}


# ----------------------------------------------------------------------------------- data, loss

class BatchOrder:
    """Each epoch's shuffled batches, moved to the device once per epoch without a host sync."""

    def __init__(self, plan: Plan, seed: int, device: torch.device):
        self.plan, self.seed, self.device = plan, seed, device
        self.epoch, self.batches = -1, None

    def indices(self, step: int) -> Tensor:
        epoch = step // self.plan.steps_per_epoch
        if epoch != self.epoch:
            order = torch.stack(batch_indices(self.plan.n_train, self.plan.batch, epoch, self.seed))
            if self.device.type == "cuda":  # pinned + non-blocking: the copy is queued, not waited for
                order = order.pin_memory()
            self.batches = order.to(self.device, non_blocking=True)
            self.epoch = epoch
        return self.batches[step % self.plan.steps_per_epoch]


def micro_batches(plan: Plan, data: ImageData | TextData, config: RunConfig, step: int, order: BatchOrder,
                  text_gen: torch.Generator, dist_ctx: Dist | None) -> list[tuple[Tensor, Tensor]]:
    """This rank's micro-batches of step `step` (the optimizer sees their mean gradient)."""
    if plan.text:
        return [text_batch(data.train, plan.micro, config.block_size, text_gen) for _ in range(config.accumulation)]
    idx = order.indices(step)
    if dist_ctx is not None:  # this rank's contiguous share of the global batch
        idx = idx.chunk(dist_ctx.world)[dist_ctx.rank]
    return [(data.x_train[i], data.y_train[i]) for i in idx.split(plan.micro)]


def _image_loss(model: nn.Module, data: ImageData, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(data.normalize(x))
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()


def _text_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    return loss, (logits.argmax(-1) == y).float().mean()


def forward_backward(net: nn.Module, data: ImageData | TextData, batches: list[tuple[Tensor, Tensor]],
                     autocast: Callable, ddp: bool) -> tuple[Tensor, Tensor]:
    """Backward over every micro-batch (gradients accumulate); returns the mean loss and accuracy
    as device tensors. Under DDP the gradients are all-reduced once, on the last micro-batch."""
    loss_sum = acc_sum = None
    for i, (x, y) in enumerate(batches):
        last = i + 1 == len(batches)
        with (net.no_sync() if ddp and not last else contextlib.nullcontext()):
            with autocast():
                loss, acc = (_text_loss(net, x, y) if isinstance(data, TextData)
                             else _image_loss(net, data, x, y))
            (loss / len(batches)).backward()
        loss, acc = loss.detach().float(), acc.detach()
        loss_sum = loss if loss_sum is None else loss_sum + loss
        acc_sum = acc if acc_sum is None else acc_sum + acc
    return loss_sum / len(batches), acc_sum / len(batches)


@torch.no_grad()
def evaluate_on_device(model: nn.Module, data: ImageData | TextData, config: RunConfig,
                       autocast) -> dict[str, Tensor]:
    """Loss and accuracy (text: loss) on the validation and test splits, as device tensors."""
    model.eval()
    out = {}
    try:
        if isinstance(data, TextData):
            for split, ids in (("val", data.val), ("test", data.test)):
                gen = torch.Generator(device=ids.device).manual_seed(1234)  # same windows every eval
                losses = []
                for _ in range(config.eval_batches):
                    x, y = text_batch(ids, TEXT_BATCH_DEFAULT, config.block_size, gen)
                    with autocast():
                        losses.append(_text_loss(model, x, y)[0].float())
                out[f"{split}/loss"] = torch.stack(losses).mean()
        else:
            for split, x_all, y_all in (("val", data.x_val, data.y_val), ("test", data.x_test, data.y_test)):
                if len(y_all) == 0:
                    continue
                total_loss, correct = torch.zeros((), device=y_all.device), torch.zeros((), device=y_all.device)
                for x, y in zip(x_all.split(4096), y_all.split(4096)):
                    with autocast():
                        logits = model(data.normalize(x))
                    total_loss += F.cross_entropy(logits.float(), y, reduction="sum")
                    correct += (logits.argmax(1) == y).sum()
                out[f"{split}/loss"] = total_loss / len(y_all)
                out[f"{split}/acc"] = correct / len(y_all)
    finally:
        model.train()
    return out


def evaluate(model: nn.Module, data: ImageData | TextData, config: RunConfig, autocast) -> dict[str, float]:
    """Loss and accuracy (or perplexity) on the validation and test splits, read in one copy."""
    scores = evaluate_on_device(model, data, config, autocast)
    out = {key: got[0] for key, got in zip(scores, to_host(list(scores.values())))}
    if isinstance(data, TextData):
        out.update({key.replace("/loss", "/ppl"): math.exp(min(out[key], 50.0)) for key in list(out)})
    return out


# ------------------------------------------------------------------------------------ the run

@dataclass
class Setup:
    """Everything a run builds before its first step."""

    device: torch.device
    bf16: bool
    data: ImageData | TextData
    plan: Plan
    model: nn.Module
    net: nn.Module                    # the model, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    hparams: dict                     # what the optimizer was built with
    text_gen: torch.Generator

    def autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.bf16)


def set_up(config: RunConfig, dist_ctx: Dist | None = None) -> Setup:
    """Device, data (moved there once), plan, model, optimizer for `config`."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if dist_ctx is not None and device.type == "cuda":
        device = torch.device("cuda", dist_ctx.local_rank)
    data = load_dataset(config.dataset, download=config.download, val_fraction=config.val_fraction,
                        seed=SPLIT_SEED, limit=config.data_limit).to(device)
    plan = Plan(config, data, world=dist_ctx.world if dist_ctx else 1)
    torch.manual_seed(config.seed)
    if plan.text:
        model = build_model(config.model, vocab_size=data.vocab_size, block_size=config.block_size,
                            **config.model_kwargs)
    else:
        model = build_model(config.model, input_shape=data.input_shape, num_classes=data.num_classes,
                            **config.model_kwargs)
    model.to(device).train()
    net = model if dist_ctx is None else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    overrides = {**config.hparams, "lr": plan.peak_lr}
    optimizer = build(config.optimizer, model, batch_size=plan.batch, **overrides)
    if callable(prepare := getattr(optimizer, "prepare", None)):  # one-time choices: setup, not the clock
        prepare()
    text_gen = torch.Generator(device=device).manual_seed(config.seed + 1000 * (dist_ctx.rank if dist_ctx else 0))
    return Setup(device=device, bf16=config.precision == "bf16" and device.type == "cuda", data=data, plan=plan,
                 model=model, net=net, optimizer=optimizer, hparams=resolve(config.optimizer, plan.batch, **overrides),
                 text_gen=text_gen)


def train(config: RunConfig, *, writer=None, checkpoint_dir: str | Path | None = None,
          progress: Callable[[int, int, dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_start: Callable[[dict], None] | None = None, dist_ctx: Dist | None = None) -> RunResult:
    """Train one run. `writer` is a store MetricWriter (or None); `on_start(info)` receives what
    the run resolved (hyper-parameters used, batch, steps, device) before the first step;
    `progress(steps_done, total, latest)` is called after every flush; `should_stop()` is polled
    every step (cancellation). Under torchrun pass `dist_ctx`: only rank 0 should get a writer."""
    t_setup = time.monotonic()
    run = set_up(config, dist_ctx)
    plan, model, optimizer, device = run.plan, run.model, run.optimizer, run.device
    main = dist_ctx is None or dist_ctx.is_main

    start_step, train_s0 = 0, 0.0
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if ckpt_path is not None and ckpt_path.exists():
        last_step, train_s0 = load_checkpoint(ckpt_path, model, optimizer, run.text_gen)
        start_step = last_step + 1
    if on_start is not None:
        on_start({"hparams": run.hparams, "peak_lr": plan.peak_lr, "batch_size": plan.batch,
                  "micro_batch": plan.micro, "total_steps": plan.total_steps,
                  "steps_per_epoch": plan.steps_per_epoch, "n_params": count_parameters(model),
                  "n_train": plan.n_train, "device": str(device), "precision": "bf16" if run.bf16 else "fp32",
                  "start_step": start_step, "torch": torch.__version__, "world_size": plan.world,
                  "per_rank_batch": plan.micro * config.accumulation, "detail_every": plan.detail_every,
                  "process_group": dist_ctx is not None})
    probes = StepProbes(optimizer, [p for p in model.parameters() if p.requires_grad], enabled=config.telemetry)
    clock = StepClock(device)
    telemetry = Telemetry(writer, clock, layer_names=probes.layer_names(), position=plan.position,
                          count_steps=plan.world > 1, train_s=train_s0)
    if writer is not None and start_step == 0:
        writer.log(0, {"params/count": count_parameters(model)}, wall_time=0.0, samples=0, epoch=0.0)
    order = BatchOrder(plan, config.seed, device)
    status, message = "finished", ""
    steps_run = start_step
    t_start = time.monotonic()

    for step in range(start_step, plan.total_steps):
        if dist_ctx is None and should_stop is not None and should_stop():
            status, message = "cancelled", "stopped on request"
            break
        lr = lr_at(step, plan.total_steps, plan.peak_lr, schedule=config.schedule,
                   warmup_steps=config.warmup_steps, milestones=config.milestones, gamma=config.gamma)
        for group in optimizer.param_groups:
            group["lr"] = lr
        detail = config.telemetry and step % plan.detail_every == 0

        clock.begin()
        batches = micro_batches(plan, run.data, config, step, order, run.text_gen, dist_ctx)
        loss, acc = forward_backward(run.net, run.data, batches, run.autocast, ddp=dist_ctx is not None)
        clock.pause()
        values = {"train/loss": loss, "train/acc": acc,
                  **probes.before_step(detail, last=step + 1 == plan.total_steps)}
        clock.resume()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.end()
        steps_run = step + 1
        values.update(probes.after_step(detail))
        if dist_ctx is not None:  # global loss and accuracy for the record (an async all-reduce)
            shared = torch.stack([values["train/loss"], values["train/acc"]])
            torch.distributed.all_reduce(shared)
            values["train/loss"], values["train/acc"] = shared[0] / plan.world, shared[1] / plan.world
        telemetry.add(step, values, {"lr": lr})

        last = steps_run == plan.total_steps
        evaluate_now = steps_run % plan.eval_every == 0 or last
        checkpoint_now = bool(config.checkpoint_every) and steps_run % config.checkpoint_every == 0
        if telemetry.due() or evaluate_now or checkpoint_now:  # the same steps on every rank
            if not telemetry.flush():
                status, message = "diverged", f"non-finite training loss by step {step}"
                break
            if progress is not None:
                progress(steps_run, plan.total_steps, telemetry.latest)
            if dist_ctx is not None and _any_rank_stops(should_stop, device):
                status, message = "cancelled", "stopped on request"
                break
        if evaluate_now and main:
            t_eval = time.perf_counter()
            scores = evaluate(model, run.data, config, run.autocast)
            eval_s = time.perf_counter() - t_eval
            telemetry.apart_s["eval_s"] += eval_s
            telemetry.log_now(step, {**scores, "mem_mb": peak_memory_mb(device), "time/eval_ms": eval_s * 1e3})
        if checkpoint_now and main and ckpt_path is not None:
            t_ckpt = time.perf_counter()
            save_checkpoint(ckpt_path, model, optimizer, run.text_gen, step, telemetry.train_s, config)
            ckpt_s = time.perf_counter() - t_ckpt
            telemetry.apart_s["checkpoint_s"] += ckpt_s
            telemetry.host_extra["time/checkpoint_ms"] = ckpt_s * 1e3

    telemetry.flush()
    if main and checkpoint_dir is not None and config.save_final and status == "finished":
        save_weights(Path(checkpoint_dir) / "final.pt", model, config)  # for flatness analysis
    return RunResult(status=status, steps=steps_run, train_s=telemetry.train_s, wall_s=time.monotonic() - t_start,
                     final=dict(telemetry.latest), message=message, setup_s=t_start - t_setup,
                     apart_s=dict(telemetry.apart_s))


def _any_rank_stops(should_stop: Callable[[], bool] | None, device: torch.device) -> bool:
    """Whether any rank was asked to stop: one all-reduce and one host read, at flush steps only."""
    flag = torch.tensor([float(should_stop is not None and should_stop())], device=device)
    torch.distributed.all_reduce(flag)
    return flag.item() > 0
