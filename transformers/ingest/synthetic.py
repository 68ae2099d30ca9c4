"""A synthetic market: seeded geometric Brownian motion bars (and order-book quotes) for many symbols.

Used by `tickserve ingest --source synthetic` for demos and load tests where no feed is available, and by
tests that need bars whose every value they can recompute. The same seed always gives the same bars.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tickserve.transformers.features.bars import Bar, Quote


class SyntheticMarket:
    """Close prices follow GBM with per-symbol drift; volumes are lognormal; quotes have random level sizes."""

    def __init__(
        self,
        symbols: Sequence[str],
        seed: int = 0,
        start_price: float = 100.0,
        volatility: float = 0.002,
        book_levels: int = 0,
    ) -> None:
        self.symbols = list(symbols)
        self._rng = np.random.default_rng(seed)
        self._prices = np.full(len(self.symbols), start_price) * np.exp(self._rng.normal(0, 0.5, len(self.symbols)))
        self._drift = self._rng.normal(0, volatility / 10, len(self.symbols))
        self._volatility = volatility
        self._book_levels = book_levels

    def bars(self, timestamp: float) -> list[Bar]:
        """One bar per symbol closing at `timestamp`."""
        shocks = self._rng.normal(self._drift, self._volatility)
        opens = self._prices
        self._prices = opens * np.exp(shocks)
        volumes = self._rng.lognormal(3.0, 0.5, len(self.symbols))
        ts = repr(timestamp)
        return [
            Bar(symbol, ts, timestamp, o, max(o, c), min(o, c), c, v)
            for symbol, o, c, v in zip(
                self.symbols, opens.tolist(), self._prices.tolist(), volumes.tolist(), strict=True
            )
        ]

    def quotes(self, timestamp: float) -> list[Quote]:
        """One order-book snapshot per symbol (empty when the market was built without book levels)."""
        if not self._book_levels:
            return []
        sizes = self._rng.lognormal(1.0, 0.7, (len(self.symbols), 2, self._book_levels))
        return [
            Quote(symbol, timestamp, tuple(bids.tolist()), tuple(asks.tolist()))
            for symbol, (bids, asks) in zip(self.symbols, sizes, strict=True)
        ]
