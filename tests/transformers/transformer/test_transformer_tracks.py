"""Predictions record the rollout track of the predictor that answered, not the transformer's own setting.

In KServe's Standard mode one transformer reaches stable and canary predictor pods through one Service, so
only the predictor knows which track served a row; the quality monitor and the rollback rules group by it.
"""

from __future__ import annotations

import numpy as np
import pytest
import redis
from serving_stack import NAMES, ask, columns, predictor, redis_db, save_signal_model, transformer, write_features

from tickserve.transformers.store.predictions import STREAM_KEY

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("protocol", ["v2", "grpc-v2"])
async def test_the_stream_records_the_track_the_predictor_reports(protocol: str, redis_url: str, tmp_path) -> None:
    store_url = redis_db(redis_url, 5)
    store = redis.Redis.from_url(store_url)
    store.flushdb()
    save_signal_model(tmp_path / "model", version="3", seed=3)
    with (
        predictor(tmp_path / "model", "signal-1h", track="canary") as canary,
        transformer(store_url, {"signal-1h": canary}, {"1h": "signal-1h"}, protocol=protocol) as front,
    ):
        await write_features(store_url, {"TRK": np.random.default_rng(0).normal(size=len(NAMES))})
        answer = ask(front, ["TRK"])
        assert answer.status_code == 200, answer.text
        assert columns(answer)["symbol"] == ["TRK"]
    (_, entry), *_ = store.xrevrange(STREAM_KEY, count=1)
    assert entry[b"symbol"] == b"TRK"
    assert entry[b"track"] == b"canary"  # the transformer itself runs with the default track, stable


async def test_a_canary_answer_is_served_from_the_cache_the_second_time(redis_url: str, tmp_path) -> None:
    """The cache key is the transformer's own track, whatever track the answering predictor reports."""
    store_url = redis_db(redis_url, 6)
    redis.Redis.from_url(store_url).flushdb()
    save_signal_model(tmp_path / "model", version="3", seed=3)
    with (
        predictor(tmp_path / "model", "signal-1h", track="canary") as canary,
        transformer(store_url, {"signal-1h": canary}, {"1h": "signal-1h"}) as front,
    ):
        await write_features(store_url, {"TRK": np.random.default_rng(1).normal(size=len(NAMES))})
        first = ask(front, ["TRK"])
        assert first.status_code == 200, first.text
        assert columns(first)["cached"] == [False]
        calls = canary.metric("tickserve_predictor_requests_total", model_name=canary.model_name, outcome="ok")
        second = ask(front, ["TRK"])
        assert second.status_code == 200, second.text
        assert columns(second)["cached"] == [True]
        assert canary.metric("tickserve_predictor_requests_total", model_name=canary.model_name, outcome="ok") == calls
