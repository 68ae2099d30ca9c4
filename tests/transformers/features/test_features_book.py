"""Order-book imbalance: the definition over the top k levels, and its place in the engine's vectors."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine, order_book_imbalance

sizes = st.lists(st.floats(0.0, 1e9, allow_subnormal=False), max_size=12)


@given(sizes, sizes, st.integers(1, 15))
def test_imbalance_is_bid_minus_ask_over_their_sum_on_the_top_levels(bids, asks, levels) -> None:
    bid, ask = math.fsum(bids[:levels]), math.fsum(asks[:levels])
    imbalance = order_book_imbalance(bids, asks, levels)
    if bid + ask == 0:
        assert imbalance == 0.0
    else:
        assert math.isclose(imbalance, (bid - ask) / (bid + ask), rel_tol=1e-12, abs_tol=1e-15)
        assert -1.0 <= imbalance <= 1.0


def test_levels_below_the_top_k_do_not_count() -> None:
    assert order_book_imbalance([1, 1, 100], [1, 1, 0], 2) == 0.0
    assert order_book_imbalance([3, 0, 0], [1], 1) == 0.5
    assert order_book_imbalance([], [2, 2], 5) == -1.0


def test_the_engine_appends_the_latest_imbalance_per_configured_depth() -> None:
    config = FeatureConfig(windows=(2, 3), book_levels=(1, 3))
    engine = FeatureEngine(config)
    assert config.names[-2:] == ["obi_1", "obi_3"]
    engine.update_book("B", [5.0, 1.0, 1.0], [1.0, 1.0, 1.0])  # a quote may come before the first bar
    ids = engine.symbol_ids(["A", "B"])
    for close in (10.0, 11.0, 10.5):
        batch = engine.update(ids, [close, close * 2], [1.0, 2.0])
    assert batch.ready.all()
    assert np.isnan(batch.values[0, -2:]).all()  # A has had no quote yet
    np.testing.assert_array_equal(batch.values[1, -2:], [4 / 6, 4 / 10])

    window_features = batch.values[:, :-2].copy()
    engine.update_book("A", [1.0, 1.0, 1.0], [3.0, 0.0, 0.0])
    latest = engine.current(ids)
    np.testing.assert_array_equal(latest.values[0, -2:], [-0.5, 0.0])
    np.testing.assert_array_equal(latest.values[:, :-2], window_features)
    assert engine.bar_count("A") == 3  # a quote is not a bar
