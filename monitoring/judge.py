"""The quality judge: is a canary's directional accuracy worse than stable's, judged on outcomes as they arrive?

Outcomes arrive late (a prediction is scored once its horizon has passed) and the monitor re-judges after every
scored prediction, so a fixed-sample test re-run continuously would roll back good canaries far more often than its
alpha says. The judge uses an anytime-valid test instead: the mixture sequential probability ratio test (mSPRT) of
Robbins (1970), as used for always-valid A/B testing by Johari, Koomen, Pekelis and Walsh ("Always Valid
Inference", Operations Research 2022), on the difference of two proportions with the normal approximation.

Let theta = acc_canary - acc_stable, estimated by theta_hat = k_c / n_c - k_s / n_s with plug-in variance
V = p_c (1 - p_c) / n_c + p_s (1 - p_s) / n_s. Mixing the likelihood ratio over theta ~ N(theta0, tau^2) gives

    Lambda(theta0) = sqrt(V / (V + tau^2)) * exp(tau^2 (theta_hat - theta0)^2 / (2 V (V + tau^2)))

which under theta = theta0 is (asymptotically) a non-negative martingale with mean 1 in information time 1/V, so by
Ville's inequality P(Lambda ever reaches 1/alpha) <= alpha, however often it is evaluated. Inverting it gives a
(1 - alpha) confidence sequence for theta, valid at all times simultaneously:

    theta_hat +- sqrt(V (V + tau^2) / tau^2 * (2 log(1/alpha) + log((V + tau^2) / V)))

Its running intersection is valid too and only narrows, so a verdict, once reached, never flips back. Verdicts,
given `min_scored` outcomes on each track (before that: inconclusive, and the sequence is not started):

- `worse`: the upper bound is below -worse_margin (default 0): the canary is significantly worse -> rollback alert;
- `no_worse`: the lower bound is at least -no_worse_margin (default 0.01): non-inferior -> evidence to promote;
- `inconclusive`: neither yet.

The always-valid p-value of "no difference" is min over time of 1 / Lambda(0). tau is the effect size the test is
most sensitive to (default 0.05, five accuracy points). Every function here takes scalars or numpy arrays alike:
tests/monitoring/test_judge_simulation.py runs these very functions over thousands of simulated runs.

Validity assumes one judge per comparison: monitors sharing a consumer group each judge their share of the
outcomes, and a restarted monitor starts a new test, so k judges make up to k * alpha false rollbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import ArrayLike, NDArray


class Verdict(StrEnum):
    INCONCLUSIVE = "inconclusive"
    NO_WORSE = "no_worse"
    WORSE = "worse"


VERDICTS = tuple(Verdict)


@dataclass(frozen=True)
class JudgeConfig:
    alpha: float = 0.05
    tau: float = 0.05
    min_scored: int = 200
    worse_margin: float = 0.0
    no_worse_margin: float = 0.01

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.min_scored < 1:
            raise ValueError(f"min_scored must be at least 1, got {self.min_scored}")


@dataclass(frozen=True)
class Evidence:
    """The state of one comparison after the latest outcome; what the metrics export and a rollback records."""

    verdict: Verdict
    scored_canary: int
    scored_stable: int
    effect: float  # acc_canary - acc_stable (nan before both tracks have outcomes)
    lower: float  # the running (1 - alpha) confidence sequence for the effect; -1..1 before min_scored
    upper: float
    log_likelihood_ratio: float  # log Lambda(0) now; the statistic
    p_value: float  # always-valid p-value of "no difference"


def effect_and_variance(
    correct_canary: ArrayLike, scored_canary: ArrayLike, correct_stable: ArrayLike, scored_stable: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """theta_hat and its plug-in variance V (nan where a track has no outcome yet)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n_c, n_s = np.asarray(scored_canary, dtype=float), np.asarray(scored_stable, dtype=float)
        p_c, p_s = np.asarray(correct_canary) / n_c, np.asarray(correct_stable) / n_s
        return p_c - p_s, p_c * (1 - p_c) / n_c + p_s * (1 - p_s) / n_s


def log_likelihood_ratio(effect: ArrayLike, variance: ArrayLike, tau: float, null: float = 0.0) -> NDArray[np.float64]:
    """log Lambda(null) of the normal-mixture SPRT."""
    v = np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * np.log(v / (v + tau**2)) + tau**2 * (np.asarray(effect) - null) ** 2 / (2 * v * (v + tau**2))


def confidence_half_width(variance: ArrayLike, alpha: float, tau: float) -> NDArray[np.float64]:
    """Half-width of the (1 - alpha) confidence sequence at variance V: {theta : Lambda(theta) < 1/alpha}."""
    v = np.asarray(variance, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(v * (v + tau**2) / tau**2 * (2 * np.log(1 / alpha) + np.log((v + tau**2) / v)))


def verdicts(lower: ArrayLike, upper: ArrayLike, started: ArrayLike, config: JudgeConfig) -> NDArray[np.int8]:
    """Index into VERDICTS per element: worse beats no_worse (only possible if the intersection is empty)."""
    started = np.asarray(started, dtype=bool)
    worse = started & (np.asarray(upper) < -config.worse_margin)
    no_worse = started & (np.asarray(lower) >= -config.no_worse_margin)
    return np.where(worse, 2, np.where(no_worse, 1, 0)).astype(np.int8)


class SequentialJudge:
    """One canary-vs-stable comparison, updated with each track's running (correct, scored) counts."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self._started = False
        self._lower, self._upper = -1.0, 1.0
        self._p_value = 1.0

    def update(self, correct_canary: int, scored_canary: int, correct_stable: int, scored_stable: int) -> Evidence:
        effect_array, variance_array = effect_and_variance(correct_canary, scored_canary, correct_stable, scored_stable)
        effect, variance = float(effect_array), float(variance_array)
        statistic = float(log_likelihood_ratio(effect, variance, self.config.tau)) if variance > 0 else 0.0
        if min(scored_canary, scored_stable) >= self.config.min_scored and variance > 0:
            self._started = True
            half = float(confidence_half_width(variance, self.config.alpha, self.config.tau))
            self._lower, self._upper = max(self._lower, effect - half), min(self._upper, effect + half)
            self._p_value = min(self._p_value, float(np.exp(-statistic)))
        verdict = VERDICTS[int(verdicts(self._lower, self._upper, self._started, self.config))]
        return Evidence(
            verdict, scored_canary, scored_stable, effect, self._lower, self._upper, statistic, self._p_value
        )
