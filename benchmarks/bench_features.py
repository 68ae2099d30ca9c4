"""Feature engine against the direct recomputation, side by side on one bar stream.

Peers, all fed the same stream of OHLCV bars (many symbols, one bar per symbol per time step, default windows
60/120/240):
- `FeatureEngine.update` with one call per time step (vectorised across symbols: how ingest should feed it);
- `FeatureEngine.update_bar`, one call per bar (the WebSocket convenience path);
- the direct recomputation (`features_direct.DirectFeatures`: deques and numpy over every window at every
  bar, the seed-style implementation).
Throughput is measured in the steady state a live feed is in: each peer is first warmed up (untimed) until
every window is full, then each repetition times a copy of the warm state over the next MEASURED_STEPS steps;
repetitions of the peers are interleaved in rounds. Bars per second are the median of the repetitions; the
speedup is the ratio of medians. Every peer's values
are asserted equal to the direct recomputation (1e-9 relative, 1e-9 absolute near 0). Peak memory of the
batched engine and of the direct recomputation comes from one extra untimed run from scratch under
tracemalloc (numpy reports its buffers to it).
"""

from __future__ import annotations

import copy
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import report
from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine
from tickserve.transformers.features.reference import DirectFeatures

SYMBOLS = 400
WARMUP_STEPS = FeatureConfig().max_window - 1
MEASURED_STEPS = 60
ROUNDS = 5
FAST_PER_ROUND = 3
TARGET_SPEEDUP = 50.0

Stream = tuple[list[str], np.ndarray, np.ndarray]
Feed = Callable[[Any, Stream, range], list[np.ndarray]]


def make_stream(seed: int = 11) -> Stream:
    """(symbols, closes, volumes), arrays shaped (steps, symbols): random walks from random levels, random volumes."""
    rng = np.random.default_rng(seed)
    steps = WARMUP_STEPS + MEASURED_STEPS
    closes = 10 ** rng.uniform(0, 3, SYMBOLS) * np.exp(np.cumsum(rng.normal(0, 0.002, (steps, SYMBOLS)), axis=0))
    volumes = rng.integers(0, 10_000, (steps, SYMBOLS)).astype(np.float64)
    return [f"SYM{i:04d}" for i in range(SYMBOLS)], closes, volumes


def feed_batched(engine: FeatureEngine, stream: Stream, steps: range) -> list[np.ndarray]:
    symbols, closes, volumes = stream
    ids = engine.symbol_ids(symbols)
    ready_rows = []
    for step in steps:
        batch = engine.update(ids, closes[step], volumes[step])
        ready_rows.extend(batch.values[batch.ready])
    return ready_rows


def feed_per_bar(engine: FeatureEngine, stream: Stream, steps: range) -> list[np.ndarray]:
    symbols, closes, volumes = stream
    ready_rows = []
    for step in steps:
        for column, symbol in enumerate(symbols):
            vector = engine.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
            if vector.ready:
                ready_rows.append(vector.values)
    return ready_rows


def feed_direct(direct: DirectFeatures, stream: Stream, steps: range) -> list[np.ndarray]:
    symbols, closes, volumes = stream
    ready_rows = []
    for step in steps:
        for column, symbol in enumerate(symbols):
            values = direct.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
            if values is not None:
                ready_rows.append(np.asarray(values))
    return ready_rows


class Peer:
    """One implementation under test, warmed up once; each `measure` times a fresh copy of the warm state."""

    def __init__(self, system: str, start: Callable[[], Any], feed: Feed, stream: Stream) -> None:
        self.system, self.start, self.feed, self.stream = system, start, feed, stream
        self.warm = start()
        feed(self.warm, stream, range(WARMUP_STEPS))
        self.rates: list[float] = []
        self.values = np.empty(0)

    def measure(self) -> None:
        state = copy.deepcopy(self.warm)
        started = time.perf_counter()
        values = self.feed(state, self.stream, range(WARMUP_STEPS, WARMUP_STEPS + MEASURED_STEPS))
        self.rates.append(SYMBOLS * MEASURED_STEPS / (time.perf_counter() - started))
        self.values = np.asarray(values)


def peak_mib(start: Callable[[], Any], feed: Feed, stream: Stream) -> float:
    tracemalloc.start()
    try:
        feed(start(), stream, range(WARMUP_STEPS + MEASURED_STEPS))
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def run(out_dir: Path) -> list[dict]:
    stream = make_stream()
    case = f"{SYMBOLS} symbols, windows {','.join(map(str, FeatureConfig().windows))}, steady state"
    direct = Peer("direct recomputation (deque + numpy per window per bar)", DirectFeatures, feed_direct, stream)
    batched = Peer("tickserve FeatureEngine.update (batch per time step)", FeatureEngine, feed_batched, stream)
    per_bar = Peer("tickserve FeatureEngine.update_bar (one bar per call)", FeatureEngine, feed_per_bar, stream)
    # Rounds interleave the peers so that a shared machine's load changes hit all of them alike.
    for _ in range(ROUNDS):
        direct.measure()
        per_bar.measure()
        for _ in range(FAST_PER_ROUND):
            batched.measure()
    assert direct.values.shape == (SYMBOLS * MEASURED_STEPS, len(FeatureConfig().names))
    rows = []
    for peer in (direct, batched, per_bar):
        np.testing.assert_allclose(peer.values, direct.values, rtol=1e-9, atol=1e-9, err_msg=f"{peer.system} disagrees")
        rows.append(
            {
                "bench": "features",
                "case": case,
                "system": peer.system,
                "bars_per_s": report.median(peer.rates),
                "repetitions": len(peer.rates),
                "speedup": report.median(peer.rates) / report.median(direct.rates),
                "peak_mib": None if peer is per_bar else peak_mib(peer.start, peer.feed, stream),
            }
        )
    batched_speedup = rows[1]["speedup"]
    notes = {
        "target": f"batched engine >= {TARGET_SPEEDUP:.0f}x the direct recomputation (steady state)",
        "met": batched_speedup >= TARGET_SPEEDUP,
        "values": "every peer asserted equal to the direct recomputation (rtol 1e-9, atol 1e-9)",
        "bars_per_repetition": SYMBOLS * MEASURED_STEPS,
        "warmup_steps": WARMUP_STEPS,
    }
    report.write(out_dir, "features", rows, notes)
    if batched_speedup < TARGET_SPEEDUP:
        print(f"WARNING: batched speedup {batched_speedup:.1f}x is below the {TARGET_SPEEDUP:.0f}x target")
    return rows
