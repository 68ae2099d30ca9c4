"""Model versions behind one address, with real predictors behind a round-robin relay (a pool Service stand-in):

- a version switch under load: once a client has received an answer of the new version, no request it sends
  afterwards is answered with the old version, cached or not;
- two predictors whose models order their features differently, behind one address: every answer equals what
  the answering model computes from the same features (columns travel by name, so orders cannot mix).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import redis
from serving_stack import NAMES, infer_body, predictor, redis_db, write_features
from tcp_relay import TcpRelay

from tickserve import launch, zoo
from tickserve.launch import Server

pytestmark = pytest.mark.integration
SYMBOLS = [f"V{i}" for i in range(12)]
TICKING = SYMBOLS[:2]  # their features change during the load, so there are misses that reach the predictor


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server, list[str], list[str]]]:
    """signal-1h version 1 and version 2 (other seeds: other models, other feature orders), both on track stable."""
    root = tmp_path_factory.mktemp("versions")
    first_order = zoo.signal_model(root / "v1", NAMES, seed=1, version="1")
    second_order = zoo.signal_model(root / "v2", NAMES, seed=2, version="2")
    assert first_order != second_order
    with predictor(root / "v1", "signal-1h") as first, predictor(root / "v2", "signal-1h") as second:
        yield first, second, first_order, second_order


def front_of(store_url: str, relay: TcpRelay) -> Server:
    return launch.transformer(store_url, {"signal-1h": relay.address}, {"1h": "signal-1h"}, protocol="v2")


def answered(response: httpx.Response) -> dict[str, list]:
    assert response.status_code == 200, response.text
    return {output["name"]: output["data"] for output in response.json()["outputs"]}


async def test_after_the_first_answer_of_a_new_version_no_old_version_is_served(redis_url, two_versions) -> None:
    first, second, _, _ = two_versions
    store_url = redis_db(redis_url, 10)
    redis.Redis.from_url(store_url).flushdb()
    rng = np.random.default_rng(10)
    relay = TcpRelay(int(first.http.rsplit(":", 1)[1]))
    log: list[tuple[float, float, list[str], list[bool]]] = []  # sent, received, versions, cached
    try:
        with front_of(store_url, relay) as front:
            await write_features(store_url, {symbol: rng.normal(size=len(NAMES)) for symbol in SYMBOLS})
            url = f"{front.url}/v2/models/signal/infer"
            async with httpx.AsyncClient(timeout=30) as client:
                warm = answered(await client.post(url, json=infer_body(SYMBOLS)))
                assert set(warm["model_version"]) == {"1"}
                stop = time.monotonic() + 4.0

                async def ask_repeatedly(worker: int) -> None:
                    while time.monotonic() < stop:
                        symbols = [SYMBOLS[(worker + step) % len(SYMBOLS)] for step in range(0, len(SYMBOLS), 3)]
                        sent = time.monotonic()
                        columns = answered(await client.post(url, json=infer_body(symbols)))
                        log.append((sent, time.monotonic(), columns["model_version"], columns["cached"]))

                async def tick() -> None:
                    while time.monotonic() < stop:
                        await write_features(store_url, {symbol: rng.normal(size=len(NAMES)) for symbol in TICKING})
                        await asyncio.sleep(0.1)

                async def switch() -> None:
                    await asyncio.sleep(1.5)
                    relay.switch(int(second.http.rsplit(":", 1)[1]))

                await asyncio.gather(*(ask_repeatedly(worker) for worker in range(4)), tick(), switch())
    finally:
        relay.close()
    first_new = min(received for _, received, versions, _ in log if "2" in versions)
    after = [(versions, cached) for sent, _, versions, cached in log if sent > first_new]
    assert after, "no request was sent after the first answer of the new version"
    stale = [versions for versions, _ in after if "1" in versions]
    assert not stale, f"{len(stale)} of {len(after)} later answers served version 1"
    assert any(all(cached) for _, cached in after), "the new version's predictions were never served from cache"
    assert any("1" in versions and any(cached) for _, _, versions, cached in log), "version 1 was never cached"


async def test_predictors_with_other_feature_orders_behind_one_address_answer_correctly(
    redis_url, two_versions
) -> None:
    first, second, first_order, second_order = two_versions
    store_url = redis_db(redis_url, 11)
    redis.Redis.from_url(store_url).flushdb()
    orders = {"1": (first, first_order), "2": (second, second_order)}
    rng = np.random.default_rng(11)
    relay = TcpRelay(int(first.http.rsplit(":", 1)[1]), int(second.http.rsplit(":", 1)[1]))
    seen: set[str] = set()
    try:
        with front_of(store_url, relay) as front, httpx.Client(timeout=30) as direct:
            url = f"{front.url}/v2/models/signal/infer"
            async with httpx.AsyncClient(timeout=30) as client:
                for _ in range(10):  # new features each round: every request is a miss that reaches a predictor
                    vectors = {symbol: rng.normal(size=len(NAMES)).astype(np.float32) for symbol in SYMBOLS}
                    await write_features(store_url, vectors)
                    answers = await asyncio.gather(*(client.post(url, json=infer_body([s])) for s in SYMBOLS))
                    for symbol, answer in zip(SYMBOLS, answers, strict=True):
                        columns = answered(answer)
                        version = columns["model_version"][0]
                        seen.add(version)
                        server, order = orders[version]
                        row = [float(vectors[symbol][NAMES.index(name)]) for name in order]
                        body = {
                            "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, len(row)], "data": row}]
                        }
                        truth = direct.post(f"{server.url}/v2/models/signal-1h/infer", json=body).json()
                        (down, *_, up) = truth["outputs"][0]["data"]
                        assert columns["prediction"][0] == pytest.approx(up - down, abs=1e-6), (symbol, version)
                    if seen == {"1", "2"}:
                        break
    finally:
        relay.close()
    assert seen == {"1", "2"}, f"only version(s) {sorted(seen)} answered: the relay never reached both predictors"
