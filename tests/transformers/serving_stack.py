"""Real processes for the transformer, ingest and monitor tests: LightGBM signal models saved with MLflow,
tickserve predictors serving them, the feature transformer in front, and hot features written to Redis.

Kept out of a conftest.py because tests/transformers/ is shared with the feature-engine tests; test modules
import the helpers they use.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from servers import ServerProcess, free_port
from tickserve.transformers.feature_store import FeatureWriter, HotFeatures, connect
from tickserve.transformers.features import FeatureConfig

CONFIG = FeatureConfig()
NAMES = CONFIG.names


def save_signal_model(path: Path, version: str, seed: int) -> list[str]:
    """A small LightGBM direction classifier on the engine's features, saved the way the project saves models.

    Its signature lists the features in a shuffled order (returned), so a transformer that sends them in the
    store's order instead of the signature's gets different answers.
    """
    import lightgbm as lgb
    import mlflow.lightgbm
    import pandas as pd
    from mlflow.models import infer_signature

    rng = np.random.default_rng(seed)
    order = list(rng.permutation(NAMES))
    frame = pd.DataFrame(rng.normal(size=(600, len(order))), columns=order)
    label = (frame[order[0]] - frame[order[1]] + 0.3 * frame[order[2]] > 0).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "seed": seed, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(frame, label), num_boost_round=15)
    p_up = booster.predict(frame.head(5))
    probabilities = np.stack([1 - p_up, p_up], axis=1)
    signature = infer_signature(frame.head(5), probabilities)
    mlflow.lightgbm.save_model(booster, str(path), signature=signature, metadata={"model_version": version})
    return order


@dataclass
class Endpoint:
    name: str
    http: str
    grpc: str
    process: ServerProcess

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` on /metrics whose labels include `labels`."""
        text = httpx.get(f"http://{self.http}/metrics", timeout=5).text
        return metric_value(text, name, **labels)


def metric_value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        if all(f'{key}="{wanted}"' in label_text for key, wanted in labels.items()):
            total += float(value)
    return total


@contextlib.contextmanager
def predictor(
    model_dir: Path, name: str, http_port: int | None = None, grpc_port: int | None = None, extra: Sequence[str] = ()
):
    http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
    command = [
        sys.executable, "-m", "tickserve.predictors", "--model_name", name, "--model_dir", str(model_dir),
        "--http_port", str(http_port), "--grpc_port", str(grpc_port), *extra,
    ]  # fmt: skip
    ready = f"http://127.0.0.1:{http_port}/v2/models/{name}/ready"
    with ServerProcess(f"predictor-{name}", command, ready_url=ready, tcp_port=grpc_port, timeout=120) as process:
        yield Endpoint(name, f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", process)


def transformer_command(
    redis_url: str,
    predictors: dict[str, Endpoint],
    horizons: dict[str, str],
    protocol: str = "v2",
    http_port: int | None = None,
    grpc_port: int | None = None,
    extra: Sequence[str] = (),
) -> tuple[list[str], int, int]:
    http_port, grpc_port = http_port or free_port(), grpc_port or free_port()
    hosts = {name: (p.grpc if protocol == "grpc-v2" else p.http) for name, p in predictors.items()}
    command = [
        sys.executable, "-m", "tickserve.transformers", "--model_name", "signal",
        "--http_port", str(http_port), "--grpc_port", str(grpc_port),
        "--predictor_protocol", protocol, "--predictor_hosts", json.dumps(hosts),
        "--redis_url", redis_url, "--horizons", json.dumps(horizons), "--redis_timeout_seconds", "0.3",
        *extra,
    ]  # fmt: skip
    return command, http_port, grpc_port


@contextlib.contextmanager
def transformer(
    redis_url: str, predictors: dict[str, Endpoint], horizons: dict[str, str], **options
) -> Iterator[Endpoint]:
    command, http_port, grpc_port = transformer_command(redis_url, predictors, horizons, **options)
    ready = f"http://127.0.0.1:{http_port}/v2/models/signal/ready"
    with ServerProcess("transformer", command, ready_url=ready, tcp_port=grpc_port, timeout=120) as process:
        yield Endpoint("signal", f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", process)


def infer_body(symbols: Sequence[str], horizon: str | None = None) -> dict:
    body: dict = {"inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [len(symbols)], "data": list(symbols)}]}
    if horizon is not None:
        body["parameters"] = {"horizon": horizon}
    return body


def ask(endpoint: Endpoint, symbols: Sequence[str], horizon: str | None = None) -> httpx.Response:
    return httpx.post(f"http://{endpoint.http}/v2/models/signal/infer", json=infer_body(symbols, horizon), timeout=30)


def columns(response: httpx.Response) -> dict[str, list]:
    assert response.status_code == 200, response.text
    return {output["name"]: output["data"] for output in response.json()["outputs"]}


async def write_features(redis_url: str, vectors: dict[str, np.ndarray], ts: float | None = None) -> float:
    """Write hot features for some symbols as ingest does; returns their timestamp."""
    ts = time.time() if ts is None else ts
    client = connect(redis_url, 2.0)
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
