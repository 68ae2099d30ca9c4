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
  - `update_bar(symbol, close, volume) -> FeatureVector`: the same for one bar (a WebSocket feed). Each call
    pays numpy's fixed overhead; batch bars that arrive together through `update` when throughput matters.
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
per window, double-double running sums of p, p^2, v, log returns r, r^2, gains and losses (see `windows`),
all symbols and windows in a few numpy arrays. A bar adds its contribution and subtracts the one leaving each
window; readout is a few arithmetic operations per window. The sums are exact to ~1e-32 of the largest values
a symbol's windows have held, so features equal a direct recomputation to 1e-9 relative however long the
stream runs (tests/transformers/test_features_exactness.py: 2 million bars). Not thread-safe: one engine per
ingest task. Also public: `engine.names`, `engine.symbols` (id -> symbol), `engine.bar_count(symbol)`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator
from tickserve.transformers.features.double_double import dd_add_dd, dd_population_variance, two_square, two_sum

DEFAULT_WINDOWS: tuple[int, ...] = (60, 120, 240)
PER_WINDOW_FEATURES: tuple[str, ...] = ("return", "return_std", "vol_ratio", "rsi", "bb_pos")
# Bump when a formula changes so that stored vectors of the old meaning are refused.
FORMULA_VERSION = "v1"
EPSILON = 1e-8

# Running-sum lanes: five over the last w bars, then six over the last w-1 differences (a bar's difference
# lanes leave a window one bar after its bar lanes, so the ring row of bar i holds bar i's bar lanes and bar
# i+1's difference lanes: one gather then fetches everything leaving a window).
# The two counts of non-zero volumes and returns tell exactly when a window's sum is 0 (all-zero volumes give
# NaN, a flat window a return_std of exactly 0), where the compensated sum may keep a residue of ~1e-32.
# Prices and log returns sit the same distance apart as their squares, so one strided view holds both pairs.
_V, _V_NONZERO, _P, _P2_HI, _P2_LO, _R, _R2_HI, _R2_LO, _R_NONZERO, _GAIN, _LOSS = range(11)
_BAR_LANES, _LANES = 5, 11
_SUMS, _SQUARES_HI, _SQUARES_LO = (slice(lane, lane + 4, 3) for lane in (_P, _P2_HI, _P2_LO))


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


@dataclass(frozen=True, slots=True)
class FeatureVector:
    """One symbol's feature vector (all NaN unless `ready`)."""

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
        self._bar_counts = self._windows.astype(np.float64)
        self._variance_counts = np.stack([self._bar_counts, self._bar_counts - 1.0], axis=1)
        self._ring = self.config.max_window
        self._ids: dict[str, int] = {}
        self.symbols: list[str] = []
        self._capacity = 0
        self._allocate(max(1, initial_capacity))

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
        """Grow every per-symbol array to `capacity` rows, keeping the existing state."""
        windows, levels = len(self.config.windows), len(self.config.book_levels)
        shapes: dict[str, tuple[tuple[int, ...], float]] = {
            "_history": ((self._ring, _LANES), 0.0),
            "_stamp": ((), 0),
            "_sum_hi": ((windows, _LANES), 0.0),
            "_sum_lo": ((windows, _LANES), 0.0),
            "_count": ((), 0),
            "_last_close": ((), 0.0),
            "_last_log": ((), 0.0),
            "_imbalance": ((levels,), np.nan),
        }
        for name, (shape, fill) in shapes.items():
            dtype = np.int64 if name in ("_count", "_stamp") else np.float64
            grown = np.full((capacity, *shape), fill, dtype=dtype)
            if self._capacity:
                grown[: self._capacity] = getattr(self, name)
            setattr(self, name, grown)
        self._capacity = capacity

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
        if ids.size:
            self._advance(ids, close, volume)
        return self.current(ids)

    def update_bar(self, symbol: str, close: float, volume: float) -> FeatureVector:
        """One bar of one symbol (registering it if new); checks the bar like `update`, in plain Python."""
        close, volume = float(close), float(volume)
        if not (math.isfinite(close) and close > 0):
            raise ValueError(_bad_close(symbol, close))
        if not (math.isfinite(volume) and volume >= 0):
            raise ValueError(_bad_volume(symbol, volume))
        ids = np.asarray([self._register(symbol)])
        self._advance(ids, np.asarray([close]), np.asarray([volume]))
        batch = self.current(ids)
        return FeatureVector(values=batch.values[0], ready=bool(batch.ready[0]))

    def update_book(self, symbol: str, bid_sizes: Sequence[float], ask_sizes: Sequence[float]) -> None:
        """Record a quote's order book (sizes by level, best first) as the symbol's latest imbalance."""
        symbol_id = self._register(symbol)
        for column, levels in enumerate(self.config.book_levels):
            self._imbalance[symbol_id, column] = order_book_imbalance(bid_sizes, ask_sizes, levels)

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

    def _advance(self, ids: np.ndarray, close: np.ndarray, volume: np.ndarray) -> None:
        """Push one bar per symbol through the ring buffers and the running sums."""
        bar_index = self._count[ids]
        first_bar = bar_index == 0
        log_close = np.log(close)
        log_return = np.where(first_bar, 0.0, log_close - self._last_log[ids])
        difference = np.where(first_bar, 0.0, close - self._last_close[ids])
        entering = _lanes(close, volume, log_return, difference)

        # Leaving a window of w bars: bar bar_index - w and the difference of bar bar_index - (w-1), both in
        # ring row bar_index - w. Rows not written yet still hold zeros, so young symbols subtract nothing.
        leaving = self._history[ids[:, None], (bar_index[:, None] - self._windows) % self._ring]
        change, change_error = two_sum(entering[:, None, :], -leaving)
        hi, lo = dd_add_dd(self._sum_hi[ids], self._sum_lo[ids], change, change_error)
        self._sum_hi[ids] = hi
        self._sum_lo[ids] = lo

        slot = bar_index % self._ring
        self._history[ids, slot, :_BAR_LANES] = entering[:, :_BAR_LANES]
        self._history[ids, (slot - 1) % self._ring, _BAR_LANES:] = entering[:, _BAR_LANES:]
        self._count[ids] = bar_index + 1
        self._last_close[ids] = close
        self._last_log[ids] = log_close

    # --- readout -------------------------------------------------------------------------------------------

    def current(self, symbol_ids: Sequence[int] | np.ndarray) -> FeatureBatch:
        """The latest feature vectors of the given symbols; NaN rows for symbols not ready yet."""
        ids = np.asarray(symbol_ids, dtype=np.int64)
        ready = self._count[ids] >= self._ring
        if ready.all() and ids.size:
            return FeatureBatch(symbol_ids=ids, values=self._vectors(ids), ready=ready)
        values = np.full((ids.size, len(self.names)), np.nan)
        if ready.any():
            values[ready] = self._vectors(ids[ready])
        return FeatureBatch(symbol_ids=ids, values=values, ready=ready)

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        window_features = self._window_features(ids)
        if not self.config.book_levels:
            return window_features
        return np.concatenate([window_features, self._imbalance[ids]], axis=1)

    def _window_features(self, ids: np.ndarray) -> np.ndarray:
        hi, lo = self._sum_hi[ids], self._sum_lo[ids]
        bars = self._bar_counts
        last_slot = (self._count[ids] - 1) % self._ring
        close = self._last_close[ids, None]
        volume = self._history[ids, last_slot, _V, None]
        first_close = self._history[ids[:, None], (last_slot[:, None] - self._windows + 1) % self._ring, _P]

        # Variances of the prices (over w) and of the log returns (over w-1) in one pass: (n, windows, 2).
        squares_hi, squares_lo = dd_add_dd(
            hi[..., _SQUARES_HI], lo[..., _SQUARES_HI], hi[..., _SQUARES_LO], lo[..., _SQUARES_LO]
        )
        variances = dd_population_variance(
            hi[..., _SUMS], lo[..., _SUMS], squares_hi, squares_lo, self._variance_counts
        )
        price_std = np.sqrt(variances[..., 0])
        sums = hi + lo
        return_std = np.where(sums[..., _R_NONZERO] > 0, np.sqrt(variances[..., 1]), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            vol_ratio = np.where(sums[..., _V_NONZERO] > 0, volume / (sums[..., _V] / bars), np.nan)
        rsi = 100.0 - 100.0 / (1.0 + sums[..., _GAIN] / (sums[..., _LOSS] + EPSILON))
        bb_pos = (close - sums[..., _P] / bars) / (2.0 * price_std + EPSILON)
        ret = (close - first_close) / first_close
        # (n, windows, features) -> window-major rows as in feature_names.
        return np.stack([ret, return_std, vol_ratio, rsi, bb_pos], axis=2).reshape(ids.size, -1)


def _bad_close(symbol: str, close: float) -> str:
    return f"symbol {symbol!r}: close must be a finite number > 0, got {close}"


def _bad_volume(symbol: str, volume: float) -> str:
    return f"symbol {symbol!r}: volume must be a finite number >= 0, got {volume}"


def _lanes(close: np.ndarray, volume: np.ndarray, log_return: np.ndarray, difference: np.ndarray) -> np.ndarray:
    """Per-bar contributions to the running-sum lanes, stacked on axis 1 (exact squares as hi/lo pairs)."""
    close_sq_hi, close_sq_lo = two_square(close)
    return_sq_hi, return_sq_lo = two_square(log_return)
    gain = np.maximum(difference, 0.0)
    loss = np.maximum(-difference, 0.0)
    return np.stack(
        [
            volume,
            (volume != 0).astype(np.float64),
            close,
            close_sq_hi,
            close_sq_lo,
            log_return,
            return_sq_hi,
            return_sq_lo,
            (log_return != 0).astype(np.float64),
            gain,
            loss,
        ],
        axis=-1,
    )
