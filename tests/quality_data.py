"""Scored outcomes for the quality judge, written to Redis the way ingest (closes) and the transformer (the
predictions stream) write them: a symbol's closes, and per bar one stable and one canary prediction, right with
each track's accuracy. The caller gets the hand tally to compare the monitor's judge with."""

from __future__ import annotations

import time

import numpy as np
import redis

from tickserve.transformers.store.features import prices_key
from tickserve.transformers.store.predictions import STREAM_KEY, Prediction

T0, STEP, HORIZON = 1_700_000_000.0, 60.0, 600.0
MODEL, STABLE_VERSION, CANARY_VERSION = "signal-10m", "7", "8"
VERSION = {"stable": STABLE_VERSION, "canary": CANARY_VERSION}


def publish_outcomes(
    url: str,
    seed: int,
    accuracy: dict[str, float],
    bars: int = 400,
    symbol: str = "S1",
    *,
    model: str = MODEL,
    versions: dict[str, str] = VERSION,
) -> dict[str, list[int]]:
    """Write closes and predictions to the Redis database at `url`; [correct, scored] per track."""
    client = redis.Redis.from_url(url)
    rng = np.random.default_rng(seed)
    closes = [float(x) for x in 100 * np.exp(np.cumsum(rng.normal(0, 0.01, bars)))]
    ahead = round(HORIZON / STEP)
    tally = {track: [0, 0] for track in versions}
    predictions = []
    for bar in range(bars - ahead):
        up = closes[bar + ahead] > closes[bar]
        for track, version in versions.items():
            right = bool(rng.random() < accuracy[track])
            value = 0.4 if up == right else -0.4
            predictions.append(
                Prediction(
                    symbol, "10m", HORIZON, model, version, track, value, (1 + value) / 2, (1 - value) / 2, 0.7,
                    T0 + STEP * bar, "none", time.time(),
                )
            )  # fmt: skip
            tally[track][0] += right
            tally[track][1] += 1
    client.zadd(
        prices_key(symbol), {f"{T0 + STEP * bar}:{close!r}": T0 + STEP * bar for bar, close in enumerate(closes)}
    )
    pipe = client.pipeline(transaction=False)
    for prediction in predictions:
        pipe.xadd(STREAM_KEY, prediction.to_fields())
    pipe.execute()
    client.close()
    return tally
