"""Market-data sources for ingest. Each yields batches: lists of bars and quotes that arrived together.

- replay: a `symbol,ts,open,high,low,close,volume` CSV (read by `bars.read_bars`), one batch per timestamp,
  optionally paced at `speed` times real time.
- websocket: JSON text frames from a feed, one batch per frame, reconnecting with backoff when the feed
  drops (the frame format is in `frames`). A frame that is not valid JSON or whose objects do not match is
  counted, logged and skipped as a whole; the connection stays up.
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

import websockets
from prometheus_client import Counter

from tickserve.transformers.features.bars import Bar, read_bars
from tickserve.transformers.ingest.frames import BarColumns, Event, MalformedFrame, parse_frame
from tickserve.transformers.ingest.synthetic import SyntheticMarket

log = logging.getLogger("tickserve.ingest")


MALFORMED_FRAMES = Counter("tickserve_ingest_malformed_frames_total", "WebSocket frames skipped as malformed")
FRAMES = Counter("tickserve_ingest_frames_total", "WebSocket frames received")
RECONNECTS = Counter("tickserve_ingest_reconnects_total", "WebSocket (re)connections to the feed")


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
    """The bars of a CSV file, one batch per timestamp (as columns: the pipeline applies them as arrays);
    `speed` > 0 paces them at speed x real time."""
    batch: list[Bar] = []
    for bar in read_bars(path):
        if batch and bar.timestamp != batch[-1].timestamp:
            yield [BarColumns.of(batch)]
            await asyncio.sleep((bar.timestamp - batch[-1].timestamp) / speed if speed > 0 else 0)
            batch = []
        batch.append(bar)
    if batch:
        yield [BarColumns.of(batch)]


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
