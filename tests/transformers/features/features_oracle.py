"""Comparing the engine with the direct recomputation, at the precision the recomputation itself has.

Both sides are compared with a relative tolerance of 1e-9. Near zero a relative tolerance is meaningless
because the direct numpy recomputation is itself only accurate to its own rounding there: `p - mean(p)`
carries an error of a few ulp of max|p| (divided by `2 std + 1e-8` in bb_pos), the two-pass std of the log
returns a few ulp of max|r|, and `100 - 100 / (1 + x)` in rsi a few ulp of 100. Those floors are added as
absolute tolerances, computed from the window's own data, so they stay far below any real disagreement.
"""

from __future__ import annotations

import numpy as np

from tickserve.transformers.features.engine import PER_WINDOW_FEATURES, FeatureConfig, FeatureEngine
from tickserve.transformers.features.reference import direct_vector

RELATIVE = 1e-9
ULPS = 64 * np.finfo(np.float64).eps


def direct_values(config: FeatureConfig, closes: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """The direct recomputation over the last bars of one symbol (window features only)."""
    return np.asarray(direct_vector(config, closes, volumes))


def absolute_floor(config: FeatureConfig, closes: np.ndarray) -> np.ndarray:
    """Per-feature absolute tolerance: the direct recomputation's own rounding (see the module docstring)."""
    floors = []
    for window in config.windows:
        p = closes[-window:]
        log_returns = np.diff(np.log(p))
        by_feature = {
            "return": 0.0,
            "return_std": ULPS * np.abs(log_returns).max(),
            "vol_ratio": 0.0,
            "rsi": ULPS * 100.0,
            "bb_pos": ULPS * np.abs(p).max() / (2.0 * p.std() + 1e-8),
        }
        floors += [by_feature[name] for name in PER_WINDOW_FEATURES]
    return np.asarray(floors)


def assert_matches_direct(
    config: FeatureConfig, engine_values: np.ndarray, closes: np.ndarray, volumes: np.ndarray, where: str
) -> None:
    """Assert one engine vector (window features) equals the direct recomputation over `closes`, `volumes`."""
    expected = direct_values(config, closes, volumes)
    actual = engine_values[: expected.size]
    tolerance = RELATIVE * np.abs(expected) + absolute_floor(config, closes)
    bad = ~((np.abs(actual - expected) <= tolerance) | (np.isnan(actual) & np.isnan(expected)))
    if bad.any():
        names = config.names
        details = ", ".join(
            f"{names[i]}: engine {actual[i]!r} direct {expected[i]!r} (tolerance {tolerance[i]:.3g})"
            for i in np.flatnonzero(bad)
        )
        raise AssertionError(f"{where}: {details}")


# Every public way of feeding bars into the engine; the exactness and property tests run against each of them.
PATHS = ("update (batched)", "update_bar (single bar)")


def feed(engine: FeatureEngine, path: str, bars: list[tuple[str, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Feed bars of distinct symbols through `path`; their feature rows and ready flags, in input order."""
    if path == PATHS[0]:
        ids = engine.symbol_ids(symbol for symbol, _, _ in bars)
        batch = engine.update(ids, [close for _, close, _ in bars], [volume for _, _, volume in bars])
        return batch.values, batch.ready
    vectors = [engine.update_bar(symbol, close, volume) for symbol, close, volume in bars]
    values = np.stack([vector.values for vector in vectors]) if vectors else np.empty((0, len(engine.names)))
    return values, np.asarray([vector.ready for vector in vectors], dtype=bool)
