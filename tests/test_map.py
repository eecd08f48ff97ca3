"""The sweep map and LR sensitivity on constructed runs in a real store: every number on the map
is the one `verdicts.compare(where=...)` gives for that swept value, decisive data give a
decisive word, misses are drawn as misses, confounders are reported; and the Map page."""
from __future__ import annotations

import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from alto.analysis.sweep import sweep_map
from alto.analysis.verdicts import compare
from alto.presentation import sweeps
from alto.presentation.report import build_report
from alto.stats.speedup import metric_difference
from alto.stats.verdict import difference_word
from alto.store import Store
from conftest import ROOT
from test_verdicts import add_run

BATCHES = [64, 256, 1024, 4096]
# Steps at which each optimizer's val/acc reaches 0.5 (it rises linearly to 0.5 there, then on to
# a final value): alto keeps pace with lamb at small batch and pulls ahead from 1024 on; sgd is
# slower at 64, faster at 1024 and never reaches at 4096.
REACH = {"lamb": {64: 500, 256: 500, 1024: 500, 4096: 500},
         "alto": {64: 500, 256: 450, 1024: 250, 4096: 200},
         "sgd": {64: 700, 256: 500, 1024: 400, 4096: None}}
FINAL = {"lamb": 0.80, "alto": 0.86, "sgd": 0.75}
NOISY = {("alto", 256): 0.4}  # extra clock spread between seeds: there no interval can decide


def curve(step_at_half: int | None, final: float, wobble: float):
    if step_at_half is None:
        return lambda k: min(0.4, k * 0.0005)
    return lambda k: min(final + wobble, 0.5 * k / step_at_half)


def sweep_experiment(store: Store, seeds: int = 3) -> int:
    e = store.create_experiment("sweep", config={
        "targets": {"metric": "val/acc", "mode": "max", "thresholds": [0.5]},
        "sweep": {"batch_size": BATCHES}, "batch_defaults": "fixed",
        "held": "alto: alpha = -5 at every batch size (held fixed)"})
    for opt, reach in REACH.items():
        for b in BATCHES:
            for seed in range(seeds):
                sps = 0.1 * (1 + NOISY.get((opt, b), 0.02) * seed)  # else the same clock noise in every arm
                rid = add_run(store, e, opt, 0.01, seed, curve(reach[b], FINAL[opt], 0.01 * seed),
                              seconds_per_step=sps, config={"batch_size": b})
                store.set_params(rid, {"hparams": {"lr": 0.01, "alpha": -5.0} if opt == "alto" else {"lr": 0.01}})
    return e


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "map.db")
    yield s
    s.close()


def test_the_map_shows_compares_numbers_for_every_swept_value(store):
    e = sweep_experiment(store)
    m = sweep_map(store, e)
    assert m.key == "batch_size" and m.values == BATCHES and m.baseline == "lamb"
    assert m.candidates == ["alto", "sgd"] and m.thresholds == [0.5]
    speedups, differences = sweeps.map_marks(m)
    for cand in m.candidates:
        assert len(speedups[cand]) == len(BATCHES) == len(differences[cand])  # one point per (optimizer, batch)
        for b, mark, dmark in zip(BATCHES, speedups[cand], differences[cand]):
            row = compare(store, e, where={"batch_size": b}).row(cand)
            r = row.result
            assert mark.x == b and mark.estimate == r.estimate and (mark.low, mark.high) == (r.low, r.high)
            assert mark.kind == r.interval_kind and mark.word == ("" if r.estimate is None else row.verdict.word)
            assert m.point(cand, b).row.verdict.sentence == row.verdict.sentence
            finals = {n: [o.final for o in outs] for n, outs in row.arms.items()}
            d = metric_difference(finals[cand], finals["lamb"])  # one LR each: the quality choice is the same
            assert dmark.estimate == pytest.approx(100 * d.estimate) and dmark.kind == "ci"
            assert dmark.low == pytest.approx(100 * d.low) and dmark.high == pytest.approx(100 * d.high)
            assert dmark.word == difference_word(d, "max")


def test_decisive_data_give_decisive_words_and_the_one_glance_answer(store):
    e = sweep_experiment(store)
    m = sweep_map(store, e)
    words = {b: m.point("alto", b).word for b in BATCHES}
    assert words[1024] == words[4096] == "faster"                   # 2x and 2.5x, 3 seeds, tight clocks
    assert words[64] == "no meaningful difference"                  # the same curve: ratio 1 within the margin
    assert m.point("alto", 1024).row.result.interval_kind == "ci"
    assert m.pays_off_from("alto") == 1024
    text = sweeps.answer(m, "alto")
    assert "faster from batch size 1024 on" in text and "no decisive verdict at 64, 256" in text
    assert m.point("sgd", 64).word == "slower" and m.point("sgd", 4096).word == "not enough evidence"
    assert m.point("alto", 1024).difference_word == "better"        # 0.86 vs 0.80, seeds within 0.02
    assert m.pays_off_from("sgd") is None and "faster at batch size 1024 only" in sweeps.answer(m, "sgd")


def test_misses_are_drawn_as_misses_and_intervals_as_whiskers(store):
    e = sweep_experiment(store)
    m = sweep_map(store, e)
    fig = sweeps.map_figure(m)
    traces = {t.name: t for t in fig.data if t.name}
    miss = traces["sgd (missed)"]
    assert list(miss.text) == ["sgd missed"] and miss.marker.symbol == "x-thin-open"
    assert miss.y[0] < min(v for t in fig.data if t.yaxis == "y" and t.y is not None for v in t.y if v != miss.y[0])
    ci = traces["alto (95% CI)"]
    r = m.point("alto", 1024).row.result
    i = list(ci.text).index("faster")
    assert ci.y[i] == r.estimate and ci.error_y.array[i] == pytest.approx(r.high - r.estimate)
    assert ci.error_y.arrayminus[i] == pytest.approx(r.estimate - r.low)
    assert math.isclose(ci.x[i] / 1024, math.exp(-sweeps_spread()), rel_tol=1e-9)  # candidates set apart
    assert "faster" in ci.text and "no meaningful difference" in ci.text


def sweeps_spread() -> float:
    from alto.plots.sweep import SPREAD
    return SPREAD / 2


def test_a_sweep_is_never_pooled_and_a_where_must_name_a_swept_setting(store):
    e = sweep_experiment(store, seeds=2)
    with pytest.raises(ValueError, match="sweeps batch_size .*batch_size=64, batch_size=256.*one at a time"):
        compare(store, e)
    with pytest.raises(ValueError, match="does not sweep 'epochs'"):
        compare(store, e, where={"epochs": 3})
    c = compare(store, e, where={"batch_size": 256})
    assert c.workload == "digits (mlp), batch_size=256" and c.row("alto").result.n_candidate == 2
    assert "On digits (mlp), batch_size=256, alto" in c.row("alto").verdict.sentence


def test_confounders_are_read_from_what_the_runs_used(store):
    e = sweep_experiment(store, seeds=2)
    for run in store.list_runs(experiment_id=e):  # as if alpha followed the paper's switch at 1024
        if run["optimizer"] == "alto":
            alpha = 0.5 if run["config"]["batch_size"] < 1024 else -5.0
            store.set_params(run["id"], {"hparams": {"lr": 0.01, "alpha": alpha}})
    m = sweep_map(store, e)
    assert m.varying == {"alto": {"alpha": {64: 0.5, 256: 0.5, 1024: -5.0, 4096: -5.0}}}
    assert m.switches() == [(256, 1024)]
    note = sweeps.varying_note(m)
    assert "alto's alpha changes with batch size" in note and "Confounded" in note
    fig = sweeps.map_figure(m)
    assert any(s.type == "line" and s.x0 == pytest.approx(math.sqrt(256 * 1024)) for s in fig.layout.shapes)
    held = sweep_map(store, sweep_experiment(store, seeds=2))
    assert held.varying == {} and "the same at every batch size" in sweeps.varying_note(held)


def test_lr_sensitivity_marks_diverged_lrs_and_the_chosen_one(store):
    e = store.create_experiment("lrs", config={"targets": {"metric": "val/acc", "mode": "max", "thresholds": [0.5]}})
    for seed in range(3):
        for opt in ("alto", "lamb"):
            add_run(store, e, opt, 0.001, seed, lambda k: min(0.7, 0.0006 * k))
            add_run(store, e, opt, 0.01, seed, lambda k, s=seed: min(0.85 + 0.01 * s, 0.002 * k))
        add_run(store, e, "alto", 0.1, seed, lambda k: None if k > 300 else 0.001 * k, status="diverged")
        add_run(store, e, "lamb", 0.1, seed, lambda k: min(0.6, 0.001 * k))
    c = compare(store, e)
    arms = {(a.optimizer, a.lr): a for a in sweeps.lr_arms(c)}
    assert arms[("alto", 0.1)].diverged == 3 and arms[("alto", 0.1)].finals == ()
    assert arms[("alto", 0.01)].chosen and np.mean(arms[("alto", 0.01)].finals) == pytest.approx(0.86)
    fig = sweeps.lr_figure(c)
    traces = {t.name: t for t in fig.data}
    assert list(traces["alto diverged"].x) == [0.1] and "3/3 diverged" in traces["alto diverged"].text[0]
    assert list(traces["alto"].x) == [0.001, 0.01] and traces["alto"].marker.symbol[1] == "circle-open-dot"
    band = traces["alto min–max"]
    assert max(band.y) == pytest.approx(0.87) and min(band.y) == pytest.approx(0.6)  # 0.0006 * 1000
    assert "lamb diverged" not in traces and "alto: 3 LRs, 1 with diverged runs" in sweeps.tuning_note(c)


def test_the_report_has_the_map_section(store):
    e = sweep_experiment(store, seeds=2)
    html = build_report(store, e)
    opening = html.split("<p class='verdict'>", 1)[1]
    assert opening.startswith("alto vs lamb to val/acc ≥ 0.5: faster from batch size 1024 on")
    assert "Where does it pay off? The sweep map" in html and "As declared: alto: alpha = -5" in html
    assert html.count("plotly.js v") == 1  # inlined once, by the map


def test_the_map_page(store, tmp_path, monkeypatch):
    e = sweep_experiment(store, seeds=2)
    monkeypatch.setenv("ALTO_DB", str(store.path))
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "map.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    markdown = " ".join(m.value for m in at.markdown)
    assert "alto vs lamb to val/acc ≥ 0.5: faster from batch size 1024 on" in markdown
    assert len(at.get("plotly_chart")) >= 2                          # the map and LR sensitivity
    frames = [f.value for f in at.dataframe]
    assert any("quality verdict" in f.columns and len(f) == 2 * len(BATCHES) for f in frames)
    assert e == at.session_state["experiment_id"]


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("sa, sb", [(0.01, 0.01), (0.005, 0.02), (0.02, 0.005)])
def test_the_difference_ci_behind_better_and_worse_is_calibrated(n, sa, sb):
    """Final values ~ normal per seed: Welch's CI covers the true difference >= 93% of the time at
    2, 3 and 5 seeds, unequal spreads included, and a true difference of 0 reads "better" <= 5%."""
    rng = np.random.default_rng(100 * n + int(1000 * sa))
    covered = better = 0
    for _ in range(1500):
        a, b = rng.normal(0.86, sa, n), rng.normal(0.85, sb, n)
        d = metric_difference(list(a), list(b))
        covered += d.low <= 0.01 <= d.high
        same = metric_difference(list(rng.normal(0.85, sa, n)), list(b))
        better += difference_word(same, "max") == "better"
    assert covered / 1500 >= 0.93, f"coverage {covered / 1500:.3f}"
    assert better / 1500 <= 0.05, f"a true 0 read 'better' {better / 1500:.3f} of the time"
    flagged = metric_difference([0.9, 0.91], [0.5, 0.51])
    assert difference_word(flagged, "max") == "better" and difference_word(flagged, "min") == "worse"
    assert difference_word(flagged, "max", ("unconfirmed",)) == "not enough evidence"


def test_confirming_a_sweep_confirms_every_value_at_its_own_chosen_lrs(store):
    e = sweep_experiment(store, seeds=2)
    for b, lr in ((64, 0.1), (1024, 0.001)):  # a second, worse LR for alto at two batch sizes
        for seed in range(2):
            add_run(store, e, "alto", lr, seed, curve(900, 0.7, 0.0), config={"batch_size": b})
    ids = queue_confirmation_everywhere(store, e)
    fresh = [store.get_run(i) for i in ids]
    assert sorted({r["config"]["batch_size"] for r in fresh}) == BATCHES
    assert {(r["config"]["batch_size"], r["lr"]) for r in fresh if r["optimizer"] == "alto"} == {
        (b, 0.01) for b in BATCHES}
    assert all(r["status"] == "queued" and "confirm" in r["tags"] for r in fresh)
    assert len(fresh) == len(BATCHES) * 3 * 1


def queue_confirmation_everywhere(store, e):
    from alto.runner.queue import queue_sweep_confirmation
    return queue_sweep_confirmation(store, e, 1)


def test_the_command_line_map_and_compare_where(store):
    import json
    import os
    import subprocess
    import sys

    e = sweep_experiment(store, seeds=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def alto(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "alto.cli", *args, "--db", str(store.path)],
                              capture_output=True, text=True, env=env)
    data = json.loads(alto("map", "--experiment", str(e), "--json").stdout)
    m = sweep_map(store, e)
    assert data["setting"] == "batch_size" and data["pays_off_from"] == {"alto": 1024, "sgd": None}
    first = next(p for p in data["points"] if p["optimizer"] == "alto" and p["value"] == 1024)
    assert first["speedup"] == m.point("alto", 1024).row.result.estimate and first["verdict"] == "faster"
    assert first["difference"]["verdict"] == m.point("alto", 1024).difference_word
    pooled = alto("compare", "--experiment", str(e))
    assert pooled.returncode != 0 and "sweeps batch_size" in pooled.stderr
    one = json.loads(alto("compare", "--experiment", str(e), "--where", "batch_size=1024", "--json").stdout)
    assert {r["optimizer"]: r["speedup"] for r in one} == {
        c: m.point(c, 1024).row.result.estimate for c in ("alto", "sgd")}
    # the steps-to-target factor is read at the same swept value, not lost to the unpinned sweep
    assert {r["optimizer"]: r["factors"]["steps_to_target"]["measured"] for r in one} == {
        c: compare(store, e, where={"batch_size": 1024}, axis="step").row(c).result.estimate for c in ("alto", "sgd")}


def test_compare_asks_which_swept_value(store, monkeypatch):
    e = sweep_experiment(store, seeds=2)
    monkeypatch.setenv("ALTO_DB", str(store.path))
    at = AppTest.from_file(str(ROOT / "app" / "sections" / "compare.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    swept = next(s for s in at.selectbox if s.label == "Swept value")
    assert swept.value == {"batch_size": 64}
    swept.set_value({"batch_size": 1024}).run()
    expected = compare(store, e, where={"batch_size": 1024}).row("alto").verdict.sentence
    assert expected in [m.value for m in at.markdown]
