"""The quality judge inside the running `tickserve monitor` (real process, real redis-server): a canary that is
right far less often than stable is judged `worse` on its scored outcomes, with the n per track and the effect the
test computes by hand from the prices and predictions it wrote; and a replaced canary's series go away."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry
from quality_data import HORIZON, T0, publish_outcomes

from tickserve import launch
from tickserve.monitoring.judge import JudgeConfig
from tickserve.monitoring.quality import QualityMetrics
from tickserve.transformers.store.predictions import Prediction

MIN_SCORED = 50
ACCURACY = {"stable": 0.8, "canary": 0.3}


def value(text: str, name: str, **labels: str) -> float | None:
    """The one sample called `name` whose labels include `labels`; None when there is none (or several)."""
    found = [v for sample, got, v in launch.metric_samples(text) if sample == name and labels.items() <= got.items()]
    return found[0] if len(found) == 1 else None


@pytest.mark.integration
def test_the_running_monitor_judges_a_worse_canary_worse_with_hand_counted_evidence(redis_url: str) -> None:
    url = f"{redis_url.rsplit('/', 1)[0]}/6"  # a database of its own
    redis.Redis.from_url(url).flushdb()
    tally = publish_outcomes(url, seed=21, accuracy=ACCURACY)

    args = ["--consumer", "judge-test", "--poll_seconds", "0.2", "--judge_min_scored", str(MIN_SCORED)]
    labels = {"model": "signal-10m", "model_version": "8", "stable_version": "7", "horizon": "10m"}
    with launch.monitor(url, args=args) as server:
        deadline = time.monotonic() + 30
        while True:
            text = server.metrics_text()
            if value(text, "tickserve_quality_pending_predictions") == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert value(text, "tickserve_quality_pending_predictions") == 0
    assert value(text, "tickserve_judge_verdict", verdict="worse", **labels) == 1
    assert value(text, "tickserve_judge_verdict", verdict="no_worse", **labels) == 0
    assert value(text, "tickserve_judge_verdict", verdict="inconclusive", **labels) == 0
    assert value(text, "tickserve_judge_scored", track="canary", **labels) == tally["canary"][1]
    assert value(text, "tickserve_judge_scored", track="stable", **labels) == tally["stable"][1]
    effect = tally["canary"][0] / tally["canary"][1] - tally["stable"][0] / tally["stable"][1]
    assert value(text, "tickserve_judge_effect", **labels) == pytest.approx(effect)
    assert value(text, "tickserve_judge_effect_bound", bound="upper", **labels) < 0
    assert value(text, "tickserve_judge_p_value", **labels) < JudgeConfig().alpha
    assert value(text, "tickserve_judge_statistic", **labels) > np.log(1 / JudgeConfig().alpha)


def outcome(track: str, version: str, right: bool, at: float) -> Prediction:
    return Prediction("S1", "10m", HORIZON, "m", version, track, 0.5 if right else -0.5, 0.75, 0.25, 0.75, T0, "n", at)


def test_a_new_canary_version_starts_a_new_comparison_and_removes_the_old_one() -> None:
    registry = CollectorRegistry()
    metrics = QualityMetrics(registry, window=10, high_confidence=0.9, judge=JudgeConfig(min_scored=20))
    for i in range(100):
        metrics.record(outcome("stable", "1", True, T0 + i), 0.01)
        metrics.record(outcome("canary", "2", i % 3 == 0, T0 + i), 0.01)
    old = {"model": "m", "model_version": "2", "stable_version": "1", "horizon": "10m"}
    assert registry.get_sample_value("tickserve_judge_verdict", {**old, "verdict": "worse"}) == 1

    metrics.record(outcome("canary", "3", True, T0 + 200), 0.01)
    # A late outcome of the replaced canary counts for its version but does not bring its comparison back.
    metrics.record(outcome("canary", "2", False, T0 + 99), 0.01)
    new = {**old, "model_version": "3"}
    assert registry.get_sample_value("tickserve_judge_verdict", {**old, "verdict": "worse"}) is None
    assert registry.get_sample_value("tickserve_judge_verdict", {**new, "verdict": "inconclusive"}) == 1
    assert registry.get_sample_value("tickserve_judge_scored", {**new, "track": "canary"}) == 1
    assert registry.get_sample_value("tickserve_judge_scored", {**new, "track": "stable"}) == 100


def test_no_comparison_without_both_tracks() -> None:
    registry = CollectorRegistry()
    metrics = QualityMetrics(registry, window=10, high_confidence=0.9)
    for i in range(300):
        metrics.record(outcome("stable", "1", True, T0 + i), 0.01)
    assert metrics.judge.observe(outcome("stable", "1", True, T0), True) is None
    assert "tickserve_judge_verdict" not in {
        sample.name for metric in registry.collect() for sample in metric.samples if sample.value is not None
    }
