"""Bar and quote records, and streaming, validated reading of `symbol,ts,open,high,low,close,volume` CSV.

Shared by `tickserve features replay` and ingest's replay source so that both read a file the same way. Rows
are streamed (a file of any size is never loaded at once) and every problem is reported as a
`BarInputError` naming the file, line and column, because a silently skipped or reordered bar would make
training features differ from the ones served.

Timestamps are Unix epoch numbers or ISO 8601 strings (naive means UTC); they are kept verbatim for output
and converted to epoch seconds to check the order: non-decreasing over the file, strictly increasing per
symbol (two bars of one symbol at one ts is an error).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TextIO

BAR_COLUMNS: tuple[str, ...] = ("symbol", "ts", "open", "high", "low", "close", "volume")
_PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")


class Bar(NamedTuple):
    """One OHLCV bar; `ts` as written in the source, `timestamp` the same instant in epoch seconds."""

    symbol: str
    ts: str
    timestamp: float
    open: float
    high: float
    low: float
    close: float
    volume: float


class Quote(NamedTuple):
    """An order-book snapshot: sizes per level, best level first."""

    symbol: str
    timestamp: float
    bid_sizes: tuple[float, ...]
    ask_sizes: tuple[float, ...]


class BarInputError(ValueError):
    """A bar file that cannot be used as is; the message names the file, line and column."""

    def __init__(self, source: str, line: int, column: str | None, problem: str) -> None:
        self.source, self.line, self.column, self.problem = source, line, column, problem
        where = f"{source} line {line}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {problem}")


def parse_timestamp(text: str) -> float:
    """Epoch seconds from an epoch number or an ISO 8601 string (naive = UTC); ValueError otherwise."""
    try:
        return float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text.strip())
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def read_bars(source: Path | str | TextIO) -> Iterator[Bar]:
    """Yield the bars of a CSV file (a path or an open text file) in file order, validating as it goes."""
    if isinstance(source, Path | str):
        with open(source, newline="") as handle:
            yield from _read(handle, str(source))
    else:
        yield from _read(source, getattr(source, "name", "<stream>"))


def _read(handle: TextIO, name: str) -> Iterator[Bar]:
    rows = csv.reader(handle)
    header = next(rows, None)
    if header is None:
        raise BarInputError(name, 1, None, f"empty file; expected a header with {', '.join(BAR_COLUMNS)}")
    header = [column.strip() for column in header]
    missing = [column for column in BAR_COLUMNS if column not in header]
    if missing:
        raise BarInputError(name, 1, missing[0], f"missing column(s) {', '.join(missing)} in header {header}")
    index = {column: header.index(column) for column in BAR_COLUMNS}
    previous = -math.inf
    last_by_symbol: dict[str, float] = {}
    for line, row in enumerate(rows, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise BarInputError(name, line, None, f"{len(row)} fields, the header has {len(header)}")
        bar = _bar(row, index, name, line)
        if bar.timestamp < previous:
            raise BarInputError(
                name, line, "ts", f"{bar.ts!r} is earlier than the previous row; rows must be in ts order"
            )
        if bar.timestamp <= last_by_symbol.get(bar.symbol, -math.inf):
            raise BarInputError(name, line, "ts", f"second bar of {bar.symbol!r} at {bar.ts!r}")
        previous = last_by_symbol[bar.symbol] = bar.timestamp
        yield bar


def _bar(row: list[str], index: dict[str, int], name: str, line: int) -> Bar:
    symbol = row[index["symbol"]].strip()
    if not symbol:
        raise BarInputError(name, line, "symbol", "empty symbol")
    if any(character.isspace() for character in symbol):
        raise BarInputError(name, line, "symbol", f"{symbol!r} contains whitespace")
    ts = row[index["ts"]].strip()
    try:
        timestamp = parse_timestamp(ts)
    except ValueError:
        raise BarInputError(name, line, "ts", f"{ts!r} is neither an epoch number nor an ISO 8601 time") from None
    values: dict[str, float] = {}
    for column in (*_PRICE_COLUMNS, "volume"):
        text = row[index[column]]
        try:
            value = float(text)
        except ValueError:
            raise BarInputError(name, line, column, f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise BarInputError(name, line, column, f"{text!r} is not a finite number")
        values[column] = value
    if values["close"] <= 0:
        raise BarInputError(name, line, "close", f"{values['close']} is not > 0")
    if values["volume"] < 0:
        raise BarInputError(name, line, "volume", f"{values['volume']} is negative")
    return Bar(symbol, ts, timestamp, values["open"], values["high"], values["low"], values["close"], values["volume"])


def distinct_symbol_runs(bars: Iterable[Bar], max_size: int = 4096) -> Iterator[list[Bar]]:
    """Split a bar stream, in order, into runs of bars of distinct symbols (one engine update each).

    Consecutive bars of different symbols are independent, so updating them together is the same as one at
    a time; a run ends before a symbol repeats or at `max_size` bars.
    """
    run: list[Bar] = []
    symbols: set[str] = set()
    for bar in bars:
        if bar.symbol in symbols or len(run) >= max_size:
            yield run
            run, symbols = [], set()
        run.append(bar)
        symbols.add(bar.symbol)
    if run:
        yield run
