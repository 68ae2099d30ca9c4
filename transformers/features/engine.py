"""The sliding-window feature engine: one implementation for serving (ingest) and training (replay).

Public API (stable; ingest, the Redis feature store and the KServe transformer build on it):

- `FeatureConfig(windows=(60, 120, 240), book_levels=())`: frozen pydantic model. `.names` is the feature
  order, `.schema_version` a string derived from that order (write it next to every vector; refuse a
  mismatch), `.max_window` the bars a symbol needs before it is ready.
- `feature_names(windows, book_levels) -> list[str]`: for each window w in the given order
  `return_w, return_std_w, vol_ratio_w, rsi_w, bb_pos_w`, then `obi_k` for each k in `book_levels`
  (order-book imbalance over the top k levels).
- `FeatureEngine(config)`: state for any number of symbols (new symbols may appear at any time).
  - `symbol_ids(symbols) -> int64 array`: stable integer ids, registering unseen symbols.
  - `update(ids, close, volume) -> FeatureBatch`: one bar for each of the given symbols (at most one bar per
    symbol per call), vectorised across symbols, O(1) per bar. Returns the updated symbols' vectors.
  - `update_bar(symbol, close, volume) -> FeatureVector`: the same for one bar (a WebSocket feed), one compiled
    call of the same kernel (a few microseconds, mostly the call itself).
  - `update_book(symbol, bid_sizes, ask_sizes)`: a quote; sets the symbol's latest `obi_k` values.
  - `current(ids) -> FeatureBatch`: the latest vectors without a new bar (e.g. after a quote).
- `FeatureBatch(symbol_ids, values, ready)`: `values` is a float64 (n, len(names)) matrix in `names` order,
  `ready[i]` says symbol i has at least `max_window` bars; rows that are not ready are all NaN.
- `order_book_imbalance(bid_sizes, ask_sizes, levels) -> float`.

Feature definitions over the last w closes p and volumes v of a symbol:
`return_w = (p[-1] - p[0]) / p[0]`; `return_std_w` = population std of the w-1 log returns;
`vol_ratio_w = v[-1] / mean(v)` (NaN when every volume in the window is 0);
`rsi_w = 100 - 100 / (1 + G / (L + 1e-8))` with G, L the sums of the gains and losses among the w-1 price
differences; `bb_pos_w = (p[-1] - mean(p)) / (2 * std(p) + 1e-8)`, population std.
`obi_k = (B - A) / (B + A)` over the bid sizes B and ask sizes A of the top k levels (0 for an empty book);
NaN until the symbol's first quote. Prices must be finite and > 0, volumes finite and >= 0.

How it stays O(1) and exact: every symbol keeps a ring buffer of its last max(w) bars' contributions and,
per window, double-double running sums of p, p^2, v, log returns r, r^2, gains and losses, all symbols and
windows in a few numpy arrays. A bar adds its contribution and subtracts the one leaving each window; readout
is a few arithmetic operations per window. Both are defined once, in `kernel` (numba-compiled scalar code that
the batched and the single-bar path both call), so the two paths cannot drift apart. The sums are exact to
~1e-32 of the largest values a symbol's windows have held, so features equal a direct recomputation to 1e-9
relative however long the stream runs (tests/transformers/features/test_features_exactness.py: 2 million
bars, on every path). Not thread-safe: one engine per ingest task. Also public: `engine.names`,
`engine.symbols` (id -> symbol), `engine.bar_count(symbol)`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

from tickserve.transformers.features import kernel

DEFAULT_WINDOWS: tuple[int, ...] = (60, 120, 240)
PER_WINDOW_FEATURES: tuple[str, ...] = ("return", "return_std", "vol_ratio", "rsi", "bb_pos")
# Bump when a formula changes so that stored vectors of the old meaning are refused.
FORMULA_VERSION = "v1"
EPSILON = kernel.EPSILON


def feature_names(windows: Sequence[int] = DEFAULT_WINDOWS, book_levels: Sequence[int] = ()) -> list[str]:
    """Feature names in vector order: the five per-window features for each window, then `obi_<k>`."""
    names = [f"{feature}_{window}" for window in windows for feature in PER_WINDOW_FEATURES]
    return names + [f"obi_{levels}" for levels in book_levels]


class FeatureConfig(BaseModel):
    """Which features the engine computes; the schema version follows from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    windows: tuple[int, ...] = DEFAULT_WINDOWS
    book_levels: tuple[int, ...] = ()

    @field_validator("windows")
    @classmethod
    def _windows_are_usable(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if not windows:
            raise ValueError("at least one window is needed")
        if min(windows) < 2:
            raise ValueError(f"windows need at least 2 bars (one return), got {min(windows)}")
        if len(set(windows)) != len(windows):
            raise ValueError(f"windows must be distinct, got {windows}")
        return windows

    @field_validator("book_levels")
    @classmethod
    def _levels_are_usable(cls, levels: tuple[int, ...]) -> tuple[int, ...]:
        if levels and min(levels) < 1:
            raise ValueError(f"book levels must be >= 1, got {min(levels)}")
        if len(set(levels)) != len(levels):
            raise ValueError(f"book levels must be distinct, got {levels}")
        return levels

    @property
    def names(self) -> list[str]:
        return feature_names(self.windows, self.book_levels)

    @property
    def max_window(self) -> int:
        return max(self.windows)

    @property
    def schema_version(self) -> str:
        """`features-v1-<12 hex>`: changes whenever the names, their order or the formulas change."""
        digest = hashlib.sha256(",".join(self.names).encode()).hexdigest()[:12]
        return f"features-{FORMULA_VERSION}-{digest}"


@dataclass(frozen=True, slots=True)
class FeatureBatch:
    """Feature vectors of some symbols: row i belongs to `symbol_ids[i]`; NaN rows are not ready."""

    symbol_ids: np.ndarray
    values: np.ndarray
    ready: np.ndarray


class FeatureVector(NamedTuple):
    """One symbol's feature vector (all NaN unless `ready`); a tuple because it is built once per live bar."""

    values: np.ndarray
    ready: bool


def order_book_imbalance(bid_sizes: Sequence[float], ask_sizes: Sequence[float], levels: int) -> float:
    """(bid size - ask size) / (bid size + ask size) over the top `levels` levels; 0 for an empty book."""
    bids = float(np.sum(np.asarray(bid_sizes, dtype=np.float64)[:levels]))
    asks = float(np.sum(np.asarray(ask_sizes, dtype=np.float64)[:levels]))
    total = bids + asks
    return 0.0 if total == 0 else (bids - asks) / total


class FeatureEngine:
    """Sliding-window features for many symbols, updated in O(1) per bar (see the module docstring)."""

    def __init__(self, config: FeatureConfig | None = None, initial_capacity: int = 64) -> None:
        self.config = config or FeatureConfig()
        self.names = self.config.names
        self._windows = np.asarray(self.config.windows, dtype=np.int64)
        self._width = len(self.names)
        self._ring = self.config.max_window
        self._ids: dict[str, int] = {}
        self.symbols: list[str] = []
        self._capacity = 0
        self._allocate(max(1, initial_capacity))
        kernel.warm_up()

    # --- symbols -------------------------------------------------------------------------------------------

    def symbol_ids(self, symbols: Iterable[str]) -> np.ndarray:
        """Integer ids of `symbols` (in order), registering symbols seen for the first time."""
        return np.fromiter((self._register(symbol) for symbol in symbols), dtype=np.int64)

    def _register(self, symbol: str) -> int:
        existing = self._ids.get(symbol)
        if existing is not None:
            return existing
        symbol_id = len(self.symbols)
        if symbol_id >= self._capacity:
            self._allocate(2 * self._capacity)
        self._ids[symbol] = symbol_id
        self.symbols.append(symbol)
        return symbol_id

    def bar_count(self, symbol: str) -> int:
        symbol_id = self._ids.get(symbol)
        return 0 if symbol_id is None else int(self._count[symbol_id])

    def _allocate(self, capacity: int) -> None:
        """Grow every per-symbol array of the kernel's state (see `kernel`) to `capacity` rows, keeping it."""
        windows, levels = len(self.config.windows), len(self.config.book_levels)
        shapes: dict[str, tuple[tuple[int, ...], float]] = {
            "_history": ((self._ring, kernel.LANES), 0.0),
            "_sums": ((windows, 2, kernel.LANES), 0.0),
            "_count": ((), 0),
            "_latest": ((kernel.IMBALANCE + levels,), np.nan),
            "_stamp": ((), 0),
        }
        for name, (shape, fill) in shapes.items():
            dtype = np.int64 if name in ("_count", "_stamp") else np.float64
            grown = np.full((capacity, *shape), fill, dtype=dtype)
            if self._capacity:
                grown[: self._capacity] = getattr(self, name)
            setattr(self, name, grown)
        self._capacity = capacity
        # The kernel's arguments, looked up once per growth instead of six attribute reads per bar.
        self._state = (self._history, self._sums, self._count, self._latest, self._windows)

    # --- updates -------------------------------------------------------------------------------------------

    def update(
        self, symbol_ids: Sequence[int] | np.ndarray, close: Iterable[float], volume: Iterable[float]
    ) -> FeatureBatch:
        """Add one bar for each symbol in `symbol_ids` and return their feature vectors.

        Raises ValueError (naming the symbol) for an unknown id, a repeated symbol, a close that is not a
        finite positive number or a volume that is not finite and >= 0; the state is unchanged then.
        """
        ids = np.asarray(symbol_ids, dtype=np.int64)
        close = np.asarray(close, dtype=np.float64)
        volume = np.asarray(volume, dtype=np.float64)
        self._validate(ids, close, volume)
        kernel.update_many(*self._state, ids, close, volume)
        return self.current(ids)

    def update_bar(self, symbol: str, close: float, volume: float) -> FeatureVector:
        """One bar of one symbol (registering it if new): the same kernel as `update`, one compiled call."""
        close, volume = float(close), float(volume)
        if not 0.0 < close < math.inf:  # also False for NaN
            raise ValueError(_bad_close(symbol, close))
        if not 0.0 <= volume < math.inf:
            raise ValueError(_bad_volume(symbol, volume))
        symbol_id = self._ids.get(symbol)
        if symbol_id is None:
            symbol_id = self._register(symbol)
        values = np.empty(self._width)
        ready = kernel.update_bar(*self._state, symbol_id, close, volume, values)
        return _new_tuple(FeatureVector, (values, ready))

    def update_book(self, symbol: str, bid_sizes: Sequence[float], ask_sizes: Sequence[float]) -> None:
        """Record a quote's order book (sizes by level, best first) as the symbol's latest imbalance."""
        symbol_id = self._register(symbol)
        for column, levels in enumerate(self.config.book_levels):
            self._latest[symbol_id, kernel.IMBALANCE + column] = order_book_imbalance(bid_sizes, ask_sizes, levels)

    def _validate(self, ids: np.ndarray, close: np.ndarray, volume: np.ndarray) -> None:
        if ids.ndim != 1 or close.shape != ids.shape or volume.shape != ids.shape:
            raise ValueError(
                f"symbol ids, close and volume must be 1-D of one length, got {ids.shape}, {close.shape}, {volume.shape}"
            )
        if ids.size == 0:
            return
        if ids.min() < 0 or ids.max() >= len(self.symbols):
            raise ValueError(
                f"unknown symbol id {int(ids[(ids < 0) | (ids >= len(self.symbols))][0])}; use symbol_ids()"
            )
        bad_close = ~(np.isfinite(close) & (close > 0))
        if bad_close.any():
            first = int(np.argmax(bad_close))
            raise ValueError(_bad_close(self.symbols[ids[first]], close[first]))
        bad_volume = ~(np.isfinite(volume) & (volume >= 0))
        if bad_volume.any():
            first = int(np.argmax(bad_volume))
            raise ValueError(_bad_volume(self.symbols[ids[first]], volume[first]))
        # With a repeated id the later write wins, so the earlier position reads back another stamp.
        positions = np.arange(ids.size)
        self._stamp[ids] = positions
        repeated = self._stamp[ids] != positions
        if repeated.any():
            raise ValueError(f"symbol {self.symbols[ids[np.argmax(repeated)]]!r} has more than one bar in one update")

    # --- readout -------------------------------------------------------------------------------------------

    def current(self, symbol_ids: Sequence[int] | np.ndarray) -> FeatureBatch:
        """The latest feature vectors of the given symbols; NaN rows for symbols not ready yet."""
        ids = np.asarray(symbol_ids, dtype=np.int64)
        values = np.empty((ids.size, len(self.names)))
        kernel.readout_many(*self._state, ids, values)
        return FeatureBatch(symbol_ids=ids, values=values, ready=self._count[ids] >= self._ring)


# FeatureVector(values, ready) without NamedTuple's Python-level __new__: 0.2 us of a ~2 us single-bar update.
_new_tuple = tuple.__new__


def _bad_close(symbol: str, close: float) -> str:
    return f"symbol {symbol!r}: close must be a finite number > 0, got {close}"


def _bad_volume(symbol: str, volume: float) -> str:
    return f"symbol {symbol!r}: volume must be a finite number >= 0, got {volume}"
