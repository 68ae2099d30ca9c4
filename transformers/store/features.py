"""The Redis hot-feature store: the key layout, the ingest-side writer and the transformer-side decoding.

Key layout (all values written by `tickserve ingest`):

- `tickserve:features:{symbol}` hash: `v` the feature vector as little-endian float32 bytes in schema order,
  `ts` the event time of the bar (or order-book quote) it was computed from (Unix seconds), `schema` the
  feature-schema version. Only symbols whose windows are full are written. Overwritten on every bar: readers always see the latest value and never slow
  the writer down.
- `tickserve:schema:{version}` string: the JSON list of feature names of that schema version, in vector
  order. Restated with every batch (Redis may have restarted empty); versions are immutable, so readers
  cache them.
- `tickserve:prices:{symbol}` sorted set: close prices scored by event time (member `"{ts}:{price}"`),
  trimmed to `price_history_seconds`. The quality monitor reads realised returns from it.

A batch for many symbols is one MULTI/EXEC transaction, so it costs one round trip and readers never see
half a batch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis.asyncio as redis

FEATURE_FIELDS = (b"v", b"ts", b"schema")
VECTOR_DTYPE = np.dtype("<f4")


def features_key(symbol: str) -> str:
    return f"tickserve:features:{symbol}"


def schema_key(version: str) -> str:
    return f"tickserve:schema:{version}"


def prices_key(symbol: str) -> str:
    return f"tickserve:prices:{symbol}"


@dataclass(frozen=True)
class HotFeatures:
    """What one ingest batch changed: the latest vector of each updated symbol and every close it saw."""

    schema_version: str
    feature_names: Sequence[str]
    symbols: Sequence[str]
    vectors: np.ndarray  # [S, F], rows follow `symbols`
    timestamps: np.ndarray  # [S] event time of the information behind each vector, Unix seconds
    closes: Sequence[tuple[str, float, float]] = ()  # (symbol, ts, close) of every bar, for the price history

    def __post_init__(self) -> None:
        if self.vectors.shape != (len(self.symbols), len(self.feature_names)):
            raise ValueError(
                f"vectors {self.vectors.shape} do not match {len(self.symbols)} symbols x {len(self.feature_names)}"
            )
        if len(self.timestamps) != len(self.symbols):
            raise ValueError("timestamps need one value per symbol")


class FeatureWriter:
    """Writes feature batches, one transaction (one round trip) per batch."""

    def __init__(self, client: redis.Redis, price_history_seconds: float) -> None:
        self._client = client
        self._price_history_seconds = price_history_seconds

    async def write(self, batch: HotFeatures) -> None:
        pipe = self._client.pipeline(transaction=True)
        # Every batch restates its schema (one small SET): a restarted Redis has none, and readers need it.
        pipe.set(schema_key(batch.schema_version), json.dumps(list(batch.feature_names)))
        vectors = np.ascontiguousarray(batch.vectors, dtype=VECTOR_DTYPE)
        for row, symbol in enumerate(batch.symbols):
            pipe.hset(
                features_key(symbol),
                mapping={
                    "v": vectors[row].tobytes(),
                    "ts": repr(float(batch.timestamps[row])),
                    "schema": batch.schema_version,
                },
            )
        newest: dict[str, float] = {}
        for symbol, event_ts, event_close in batch.closes:
            ts, close = float(event_ts), float(event_close)  # plain floats: their repr is the member text
            pipe.zadd(prices_key(symbol), {f"{ts!r}:{close!r}": ts})
            newest[symbol] = max(ts, newest.get(symbol, ts))
        for symbol, ts in newest.items():
            pipe.zremrangebyscore(prices_key(symbol), "-inf", f"({ts - self._price_history_seconds!r}")
        await pipe.execute()


@dataclass(frozen=True)
class StoredFeatures:
    """One symbol's hot features as read back from Redis."""

    symbol: str
    vector: np.ndarray  # float32, schema order
    ts: float
    schema_version: str


def decode_features(symbol: str, fields: list[bytes | None]) -> StoredFeatures | None:
    """Decode an HMGET of FEATURE_FIELDS; None when the symbol has no features."""
    vector, ts, schema = fields
    if vector is None or ts is None or schema is None:
        return None
    return StoredFeatures(symbol, np.frombuffer(vector, dtype=VECTOR_DTYPE), float(ts), schema.decode())


class SchemaCatalog:
    """Feature names per schema version, fetched once per version (versions never change)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._names: dict[str, tuple[str, ...]] = {}

    async def names(self, version: str) -> tuple[str, ...] | None:
        if version not in self._names:
            raw = await self._client.get(schema_key(version))
            if raw is None:
                return None
            self._names[version] = tuple(json.loads(raw))
        return self._names[version]
