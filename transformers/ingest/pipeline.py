"""The ingest pipeline: source batches -> feature engine -> bounded queue -> Redis, one atomic call per batch.

Two tasks keep the feed independent of its consumers. The feed task applies every batch to the engine (O(1)
per bar, in memory; a WebSocket frame of plain bars as arrays, see `frames.BarColumns`) and enqueues what
changed; the writer task writes queued batches to Redis, one atomic script call each, and the batches that
queued up during a write share the next round trip. Readers (transformers) only read latest-value keys, so
they can never slow the feed. When the writer falls behind (a slow or unavailable Redis), a live feed does
not wait: the oldest queued batch is dropped and counted. A replay at full speed is the exception: a file has
no deadline, so it waits for the writer instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from tenacity import RetryCallState

from tickserve.transformers.features.bars import Bar, Quote, distinct_symbol_runs
from tickserve.transformers.features.engine import FeatureEngine
from tickserve.transformers.ingest.frames import BarColumns, Event
from tickserve.transformers.store.features import FeatureWriter, HotFeatures
from tickserve.transformers.store.redis import until_redis_returns

log = logging.getLogger("tickserve.ingest")

BARS = Counter("tickserve_ingest_bars_total", "Bars applied to the feature engine")
SKIPPED_BARS = Counter("tickserve_ingest_skipped_bars_total", "Bars skipped, by reason", ["reason"])
DROPPED_BATCHES = Counter("tickserve_ingest_dropped_batches_total", "Batches dropped because the writer fell behind")
WRITES = Counter("tickserve_ingest_writes_total", "Batches written to Redis (one atomic script call each)")
WRITE_FAILURES = Counter("tickserve_ingest_write_failures_total", "Failed Redis writes (retried)")
WRITE_SECONDS = Histogram("tickserve_ingest_write_seconds", "Redis round trip of one write (one or more batches)")
QUEUE_DEPTH = Gauge("tickserve_ingest_queue_depth", "Batches waiting for the writer")

WRITE_GROUP = 16  # queued batches sent in one round trip at most: bounds the time a write holds Redis


@dataclass
class IngestReport:
    bars: int = 0
    writes: int = 0
    dropped: int = 0
    skipped: int = 0


class Ingest:
    def __init__(self, engine: FeatureEngine, writer: FeatureWriter, queue_size: int, wait_for_writer: bool) -> None:
        self._engine = engine
        self._writer = writer
        self._queue: asyncio.Queue[HotFeatures | None] = asyncio.Queue(maxsize=queue_size)
        self._wait_for_writer = wait_for_writer
        self._last_bar: dict[str, float] = {}
        self.report = IngestReport()

    async def run(self, source: AsyncIterator[list[Event]]) -> IngestReport:
        """Consume `source` until it ends (a live source never does), then flush the queue."""
        writer = asyncio.create_task(self._write_forever())
        try:
            async for events in source:
                if writer.done():
                    await writer  # the writer failed beyond retrying: surface its error
                batch = self.apply(events)
                if batch is not None:
                    await self._enqueue(batch, writer)
            await self._put(None, writer)
            await writer
        finally:
            writer.cancel()
        return self.report

    def apply(self, events: list[Event]) -> HotFeatures | None:
        """Update the engine with one batch; what to write: the ready vectors it changed and every close."""
        if len(events) == 1 and isinstance(columns := events[0], BarColumns) and _distinct(columns.symbols):
            return self._apply_columns(columns)
        event_ts: dict[str, float] = {}
        closes: list[tuple[str, float, float]] = []
        bars: list[Bar] = []
        for event in _records(events):
            if isinstance(event, Quote):
                self._engine.update_book(event.symbol, event.bid_sizes, event.ask_sizes)
                event_ts[event.symbol] = max(event.timestamp, event_ts.get(event.symbol, event.timestamp))
            elif event.timestamp <= self._last_bar.get(event.symbol, -np.inf):
                SKIPPED_BARS.labels("not_after_previous_bar").inc()
                self.report.skipped += 1
            else:
                self._last_bar[event.symbol] = event.timestamp
                bars.append(event)
        for run in distinct_symbol_runs(bars):
            ids = self._engine.symbol_ids(bar.symbol for bar in run)
            self._engine.update(ids, [bar.close for bar in run], [bar.volume for bar in run])
            for bar in run:
                closes.append((bar.symbol, bar.timestamp, bar.close))
                event_ts[bar.symbol] = max(bar.timestamp, event_ts.get(bar.symbol, bar.timestamp))
        BARS.inc(len(bars))
        self.report.bars += len(bars)
        symbols = list(event_ts)
        if not symbols:
            return None
        current = self._engine.current(self._engine.symbol_ids(symbols))
        ready = [symbol for symbol, is_ready in zip(symbols, current.ready.tolist(), strict=True) if is_ready]
        if not ready and not closes:
            return None
        return self._hot(ready, current.values[current.ready], [event_ts[symbol] for symbol in ready], closes)

    def _apply_columns(self, columns: BarColumns) -> HotFeatures | None:
        """`apply` for one frame of bars of distinct symbols, with array operations instead of a loop per bar
        (the same result: tests compare the two)."""
        last = np.fromiter((self._last_bar.get(symbol, -np.inf) for symbol in columns.symbols), np.float64)
        fresh = columns.timestamps > last
        skipped = len(columns.symbols) - int(fresh.sum())
        if skipped:
            SKIPPED_BARS.labels("not_after_previous_bar").inc(skipped)
            self.report.skipped += skipped
        symbols = [symbol for symbol, keep in zip(columns.symbols, fresh.tolist(), strict=True) if keep]
        if not symbols:
            return None
        timestamps = columns.timestamps[fresh]
        self._last_bar.update(zip(symbols, timestamps.tolist(), strict=True))
        close = columns.close[fresh]
        updated = self._engine.update(self._engine.symbol_ids(symbols), close, columns.volume[fresh])
        BARS.inc(len(symbols))
        self.report.bars += len(symbols)
        closes = list(zip(symbols, timestamps.tolist(), close.tolist(), strict=True))
        ready = updated.ready
        return self._hot(
            [symbol for symbol, is_ready in zip(symbols, ready.tolist(), strict=True) if is_ready],
            updated.values[ready],
            timestamps[ready],
            closes,
        )

    def _hot(
        self,
        symbols: list[str],
        vectors: np.ndarray,
        timestamps: Sequence[float] | np.ndarray,
        closes: list[tuple[str, float, float]],
    ) -> HotFeatures:
        return HotFeatures(
            schema_version=self._engine.config.schema_version,
            feature_names=self._engine.names,
            symbols=symbols,
            vectors=vectors,
            timestamps=np.asarray(timestamps, dtype=np.float64),
            closes=closes,
        )

    async def _enqueue(self, batch: HotFeatures, writer: asyncio.Task[None]) -> None:
        if self._wait_for_writer:
            await self._put(batch, writer)
        else:
            if self._queue.full():
                self._queue.get_nowait()
                DROPPED_BATCHES.inc()
                self.report.dropped += 1
            self._queue.put_nowait(batch)
            await asyncio.sleep(0)  # let the writer run between batches of a fast source
        QUEUE_DEPTH.set(self._queue.qsize())

    async def _put(self, item: HotFeatures | None, writer: asyncio.Task[None]) -> None:
        """Wait for room in the queue, or for the writer to fail (it would never make room): raise its error."""
        if not self._queue.full():
            self._queue.put_nowait(item)
            return
        put = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait((put, writer), return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            await writer  # raises the writer's error
            raise RuntimeError("the ingest writer stopped before the source ended")

    async def _write_forever(self) -> None:
        """Write queued batches until the end-of-source marker; when several are waiting (the writer fell behind),
        up to WRITE_GROUP of them go in one round trip, each still its own atomic script call."""
        retrying = until_redis_returns(first_wait_seconds=0.05, max_wait_seconds=2.0, on_retry=_log_write_failure)
        ended = False
        while not ended:
            queued = [await self._queue.get()]
            while len(queued) < WRITE_GROUP and not self._queue.empty():
                queued.append(self._queue.get_nowait())
            QUEUE_DEPTH.set(self._queue.qsize())
            batches = [batch for batch in queued if batch is not None]
            ended = len(batches) < len(queued)  # the end-of-source marker, always the last item queued
            if not batches:
                continue
            with WRITE_SECONDS.time():
                await retrying(self._writer.write, *batches)
            WRITES.inc(len(batches))
            self.report.writes += len(batches)


def _distinct(symbols: list[str]) -> bool:
    return len(set(symbols)) == len(symbols)


def _records(events: list[Event]) -> Iterator[Bar | Quote]:
    for event in events:
        if isinstance(event, BarColumns):
            yield from event.bars()
        else:
            yield event


def _log_write_failure(state: RetryCallState) -> None:
    WRITE_FAILURES.inc()
    error = state.outcome.exception() if state.outcome else None
    log.warning("Redis write failed (attempt %d, retrying; the feed keeps running): %s", state.attempt_number, error)
