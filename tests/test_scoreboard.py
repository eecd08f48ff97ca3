"""The scoreboard across workloads (one per experiment, one per swept value) in a real store: costs
per success, ratios to the fastest, the performance profile and its area against hand-computed
values, through `alto scoreboard --json` in a subprocess; and the profile maths itself."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from alto.analysis.scoreboard import BEST, NOT_RUN, scoreboard
from alto.stats.profile import profile, profile_area, profile_steps, ratios
from alto.store import Store
from conftest import ROOT
from test_verdicts import add_run

# Steps at which val/acc (rising linearly, evaluated every 100 steps) crosses 0.5; None: never.
# On a clock of sps seconds per step, a crossing at step k between evaluations 100 apart is
# interpolated to (k + 1) * sps seconds.
SWEPT = {64: {"alto": 500, "lamb": 500, "sgd": 500},
         256: {"alto": 250, "lamb": 500, "sgd": 500},
         1024: {"alto": 250, "lamb": 400, "sgd": None},
         4096: {"alto": 500, "lamb": 200, "sgd": 250}}
PLAIN = {"alto": 125, "lamb": 500, "sgd": 250}
MISSED = {"alto": None, "lamb": None}


def curve(step: int | None):
    return (lambda k: min(0.45, k * 0.0004)) if step is None else (lambda k: 0.5 * k / step)


def sps(seed: int) -> float:
    return 0.1 * (1 + 0.01 * seed)  # the same for every optimizer: ratios of costs are ratios of steps


def target() -> dict:
    return {"targets": {"metric": "val/acc", "mode": "max", "thresholds": [0.5, 0.9]}}


def five_workloads(store: Store) -> tuple[int, int, int]:
    sweep = store.create_experiment("sweep", config={**target(), "sweep": {"batch_size": list(SWEPT)}})
    for b, reach in SWEPT.items():
        for opt, step in reach.items():
            for seed in range(3):
                add_run(store, sweep, opt, 0.01, seed, curve(step), seconds_per_step=sps(seed),
                        config={"batch_size": b})
    plain = store.create_experiment("plain", config=target())
    missed = store.create_experiment("missed", config=target())
    for experiment, reach in ((plain, PLAIN), (missed, MISSED)):
        for opt, step in reach.items():
            for seed in range(3):
                add_run(store, experiment, opt, 0.01, seed, curve(step), seconds_per_step=sps(seed))
    return sweep, plain, missed


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "board.db")
    yield s
    s.close()


# r by hand: the step a crossing is counted at is k + 1, and every arm's clock is the same
R = {"alto": [1.0, 1.0, 1.0, 501 / 201, 1.0],
     "lamb": [1.0, 501 / 251, 401 / 251, 1.0, 501 / 126],
     "sgd": [1.0, 501 / 251, math.inf, 251 / 201, 251 / 126]}


def hand_area(rs: list[float]) -> float:
    """Integral of the step function rho over [1, 4], piece by piece, over 3."""
    inside = sorted(r for r in rs if r <= 4)
    area, share = 0.0, 0.0
    edges = [1.0] + inside + [4.0]
    for i, left in enumerate(edges[:-1]):
        share = sum(r <= left for r in rs) / len(rs)
        area += share * (edges[i + 1] - left)
    return area / 3


def test_alto_scoreboard_json_gives_the_profile_and_its_hand_computed_area(store, tmp_path):
    sweep, plain, missed = five_workloads(store)
    out = subprocess.run([sys.executable, "-m", "alto.cli", "scoreboard", "--json", "--db", str(store.path)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    data = json.loads(out.stdout)
    assert data["scored"] == 5 and data["optimizers"] == ["alto", "lamb", "sgd"] and data["tau"] == [1.0, 4.0]
    names = [w["workload"] for w in data["workloads"]]
    assert names == [f"digits (mlp), batch_size={b}" for b in SWEPT] + ["digits (mlp)"]
    for i, w in enumerate(data["workloads"]):
        for opt in R:
            want = R[opt][i]
            assert (w["r"][opt] == "inf") if math.isinf(want) else w["r"][opt] == pytest.approx(want, rel=1e-9)
    assert data["area"]["alto"] == pytest.approx((3 + 3 + 3 + (4 - 501 / 201) + 3) / 3 / 5, rel=1e-12)
    for opt, rs in R.items():
        assert data["area"][opt] == pytest.approx(hand_area(rs), rel=1e-12)
    assert data["profile"]["alto"] == [[1.0, 0.8], [pytest.approx(501 / 201), 1.0], [4.0, 1.0]]
    assert data["profile"]["sgd"][-1] == [4.0, 0.8]                        # the miss never enters
    assert [w["experiment"] for w in data["every_optimizer_missed"]] == [missed]  # listed, not scored
    first = data["workloads"][0]["verdict"]
    assert first["alto"] == BEST and first["lamb"] == first["sgd"] == "no meaningful difference"
    assert data["workloads"][2]["verdict"]["lamb"] == "slower"             # 1.6x, three tight seeds
    assert data["workloads"][2]["verdict"]["sgd"] == "not enough evidence"  # it missed: no interval


def test_text_output_and_fewer_than_five_workloads_show_no_profile(store):
    sweep, plain, missed = five_workloads(store)
    out = subprocess.run([sys.executable, "-m", "alto.cli", "scoreboard", "--db", str(store.path)],
                         capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "rho_alto(tau): 80% at 1, 100% at 2.49, 100% at 4" in out.stdout
    assert "1.99 (slower)" in out.stdout and "∞ (not enough evidence)" in out.stdout
    assert "every optimizer missed" in out.stdout
    few = scoreboard(store, experiment_ids=[plain, missed])
    assert not few.enough and few.profile() is None and few.areas() is None and len(few.workloads) == 1
    only = scoreboard(store, experiment_ids=[sweep], optimizers=["alto", "lamb"])
    assert only.optimizers == ["alto", "lamb"] and only.workloads[2].ratios["lamb"] == pytest.approx(401 / 251)


def test_an_optimizer_that_did_not_run_counts_as_a_miss_and_says_so(store):
    sweep, plain, missed = five_workloads(store)
    extra = store.create_experiment("with lion", config=target())
    for opt, step in (("alto", 500), ("lion", 250)):
        for seed in range(2):
            add_run(store, extra, opt, 0.01, seed, curve(step), seconds_per_step=sps(seed))
    board = scoreboard(store)
    assert board.optimizers == ["alto", "lamb", "lion", "sgd"]
    last = board.workloads[-1]
    assert last.words["lamb"] == NOT_RUN and math.isinf(last.ratios["lamb"]) and last.fastest == "lion"
    assert math.isinf(board.workloads[0].ratios["lion"]) and board.workloads[0].words["lion"] == NOT_RUN
    with pytest.raises(ValueError, match="optimizers: adamw ran on none"):
        scoreboard(store, optimizers=["alto", "adamw"])


def test_unfinished_experiments_and_those_without_a_target_are_skipped(store):
    e = store.create_experiment("no target")
    add_run(store, e, "alto", 0.01, 0, curve(100))
    running = store.create_experiment("running", config=target())
    add_run(store, running, "alto", 0.01, 0, curve(100))
    add_run(store, running, "lamb", 0.01, 0, curve(100), status="running")
    board = scoreboard(store)
    assert board.skipped == [(e, "sets no target"), (running, "1 of its runs have not finished")]


def test_profile_maths():
    rs = [1.0, 2.0, math.inf, 1.5]
    assert ratios({"a": 2.0, "b": 3.0, "c": math.inf}) == {"a": 1.0, "b": 1.5, "c": math.inf}
    assert list(profile(rs, [1.0, 1.5, 1.99, 2.0, 4.0])) == [0.25, 0.5, 0.5, 0.75, 0.75]
    assert profile_steps(rs) == [(1.0, 0.25), (1.5, 0.5), (2.0, 0.75), (4.0, 0.75)]
    assert profile_area(rs) == pytest.approx((3 + 2 + 0 + 2.5) / 3 / 4)
    assert profile_area([1.0] * 5) == 1.0 and profile_area([math.inf, 9.0]) == 0.0
    with pytest.raises(ValueError, match="every optimizer missed"):
        ratios({"a": math.inf, "b": math.inf})
    with pytest.raises(ValueError, match=">= 1"):
        profile_area([0.5])
    with pytest.raises(ValueError, match="cost must be > 0"):
        ratios({"a": 0.0})


def test_the_scoreboard_page(store, monkeypatch):
    five_workloads(store)
    monkeypatch.setenv("ALTO_DB", str(store.path))
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "scoreboard.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    areas = at.dataframe[0].value
    assert list(areas["optimizer"])[0] == "alto" and areas["area (0–1)"].iloc[0] == pytest.approx(0.9005, abs=1e-3)
    assert len(at.get("plotly_chart")) == 1 and len(at.dataframe[1].value) == 5
    assert any("every optimizer missed" in c.value for c in at.caption)
