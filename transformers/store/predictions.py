"""Predictions as strategies consume them, their Redis cache and the Redis Stream that publishes them.

Key layout:

- `tickserve:prediction:{track}:{horizon}:{symbol}` string: the JSON of the last prediction computed for that
  symbol, with the feature timestamp and schema it was computed from. A request whose features still carry
  that timestamp and schema is answered from here without calling the predictor. The transformer's track
  (stable, canary) is part of the key so that two model versions served side by side never answer for each
  other. Entries expire after `prediction_cache_ttl_seconds`.
- `tickserve:predictions` stream: one entry per computed prediction (cache hits are not new predictions and
  are not repeated), approximately capped at `stream_maxlen` entries. Consumers (strategy, dashboard,
  quality monitor) read it with consumer groups. Entry fields are those of `Prediction.to_fields`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import redis.asyncio as redis

STREAM_KEY = "tickserve:predictions"


def cache_key(track: str, horizon: str, symbol: str) -> str:
    return f"tickserve:prediction:{track}:{horizon}:{symbol}"


@dataclass(frozen=True)
class Prediction:
    """One directional prediction: `prediction` = p_up - p_down in [-1, 1]; confidence = the top class probability."""

    symbol: str
    horizon: str
    horizon_seconds: float
    model: str
    model_version: str
    track: str
    prediction: float
    probability_up: float
    probability_down: float
    confidence: float
    feature_ts: float
    schema_version: str
    predicted_at: float

    def as_dict(self) -> dict[str, str | float]:
        # Not dataclasses.asdict: it deep-copies every field, a visible cost at 1,000 predictions/s.
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def to_fields(self) -> dict[str, str]:
        """Flat string fields, the form of stream entries."""
        return {key: value if isinstance(value, str) else repr(value) for key, value in self.as_dict().items()}

    @classmethod
    def from_fields(cls, raw: Mapping[bytes | str, bytes | str]) -> Prediction:
        """Parse stream-entry fields; raises KeyError/ValueError on an entry that is not a prediction."""
        text = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in raw.items()
        }
        values = {}
        for field in fields(cls):
            value = text[field.name]
            values[field.name] = value if field.type == "str" else float(value)
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> Prediction:
        return cls(**json.loads(raw))


_FIELD_NAMES = tuple(field.name for field in fields(Prediction))


class PredictionSink:
    """Caches and publishes freshly computed predictions in one round trip.

    `cache_track` is the track the cache is keyed by: the transformer's own, the one it reads with. A
    prediction's `track` is the predictor that answered (stable and canary pods behind one Service), which the
    transformer cannot know before asking, so it must not key the cache. None: key by each prediction's track.
    """

    def __init__(
        self, client: redis.Redis, ttl_seconds: float, stream_maxlen: int, cache_track: str | None = None
    ) -> None:
        self._client = client
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._stream_maxlen = stream_maxlen
        self._cache_track = cache_track

    async def publish(self, predictions: Sequence[Prediction]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for item in predictions:
            key = cache_key(self._cache_track or item.track, item.horizon, item.symbol)
            pipe.set(key, item.to_json(), px=self._ttl_ms)
            pipe.xadd(STREAM_KEY, item.to_fields(), maxlen=self._stream_maxlen, approximate=True)
        await pipe.execute()
