"""Landscape engine: test-function values and gradients, trajectories, the E valley effect."""
import math

import numpy as np
import pytest
import torch

from alto.probes.landscape import (
    LANDSCAPES, OPTIMIZERS, cardioid_residual, default_lr, grid, run_trajectory, stability_bound,
    valley_arc_length, value_and_grad,
)


def approx(a, b, tol=1e-9):
    return np.allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=tol, atol=tol)


# ----------------------------------------------------------------- values and gradients

@pytest.mark.parametrize("t", [0.3, 1.0, 2.0, -2.5, math.pi / 2])
def test_squared_cardioid_is_zero_on_the_cardioid(t):
    r = 1 + math.cos(t)
    value, grad = value_and_grad("squared_cardioid", (r * math.cos(t), r * math.sin(t)))
    assert abs(value) < 1e-28 and np.abs(grad).max() < 1e-12


def test_squared_cardioid_by_hand():
    # (1, 1): r2 = 2, F = (2 - 1)^2 - 2 = -1, f = 1; grad F = 2(r2 - x)(2x - 1, 2y) - (2x, 2y) = (0, 2)
    value, grad = value_and_grad("squared_cardioid", (1.0, 1.0))
    assert approx(value, 1.0) and approx(grad, [0.0, -4.0])  # grad f = 2 F grad F
    # the cusp is a flat zero: f ~ r^4
    value, grad = value_and_grad("squared_cardioid", (1e-3, 0.0))
    assert value < 1e-11 and np.abs(grad).max() < 1e-8


def test_rosenbrock_himmelblau_beale_rastrigin_by_hand():
    assert approx(value_and_grad("rosenbrock", (1.0, 1.0))[0], 0.0)
    assert approx(value_and_grad("rosenbrock", (1.0, 1.0))[1], [0.0, 0.0])
    value, grad = value_and_grad("rosenbrock", (0.0, 0.0))
    assert approx(value, 1.0) and approx(grad, [-2.0, 0.0])
    value, grad = value_and_grad("rosenbrock", (-1.0, 2.0))  # 4 + 100; d/dx = -2(2) - 400x(1)
    assert approx(value, 104.0) and approx(grad, [396.0, 200.0])
    for m in LANDSCAPES["himmelblau"].minima:
        value, grad = value_and_grad("himmelblau", m)
        assert value < 1e-9 and np.abs(grad).max() < 1e-4
    value, grad = value_and_grad("himmelblau", (0.0, 0.0))
    assert approx(value, 170.0) and approx(grad, [-14.0, -22.0])
    value, grad = value_and_grad("beale", (3.0, 0.5))
    assert approx(value, 0.0) and approx(grad, [0.0, 0.0])
    assert approx(value_and_grad("beale", (0.0, 0.0))[0], 1.5 ** 2 + 2.25 ** 2 + 2.625 ** 2)
    value, grad = value_and_grad("rastrigin", (0.0, 0.0))
    assert approx(value, 0.0) and approx(grad, [0.0, 0.0])
    value, grad = value_and_grad("rastrigin", (1.0, 0.5))  # 20 + 1 - 10 + 0.25 + 10
    assert approx(value, 21.25) and approx(grad, [2.0, 1.0])


def test_one_dimensional_functions_by_hand():
    x = 2.3
    denom = 0.05 * x * math.sin(2 * x) ** 2 + math.log(x + 1)
    ddenom = 0.05 * math.sin(2 * x) ** 2 + 0.05 * x * 4 * math.sin(2 * x) * math.cos(2 * x) + 1 / (x + 1)
    value, grad = value_and_grad("f1", (x,))
    assert approx(value, 1 / denom) and approx(grad, [-ddenom / denom ** 2])
    value, grad = value_and_grad("f2", (0.0,))
    assert approx(value, -2 * math.exp(-324)) and approx(grad, [0.0])
    value, _ = value_and_grad("f2", (0.6,))
    assert approx(value, -math.exp(-9) - math.exp(-900 * 1.44), tol=1e-12)
    assert value_and_grad("f2", (0.95,))[0] > 0.999999


def test_curved_valley_minimum_and_dips():
    value, grad = value_and_grad("curved_valley", (1.8, 1.62))
    assert abs(value) < 1e-12 and np.abs(grad).max() < 1e-9
    for c in (-1.2, -0.4, 0.4):  # each dip holds a local minimum of the valley floor
        xs = torch.linspace(c - 0.1, c + 0.1, 201, dtype=torch.float64)
        floor = LANDSCAPES["curved_valley"].fn(torch.stack([xs, 0.5 * xs * xs]))
        i = int(torch.argmin(floor))
        assert 0 < i < len(xs) - 1 and floor[i] > 0.6
    X, Y, Z = grid("curved_valley", 150)
    assert Z.min() >= -1e-12


def test_every_landscape_has_consistent_metadata():
    for name, ls in LANDSCAPES.items():
        assert ls.name == name and ls.dim in (1, 2)
        assert len(ls.start) == ls.dim and len(ls.bounds) == ls.dim
        for m in ls.minima:
            assert len(m) == ls.dim
        value, grad = value_and_grad(ls, ls.start)
        assert math.isfinite(value) and np.isfinite(grad).all()


def test_grid_shapes_and_log():
    X, Y, Z = grid("rosenbrock", 50)
    assert X.shape == Y.shape == Z.shape == (50, 50)
    assert approx(Z[7, 11], value_and_grad("rosenbrock", (X[7, 11], Y[7, 11]))[0])
    x, none, z = grid("f2", 64, log=True)
    assert none is None and x.shape == z.shape == (64,) and np.isfinite(z).all()


# ----------------------------------------------------------------- trajectories

def test_trajectories_are_deterministic():
    for opt in ("e_adam", "alto", "lion"):
        a = run_trajectory("rosenbrock", opt, steps=40, lr=0.01, alpha=-5, beta1=0.99, noise=0.5, seed=3)
        b = run_trajectory("rosenbrock", opt, steps=40, lr=0.01, alpha=-5, beta1=0.99, noise=0.5, seed=3)
        for field in ("positions", "losses", "grad_norms", "a_norms"):
            assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True)
        c = run_trajectory("rosenbrock", opt, steps=40, lr=0.01, alpha=-5, beta1=0.99, noise=0.5, seed=4)
        assert not np.array_equal(a.positions, c.positions)


def test_trajectory_shapes_and_a_norms():
    tr = run_trajectory("f1", "alto", steps=25, lr=0.01)
    assert tr.positions.shape == (26, 1) and tr.losses.shape == (26,)
    assert tr.grad_norms.shape == tr.a_norms.shape == (25,)
    assert np.isfinite(tr.a_norms).all() and tr.a_norms[0] > 0
    gd = run_trajectory("f1", "gd", steps=5, lr=0.01)
    assert np.isnan(gd.a_norms).all()
    assert approx(gd.positions[0], [2.3]) and approx(gd.losses[0], value_and_grad("f1", (2.3,))[0])


def test_gd_is_plain_gradient_descent():
    tr = run_trajectory("rosenbrock", "gd", steps=1, lr=1e-3, start=(-1.0, 2.0))
    assert approx(tr.positions[1], [-1.0 - 1e-3 * 396.0, 2.0 - 1e-3 * 200.0])


def test_all_optimizers_run_on_all_landscapes_without_nan():
    for name, ls in LANDSCAPES.items():
        for opt in OPTIMIZERS:
            tr = run_trajectory(ls, opt, steps=80, lr=default_lr(ls, opt))
            assert tr.diverged_at is None, (name, opt)
            assert np.isfinite(tr.positions).all() and np.isfinite(tr.losses).all(), (name, opt)


def test_e_gd_travels_along_the_cardioid_valley_where_gd_stops():
    # Plain GD meets the valley near (1.42, 1.09) and stops there; E-GD (alpha = -20, beta1 = 0.99,
    # prev = g_1 as in the reference's toy rule) slides along the top of the cardioid to the cusp.
    kw = dict(steps=600, lr=0.01, start=(1.5, 1.2))
    gd = run_trajectory("squared_cardioid", "gd", **kw)
    e = run_trajectory("squared_cardioid", "e_gd", alpha=-20, beta1=0.99, **kw)
    pts = torch.as_tensor(gd.positions[-100:].T)
    assert cardioid_residual(pts).abs().max() < 1e-9                 # GD sits in the valley ...
    assert np.abs(np.diff(gd.positions[-100:], axis=0)).max() < 1e-9  # ... and does not move
    assert gd.valley_arc_length < 1e-4  # measured 1.8e-6: GD's final approach is across the valley
    assert e.valley_arc_length > 1.0    # measured 1.141
    assert e.valley_arc_length / gd.valley_arc_length > 1000  # measured ~6e5
    assert e.positions[-1][0] < 0.2 and e.losses[-1] < 1e-6
    # with prev_0 = 0 the effect is much weaker (measured 0.0015), but still there
    z = run_trajectory("squared_cardioid", "e_gd", alpha=-20, beta1=0.99, extra={"init": "zeros"}, **kw)
    assert z.valley_arc_length > 10 * gd.valley_arc_length


def test_valley_arc_length_ignores_motion_across_the_valley():
    t = np.linspace(0.2, 1.2, 50)
    r = 1 + np.cos(t)
    along = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    exact = 4 * (np.sin(1.2 / 2) - np.sin(0.2 / 2))
    assert abs(valley_arc_length("squared_cardioid", along) - exact) < 1e-2
    # along the normal through the cardioid point at t = 0.8
    p0 = np.array([(1 + math.cos(0.8)) * math.cos(0.8), (1 + math.cos(0.8)) * math.sin(0.8)])
    theta = torch.tensor(p0, requires_grad=True)
    (normal,) = torch.autograd.grad(cardioid_residual(theta), theta)
    normal = normal.numpy() / np.linalg.norm(normal.numpy())
    across = p0 + np.linspace(-0.02, 0.02, 41)[:, None] * normal
    assert valley_arc_length("squared_cardioid", across) < 1e-3
    # a closed valley: crossing the cusp from the upper to the lower lobe is a short step
    assert valley_arc_length("squared_cardioid", [[-1e-3, 1e-3], [-1e-3, -1e-3]]) < 3e-3


def test_trust_ratio_paper_scales_the_step_with_the_norm():
    ref = run_trajectory("squared_cardioid", "alto", steps=1, lr=0.01)
    paper = run_trajectory("squared_cardioid", "alto", steps=1, lr=0.01, extra={"trust_ratio": "paper"})
    step_ref = np.linalg.norm(ref.positions[1] - ref.positions[0])
    step_paper = np.linalg.norm(paper.positions[1] - paper.positions[0])
    assert approx(step_ref, 0.01 * math.sqrt(2), tol=1e-6)  # lambda = 0: no trust ratio, |u_i| ~ 1
    assert approx(step_paper, 0.01 * np.linalg.norm(paper.positions[0]), tol=1e-6)


def test_stability_bound_is_enforced():
    assert stability_bound(0.99) == pytest.approx(100.0)
    assert stability_bound(0.0) == 1.0
    with pytest.raises(ValueError, match="beta1"):
        stability_bound(1.0)
    for opt in ("e_gd", "e_sgd", "e_adam", "alto"):
        with pytest.raises(ValueError, match="alpha"):
            run_trajectory("rosenbrock", opt, steps=3, lr=1e-3, alpha=-2, beta1=0.5)
        tr = run_trajectory("rosenbrock", opt, steps=3, lr=1e-4, alpha=-2, beta1=0.5,
                            extra={"allow_unstable": True})
        assert tr.positions.shape == (4, 2)
    run_trajectory("rosenbrock", "e_gd", steps=1, lr=1e-4, alpha=-1.99, beta1=0.5)  # inside the bound


def test_bad_inputs_name_the_field():
    with pytest.raises(ValueError, match="optimizer"):
        run_trajectory("rosenbrock", "adamw", steps=1, lr=1e-3)
    with pytest.raises(ValueError, match="landscape"):
        run_trajectory("nope", "gd", steps=1, lr=1e-3)
    with pytest.raises(ValueError, match="start"):
        run_trajectory("rosenbrock", "gd", steps=1, lr=1e-3, start=(1.0,))
    with pytest.raises(ValueError, match="lr"):
        run_trajectory("rosenbrock", "gd", steps=1, lr=-1.0)
    with pytest.raises(ValueError, match="steps"):
        run_trajectory("rosenbrock", "gd", steps=-1, lr=1e-3)
    with pytest.raises(ValueError, match="noise"):
        run_trajectory("rosenbrock", "gd", steps=1, lr=1e-3, noise=-1.0)
    with pytest.raises(ValueError, match="extra"):
        run_trajectory("rosenbrock", "gd", steps=1, lr=1e-3, extra={"momentun": 0.9})
    with pytest.raises(ValueError, match="n"):
        grid("rosenbrock", 1)


def test_divergence_is_reported_not_raised():
    tr = run_trajectory("rosenbrock", "gd", steps=50, lr=1.0)
    assert tr.diverged_at is not None and np.isnan(tr.positions[tr.diverged_at:]).all()


def test_explorer_figures_and_rows_for_2d_and_1d():
    from alto.probes.landscape import LANDSCAPES, grid, run_trajectory, trajectory_rows
    from alto.plots.landscape import explorer_figures

    for name, keys in (("squared_cardioid", {"main", "loss", "a", "valley"}), ("f1", {"main", "loss", "a", "position"})):
        ls = LANDSCAPES[name]
        runs = {"GD" if ls.dim == 2 else "Adam": run_trajectory(ls, "gd" if ls.dim == 2 else "adam", steps=50, lr=0.01),
                "E-GD" if ls.dim == 2 else "ALTO": run_trajectory(ls, "e_gd" if ls.dim == 2 else "alto", steps=50,
                                                                   lr=0.01, alpha=-20.0 if ls.dim == 2 else -80.0)}
        figures = explorer_figures(ls, runs, grid(ls, 40))
        assert keys <= {k for k, f in figures.items() if f is not None}
        names = " ".join(t.name or "" for t in figures["main"].data)
        assert all(label in names for label in runs)
        rows = trajectory_rows(runs, ls.dim)
        assert [r["optimizer"] for r in rows] == list(runs)
        assert ("distance along valley" in rows[0]) == (ls.dim == 2)
