"""The prediction quality monitor: accuracy from joins the test computes by hand from the prices and
predictions it generated (real redis-server, real `tickserve monitor` process), and the rolling trend."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import defaultdict

import httpx
import numpy as np
import pytest
import redis
from prometheus_client import CollectorRegistry

from tickserve import launch
from tickserve.launch import metric_sum
from tickserve.monitoring.quality import QualityMetrics, QualityMonitor
from tickserve.processes import free_port
from tickserve.settings import RedisSettings
from tickserve.transformers.store.features import FeatureWriter, HotFeatures
from tickserve.transformers.store.predictions import Prediction, PredictionSink
from tickserve.transformers.store.redis import connect

T0, STEP, HORIZON = 1_700_000_000.0, 60.0, 600.0
SYMBOLS = ["S1", "S2"]
VERSIONS = [("signal-10m", "1", "stable"), ("signal-10m", "2", "canary")]
HIGH = 0.7


def price_path(seed: int, bars: int) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {symbol: list(100 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))) for symbol in SYMBOLS}


async def write_closes(url: str, prices: dict[str, list[float]], start: int, stop: int) -> None:
    client = connect(RedisSettings(redis_url=url, redis_timeout_seconds=2.0))
    closes = [(s, T0 + STEP * k, prices[s][k]) for k in range(start, stop) for s in SYMBOLS]
    await FeatureWriter(client, 10 * 86400).write(HotFeatures("none", [], [], np.empty((0, 0)), np.empty(0), closes))
    await client.aclose()


def make_predictions(seed: int, count: int, last_bar: int) -> list[Prediction]:
    rng = np.random.default_rng(seed)
    predictions = []
    for i in range(count):
        model, version, track = VERSIONS[i % 2]
        value = 0.0 if i % 17 == 0 else float(rng.uniform(-1, 1))
        predictions.append(
            Prediction(
                symbol=SYMBOLS[int(rng.integers(2))],
                horizon="10m",
                horizon_seconds=HORIZON,
                model=model,
                model_version=version,
                track=track,
                prediction=value,
                probability_up=(1 + value) / 2,
                probability_down=(1 - value) / 2,
                confidence=float(rng.uniform(0.5, 1.0)),
                feature_ts=T0 + STEP * int(rng.integers(0, last_bar)),
                schema_version="none",
                predicted_at=time.time(),
            )
        )
    return predictions


def expected_accuracy(predictions: list[Prediction], prices: dict[str, list[float]], last_bar: int) -> dict:
    """By hand: entry = close at the feature bar, exit = close `HORIZON` later; same sign = correct."""
    tallies: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for p in predictions:
        entry_bar = round((p.feature_ts - T0) / STEP)
        exit_bar = entry_bar + round(HORIZON / STEP)
        if exit_bar > last_bar:
            continue  # not due yet
        realised = prices[p.symbol][exit_bar] / prices[p.symbol][entry_bar] - 1
        if p.prediction == 0:
            continue
        correct = (p.prediction > 0) == (realised > 0)
        scopes = ["all", "high_confidence"] if p.confidence >= HIGH else ["all"]
        for scope in scopes:
            tally = tallies[(p.model_version, p.track, scope)]
            tally[0] += correct
            tally[1] += 1
    return tallies


def monitor(url: str, port: int) -> launch.Server:
    args = ["--consumer", "test", "--window", "1000", "--high_confidence", str(HIGH), "--poll_seconds", "0.2"]
    return launch.monitor(url, args=args, metrics_port=port)


def scraped_when(port: int, condition, seconds: float = 20.0) -> str:
    deadline = time.monotonic() + seconds
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        if condition(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


@pytest.mark.integration
async def test_accuracy_matches_hand_computed_joins_and_survives_a_restart(redis_url: str) -> None:
    url = f"{redis_url.rsplit('/', 1)[0]}/3"  # a database of its own
    redis.Redis.from_url(url).flushdb()
    prices = price_path(seed=11, bars=200)
    first_bars = 150  # prices exist for bars 0..149 at first; predictions span bars 0..149
    await write_closes(url, prices, 0, first_bars)
    predictions = make_predictions(seed=12, count=240, last_bar=first_bars)
    client = connect(RedisSettings(redis_url=url, redis_timeout_seconds=2.0))
    await PredictionSink(client, ttl_seconds=60, stream_maxlen=10_000).publish(predictions)
    await client.aclose()
    expected = expected_accuracy(predictions, prices, last_bar=first_bars - 1)
    due = sum(1 for p in predictions if round((p.feature_ts - T0) / STEP) + 10 <= first_bars - 1)
    scored = sum(tally[1] for (_, _, scope), tally in expected.items() if scope == "all")
    assert 0 < scored < due < len(predictions), "the data has scored, flat and not-yet-due predictions"

    port = free_port()
    with monitor(url, port):
        text = await asyncio.to_thread(
            scraped_when, port, lambda t: metric_sum(t, "tickserve_quality_scored_total") >= scored * 1.0
        )
        for (version, track, scope), (correct, total) in expected.items():
            labels = {"model_version": version, "track": track, "scope": scope, "model": "signal-10m"}
            assert metric_sum(text, "tickserve_quality_scored_total", outcome="correct", **labels) == correct
            assert metric_sum(text, "tickserve_quality_scored_total", outcome="wrong", **labels) == total - correct
            accuracy = metric_sum(text, "tickserve_quality_directional_accuracy", **labels)
            assert accuracy == pytest.approx(correct / total)
        assert metric_sum(text, "tickserve_quality_unscored_total", reason="flat") == due - scored
        assert metric_sum(text, "tickserve_quality_pending_predictions") == len(predictions) - due

    # The rest become due while no monitor runs; a new one takes its unacknowledged entries back.
    await write_closes(url, prices, first_bars, 200)
    everything = expected_accuracy(predictions, prices, last_bar=199)
    late = {
        key: [everything[key][0] - expected.get(key, [0, 0])[0], everything[key][1] - expected.get(key, [0, 0])[1]]
        for key in everything
    }
    late_scored = sum(total for (_, _, scope), (_, total) in late.items() if scope == "all")
    with monitor(url, port):
        text = await asyncio.to_thread(
            scraped_when, port, lambda t: metric_sum(t, "tickserve_quality_pending_predictions") == 0
        )
        assert metric_sum(text, "tickserve_quality_scored_total", scope="all") == late_scored
        for (version, track, scope), (correct, _) in late.items():
            labels = {"model_version": version, "track": track, "scope": scope}
            assert metric_sum(text, "tickserve_quality_scored_total", outcome="correct", **labels) == correct


def prediction(value: float, confidence: float) -> Prediction:
    return Prediction("S1", "10m", HORIZON, "m", "1", "stable", value, 0.5, 0.5, confidence, T0, "none", T0)


def test_rolling_accuracy_and_trend_over_windows() -> None:
    registry = CollectorRegistry()
    metrics = QualityMetrics(registry, window=4, high_confidence=0.9)
    labels = {"model": "m", "model_version": "1", "track": "stable", "horizon": "10m", "scope": "all"}
    outcomes = [True, True, True, True, True, False, False, True]  # windows: 4/4, then 2/4
    for correct in outcomes:
        assert metrics.record(prediction(0.5, 0.6), 0.01 if correct else -0.01) is correct

    assert registry.get_sample_value("tickserve_quality_rolling_accuracy", labels) == 0.5
    assert registry.get_sample_value("tickserve_quality_rolling_accuracy_trend", labels) == -0.5
    assert registry.get_sample_value("tickserve_quality_directional_accuracy", labels) == 6 / 8
    high = {**labels, "scope": "high_confidence"}
    assert registry.get_sample_value("tickserve_quality_directional_accuracy", high) is None
    assert metrics.record(prediction(0.0, 0.95), 0.01) is None
    assert registry.get_sample_value("tickserve_quality_unscored_total", {"reason": "flat"}) == 1


def test_trend_is_absent_until_two_full_windows() -> None:
    registry = CollectorRegistry()
    metrics = QualityMetrics(registry, window=4, high_confidence=0.9)
    labels = {"model": "m", "model_version": "1", "track": "stable", "horizon": "10m", "scope": "high_confidence"}
    for _ in range(7):
        metrics.record(prediction(-0.5, 0.95), -0.02)
    assert registry.get_sample_value("tickserve_quality_rolling_accuracy", labels) == 1.0
    assert registry.get_sample_value("tickserve_quality_rolling_accuracy_trend", labels) is None


@pytest.mark.integration
async def test_start_takes_back_more_pending_entries_than_one_read(redis_url: str) -> None:
    """XREADGROUP from "0" returns the first `count` pending entries every time: start pages by last id."""
    url = f"{redis_url.rsplit('/', 1)[0]}/4"
    redis.Redis.from_url(url).flushdb()
    client = connect(RedisSettings(redis_url=url, redis_timeout_seconds=2.0))
    fresh = dataclasses.replace(prediction(0.5, 0.6), predicted_at=time.time())  # not yet past horizon + grace
    await PredictionSink(client, 60.0, 10_000).publish([fresh] * 7)
    metrics = QualityMetrics(CollectorRegistry(), window=4, high_confidence=0.9)
    first = QualityMonitor(client, metrics, "quality", "test", grace_seconds=3600.0, read_count=3)
    await first.start()
    for _ in range(3):
        assert await first.step(block_ms=10) == 0  # nothing due (no prices): all stay pending, unacknowledged
    assert len(first._pending) == 7

    restarted = QualityMonitor(client, metrics, "quality", "test", grace_seconds=3600.0, read_count=3)
    read = restarted._read
    reads = 0

    async def bounded_read(*args, **kwargs):
        nonlocal reads
        reads += 1
        assert reads <= 10, "start() keeps reading the same pending entries"
        return await read(*args, **kwargs)

    restarted._read = bounded_read  # type: ignore[method-assign]
    await restarted.start()
    assert len(restarted._pending) == 7
    await client.aclose()
