"""Every kind of bad input gets a 4xx (gRPC: INVALID_ARGUMENT / NOT_FOUND) whose message names the problem, and
the server answers the next good request as before."""

from __future__ import annotations

import json

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from predictor_models import feature_rows

from tickserve.launch import metric_sum

pytestmark = pytest.mark.integration

BINARY = {"content-type": "application/octet-stream"}  # binary extension bodies are not parsed as JSON
GOOD = {"inputs": [{"name": "features", "shape": [1, 6], "datatype": "FP64", "data": [0.5] * 6}]}


def packed(rows: int, datatype: str = "FP64", name: str = "features", width: int = 6) -> dict:
    return {"inputs": [{"name": name, "shape": [rows, width], "datatype": datatype, "data": [0.1] * (rows * width)}]}


def assert_still_serving(predictor) -> None:
    response = httpx.post(f"{predictor.url}/v2/models/{predictor.model_name}/infer", json=GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["name"] == "probabilities"


UNKNOWN_OUTPUT = {**GOOD, "outputs": [{"name": "prediction"}]}
SHORT_DATA = {"inputs": [{"name": "features", "shape": [1, 6], "datatype": "FP64", "data": [0.5] * 5}]}
REST_CASES = [
    pytest.param("nosuchmodel", json.dumps(GOOD), {}, 404, "nosuchmodel", id="unknown-model"),
    pytest.param(None, json.dumps(packed(1, name="feats")), {}, 400, "unknown input(s) 'feats'", id="wrong-input-name"),
    pytest.param(None, json.dumps(packed(1, width=5)), {}, 400, "expected [N, 6]", id="wrong-shape"),
    pytest.param(None, json.dumps(packed(1, datatype="INT32")), {}, 400, "expected FP32 or FP64", id="wrong-datatype"),
    pytest.param(None, json.dumps(packed(0)), {}, 400, "empty batch", id="empty-batch"),
    pytest.param(None, json.dumps(packed(257)), {}, 400, "max_request_rows=256", id="oversized-batch"),
    pytest.param(None, '{"inputs": [{"name": "features", "sha', {}, 400, "JSON", id="malformed-json"),
    pytest.param(None, '{"id": "x"}', {}, 400, "inputs", id="no-inputs"),
    pytest.param(None, json.dumps(SHORT_DATA), {}, 400, "do not fill", id="data-does-not-fill-shape"),
    pytest.param(
        None, json.dumps(UNKNOWN_OUTPUT), {}, 400, "unknown requested output(s) prediction", id="unknown-output"
    ),
    pytest.param(
        None,
        json.dumps(GOOD),
        {"Inference-Header-Content-Length": "abc", **BINARY},
        400,
        "not a number",
        id="bad-binary-header",
    ),
    pytest.param(
        None,
        json.dumps(GOOD),
        {"Inference-Header-Content-Length": "99999", **BINARY},
        400,
        "does not fit",
        id="binary-header-too-long",
    ),
]


@pytest.mark.parametrize(("model", "body", "headers", "status", "message"), REST_CASES)
def test_rest_bad_input_is_a_4xx_naming_the_problem(lightgbm_server, model, body, headers, status, message) -> None:
    url = f"{lightgbm_server.url}/v2/models/{model or lightgbm_server.model_name}/infer"
    response = httpx.post(url, content=body, headers={"content-type": "application/json", **headers})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert_still_serving(lightgbm_server)


def test_rest_binary_inputs_shorter_than_declared_are_refused(lightgbm_server) -> None:
    rows = feature_rows(2, seed=1)
    header = {
        "inputs": [{"name": "features", "shape": [2, 6], "datatype": "FP64", "parameters": {"binary_data_size": 48}}]
    }
    head = json.dumps(header).encode()
    response = httpx.post(
        f"{lightgbm_server.url}/v2/models/{lightgbm_server.model_name}/infer",
        content=head + rows.tobytes()[:48],
        headers={"Inference-Header-Content-Length": str(len(head)), "content-type": "application/octet-stream"},
    )
    assert response.status_code == 400
    assert "48 bytes of binary data, but shape [2, 6] of FP64 needs 96" in response.json()["error"]
    assert_still_serving(lightgbm_server)


def grpc_request(model: str, name: str = "features", shape=(1, 6), datatype: str = "FP64", raw: bytes | None = None):
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
    if raw is None:
        raw = np.full(shape, 0.5, dtype=np.float64 if datatype == "FP64" else np.float32).tobytes()
    return pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[raw]).SerializeToString()


GRPC_CASES = [
    pytest.param(grpc_request("nosuchmodel"), grpc.StatusCode.NOT_FOUND, "nosuchmodel", id="unknown-model"),
    pytest.param(grpc_request("signal", name="feats"), grpc.StatusCode.INVALID_ARGUMENT, "unknown input", id="wrong-input-name"),
    pytest.param(grpc_request("signal", shape=(1, 5)), grpc.StatusCode.INVALID_ARGUMENT, "expected [N, 6]", id="wrong-shape"),
    pytest.param(grpc_request("signal", datatype="INT32", raw=b"\0" * 24), grpc.StatusCode.INVALID_ARGUMENT, "FP32 or FP64", id="wrong-datatype"),
    pytest.param(grpc_request("signal", shape=(0, 6)), grpc.StatusCode.INVALID_ARGUMENT, "empty batch", id="empty-batch"),
    pytest.param(grpc_request("signal", shape=(257, 6)), grpc.StatusCode.INVALID_ARGUMENT, "max_request_rows", id="oversized-batch"),
    pytest.param(grpc_request("signal", raw=b"\0" * 7), grpc.StatusCode.INVALID_ARGUMENT, "7 bytes of binary data", id="raw-size-mismatch"),
    pytest.param(b"\xff\xff\xff not a protobuf", grpc.StatusCode.INVALID_ARGUMENT, "malformed ModelInferRequest", id="malformed-protobuf"),
]  # fmt: skip


@pytest.mark.parametrize(("message", "code", "text"), GRPC_CASES)
def test_grpc_bad_input_is_invalid_argument_or_not_found(lightgbm_server, message: bytes, code, text: str) -> None:
    with grpc.insecure_channel(lightgbm_server.grpc) as channel:
        model_infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as raised:
            model_infer(message, timeout=10)
        assert raised.value.code() == code
        assert text in raised.value.details()
        answer = pb.ModelInferResponse.FromString(model_infer(grpc_request("signal"), timeout=10))
        assert answer.outputs[0].name == "probabilities"
    assert_still_serving(lightgbm_server)


def test_wrong_width_to_a_torchscript_model_without_signature_is_a_400(start_predictor, slow_dir) -> None:
    """A plain .pt file declares no input shape, so the module itself refuses a wrong width: that is the
    client's error (400, counted as client_error), not a 500 that would look like a broken canary."""
    with start_predictor(slow_dir, name="slow") as slow:
        url = f"{slow.url}/v2/models/slow/infer"
        for shape, complaint in (
            ([1, 5], "shapes cannot be multiplied (1x5 and 256x256)"),
            ([7], "shapes cannot be multiplied (1x7 and 256x256)"),
        ):
            body = {"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": [0.1] * int(np.prod(shape))}]}
            response = httpx.post(url, json=body, timeout=30)
            assert response.status_code == 400, response.text
            assert f"input(s) 'x' {shape} do not fit the model" in response.json()["error"]
            assert complaint in response.json()["error"]
        good = {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32", "data": [0.1] * 256}]}
        assert httpx.post(url, json=good, timeout=30).status_code == 200
        samples = slow.metrics_text()
    labels = {"model_name": "slow", "model_version": "1", "track": "stable"}
    assert metric_sum(samples, "tickserve_predictor_requests_total", outcome="client_error", **labels) == 2
    assert metric_sum(samples, "tickserve_predictor_requests_total", outcome="server_error", **labels) == 0


def test_a_body_over_the_limit_is_refused_with_413_before_it_is_read(lightgbm_server) -> None:
    """100 MB of JSON is refused from its Content-Length, and a chunked body (no length) once it passes the limit;
    both count as client errors and the server serves on."""
    url = f"{lightgbm_server.url}/v2/models/{lightgbm_server.model_name}/infer"
    limit = httpx.get(f"{lightgbm_server.url}/v2/models/signal").json()["parameters"]["max_request_bytes"]
    assert limit < 100_000_000
    before = lightgbm_server.metric("tickserve_predictor_requests_total", outcome="client_error")
    sized = httpx.post(url, content=b" " * 100_000_000, headers={"content-type": "application/json"}, timeout=60)
    assert sized.status_code == 413
    assert f"request body of 100000000 bytes exceeds the limit of {limit} bytes" in sized.json()["error"]

    def chunks():
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    assert streamed.status_code == 413
    assert f"exceeds the limit of {limit} bytes" in streamed.json()["error"]
    assert lightgbm_server.metric("tickserve_predictor_requests_total", outcome="client_error") == before + 2
    assert_still_serving(lightgbm_server)
