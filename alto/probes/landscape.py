"""The landscape explorer's engine: toy test functions and optimizer trajectories on them.

Every test function is a torch-differentiable callable on a parameter tensor theta of shape
(dim,) (dim = 1 or 2). The callables are written elementwise over theta[0], theta[1], so the same
function also evaluates a whole grid at once (theta of shape (dim, ...)), which `grid` uses.

`run_trajectory` runs the library's own optimizers (alto.optim.ALTO / Lamb / Lion / E) or
torch.optim on ONE parameter tensor, in float64, on the CPU. Everything is deterministic: the
same inputs give bit-identical arrays.

Conventions the dashboard relies on:
* ALTO and Lamb use grad_clip=None and weight_decay=0 here (a toy problem has one tensor, so a
  global clip to norm 1 would just turn the method into normalised GD). With weight_decay = 0 the
  authors' reference applies NO trust ratio (see alto.optim.lamb_family); pass
  extra={"trust_ratio": "paper"} to see the trust-ratio effect: the step becomes
  lr * ||theta|| * u/||u||, so it is proportional to the distance from the origin (and stalls
  near it).
* E-wrapped optimizers and ALTO refuse |alpha| >= 1/(1 - beta1) (`stability_bound`) unless
  extra={"allow_unstable": True}.
* `noise` adds seeded Gaussian noise N(0, noise^2) to every gradient component, mimicking the
  gradient noise of a small batch (noise = 0: full batch).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from alto.optim import ALTO, E, Lamb, Lion

Fn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Landscape:
    """A test function with what the page needs to draw it and to start an optimizer on it.

    `valley` (optional) is a residual that is zero exactly on the landscape's valley floor (for
    the cardioid: F, for Rosenbrock: y - x^2); `valley_tol` is the |residual| below which a point
    counts as "in the valley". Without a residual the valley is the sublevel set |f| < valley_tol
    (only meaningful where the minimum value is 0).
    `valley_curve` (optional) traces the valley floor: u in [0, 1] -> points (len(u), 2);
    `valley_closed` says whether it is a closed curve (the cardioid).
    `lr_gd` / `lr_adaptive` are step sizes that are stable and show something at `steps` steps:
    lr_gd for gradient-scale methods (gd, sgd, e_gd, e_sgd), lr_adaptive for normalised ones
    (adam, e_adam, alto, lamb, lion).
    """

    name: str
    title: str
    formula: str
    fn: Fn
    dim: int
    start: tuple[float, ...]
    bounds: tuple[tuple[float, float], ...]
    minima: tuple[tuple[float, ...], ...] = ()
    valley: Fn | None = None
    valley_tol: float = 1e-3
    valley_curve: Callable[[np.ndarray], np.ndarray] | None = None
    valley_closed: bool = False
    lr_gd: float = 1e-3
    lr_adaptive: float = 1e-2
    steps: int = 500
    notes: str = ""

    def __call__(self, theta: Tensor) -> Tensor:
        return self.fn(theta)


# --------------------------------------------------------------------------- test functions

def cardioid_residual(theta: Tensor) -> Tensor:
    """F = (x^2 + y^2 - x)^2 - (x^2 + y^2); in polar form F = r^2 (r - 1 - cos t)(r + 1 - cos t),
    so F = 0 exactly on the cardioid r = 1 + cos t (the second factor vanishes only at r = 0)."""
    x, y = theta[0], theta[1]
    r2 = x * x + y * y
    return (r2 - x) ** 2 - r2


def cardioid_curve(u: np.ndarray) -> np.ndarray:
    """The cardioid r = 1 + cos t, t = 2 pi u - pi (u in [0, 1]; both ends are the cusp)."""
    t = 2 * np.pi * np.asarray(u) - np.pi
    r = 1 + np.cos(t)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=-1)


def squared_cardioid(theta: Tensor) -> Tensor:
    """f = F^2: a zero-loss valley along the cardioid, extremely flat at the cusp (0, 0) (f ~ r^4)."""
    return cardioid_residual(theta) ** 2


def f1(theta: Tensor) -> Tensor:
    """1 / (0.05 x sin^2(2x) + ln(x + 1)) (paper, appendix Figure 8): a staircase of local minima
    whose loss decreases to the right. Defined for x > 0 (infinite at 0, NaN below -1)."""
    x = theta[0]
    return 1.0 / (0.05 * x * torch.sin(2 * x) ** 2 + torch.log(x + 1))


def f2(theta: Tensor) -> Tensor:
    """1 - e^{-900(x-0.6)^2} - e^{-900(x+0.6)^2} - e^{-25x^2} (paper, appendix Figure 8): two
    sharp wells at +-0.6 and a wide one at 0."""
    x = theta[0]
    return 1 - torch.exp(-900 * (x - 0.6) ** 2) - torch.exp(-900 * (x + 0.6) ** 2) - torch.exp(-25 * x ** 2)


def rosenbrock(theta: Tensor) -> Tensor:
    x, y = theta[0], theta[1]
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def himmelblau(theta: Tensor) -> Tensor:
    x, y = theta[0], theta[1]
    return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2


def beale(theta: Tensor) -> Tensor:
    x, y = theta[0], theta[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y ** 2) ** 2 + (2.625 - x + x * y ** 3) ** 2


def rastrigin(theta: Tensor) -> Tensor:
    x, y = theta[0], theta[1]
    return 20 + x * x - 10 * torch.cos(2 * math.pi * x) + y * y - 10 * torch.cos(2 * math.pi * y)


CURVED_VALLEY_DIPS = (-1.2, -0.4, 0.4)
CURVED_VALLEY_END = 1.8


def curved_valley_residual(theta: Tensor) -> Tensor:
    """y - x^2/2: zero on the valley floor (a parabola)."""
    return theta[1] - 0.5 * theta[0] ** 2


def curved_valley(theta: Tensor) -> Tensor:
    """A parabolic valley y = x^2/2 whose floor h(x) slopes towards a wide basin at x = 1.8 and
    has three narrow dips (sharp local minima) at x = -1.2, -0.4, 0.4:

        f = 5 (y - x^2/2)^2 + h(x)
        h = 0.1 (x - 1.8)^2 + 0.5 (1 - e^{-(x-1.8)^2/0.5}) - 0.06 sum_c e^{-(x-c)^2/0.005}

    The global minimum is f = 0 at (1.8, 1.62); every dip is a local minimum with f > 0.6. Each
    dip's steepest wall (0.06 * 0.86 / 0.0707 ~ 0.73) just beats the floor's slope there (0.6 at
    x = -1.2), so plain GD and Adam stop in the first dip while exploration (alpha < 0, momentum)
    carries a run past one, two or all dips depending on its strength.
    """
    x = theta[0]
    end = CURVED_VALLEY_END
    floor = 0.1 * (x - end) ** 2 + 0.5 * (1 - torch.exp(-(x - end) ** 2 / 0.5))
    dips = sum(torch.exp(-(x - c) ** 2 / 0.005) for c in CURVED_VALLEY_DIPS)
    return 5 * curved_valley_residual(theta) ** 2 + floor - 0.06 * dips


def _parabola(c: float, half_width: float) -> Callable[[np.ndarray], np.ndarray]:
    """The curve y = c x^2 for x in [-half_width, half_width]."""
    def curve(u: np.ndarray) -> np.ndarray:
        x = half_width * (2 * np.asarray(u) - 1)
        return np.stack([x, c * x * x], axis=-1)
    return curve


def _rosenbrock_valley(theta: Tensor) -> Tensor:
    return theta[1] - theta[0] ** 2


LANDSCAPES: dict[str, Landscape] = {
    "squared_cardioid": Landscape(
        name="squared_cardioid", title="Squared cardioid",
        formula="F = (x² + y² − x)² − (x² + y²),  f = F²   (zero on the cardioid r = 1 + cos θ)",
        fn=squared_cardioid, dim=2, start=(1.5, 1.2), bounds=((-1.0, 2.5), (-1.75, 1.75)),
        minima=((0.0, 0.0), (2.0, 0.0)), valley=cardioid_residual, valley_tol=0.2,
        valley_curve=cardioid_curve, valley_closed=True,
        lr_gd=0.01, lr_adaptive=0.01, steps=1000,
        notes="The whole cardioid is a zero-loss valley; plain GD stops where it first meets it. "
              "The cusp (0, 0) is extremely flat (f ~ r^4)."),
    "f1": Landscape(
        name="f1", title="f1: staircase of local minima (paper Fig. 8)",
        formula="f(x) = 1 / (0.05·x·sin²(2x) + ln(x + 1))",
        fn=f1, dim=1, start=(2.3,), bounds=((0.3, 16.0),),
        lr_gd=0.05, lr_adaptive=0.01, steps=1000,
        notes="Paper: Adam (beta=0.95) vs ALTO (beta1=0.99, beta2=0.95, alpha=-80). Lower loss lies to the "
              "right (at lr 0.01 Adam stops at x ~ 4.09, ALTO with the paper's settings at ~ 5.56). "
              "Undefined for x <= -1."),
    "f2": Landscape(
        name="f2", title="f2: two sharp wells and a wide one (paper Fig. 8)",
        formula="f(x) = 1 − e^{−900(x−0.6)²} − e^{−900(x+0.6)²} − e^{−25x²}",
        fn=f2, dim=1, start=(0.95,), bounds=((-1.2, 1.2),), minima=((-0.6,), (0.0,), (0.6,)),
        lr_gd=1e-4, lr_adaptive=0.01, steps=1000,
        notes="Paper: ALTO beta1=0.99, beta2=0.9, alpha=-90. The start is almost flat (gradient ~1e-8): "
              "plain GD barely moves, normalised methods do. The sharp wells are marginally lower "
              "(f = -e^-9 ~ -1.2e-4) than the wide one (f ~ 0); the wide one is the flat minimum."),
    "rosenbrock": Landscape(
        name="rosenbrock", title="Rosenbrock",
        formula="f = (1 − x)² + 100 (y − x²)²",
        fn=rosenbrock, dim=2, start=(-1.5, 2.0), bounds=((-2.0, 2.0), (-1.0, 3.0)),
        minima=((1.0, 1.0),), valley=_rosenbrock_valley, valley_tol=0.05,
        valley_curve=_parabola(1.0, 3.0),
        lr_gd=2e-4, lr_adaptive=0.01, steps=2000,
        notes="A curved valley y = x² with a gently sloped floor; minimum 0 at (1, 1)."),
    "himmelblau": Landscape(
        name="himmelblau", title="Himmelblau",
        formula="f = (x² + y − 11)² + (x + y² − 7)²",
        fn=himmelblau, dim=2, start=(0.0, 0.0), bounds=((-5.0, 5.0), (-5.0, 5.0)),
        minima=((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)),
        lr_gd=2e-3, lr_adaptive=0.05, steps=500,
        notes="Four global minima with f = 0."),
    "beale": Landscape(
        name="beale", title="Beale",
        formula="f = (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²",
        fn=beale, dim=2, start=(1.0, 1.4), bounds=((-4.5, 4.5), (-4.5, 4.5)),
        minima=((3.0, 0.5),), lr_gd=1e-3, lr_adaptive=0.01, steps=1000,
        notes="Flat plateaus and steep walls; minimum 0 at (3, 0.5)."),
    "rastrigin": Landscape(
        name="rastrigin", title="Rastrigin",
        formula="f = 20 + x² − 10 cos(2πx) + y² − 10 cos(2πy)",
        fn=rastrigin, dim=2, start=(2.3, -2.7), bounds=((-5.12, 5.12), (-5.12, 5.12)),
        minima=((0.0, 0.0),), lr_gd=1e-3, lr_adaptive=0.02, steps=500,
        notes="A regular grid of local minima; global minimum 0 at (0, 0)."),
    "curved_valley": Landscape(
        name="curved_valley", title="Curved valley with sharp dips and a wide basin",
        formula="f = 5(y − x²/2)² + 0.1(x − 1.8)² + 0.5(1 − e^{−(x−1.8)²/0.5}) "
                "− 0.06 Σ_{c∈{−1.2, −0.4, 0.4}} e^{−(x−c)²/0.005}",
        fn=curved_valley, dim=2, start=(-2.0, 2.6), bounds=((-2.5, 2.5), (-1.0, 3.5)),
        minima=((CURVED_VALLEY_END, 0.5 * CURVED_VALLEY_END ** 2),), valley=curved_valley_residual,
        valley_tol=0.05, valley_curve=_parabola(0.5, 3.0), lr_gd=0.01, lr_adaptive=0.01, steps=1000,
        notes="The floor of the parabolic valley slopes towards a wide basin at x = 1.8 (global minimum "
              "0); narrow dips at x = -1.2, -0.4, 0.4 are sharp local minima that trap plain GD and Adam. "
              "At lr 0.01: E-GD alpha=-50 passes one dip, ALTO alpha=-20 two, ALTO alpha=-50 (beta1=0.99) "
              "and SGD-momentum reach the basin."),
}


def get_landscape(landscape: str | Landscape) -> Landscape:
    """A Landscape from its registry name (or the Landscape itself)."""
    if isinstance(landscape, Landscape):
        return landscape
    if landscape not in LANDSCAPES:
        raise ValueError(f"landscape must be one of {sorted(LANDSCAPES)}, got {landscape!r}")
    return LANDSCAPES[landscape]


def value_and_grad(landscape: str | Landscape, point) -> tuple[float, np.ndarray]:
    """f and its gradient at one point (float64)."""
    ls = get_landscape(landscape)
    theta = _as_point(ls, point, "point").requires_grad_(True)
    value = ls.fn(theta)
    (grad,) = torch.autograd.grad(value, theta)
    return float(value.detach()), grad.numpy()


# --------------------------------------------------------------------------- optimizers

OPTIMIZERS = ("gd", "sgd", "adam", "e_gd", "e_sgd", "e_adam", "alto", "lamb", "lion")
E_WRAPPED = ("e_gd", "e_sgd", "e_adam")
GD_SCALE = ("gd", "sgd", "e_gd", "e_sgd")
DEFAULT_ALPHA, DEFAULT_BETA1 = -5.0, 0.99  # the paper's large-batch setting
# The reference adaptor sets prev = g_1 (a_1 = 0) on problems with < 3 scalars, so the paper's toy
# figures ran that way; here it is the explicit default of the landscape engine only.
DEFAULT_INIT = "first_grad"
EXTRA_KEYS = frozenset({"allow_unstable", "init", "momentum", "nesterov", "betas", "eps",
                        "weight_decay", "grad_clip", "bias_correction", "trust_ratio"})


def stability_bound(beta1: float) -> float:
    """The E / ALTO stability bound: |alpha| must be below 1 / (1 - beta1)."""
    beta1 = float(beta1)
    if not 0.0 <= beta1 < 1.0:
        raise ValueError(f"beta1 must be in [0, 1), got {beta1}")
    return 1.0 / (1.0 - beta1)


def default_lr(landscape: str | Landscape, optimizer: str) -> float:
    """The landscape's suggested learning rate for this optimizer (see Landscape)."""
    ls = get_landscape(landscape)
    _check_optimizer(optimizer)
    return ls.lr_gd if optimizer in GD_SCALE else ls.lr_adaptive


def _check_optimizer(optimizer: str) -> None:
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")


def _check_extra(extra: dict | None) -> dict:
    extra = dict(extra or {})
    unknown = sorted(set(extra) - EXTRA_KEYS)
    if unknown:
        raise ValueError(f"extra: unknown keys {unknown}; allowed: {sorted(EXTRA_KEYS)}")
    return extra


def _adaptor_settings(optimizer: str, alpha: float | None, beta1: float | None,
                      extra: dict) -> tuple[float, float]:
    """(alpha, beta1) for E / ALTO, with the stability bound enforced."""
    alpha = DEFAULT_ALPHA if alpha is None else float(alpha)
    beta1 = DEFAULT_BETA1 if beta1 is None else float(beta1)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    bound = stability_bound(beta1)
    if abs(alpha) >= bound and not extra.get("allow_unstable", False):
        raise ValueError(f"alpha must satisfy |alpha| < 1/(1 - beta1) = {bound:.6g} for {optimizer} "
                         f"(stability bound), got alpha={alpha} with beta1={beta1}; "
                         "pass extra={'allow_unstable': True} to study violations")
    return alpha, beta1


def _pair(extra: dict, default: tuple[float, float]) -> tuple[float, float]:
    betas = tuple(extra.get("betas", default))
    if len(betas) != 2:
        raise ValueError(f"extra['betas'] must have 2 entries, got {betas!r}")
    return betas


def _sgd(param: Tensor, lr: float, extra: dict, momentum: float) -> tuple[torch.optim.Optimizer, dict]:
    settings = dict(lr=lr, momentum=momentum, nesterov=bool(extra.get("nesterov", False)))
    return torch.optim.SGD([param], **settings), settings


def _adam(param: Tensor, lr: float, extra: dict) -> tuple[torch.optim.Optimizer, dict]:
    settings = dict(lr=lr, betas=_pair(extra, (0.9, 0.999)), eps=float(extra.get("eps", 1e-8)))
    return torch.optim.Adam([param], **settings), settings


def _lion(param: Tensor, lr: float, extra: dict) -> tuple[torch.optim.Optimizer, dict]:
    settings = dict(lr=lr, betas=_pair(extra, (0.9, 0.99)), weight_decay=float(extra.get("weight_decay", 0.0)))
    return Lion([param], **settings), settings


def _lamb_settings(lr: float, extra: dict, bias_correction: bool) -> dict:
    """Toy-problem Lamb/ALTO settings: no clip, no weight decay (so no trust ratio) by default."""
    return dict(lr=lr, eps=float(extra.get("eps", 1e-6)), weight_decay=float(extra.get("weight_decay", 0.0)),
                grad_clip=extra.get("grad_clip"), trust_ratio=extra.get("trust_ratio", "reference"),
                bias_correction=bool(extra.get("bias_correction", bias_correction)))


def build_optimizer(optimizer: str, param: Tensor, *, lr: float, alpha: float | None = None,
                    beta1: float | None = None, extra: dict | None = None
                    ) -> tuple[torch.optim.Optimizer, dict]:
    """The optimizer for one parameter tensor, and the hyper-parameters it was built with.

    extra["betas"] is (beta1, beta2) for adam / lion and (beta2, beta3) = (first moment, second
    moment) for lamb / alto; ALTO's beta1 is the `beta1` argument.
    """
    _check_optimizer(optimizer)
    extra = _check_extra(extra)
    lr = float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    unstable = bool(extra.get("allow_unstable", False))
    base = optimizer[2:] if optimizer in E_WRAPPED else optimizer
    if base == "gd":
        opt, settings = _sgd(param, lr, extra, 0.0)
    elif base == "sgd":
        opt, settings = _sgd(param, lr, extra, float(extra.get("momentum", 0.9)))
    elif base == "adam":
        opt, settings = _adam(param, lr, extra)
    elif base == "lion":
        opt, settings = _lion(param, lr, extra)
    elif base == "lamb":
        settings = dict(_lamb_settings(lr, extra, False), betas=_pair(extra, (0.9, 0.99)))
        opt = Lamb([param], **settings)
    else:  # alto
        a, b1 = _adaptor_settings(optimizer, alpha, beta1, extra)
        settings = dict(_lamb_settings(lr, extra, True), betas=(b1, *_pair(extra, (0.9, 0.99))), alpha=a,
                        allow_unstable=unstable)
        opt = ALTO([param], **settings)
        settings["stability_bound"] = stability_bound(b1)
    if optimizer in E_WRAPPED:
        a, b1 = _adaptor_settings(optimizer, alpha, beta1, extra)
        init = extra.get("init", DEFAULT_INIT)
        opt = E(opt, alpha=a, beta=b1, init=init, allow_unstable=unstable)
        settings = dict(settings, alpha=a, beta1=b1, init=init, stability_bound=stability_bound(b1))
    return opt, settings


def _a_norm(opt: torch.optim.Optimizer, param: Tensor) -> float:
    state = opt.state.get(param, {})
    return float(torch.linalg.vector_norm(state["a"])) if "a" in state else math.nan


# --------------------------------------------------------------------------- trajectories

@dataclass
class Trajectory:
    """One optimizer run on a landscape.

    positions: (steps+1, dim), row 0 the start; losses: (steps+1,), f at each position;
    grad_norms: (steps,), norm of the (noisy) gradient used at step k; a_norms: (steps,), ||a||
    after step k for E-wrapped optimizers and ALTO (NaN otherwise); valley_arc_length: see
    `valley_arc_length`; diverged_at: index of the first non-finite position or loss (the rest of
    the arrays is NaN), None if the run stayed finite.
    """

    landscape: str
    optimizer: str
    settings: dict
    positions: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    a_norms: np.ndarray
    valley_arc_length: float
    diverged_at: int | None = None


def _as_point(ls: Landscape, point, name: str) -> Tensor:
    theta = torch.as_tensor(np.asarray(point, dtype=np.float64).reshape(-1), dtype=torch.float64).clone()
    if theta.numel() != ls.dim:
        raise ValueError(f"{name} must have {ls.dim} coordinate(s) for {ls.name}, got {theta.numel()}")
    if not torch.isfinite(theta).all():
        raise ValueError(f"{name} must be finite, got {theta.tolist()}")
    return theta


def valley_residual(landscape: str | Landscape, positions: np.ndarray) -> np.ndarray:
    """|valley residual| at each position (rows): |F| for the cardioid, f itself without a residual."""
    ls = get_landscape(landscape)
    pts = torch.as_tensor(np.asarray(positions, dtype=np.float64)).T
    fn = ls.valley if ls.valley is not None else ls.fn
    with torch.no_grad():
        return fn(pts).abs().numpy()


VALLEY_CURVE_SEGMENTS = 2000


@functools.lru_cache(maxsize=32)
def _valley_polyline(ls: Landscape) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segment starts, segment vectors, squared lengths and arc length at each segment start."""
    curve = ls.valley_curve(np.linspace(0.0, 1.0, VALLEY_CURVE_SEGMENTS + 1))
    a, ab = curve[:-1], np.diff(curve, axis=0)
    seg_len2 = (ab * ab).sum(axis=1)
    s0 = np.concatenate([[0.0], np.cumsum(np.sqrt(seg_len2))])
    return a, ab, seg_len2, s0


def valley_coordinate(landscape: str | Landscape, positions: np.ndarray) -> np.ndarray:
    """Arc length s along the valley curve of each position's nearest point on that curve
    (a 2000-segment polyline of `valley_curve`); NaN for non-finite positions."""
    ls = get_landscape(landscape)
    if ls.valley_curve is None:
        raise ValueError(f"landscape {ls.name!r} has no valley curve")
    a, ab, seg_len2, s0 = _valley_polyline(ls)
    pts = np.asarray(positions, dtype=np.float64)
    out = np.full(len(pts), np.nan)
    for lo in range(0, len(pts), 256):
        p = pts[lo:lo + 256]
        ap = p[:, None, :] - a[None]
        t = np.clip((ap * ab).sum(axis=2) / seg_len2, 0.0, 1.0)
        d2 = ((ap - t[..., None] * ab) ** 2).sum(axis=2)
        with np.errstate(invalid="ignore"):
            j = np.argmin(np.where(np.isnan(d2), np.inf, d2), axis=1)
        rows = np.arange(len(p))
        out[lo:lo + 256] = s0[j] + t[rows, j] * np.sqrt(seg_len2[j])
    out[~np.isfinite(pts).all(axis=1)] = np.nan
    return out


def valley_arc_length(landscape: str | Landscape, positions: np.ndarray, tol: float | None = None) -> float:
    """Distance travelled ALONG the valley.

    Counts the steps whose both endpoints lie in the valley band (|residual| < tol, default the
    landscape's valley_tol). With a valley curve (cardioid, Rosenbrock, curved_valley) a step
    counts min(|delta s|, |delta x|), s = `valley_coordinate` (arc length of the nearest curve
    point; on a closed curve the shorter way round): motion across the valley (the final
    approach, zig-zag between the walls) adds ~nothing, and the cap by the Euclidean step keeps
    jumps of the nearest point (near the cardioid's cusp) from counting. Without a curve a step
    counts its Euclidean length. Back-and-forth motion along the valley counts every time (it is a
    distance travelled, not a net displacement). Plain GD that stops where it meets the valley
    scores ~0. Non-finite positions count as outside the band.
    """
    ls = get_landscape(landscape)
    tol = ls.valley_tol if tol is None else float(tol)
    pts = np.asarray(positions, dtype=np.float64)
    if len(pts) < 2:
        return 0.0
    with np.errstate(invalid="ignore"):
        inside = valley_residual(ls, pts) < tol
        step = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        if ls.valley_curve is not None:
            ds = np.abs(np.diff(valley_coordinate(ls, pts)))
            if ls.valley_closed:
                length = _valley_polyline(ls)[3][-1]
                ds = np.minimum(ds, length - ds)
            step = np.minimum(ds, step)
    counted = inside[1:] & inside[:-1] & np.isfinite(step)
    return float(step[counted].sum())


def run_trajectory(landscape: str | Landscape, optimizer: str, *, steps: int, lr: float,
                   alpha: float | None = None, beta1: float | None = None, noise: float = 0.0,
                   seed: int = 0, start=None, extra: dict | None = None) -> Trajectory:
    """Run `optimizer` for `steps` steps on the landscape from `start` (default: its own start).

    alpha / beta1 apply to the E-wrapped optimizers and ALTO (default -5, 0.99, the paper's
    large-batch setting; ALTO's beta2, beta3 come from extra["betas"], default (0.9, 0.99)).
    `extra` may set: allow_unstable, init ("zeros" | "first_grad", E only), momentum and nesterov
    (sgd), betas, eps, weight_decay, grad_clip, bias_correction, trust_ratio (lamb / alto).
    """
    ls = get_landscape(landscape)
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    theta = _as_point(ls, ls.start if start is None else start, "start").requires_grad_(True)
    opt, settings = build_optimizer(optimizer, theta, lr=lr, alpha=alpha, beta1=beta1, extra=extra)
    gen = torch.Generator().manual_seed(int(seed))

    positions = np.full((steps + 1, ls.dim), np.nan)
    losses = np.full(steps + 1, np.nan)
    grad_norms = np.full(steps, np.nan)
    a_norms = np.full(steps, np.nan)
    diverged_at = None
    for k in range(steps + 1):
        positions[k] = theta.detach().numpy()
        loss = ls.fn(theta)
        losses[k] = float(loss.detach())
        if not (np.isfinite(losses[k]) and np.isfinite(positions[k]).all()):
            diverged_at = k
            positions[k], losses[k] = np.nan, np.nan
            break
        if k == steps:
            break
        (grad,) = torch.autograd.grad(loss, theta)
        if noise > 0:
            grad = grad + noise * torch.randn(ls.dim, generator=gen, dtype=torch.float64)
        grad_norms[k] = float(torch.linalg.vector_norm(grad))
        theta.grad = grad
        opt.step()
        opt.zero_grad(set_to_none=True)  # Lamb / ALTO use p.grad as scratch
        a_norms[k] = _a_norm(opt, theta)
    arc = valley_arc_length(ls, positions if diverged_at is None else positions[:diverged_at])
    return Trajectory(landscape=ls.name, optimizer=optimizer, settings=dict(settings, noise=noise, seed=seed),
                      positions=positions, losses=losses, grad_norms=grad_norms, a_norms=a_norms,
                      valley_arc_length=arc, diverged_at=diverged_at)


# --------------------------------------------------------------------------- contours

def grid(landscape: str | Landscape, n: int = 200, *, log: bool = False,
         bounds: tuple[tuple[float, float], ...] | None = None
         ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Function values on an n x n grid over the plot bounds, for contour plots.

    2-D: (X, Y, Z), each (n, n) as from np.meshgrid (X varies along columns). 1-D: (x, None, z)
    with x, z of shape (n,). log=True returns log10(Z - min Z + 1e-6 (max Z - min Z)) for display:
    shifted by the grid minimum so it is defined for any sign, six decades deep.
    """
    ls = get_landscape(landscape)
    n = int(n)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    bounds = ls.bounds if bounds is None else bounds
    axes = [np.linspace(lo, hi, n) for lo, hi in bounds]
    if ls.dim == 1:
        X, Y = axes[0], None
        theta = torch.as_tensor(X)[None]
    else:
        X, Y = np.meshgrid(axes[0], axes[1])
        theta = torch.as_tensor(np.stack([X, Y]))
    with torch.no_grad():
        Z = ls.fn(theta).numpy()
    if log:
        lo, hi = np.nanmin(Z), np.nanmax(Z)
        Z = np.log10(Z - lo + (1e-6 * (hi - lo) if hi > lo else 1.0))
    return X, Y, Z


def trajectory_rows(runs: dict[str, "Trajectory"], dim: int) -> list[dict]:
    """One summary row per optimizer: lr, where it ended, final loss, distance along the valley."""
    rows = [{"optimizer": k, "lr": t.settings["lr"], "final position": ", ".join(f"{v:.4g}" for v in t.positions[-1]),
             "final loss": t.losses[-1], "distance along valley": t.valley_arc_length,
             "diverged at step": "-" if t.diverged_at is None else str(t.diverged_at)} for k, t in runs.items()]
    if dim == 1:
        for row in rows:
            del row["distance along valley"]
    return rows
