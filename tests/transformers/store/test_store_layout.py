"""The documented Redis key layout, written and read back through a real redis-server."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis
from serving_stack import redis_db

from tickserve.settings import RedisSettings
from tickserve.transformers.store.features import (
    FEATURE_FIELDS,
    FeatureWriter,
    HotFeatures,
    SchemaCatalog,
    decode_features,
    features_key,
    prices_key,
    schema_key,
)
from tickserve.transformers.store.predictions import STREAM_KEY, Prediction, PredictionSink, cache_key
from tickserve.transformers.store.redis import connect

NAMES = ["a", "b", "c"]


@pytest.fixture
def store_url(redis_url: str) -> str:
    url = redis_db(redis_url, 4)
    redis.Redis.from_url(url).flushdb()
    return url


def batch(ts: float, vectors: np.ndarray, closes=()) -> HotFeatures:
    return HotFeatures("schema-1", NAMES, ["X", "Y"], vectors, np.array([ts, ts]), list(closes))


async def test_features_schema_and_prices_follow_the_layout(store_url) -> None:
    client = connect(RedisSettings(redis_url=store_url, redis_timeout_seconds=2.0))
    writer = FeatureWriter(client, price_history_seconds=100)
    vectors = np.array([[1.5, -2.25, 3.0], [0.1, 0.2, 0.3]])
    await writer.write(batch(1000.0, vectors, [("X", 1000.0, np.float64(10.5))]))
    await writer.write(batch(1150.0, vectors, [("X", 1150.0, 11.0), ("Y", 1150.0, 5.0)]))

    plain = redis.Redis.from_url(store_url)
    stored = decode_features("X", plain.hmget(features_key("X"), list(FEATURE_FIELDS)))
    assert stored is not None
    np.testing.assert_array_equal(stored.vector, vectors[0].astype("<f4"))
    assert (stored.ts, stored.schema_version) == (1150.0, "schema-1")
    assert json.loads(plain.get(schema_key("schema-1"))) == NAMES
    assert plain.zrange(prices_key("X"), 0, -1) == [b"1150.0:11.0"], "closes older than the history are trimmed"
    assert decode_features("Z", plain.hmget(features_key("Z"), list(FEATURE_FIELDS))) is None
    await client.aclose()


async def test_batches_written_together_are_one_script_call_each_and_leave_what_writing_them_in_turn_leaves(
    store_url,
) -> None:
    client = connect(RedisSettings(redis_url=store_url, redis_timeout_seconds=2.0))
    plain = redis.Redis.from_url(store_url)
    batches = [
        batch(1000.0 + k, np.full((2, 3), float(k)), [("X", 1000.0 + k, 10.0 + k), ("Y", 1000.0 + k, 5.0 + k)])
        for k in range(5)
    ]
    in_turn_writer = FeatureWriter(client, price_history_seconds=100)
    for one in batches:
        await in_turn_writer.write(one)
    in_turn = {key: plain.dump(key) for key in sorted(plain.keys())}
    plain.flushdb()
    before = plain.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)

    await FeatureWriter(client, price_history_seconds=100).write(*batches)

    assert plain.info("commandstats")["cmdstat_evalsha"]["calls"] - before == len(batches)
    assert {key: plain.dump(key) for key in sorted(plain.keys())} == in_turn
    await client.aclose()


async def test_schema_names_are_cached_per_version(store_url) -> None:
    client = connect(RedisSettings(redis_url=store_url, redis_timeout_seconds=2.0))
    await FeatureWriter(client, 100).write(batch(1.0, np.zeros((2, 3))))
    catalog = SchemaCatalog(client)
    assert await catalog.names("schema-1") == tuple(NAMES)
    await client.delete(schema_key("schema-1"))
    assert await catalog.names("schema-1") == tuple(NAMES), "versions are immutable, read once"
    assert await catalog.names("schema-2") is None
    await client.aclose()


def test_a_batch_whose_shapes_disagree_is_refused() -> None:
    with pytest.raises(ValueError, match="do not match"):
        batch(1.0, np.zeros((3, 3)))


async def test_predictions_are_cached_with_a_ttl_and_streamed(store_url) -> None:
    client = connect(RedisSettings(redis_url=store_url, redis_timeout_seconds=2.0))
    prediction = Prediction("X", "1h", 3600.0, "m-1h", "7", "canary", 0.2, 0.6, 0.4, 0.6, 1000.0, "schema-1", 1001.0)
    await PredictionSink(client, ttl_seconds=30, stream_maxlen=100).publish([prediction])

    plain = redis.Redis.from_url(store_url)
    key = cache_key("canary", "1h", "X")
    assert Prediction.from_json(plain.get(key)) == prediction
    assert 0 < plain.pttl(key) <= 30_000
    [(_, fields)] = plain.xrange(STREAM_KEY)
    assert Prediction.from_fields(fields) == prediction
    with pytest.raises(KeyError):
        Prediction.from_fields({b"symbol": b"X"})
    await client.aclose()
