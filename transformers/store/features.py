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

A batch for many symbols is one Lua script call (atomic, like MULTI/EXEC), so it costs one round trip and readers never see
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


# One batch in one atomic call: the schema, every symbol's vector, and each symbol's new closes with its trims.
# A script instead of MULTI/EXEC because the client, not Redis, was the cost: redis-py packs every argument of every
# command in Python (three commands per bar); here a whole batch is nine arguments (lists joined by newlines, the
# float32 vectors concatenated), split again inside Redis. Keys are built in the script from the layout's prefixes
# (a standalone Redis: a batch spans every symbol's keys, as the transaction did).
# ARGV: schema key, schema JSON, schema version, features key prefix, prices key prefix, vector width in bytes,
# symbols, vectors, timestamps (one per symbol), closes ("symbol ts member" lines), trims ("symbol bound" lines).
WRITE_BATCH = """
local schema_key, names, version, features, prices, width = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
redis.call('SET', schema_key, names)
local i, timestamps = 0, {}
for ts in string.gmatch(ARGV[9], '[^\\n]+') do timestamps[#timestamps + 1] = ts end
for symbol in string.gmatch(ARGV[7], '[^\\n]+') do
  i = i + 1
  local vector = string.sub(ARGV[8], (i - 1) * width + 1, i * width)
  redis.call('HSET', features .. symbol, 'v', vector, 'ts', timestamps[i], 'schema', version)
end
for symbol, ts, member in string.gmatch(ARGV[10], '(%S+) (%S+) (%S+)') do
  redis.call('ZADD', prices .. symbol, ts, member)
end
for symbol, bound in string.gmatch(ARGV[11], '(%S+) (%S+)') do
  redis.call('ZREMRANGEBYSCORE', prices .. symbol, '-inf', bound)
end
"""


class FeatureWriter:
    """Writes feature batches, one atomic script call per batch (readers never see half a batch), one round trip
    per `write` call however many batches it is given.

    A symbol's price history is trimmed when its newest close has moved on by 1% of `price_history_seconds` since
    the last trim, not on every bar: the history holds at most 1% more than asked for, and most bars cost two
    commands in Redis instead of three."""

    TRIM_FRACTION = 0.01

    def __init__(self, client: redis.Redis, price_history_seconds: float) -> None:
        self._client = client
        self._price_history_seconds = price_history_seconds
        self._script = client.register_script(WRITE_BATCH)  # EVALSHA; reloaded by itself after a Redis restart
        self._trimmed_at: dict[str, float] = {}  # symbol -> newest close time at its last trim

    async def write(self, *batches: HotFeatures) -> None:
        """Write each batch with its own script call (each atomic); several batches share one round trip (a
        pipeline, not a transaction), so a writer that fell behind catches up without a round trip per batch."""
        if len(batches) == 1:
            await self._script(args=self._arguments(batches[0]))
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for batch in batches:
                await self._script(args=self._arguments(batch), client=pipe)
            await pipe.execute()

    def _arguments(self, batch: HotFeatures) -> list:
        vectors = np.ascontiguousarray(batch.vectors, dtype=VECTOR_DTYPE)
        closes, newest = [], {}
        for symbol, event_ts, event_close in batch.closes:
            ts, close = float(event_ts), float(event_close)  # plain floats: their repr is the member text
            closes.append(f"{symbol} {ts!r} {ts!r}:{close!r}")
            newest[symbol] = max(ts, newest.get(symbol, ts))
        trims = [f"{symbol} {bound}" for symbol, ts in newest.items() if (bound := self._trim_bound(symbol, ts))]
        # Every batch restates its schema (one small SET): a restarted Redis has none, and readers need it.
        return [
            schema_key(batch.schema_version), json.dumps(list(batch.feature_names)), batch.schema_version,
            features_key(""), prices_key(""), vectors.shape[1] * VECTOR_DTYPE.itemsize,
            "\n".join(batch.symbols), vectors.tobytes(), "\n".join(repr(float(ts)) for ts in batch.timestamps),
            "\n".join(closes), "\n".join(trims),
        ]  # fmt: skip

    def _trim_bound(self, symbol: str, newest: float) -> str:
        """The exclusive score below which `symbol`'s closes go, or '' when its trim is not due yet."""
        last = self._trimmed_at.get(symbol)
        if last is not None and newest - last < self.TRIM_FRACTION * self._price_history_seconds:
            return ""
        self._trimmed_at[symbol] = newest
        return f"({newest - self._price_history_seconds!r}"


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
