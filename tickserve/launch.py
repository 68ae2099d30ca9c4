"""Start tickserve's own servers as local processes: the one launcher behind the tests, benchmarks and demo.

Each function builds a `Server` (not yet started) for one `tickserve <command>`, on free loopback ports unless
told otherwise; `with server:` (or `server.start()`) starts it and waits until it answers. A `Server` knows its
addresses and reads its own Prometheus metrics, so callers never build command lines or parse /metrics.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tickserve.processes import ServerProcess, free_port
from tickserve.settings import Track

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # a KServe server importing torch on a busy 2-core machine


def metric_samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(sample name, labels, value) of every sample in a Prometheus text exposition."""
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(
        value
        for sample, sample_labels, value in metric_samples(text)
        if sample == name and all(sample_labels.get(key) == wanted for key, wanted in labels.items())
    )


class Server(ServerProcess):
    """A tickserve server process with its ports: `http` / `grpc` are "host:port" (what tritonclient takes);
    `model_name` is the v2 model it serves, if any."""

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        http_port: int,
        model_name: str | None = None,
        grpc_port: int | None = None,
        ready_path: str,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = START_TIMEOUT_S,
    ) -> None:
        super().__init__(
            name,
            command,
            ready_url=f"http://{HOST}:{http_port}{ready_path}",
            tcp_port=grpc_port,
            cwd=cwd,
            env=dict(env or {}),
            timeout=timeout,
        )
        self.http_port, self.grpc_port, self.model_name = http_port, grpc_port, model_name

    @property
    def http(self) -> str:
        return f"{HOST}:{self.http_port}"

    @property
    def grpc(self) -> str:
        if self.grpc_port is None:
            raise ValueError(f"{self.name} serves no gRPC")
        return f"{HOST}:{self.grpc_port}"

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    def metrics_text(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` on this server's /metrics whose labels include `labels`."""
        return metric_sum(self.metrics_text(), name, **labels)

    def __enter__(self) -> Server:
        self.start()
        return self


def tickserve_command(command: str, *args: str) -> list[str]:
    """`tickserve <command> args...` with this interpreter (no dependency on the console script being on PATH)."""
    return [sys.executable, "-m", "tickserve", command, *args]


def predictor(
    name: str,
    model_dir: Path | str,
    *,
    track: Track | None = None,
    model_version: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
) -> Server:
    """`tickserve predictor` serving `model_dir` as model `name` over REST and gRPC."""
    http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
    options = ["--model_name", name, "--model_dir", str(model_dir)]
    options += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    if track is not None:
        options += ["--track", track]
    if model_version is not None:
        options += ["--model_version", model_version]
    return Server(
        f"predictor-{name}",
        tickserve_command("predictor", *options, *args),
        http_port=http_port,
        grpc_port=grpc_port,
        model_name=name,
        ready_path=f"/v2/models/{name}/ready",
        cwd=cwd,
        env=env,
    )


def transformer(
    redis_url: str,
    predictor_hosts: Mapping[str, str],
    horizons: Mapping[str, str],
    *,
    protocol: str = "v2",
    track: Track | None = None,
    name: str = "transformer",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
) -> Server:
    """`tickserve transformer` (v2 model "signal") for `horizons` (label -> predictor model name), calling each
    predictor at `predictor_hosts[model]` ("host:port" of its REST or, for protocol grpc-v2, gRPC endpoint)."""
    http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
    options = ["--model_name", "signal", "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    options += ["--predictor_protocol", protocol, "--predictor_hosts", json.dumps(dict(predictor_hosts))]
    options += ["--redis_url", redis_url, "--horizons", json.dumps(dict(horizons))]
    if track is not None:
        options += ["--track", track]
    return Server(
        name,
        tickserve_command("transformer", *options, *args),
        http_port=http_port,
        grpc_port=grpc_port,
        model_name="signal",
        ready_path="/v2/models/signal/ready",
        cwd=cwd,
        env=env,
    )


def ingest(
    redis_url: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    metrics_port: int | None = None,
) -> Server:
    """`tickserve ingest` into `redis_url` (source and its options in `args`), ready once /metrics answers."""
    return _redis_worker("ingest", redis_url, args, env, cwd, metrics_port)


def monitor(
    redis_url: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    metrics_port: int | None = None,
) -> Server:
    """`tickserve monitor` on `redis_url`'s predictions stream, ready once /metrics answers."""
    return _redis_worker("monitor", redis_url, args, env, cwd, metrics_port)


def _redis_worker(
    command: str,
    redis_url: str,
    args: Sequence[str],
    env: Mapping[str, str] | None,
    cwd: str | Path | None,
    metrics_port: int | None,
) -> Server:
    """A server without a v2 endpoint, working on Redis, whose only HTTP face is its Prometheus /metrics."""
    metrics_port = metrics_port or free_port()
    options = ["--redis_url", redis_url, "--metrics_port", str(metrics_port), *args]
    return Server(
        command, tickserve_command(command, *options), http_port=metrics_port, ready_path="/metrics", cwd=cwd, env=env
    )


class RedisServer(ServerProcess):
    """A throw-away redis-server on loopback, without persistence (tests, benchmarks, the demo)."""

    def __init__(self, binary: str = "redis-server", *, port: int | None = None, cwd: str | Path | None = None):
        self.port = port or free_port()
        command = [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        super().__init__("redis-server", command, tcp_port=self.port, cwd=cwd)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def __enter__(self) -> RedisServer:
        self.start()
        return self
