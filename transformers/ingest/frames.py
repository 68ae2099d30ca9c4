"""WebSocket feed frames -> ingest events, and what makes a frame malformed.

A frame is one JSON object or a list of objects:
`{"type": "bar", "symbol": "BTCUSDT", "ts": 1700000000, "close": 37000.5, "volume": 12.3}` (`type` may be
omitted for bars; `ts` is epoch seconds or ISO 8601; open/high/low are optional) or
`{"type": "book", "symbol": "BTCUSDT", "ts": 1700000000.5, "bids": [3.0, 1.2], "asks": [2.5, 4.0]}` (sizes per
level, best first). Symbols may not contain whitespace (the Redis writer joins them with newlines).

The pydantic models below are the definition of a valid frame. They cost ~4 us a bar, though, which made frame
decoding the largest cost of ingesting a live feed, so the common frame, numbers-only bars and nothing else, is
first decoded by msgspec straight into typed structs and then into columns (`BarColumns`: no per-bar events).
That decoder accepts a subset of what the models accept, with the same result (tests hold the two together); any
frame it does not accept, well-formed or not, goes to the models, which decide and name the problem.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tickserve.transformers.features.bars import Bar, Quote, parse_timestamp


@dataclass(frozen=True)
class BarColumns:
    """The bars of one batch (a WebSocket frame, a replay timestamp) as columns, in order: one Python object per
    batch instead of one per bar, applied by the pipeline with array operations."""

    symbols: list[str]
    timestamps: np.ndarray  # float64 epoch seconds
    close: np.ndarray  # float64
    volume: np.ndarray  # float64

    @classmethod
    def of(cls, bars: list[Bar]) -> BarColumns:
        """The close and volume columns of `bars` (their open/high/low are not used by ingest)."""
        return cls(
            symbols=[bar.symbol for bar in bars],
            timestamps=np.array([bar.timestamp for bar in bars], dtype=np.float64),
            close=np.array([bar.close for bar in bars], dtype=np.float64),
            volume=np.array([bar.volume for bar in bars], dtype=np.float64),
        )

    def bars(self) -> list[Bar]:
        """The same bars as `Bar` records, for the general path of the pipeline (open = high = low = close: ingest
        uses close and volume only)."""
        return [
            Bar(symbol, repr(ts), ts, close, close, close, close, volume)
            for symbol, ts, close, volume in zip(
                self.symbols, self.timestamps.tolist(), self.close.tolist(), self.volume.tolist(), strict=True
            )
        ]


Event = Bar | Quote | BarColumns


class MalformedFrame(ValueError):
    """A frame that is not JSON or does not describe bars and quotes; the message says what is wrong."""


# --- the definition: pydantic models -------------------------------------------------------------------------


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


def _parse_with_models(message: str | bytes) -> list[Event]:
    try:
        parsed = _FRAME.validate_json(message)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3])
        raise MalformedFrame(problems) from None
    frames = parsed if isinstance(parsed, list) else [parsed]
    return [frame.event() for frame in frames]


# --- the fast path: plain bars, decoded and checked in C -----------------------------------------------------

# Bounds of the largest float: together they refuse NaN and +-inf, as `_finite` does.
_MAX = sys.float_info.max
_Number = Annotated[float, msgspec.Meta(ge=-_MAX, le=_MAX)]


class _PlainBar(msgspec.Struct, forbid_unknown_fields=False):
    """A bar whose fields are all JSON numbers (no ISO timestamps, no numbers in strings)."""

    symbol: Annotated[str, msgspec.Meta(min_length=1, pattern=r"^\S+\Z")]  # \Z: Python's $ would let "A\n" through
    ts: _Number
    close: Annotated[float, msgspec.Meta(gt=0, le=_MAX)]
    volume: Annotated[float, msgspec.Meta(ge=0, le=_MAX)]
    type: Literal["bar"] = "bar"
    open: _Number | None = None
    high: _Number | None = None
    low: _Number | None = None


_PLAIN_BARS = msgspec.json.Decoder(list[_PlainBar] | _PlainBar)


def _plain_bars(message: str | bytes) -> BarColumns | None:
    """The frame as columns when it is only plain bars, else None (the models decide). open/high/low are checked
    like the models check them, then left out: the features and the price history use close and volume only."""
    try:
        decoded = _PLAIN_BARS.decode(message)
    except msgspec.MsgspecError:  # not JSON, or not plain bars: maybe valid, maybe not
        return None
    bars = decoded if isinstance(decoded, list) else [decoded]
    return BarColumns(
        symbols=[bar.symbol for bar in bars],
        timestamps=np.array([bar.ts for bar in bars], dtype=np.float64),
        close=np.array([bar.close for bar in bars], dtype=np.float64),
        volume=np.array([bar.volume for bar in bars], dtype=np.float64),
    )


def parse_frame(message: str | bytes) -> list[Event]:
    """The events of one frame; MalformedFrame (naming what is wrong) for a frame the models refuse."""
    columns = _plain_bars(message)
    if columns is not None:
        return [columns] if columns.symbols else []
    return _parse_with_models(message)
