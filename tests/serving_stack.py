"""Helpers of the tests that run the serving stack as real processes (transformer, ingest, monitor, pipeline):
signal models from the zoo, tickserve servers from `tickserve.launch`, requests, and hot features in Redis."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

from tickserve import launch, zoo
from tickserve.launch import Server
from tickserve.settings import RedisSettings, Track
from tickserve.transformers.features.engine import FeatureConfig
from tickserve.transformers.store.features import FeatureWriter, HotFeatures
from tickserve.transformers.store.redis import connect

CONFIG = FeatureConfig()
NAMES = CONFIG.names


def save_signal_model(path: Path, version: str, seed: int) -> list[str]:
    """The zoo's signal model over the engine's features, in a shuffled order (returned)."""
    return zoo.signal_model(path, NAMES, seed=seed, version=version)


def predictor(
    model_dir: Path,
    name: str,
    http_port: int | None = None,
    grpc_port: int | None = None,
    track: Track | None = None,
) -> Server:
    return launch.predictor(name, model_dir, track=track, http_port=http_port, grpc_port=grpc_port)


def transformer(
    redis_url: str,
    predictors: dict[str, Server],
    horizons: dict[str, str],
    protocol: str = "v2",
    args: Sequence[str] = (),
) -> Server:
    """The transformer in front of `predictors` (model name -> running predictor), with a short Redis timeout
    so that outage tests see refusals quickly."""
    hosts = {name: (p.grpc if protocol == "grpc-v2" else p.http) for name, p in predictors.items()}
    return launch.transformer(
        redis_url, hosts, horizons, protocol=protocol, args=["--redis_timeout_seconds", "0.3", *args]
    )


def infer_body(symbols: Sequence[str], horizon: str | None = None) -> dict:
    body: dict = {"inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [len(symbols)], "data": list(symbols)}]}
    if horizon is not None:
        body["parameters"] = {"horizon": horizon}
    return body


def ask(endpoint: Server, symbols: Sequence[str], horizon: str | None = None) -> httpx.Response:
    return httpx.post(f"{endpoint.url}/v2/models/signal/infer", json=infer_body(symbols, horizon), timeout=30)


def columns(response: httpx.Response) -> dict[str, list]:
    assert response.status_code == 200, response.text
    return {output["name"]: output["data"] for output in response.json()["outputs"]}


async def write_features(redis_url: str, vectors: dict[str, np.ndarray], ts: float | None = None) -> float:
    """Write hot features for some symbols as ingest does; returns their timestamp."""
    ts = time.time() if ts is None else ts
    client = connect(RedisSettings(redis_url=redis_url, redis_timeout_seconds=2.0))
    symbols = list(vectors)
    try:
        await FeatureWriter(client, 86400).write(
            HotFeatures(
                CONFIG.schema_version,
                NAMES,
                symbols,
                np.stack([vectors[s] for s in symbols]),
                np.full(len(symbols), ts),
                [(s, ts, 100.0) for s in symbols],
            )
        )
    finally:
        await client.aclose()
    return ts


def redis_db(redis_url: str, db: int) -> str:
    """The same server, another logical database, so modules do not see each other's keys."""
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"
