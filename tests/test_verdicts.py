"""Verdicts on experiments in a real store (PROTOCOL §2-§6): one time-to-target path, misses and
divergence counted, LR selection on the verdict's own quantity, confirmation on fresh seeds,
claims only beside their own metric and threshold, and the same sentence on every surface."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from streamlit.testing.v1 import AppTest

from alto.analysis.claims import PAPER_CLAIMS, beside
from alto.analysis.measured import measure
from alto.analysis.verdicts import arm_summaries, compare, default_pair, select_lrs
from alto.presentation.report import build_report
from alto.runner.queue import queue_confirmation
from alto.store import CONFIRM_TAG, Store
from conftest import ROOT

EVALS = range(0, 1001, 100)


def add_run(store: Store, experiment: int, optimizer: str, lr: float, seed: int, acc, *, status: str = "finished",
            seconds_per_step: float = 0.1, steps: int = 1000, extra=None, tags=(), config=None) -> int:
    """A run whose val/acc at step k is acc(k) (None: not logged there), on a training clock of
    seconds_per_step per step; params as the engine records them; `config` adds run settings."""
    rid = store.add_run(experiment, name=f"{optimizer}-{lr}-{seed}", optimizer=optimizer, seed=seed, lr=lr,
                        config={"dataset": "digits", "model": "mlp", **(config or {})}, total_steps=steps + 1,
                        tags=tags)
    with store.writer(rid, flush_every_s=math.inf) as w:
        for step in range(0, steps + 1, 10):
            values = {"train/loss": 2.0 - step / 1000}
            if step in EVALS and acc(step) is not None:
                values["val/acc"] = acc(step)
                values.update(extra(step) if extra else {})
            w.log(step, values, wall_time=(step + 1) * seconds_per_step)
    store.set_params(rid, {"train_s": (steps + 1) * seconds_per_step, "steps_run": steps + 1})
    store.update_run(rid, status=status)
    return rid


def experiment(store: Store, thresholds=(0.5,), metric="val/acc") -> int:
    return store.create_experiment("cmp", config={"targets": {"metric": metric, "mode": "max",
                                                              "thresholds": list(thresholds)}})


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "v.db")
    yield s
    s.close()


def test_speedup_verdict_lr_choice_and_per_seed_values(store):
    """lamb @0.01 reaches 0.5 at step 500, alto @0.01 at step 250, lamb @0.1 never (3 seeds,
    the clock of seed k runs at 0.1*(1 + 0.1k) s/step)."""
    e = experiment(store)
    for seed in range(3):
        sps = 0.1 * (1 + 0.1 * seed)
        add_run(store, e, "lamb", 0.01, seed, lambda k: min(0.9, k * 0.001), seconds_per_step=sps)
        add_run(store, e, "lamb", 0.1, seed, lambda k: min(0.4, k * 0.0004), seconds_per_step=sps)
        add_run(store, e, "alto", 0.01, seed, lambda k: min(0.95, k * 0.002), seconds_per_step=sps)
    c = compare(store, e)
    assert c.selection.lrs == {"lamb": 0.01, "alto": 0.01} and c.selection.selected
    assert any("edge of its grid" in w for w in c.selection.warnings)
    assert any("unequal tuning budgets" in w for w in c.selection.warnings)
    row = c.row("alto")
    r = row.result
    assert [round(t, 6) for t in r.candidate_times] == [25.1, 27.61, 30.12]  # step 250 -> 251 steps run
    assert r.estimate == pytest.approx(50.1 / 25.1) and r.interval_kind == "ci"
    assert row.confirmed is False and row.verdict.word == "not enough evidence"
    assert "optimistic until confirmed on fresh seeds" in row.verdict.sentence
    assert "Budget: 1,001 steps per run" in row.verdict.sentence
    in_steps = compare(store, e, axis="step").row("alto").result
    assert in_steps.candidate_times == (251.0, 251.0, 251.0)  # after step k has run: k + 1 steps
    arms = {(a.optimizer, a.lr): a for a in arm_summaries(c)}
    slow = arms[("lamb", 0.1)]
    assert slow.reached == 0 and slow.cost is None and not slow.chosen and slow.is_baseline
    assert arms[("alto", 0.01)].chosen and arms[("alto", 0.01)].reach_interval[0] == pytest.approx(0.292, abs=1e-3)
    keys = set(row.as_json())
    assert {"optimizer", "baseline", "metric", "threshold", "speedup", "low", "high", "interval", "reached", "runs",
            "p_improvement", "verdict"} <= keys


def test_confirmation_runs_become_the_basis_of_the_verdict(store):
    e = experiment(store)
    for seed in range(2):
        add_run(store, e, "lamb", 0.01, seed, lambda k: k * 0.001)
        add_run(store, e, "lamb", 0.1, seed, lambda k: k * 0.0002)
        add_run(store, e, "alto", 0.01, seed, lambda k: k * 0.002)
    ids = queue_confirmation(store, e, compare(store, e).selection.lrs, seeds=3)
    fresh = [store.get_run(i) for i in ids]
    assert {r["seed"] for r in fresh} == {2, 3, 4} and all(CONFIRM_TAG in r["tags"] for r in fresh)
    assert {(r["optimizer"], r["lr"]) for r in fresh} == {("alto", 0.01), ("lamb", 0.01)}
    for r in fresh:  # as if trained: alto twice as fast, with some spread between seeds
        store.delete_run(r["id"])
        rate = 0.002 if r["optimizer"] == "alto" else 0.001
        add_run(store, e, r["optimizer"], r["lr"], r["seed"], lambda k, q=rate * (1 + 0.01 * r["seed"]): k * q,
                tags=[CONFIRM_TAG])
    row = compare(store, e).row("alto")
    assert row.confirmed is True and row.result.n_candidate == 3
    assert row.verdict.word == "faster" and "optimistic" not in row.verdict.sentence


def test_a_diverged_lr_never_wins(store):
    """Lamb lr 0.1 reached 0.65 on every seed, then diverged; lr 0.01 finished at 0.60. The
    diverged arm must be neither the best LR nor a source of final values."""
    e = experiment(store, thresholds=(0.55,))
    for seed in range(3):
        add_run(store, e, "lamb", 0.1, seed, lambda k: None if k > 500 else min(0.65, 0.002 * k), status="diverged")
        add_run(store, e, "lamb", 0.01, seed, lambda k: min(0.60, 0.001 * k))
        add_run(store, e, "alto", 0.01, seed, lambda k: min(0.62, 0.001 * k))
    by_time = compare(store, e).selection
    assert by_time.lrs["lamb"] == 0.01
    quality = select_lrs(compare(store, e).outcomes[0.55], objective="final", mode="max")
    assert quality.lrs["lamb"] == 0.01
    diverged = [a for a in arm_summaries(compare(store, e)) if a.lr == 0.1][0]
    assert diverged.diverged == 3 and diverged.reached == 0 and diverged.finals == ()


def test_misses_cost_time_in_the_store_path(store):
    e = experiment(store, thresholds=(0.5,))
    for seed in range(3):
        add_run(store, e, "lamb", 0.01, seed, lambda k: k * 0.001)                # 50.1 s each
    add_run(store, e, "alto", 0.01, 0, lambda k: k * 0.002)                        # 25.1 s
    add_run(store, e, "alto", 0.01, 1, lambda k: k * 0.002)
    add_run(store, e, "alto", 0.01, 2, lambda k: 0.3)                              # misses: ran 100.1 s
    row = compare(store, e).row("alto")
    r = row.result
    assert r.partial and r.interval_kind == "none"
    assert r.estimate == pytest.approx(50.1 / ((25.1 + 25.1 + 100.1) / 2))
    assert row.verdict.word == "not enough evidence"
    assert "2/3 alto and 3/3 lamb runs reached the target" in row.verdict.sentence


def test_failed_runs_are_left_out_and_said_so(store):
    e = experiment(store)
    for seed in range(2):
        add_run(store, e, "lamb", 0.01, seed, lambda k: k * 0.001)
        add_run(store, e, "alto", 0.01, seed, lambda k: k * 0.002)
    add_run(store, e, "alto", 0.01, 9, lambda k: k * 0.009, status="crashed")
    c = compare(store, e)
    assert c.left_out == {"crashed": 1} and c.row("alto").result.n_candidate == 2


def test_bad_arguments_name_themselves(store):
    e = experiment(store, thresholds=())
    add_run(store, e, "lamb", 0.01, 0, lambda k: k * 0.001)
    add_run(store, e, "alto", 0.01, 0, lambda k: k * 0.002)
    with pytest.raises(ValueError, match="threshold"):
        compare(store, e)
    with pytest.raises(ValueError, match="baseline"):
        compare(store, e, thresholds=[0.5], baseline="sgd")
    with pytest.raises(ValueError, match="metric"):
        compare(store, e, metric="val/ppl", thresholds=[0.5])
    assert default_pair(["sgd", "lion"]) == ("sgd", "lion") and default_pair(["alto", "lamb", "sgd"]) == ("alto", "lamb")


def test_claims_stand_only_beside_their_own_metric_and_threshold(store):
    e = experiment(store, thresholds=(0.2, 0.3))
    for seed in range(2):
        for opt, rate in (("lamb", 0.001), ("alto", 0.0012)):
            add_run(store, e, opt, 0.01, seed, lambda k, q=rate * (1 + 0.05 * seed): min(0.7, k * q),
                    extra=lambda k, q=rate: {"test/acc": min(0.7, k * q) - 0.0049 * (opt == "lamb")})
    saved = beside(PAPER_CLAIMS["time_saved"], store, e)
    assert "test/acc ≥ 0.3 (the paper's threshold" in saved and "26.8% saved" in saved
    gain = beside(PAPER_CLAIMS["accuracy_gain"], store, e)
    assert "+0.49 points" in gain and "the paper: +2.49 points" in gain
    other = experiment(store)
    add_run(store, other, "lamb", 0.01, 0, lambda k: k * 0.001)
    add_run(store, other, "alto", 0.01, 0, lambda k: k * 0.002)
    assert beside(PAPER_CLAIMS["time_saved"], store, other).startswith("not comparable here")
    assert beside(PAPER_CLAIMS["gpt2_perplexity"], store, other).startswith("not comparable here")


# -- every surface says the same thing ---------------------------------------------------------------

def test_cli_report_roi_and_compare_agree(filled_copy):
    store = Store(filled_copy)
    sentence = measure(store, 1).row.verdict.sentence
    out = subprocess.run([sys.executable, "-m", "alto.cli", "compare", "--experiment", "1", "--json",
                          "--db", str(filled_copy)], capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    first = rows[0]
    assert (first["optimizer"], first["baseline"], first["metric"], first["threshold"]) == ("alto", "lamb", "val/acc",
                                                                                          0.5)
    assert {r["threshold"] for r in rows} == {0.5, 0.8}  # every target of the experiment
    assert first["sentence"] == sentence and first["interval"] in ("ci", "range", "none")
    assert {r["optimizer"] for r in rows} == {"alto", "sgd", "lion"} and len(rows) == 6
    text = subprocess.run([sys.executable, "-m", "alto.cli", "compare", "--experiment", "1", "--db", str(filled_copy)],
                          capture_output=True, text=True, check=True).stdout
    assert sentence in text
    assert sentence in build_report(store, 1)
    page = AppTest.from_file(str(ROOT / "app" / "sections" / "compare.py"), default_timeout=120).run()
    assert not page.exception and page.markdown[0].value == sentence
    before = page.markdown[0].value
    page.slider[0].set_value(0.9).run()  # the display smoothing: the verdict does not move
    assert page.markdown[0].value == before
    roi = AppTest.from_file(str(ROOT / "app" / "sections" / "roi.py"), default_timeout=120).run()
    assert not roi.exception and roi.markdown[0].value == sentence


def test_roi_page_and_report_survive_an_optimizer_whose_runs_all_diverged(filled_copy):
    """All LION runs diverged before logging a validation value: no KeyError anywhere."""
    store = Store(filled_copy)
    lion = [r for r in store.list_runs(experiment_id=1) if r["optimizer"] == "lion"]
    for r in lion:
        store.update_run(r["id"], status="diverged")
        store.connection().execute("DELETE FROM metrics WHERE run_id = ? AND key_id IN "
                                   "(SELECT id FROM metric_keys WHERE key LIKE 'val/%')", (r["id"],))
    m = measure(store, 1, candidate="lion", baseline="lamb")
    assert not m.usable and m.row.result.reached_candidate == 0
    assert "not reached" in m.row.verdict.sentence
    html = build_report(store, 1, candidate="lion")
    assert "not reached" in html
    page = AppTest.from_file(str(ROOT / "app" / "sections" / "roi.py"), default_timeout=120).run()
    page.sidebar.selectbox[0].set_value("lion").run()
    assert not page.exception
    assert "not reached" in page.markdown[0].value


def test_a_chosen_lr_that_reached_and_fell_back_is_warned_about(store):
    """Fastest to the target, then collapsing (a finite loss, so not 'diverged'): the choice stands,
    as the protocol selects on time to target, and the warning says what it hides."""
    e = experiment(store)
    for seed in range(2):
        add_run(store, e, "lamb", 0.01, seed, lambda k: k * 0.001)
        add_run(store, e, "alto", 0.01, seed, lambda k: k * 0.0008)
        add_run(store, e, "alto", 0.1, seed, lambda k: 0.1 if k > 600 else k * 0.002)  # 0.5 at 250, then 0.1
    selection = compare(store, e).selection
    assert selection.lrs["alto"] == 0.1
    assert any("alto's chosen LR 0.1 reached the target on 2 run(s) but 2 ended past it again (last value 0.1)"
               in w for w in selection.warnings)
