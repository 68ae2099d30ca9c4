"""Predictions as strategies consume them, their Redis cache and the Redis Stream that publishes them.

Key layout:

- `tickserve:prediction:{track}:{horizon}:{symbol}` string: the JSON of the last prediction computed for that
  symbol, with the feature timestamp and schema it was computed from. A request whose features still carry
  that timestamp and schema is answered from here without calling the predictor. The transformer's track
  (stable, canary) is part of the key so that two model versions served side by side never answer for each
  other. Entries expire after `prediction_cache_ttl_seconds`.
- `tickserve:versions:{model}` hash: rollout track -> the model version answering on it, as last announced by a
  transformer that saw the version answer for the first time (`AnsweringVersions`), or filled in by any
  transformer when the field is missing (a restarted Redis). A cached prediction is
  served only while its version is the one its track announces: once a new version answers, the old version's
  cache entries are dead at once for every transformer, not when their features change or their TTL expires.
- `tickserve:predictions` stream: one entry per computed prediction (cache hits are not new predictions and
  are not repeated), approximately capped at `stream_maxlen` entries. Consumers (strategy, dashboard,
  quality monitor) read it with consumer groups. Entry fields are those of `Prediction.to_fields`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import Enum

import redis.asyncio as redis

STREAM_KEY = "tickserve:predictions"


def cache_key(track: str, horizon: str, symbol: str) -> str:
    return f"tickserve:prediction:{track}:{horizon}:{symbol}"


def versions_key(model: str) -> str:
    return f"tickserve:versions:{model}"


class Announce(Enum):
    """What `PredictionSink.publish` records about the predictions' version on their track."""

    NOTHING = "nothing"
    NEW_VERSION = "new_version"  # this transformer saw the version answer first: it replaces the announced one
    IF_MISSING = "if_missing"  # nothing is announced for the track (e.g. a restarted Redis): fill it in only


class AnsweringVersions:
    """The model version answering on each (model, track), as this transformer process has seen answers.

    `observe` says when an answer comes from a version new on its track, which the transformer then announces
    (writes to `versions_key`) before it replies. A version once replaced on a track is not announced again by
    this process: while a rolling update runs, old pods keep answering for a while, and their late answers must
    not bring the old version (and its cache) back. After a rollback to an older version the transformer's
    cache stays cold (every request a miss, never a stale hit) until the transformer restarts.
    """

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], str] = {}
        self._replaced: set[tuple[str, str, str]] = set()

    def observe(self, model: str, track: str, version: str) -> bool:
        """Record an answer of `version` on `track`; True when that version is new there (announce it)."""
        current = self._current.get((model, track))
        if current == version or (model, track, version) in self._replaced:
            return False
        if current is not None:
            self._replaced.add((model, track, current))
        self._current[(model, track)] = version
        return True

    def current(self, model: str, track: str) -> str | None:
        """The version this process last saw answering first on `track` (None before any answer)."""
        return self._current.get((model, track))


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

    async def publish(self, predictions: Sequence[Prediction], announce: Announce = Announce.NOTHING) -> None:
        """Cache and stream `predictions` (all of one model, version and track), first announcing their version
        on their track as `announce` says, in the same round trip."""
        pipe = self._client.pipeline(transaction=False)
        if announce is not Announce.NOTHING and predictions:
            first = predictions[0]
            write = pipe.hset if announce is Announce.NEW_VERSION else pipe.hsetnx
            write(versions_key(first.model), first.track, first.model_version)
        for item in predictions:
            key = cache_key(self._cache_track or item.track, item.horizon, item.symbol)
            pipe.set(key, item.to_json(), px=self._ttl_ms)
            pipe.xadd(STREAM_KEY, item.to_fields(), maxlen=self._stream_maxlen, approximate=True)
        await pipe.execute()
