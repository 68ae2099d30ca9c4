"""Outages of the transformer's dependencies, with real processes stopped and restarted: Redis and the
predictor going away give a 503 naming the cause, the transformer stays up, and it recovers on its own when
the dependency is back (over both predictor protocols)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from serving_stack import NAMES, ask, columns, predictor, save_signal_model, transformer, write_features
from tiers import require_binary

from tickserve.launch import RedisServer, Server
from tickserve.processes import free_port

pytestmark = pytest.mark.integration
HORIZONS = {"1h": "signal-1h"}


class Restartable:
    """A server that a test may stop and start again on the same port(s)."""

    def __init__(self, start: Callable[[], object], stop: Callable[[], object]) -> None:
        self._start, self._stop = start, stop

    def stop(self) -> None:
        self._stop()

    def start(self) -> None:
        self._start()


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Restartable]]:
    binary = require_binary("redis-server")
    port = free_port()
    workdir = tmp_path_factory.mktemp("outage-redis")
    current: list[RedisServer] = []

    def start() -> None:
        current.append(RedisServer(binary, port=port, cwd=workdir).__enter__())

    def stop() -> None:
        current.pop().stop()

    start()
    yield current[0].url, Restartable(start, stop)
    while current:
        stop()


@pytest.fixture(scope="module")
def own_predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Restartable]]:
    model_dir = tmp_path_factory.mktemp("outage-model") / "1h"
    save_signal_model(model_dir, version="5", seed=5)
    http_port, grpc_port = free_port(), free_port()
    contexts: list = []
    endpoints: list[Server] = []

    def start() -> None:
        context = predictor(model_dir, "signal-1h", http_port, grpc_port)
        endpoints.append(context.__enter__())
        contexts.append(context)

    def stop() -> None:
        contexts.pop().__exit__(None, None, None)

    start()
    yield endpoints[0], Restartable(start, stop)
    while contexts:
        stop()


@pytest.fixture(scope="module", params=["v2", "grpc-v2"])
def front(request, own_redis, own_predictor) -> Iterator[Server]:
    redis_url, _ = own_redis
    endpoint, _ = own_predictor
    with transformer(redis_url, {"signal-1h": endpoint}, HORIZONS, protocol=request.param) as running:
        yield running


def eventually_ok(front: Server, symbols: list[str], seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while True:
        response = ask(front, symbols)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


async def test_redis_outage_is_a_503_naming_redis_then_recovers(front, own_redis) -> None:
    redis_url, server = own_redis
    await write_features(redis_url, {"R1": np.zeros(len(NAMES))})
    assert ask(front, ["R1"]).status_code == 200

    server.stop()
    try:
        down = ask(front, ["R1"])
        assert down.status_code == 503
        assert down.json()["cause"] == "redis"
        assert "Redis" in down.json()["error"]
        assert front.alive()
    finally:
        server.start()

    await write_features(redis_url, {"R1": np.ones(len(NAMES))})  # no persistence: ingest rewrites
    recovered = eventually_ok(front, ["R1"])
    assert recovered.status_code == 200, recovered.text
    assert columns(recovered)["cached"] == [False]


async def test_predictor_outage_is_a_503_naming_the_predictor_then_recovers(front, own_redis, own_predictor) -> None:
    redis_url, _ = own_redis
    _, server = own_predictor
    rng = np.random.default_rng(3)
    await write_features(redis_url, {"P1": rng.normal(size=len(NAMES)), "P2": rng.normal(size=len(NAMES))})
    assert ask(front, ["P1", "P2"]).status_code == 200

    server.stop()
    try:
        await write_features(redis_url, {"P1": rng.normal(size=len(NAMES))})  # new bar: needs the predictor
        down = ask(front, ["P1"])
        assert down.status_code == 503
        assert down.json()["cause"] == "predictor"
        assert "predictor" in down.json()["error"]
        cached = ask(front, ["P2"])
        assert columns(cached)["cached"] == [True], "unchanged features are still served from the cache"
        assert front.alive()
    finally:
        server.start()

    recovered = eventually_ok(front, ["P1"])
    assert recovered.status_code == 200, recovered.text
    assert columns(recovered)["cached"] == [False]
