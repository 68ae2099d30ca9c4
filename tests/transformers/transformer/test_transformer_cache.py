"""The transformer's prediction cache: an entry it cannot read is a miss, never an error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis
from serving_stack import NAMES, ask, columns, predictor, redis_db, save_signal_model, transformer, write_features

from tickserve.transformers.store.predictions import cache_key

pytestmark = pytest.mark.integration


async def test_an_unreadable_cached_prediction_is_a_cache_miss(redis_url: str, tmp_path) -> None:
    store_url = redis_db(redis_url, 7)
    store = redis.Redis.from_url(store_url)
    store.flushdb()
    save_signal_model(tmp_path / "model", version="3", seed=3)
    key = cache_key("stable", "1h", "BAD")
    with (
        predictor(tmp_path / "model", "signal-1h") as signal,
        transformer(store_url, {"signal-1h": signal}, {"1h": "signal-1h"}) as front,
    ):
        await write_features(store_url, {"BAD": np.random.default_rng(2).normal(size=len(NAMES))})
        first = ask(front, ["BAD"])
        assert first.status_code == 200, first.text
        written = json.loads(store.get(key))
        renamed = {("p_up" if name == "probability_up" else name): value for name, value in written.items()}
        for unreadable in (b"{not json", b"\xff\xfe", json.dumps(renamed), json.dumps({**written, "added": 1})):
            store.set(key, unreadable)
            answer = ask(front, ["BAD"])
            assert answer.status_code == 200, (unreadable, answer.text)
            assert columns(answer)["cached"] == [False]
            assert columns(answer)["prediction"] == columns(first)["prediction"]
        assert columns(ask(front, ["BAD"]))["cached"] == [True], "the recomputed prediction was cached again"
