"""After millions of bars the running sums still equal a direct recomputation to 1e-9 relative.

The stream is built to make sliding sums drift: every symbol jumps between price levels from 0.01 to 1e5 and
volume levels from 1 to 1e9 while moving by tiny steps inside a level, so a window's variance is up to ~1e-9 of
its mean square and the sums are dominated by values that left the window long ago. The second test shows
plain float64 running sums fail on this very stream, so the first one could fail.
"""

from __future__ import annotations

import numpy as np
import pytest
from features_oracle import PATHS, assert_matches_direct, direct_values, feed

from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine

SYMBOLS = 50
BARS_PER_SYMBOL = 40_000  # 2 million bars in all
CHECKPOINTS = 8


def regime_stream(seed: int, bars: int, symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """(bars, symbols) closes and volumes: random levels held for 200-3000 bars, tiny moves within a level."""
    rng = np.random.default_rng(seed)
    closes = np.empty((bars, symbols))
    volumes = np.empty((bars, symbols))
    for column in range(symbols):
        start = 0
        while start < bars:
            length = int(rng.integers(200, 3000))
            stop = min(bars, start + length)
            level = 10 ** rng.uniform(-2, 5)
            volatility = 10 ** rng.uniform(-6, -3)
            closes[start:stop, column] = level * np.exp(np.cumsum(rng.normal(0, volatility, stop - start)))
            volume_level = 10 ** rng.uniform(0, 9)
            volumes[start:stop, column] = np.round(volume_level * rng.uniform(0.5, 1.5, stop - start))
            start = stop
    return closes, volumes


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_values_equal_the_direct_recomputation_after_two_million_bars(path: str) -> None:
    config = FeatureConfig()
    closes, volumes = regime_stream(7, BARS_PER_SYMBOL, SYMBOLS)
    engine = FeatureEngine(config)
    symbols = [f"S{column}" for column in range(SYMBOLS)]
    checkpoints = set(np.linspace(config.max_window, BARS_PER_SYMBOL - 1, CHECKPOINTS, dtype=int).tolist())
    for step in range(BARS_PER_SYMBOL):
        values, ready = feed(
            engine, path, list(zip(symbols, closes[step].tolist(), volumes[step].tolist(), strict=True))
        )
        if step in checkpoints:
            assert ready.all()
            window = slice(step + 1 - config.max_window, step + 1)
            for column in range(SYMBOLS):
                assert_matches_direct(
                    config,
                    values[column],
                    closes[window, column],
                    volumes[window, column],
                    f"S{column} after {(step + 1) * SYMBOLS:,} bars",
                )
    assert sum(engine.bar_count(symbol) for symbol in engine.symbols) == SYMBOLS * BARS_PER_SYMBOL


def test_plain_float_running_sums_drift_on_this_stream() -> None:
    """A naive sliding sum of p and p^2 (what the engine's compensated sums replace) misses bb_pos by far."""
    config = FeatureConfig(windows=(240,))
    closes, volumes = regime_stream(7, 20_000, 4)
    worst = 0.0
    for column in range(4):
        p = closes[:, column]
        leaving = np.concatenate([np.zeros(240), p[:-240]])
        running_sum = np.cumsum(p - leaving)  # cumsum accumulates sequentially, like a running sum
        running_squares = np.cumsum(p * p - leaving * leaving)
        mean = running_sum[-1] / 240
        std = np.sqrt(max(running_squares[-1] / 240 - mean * mean, 0.0))
        naive_bb_pos = (p[-1] - mean) / (2 * std + 1e-8)
        expected = direct_values(config, p[-240:], volumes[-240:, column])[4]
        worst = max(worst, abs(naive_bb_pos - expected) / abs(expected))
    assert worst > 1e-6
