"""The whole data path as real processes: synthetic market -> `tickserve ingest` -> Redis -> transformer ->
predictor, predictions on the stream -> `tickserve monitor` scoring them after their (2 s) horizon."""

from __future__ import annotations

import time

import pytest
import redis
from serving_stack import ask, columns, predictor, redis_db, save_signal_model, transformer

from tickserve import launch
from tickserve.launch import metric_sum
from tickserve.transformers.store.predictions import STREAM_KEY

pytestmark = pytest.mark.integration


def until(condition, seconds: float, message: str):
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, message
        time.sleep(0.2)
    return result


def test_ingested_features_are_served_streamed_and_scored(redis_url: str, tmp_path) -> None:
    url = redis_db(redis_url, 5)
    redis.Redis.from_url(url).flushdb()
    save_signal_model(tmp_path / "model", version="3", seed=3)
    ingest = launch.ingest(
        url,
        args=["--source", "synthetic", "--synthetic_symbols", "AAA,BBB", "--synthetic_interval_seconds", "0.5",
              "--synthetic_history_bars", "260"],
    )  # fmt: skip
    with (
        ingest,
        predictor(tmp_path / "model", "signal-2s") as model,
        transformer(url, {"signal-2s": model}, {"2s": "signal-2s"}) as front,
    ):
        first = until(lambda: (r := ask(front, ["AAA", "BBB"])).status_code == 200 and r, 30, "no features served")
        asked = {tuple(columns(first)["feature_timestamp"])}
        for _ in range(6):  # a new bar every 0.5 s: most of these are cache misses
            time.sleep(0.4)
            asked.add(tuple(columns(ask(front, ["AAA", "BBB"]))["feature_timestamp"]))
        predictions = redis.Redis.from_url(url).xlen(STREAM_KEY)
        assert predictions == 2 * len(asked), "one stream entry per symbol and new feature timestamp"

        with launch.monitor(url, args=["--poll_seconds", "0.2"]) as monitor:

            def judged() -> str | None:
                text = monitor.metrics_text()
                done = metric_sum(text, "tickserve_quality_scored_total", scope="all")
                done += metric_sum(text, "tickserve_quality_unscored_total", reason="flat")
                # the pending gauge is refreshed at the end of a scoring pass, after the counters
                settled = metric_sum(text, "tickserve_quality_pending_predictions") == 0
                return text if done == predictions and settled else None

            text = until(judged, 30, "the monitor did not judge every prediction")
    accuracy = metric_sum(text, "tickserve_quality_directional_accuracy", scope="all", model_version="3")
    assert 0.0 <= accuracy <= 1.0
    assert metric_sum(text, "tickserve_quality_pending_predictions") == 0
