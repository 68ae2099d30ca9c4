"""The feature engine equals the direct recomputation on random streams, and guards its inputs and schema."""

from __future__ import annotations

import numpy as np
import pytest
from features_oracle import PATHS, assert_matches_direct, feed
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine, feature_names


@st.composite
def bar_streams(draw: st.DrawFn) -> tuple[FeatureConfig, list[tuple[str, float, float]], list[bool]]:
    """A config and a stream of (symbol, close, volume) bars; prices are random walks from random levels.

    Steps include exact zeros (flat windows), volumes include zeros (all-zero windows give NaN vol_ratio), symbols
    start at different times, and
    `cuts` says where the test starts a new update call besides the one-bar-per-symbol rule.
    """
    windows = tuple(draw(st.lists(st.integers(2, 24), min_size=1, max_size=3, unique=True)))
    symbols = [f"S{i}" for i in range(draw(st.integers(1, 5)))]
    levels = {symbol: draw(st.floats(0.01, 1e5)) for symbol in symbols}
    steps = st.one_of(st.just(0.0), st.floats(-0.2, 0.2, allow_subnormal=False))
    # Magnitudes within ~1e16 of each other: compensated sums are exact to ~1e-32 of the largest value seen.
    volumes = st.one_of(st.just(0.0), st.floats(1e-6, 1e9))
    bars = []
    for symbol, step, volume in draw(st.lists(st.tuples(st.sampled_from(symbols), steps, volumes), max_size=160)):
        levels[symbol] *= float(np.exp(step))
        bars.append((symbol, levels[symbol], volume))
    cuts = draw(st.lists(st.booleans(), min_size=len(bars), max_size=len(bars)))
    return FeatureConfig(windows=windows), bars, cuts


def runs_of_distinct_symbols(
    bars: list[tuple[str, float, float]], cuts: list[bool]
) -> list[list[tuple[str, float, float]]]:
    runs: list[list[tuple[str, float, float]]] = []
    for bar, cut in zip(bars, cuts, strict=True):
        if not runs or cut or bar[0] in {symbol for symbol, _, _ in runs[-1]}:
            runs.append([])
        runs[-1].append(bar)
    return runs


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=150, deadline=None)
@given(stream=bar_streams())
def test_every_path_equals_the_direct_recomputation(path: str, stream) -> None:
    config, bars, cuts = stream
    engine = FeatureEngine(config, initial_capacity=1)
    history: dict[str, tuple[list[float], list[float]]] = {}
    for run in runs_of_distinct_symbols(bars, cuts):
        values, ready = feed(engine, path, run)
        assert values.shape == (len(run), len(config.names))
        for row, (symbol, close, volume) in enumerate(run):
            closes, volumes = history.setdefault(symbol, ([], []))
            closes.append(close)
            volumes.append(volume)
            assert ready[row] == (len(closes) >= config.max_window)
            if ready[row]:
                assert_matches_direct(config, values[row], np.asarray(closes), np.asarray(volumes), symbol)
            else:
                assert np.isnan(values[row]).all()


@settings(max_examples=40, deadline=None)
@given(bar_streams())
def test_the_per_bar_path_equals_the_batched_path_exactly(stream) -> None:
    config, bars, cuts = stream
    per_bar, batched = FeatureEngine(config), FeatureEngine(config)
    for run in runs_of_distinct_symbols(bars, cuts):
        single_values, single_ready = feed(per_bar, PATHS[1], run)
        batch_values, batch_ready = feed(batched, PATHS[0], run)
        np.testing.assert_array_equal(single_values, batch_values)
        np.testing.assert_array_equal(single_ready, batch_ready)
        ids = batched.symbol_ids(symbol for symbol, _, _ in run)
        np.testing.assert_array_equal(batched.current(ids).values, batch_values)
        np.testing.assert_array_equal(per_bar.current(ids).values, batch_values)


def test_current_of_no_symbols_is_an_empty_batch() -> None:
    engine = FeatureEngine(FeatureConfig(windows=(3, 5)))
    engine.update(engine.symbol_ids(["A"]), [1.0], [1.0])
    batch = engine.current([])
    assert batch.values.shape == (0, len(engine.names))
    assert batch.ready.shape == (0,)


def test_feature_names_are_window_major_in_a_fixed_order() -> None:
    assert feature_names((3, 2), (1, 5)) == [
        "return_3", "return_std_3", "vol_ratio_3", "rsi_3", "bb_pos_3",
        "return_2", "return_std_2", "vol_ratio_2", "rsi_2", "bb_pos_2",
        "obi_1", "obi_5",
    ]  # fmt: skip
    assert FeatureConfig().names == feature_names((60, 120, 240))


def test_the_schema_version_follows_the_feature_names() -> None:
    default = FeatureConfig()
    assert FeatureConfig(windows=(60, 120, 240)).schema_version == default.schema_version
    others = [FeatureConfig(windows=(60, 120)), FeatureConfig(windows=(120, 60, 240)), FeatureConfig(book_levels=(5,))]
    assert len({default.schema_version, *(config.schema_version for config in others)}) == 4


@pytest.mark.parametrize("windows", [(), (1, 5), (5, 5)])
def test_unusable_windows_are_rejected(windows: tuple[int, ...]) -> None:
    with pytest.raises(ValidationError, match="windows"):
        FeatureConfig(windows=windows)


@pytest.mark.parametrize(
    ("symbols", "close", "volume", "message"),
    [
        (["A", "B", "A"], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], "'A' has more than one bar"),
        (["A", "B"], [1.0, 0.0], [1.0, 1.0], "'B': close must be a finite number > 0"),
        (["A", "B"], [float("nan"), 1.0], [1.0, 1.0], "'A': close must be"),
        (["A", "B"], [1.0, 1.0], [-1.0, 1.0], "'A': volume must be a finite number >= 0"),
        (["A", "B"], [1.0, 1.0], [1.0, float("inf")], "'B': volume must be"),
    ],
)
def test_bad_bars_are_rejected_by_name_and_change_nothing(symbols, close, volume, message) -> None:
    config = FeatureConfig(windows=(3,))
    engine = FeatureEngine(config)
    ids = engine.symbol_ids(["A", "B"])
    for step in range(3):
        engine.update(ids, [10.0 + step, 20.0 - step], [5.0, 6.0])
    before = engine.current(ids).values.copy()
    with pytest.raises(ValueError, match=message):
        engine.update(engine.symbol_ids(symbols), close, volume)
    assert [engine.bar_count("A"), engine.bar_count("B")] == [3, 3]
    np.testing.assert_array_equal(engine.current(ids).values, before)


def test_unknown_symbol_ids_are_rejected() -> None:
    engine = FeatureEngine()
    engine.symbol_ids(["A"])
    with pytest.raises(ValueError, match="unknown symbol id 1"):
        engine.update([1], [1.0], [1.0])


def test_symbols_can_appear_at_any_time_and_keep_their_ids() -> None:
    config = FeatureConfig(windows=(2, 4))
    engine = FeatureEngine(config, initial_capacity=1)
    seen: dict[str, list[float]] = {}
    for step in range(12):
        symbols = [f"S{i}" for i in range(step // 2 + 1)]  # one more symbol every other bar
        ids = engine.symbol_ids(symbols)
        assert ids.tolist() == list(range(len(symbols)))
        closes = [100.0 + step * (i + 1) + (step % 3) for i in range(len(symbols))]
        batch = engine.update(ids, closes, [1.0 + i for i in range(len(symbols))])
        for row, symbol in enumerate(symbols):
            seen.setdefault(symbol, []).append(closes[row])
            assert batch.ready[row] == (len(seen[symbol]) >= 4)
            if batch.ready[row]:
                volumes = np.full(len(seen[symbol]), 1.0 + row)
                assert_matches_direct(config, batch.values[row], np.asarray(seen[symbol]), volumes, symbol)
    assert engine.symbols == [f"S{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("close", "volume", "message"),
    [
        (0.0, 1.0, "'A': close must be a finite number > 0"),
        (float("nan"), 1.0, "'A': close must be"),
        (float("inf"), 1.0, "'A': close must be"),
        (1.0, -1.0, "'A': volume must be a finite number >= 0"),
        (1.0, float("nan"), "'A': volume must be"),
        (1.0, float("inf"), "'A': volume must be"),
    ],
)
def test_bad_single_bars_are_rejected_by_name_and_change_nothing(close, volume, message) -> None:
    engine = FeatureEngine(FeatureConfig(windows=(3,)))
    for step in range(3):
        engine.update_bar("A", 10.0 + step, 5.0)
    before = engine.current(engine.symbol_ids(["A"])).values.copy()
    with pytest.raises(ValueError, match=message):
        engine.update_bar("A", close, volume)
    assert engine.bar_count("A") == 3
    np.testing.assert_array_equal(engine.current(engine.symbol_ids(["A"])).values, before)
