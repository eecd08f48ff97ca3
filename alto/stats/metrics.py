"""Which way a metric improves, and which validation metric chooses the learning rates.

Every page, the report and the CLI ask these two functions; none decides on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

MODES = ("max", "min")  # "max": higher is better (accuracy); "min": lower is better (loss)

HIGHER_IS_BETTER = ("acc", "accuracy", "top1", "top5", "f1", "auc")  # every other name: "min"

# The validation metrics that choose the LR when the metric being compared is not one, in order.
VALIDATION_FALLBACKS = ("val/acc", "val/ppl", "val/loss")


def metric_mode(metric: str, targets: Mapping | None = None) -> str:
    """"max" when higher values of `metric` are better, "min" when lower ones are.

    The experiment's targets decide for their own metric ({"metric": ..., "mode": ...}).
    Otherwise the last part of the name decides (case-insensitive): acc, accuracy, top1, top5,
    f1 and auc are "max"; loss, ppl, perplexity, error and err are "min". A name that is none
    of these (mse, nll, bpc, grad_norm, ...) is "min": most unnamed training metrics are costs.
    Set the experiment's targets to say otherwise.
    """
    if targets and targets.get("metric") == metric and targets.get("mode") in MODES:
        return str(targets["mode"])
    name = metric.rsplit("/", 1)[-1].lower()
    return "max" if name in HIGHER_IS_BETTER else "min"  # loss, ppl, error, ... and unknown names


def selection_metric(metric: str, logged: Iterable[str], mode: str | None = None
                     ) -> tuple[str, str] | None:
    """The (validation metric, mode) on which each optimizer's learning rate is chosen.

    `metric` itself when it is a validation metric ("val/...") that was logged, with `mode`
    (default: metric_mode(metric)); else the first of val/acc, val/ppl, val/loss that was
    logged; None when none was. Never a test or train metric: choosing on test would leak the
    test set into the comparison.
    """
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    seen = set(logged)
    if metric.startswith("val/") and metric in seen:
        return metric, mode or metric_mode(metric)
    for key in VALIDATION_FALLBACKS:
        if key in seen:
            return key, metric_mode(key)
    return None
