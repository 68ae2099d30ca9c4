"""Feature engine against the direct recomputation and talipp, side by side on one bar stream.

Peers, all fed the same stream of OHLCV bars (many symbols, one bar per symbol per time step, default windows
60/120/240):
- `FeatureEngine.update` with one call per time step (many symbols per call: how ingest feeds it);
- `FeatureEngine.update_bar`, one call per bar (a live feed delivering one message at a time);
- the direct recomputation (`reference.DirectFeatures`: deques and numpy over every window at every bar, the
  seed-style implementation);
- talipp (a pure-Python incremental indicator library, bench-only dependency), one bar per call computing
  comparable indicators per window: SMA of the volume, StdDev of the log returns, RSI and Bollinger bands of
  the close. Its RSI is Wilder-smoothed, so its values are comparable in work, not equal, and are not asserted.
Throughput is measured in the steady state a live feed is in: each peer is first warmed up (untimed) until
every window is full, then each repetition times a copy of the warm state over the next MEASURED_STEPS steps;
repetitions of the peers are interleaved in rounds. Bars per second are the median of the repetitions; the
speedup is the ratio of medians. Every peer's values
(talipp's aside) are asserted equal to the direct recomputation (1e-9 relative, 1e-9 absolute near 0). Peak
memory of the batched engine and of the direct recomputation comes from one extra untimed run from scratch under
tracemalloc (numpy reports its buffers to it). The engine's numba start-up (compiling its kernel into an empty
cache, then loading it from that cache) is timed in fresh interpreters and written to the notes.
"""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
import tempfile
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
TARGET_SPEEDUP = 50.0  # the batched and the single-bar engine against the direct recomputation
TARGET_OVER_TALIPP = 10.0  # the single-bar engine against talipp

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


class TalippFeatures:
    """Per symbol and window: talipp SMA(volume), StdDev(log returns), RSI(close), BB(close); one bar per call."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.windows = (config or FeatureConfig()).windows
        self._symbols: dict[str, tuple[list, list[float]]] = {}

    def update_bar(self, symbol: str, close: float, volume: float) -> list[float] | None:
        from talipp.indicators import BB, RSI, SMA, StdDev

        state = self._symbols.get(symbol)
        if state is None:
            indicators = [(SMA(w), StdDev(w - 1), RSI(w), BB(w, 2.0)) for w in self.windows]
            state = self._symbols[symbol] = (indicators, [math.nan])
        indicators, last_close = state
        log_return = math.log(close / last_close[0]) if last_close[0] == last_close[0] else 0.0
        last_close[0] = close
        row: list[float] = []
        for volume_mean, return_std, rsi, bands in indicators:
            volume_mean.add(volume)
            return_std.add(log_return)
            rsi.add(close)
            bands.add(close)
            row += [volume_mean[-1], return_std[-1], rsi[-1], bands[-1]]
        return None if any(value is None for value in row) else row


def feed_talipp(talipp: TalippFeatures, stream: Stream, steps: range) -> list[np.ndarray]:
    symbols, closes, volumes = stream
    ready_rows = []
    for step in steps:
        for column, symbol in enumerate(symbols):
            row = talipp.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
            if row is not None:
                ready_rows.append(row)
    return ready_rows


STARTUP = """
import time
started = time.perf_counter()
from tickserve.transformers.features.engine import FeatureEngine
engine = FeatureEngine()
engine.update_bar("A", 1.0, 1.0)
engine.update(engine.symbol_ids(["B"]), [1.0], [1.0])
print(time.perf_counter() - started)
"""


def numba_startup() -> dict[str, float]:
    """Seconds from importing the engine to its first single-bar and batched update, cold and cached."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        seconds = [
            float(
                subprocess.run(
                    [sys.executable, "-c", STARTUP], env=env, capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(2)
        ]
    return {"first_use_compiling_s": seconds[0], "first_use_from_cache_s": seconds[1]}


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
    talipp = Peer("talipp SMA + StdDev + RSI + BB per window (one bar per call)", TalippFeatures, feed_talipp, stream)
    per_bar = Peer("tickserve FeatureEngine.update_bar (one bar per call)", FeatureEngine, feed_per_bar, stream)
    # Rounds interleave the peers so that a shared machine's load changes hit all of them alike.
    for _ in range(ROUNDS):
        direct.measure()
        talipp.measure()
        for _ in range(FAST_PER_ROUND):
            per_bar.measure()
            batched.measure()
    assert direct.values.shape == (SYMBOLS * MEASURED_STEPS, len(FeatureConfig().names))
    rows = []
    for peer in (direct, talipp, batched, per_bar):
        if peer is not talipp:
            np.testing.assert_allclose(
                peer.values, direct.values, rtol=1e-9, atol=1e-9, err_msg=f"{peer.system} disagrees"
            )
        rate = report.median(peer.rates)
        rows.append(
            {
                "bench": "features",
                "case": case,
                "system": peer.system,
                "bars_per_s": rate,
                "us_per_bar": 1e6 / rate,
                "repetitions": len(peer.rates),
                "speedup": rate / report.median(direct.rates),
                "x_talipp": rate / report.median(talipp.rates),
                "peak_mib": peak_mib(peer.start, peer.feed, stream) if peer in (direct, batched) else None,
            }
        )
    batched_speedup, single_speedup, single_over_talipp = rows[2]["speedup"], rows[3]["speedup"], rows[3]["x_talipp"]
    targets = {
        f"batched engine >= {TARGET_SPEEDUP:.0f}x the direct recomputation": batched_speedup >= TARGET_SPEEDUP,
        f"single-bar engine >= {TARGET_SPEEDUP:.0f}x the direct recomputation": single_speedup >= TARGET_SPEEDUP,
        f"single-bar engine >= {TARGET_OVER_TALIPP:.0f}x talipp": single_over_talipp >= TARGET_OVER_TALIPP,
    }
    notes = {
        "targets": targets,
        "values": "every tickserve peer asserted equal to the direct recomputation (rtol 1e-9, atol 1e-9)",
        "bars_per_repetition": SYMBOLS * MEASURED_STEPS,
        "warmup_steps": WARMUP_STEPS,
        "numba_startup": numba_startup(),
    }
    report.write(out_dir, "features", rows, notes)
    print(f"numba start-up: {notes['numba_startup']}")
    for target, met in targets.items():
        if not met:
            print(f"WARNING: target not met: {target}")
    return rows
