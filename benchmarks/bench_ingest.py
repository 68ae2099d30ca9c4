"""Ingest end to end into a real redis-server: bars per second sustained and feature freshness, side by side
with the seed-style pipeline, on one stream of SYMBOLS symbols (one bar per symbol per time step).

Peers:
- seed style: a deque recomputation per symbol (`reference.DirectFeatures`) and one awaited Redis write per bar;
- tickserve ingest from a replay CSV at full speed (`replay_source`, the pipeline waits for its writer);
- tickserve ingest from a local WebSocket feed (a second process, one JSON frame of 400 bar objects per time
  step), once as fast as the feed can send and once paced at half the rate that run sustained (the freshness
  figure). The feed encodes its frames before the run and only fills in each frame's send time: a real
  exchange feed is not a Python process encoding JSON, and the benchmark measures ingest, not its test feed.
Each peer is first warmed up (untimed) until every window is full; then MEASURED_STEPS steps are timed.
The seed style, the replay and the WebSocket feed at full speed run REPEATS times, interleaved, each from an
empty Redis; a row is the run with the median bars/s, and `speedup_per_repeat` gives each repetition's ratio to
the seed style run just before it (the machine is shared: ratios within one repetition are the fair ones).
Freshness is the time from a bar's event (its `ts`, stamped by the feed when it sends the frame; for the seed
style and the replay, when its time step is handed to the pipeline) until its features are readable in Redis
(the batch's write has returned), per symbol, p50 and p99. Bars per second count the bars whose batch reached
Redis; a live feed that outruns the writer drops the oldest queued batches (by design), reported as
`dropped_batches`. Each batch is one call of the writer's Lua script (before it, a profile of the replay case put ~85% of
ingest's time in redis-py packing three commands per bar and reading their replies one by one); batches queued
behind a write share the next round trip. Frames of plain bars are decoded by msgspec into columns (a profile of
the WebSocket case put ~60% of ingest's CPU in pydantic's validate_json and the per-bar records after it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import report

SYMBOLS = 400
WARM_STEPS = 240
MEASURED_STEPS = 200
SEED_STEPS = 15  # the seed style is ~100x slower: fewer steps keep its run short
TARGET_SPEEDUP = 20.0
REPEATS = int(os.environ.get("BENCH_INGEST_REPEATS", "3"))  # the machine is shared: medians of interleaved runs


def make_stream(steps: int, seed: int = 5) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    closes = 10 ** rng.uniform(0, 3, SYMBOLS) * np.exp(np.cumsum(rng.normal(0, 0.002, (steps, SYMBOLS)), axis=0))
    volumes = rng.integers(0, 10_000, (steps, SYMBOLS)).astype(np.float64)
    return [f"SYM{i:04d}" for i in range(SYMBOLS)], closes, volumes


class Freshness:
    """Wraps a FeatureWriter: after each write, the age of every written vector (now - its event time)."""

    def __init__(self, writer) -> None:
        self._writer = writer
        self.ages: list[float] = []
        self.bars = 0
        self.done_at = 0.0
        self.first_event = float("inf")  # the earliest event time among the vectors written since `ages` reset

    async def write(self, *batches) -> None:
        await self._writer.write(*batches)
        self.done_at = time.time()
        for batch in batches:
            self.ages.extend((self.done_at - batch.timestamps).tolist())
            if len(batch.timestamps):
                self.first_event = min(self.first_event, float(batch.timestamps.min()))
            self.bars += len(batch.closes)


def summary(system: str, bars: int, seconds: float, ages: list[float]) -> dict:
    milliseconds = [age * 1000 for age in ages]
    return {
        "bench": "ingest",
        "case": f"{SYMBOLS} symbols, windows 60,120,240, steady state",
        "system": system,
        "bars": bars,
        "bars_per_s": bars / seconds,
        "fresh_p50_ms": report.percentile(milliseconds, 50),
        "fresh_p99_ms": report.percentile(milliseconds, 99),
    }


async def seed_style(redis_url: str, stream) -> dict:
    import redis.asyncio as redis

    from tickserve.transformers.features.engine import FeatureConfig
    from tickserve.transformers.features.reference import DirectFeatures
    from tickserve.transformers.store.features import features_key

    symbols, closes, volumes = stream
    direct, client = DirectFeatures(), redis.Redis.from_url(redis_url)
    schema = FeatureConfig().schema_version
    for step in range(WARM_STEPS - 1):
        for column, symbol in enumerate(symbols):
            direct.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
    ages, started = [], time.perf_counter()
    for step in range(WARM_STEPS - 1, WARM_STEPS - 1 + SEED_STEPS):
        arrived = time.time()
        for column, symbol in enumerate(symbols):
            values = direct.update_bar(symbol, float(closes[step, column]), float(volumes[step, column]))
            vector = np.asarray(values, dtype="<f4").tobytes()
            await client.hset(features_key(symbol), mapping={"v": vector, "ts": repr(arrived), "schema": schema})
            ages.append(time.time() - arrived)
    seconds = time.perf_counter() - started
    await client.aclose()
    return summary("seed style (deque + numpy per bar, one Redis write per bar)", SEED_STEPS * SYMBOLS, seconds, ages)


def write_csv(path: Path, stream, steps: range) -> None:
    symbols, closes, volumes = stream
    with path.open("w") as out:
        out.write("symbol,ts,open,high,low,close,volume\n")
        for step in steps:
            for column, symbol in enumerate(symbols):
                close, volume = float(closes[step, column]), float(volumes[step, column])
                out.write(f"{symbol},{1_700_000_000 + step},{close!r},{close!r},{close!r},{close!r},{volume!r}\n")


def pipeline(redis_url: str, wait_for_writer: bool):
    from tickserve.settings import RedisSettings
    from tickserve.transformers.features.engine import FeatureEngine
    from tickserve.transformers.ingest.pipeline import Ingest
    from tickserve.transformers.store.features import FeatureWriter
    from tickserve.transformers.store.redis import connect

    client = connect(RedisSettings(redis_url=redis_url, redis_timeout_seconds=5.0))
    writer = Freshness(FeatureWriter(client, 86400.0))
    return Ingest(FeatureEngine(), writer, queue_size=64, wait_for_writer=wait_for_writer), writer, client


async def replay(redis_url: str, stream, workdir: Path) -> dict:
    from tickserve.transformers.ingest.sources import replay_source

    warm, measured = workdir / "warm.csv", workdir / "measured.csv"
    write_csv(warm, stream, range(WARM_STEPS - 1))
    write_csv(measured, stream, range(WARM_STEPS - 1, WARM_STEPS - 1 + MEASURED_STEPS))
    ingest, writer, client = pipeline(redis_url, wait_for_writer=True)
    await ingest.run(replay_source(warm, 0))
    writer.bars = 0
    started = time.perf_counter()
    await ingest.run(replay_source(measured, 0))
    seconds = time.perf_counter() - started
    await client.aclose()
    return summary("tickserve ingest, replay CSV at full speed", writer.bars, seconds, [])


async def websocket(redis_url: str, stream_seed: int, workdir: Path, steps_per_s: float, system: str) -> dict:
    """Ingest from a feed process; bars/s from the first to the last measured write, freshness of those."""
    from tickserve.processes import free_port
    from tickserve.transformers.ingest.sources import websocket_source

    port = free_port()
    (workdir / "go").unlink(missing_ok=True)
    feed = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--feed", str(port), str(stream_seed), str(steps_per_s)],
        cwd=workdir,
    )
    ingest, writer, client = pipeline(redis_url, wait_for_writer=False)
    total = (WARM_STEPS - 1 + MEASURED_STEPS) * SYMBOLS
    try:
        await asyncio.sleep(1.0)  # the feed process starts listening
        task = asyncio.create_task(ingest.run(websocket_source(f"ws://127.0.0.1:{port}")))
        while ingest.report.bars < (WARM_STEPS - 1) * SYMBOLS or time.time() - writer.done_at < 0.5:
            await asyncio.sleep(0.05)  # until the warm-up is applied and the writer has been idle for 0.5 s
        writer.ages, writer.first_event, first_bars = [], float("inf"), writer.bars
        dropped = ingest.report.dropped
        (workdir / "go").touch()
        while ingest.report.bars < total:
            await asyncio.sleep(0.005)
            if task.done():
                await task
        await asyncio.sleep(0.2)  # the last queued write
        task.cancel()
        seconds = writer.done_at - writer.first_event
        row = summary(system, writer.bars - first_bars, seconds, writer.ages)
        return row | {"dropped_batches": ingest.report.dropped - dropped}
    finally:
        feed.terminate()
        feed.wait(10)
        await client.aclose()


TS_MARK = "@TS@"


def encode_frames(seed: int) -> list[list[str]]:
    """Every time step's frame, JSON-encoded ahead of time and split where its send time goes."""
    symbols, closes, volumes = make_stream(WARM_STEPS - 1 + MEASURED_STEPS, seed)
    frames = []
    for step in range(len(closes)):
        bars = (
            f'{{"symbol":"{symbol}","ts":@TS@,"close":{float(closes[step, i])!r},"volume":{float(volumes[step, i])!r}}}'
            for i, symbol in enumerate(symbols)
        )
        frames.append(f"[{','.join(bars)}]".split(TS_MARK))
    return frames


def _feed_main(port: int, seed: int, steps_per_s: float) -> int:
    """The feed process: on connection, one frame per time step (warm-up steps at once), ts = send time.

    Frames are encoded before the first connection and only the send time is filled in when one goes out: an
    exchange's feed is not a Python process encoding JSON, and the benchmark measures ingest, not this feed."""
    import websockets

    frames = encode_frames(seed)
    go = Path("go")

    async def serve(connection) -> None:
        last = 0.0
        begun = 0.0
        for step, parts in enumerate(frames):
            if step == WARM_STEPS - 1:
                while not go.exists():  # the bench says when ingest has worked off the warm-up
                    await asyncio.sleep(0.05)
                begun = time.time()
            if step >= WARM_STEPS - 1 and steps_per_s > 0:
                await asyncio.sleep(max(0.0, begun + (step - WARM_STEPS + 1) / steps_per_s - time.time()))
            now = last = max(time.time(), last + 1e-6)
            await connection.send(repr(now).join(parts))
        await connection.wait_closed()

    async def main() -> None:
        async with websockets.serve(serve, "127.0.0.1", port, max_size=None):
            await asyncio.Future()

    asyncio.run(main())
    return 0


def _median_run(runs: list[dict]) -> dict:
    """The run with the median bars/s (its freshness and drops with it), listing every run's bars/s."""
    middle = sorted(runs, key=lambda row: row["bars_per_s"])[len(runs) // 2]
    return middle | {"runs_bars_per_s": [round(row["bars_per_s"]) for row in runs]}


def run(out_dir: Path) -> list[dict]:
    import redis

    from tickserve import launch

    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    stream = make_stream(WARM_STEPS - 1 + MEASURED_STEPS)
    with launch.RedisServer(shutil.which("redis-server") or "redis-server", cwd=workdir) as redis_server:
        url = redis_server.url
        peers = {
            "seed": lambda: seed_style(url, stream),
            "replay": lambda: replay(url, stream, workdir),
            "websocket": lambda: websocket(url, 5, workdir, 0, "tickserve ingest, WebSocket feed as fast as it sends"),
        }
        runs: dict[str, list[dict]] = {name: [] for name in peers}
        for _ in range(REPEATS):  # interleaved: a busy moment of the shared machine hits every peer alike
            for name, measure in peers.items():
                redis.Redis.from_url(url).flushall()  # every run starts from the same empty store
                runs[name].append(asyncio.run(measure()))
        rows = [_median_run(runs[name]) for name in peers]
        paced = rows[2]["bars_per_s"] / SYMBOLS / 2
        redis.Redis.from_url(url).flushall()
        rows.append(
            asyncio.run(websocket(url, 5, workdir, paced, f"tickserve ingest, WebSocket feed at {paced:.0f} steps/s"))
        )
    seed = rows[0]["bars_per_s"]
    for row in rows:
        row["speedup"] = row["bars_per_s"] / seed
    for name, row in zip(("replay", "websocket"), rows[1:3], strict=True):
        row["speedup_per_repeat"] = [
            round(run["bars_per_s"] / base["bars_per_s"], 1) for run, base in zip(runs[name], runs["seed"], strict=True)
        ]
    notes = {
        "target": f"ingest >= {TARGET_SPEEDUP:.0f}x the seed style (bars/s)",
        "met": all(row["speedup"] >= TARGET_SPEEDUP for row in rows[1:3]),
        "freshness": "bar event time (feed send time) to features readable in Redis (the batch write returned)",
        "repeats": f"{REPEATS} interleaved runs per peer; each row is the run with the median bars/s",
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
    }
    report.write(out_dir, "ingest", rows, notes)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--feed", nargs=3, metavar=("PORT", "SEED", "STEPS_PER_S"), required=True)
    options = parser.parse_args()
    sys.exit(_feed_main(int(options.feed[0]), int(options.feed[1]), float(options.feed[2])))
