"""The engine's one definition of its state update and its features, compiled by numba.

Both `FeatureEngine.update` (many symbols per call) and `FeatureEngine.update_bar` (one bar per call, a live
feed) run `advance` and `readout` below over the same arrays, so there is one implementation of every feature
and no second path that could drift. The code is scalar (one symbol, one window, one lane at a time): numba
compiles it to ~0.6 us per bar (33 compensated sums, three ring rows that are cold in cache, the readout), so a
single-bar call costs about as much again in numba's dispatch and the Python around it (see the README's
feature benchmark). Compiled code is cached next to this file (`cache=True`, else in the user's cache
directory), so only the first use on a machine pays the compilation (~3.5 s; ~1 s to load it afterwards).

State per symbol, all in numpy arrays indexed by symbol id (`FeatureEngine` owns and grows them):
- `history[s, ring, LANES]`: a ring of the last max(w) bars' contributions to the running-sum lanes;
- `sums[s, window, HI|LO, LANES]`: per window, double-double running sums of each lane;
- `count[s]`: bars seen; `latest[s]`: the last close, its log, then the latest order-book imbalances.

Lanes: five over the last w bars, then six over the last w-1 differences (a bar's difference lanes leave a
window one bar after its bar lanes, so the ring row of bar i holds bar i's bar lanes and bar i+1's difference
lanes: one row then holds everything leaving a window). The two counts of non-zero volumes and returns tell
exactly when a window's sum is 0 (all-zero volumes give NaN, a flat window a return_std of exactly 0), where the
compensated sum may keep a residue of ~1e-32.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import njit

from tickserve.transformers.features.double_double import dd_add_dd, dd_population_variance, two_square, two_sum

_V, _V_NONZERO, _P, _P2_HI, _P2_LO, _R, _R2_HI, _R2_LO, _R_NONZERO, _GAIN, _LOSS = range(11)
BAR_LANES, LANES = 5, 11
HI, LO = 0, 1
LAST_CLOSE, LAST_LOG, IMBALANCE = 0, 1, 2
PER_WINDOW = 5
EPSILON = 1e-8


@njit(cache=True)
def _lanes(close: float, volume: float, log_return: float, difference: float) -> tuple[float, ...]:
    """One bar's contributions to the running-sum lanes (exact squares as hi/lo pairs)."""
    close_sq_hi, close_sq_lo = two_square(close)
    return_sq_hi, return_sq_lo = two_square(log_return)
    return (
        volume,
        1.0 if volume != 0 else 0.0,
        close,
        close_sq_hi,
        close_sq_lo,
        log_return,
        return_sq_hi,
        return_sq_lo,
        1.0 if log_return != 0 else 0.0,
        max(difference, 0.0),
        max(-difference, 0.0),
    )


@njit(cache=True)
def advance(history, sums, count, latest, windows, symbol: int, close: float, volume: float) -> None:
    """Push one bar of `symbol` through its ring and running sums: O(windows * lanes)."""
    ring = history.shape[1]
    bar_index = count[symbol]
    log_close = math.log(close)
    if bar_index == 0:
        log_return, difference = 0.0, 0.0
    else:
        log_return, difference = log_close - latest[symbol, LAST_LOG], close - latest[symbol, LAST_CLOSE]
    entering = _lanes(close, volume, log_return, difference)
    # Leaving a window of w bars: bar bar_index - w and the difference of bar bar_index - (w-1), both in ring
    # row bar_index - w. Rows not written yet still hold zeros, so young symbols subtract nothing.
    for window in range(windows.size):
        row = history[symbol, (bar_index - windows[window]) % ring]
        window_sums = sums[symbol, window]
        for lane in range(LANES):
            change, change_error = two_sum(entering[lane], -row[lane])
            window_sums[HI, lane], window_sums[LO, lane] = dd_add_dd(
                window_sums[HI, lane], window_sums[LO, lane], change, change_error
            )
    slot = bar_index % ring
    previous = (slot - 1) % ring
    for lane in range(LANES):
        if lane < BAR_LANES:
            history[symbol, slot, lane] = entering[lane]
        else:
            history[symbol, previous, lane] = entering[lane]
    count[symbol] = bar_index + 1
    latest[symbol, LAST_CLOSE] = close
    latest[symbol, LAST_LOG] = log_close


@njit(cache=True, error_model="numpy")
def readout(history, sums, count, latest, windows, symbol: int, out) -> bool:
    """Write `symbol`'s feature vector (`feature_names` order) into `out`; all NaN and False until it is ready.

    Per window w over closes p and volumes v: return = (p[-1] - p[0]) / p[0]; return_std = population std of
    the log returns; vol_ratio = v[-1] / mean(v) (NaN for all-zero volumes); rsi = 100 - 100 / (1 + G / (L +
    1e-8)) over the summed gains G and losses L; bb_pos = (p[-1] - mean(p)) / (2 std(p) + 1e-8).
    """
    ring = history.shape[1]
    if count[symbol] < ring:
        out[:] = np.nan
        return False
    last_slot = (count[symbol] - 1) % ring
    close = latest[symbol, LAST_CLOSE]
    volume = history[symbol, last_slot, _V]
    for window in range(windows.size):
        bars = float(windows[window])
        hi, lo = sums[symbol, window, HI], sums[symbol, window, LO]
        price_squares_hi, price_squares_lo = dd_add_dd(hi[_P2_HI], lo[_P2_HI], hi[_P2_LO], lo[_P2_LO])
        price_std = math.sqrt(dd_population_variance(hi[_P], lo[_P], price_squares_hi, price_squares_lo, bars))
        if hi[_R_NONZERO] + lo[_R_NONZERO] > 0:
            return_squares_hi, return_squares_lo = dd_add_dd(hi[_R2_HI], lo[_R2_HI], hi[_R2_LO], lo[_R2_LO])
            return_std = math.sqrt(
                dd_population_variance(hi[_R], lo[_R], return_squares_hi, return_squares_lo, bars - 1.0)
            )
        else:
            return_std = 0.0
        vol_ratio = volume / ((hi[_V] + lo[_V]) / bars) if hi[_V_NONZERO] + lo[_V_NONZERO] > 0 else np.nan
        first_close = history[symbol, (last_slot - windows[window] + 1) % ring, _P]
        base = PER_WINDOW * window
        out[base] = (close - first_close) / first_close
        out[base + 1] = return_std
        out[base + 2] = vol_ratio
        out[base + 3] = 100.0 - 100.0 / (1.0 + (hi[_GAIN] + lo[_GAIN]) / ((hi[_LOSS] + lo[_LOSS]) + EPSILON))
        out[base + 4] = (close - (hi[_P] + lo[_P]) / bars) / (2.0 * price_std + EPSILON)
    levels = latest.shape[1] - IMBALANCE
    for level in range(levels):
        out[PER_WINDOW * windows.size + level] = latest[symbol, IMBALANCE + level]
    return True


@njit(cache=True)
def update_bar(history, sums, count, latest, windows, symbol: int, close: float, volume: float, out) -> bool:
    """One bar of one symbol, then its vector into `out`: the live-feed path, one compiled call per bar."""
    advance(history, sums, count, latest, windows, symbol, close, volume)
    return readout(history, sums, count, latest, windows, symbol, out)


@njit(cache=True)
def update_many(history, sums, count, latest, windows, symbols, close, volume) -> None:
    """One bar for each of `symbols` (distinct), in order."""
    for row in range(symbols.size):
        advance(history, sums, count, latest, windows, symbols[row], close[row], volume[row])


@njit(cache=True)
def readout_many(history, sums, count, latest, windows, symbols, out) -> None:
    """Row i of `out` gets the vector of `symbols[i]` (NaN when not ready)."""
    for row in range(symbols.size):
        readout(history, sums, count, latest, windows, symbols[row], out[row])


@functools.cache
def warm_up() -> None:
    """Load the compiled kernel (on a machine's first run: compile it, ~5 s) now, on scratch state shaped like
    `FeatureEngine`'s, rather than on the first live bar; about a second, once per process."""
    history, sums = np.zeros((1, 2, LANES)), np.zeros((1, 1, 2, LANES))
    count, latest, windows = np.zeros(1, dtype=np.int64), np.zeros((1, IMBALANCE)), np.array([2], dtype=np.int64)
    update_bar(history, sums, count, latest, windows, 0, 1.0, 1.0, np.empty(PER_WINDOW))
    symbols, ones = np.zeros(1, dtype=np.int64), np.ones(1)
    update_many(history, sums, count, latest, windows, symbols, ones, ones)
    readout_many(history, sums, count, latest, windows, symbols, np.empty((1, PER_WINDOW)))
