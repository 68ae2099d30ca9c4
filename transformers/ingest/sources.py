"""Market-data sources for ingest. Each yields batches: lists of bars and quotes that arrived together.

- replay: a `symbol,ts,open,high,low,close,volume` CSV (read by `bars.read_bars`), one batch per timestamp,
  optionally paced at `speed` times real time.
- websocket: JSON text frames from a feed, one batch per frame, reconnecting with backoff when the feed
  drops. A frame is one object or a list of objects:
  `{"type": "bar", "symbol": "BTCUSDT", "ts": 1700000000, "close": 37000.5, "volume": 12.3}` (`type` may be
  omitted for bars; `ts` is epoch seconds or ISO 8601; open/high/low are optional) or
  `{"type": "book", "symbol": "BTCUSDT", "ts": 1700000000.5, "bids": [3.0, 1.2], "asks": [2.5, 4.0]}` (sizes
  per level, best first). A frame that is not valid JSON or whose objects do not match is counted, logged
  and skipped as a whole; the connection stays up.
- synthetic: `market_data.SyntheticMarket` bars on a wall-clock grid, after a backfill of history bars so
  that features are ready at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

import websockets
from prometheus_client import Counter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tickserve.transformers.features.bars import Bar, Quote, parse_timestamp, read_bars
from tickserve.transformers.ingest.synthetic import SyntheticMarket

log = logging.getLogger("tickserve.ingest")

Event = Bar | Quote

MALFORMED_FRAMES = Counter("tickserve_ingest_malformed_frames_total", "WebSocket frames skipped as malformed")
FRAMES = Counter("tickserve_ingest_frames_total", "WebSocket frames received")
RECONNECTS = Counter("tickserve_ingest_reconnects_total", "WebSocket (re)connections to the feed")


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Finite = Annotated[float, AfterValidator(_finite)]


def _epoch(value: float | str) -> float:
    return _finite(parse_timestamp(value) if isinstance(value, str) else float(value))


Timestamp = Annotated[float | str, AfterValidator(_epoch)]


class BarFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["bar"] = "bar"
    symbol: str = Field(min_length=1, pattern=r"^\S+$")  # no whitespace: the Redis writer joins symbols
    ts: Timestamp
    close: Finite = Field(gt=0)
    volume: Finite = Field(ge=0)
    open: Finite | None = None
    high: Finite | None = None
    low: Finite | None = None

    def event(self) -> Bar:
        close = self.close
        opened = close if self.open is None else self.open
        high = max(opened, close) if self.high is None else self.high
        low = min(opened, close) if self.low is None else self.low
        return Bar(self.symbol, repr(self.ts), float(self.ts), opened, high, low, close, self.volume)


class BookFrame(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["book"]
    symbol: str = Field(min_length=1, pattern=r"^\S+$")  # no whitespace: the Redis writer joins symbols
    ts: Timestamp
    bids: list[Annotated[Finite, Field(ge=0)]]
    asks: list[Annotated[Finite, Field(ge=0)]]

    def event(self) -> Quote:
        return Quote(self.symbol, float(self.ts), tuple(self.bids), tuple(self.asks))


_FRAME = TypeAdapter(list[BarFrame | BookFrame] | BarFrame | BookFrame)


class MalformedFrame(ValueError):
    """A frame that is not JSON or does not describe bars and quotes; the message says what is wrong."""


def parse_frame(message: str | bytes) -> list[Event]:
    try:
        parsed = _FRAME.validate_json(message)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise MalformedFrame(problems) from None
    frames = parsed if isinstance(parsed, list) else [parsed]
    return [frame.event() for frame in frames]


async def websocket_source(url: str) -> AsyncIterator[list[Event]]:
    """Frames from `url` forever; websockets' connect iterator reconnects with exponential backoff."""
    async for connection in websockets.connect(url, max_queue=1024):
        RECONNECTS.inc()
        log.info("connected to feed %s", url)
        try:
            async for message in connection:
                FRAMES.inc()
                try:
                    events = parse_frame(message)
                except MalformedFrame as exc:
                    MALFORMED_FRAMES.inc()
                    log.warning("skipped malformed frame (%s): %.200r", exc, message)
                    continue
                if events:
                    yield events
        except websockets.ConnectionClosed as exc:
            log.warning("feed %s closed (%s); reconnecting", url, exc)


async def replay_source(path: Path, speed: float) -> AsyncIterator[list[Event]]:
    """The bars of a CSV file, one batch per timestamp; `speed` > 0 paces them at speed x real time."""
    batch: list[Event] = []
    for bar in read_bars(path):
        if batch and bar.timestamp != batch[-1].timestamp:
            yield batch
            await asyncio.sleep((bar.timestamp - batch[-1].timestamp) / speed if speed > 0 else 0)
            batch = []
        batch.append(bar)
    if batch:
        yield batch


async def synthetic_source(
    market: SyntheticMarket, interval_seconds: float, history_bars: int, live_bars: int | None
) -> AsyncIterator[list[Event]]:
    """`history_bars` past bars at once (so features are ready), then one bar per symbol every interval.

    Timestamps lie on the wall-clock grid of `interval_seconds`, so served features are as fresh as a live
    feed's. `live_bars` None runs forever.
    """
    now = math.floor(time.time() / interval_seconds) * interval_seconds
    for k in range(history_bars - 1, -1, -1):
        yield [*market.bars(now - k * interval_seconds), *market.quotes(now - k * interval_seconds)]
        await asyncio.sleep(0)
    produced = 0
    while live_bars is None or produced < live_bars:
        now += interval_seconds
        await asyncio.sleep(max(0.0, now - time.time()))
        yield [*market.bars(now), *market.quotes(now)]
        produced += 1
