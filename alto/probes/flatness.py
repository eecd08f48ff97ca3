"""Sharpness measures for trained models: Hessian spectrum estimates and loss profiles.

Conventions:
* A "loss closure" (hvp, top_hessian_eigenvalue, hessian_trace) takes no arguments and returns a
  scalar loss that depends on `params`, e.g. `lambda: loss_fn(model)`.
* A `loss_fn(model)` (interpolate, profile_1d) evaluates the model on a FIXED batch, so it is
  deterministic; the functions here put the model in eval mode while evaluating it (BatchNorm uses
  its running statistics and does not update them) and restore its mode afterwards.
* Random vectors are drawn on the CPU from a seeded generator and then moved to each parameter's
  device and dtype, so the same seed gives the same vectors on any device.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

Closure = Callable[[], Tensor]
ModelLoss = Callable[[nn.Module], Tensor]


def _as_list(params: Tensor | Iterable[Tensor]) -> list[Tensor]:
    params = [params] if isinstance(params, Tensor) else list(params)
    if not params:
        raise ValueError("params must contain at least one tensor")
    return params


def _dot(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(xs, ys))


def _norm(xs: Sequence[Tensor]) -> Tensor:
    return torch.sqrt(sum(x.pow(2).sum() for x in xs))


def _hvp_operator(loss_fn: Closure, params: list[Tensor]) -> Callable[[list[Tensor]], list[Tensor]]:
    """v -> H v for the Hessian of loss_fn() at params, reusing one gradient graph."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]

    live = [i for i, g in enumerate(grads) if g.requires_grad]  # a gradient without a graph: H = 0

    def apply(v: list[Tensor]) -> list[Tensor]:
        if not live:
            return [torch.zeros_like(p) for p in params]
        hv = torch.autograd.grad([grads[i] for i in live], params, grad_outputs=[v[i] for i in live],
                                 retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, params)]

    return apply


def hvp(loss_fn: Closure, params: Tensor | Iterable[Tensor], v: Tensor | Sequence[Tensor]) -> Tensor | list[Tensor]:
    """Hessian-vector product H v by double backprop (H = d^2 loss / d params^2).

    `v` matches `params` (one tensor, or a list of tensors of the same shapes); the result has the
    same structure as `params`.
    """
    single = isinstance(params, Tensor)
    ps = _as_list(params)
    vs = [v] if isinstance(v, Tensor) else list(v)
    if len(vs) != len(ps) or any(a.shape != b.shape for a, b in zip(vs, ps)):
        raise ValueError("v must have the same structure and shapes as params")
    hv = _hvp_operator(loss_fn, ps)(vs)
    return hv[0] if single else hv


def _random_like(params: list[Tensor], gen: torch.Generator, kind: str) -> list[Tensor]:
    out = []
    for p in params:
        if kind == "rademacher":
            r = torch.randint(0, 2, p.shape, generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1
        else:
            r = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        out.append(r.to(device=p.device, dtype=p.dtype))
    return out


def top_hessian_eigenvalue(loss_fn: Closure, params: Tensor | Iterable[Tensor], *, iters: int = 20,
                           tol: float = 1e-4, seed: int = 0) -> tuple[float, int]:
    """Largest-magnitude Hessian eigenvalue by power iteration on HVPs: (value, iterations used).

    The value is the Rayleigh quotient v^T H v of the last iterate (so it keeps its sign: a negative
    value means the dominant curvature is negative). Stops when the relative change is below `tol`
    or after `iters` iterations.
    """
    if int(iters) < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    ps = _as_list(params)
    op = _hvp_operator(loss_fn, ps)
    gen = torch.Generator().manual_seed(int(seed))
    v = _random_like(ps, gen, "normal")
    n = _norm(v)
    v = [x / n for x in v]
    value = math.nan
    for i in range(1, int(iters) + 1):
        hv = op(v)
        new = float(_dot(v, hv))
        hv_norm = _norm(hv)
        if float(hv_norm) == 0.0:
            return 0.0, i
        v = [x / hv_norm for x in hv]
        converged = i > 1 and abs(new - value) <= tol * max(abs(value), 1e-30)
        value = new
        if converged:
            return value, i
    return value, int(iters)


def hessian_trace(loss_fn: Closure, params: Tensor | Iterable[Tensor], *, samples: int = 50,
                  seed: int = 0) -> tuple[float, float]:
    """Hutchinson estimate of tr(H) with Rademacher vectors: (mean of z^T H z, its standard error).

    Exact for a diagonal Hessian (z_i^2 = 1), where the standard error is 0.
    """
    samples = int(samples)
    if samples < 2:
        raise ValueError(f"samples must be >= 2 (for a standard error), got {samples}")
    ps = _as_list(params)
    op = _hvp_operator(loss_fn, ps)
    gen = torch.Generator().manual_seed(int(seed))
    draws = []
    for _ in range(samples):
        z = _random_like(ps, gen, "rademacher")
        draws.append(float(_dot(z, op(z))))
    values = torch.tensor(draws, dtype=torch.float64)
    return float(values.mean()), float(values.std(unbiased=True) / math.sqrt(samples))


# --------------------------------------------------------------------------- loss along lines

def _evaluate(model: nn.Module, loss_fn: ModelLoss) -> float:
    """loss_fn(model) in eval mode without gradients, restoring the model's mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float(loss_fn(model))
    finally:
        model.train(was_training)


def _blend(a: Tensor, b: Tensor, t: float) -> Tensor:
    if not torch.is_floating_point(a):  # integer buffers (BatchNorm's num_batches_tracked)
        return (a if t < 0.5 else b).clone()
    return torch.lerp(a, b.to(a.dtype), t)


def interpolate(model_a_state: dict, model_b_state: dict, model_builder: Callable[[], nn.Module],
                loss_fn: ModelLoss, *, points: int = 21) -> tuple[list[float], list[float]]:
    """Loss along the straight line (1 - t) * A + t * B, t in [0, 1]: (ts, losses).

    Every floating-point entry of the state dicts is interpolated, BatchNorm running means and
    variances included (so the model at t uses blended statistics, evaluated in eval mode);
    integer buffers (num_batches_tracked) are taken from the nearer endpoint. The endpoints load
    the two states unchanged, so their losses equal the two models' own eval-mode losses exactly.
    """
    points = int(points)
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    if set(model_a_state) != set(model_b_state):
        raise ValueError("model_b_state must have the same keys as model_a_state")
    model = model_builder()
    ts = [i / (points - 1) for i in range(points)]
    losses = []
    for t in ts:
        if t == 0.0:
            state = model_a_state
        elif t == 1.0:
            state = model_b_state
        else:
            state = {k: _blend(model_a_state[k], model_b_state[k], t) for k in model_a_state}
        model.load_state_dict(state)
        losses.append(_evaluate(model, loss_fn))
    return ts, losses


def _params_of(params: nn.Module | Iterable[Tensor]) -> list[Tensor]:
    return list(params.parameters()) if isinstance(params, nn.Module) else _as_list(params)


def filter_normalize(direction: Sequence[Tensor], params: Sequence[Tensor]) -> list[Tensor]:
    """Li et al. (2018) filter normalisation: each filter (output row, dim 0) of the direction is
    rescaled to the norm of the same filter of the weight; 0- and 1-dimensional tensors (biases,
    BatchNorm / LayerNorm parameters) get a zero direction."""
    out = []
    for d, p in zip(direction, params):
        if p.dim() <= 1:
            out.append(torch.zeros_like(p))
            continue
        d_rows, p_rows = d.reshape(d.shape[0], -1), p.detach().reshape(p.shape[0], -1)
        d_norm = torch.linalg.vector_norm(d_rows, dim=1, keepdim=True)
        p_norm = torch.linalg.vector_norm(p_rows, dim=1, keepdim=True)
        scale = torch.where(d_norm > 0, p_norm / torch.where(d_norm > 0, d_norm, 1), 0)
        out.append((d_rows * scale).reshape(p.shape))
    return out


def random_directions(params: nn.Module | Iterable[Tensor], *, seed: int, count: int = 1) -> list[list[Tensor]]:
    """`count` filter-normalised random directions, each a list aligned with the parameters.

    The Gaussian draws depend only on the seed and the parameter shapes (drawn on the CPU in
    parameter order), so runs of the same architecture share them; the filter normalisation then
    scales them to each model's own filter norms.
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    ps = _params_of(params)
    gen = torch.Generator().manual_seed(int(seed))
    return [filter_normalize(_random_like(ps, gen, "normal"), ps) for _ in range(count)]


def profile_1d(model: nn.Module, direction: Sequence[Tensor], loss_fn: ModelLoss, *,
               radius: float = 1.0, points: int = 21) -> tuple[list[float], list[float]]:
    """Loss at theta + t * direction for t evenly spaced in [-radius, radius]: (ts, losses).

    With an odd number of points the middle t is exactly 0 and its loss is the model's own. The
    model's parameters are restored exactly afterwards.
    """
    points = int(points)
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    radius = float(radius)
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a finite number > 0, got {radius}")
    ps = list(model.parameters())
    direction = list(direction)
    if len(direction) != len(ps) or any(d.shape != p.shape for d, p in zip(direction, ps)):
        raise ValueError("direction must have one tensor per model parameter, with matching shapes")
    ts = [radius * (2 * i - (points - 1)) / (points - 1) for i in range(points)]
    saved = [p.detach().clone() for p in ps]
    losses = []
    try:
        for t in ts:
            with torch.no_grad():
                for p, p0, d in zip(ps, saved, direction):
                    p.copy_(p0 + t * d.to(device=p.device, dtype=p.dtype))
            losses.append(_evaluate(model, loss_fn))
    finally:
        with torch.no_grad():
            for p, p0 in zip(ps, saved):
                p.copy_(p0)
    return ts, losses
