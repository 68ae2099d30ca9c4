"""Feature engine against the direct recomputation, side by side on one bar stream.

Peers, all fed the same stream of OHLCV bars (many symbols, one bar per symbol per time step, default windows
60/120/240):
- `FeatureEngine.update` with one call per time step (vectorised across symbols: how ingest should feed it);
- `FeatureEngine.update_bar`, one call per bar (the WebSocket convenience path);
- the direct recomputation (`features_direct.DirectFeatures`: deques and numpy over every window at every
  bar, the seed-style implementation).
Every peer's feature values are asserted equal to the direct recomputation (1e-9 relative, 1e-9 absolute for
values near 0) before any timing counts. Throughput is bars per second over the whole stream, median of
several repetitions; the speedup is the ratio of medians. Peak memory of the batched engine and of the direct
recomputation comes from one extra untimed run under tracemalloc (numpy reports its buffers to it).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import report
from tickserve.transformers.features import FeatureConfig, FeatureEngine
from tickserve.transformers.features_direct import DirectFeatures

SYMBOLS = 400
STEPS = 320  # the first 239 steps fill the windows (the direct recomputation only appends then)
ENGINE_REPETITIONS = 7
SLOW_REPETITIONS = 3
TARGET_SPEEDUP = 50.0

Stream = tuple[list[str], np.ndarray, np.ndarray]


def make_stream(seed: int = 11) -> Stream:
    """(symbols, closes, volumes) with closes and volumes shaped (steps, symbols): random walks, random volumes."""
    rng = np.random.default_rng(seed)
    closes = 10 ** rng.uniform(0, 3, SYMBOLS) * np.exp(np.cumsum(rng.normal(0, 0.002, (STEPS, SYMBOLS)), axis=0))
    volumes = rng.integers(0, 10_000, (STEPS, SYMBOLS)).astype(np.float64)
    return [f"SYM{i:04d}" for i in range(SYMBOLS)], closes, volumes


def run_batched(stream: Stream) -> np.ndarray:
    symbols, closes, volumes = stream
    engine = FeatureEngine()
    ids = engine.symbol_ids(symbols)
    ready_rows = []
    for step in range(STEPS):
        batch = engine.update(ids, closes[step], volumes[step])
        ready_rows.append(batch.values[batch.ready])
    return np.concatenate(ready_rows)


def run_per_bar(stream: Stream) -> np.ndarray:
    symbols, closes, volumes = stream
    engine = FeatureEngine()
    ready_rows = []
    for step in range(STEPS):
        for column, symbol in enumerate(symbols):
            vector = engine.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
            if vector.ready:
                ready_rows.append(vector.values)
    return np.asarray(ready_rows)


def run_direct(stream: Stream) -> np.ndarray:
    symbols, closes, volumes = stream
    direct = DirectFeatures()
    ready_rows = []
    for step in range(STEPS):
        for column, symbol in enumerate(symbols):
            values = direct.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
            if values is not None:
                ready_rows.append(values)
    return np.asarray(ready_rows)


def timed(peer: Callable[[Stream], np.ndarray], stream: Stream, repetitions: int) -> tuple[list[float], np.ndarray]:
    """Bars per second of each repetition, and the values of the last one."""
    rates = []
    for _ in range(repetitions):
        started = time.perf_counter()
        values = peer(stream)
        rates.append(SYMBOLS * STEPS / (time.perf_counter() - started))
    return rates, values


def peak_mib(peer: Callable[[Stream], np.ndarray], stream: Stream) -> float:
    tracemalloc.start()
    try:
        peer(stream)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def run(out_dir: Path) -> list[dict]:
    stream = make_stream()
    case = f"{SYMBOLS} symbols x {STEPS} bars, windows {','.join(map(str, FeatureConfig().windows))}"
    direct_rates, expected = timed(run_direct, stream, SLOW_REPETITIONS)
    peers = {
        "tickserve FeatureEngine.update (batch per time step)": (run_batched, ENGINE_REPETITIONS, True),
        "tickserve FeatureEngine.update_bar (one bar per call)": (run_per_bar, SLOW_REPETITIONS, False),
    }
    rows = [
        {
            "bench": "features",
            "case": case,
            "system": "direct recomputation (deque + numpy per window per bar)",
            "bars_per_s": report.median(direct_rates),
            "repetitions": len(direct_rates),
            "speedup": 1.0,
            "peak_mib": peak_mib(run_direct, stream),
        }
    ]
    for system, (peer, repetitions, measure_memory) in peers.items():
        rates, values = timed(peer, stream, repetitions)
        np.testing.assert_allclose(values, expected, rtol=1e-9, atol=1e-9, err_msg=f"{system} disagrees")
        rows.append(
            {
                "bench": "features",
                "case": case,
                "system": system,
                "bars_per_s": report.median(rates),
                "repetitions": len(rates),
                "speedup": report.median(rates) / report.median(direct_rates),
                "peak_mib": peak_mib(peer, stream) if measure_memory else None,
            }
        )
    batched_speedup = rows[1]["speedup"]
    notes = {
        "target": f"batched engine >= {TARGET_SPEEDUP:.0f}x the direct recomputation",
        "met": batched_speedup >= TARGET_SPEEDUP,
        "values": "every peer asserted equal to the direct recomputation (rtol 1e-9, atol 1e-9)",
    }
    report.write(out_dir, "features", rows, notes)
    if batched_speedup < TARGET_SPEEDUP:
        print(f"WARNING: batched speedup {batched_speedup:.1f}x is below the {TARGET_SPEEDUP:.0f}x target")
    return rows
