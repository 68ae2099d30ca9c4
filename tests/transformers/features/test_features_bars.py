"""Reading bar files (shared by replay and ingest) and splitting a bar stream into engine updates."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickserve.transformers.features.bars import Bar, BarInputError, distinct_symbol_runs, parse_timestamp, read_bars


def test_columns_may_come_in_any_order_with_extra_ones(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("venue,volume,close,low,high,open,ts,symbol\nX,10,2.5,2,3,2.2,100,AAA\nX,0,2.6,2,3,2.5,160,AAA\n")
    assert list(read_bars(path)) == [
        Bar("AAA", "100", 100.0, 2.2, 3.0, 2.0, 2.5, 10.0),
        Bar("AAA", "160", 160.0, 2.5, 3.0, 2.0, 2.6, 0.0),
    ]


def test_an_open_stream_is_read_lazily_row_by_row() -> None:
    rows = "symbol,ts,open,high,low,close,volume\nA,1,1,1,1,1,1\nA,2,1,1,1,1,1\nA,1,1,1,1,1,1\n"
    bars = read_bars(io.StringIO(rows))
    assert [next(bars).ts, next(bars).ts] == ["1", "2"]  # the bad third row is not read yet
    with pytest.raises(BarInputError, match="<stream> line 4, column 'ts'"):
        next(bars)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "line 1: empty file"),
        ("symbol,ts,open,high,low,close,volume\nA,1,1,1,1,1\n", "line 2: 6 fields, the header has 7"),
        ("symbol,ts,open,high,low,close,volume\n,1,1,1,1,1,1\n", "line 2, column 'symbol': empty symbol"),
        ("symbol,ts,open,high,low,close,volume\nBTC USD,1,1,1,1,1,1\n", "line 2, column 'symbol': 'BTC USD' contains"),
        ("symbol,ts,open,high,low,close,volume\nA,yesterday,1,1,1,1,1\n", "line 2, column 'ts': 'yesterday'"),
        ("symbol,ts,open,high,low,close,volume\nA,1,1,1,1,nan,1\n", "line 2, column 'close': 'nan' is not a finite"),
        ("symbol,ts,open,high,low,close,volume\nA,1,1,1,1,0,1\n", "line 2, column 'close': 0.0 is not > 0"),
    ],
)
def test_unusable_rows_name_their_line_and_column(text: str, message: str) -> None:
    with pytest.raises(BarInputError, match=message):
        list(read_bars(io.StringIO(text)))


def test_timestamps_are_epoch_numbers_or_iso_8601_with_naive_meaning_utc() -> None:
    instant = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC).timestamp()
    assert parse_timestamp(str(instant)) == instant
    assert parse_timestamp("2026-03-04T05:06:07") == instant
    assert parse_timestamp("2026-03-04T07:06:07+02:00") == instant
    with pytest.raises(ValueError):
        parse_timestamp("soon")


@given(st.lists(st.sampled_from("ABCDE"), max_size=60), st.integers(1, 6))
def test_runs_keep_the_order_hold_distinct_symbols_and_end_only_when_they_must(symbols, max_size) -> None:
    bars = [Bar(symbol, str(ts), float(ts), 1.0, 1.0, 1.0, 1.0, 1.0) for ts, symbol in enumerate(symbols)]
    runs = list(distinct_symbol_runs(bars, max_size=max_size))
    assert [bar for run in runs for bar in run] == bars
    for run, following in zip(runs, [*runs[1:], None], strict=False):
        run_symbols = [bar.symbol for bar in run]
        assert 0 < len(run) <= max_size
        assert len(set(run_symbols)) == len(run)
        if following is not None:
            assert following[0].symbol in run_symbols or len(run) == max_size
