"""The paper's headline claims, each with how it was obtained.

Zhao et al., "Exploring Landscapes for Better Minima along Valleys", NeurIPS 2025,
arXiv 2510.27153. Every result there is a mean of three runs reported without variance
(the 29.68% time saving is a single run). These are claims, not measurements: the ROI page
shows them as a labelled "paper claims" scenario beside what was measured here, and a
measurement stands beside a claim only when it was taken at the claim's own metric and
threshold (`beside`); otherwise the claim is "not comparable here".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

from .savings import RoiInputs, with_speedup
from .verdicts import compare


@dataclass(frozen=True)
class PaperClaim:
    key: str
    claim: str
    value: float
    unit: str
    how_obtained: str
    caveats: str
    n_runs: int | None  # runs behind the number (None: not stated)
    speedup: float | None = None  # wall-clock speed-up implied, usable as an ROI scenario
    details: dict = field(default_factory=dict)
    metric: str | None = None     # what the paper measured it on
    threshold: float | None = None  # for a time-to-target claim: its target


_ALTO_S, _LAMB_S = 608.0, 864.7
# time saved at other test-accuracy thresholds (%) of the same VGG-16 / CIFAR-100 run
_SAVED_BY_THRESHOLD = {20: 0.301, 30: 0.268, 40: 0.184, 50: 0.171, 60: 1 - _ALTO_S / _LAMB_S}
_TABLE3_LARGE_BATCH_GAINS = (88.83 - 83.56, 57.78 - 56.06, 70.83 - 70.34)  # ALTO - Lamb, points
_LION_MS, _ALTO_MS = 253.0, 332.0

PAPER_CLAIMS: MappingProxyType[str, PaperClaim] = MappingProxyType({c.key: c for c in (
    PaperClaim(
        key="time_saved",
        claim="29.68% computation time saved",
        value=1 - _ALTO_S / _LAMB_S,
        unit="fraction of Lamb's wall-clock time",
        how_obtained=("VGG-16 on CIFAR-100, batch 16384, constant LR: wall-clock to first reach "
                      f"60% test accuracy, ALTO {_ALTO_S} s vs Lamb {_LAMB_S} s, so "
                      f"speed-up {_LAMB_S / _ALTO_S:.3f}x = 1 / (1 - 0.2968)."),
        caveats=("One run at one threshold, on a test metric. Other thresholds of the same run "
                 "give 30.1% (20%), 26.8% (30%), 18.4% (40%), 17.1% (50%). ALTO's per-epoch "
                 "time is higher; the saving comes from fewer epochs."),
        n_runs=1,
        speedup=_LAMB_S / _ALTO_S,
        details={"alto_s": _ALTO_S, "lamb_s": _LAMB_S, "threshold_pct": 60,
                 "speedup_by_threshold": {t: 1 / (1 - f) for t, f in _SAVED_BY_THRESHOLD.items()}},
        metric="test/acc", threshold=0.6,
    ),
    PaperClaim(
        key="accuracy_gain",
        claim="+2.5% average test accuracy over Lamb at large batch",
        value=sum(_TABLE3_LARGE_BATCH_GAINS) / len(_TABLE3_LARGE_BATCH_GAINS),
        unit="accuracy points",
        how_obtained=("No formula is given; it matches the mean ALTO - Lamb gain over the three "
                      "large-batch columns of Table 3: CIFAR-10 bs16384 +5.27, CIFAR-100 "
                      "bs16384 +1.72, ImageNet bs4096 +0.49 -> 2.49 points."),
        caveats=("Means of three runs without variance. Over all 13 large-batch vision results "
                 "the mean gain over Lamb is about 1.0 point."),
        n_runs=3,
        details={"gains": dict(zip(("c10_bs16384", "c100_bs16384", "in_bs4096"),
                                   _TABLE3_LARGE_BATCH_GAINS))},
        metric="test/acc",
    ),
    PaperClaim(
        key="gpt2_perplexity",
        claim="GPT-2 345M, batch 4096, 5k iterations: test perplexity 78.37 vs Lamb 83.13",
        value=78.37 / 83.13 - 1,
        unit="relative change in test perplexity",
        how_obtained=("Table 5c: ALTO 78.37, Lamb 83.13 (-5.7%); Adam 87.74, AdamW 86.51, "
                      "Lion 110.54, AdaBelief 182.8."),
        caveats="Means of three runs without variance; fixed 5k iterations, not time to target.",
        n_runs=3,
        details={"alto": 78.37, "lamb": 83.13, "adam": 87.74, "adamw": 86.51, "lion": 110.54,
                 "adabelief": 182.8},
        metric="test/ppl",
    ),
    PaperClaim(
        key="fewer_iterations_vs_lion",
        claim="66% fewer iterations than Lion to reach perplexity 200",
        value=0.66,
        unit="fraction of Lion's iterations saved",
        how_obtained=("Training (not test) perplexity 200 on GPT-2. Per-iteration time Lion "
                      f"{_LION_MS:.0f} ms vs ALTO {_ALTO_MS:.0f} ms, so the wall-clock saving "
                      "is about 56%."),
        caveats="A training metric; the step count saving overstates the wall-clock saving.",
        n_runs=None,
        speedup=1 / ((1 - 0.66) * _ALTO_MS / _LION_MS),
        details={"lion_ms": _LION_MS, "alto_ms": _ALTO_MS},
        metric="train/ppl", threshold=200.0,
    ),
    PaperClaim(
        key="imagenet_resnet34",
        claim="ImageNet ResNet-34: ALTO 70.83 (bs4096) vs SGD 70.64 (bs256) vs Lamb 70.34 (bs4096)",
        value=70.83 - 70.34,
        unit="accuracy points over Lamb",
        how_obtained="Table 3; SGD at batch 4096 reaches only 49.35.",
        caveats="Means of three runs without variance; a 0.49-point gap.",
        n_runs=3,
        details={"alto_bs4096": 70.83, "sgd_bs256": 70.64, "lamb_bs4096": 70.34,
                 "sgd_bs4096": 49.35},
        metric="test/acc",
    ),
)})


def paper_scenario(inputs: RoiInputs, key: str = "time_saved") -> RoiInputs:
    """`inputs` with the speed-up a claim implies (no CI: the paper gives none)."""
    claim = PAPER_CLAIMS.get(key)
    if claim is None or claim.speedup is None:
        usable = [k for k, c in PAPER_CLAIMS.items() if c.speedup is not None]
        raise ValueError(f"key must name a claim with a speed-up ({', '.join(usable)}), "
                         f"got {key!r}")
    return with_speedup(inputs, claim.speedup, evidence="claim")


PAIRS = {"time_saved": ("alto", "lamb"), "accuracy_gain": ("alto", "lamb"), "gpt2_perplexity": ("alto", "lamb"),
         "fewer_iterations_vs_lion": ("alto", "lion"), "imagenet_resnet34": ("alto", "lamb")}


def beside(claim: PaperClaim, store, experiment_id: int, lrs: dict[str, float] | None = None) -> str:
    """What this experiment measured at the claim's own metric and threshold, for the pair the
    claim is about, or "not comparable here: ..." saying why."""
    cand, base = PAIRS[claim.key]
    optimizers = {r["optimizer"] for r in store.list_runs(experiment_id=experiment_id, status=["finished"])}
    logged = {k for r in store.list_runs(experiment_id=experiment_id, status=["finished"])
              for k in store.metric_keys(r["id"])}
    why = None
    if not {cand, base} <= optimizers:
        why = f"the claim is {cand} against {base}, and this experiment has no finished runs of both"
    elif claim.metric not in logged:
        why = f"the claim was measured on {claim.metric}, which these runs did not log"
    if claim.key not in ("time_saved", "accuracy_gain") and why is None:
        why = "the claim's setting (model, data, budget) is not the one measured here"
    if why:
        return f"not comparable here: {why}"
    experiment = store.get_experiment(experiment_id)
    thresholds = [t for t in ((experiment.get("config") or {}).get("targets") or {}).get("thresholds", [])
                  if isinstance(t, (int, float))]
    if claim.key == "time_saved":
        paper = claim.details["speedup_by_threshold"]
        shared = [t for t in thresholds if round(100 * t) in paper] or [claim.threshold]
        t = shared[-1]
        row = compare(store, experiment_id, metric=claim.metric, thresholds=[t], baseline=base, candidates=[cand],
                      lrs=lrs).rows[0]
        r = row.result
        paper_saved = 1 - 1 / paper[round(100 * t)]
        if r.estimate is None:
            return (f"at {claim.metric} ≥ {t:g} (the paper's threshold): not reached "
                    f"({r.reached_candidate}/{r.n_candidate} {cand}, {r.reached_baseline}/{r.n_baseline} {base}); "
                    f"the paper: {paper_saved:.1%} saved")
        return (f"at {claim.metric} ≥ {t:g} (the paper's threshold; test split, reporting only): "
                f"{r.time_saved:+.1%} time saved ({r.estimate:.2f}x, {row.verdict.word}); "
                f"the paper: {paper_saved:.1%} saved in one run")
    row = compare(store, experiment_id, metric=claim.metric, thresholds=[thresholds[0] if thresholds else 0.0],
                  baseline=base, candidates=[cand], lrs=lrs).rows[0]
    d = row.difference
    if d is None:
        return "not comparable here: no finished runs with a final test accuracy in both arms"
    interval = (f", {round(100 * d.level)}% CI {100 * d.low:+.2f} to {100 * d.high:+.2f}" if d.interval_kind == "ci"
                else f", range {100 * d.low:+.2f} to {100 * d.high:+.2f}")
    return (f"final {claim.metric} {cand} − {base}: {100 * d.estimate:+.2f} points "
            f"({len(d.a)} vs {len(d.b)} seeds{interval}); the paper: {claim.value:+.2f} points")
