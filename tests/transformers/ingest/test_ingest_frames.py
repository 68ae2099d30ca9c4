"""WebSocket frame decoding: the msgspec fast path for plain bars against the pydantic models that define a frame.

The fast path may refuse any frame (the models then decide), but a frame it accepts must give the bars the models
give, and a frame the models refuse must never get through it."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickserve.transformers.features.bars import Bar
from tickserve.transformers.ingest.frames import (
    BarColumns,
    MalformedFrame,
    _parse_with_models,
    _plain_bars,
    parse_frame,
)

# Mostly valid values (so that many frames reach the comparison), and the edge cases each decoder must get right.
GOOD_NUMBERS = st.one_of(st.floats(min_value=1e-300, max_value=1e300), st.integers(min_value=1, max_value=10**15))
NUMBERS = st.one_of(
    GOOD_NUMBERS,
    GOOD_NUMBERS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -0.0, 1e-320, 1.7976931348623157e308, "1.5", "nan", True, None]),
)
SYMBOLS = st.one_of(
    st.from_regex(r"\A[A-Z0-9._-]{1,8}\Z"),
    st.from_regex(r"\A[A-Z0-9._-]{1,8}\Z"),
    st.text(min_size=0, max_size=6),
    st.sampled_from(["A\n", "\nA", "A B", "A\u00a0", "A\x1c", "Ä", "A\u2028", ""]),
    st.integers(),
)


@st.composite
def bar_objects(draw: st.DrawFn) -> dict:
    bar = {"symbol": draw(SYMBOLS), "ts": draw(st.one_of(NUMBERS, st.just("2023-11-14T22:13:20"))),
           "close": draw(NUMBERS), "volume": draw(NUMBERS)}  # fmt: skip
    for optional in ("open", "high", "low"):
        if draw(st.booleans()):
            bar[optional] = draw(NUMBERS)
    if draw(st.booleans()):
        bar["type"] = draw(st.sampled_from(["bar", "bar", "book", "trade"]))
    if draw(st.booleans()):
        bar["exchange"] = "x"  # unknown fields are ignored by both
    return bar


@st.composite
def good_bars(draw: st.DrawFn) -> dict:
    bar = {"symbol": draw(st.from_regex(r"\A[A-Z0-9._-]{1,8}\Z")),
           "ts": draw(GOOD_NUMBERS), "close": draw(GOOD_NUMBERS), "volume": draw(GOOD_NUMBERS)}  # fmt: skip
    if draw(st.booleans()):
        bar["open"] = draw(GOOD_NUMBERS)
    return bar


BARS = st.one_of(good_bars(), good_bars(), good_bars(), bar_objects())


def bars_of(events: list) -> list[tuple[str, float, float, float]]:
    bars: list[Bar] = [bar for event in events for bar in (event.bars() if isinstance(event, BarColumns) else [event])]
    return [(bar.symbol, bar.timestamp, bar.close, bar.volume) for bar in bars]


@settings(max_examples=400, deadline=None)
@given(st.one_of(BARS, st.lists(BARS, max_size=4)))
def test_the_fast_path_accepts_only_what_the_models_accept_with_the_same_bars(frame) -> None:
    message = json.dumps(frame, allow_nan=True)  # NaN and Infinity literals too: neither decoder may take them
    try:
        expected = bars_of(_parse_with_models(message))
    except MalformedFrame:
        assert _plain_bars(message) is None, "the fast path let through a frame the models refuse"
        with pytest.raises(MalformedFrame):
            parse_frame(message)
        return
    columns = _plain_bars(message)
    if columns is not None:
        assert bars_of([columns]) == expected
    assert bars_of(parse_frame(message)) == expected


def test_a_frame_of_plain_bars_becomes_one_set_of_columns() -> None:
    frame = json.dumps([{"symbol": f"S{i}", "ts": 100 + i, "close": 1.5 * (i + 1), "volume": i} for i in range(3)])
    (columns,) = parse_frame(frame)
    assert isinstance(columns, BarColumns)
    assert columns.symbols == ["S0", "S1", "S2"]
    assert columns.timestamps.tolist() == [100.0, 101.0, 102.0]
    assert columns.close.tolist() == [1.5, 3.0, 4.5] and columns.volume.tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(
    "frame",
    [
        '[{"symbol": "A\\n", "ts": 1, "close": 1, "volume": 1}]',  # Python's `$` would match before the newline
        '[{"symbol": "A", "ts": 1, "close": 1, "volume": 1}, {"symbol": "B", "ts": 1, "close": 0, "volume": 1}]',
        '[{"symbol": "A", "ts": 1, "close": 1, "volume": 1e999}]',  # parses as infinity
        '[{"symbol": "A", "ts": 1, "close": 1, "volume": 1, "open": NaN}]',
        '[{"symbol": "A", "ts": 1, "close": 1, "volume": 1}',
    ],
)
def test_a_frame_with_one_bad_bar_is_refused_as_a_whole(frame: str) -> None:
    with pytest.raises(MalformedFrame) as error:
        parse_frame(frame)
    assert str(error.value)


def test_an_empty_frame_has_no_events() -> None:
    assert parse_frame("[]") == []


def test_bars_with_numbers_in_strings_or_iso_times_still_parse_through_the_models() -> None:
    events = parse_frame('[{"symbol": "A", "ts": "2023-11-14T22:13:20", "close": "2.5", "volume": 1}]')
    assert events == [Bar("A", "1700000000.0", 1_700_000_000.0, 2.5, 2.5, 2.5, 2.5, 1.0)]
    assert not math.isnan(events[0].close)
