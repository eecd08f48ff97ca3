"""The training loop: one run from a RunConfig, telemetry kept on the device, logged in batches.

Read it top to bottom: set up (device, data, model, optimizer), then the step loop (micro-batches,
optimizer step, telemetry), with evaluation, logging, checkpoints and divergence checks on a
schedule. Host-device synchronisation happens only when a batch of telemetry is copied out.
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
from alto.optim import build

from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .config import RunConfig
from .device import peak_memory_mb, resolve_device
from .distributed import Dist
from .schedule import lr_at, scaled_lr

FLUSH_EVERY_S = 0.5      # copy telemetry to the host and the store this often...
FLUSH_EVERY_STEPS = 200  # ...or after this many steps, whichever comes first
TEXT_BATCH_DEFAULT = 64  # sequences per step when a text run gives no batch size
SPLIT_SEED = 0           # every run of every seed sees the same train/val partition
DIST_FLUSH_EVERY_STEPS = 20


@dataclass
class RunResult:
    status: str                       # finished | diverged | cancelled
    steps: int
    wall_s: float
    final: dict = field(default_factory=dict)
    message: str = ""
    setup_s: float = 0.0              # data loading and model building, not in wall_s


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
        # per-layer ratios, the curvature along a step (two parameter copies) and synchronised
        # optimizer timing: about 200 times a run, and never more often than every 10th step
        self.detail_every = max(10, self.total_steps // 200)


def _image_loss(model: nn.Module, data: ImageData, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(data.normalize(x))
    return F.cross_entropy(logits, y), (logits.argmax(1) == y).float().mean()


def _text_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
    return loss, (logits.argmax(-1) == y).float().mean()


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData | TextData, config: RunConfig, autocast) -> dict[str, float]:
    """Loss and accuracy (or perplexity) on the validation and test splits."""
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
                loss = torch.stack(losses).mean().item()
                out[f"{split}/loss"], out[f"{split}/ppl"] = loss, math.exp(min(loss, 50.0))
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
                out[f"{split}/loss"] = (total_loss / len(y_all)).item()
                out[f"{split}/acc"] = (correct / len(y_all)).item()
    finally:
        model.train()
    return out


class Telemetry:
    """Per-step device tensors, copied to the host and written in one batch per flush."""

    def __init__(self, writer, plan: Plan, layer_names: list[str]):
        self.writer, self.plan, self.layer_names = writer, plan, layer_names
        self.pending: list[tuple[int, float, dict[str, Tensor]]] = []
        self.last_flush = time.monotonic()
        self.latest: dict[str, float] = {}

    def add(self, step: int, wall: float, values: dict[str, Tensor]) -> None:
        self.pending.append((step, wall, values))

    def due(self) -> bool:
        if self.plan.world > 1:  # every rank must decide alike: count steps, not seconds
            return len(self.pending) >= DIST_FLUSH_EVERY_STEPS
        return (len(self.pending) >= FLUSH_EVERY_STEPS
                or time.monotonic() - self.last_flush >= FLUSH_EVERY_S)

    def flush(self) -> bool:
        """Write pending steps; returns False if a logged loss is not finite (divergence)."""
        finite = True
        if self.pending:
            keys = sorted({k for _, _, v in self.pending for k in v})
            # one device->host copy for the whole batch of steps
            flat, layout, offset = [], [], 0
            for step, wall, values in self.pending:
                row = {}
                for k in keys:
                    if k in values:
                        t = values[k].detach().float().reshape(-1)
                        row[k] = (offset, t.numel())
                        flat.append(t)
                        offset += t.numel()
                layout.append((step, wall, row))
            host = torch.cat(flat).cpu().tolist() if flat else []
            for step, wall, row in layout:
                logged = {}
                for k, (offset, n) in row.items():
                    if n == 1:
                        logged[k] = host[offset]
                    else:  # per-layer trust ratios
                        names = self.layer_names if len(self.layer_names) == n else [f"layer_{i}" for i in range(n)]
                        logged.update({f"layer_trust/{name}": host[offset + i] for i, name in enumerate(names)})
                if not math.isfinite(logged.get("train/loss", 0.0)):
                    finite = False
                self.latest.update(logged)
                if self.writer is not None:
                    samples = (step + 1) * self.plan.batch
                    self.writer.log(step, logged, wall_time=wall, samples=samples,
                                    epoch=samples / self.plan.samples_per_epoch)
            self.pending.clear()
        self.last_flush = time.monotonic()
        if self.writer is not None:
            self.writer.flush()
        return finite


def _trust_layer_names(optimizer) -> list[str]:
    """Names of the tensors a Lamb/ALTO trust ratio applies to, in the order the stats list them."""
    names = []
    for group in optimizer.param_groups:
        applies = group.get("trust_ratio") == "paper" or (
            group.get("trust_ratio") == "reference" and group.get("weight_decay", 0) != 0)
        if applies:
            names += group.get("names", [f"param_{i}" for i in range(len(group["params"]))])
    return names


def train(config: RunConfig, *, writer=None, checkpoint_dir: str | Path | None = None,
          progress: Callable[[int, int, dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          on_start: Callable[[dict], None] | None = None, dist_ctx: Dist | None = None) -> RunResult:
    """Train one run. `writer` is a store MetricWriter (or None); `on_start(info)` receives what
    the run resolved (hyper-parameters used, batch, steps, device) before the first step;
    `progress(step, total, latest)` is called after every flush; `should_stop()` is polled every
    step (cancellation). Under torchrun pass `dist_ctx`: only rank 0 should get a writer."""
    t_setup = time.monotonic()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    if dist_ctx is not None and device.type == "cuda":
        device = torch.device("cuda", dist_ctx.local_rank)
    main = dist_ctx is None or dist_ctx.is_main
    use_bf16 = config.precision == "bf16" and device.type == "cuda"

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

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
    net = model
    if dist_ctx is not None:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    overrides = {**config.hparams, "lr": plan.peak_lr}
    optimizer = build(config.optimizer, model, batch_size=plan.batch, **overrides)
    collects = hasattr(optimizer, "collect_stats")
    if config.telemetry and collects:
        optimizer.collect_stats = True
    text_gen = torch.Generator(device=device).manual_seed(config.seed + 1000 * (dist_ctx.rank if dist_ctx else 0))

    start_step, wall_offset = 0, 0.0
    ckpt_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir else None
    if ckpt_path is not None and ckpt_path.exists():
        last_step, wall_offset = load_checkpoint(ckpt_path, model, optimizer, text_gen)
        start_step = last_step + 1

    if on_start is not None:
        on_start({"hparams": optimizer.hparams, "peak_lr": plan.peak_lr, "batch_size": plan.batch,
                  "micro_batch": plan.micro, "total_steps": plan.total_steps,
                  "steps_per_epoch": plan.steps_per_epoch, "n_params": count_parameters(model),
                  "n_train": plan.n_train, "device": str(device),
                  "precision": "bf16" if use_bf16 else "fp32", "start_step": start_step,
                  "torch": torch.__version__, "world_size": plan.world,
                  "per_rank_batch": plan.micro * config.accumulation})
    telemetry = Telemetry(writer, plan, _trust_layer_names(optimizer))
    if writer is not None and start_step == 0:
        writer.log(0, {"params/count": count_parameters(model)}, wall_time=0.0, samples=0, epoch=0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    epoch_batches: tuple[int, list[Tensor]] = (-1, [])
    snapshot = None  # (theta_t, g_t) for the curvature along one step, on detail steps
    status, message = "finished", ""
    step = start_step
    # The wall clock of a run starts at its first step: process start-up, imports and data loading
    # differ with the order runs happen to execute in and must not count as training time.
    t_start = time.monotonic()
    setup_s = t_start - t_setup

    for step in range(start_step, plan.total_steps):
        stop_here = should_stop is not None and should_stop()
        if stop_here and dist_ctx is None:
            status, message = "cancelled", "stopped on request"
            break
        t0 = time.perf_counter()
        lr = lr_at(step, plan.total_steps, plan.peak_lr, schedule=config.schedule,
                   warmup_steps=config.warmup_steps, milestones=config.milestones, gamma=config.gamma)
        for group in optimizer.param_groups:
            group["lr"] = lr

        # forward/backward over the micro-batches of this step; the optimizer sees their mean
        loss_sum = torch.zeros((), device=device)
        acc_sum = torch.zeros((), device=device)
        if plan.text:
            micro_batches = [text_batch(data.train, plan.micro, config.block_size, text_gen)
                             for _ in range(config.accumulation)]
        else:
            epoch = step // plan.steps_per_epoch
            if epoch_batches[0] != epoch:
                epoch_batches = (epoch, batch_indices(plan.n_train, plan.batch, epoch, config.seed))
            idx = epoch_batches[1][step % plan.steps_per_epoch].to(device)
            if dist_ctx is not None:  # this rank's contiguous share of the global batch
                idx = idx.chunk(dist_ctx.world)[dist_ctx.rank]
            micro_batches = [(data.x_train[i], data.y_train[i]) for i in idx.split(plan.micro)]
        for i, (x, y) in enumerate(micro_batches):
            last_micro = i + 1 == len(micro_batches)
            # DDP all-reduces gradients once, on the last micro-batch of the step
            with (net.no_sync() if dist_ctx is not None and not last_micro else contextlib.nullcontext()):
                with autocast():
                    loss, acc = _text_loss(net, x, y) if plan.text else _image_loss(net, data, x, y)
                (loss / config.accumulation).backward()
            loss_sum += loss.detach().float()
            acc_sum += acc.detach()
        if dist_ctx is not None:  # global loss/accuracy, and stop together if any rank must stop
            shared = torch.stack([loss_sum, acc_sum, torch.tensor(float(stop_here), device=device)])
            torch.distributed.all_reduce(shared)
            loss_sum, acc_sum = shared[0] / plan.world, shared[1] / plan.world
            if shared[2].item() > 0:
                status, message = "cancelled", "stopped on request"
                optimizer.zero_grad(set_to_none=True)
                break

        values = {"train/loss": loss_sum / config.accumulation, "train/acc": acc_sum / config.accumulation,
                  "lr": torch.tensor(lr)}
        detail = config.telemetry and step % plan.detail_every == 0
        if config.telemetry:
            if snapshot is not None:  # curvature along the previous step: <d theta, d g> / |d theta|^2
                d_theta = torch._foreach_sub([p.detach() for p in params], snapshot[0])
                d_grad = torch._foreach_sub([p.grad for p in params], snapshot[1])
                dot = sum(torch.sum(a * b) for a, b in zip(d_theta, d_grad))
                values["step_curvature"] = dot / torch.stack(torch._foreach_norm(d_theta)).square().sum()
                snapshot = None
            if not collects:  # torch.optim optimizers: the engine measures the gradient norm
                values["grad_norm"] = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
                    [p.grad for p in params])))
            if detail and step + 1 < plan.total_steps:
                snapshot = ([p.detach().clone() for p in params], [p.grad.clone() for p in params])

        if detail and device.type == "cuda":
            torch.cuda.synchronize(device)
        t_opt = time.perf_counter()
        optimizer.step()
        if detail and device.type == "cuda":
            torch.cuda.synchronize(device)
        optim_s = time.perf_counter() - t_opt
        optimizer.zero_grad(set_to_none=True)

        if config.telemetry and collects:
            stats = dict(optimizer.stats)
            ratios = stats.pop("trust_ratios", None)
            values.update(stats)
            if detail and ratios is not None:
                values["trust_ratios"] = ratios
        if device.type == "cpu" or detail:  # on CUDA only synchronised steps time the optimizer
            values["time/optim_ms"] = torch.tensor(optim_s * 1e3)
        values["time/step_ms"] = torch.tensor((time.perf_counter() - t0) * 1e3)
        wall = wall_offset + time.monotonic() - t_start
        telemetry.add(step, wall, values)

        last = step + 1 == plan.total_steps
        evaluate_now = (step + 1) % plan.eval_every == 0 or last
        if telemetry.due() or evaluate_now:
            if not telemetry.flush():
                status, message = "diverged", f"non-finite training loss by step {step}"
                break
            if progress is not None:
                progress(step + 1, plan.total_steps, telemetry.latest)
        if evaluate_now and main:
            scores = evaluate(model, data, config, autocast)
            scores["mem_mb"] = peak_memory_mb(device)
            telemetry.latest.update(scores)
            if writer is not None:
                writer.log(step, scores, wall_time=wall, samples=(step + 1) * plan.batch,
                           epoch=(step + 1) * plan.batch / plan.samples_per_epoch)
                writer.flush()
        if main and ckpt_path is not None and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
            save_checkpoint(ckpt_path, model, optimizer, text_gen, step, wall, config)
    else:
        step = plan.total_steps - 1

    telemetry.flush()
    if writer is not None:
        writer.flush()
    if main and checkpoint_dir is not None and config.save_final and status == "finished":
        save_weights(Path(checkpoint_dir) / "final.pt", model, config)  # for flatness analysis
    return RunResult(status=status, steps=step + 1, wall_s=time.monotonic() - t_start,
                     final=dict(telemetry.latest), message=message, setup_s=setup_s)

