"""The quality judge's error rates, measured by simulation with the judge's own functions (vectorised over runs).

Each run is one canary judged continuously: outcomes arrive one at a time, each from the canary with probability
`share`, correct with its track's accuracy, and the judge's verdict is evaluated after every one. A run counts as a
(false) rollback when the verdict is ever `worse`. Seeded; a few seconds on one core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tickserve.monitoring.judge import (
    VERDICTS,
    JudgeConfig,
    SequentialJudge,
    Verdict,
    confidence_half_width,
    effect_and_variance,
    verdicts,
)

CONFIG = JudgeConfig()  # alpha 0.05, tau 0.05, min_scored 200
WORSE = VERDICTS.index(Verdict.WORSE)
NO_WORSE = VERDICTS.index(Verdict.NO_WORSE)


@dataclass(frozen=True)
class Runs:
    """Per step (outcome) of each run: the cumulative counts and the verdict the judge gives after it."""

    canary: np.ndarray  # bool (runs, steps): this outcome is the canary's
    correct_canary: np.ndarray  # cumulative counts, int (runs, steps)
    scored_canary: np.ndarray
    correct_stable: np.ndarray
    scored_stable: np.ndarray
    verdict: np.ndarray  # int8 index into VERDICTS


def simulate(
    seed: int, runs: int, steps: int, acc_canary: float, acc_stable: float, share: float, config: JudgeConfig = CONFIG
) -> Runs:
    rng = np.random.default_rng(seed)
    canary = rng.random((runs, steps)) < share
    correct = rng.random((runs, steps)) < np.where(canary, acc_canary, acc_stable)
    scored_canary = np.cumsum(canary, axis=1, dtype=np.int32)
    scored_stable = np.arange(1, steps + 1, dtype=np.int32) - scored_canary
    correct_canary = np.cumsum(correct & canary, axis=1, dtype=np.int32)
    correct_stable = np.cumsum(correct & ~canary, axis=1, dtype=np.int32)
    effect, variance = effect_and_variance(correct_canary, scored_canary, correct_stable, scored_stable)
    started = (np.minimum(scored_canary, scored_stable) >= config.min_scored) & (variance > 0)
    half = confidence_half_width(variance, config.alpha, config.tau)
    # The running intersection of the confidence sequence from the first started step, as SequentialJudge keeps it.
    lower = np.maximum.accumulate(np.where(started, effect - half, -1.0), axis=1)
    upper = np.minimum.accumulate(np.where(started, effect + half, 1.0), axis=1)
    started = np.logical_or.accumulate(started, axis=1)
    verdict = verdicts(lower, upper, started, config)
    return Runs(canary, correct_canary, scored_canary, correct_stable, scored_stable, verdict)


def ever(runs_verdict: np.ndarray, verdict: int) -> np.ndarray:
    return (runs_verdict == verdict).any(axis=1)


def naive_rollbacks(runs: Runs) -> np.ndarray:
    """A fixed-sample one-sided z-test at 0.05 re-run after every outcome: what the judge must not be."""
    effect, variance = effect_and_variance(
        runs.correct_canary, runs.scored_canary, runs.correct_stable, runs.scored_stable
    )
    enough = np.minimum(runs.scored_canary, runs.scored_stable) >= CONFIG.min_scored
    with np.errstate(divide="ignore", invalid="ignore"):
        return (enough & (effect / np.sqrt(variance) < -1.645)).any(axis=1)


def batched(seed: int, batches: int, **kwargs) -> list[Runs]:
    """Runs in batches that keep memory at a few hundred MB on a shared CI machine."""
    return [simulate(seed + i, **kwargs) for i in range(batches)]


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_equal_accuracies_monitored_continuously_roll_back_at_most_alpha(share: float) -> None:
    batches = batched(seed=1000, batches=8, runs=250, steps=10_000, acc_canary=0.53, acc_stable=0.53, share=share)
    judge_rate = np.mean(np.concatenate([ever(b.verdict, WORSE) for b in batches]))
    naive_rate = np.mean(np.concatenate([naive_rollbacks(b) for b in batches]))
    no_worse_rate = np.mean(np.concatenate([b.verdict[:, -1] == NO_WORSE for b in batches]))
    print(
        f"\nequal accuracies, canary share {share}: 2000 runs x 10000 outcomes, verdict after each: "
        f"false rollbacks {judge_rate:.4f} (alpha {CONFIG.alpha}); a re-run fixed-sample z-test: {naive_rate:.4f}; "
        f"no_worse by the end: {no_worse_rate:.3f}"
    )
    assert judge_rate <= CONFIG.alpha
    # The simulation can tell: continuous peeking at a fixed-sample test blows through alpha.
    assert naive_rate > 2 * CONFIG.alpha


@pytest.mark.parametrize("share", [0.5, 0.2])
def test_a_five_point_drop_is_detected_and_the_median_outcomes_to_detection_is_reported(share: float) -> None:
    batches = batched(seed=2000, batches=4, runs=100, steps=30_000, acc_canary=0.50, acc_stable=0.55, share=share)
    verdict = np.concatenate([b.verdict for b in batches])
    scored_canary = np.concatenate([b.scored_canary for b in batches])
    detected = ever(verdict, WORSE)
    first = np.argmax(verdict == WORSE, axis=1)[detected]
    canary_at_detection = scored_canary[detected, first]
    median_total, median_canary = np.median(first + 1), np.median(canary_at_detection)
    print(
        f"\n5-point drop (0.55 -> 0.50), canary share {share}: detected in {detected.mean():.3f} of 400 runs within "
        f"30000 outcomes; median outcomes to detection {median_total:.0f} in all, {median_canary:.0f} of the canary's "
        f"(10th-90th percentile {np.percentile(first + 1, 10):.0f}-{np.percentile(first + 1, 90):.0f})"
    )
    assert detected.mean() >= 0.95
    assert canary_at_detection.min() >= CONFIG.min_scored
    assert not ever(verdict, NO_WORSE).any(), "a worse canary was never declared no worse"


def test_a_better_canary_is_declared_no_worse_and_never_worse() -> None:
    runs = simulate(seed=3000, runs=200, steps=20_000, acc_canary=0.56, acc_stable=0.53, share=0.5)
    assert not ever(runs.verdict, WORSE).any()
    assert (runs.verdict[:, -1] == NO_WORSE).mean() >= 0.95


def test_no_verdict_before_the_minimum_outcomes_per_track() -> None:
    """A canary that is terrible (accuracy 0.2) still gets no verdict before min_scored outcomes of its own."""
    runs = simulate(seed=4000, runs=50, steps=5_000, acc_canary=0.2, acc_stable=0.6, share=0.05)
    too_few = np.minimum(runs.scored_canary, runs.scored_stable) < CONFIG.min_scored
    assert (runs.verdict[too_few] == 0).all()
    assert ever(runs.verdict, WORSE).all()


def test_the_monitor_s_judge_reaches_the_same_verdicts_as_the_simulation() -> None:
    """SequentialJudge (what the quality monitor runs, one outcome at a time) against the vectorised path."""
    runs = simulate(seed=5000, runs=3, steps=6_000, acc_canary=0.49, acc_stable=0.55, share=0.3)
    for run in range(3):
        judge = SequentialJudge(CONFIG)
        seen = []
        for step in range(runs.verdict.shape[1]):
            evidence = judge.update(
                int(runs.correct_canary[run, step]), int(runs.scored_canary[run, step]),
                int(runs.correct_stable[run, step]), int(runs.scored_stable[run, step]),
            )  # fmt: skip
            seen.append(VERDICTS.index(evidence.verdict))
        assert seen == runs.verdict[run].tolist()
    assert ever(runs.verdict, WORSE).any(), "the comparison covers a worse verdict"


def test_verdicts_latch_once_reached() -> None:
    """The running intersection only narrows: a canary found worse stays worse when later outcomes look better."""
    judge = SequentialJudge(CONFIG)
    assert judge.update(1400, 3000, 1650, 3000).verdict is Verdict.WORSE
    assert judge.update(1400 + 700, 3000 + 1000, 1650 + 500, 3000 + 1000).verdict is Verdict.WORSE


def test_bad_configuration_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="alpha"):
        JudgeConfig(alpha=1.5)
    with pytest.raises(ValueError, match="min_scored"):
        JudgeConfig(min_scored=0)


def test_the_seed_promotion_rule_is_a_negative_no_worse_margin() -> None:
    """The seed's "promote on >= 2% improvement with p < 0.05" is no_worse with margin -0.02: the always-valid lower
    bound of canary minus stable accuracy must reach +0.02. A canary 5 points better gets there; 1 point better not."""
    promote = JudgeConfig(no_worse_margin=-0.02)
    better = simulate(seed=6000, runs=100, steps=30_000, acc_canary=0.58, acc_stable=0.53, share=0.5, config=promote)
    slightly = simulate(seed=6100, runs=100, steps=30_000, acc_canary=0.54, acc_stable=0.53, share=0.5, config=promote)
    assert (better.verdict[:, -1] == NO_WORSE).mean() >= 0.9
    assert (slightly.verdict[:, -1] == NO_WORSE).mean() <= CONFIG.alpha
