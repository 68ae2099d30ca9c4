"""The direct recomputation: the feature definitions evaluated over each whole window at every bar.

This is the seed-style implementation (a deque of the last max(w) bars per symbol, numpy over each window
at every bar), kept as the executable specification: the property tests and the benchmark compare
`FeatureEngine` against it. It is O(max(w)) per bar; never use it on a live feed.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from tickserve.transformers.features.engine import EPSILON, FeatureConfig


def window_features(closes: np.ndarray, volumes: np.ndarray, window: int) -> list[float]:
    """The five per-window features over the last `window` closes and volumes, straight from the definitions."""
    p, v = closes[-window:], volumes[-window:]
    log_returns = np.diff(np.log(p))
    differences = np.diff(p)
    gains = differences[differences > 0].sum()
    losses = -differences[differences < 0].sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        vol_ratio = v[-1] / v.mean()
    return [
        (p[-1] - p[0]) / p[0],
        log_returns.std(),
        vol_ratio,
        100.0 - 100.0 / (1.0 + gains / (losses + EPSILON)),
        (p[-1] - p.mean()) / (2.0 * p.std() + EPSILON),
    ]


def direct_vector(config: FeatureConfig, closes: np.ndarray, volumes: np.ndarray) -> list[float]:
    """Every window's features over the last bars of one symbol, in `feature_names` order (no order book)."""
    return [value for window in config.windows for value in window_features(closes, volumes, window)]


class DirectFeatures:
    """Per-symbol deques of the last max(w) bars; every bar recomputes every window from scratch."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self._closes: dict[str, deque[float]] = {}
        self._volumes: dict[str, deque[float]] = {}

    def update_bar(self, symbol: str, close: float, volume: float) -> list[float] | None:
        """Add a bar; the window features (in `feature_names` order, no order book) once the symbol is ready."""
        closes = self._closes.setdefault(symbol, deque(maxlen=self.config.max_window))
        volumes = self._volumes.setdefault(symbol, deque(maxlen=self.config.max_window))
        closes.append(close)
        volumes.append(volume)
        if len(closes) < self.config.max_window:
            return None
        return direct_vector(self.config, np.asarray(closes, dtype=np.float64), np.asarray(volumes, dtype=np.float64))
