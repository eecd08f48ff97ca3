"""alto.plots: trace counts and names, one colour per optimizer, <= 2,000 points per trace."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from alto.analysis.savings import RoiInputs, sensitivity as savings_at, speedup_grid
from alto.plots import (
    OPTIMIZER_COLORS, bar_with_ci, color_for, contour_with_paths, curves, heatmap,
    runs_overlay, sensitivity,
)

LIMIT = 2000


def points(trace) -> int:
    """Points a trace draws (x length, or columns of a heatmap)."""
    for attr in ("x", "y"):
        v = getattr(trace, attr, None)
        if v is not None:
            return len(v)
    return 0


def assert_small(fig: go.Figure) -> None:
    for tr in fig.data:
        assert points(tr) <= LIMIT, tr.name
    for fr in fig.frames:
        for tr in fr.data:
            assert points(tr) <= LIMIT, tr.name


def group(n: int, offset: float) -> dict:
    grid = np.arange(n, dtype=float)
    mean = 1.0 / (1.0 + grid) + offset
    return {"grid": grid, "mean": mean, "std": np.full(n, 0.01), "min": mean - 0.02,
            "max": mean + 0.02, "n": np.full(n, 3)}


def test_palette_is_consistent_across_name_forms():
    alto = OPTIMIZER_COLORS["alto"]
    assert color_for("alto") == color_for("ALTO") == color_for("alto (lr=0.01)") == alto
    assert color_for("alto seed 2") == color_for("alto · seed 2") == alto
    assert color_for("E-SGD") == OPTIMIZER_COLORS["e_sgd"]
    assert color_for("Lamb+BC") == OPTIMIZER_COLORS["lamb_bc"]
    assert color_for("mystery") == color_for("mystery")  # unknown names: stable colour
    assert len(set(OPTIMIZER_COLORS.values())) == len(OPTIMIZER_COLORS)


def test_curves_traces_names_colours_and_limit():
    fig = curves({"alto": group(5000, 0.0), "lamb": group(5000, 0.1)}, title="loss",
                 x_label="step", y_label="loss")
    assert len(fig.data) == 10  # per optimizer: 2 envelope + 2 band + mean
    means = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in means] == ["alto", "lamb"]
    assert means[0].line.color == OPTIMIZER_COLORS["alto"]
    assert {t.legendgroup for t in fig.data} == {"alto", "lamb"}
    assert [t.name for t in fig.data[:5]] == [
        "alto min-max upper", "alto min-max", "alto ±1 std upper", "alto ±1 std", "alto"]
    assert fig.data[1].fill == "tonexty" and fig.data[3].fill == "tonexty"
    assert fig.layout.title.text == "loss" and fig.layout.xaxis.title.text == "step"
    assert_small(fig)
    assert fig.data[4].x[-1] == 4999  # the last point survives downsampling

    bare = curves({"alto": group(10, 0.0)}, show_band=False, show_envelope=False)
    assert [t.name for t in bare.data] == ["alto"]
    only_mean = curves({"sgd": {"grid": [0, 1, 2], "mean": [3.0, 2.0, 1.0]}})
    assert len(only_mean.data) == 1
    with pytest.raises(ValueError, match="mean"):
        curves({"sgd": {"grid": [0, 1]}})


def test_curves_log_axis_hides_non_positive_values():
    g = group(20, 0.0)
    g["std"] = np.full(20, 10.0)  # mean - std < 0
    fig = curves({"alto": g}, log_y=True)
    assert fig.layout.yaxis.type == "log"
    lower_band = fig.data[3]
    assert np.all(np.isnan(np.asarray(lower_band.y, dtype=float)))


def test_runs_overlay():
    x = np.arange(9000.0)
    fig = runs_overlay({"alto seed 0": (x, x), "alto seed 1": (x, x + 1), "sgd seed 0": (x, -x)})
    assert [t.name for t in fig.data] == ["alto seed 0", "alto seed 1", "sgd seed 0"]
    assert fig.data[0].line.color == fig.data[1].line.color == OPTIMIZER_COLORS["alto"]
    assert fig.data[2].line.color == OPTIMIZER_COLORS["sgd"]
    assert_small(fig)
    with pytest.raises(ValueError, match="alto"):
        runs_overlay({"alto": (x, x[:-1])})


def test_heatmap_limits_columns():
    z = np.random.default_rng(0).random((12, 5000)) + 0.1
    fig = heatmap(z, np.arange(5000), [f"layer{i}" for i in range(12)], "trust ratio",
                  log_color=True)
    (tr,) = fig.data
    assert len(tr.x) <= LIMIT and np.asarray(tr.z).shape == (12, len(tr.x))
    assert list(tr.y) == [f"layer{i}" for i in range(12)]
    np.testing.assert_allclose(np.asarray(tr.z)[:, 0], np.log10(z[:, 0]))
    with pytest.raises(ValueError, match="matrix"):
        heatmap(z, np.arange(10), ["a"], "bad")


def test_bar_with_ci():
    fig = bar_with_ci(["alto", "lion", "sgd"], [2.0, 1.1, 0.8], [1.5, None, 0.7],
                      [2.5, None, 0.9], "speed-up", reference=1.0, reference_label="Lamb")
    (bar,) = fig.data
    np.testing.assert_allclose(bar.error_y.array, [0.5, 0.0, 0.1])
    np.testing.assert_allclose(bar.error_y.arrayminus, [0.5, 0.0, 0.1])
    assert bar.customdata[1] == "no CI"
    assert list(bar.marker.color) == [color_for(n) for n in ("alto", "lion", "sgd")]
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0].y0 == 1.0
    with pytest.raises(ValueError, match="equal length"):
        bar_with_ci(["a"], [1.0, 2.0], [1.0], [1.0])


def test_sensitivity_marks_measured_point_and_paper_claim():
    inputs = RoiInputs(1.2, 1.05, 1.35, "faster", 2.5, 8, 24.0, 100)
    grid = speedup_grid(1.2, 1.35, 1.42, n=5000)
    fig = sensitivity(grid, savings_at(inputs, grid), measured=(1.2, 1.05, 1.35), paper=1.42)
    curve, measured, paper = fig.data
    assert len(curve.x) <= LIMIT
    assert measured.x[0] == 1.2 and "measured" in measured.name
    assert measured.error_x.array[0] == pytest.approx(0.15)
    assert measured.y[0] == pytest.approx(savings_at(inputs, np.array([1.2]))[0], rel=1e-3)
    assert "claim" in paper.name.lower() and "claim" in paper.text[0]
    assert paper.x[0] == 1.42
    no_ci = sensitivity(grid, savings_at(inputs, grid), measured=(1.2, None, None))
    assert no_ci.data[1].error_x.array is None and "no CI" in no_ci.data[1].name
    with pytest.raises(ValueError, match="paper"):
        sensitivity(np.linspace(0.5, 1.2, 10), np.zeros(10), paper=1.42)


def test_contour_with_paths_animates_over_steps():
    xs, ys = np.linspace(-2, 2, 60), np.linspace(-1.5, 1.5, 50)
    X, Y = np.meshgrid(xs, ys)
    Z = (X**2 + Y**2 - X) ** 2
    t = np.linspace(0, 1, 3000)
    paths = {"SGD": np.c_[t, t], "E-SGD": np.c_[-t[:1500], t[:1500]]}
    fig = contour_with_paths(X, Y, Z, paths, "cardioid", n_frames=20, log_z=True)
    assert isinstance(fig.data[0], go.Contour) and len(fig.data) == 1 + 2 * 2
    assert [t.name for t in fig.data[1:]] == ["SGD", "SGD now", "E-SGD", "E-SGD now"]
    assert fig.data[1].line.color == OPTIMIZER_COLORS["sgd"]
    assert fig.data[3].line.color == OPTIMIZER_COLORS["e_sgd"]
    assert len(fig.frames) == 20 and len(fig.layout.sliders[0].steps) == 20
    assert fig.layout.sliders[0].active == 19
    assert len(fig.frames[0].data[0].x) == 1  # step 0: only the start
    assert len(fig.frames[-1].data[0].x) <= 301  # frames carry a thinner path
    assert fig.frames[-1].data[0].x[-1] == pytest.approx(1.0)  # ... ending at the head
    assert fig.frames[-1].data[1].x[0] == pytest.approx(1.0)
    assert fig.frames[-1].data[3].x[-1] == pytest.approx(-t[1499])  # shorter path: its end
    mid = int(fig.frames[10].name)
    assert fig.frames[10].data[1].x[0] == pytest.approx(t[mid])  # exact head mid-way
    assert list(fig.frames[0].traces) == [1, 2, 3, 4]
    assert_small(fig)
    with pytest.raises(ValueError, match="Z must have shape"):
        contour_with_paths(xs, ys, Z.T, paths)
    with pytest.raises(ValueError, match="SGD"):
        contour_with_paths(xs, ys, Z, {"SGD": np.zeros((5, 3))})
