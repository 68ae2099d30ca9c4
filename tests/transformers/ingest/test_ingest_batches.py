"""How ingest turns source batches into Redis writes (engine and batching only, no servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest
from redis.exceptions import ResponseError

from tickserve.transformers.features.bars import Bar, Quote
from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine
from tickserve.transformers.ingest.frames import BarColumns, MalformedFrame, parse_frame
from tickserve.transformers.ingest.pipeline import Ingest

CONFIG = FeatureConfig(windows=(3,), book_levels=(2,))


def bar(symbol: str, ts: float, close: float) -> Bar:
    return Bar(symbol, repr(ts), ts, close, close, close, close, 5.0)


def pipeline() -> Ingest:
    return Ingest(FeatureEngine(CONFIG), writer=None, queue_size=4, wait_for_writer=True)  # type: ignore[arg-type]


def test_vectors_are_written_once_ready_and_every_close_is_kept() -> None:
    ingest = pipeline()
    first = ingest.apply([bar("A", 1, 10.0), bar("B", 1, 20.0)])
    assert first is not None and list(first.symbols) == [] and len(first.closes) == 2
    ingest.apply([bar("A", 2, 11.0), bar("B", 2, 21.0)])
    third = ingest.apply([bar("A", 3, 12.0), bar("A", 4, 13.0)])  # two bars of A in one batch

    assert third is not None and list(third.symbols) == ["A"]
    assert third.timestamps.tolist() == [4.0]
    assert third.closes == [("A", 3, 12.0), ("A", 4, 13.0)]
    assert third.vectors[0][CONFIG.names.index("return_3")] == pytest.approx(13.0 / 11.0 - 1)


def test_bars_not_after_the_previous_one_are_skipped() -> None:
    ingest = pipeline()
    ingest.apply([bar("A", 5, 10.0)])
    repeated = ingest.apply([bar("A", 5, 99.0), bar("A", 4, 99.0)])
    assert repeated is None
    assert ingest.report.skipped == 2 and ingest.report.bars == 1


def test_a_quote_refreshes_a_ready_vector_with_its_own_time() -> None:
    ingest = pipeline()
    for ts in (1, 2, 3):
        ingest.apply([bar("A", ts, 10.0 + ts)])
    quoted = ingest.apply([Quote("A", 3.5, (3.0, 1.0), (1.0, 1.0))])
    assert quoted is not None and quoted.timestamps.tolist() == [3.5] and quoted.closes == []
    assert quoted.vectors[0][CONFIG.names.index("obi_2")] == pytest.approx((4 - 2) / 6)


def columns(symbols: list[str], ts: list[float], close: list[float]) -> BarColumns:
    return BarColumns(symbols, np.array(ts, dtype=float), np.array(close, dtype=float), np.full(len(symbols), 5.0))


def test_a_frame_of_columns_gives_the_batches_its_bars_give_one_by_one() -> None:
    frames = [
        columns(["A", "B"], [1, 1], [10.0, 20.0]),
        columns(["A", "B", "C"], [2, 2, 2], [11.0, 21.0, 5.0]),
        columns(["B", "A"], [3, 1], [22.0, 99.0]),  # A's bar is not after its previous one: skipped
        columns(["A", "A"], [4, 5], [12.0, 13.0]),  # a repeated symbol: the general path, bar after bar
        columns(["A", "B", "C"], [6, 2, 7], [14.0, 23.0, 6.0]),
        columns(["B"], [3], [99.0]),  # nothing new at all
    ]
    by_columns, by_bars = pipeline(), pipeline()
    for frame in frames:
        expected = by_bars.apply(frame.bars())
        got = by_columns.apply([frame])
        assert (got is None) == (expected is None)
        if got is not None and expected is not None:
            assert list(got.symbols) == list(expected.symbols)
            np.testing.assert_array_equal(got.vectors, expected.vectors)
            assert got.timestamps.tolist() == expected.timestamps.tolist()
            assert list(got.closes) == list(expected.closes)
    assert by_columns.report == by_bars.report
    assert by_columns.report.skipped == 3


def test_websocket_frames_parse_to_bars_and_quotes() -> None:
    events = parse_frame(
        '[{"symbol": "A", "ts": "2023-11-14T22:13:20", "close": 2, "volume": 1},'
        ' {"type": "book", "symbol": "A", "ts": 1700000000.5, "bids": [1], "asks": [2]}]'
    )
    assert events[0] == Bar("A", "1700000000.0", 1_700_000_000.0, 2.0, 2.0, 2.0, 2.0, 1.0)
    assert events[1] == Quote("A", 1_700_000_000.5, (1.0,), (2.0,))


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        '{"symbol": "A", "ts": 1, "close": "NaN", "volume": 1}',
        '{"symbol": "", "ts": 1, "close": 1, "volume": 1}',
        '{"symbol": "BTC USD", "ts": 1, "close": 1, "volume": 1}',
        '{"symbol": "A", "ts": "yesterday", "close": 1, "volume": 1}',
        '{"type": "book", "symbol": "A", "ts": 1, "bids": [-1], "asks": []}',
    ],
)
def test_malformed_frames_say_what_is_wrong(frame: str) -> None:
    with pytest.raises(MalformedFrame) as error:
        parse_frame(frame)
    assert str(error.value)


def test_nan_volume_is_malformed_not_a_bar() -> None:
    with pytest.raises(MalformedFrame, match="volume"):
        parse_frame('{"symbol": "A", "ts": 1, "close": 1, "volume": "nan"}')


class BrokenStore:
    """A FeatureWriter whose Redis answers every write, after a round trip, with an error that is not retried."""

    async def write(self, *batches: object) -> None:
        await asyncio.sleep(0.01)
        raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


async def fast_replay(batches: int) -> AsyncIterator[list[Bar]]:
    for ts in range(batches):
        yield [bar("A", ts, 10.0 + ts)]  # never awaits: a file read at full speed


async def test_a_full_speed_replay_surfaces_the_writer_error_instead_of_blocking() -> None:
    ingest = Ingest(FeatureEngine(CONFIG), writer=BrokenStore(), queue_size=2, wait_for_writer=True)  # type: ignore[arg-type]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await asyncio.wait_for(ingest.run(fast_replay(100)), timeout=5)
