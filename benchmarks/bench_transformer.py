"""Feature transformer end to end (Redis fetch, predictor call, cache, stream) at a fixed arrival rate.

Real processes on loopback: redis-server, a tickserve predictor serving a LightGBM model saved with MLflow,
and the transformer (once with a gRPC and once with a REST connection to the predictor). A second process
(this file run with `--loadgen`) sends requests open-loop at RATE per second for DURATION seconds and
measures each latency from its scheduled send time, so a stalled server cannot hide its queueing.

Cases, measured side by side in one run:
- cache hit: the same symbols again and again with unchanged features (Redis only, no predictor call);
- cache miss: every request names a symbol not asked before (Redis read, predictor call, cache + stream
  write);
- predictor direct: the same rate against the predictor itself with one feature row, the floor under a miss.
Target: p99 under 5 ms on loopback at 1,000 requests/s.

Load shedding (cache misses, REST to the predictor), measured after those: the sustainable rate is the miss
throughput of a closed loop of SHED_CONCURRENCY clients; "unloaded" is an open loop at a quarter of it; then an
open loop at SHED_OVERLOAD x the sustainable rate, once against a transformer without a bound and once with
`max_requests_held` = sustainable rate x the unloaded p50 (Little's law: the requests it holds when it serves
that rate at that latency), at least 2. Admitted (200) and refused (503 overloaded) latencies are reported
apart, with the transformer's RSS before and after the overload. Targets: admitted p99 within 2x the unloaded p99,
refusals < 1 ms. Refusal times come from three places, side by side: the Python open loop (from each request's
scheduled send time, so they include the generator's own lag on a saturated machine); wrk at about the same rate
(`refusals.lua`: C, paced connections, each answer timed from its write, 200s and 503s apart); and the
transformer itself (`tickserve_transformer_refusal_seconds`, from the app receiving the request to the 503 handed
to the connection; the Python row's window includes its warm-up second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import report

# Overridable for a quick smoke run on a busy machine; quote figures only from the defaults.
RATE = float(os.environ.get("BENCH_TRANSFORMER_RATE", "1000"))
DURATION = float(os.environ.get("BENCH_TRANSFORMER_SECONDS", "5"))
WARMUP = 1.0
REQUEST_TIMEOUT = 2.0
HOT_SYMBOLS = 20
SHED_CONCURRENCY = 16
SHED_OVERLOAD = 3.0
SHED_SECONDS = float(os.environ.get("BENCH_SHED_SECONDS", "4"))
SHED_SYMBOLS = 100_000  # fresh symbols for the shedding runs: every request a cache miss


async def _seed_features(redis_url: str, symbols: list[str]) -> None:
    from tickserve.settings import RedisSettings
    from tickserve.transformers.features.engine import FeatureConfig
    from tickserve.transformers.store.features import FeatureWriter, HotFeatures
    from tickserve.transformers.store.redis import connect

    config = FeatureConfig()
    client = connect(RedisSettings(redis_url=redis_url, redis_timeout_seconds=2.0))
    vectors = np.random.default_rng(1).normal(size=(len(symbols), len(config.names)))
    await FeatureWriter(client, 86400).write(
        HotFeatures(config.schema_version, config.names, symbols, vectors, np.full(len(symbols), time.time()))
    )
    await client.aclose()


def _symbols_body(symbol: str) -> bytes:
    return json.dumps({"inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [1], "data": [symbol]}]}).encode()


def _features_body(features: int) -> bytes:
    row = np.random.default_rng(2).normal(size=features).tolist()
    return json.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, features], "data": row}]}
    ).encode()


class _Connections:
    """Keep-alive HTTP/1.1 connections for the load generator: a raw client costs the measurement far less
    CPU than a full-featured one, which matters when client and servers share two cores."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, request: bytes) -> int:
        reader, writer = self._idle.pop() if self._idle else await asyncio.open_connection(self._host, self._port)
        writer.write(request)
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self._idle.append((reader, writer))
        return status


def _http_request(url: str, body: bytes) -> bytes:
    parsed = httpx.URL(url)
    head = (
        f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _open_loop(url: str, bodies: list[bytes], rate: float, duration: float, warmup: float) -> dict:
    """Send bodies[i % len] at t0 + i / rate; latency from the scheduled time; warm-up requests not kept.
    Answers 200 go to `latencies`, 503 (refusals) to `refused`, anything else (or a timeout) to `errors`."""
    parsed = httpx.URL(url)
    connections = _Connections(parsed.host, parsed.port or 80)
    requests = [_http_request(url, body) for body in bodies]
    latencies: list[float] = []
    refused: list[float] = []
    errors = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            status = await asyncio.wait_for(connections.post(requests[i % len(requests)]), REQUEST_TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            status = 0
        if scheduled - start >= warmup:
            if status == 200:
                latencies.append(time.perf_counter() - scheduled)
            elif status == 503:
                refused.append(time.perf_counter() - scheduled)
            else:
                errors += 1

    tasks = []
    start = time.perf_counter()
    total = int((warmup + duration) * rate)
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {"latencies": latencies, "refused": refused, "errors": errors, "sent": total, "elapsed": elapsed}


async def _closed_loop(url: str, bodies: list[bytes], concurrency: int, duration: float) -> dict:
    """`concurrency` clients each sending the next body as soon as the last is answered: the throughput."""
    parsed = httpx.URL(url)
    requests = [_http_request(url, body) for body in bodies]
    connections = _Connections(parsed.host, parsed.port or 80)
    statuses: dict[int, int] = {}
    sent = 0
    stop = time.perf_counter() + duration

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < stop:
            request = requests[sent % len(requests)]
            sent += 1
            status = await connections.post(request)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"ok": statuses.get(200, 0), "statuses": statuses, "sent": sent, "elapsed": time.perf_counter() - started}


def _loadgen_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loadgen", action="store_true")
    parser.add_argument("--url", required=True)
    parser.add_argument("--bodies", type=Path, required=True, help="JSON list of request bodies")
    parser.add_argument("--rate", type=float, default=RATE, help="open loop: requests per second")
    parser.add_argument("--seconds", type=float, default=DURATION, help="measured seconds (after the warm-up)")
    parser.add_argument("--closed", type=int, default=0, help="closed loop of this many clients instead")
    parser.add_argument("--result", type=Path, required=True, help="where the JSON result goes")
    args = parser.parse_args(argv)
    bodies = [body.encode() for body in json.loads(args.bodies.read_text())]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.closed:
        result = asyncio.run(_closed_loop(args.url, bodies, args.closed, args.seconds))
    else:
        result = asyncio.run(_open_loop(args.url, bodies, args.rate, args.seconds, WARMUP))
    args.result.write_text(json.dumps(result))
    return 0


def _loadgen(url: str, bodies: list[bytes], workdir: Path, *options: str) -> dict:
    """Run the load generator as a second process; its JSON result."""
    path = workdir / f"bodies-{time.monotonic_ns()}.json"
    path.write_text(json.dumps([body.decode() for body in bodies]))
    result = path.with_suffix(".result.json")
    command = [sys.executable, str(Path(__file__).resolve()), "--loadgen", "--url", url, "--bodies", str(path)]
    command += ["--result", str(result)]
    done = subprocess.run([*command, *options], cwd=workdir, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    return json.loads(result.read_text())


def _measure(url: str, bodies: list[bytes], workdir: Path, rate: float = RATE, seconds: float = DURATION) -> dict:
    """An open loop at `rate`; latencies of answered (200) and refused (503) requests in milliseconds."""
    result = _loadgen(url, bodies, workdir, "--rate", str(rate), "--seconds", str(seconds))
    milliseconds = [latency * 1000 for latency in result["latencies"]]
    refused = [latency * 1000 for latency in result["refused"]]
    return {
        "rate_rps": rate,
        "requests": len(milliseconds),
        "errors": result["errors"],
        "p50_ms": report.percentile(milliseconds, 50),
        "p99_ms": report.percentile(milliseconds, 99),
        "max_ms": max(milliseconds, default=float("nan")),
        **({"refused": len(refused)} if refused else {}),
        **({"refused_p50_ms": report.percentile(refused, 50)} if refused else {}),
        **({"refused_p99_ms": report.percentile(refused, 99)} if refused else {}),
    }


REFUSALS_SCRIPT = Path(__file__).resolve().parent / "refusals.lua"
WRK_CONNECTIONS = 32
WRK_PREFIX = "WRK"
WRK_STRIDE = 5_000  # symbols per wrk connection, seeded: far more than one connection sends in SHED_SECONDS


def _wrk_overload(url: str, rate: float, seconds: float, workdir: Path) -> dict:
    """wrk (C, one thread per connection) at about `rate` cache misses/s: each connection pauses after every
    answer, and refusals.lua times each answer from its write to its last byte, 200s and 503s apart. Unlike the
    Python generator, nothing here lags behind on a busy machine: a refusal's figure is the server's and the
    network's."""
    from loadgen import wrk_binary

    template = workdir / "wrk-body-template.json"
    template.write_bytes(_symbols_body(f"{WRK_PREFIX}@N@"))
    pause_ms = max(0, round(WRK_CONNECTIONS / rate * 1000 - 1))  # ~1 ms: a refusal's round trip and wrk's own
    command = [
        wrk_binary(), "--threads", str(WRK_CONNECTIONS), "--connections", str(WRK_CONNECTIONS),
        "--duration", f"{max(1, round(seconds))}s", "--timeout", "5s", "--script", str(REFUSALS_SCRIPT), url,
        "--", str(template), str(pause_ms), "0", str(WRK_STRIDE),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("REFUSALS_RESULT "):
            raw = json.loads(line.removeprefix("REFUSALS_RESULT "))
            return {
                "rate_rps": raw["requests"] / (raw["duration_us"] / 1e6),
                "requests": raw["admitted"],
                "errors": raw["others"] + raw["socket_errors"],
                "p50_ms": raw["admitted_p50_us"] / 1000,
                "p99_ms": raw["admitted_p99_us"] / 1000,
                "refused": raw["refused"],
                "refused_p50_ms": raw["refused_p50_us"] / 1000,
                "refused_p99_ms": raw["refused_p99_us"] / 1000,
            }
    raise RuntimeError(f"wrk printed no REFUSALS_RESULT line ({done.returncode}): {done.stderr or done.stdout}")


def _refusal_buckets(server: Any) -> dict[float, float]:
    """Cumulative counts of the transformer's `tickserve_transformer_refusal_seconds` histogram, by bound."""
    from tickserve.launch import metric_samples

    return {
        float(labels["le"]): value
        for name, labels, value in metric_samples(server.metrics_text())
        if name == "tickserve_transformer_refusal_seconds_bucket"
    }


def _server_side(before: dict[float, float], after: dict[float, float]) -> dict:
    """p50 / p99 (linear within a bucket) and the share under 1 ms of the refusals timed between two readings."""
    bounds = sorted(after)
    counts = [after[bound] - before.get(bound, 0.0) for bound in bounds]
    total = counts[-1] if counts else 0.0
    if not total:
        return {}

    def quantile(q: float) -> float:
        lower, below = 0.0, 0.0
        for bound, count in zip(bounds, counts, strict=True):
            if count >= q * total:
                if bound == float("inf"):
                    return lower * 1000  # beyond the last finite bound: report that bound
                return (lower + (bound - lower) * (q * total - below) / max(count - below, 1e-12)) * 1000
            lower, below = bound, count
        return float("nan")

    return {
        "server_refused": int(total),
        "server_refused_p50_ms": quantile(0.5),
        "server_refused_p99_ms": quantile(0.99),
        "server_refused_under_1ms": counts[bounds.index(0.001)] / total,
    }


def _rss_mib(server: Any) -> float:
    """Resident memory of a server process (Linux /proc)."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _drain(url: str, body: bytes, seconds: float = 60.0) -> None:
    """Wait until the server answers a probe within 50 ms again, i.e. has worked off any backlog."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=seconds)
        if time.perf_counter() - started < 0.05:
            return
        time.sleep(0.5)


def run(out_dir: Path) -> list[dict]:
    from tickserve import launch, zoo
    from tickserve.transformers.features.engine import FeatureConfig

    load_average = os.getloadavg()[0]  # two shared cores: a busy machine explains slow figures
    workdir = Path(tempfile.mkdtemp(prefix="bench-transformer-"))
    model_dir = workdir / "signal-1h"
    names = FeatureConfig().names
    zoo.signal_model(model_dir, names, seed=0, version="1", rows=2000, rounds=100, num_leaves=31, shuffle=False)
    miss_symbols = [f"MISS{i}" for i in range(int(RATE * (DURATION + WARMUP)) * 2 + 10)]
    shed_symbols = [f"SHED{i}" for i in range(SHED_SYMBOLS)]
    hot_symbols = [f"HOT{i}" for i in range(HOT_SYMBOLS)]
    wrk_symbols = [f"{WRK_PREFIX}{i}" for i in range(WRK_CONNECTIONS * WRK_STRIDE)]
    rows: list[dict] = []
    redis_server = launch.RedisServer(shutil.which("redis-server") or "redis-server", cwd=workdir)
    predictor = launch.predictor("signal-1h", model_dir, cwd=workdir)
    redis_url = redis_server.url

    def transformer(
        protocol: str, predictor_host: str, extra: Sequence[str] = (), name: str = ""
    ) -> tuple[launch.Server, str]:
        process = launch.transformer(
            redis_url,
            {"signal-1h": predictor_host},
            {"1h": "signal-1h"},
            protocol=protocol,
            name=f"transformer-{protocol}{name}",
            args=["--max_feature_age_seconds", "3600", *extra],
            cwd=workdir,
        )
        return process, f"{process.url}/v2/models/signal/infer"

    with redis_server, predictor:
        asyncio.run(_seed_features(redis_url, hot_symbols + miss_symbols + shed_symbols + wrk_symbols))
        predictor_url = f"{predictor.url}/v2/models/signal-1h/infer"
        features_body = _features_body(len(FeatureConfig().names))
        direct = _measure(predictor_url, [features_body], workdir)
        _drain(predictor_url, features_body)
        rows.append({"bench": "transformer", "case": "predictor direct", "system": "tickserve predictor", **direct})
        for protocol, host in (("grpc-v2", predictor.grpc), ("v2", predictor.http)):
            process, url = transformer(protocol, host)
            with process:
                # Hits first: a saturated miss case would leave a backlog that the hit case then pays for.
                hit_bodies = [_symbols_body(symbol) for symbol in hot_symbols]
                for body in hit_bodies:  # fill the cache
                    httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
                hit = _measure(url, hit_bodies, workdir)
                rows.append({"bench": "transformer", "case": "cache hit", "system": f"transformer ({protocol})", **hit})
                _drain(url, hit_bodies[0])
                half = len(miss_symbols) // 2
                batch = miss_symbols[:half] if protocol == "grpc-v2" else miss_symbols[half:]
                miss = _measure(url, [_symbols_body(symbol) for symbol in batch], workdir)
                rows.append(
                    {"bench": "transformer", "case": "cache miss", "system": f"transformer ({protocol})", **miss}
                )
                _drain(url, hit_bodies[0])  # a saturated case must not leave its backlog to the next process
        rows += _shedding(partial(transformer, "v2", predictor.http), shed_symbols, workdir)
    floor = direct["p50_ms"]
    for row in rows:
        row["p50_vs_predictor"] = row["p50_ms"] / floor if floor else float("nan")
    report.write(
        out_dir,
        "transformer",
        rows,
        notes={
            "rate_rps": RATE,
            "duration_s": DURATION,
            "warmup_s": WARMUP,
            "target": "p99 < 5 ms on loopback",
            "load": "open-loop from a second process; latency from the scheduled send time",
            "load_average_at_start": load_average,
        },
    )
    return rows


def _shedding(transformer: Callable[..., tuple[Any, str]], symbols: list[str], workdir: Path) -> list[dict]:
    """The load-shedding cases (see the module docstring); every request names a symbol not asked before."""
    fresh = iter(symbols)

    def bodies(count: int) -> list[bytes]:
        return [_symbols_body(next(fresh)) for _ in range(count)]

    rows = []
    process, url = transformer(extra=["--max_requests_held", "1000000"], name="-unbounded")
    with process:
        httpx.post(url, content=bodies(1)[0], headers={"content-type": "application/json"}, timeout=60)
        closed = _loadgen(url, bodies(10_000), workdir, "--closed", str(SHED_CONCURRENCY), "--seconds", "3")
        sustainable = closed["ok"] / closed["elapsed"]
        rate = sustainable / 4
        unloaded = _measure(url, bodies(int(rate * (SHED_SECONDS + WARMUP)) + 10), workdir, rate, SHED_SECONDS)
        rows.append({"bench": "transformer", "case": "unloaded (1/4 sustainable)", "system": "no bound", **unloaded})
        rate = SHED_OVERLOAD * sustainable
        count = int(rate * (SHED_SECONDS + WARMUP)) + 10
        rss = _rss_mib(process)
        flooded = _measure(url, bodies(count), workdir, rate, SHED_SECONDS)
        case = f"overload ({SHED_OVERLOAD:g}x sustainable)"
        rows.append(
            {
                "bench": "transformer",
                "case": case,
                "system": "no bound",
                **flooded,
                "rss_before_mib": rss,
                "rss_after_mib": _rss_mib(process),
            }
        )
    bound = max(2, round(sustainable * unloaded["p50_ms"] / 1000))
    process, url = transformer(extra=["--max_requests_held", str(bound)], name="-bounded")
    with process:
        httpx.post(url, content=bodies(1)[0], headers={"content-type": "application/json"}, timeout=60)
        rss = _rss_mib(process)
        timed = _refusal_buckets(process)
        shed = _measure(url, bodies(count), workdir, rate, SHED_SECONDS)
        system = f"max_requests_held={bound}"
        shed_row = {
            "bench": "transformer",
            "case": case,
            "system": f"{system}, Python open loop",
            **shed,
            **_server_side(timed, timed := _refusal_buckets(process)),
            "rss_before_mib": rss,
            "rss_after_mib": _rss_mib(process),
        }
        rows.append(shed_row)
        _drain(url, bodies(1)[0])
        wrk = _wrk_overload(url, rate, SHED_SECONDS, workdir)
        rows.append(
            {
                "bench": "transformer",
                "case": case,
                "system": f"{system}, wrk ({WRK_CONNECTIONS} paced connections)",
                **wrk,
                **_server_side(timed, _refusal_buckets(process)),
                "rss_after_mib": _rss_mib(process),
            }
        )
    for row in rows:
        row["sustainable_rps"] = sustainable
    shed_row["admitted_p99_vs_unloaded"] = shed_row["p99_ms"] / unloaded["p99_ms"]
    return rows


if __name__ == "__main__":
    sys.exit(_loadgen_main(sys.argv[1:]))
