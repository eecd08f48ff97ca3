"""Sharpness measures: Hessian estimators on known quadratics, interpolation, filter-normalised
directions and 1-D profiles on a small MLP."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from alto.probes.flatness import (
    filter_normalize, hessian_trace, hvp, interpolate, profile_1d, random_directions,
    top_hessian_eigenvalue,
)

EIGENVALUES = [5.0, 2.0, 1.0, -0.5, 0.3, 0.1]


def symmetric(eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def quadratic(A, dtype=torch.float64):
    theta = torch.linspace(-1.0, 1.0, A.shape[0], dtype=dtype).requires_grad_(True)
    A = A.to(dtype)
    return theta, (lambda: 0.5 * theta @ A @ theta)


def test_hvp_of_a_quadratic_is_A_v():
    A = symmetric(EIGENVALUES)
    theta, loss = quadratic(A)
    v = torch.arange(6, dtype=torch.float64)
    assert torch.allclose(hvp(loss, theta, v), A @ v, atol=1e-12)
    # list form, two parameter tensors: the blocks of A v
    x = theta.detach()[:2].clone().requires_grad_(True)
    y = theta.detach()[2:].clone().requires_grad_(True)
    loss2 = lambda: 0.5 * torch.cat([x, y]) @ A @ torch.cat([x, y])
    hx, hy = hvp(loss2, [x, y], [v[:2], v[2:]])
    assert torch.allclose(torch.cat([hx, hy]), A @ v, atol=1e-12)
    with pytest.raises(ValueError, match="v"):
        hvp(loss, theta, torch.zeros(5, dtype=torch.float64))


def test_hvp_matches_finite_differences_on_an_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    X, y = torch.randn(16, 3, dtype=torch.float64), torch.randint(0, 2, (16,))
    params = list(model.parameters())
    loss = lambda: F.cross_entropy(model(X), y)
    v = [torch.randn_like(p) for p in params]
    hv = hvp(loss, params, v)

    def grad_at(sign, eps=1e-5):
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(sign * eps * d)
        g = torch.autograd.grad(loss(), params)
        with torch.no_grad():
            for p, d in zip(params, v):
                p.sub_(sign * eps * d)
        return g

    fd = [(a - b) / 2e-5 for a, b in zip(grad_at(1), grad_at(-1))]
    for h, f in zip(hv, fd):
        assert torch.allclose(h, f, atol=1e-7, rtol=1e-5)


def test_top_eigenvalue_of_a_known_quadratic():
    A = symmetric(EIGENVALUES)
    theta, loss = quadratic(A)
    value, iterations = top_hessian_eigenvalue(loss, theta, iters=100, tol=1e-8, seed=1)
    assert abs(value - 5.0) / 5.0 < 1e-3 and iterations < 100
    value, iterations = top_hessian_eigenvalue(loss, theta, iters=20, tol=1e-4, seed=0)
    assert abs(value - 5.0) / 5.0 < 1e-3 and iterations <= 20
    # float32, as for models
    theta32, loss32 = quadratic(A, torch.float32)
    assert abs(top_hessian_eigenvalue(loss32, [theta32])[0] - 5.0) / 5.0 < 1e-3
    # a dominant negative curvature keeps its sign
    theta_n, loss_n = quadratic(symmetric([-4.0, 1.0, 0.5]))
    assert abs(top_hessian_eigenvalue(loss_n, theta_n, iters=100, tol=1e-8)[0] + 4.0) < 4e-3
    # deterministic for a seed
    assert top_hessian_eigenvalue(loss, theta, seed=3) == top_hessian_eigenvalue(loss, theta, seed=3)


def test_hutchinson_trace_of_a_known_quadratic():
    A = symmetric(EIGENVALUES)
    theta, loss = quadratic(A)
    mean, stderr = hessian_trace(loss, theta, samples=200, seed=0)
    assert stderr > 0 and abs(mean - sum(EIGENVALUES)) < 3 * stderr
    assert hessian_trace(loss, theta, samples=20, seed=5) == hessian_trace(loss, theta, samples=20, seed=5)
    D = torch.diag(torch.tensor([3.0, -1.0, 0.25, 7.0], dtype=torch.float64))
    theta_d, loss_d = quadratic(D)
    mean, stderr = hessian_trace(loss_d, theta_d, samples=10, seed=2)
    assert mean == pytest.approx(9.25, abs=1e-12) and stderr == 0.0
    with pytest.raises(ValueError, match="samples"):
        hessian_trace(loss_d, theta_d, samples=1)


# ----------------------------------------------------------------- models

def build_mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def trained_state(seed):
    torch.manual_seed(seed)
    model = build_mlp()
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the BatchNorm running statistics away from their defaults
            model(torch.randn(32, 4) * (1 + seed))
    return model.state_dict()


BATCH_GEN = torch.Generator().manual_seed(123)
X = torch.randn(64, 4, generator=BATCH_GEN)
Y = torch.randint(0, 3, (64,), generator=BATCH_GEN)


def batch_loss(model):
    return F.cross_entropy(model(X), Y)


def own_loss(state):
    model = build_mlp()
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return float(batch_loss(model))


def test_interpolation_endpoints_equal_the_models_own_losses():
    a, b = trained_state(0), trained_state(1)
    a_copy = copy.deepcopy(a)
    ts, losses = interpolate(a, b, build_mlp, batch_loss, points=11)
    assert ts[0] == 0.0 and ts[-1] == 1.0 and len(losses) == 11
    assert losses[0] == own_loss(a) and losses[-1] == own_loss(b)
    assert losses[0] != losses[-1]
    assert all(torch.equal(a[k], a_copy[k]) for k in a)  # inputs untouched
    # the same state at both ends: a flat line
    _, flat = interpolate(a, a, build_mlp, batch_loss, points=5)
    assert max(flat) - min(flat) < 1e-6
    # BatchNorm statistics are interpolated: the midpoint equals a hand-blended state
    mid = {k: (torch.lerp(a[k], b[k], 0.5) if a[k].is_floating_point() else b[k]) for k in a}
    assert interpolate(a, b, build_mlp, batch_loss, points=3)[1][1] == pytest.approx(own_loss(mid), abs=1e-6)
    with pytest.raises(ValueError, match="points"):
        interpolate(a, b, build_mlp, batch_loss, points=1)


def build_convnet():
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))


def test_filter_normalised_directions():
    torch.manual_seed(0)
    model = build_convnet()
    (d,) = random_directions(model, seed=7)
    for p, dp in zip(model.parameters(), d):
        assert dp.shape == p.shape and dp.dtype == p.dtype
        if p.dim() <= 1:  # biases, BatchNorm weight and bias
            assert torch.count_nonzero(dp) == 0
        else:
            rows = dp.reshape(p.shape[0], -1).norm(dim=1)
            assert torch.allclose(rows, p.detach().reshape(p.shape[0], -1).norm(dim=1), rtol=1e-5)
    # the same seed gives the same raw draws for another run of the same architecture
    torch.manual_seed(1)
    other = build_convnet()
    (d2,) = random_directions(other, seed=7)
    for dp, dq in zip(d, d2):
        if dp.dim() > 1:
            u = dp.reshape(dp.shape[0], -1)
            w = dq.reshape(dq.shape[0], -1)
            assert torch.allclose(u / u.norm(dim=1, keepdim=True), w / w.norm(dim=1, keepdim=True), atol=1e-6)
    d3, d4 = random_directions(model, seed=8, count=2)
    assert not torch.equal(d3[0], d[0]) and not torch.equal(d3[0], d4[0])
    # a zero filter gets a zero direction
    w = torch.zeros(2, 3)
    w[1] = 1.0
    (out,) = filter_normalize([torch.ones(2, 3)], [w])
    assert torch.equal(out[0], torch.zeros(3)) and torch.allclose(out[1], torch.ones(3))


def test_profile_at_zero_is_the_models_loss_and_restores_the_model():
    a = trained_state(0)
    model = build_mlp()
    model.load_state_dict(a)
    model.train()
    before = copy.deepcopy(model.state_dict())
    (d,) = random_directions(model, seed=0)
    ts, losses = profile_1d(model, d, batch_loss, radius=0.5, points=21)
    assert ts[10] == 0.0 and ts[0] == -0.5 and ts[-1] == 0.5
    assert losses[10] == own_loss(a)
    assert min(losses) < max(losses)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="direction"):
        profile_1d(model, d[:-1], batch_loss)
    with pytest.raises(ValueError, match="radius"):
        profile_1d(model, d, batch_loss, radius=0.0)
