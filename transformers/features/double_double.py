"""Drift-free running sums for sliding windows: double-double ("compensated") arithmetic on floats.

A sliding-window sum updated by adding the new value and subtracting the one that leaves the window loses a
rounding error at every step; after millions of bars plain float64 sums drift far from a direct recomputation,
and sum-of-squares variance formulas cancel catastrophically (prices ~100, std ~0.01). Here every running sum
is an unevaluated pair `hi + lo` and every addition captures its own rounding error exactly (Knuth's TwoSum),
every square its product error (Dekker's TwoProduct), so a sum is exact to about 1e-32 relative of the values
it has seen; the drift after n bars is bounded by n * 1e-32 relative, i.e. none in practice, at O(1) per bar.

The functions are branch-free float expressions compiled by numba (no fastmath: reassociating or fusing them
would lose the very errors they capture); `kernel` calls them once per lane and window.
"""

from __future__ import annotations

from numba import njit

# Veltkamp's splitter 2**27 + 1 cuts a float64 into two halves whose products are exact.
_SPLITTER = 134217729.0


@njit(cache=True)
def two_sum(a: float, b: float) -> tuple[float, float]:
    """`a + b` as (rounded sum, exact rounding error); no ordering requirement on |a|, |b|."""
    total = a + b
    b_part = total - a
    return total, (a - (total - b_part)) + (b - b_part)


@njit(cache=True)
def fast_two_sum(a: float, b: float) -> tuple[float, float]:
    """`a + b` as (rounded sum, exact error) when |a| >= |b| or a == 0 (renormalises a double-double)."""
    total = a + b
    return total, b - (total - a)


@njit(cache=True)
def _split(a: float) -> tuple[float, float]:
    scaled = _SPLITTER * a
    high = scaled - (scaled - a)
    return high, a - high


@njit(cache=True)
def two_product(a: float, b: float) -> tuple[float, float]:
    """`a * b` as (rounded product, exact rounding error)."""
    product = a * b
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    return product, ((a_high * b_high - product) + a_high * b_low + a_low * b_high) + a_low * b_low


@njit(cache=True)
def two_square(a: float) -> tuple[float, float]:
    """`a * a` as (rounded square, exact rounding error); cheaper than two_product(a, a)."""
    square = a * a
    high, low = _split(a)
    return square, ((high * high - square) + 2.0 * high * low) + low * low


@njit(cache=True)
def dd_add_dd(a_hi: float, a_lo: float, b_hi: float, b_lo: float) -> tuple[float, float]:
    """The sum of two double-doubles, renormalised."""
    total, error = two_sum(a_hi, b_hi)
    return fast_two_sum(total, error + (a_lo + b_lo))


@njit(cache=True)
def dd_population_variance(sum_hi: float, sum_lo: float, squares_hi: float, squares_lo: float, count: float) -> float:
    """Population variance (count * sum(x^2) - sum(x)^2) / count^2 from double-double sums.

    The subtraction is done in double-double, so the cancellation that ruins the textbook one-pass formula
    only costs about 1e-32 relative of sum(x)^2; the result is clipped at 0 (a constant window).
    """
    scaled_hi, scaled_lo = two_product(count, squares_hi)
    scaled_lo = scaled_lo + count * squares_lo
    square_hi, square_lo = two_square(sum_hi)
    square_lo = square_lo + 2.0 * sum_hi * sum_lo
    difference, error = two_sum(scaled_hi, -square_hi)
    numerator = difference + (error + (scaled_lo - square_lo))
    return max(numerator, 0.0) / (count * count)
