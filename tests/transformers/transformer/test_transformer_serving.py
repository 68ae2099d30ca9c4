"""The feature transformer against real processes: redis-server, two tickserve predictors serving MLflow
LightGBM models (horizons 1h and 4h), and the transformer itself (REST to the predictors)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import redis
from serving_stack import (
    NAMES,
    Server,
    ask,
    columns,
    predictor,
    redis_db,
    save_signal_model,
    transformer,
    write_features,
)

from tickserve.transformers.store.predictions import STREAM_KEY

pytestmark = pytest.mark.integration
HORIZONS = {"1h": "signal-1h", "4h": "signal-4h"}
PREDICTOR_OK = "tickserve_predictor_requests_total"


@pytest.fixture(scope="module")
def store_url(redis_url: str) -> str:
    url = redis_db(redis_url, 1)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def signatures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    root = tmp_path_factory.mktemp("signal-models")
    return {
        "signal-1h": (root / "1h", save_signal_model(root / "1h", version="11", seed=1)),
        "signal-4h": (root / "4h", save_signal_model(root / "4h", version="44", seed=4)),
    }


@pytest.fixture(scope="module")
def stack(store_url: str, signatures: dict[str, tuple]):
    with (
        predictor(signatures["signal-1h"][0], "signal-1h") as one_hour,
        predictor(signatures["signal-4h"][0], "signal-4h") as four_hours,
    ):
        predictors = {"signal-1h": one_hour, "signal-4h": four_hours}
        with transformer(store_url, predictors, HORIZONS) as front:
            yield front, predictors


def predictor_calls(endpoint: Server) -> float:
    return endpoint.metric(PREDICTOR_OK, model_name=endpoint.model_name, outcome="ok")


def direct_probability_up(endpoint: Server, order: list[str], vector: np.ndarray) -> float:
    """Ask the predictor itself, with the features in the order of its signature."""
    row = [float(vector[NAMES.index(name)]) for name in order]
    body = {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, len(row)], "data": row}]}
    response = httpx.post(f"http://{endpoint.http}/v2/models/{endpoint.model_name}/infer", json=body, timeout=10)
    assert response.status_code == 200, response.text
    outputs = {output["name"]: output["data"] for output in response.json()["outputs"]}
    return float(outputs["probabilities"][1])


async def test_answers_in_the_model_signature_order(stack, store_url, signatures) -> None:
    front, predictors = stack
    rng = np.random.default_rng(7)
    vectors = {"ORD1": rng.normal(size=len(NAMES)), "ORD2": rng.normal(size=len(NAMES))}
    ts = await write_features(store_url, vectors)

    answer = columns(ask(front, list(vectors)))

    order = signatures["signal-1h"][1]
    for i, symbol in enumerate(vectors):
        expected_up = direct_probability_up(predictors["signal-1h"], order, vectors[symbol])
        assert answer["probability_up"][i] == pytest.approx(expected_up, abs=1e-6)
        assert answer["probability_down"][i] == pytest.approx(1 - expected_up, abs=1e-6)
        assert answer["prediction"][i] == pytest.approx(2 * expected_up - 1, abs=1e-6)
        assert answer["confidence"][i] == pytest.approx(max(expected_up, 1 - expected_up), abs=1e-6)
    # The check above can fail: in the store's own order the model answers differently.
    store_order = direct_probability_up(predictors["signal-1h"], NAMES, vectors["ORD1"])
    assert store_order != pytest.approx(answer["probability_up"][0], abs=1e-6)
    assert answer["symbol"] == list(vectors)
    assert answer["model_version"] == ["11", "11"]
    assert answer["feature_timestamp"] == [pytest.approx(ts)] * 2


async def test_repeated_request_is_served_from_cache_without_the_predictor(stack, store_url) -> None:
    front, predictors = stack
    rng = np.random.default_rng(8)
    vectors = {"HIT1": rng.normal(size=len(NAMES)), "HIT2": rng.normal(size=len(NAMES))}
    ts = await write_features(store_url, vectors)
    stream = redis.Redis.from_url(store_url)
    calls, entries = predictor_calls(predictors["signal-1h"]), stream.xlen(STREAM_KEY)

    first = columns(ask(front, ["HIT1", "HIT2"]))
    assert first["cached"] == [False, False]
    assert predictor_calls(predictors["signal-1h"]) == calls + 1
    assert stream.xlen(STREAM_KEY) == entries + 2

    second = columns(ask(front, ["HIT1", "HIT2"]))
    assert second["cached"] == [True, True]
    assert second["prediction"] == first["prediction"]
    assert predictor_calls(predictors["signal-1h"]) == calls + 1, "a cache hit must not call the predictor"
    assert stream.xlen(STREAM_KEY) == entries + 2, "a cache hit is not a new prediction"

    await write_features(store_url, {"HIT1": rng.normal(size=len(NAMES))}, ts + 1)
    third = columns(ask(front, ["HIT1", "HIT2"]))
    assert third["cached"] == [False, True]
    assert third["feature_timestamp"] == [pytest.approx(ts + 1), pytest.approx(ts)]
    assert predictor_calls(predictors["signal-1h"]) == calls + 2
    last = stream.xrevrange(STREAM_KEY, count=1)[0][1]
    assert last[b"symbol"] == b"HIT1" and float(last[b"feature_ts"]) == pytest.approx(ts + 1)
    assert float(last[b"prediction"]) == pytest.approx(third["prediction"][0], abs=1e-6)


async def test_horizon_routes_to_its_own_model(stack, store_url) -> None:
    front, predictors = stack
    await write_features(store_url, {"ROUTE": np.random.default_rng(9).normal(size=len(NAMES))})
    one_hour, four_hours = predictor_calls(predictors["signal-1h"]), predictor_calls(predictors["signal-4h"])

    response = ask(front, ["ROUTE"], horizon="4h")

    assert columns(response)["model_version"] == ["44"]
    assert response.json()["parameters"] == {"horizon": "4h", "model": "signal-4h"}
    assert predictor_calls(predictors["signal-4h"]) == four_hours + 1
    assert predictor_calls(predictors["signal-1h"]) == one_hour
    assert columns(ask(front, ["ROUTE"]))["model_version"] == ["11"], "the default horizon is the first"
    assert predictor_calls(predictors["signal-1h"]) == one_hour + 1


async def test_stale_features_are_refused_and_their_age_measured(stack, store_url) -> None:
    front, _ = stack
    await write_features(store_url, {"OLD": np.zeros(len(NAMES))}, ts=1_000_000.0)
    refusals = front.metric("tickserve_transformer_refusals_total", cause="stale_features")
    ages = front.metric("tickserve_transformer_feature_age_seconds_count")

    response = ask(front, ["OLD"])

    assert response.status_code == 503
    assert response.json()["cause"] == "stale_features"
    assert "OLD" in response.json()["error"]
    assert front.metric("tickserve_transformer_refusals_total", cause="stale_features") == refusals + 1
    assert front.metric("tickserve_transformer_feature_age_seconds_count") == ages + 1


async def test_unknown_symbol_is_404_and_bad_requests_400(stack, store_url) -> None:
    front, _ = stack
    await write_features(store_url, {"KNOWN": np.zeros(len(NAMES))})

    unknown = ask(front, ["KNOWN", "NOSUCH"])
    assert unknown.status_code == 404
    assert unknown.json()["cause"] == "unknown_symbol" and "NOSUCH" in unknown.json()["error"]

    horizon = ask(front, ["KNOWN"], horizon="2h")
    assert horizon.status_code == 400 and "2h" in horizon.json()["error"]
    no_symbols = httpx.post(
        f"http://{front.http}/v2/models/signal/infer",
        json={"inputs": [{"name": "tickers", "datatype": "BYTES", "shape": [1], "data": ["KNOWN"]}]},
    )
    assert no_symbols.status_code == 400 and "symbols" in no_symbols.json()["error"]
    assert ask(front, ["KNOWN"]).status_code == 200, "the transformer keeps serving after bad requests"


async def test_grpc_clients_get_the_same_answer(stack, store_url) -> None:
    # KServe's v2 gRPC client (tritonclient.grpc cannot share a process with KServe's protobuf descriptors).
    import grpc
    from kserve.inference_client import InferenceGRPCClient
    from kserve.protocol.infer_type import InferInput, InferRequest

    front, _ = stack
    await write_features(store_url, {"GRPC": np.random.default_rng(10).normal(size=len(NAMES))})
    rest = columns(ask(front, ["GRPC"]))

    def symbols(name: bytes) -> InferRequest:
        tensor = InferInput("symbols", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([name], dtype=object), binary_data=True)
        return InferRequest("signal", [tensor])

    async with InferenceGRPCClient(front.grpc, retries=0) as client:
        result = await client.infer(symbols(b"GRPC"))
        outputs = {output.name: output.as_numpy() for output in result.outputs}
        assert outputs["prediction"][0] == pytest.approx(rest["prediction"][0], abs=1e-6)
        assert outputs["cached"][0]
        with pytest.raises(grpc.RpcError) as error:
            await client.infer(symbols(b"NOSUCH"))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "NOSUCH" in error.value.details()


async def test_stops_cleanly_closing_its_connections(stack, store_url) -> None:
    _, predictors = stack
    await write_features(store_url, {"BYE1": np.ones(len(NAMES))})
    with transformer(store_url, predictors, HORIZONS) as front:
        assert ask(front, ["BYE1"]).status_code == 200  # the predictor client and Redis pool are now open
    log = front.log_path.read_text()
    assert front.process.returncode == 0, log
    assert "Unclosed" not in log and "Traceback" not in log, log
