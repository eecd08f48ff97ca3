"""Verdict words: the one place a speed-up result becomes a sentence.

    faster / slower            a calibrated CI excludes 1 and nothing is flagged
    no meaningful difference   a calibrated CI lies inside the equivalence margin [0.9, 1.11]
    not enough evidence        anything else: a CI that includes 1 but leaves the margin, a range
                               instead of a CI, partial reach, an LR selection not yet confirmed
                               on fresh seeds, arms with different budgets...

"Not enough evidence" always comes with the seeds per arm that would resolve a chosen speed-up
at the spread just measured. The pages, the CLI and the report all call `verdict`.

A difference in a final validation metric (candidate - baseline) gets `difference_word`:
"better" / "worse" when its calibrated CI excludes 0 and nothing is flagged, else "not enough
evidence". No equivalence margin is defined for metric differences, so it never says "no
meaningful difference".
"""

from __future__ import annotations

from dataclasses import dataclass

from .speedup import DiffResult, SpeedupResult

EQUIVALENCE = (0.9, 1.11)  # speed-ups this close to 1 are "no meaningful difference"
RESOLVE = 1.2              # the difference "seeds needed" is quoted for
PLAN_SPEEDUPS = (1.1, 1.2, 1.3)  # the differences seed planning quotes seeds for
WORDS = ("faster", "slower", "no meaningful difference", "not enough evidence")
DIFFERENCE_WORDS = ("better", "worse", "not enough evidence")


@dataclass(frozen=True)
class Verdict:
    word: str                   # one of WORDS
    sentence: str               # opens Compare, ROI and the report
    seeds_needed: int | None    # per arm, to resolve RESOLVE at the measured spread
    flags: tuple[str, ...]      # why the evidence is not enough, beyond the interval itself

    @property
    def decisive(self) -> bool:
        return self.word in ("faster", "slower")


def _x(value: float) -> str:
    return f"{value:.2f}x"


def interval_text(result: SpeedupResult) -> str:
    """"95% CI 1.12-1.53", "range 0.62-1.52" or "no interval" (with the seeds behind it)."""
    seeds = f"{result.n_candidate} vs {result.n_baseline} seeds"
    if result.interval_kind == "ci":
        return f"{seeds}, {round(100 * result.level)}% CI {result.low:.2f}–{result.high:.2f}"
    if result.interval_kind == "range":
        return f"{seeds}, range {result.low:.2f}–{result.high:.2f}"
    return f"{seeds}, no interval"


def word_for(result: SpeedupResult, flags: tuple[str, ...] = (), margin: tuple[float, float] = EQUIVALENCE) -> str:
    """The verdict word alone (see the module docstring)."""
    calibrated = result.interval_kind == "ci" and not result.partial
    return interval_word(result.low, result.high, calibrated=calibrated, flags=flags, margin=margin)


def interval_word(low: float | None, high: float | None, *, calibrated: bool, flags: tuple[str, ...] = (),
                  margin: tuple[float, float] = EQUIVALENCE) -> str:
    """The verdict word for a speed-up interval [low, high]: decisive only when the interval is a
    calibrated CI and nothing is flagged. `word_for` applies it to a measured result; a speed-up
    built from one (e.g. a step ratio times a cost ratio) applies it to the scaled interval."""
    if not calibrated or flags or low is None or high is None:
        return "not enough evidence"
    if low > 1.0:
        return "faster"
    if high < 1.0:
        return "slower"
    if margin[0] <= low and high <= margin[1]:
        return "no meaningful difference"
    return "not enough evidence"


def verdict(result: SpeedupResult, *, candidate: str, baseline: str, target: str, workload: str | None = None,
            budget: str | None = None, flags: tuple[str, ...] = (), resolve: float = RESOLVE,
            margin: tuple[float, float] = EQUIVALENCE) -> Verdict:
    """The verdict on `result`, as a word and the sentence that opens every comparison, e.g.
    "On digits, alto reaches val/acc ≥ 0.9 0.96x as fast as lamb (2 vs 2 seeds, range 0.62–1.52):
    not enough evidence — about 9 seeds per arm would resolve a 1.2x difference at this spread."

    `target` reads like "val/acc ≥ 0.9"; `budget` like "150 steps per run"; `flags` are reasons,
    in words, why the evidence is not enough beyond the interval (e.g. "LRs chosen on these
    seeds, not yet confirmed on fresh ones").
    """
    flags = tuple(flags)
    if result.partial:
        flags = (f"{result.reached_candidate}/{result.n_candidate} {candidate} and "
                 f"{result.reached_baseline}/{result.n_baseline} {baseline} runs reached the target",) + flags
    word = word_for(result, flags, margin)
    where = f"On {workload}, " if workload else ""
    if not result.reached:
        head = (f"{where}{candidate} vs {baseline} to {target}: not reached "
                f"({result.reached_candidate}/{result.n_candidate} {candidate}, "
                f"{result.reached_baseline}/{result.n_baseline} {baseline} runs reached it)")
    else:
        head = (f"{where}{candidate} reaches {target} {_x(result.estimate)} as fast as {baseline} "
                f"({interval_text(result)})")
    sentence = f"{head}: {word}"
    if word == "no meaningful difference":
        sentence += f" (inside the margin {margin[0]:g}–{margin[1]:g})"
    needed = result.seeds_needed(resolve)
    if word == "not enough evidence":
        if flags:
            sentence += " — " + "; ".join(flags)
        if needed is not None and needed > min(result.n_candidate, result.n_baseline):
            sentence += (f" — about {needed} seeds per arm would resolve a {resolve:g}x difference "
                         "at this spread")
    if budget:
        sentence += f". Budget: {budget}"
    return Verdict(word=word, sentence=sentence + ".", seeds_needed=needed, flags=flags)


def difference_word(result: DiffResult, mode: str, flags: tuple[str, ...] = ()) -> str:
    """The word for a final-metric difference, candidate - baseline; `mode` says which way is
    better ("max": higher, "min": lower). See the module docstring."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if result.interval_kind != "ci" or flags or not result.ci_excludes_0:
        return "not enough evidence"
    return "better" if (result.low > 0) == (mode == "max") else "worse"
