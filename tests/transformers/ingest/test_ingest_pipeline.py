"""`tickserve ingest` as a real process against redis-server: replay writes one transaction (one round trip)
per batch, and the values it writes are the engine's; a WebSocket feed's malformed frames are counted and
skipped; a stalled Redis never stalls the feed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import websockets
from serving_stack import redis_db

from tickserve import launch
from tickserve.launch import Server, metric_sum, tickserve_command
from tickserve.processes import free_port
from tickserve.transformers.features.bars import read_bars
from tickserve.transformers.features.engine import FeatureConfig, FeatureEngine
from tickserve.transformers.ingest.synthetic import SyntheticMarket
from tickserve.transformers.store.features import FEATURE_FIELDS, decode_features, features_key, prices_key

pytestmark = pytest.mark.integration
SYMBOLS = ["AAA", "BBB", "CCC"]


@pytest.fixture
def store_url(redis_url: str) -> str:
    url = redis_db(redis_url, 2)
    redis.Redis.from_url(url).flushdb()
    return url


def write_bar_file(path: Path, timestamps: int) -> Path:
    market = SyntheticMarket(SYMBOLS, seed=3)
    lines = ["symbol,ts,open,high,low,close,volume"]
    for k in range(timestamps):
        for bar in market.bars(1_700_000_000.0 + 60 * k):
            lines.append(f"{bar.symbol},{bar.ts},{bar.open},{bar.high},{bar.low},{bar.close},{bar.volume}")
    path.write_text("\n".join(lines) + "\n")
    return path


def command_calls(client: redis.Redis, command: str) -> int:
    """Successful calls of `command` so far (commands run inside a script count too)."""
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))


def test_replay_writes_one_transaction_per_batch_with_the_engine_values(store_url, tmp_path) -> None:
    timestamps, warmup = 250, FeatureConfig().max_window  # one batch per timestamp
    bars = write_bar_file(tmp_path / "bars.csv", timestamps)
    client = redis.Redis.from_url(store_url)
    scripts, hsets = command_calls(client, "evalsha") + command_calls(client, "eval"), command_calls(client, "hset")

    done = subprocess.run(
        [*tickserve_command("ingest"), "--source", "replay", "--replay_path", str(bars),
         "--redis_url", store_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    ready_batches = timestamps - warmup + 1  # vectors are written once the symbols' windows are full
    batches = command_calls(client, "evalsha") + command_calls(client, "eval") - scripts
    assert batches == timestamps, "one atomic round trip (one script call) per batch"
    assert command_calls(client, "hset") - hsets == ready_batches * len(SYMBOLS)
    assert f"in {timestamps} Redis writes (0 batches dropped" in done.stdout

    engine = FeatureEngine()
    for bar in read_bars(bars):
        engine.update_bar(bar.symbol, bar.close, bar.volume)
    expected = engine.current(engine.symbol_ids(SYMBOLS))
    for row, symbol in enumerate(SYMBOLS):
        stored = decode_features(symbol, client.hmget(features_key(symbol), list(FEATURE_FIELDS)))
        assert stored is not None
        assert stored.ts == 1_700_000_000.0 + 60 * (timestamps - 1)
        assert stored.schema_version == FeatureConfig().schema_version
        np.testing.assert_allclose(stored.vector, expected.values[row].astype(np.float32), rtol=1e-6)
        assert client.zcard(prices_key(symbol)) == timestamps


def test_replay_of_a_bad_file_exits_1_naming_the_line(store_url, tmp_path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,ts,open,high,low,close,volume\nAAA,1,1,1,1,-5,1\n")
    done = subprocess.run(
        [*tickserve_command("ingest"), "--source", "replay", "--replay_path", str(bad),
         "--redis_url", store_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "line 2" in done.stderr and "close" in done.stderr


def bar_frame(symbol: str, ts: float, close: float) -> str:
    return json.dumps({"type": "bar", "symbol": symbol, "ts": ts, "close": close, "volume": 10.0})


MALFORMED = [
    "not json at all",
    json.dumps({"type": "bar", "symbol": "AAA", "ts": 5.0, "volume": 1.0}),  # no close
    json.dumps({"type": "bar", "symbol": "AAA", "ts": 5.0, "close": -1.0, "volume": 1.0}),
    json.dumps([{"symbol": "AAA", "ts": 5.0, "close": 1.0, "volume": 1.0}, {"type": "trade"}]),
    json.dumps({"type": "book", "symbol": "AAA", "ts": 5.0, "bids": ["x"], "asks": []}),
]


@contextlib.asynccontextmanager
async def feed(frames: list[str]):
    """A real local WebSocket feed that sends `frames` to each client, then keeps the connection open."""
    sent = asyncio.Event()

    async def handler(connection) -> None:
        for frame in frames:
            await connection.send(frame)
        sent.set()
        await connection.wait_closed()

    port = free_port()
    async with websockets.serve(handler, "127.0.0.1", port):
        yield f"ws://127.0.0.1:{port}", sent


def ingest_process(store_url: str, url: str, metrics_port: int, *extra: str) -> Server:
    args = ["--source", "websocket", "--websocket_url", url, "--windows", "[3, 5]", *extra]
    return launch.ingest(store_url, args=args, metrics_port=metrics_port)


async def wait_for_metric(port: int, name: str, at_least: float, seconds: float = 20.0) -> str:
    async with httpx.AsyncClient() as http:
        for _ in range(int(seconds / 0.1)):
            text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            if metric_sum(text, name) >= at_least:
                return text
            await asyncio.sleep(0.1)
    raise AssertionError(f"{name} did not reach {at_least}:\n{text}")


async def test_malformed_websocket_frames_are_counted_and_skipped(store_url) -> None:
    good_before = [bar_frame("AAA", 1.0 + k, 100.0 + k) for k in range(5)]
    good_after = [bar_frame("AAA", 6.0 + k, 110.0 + k) for k in range(3)]
    frames = good_before + MALFORMED + good_after
    metrics_port = free_port()
    async with feed(frames) as (url, sent):
        process = ingest_process(store_url, url, metrics_port)
        await asyncio.to_thread(process.start)
        try:
            await asyncio.wait_for(sent.wait(), 20)
            text = await wait_for_metric(
                metrics_port, "tickserve_ingest_writes_total", len(good_before) + len(good_after)
            )
            assert metric_sum(text, "tickserve_ingest_malformed_frames_total") == len(MALFORMED)
            assert metric_sum(text, "tickserve_ingest_frames_total") == len(frames)
            assert metric_sum(text, "tickserve_ingest_bars_total") == len(good_before) + len(good_after)
            assert process.alive()
            assert "skipped malformed frame" in process.log_tail(80)
        finally:
            await asyncio.to_thread(process.stop)
    client = redis.Redis.from_url(store_url)
    stored = decode_features("AAA", client.hmget(features_key("AAA"), list(FEATURE_FIELDS)))
    assert stored is not None and stored.ts == 8.0, "the bars after the malformed frames were applied"
    assert client.zcard(prices_key("AAA")) == len(good_before) + len(good_after)


async def test_a_stalled_redis_does_not_stall_the_feed(store_url) -> None:
    frames = [bar_frame("AAA", 1.0 + k, 100.0 + k % 7) for k in range(400)]
    metrics_port = free_port()
    admin = redis.Redis.from_url(store_url)
    async with feed(frames) as (url, _):
        process = ingest_process(store_url, url, metrics_port, "--queue_size", "4")
        admin.client_pause(30_000, all=False)  # writes block until the unpause below; the feed must keep flowing
        await asyncio.to_thread(process.start)
        try:
            text = await wait_for_metric(metrics_port, "tickserve_ingest_bars_total", len(frames), seconds=15)
            assert metric_sum(text, "tickserve_ingest_writes_total") <= 1, "Redis was paused meanwhile"
            text = await wait_for_metric(metrics_port, "tickserve_ingest_dropped_batches_total", 1)
            admin.client_unpause()
            text = await wait_for_metric(metrics_port, "tickserve_ingest_writes_total", 2, seconds=10)
        finally:
            admin.client_unpause()
            await asyncio.to_thread(process.stop)
    stored = decode_features("AAA", admin.hmget(features_key("AAA"), list(FEATURE_FIELDS)))
    assert stored is not None and stored.ts == 400.0, "the newest bar reached Redis after the stall"
