"""Real predictor servers answer v2 clients (tritonclient over REST JSON, REST binary and gRPC) with exactly the
framework's own output, and describe the model's signature on the metadata endpoint."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import triton_grpc_client
import tritonclient.http as triton_http
from predictor_models import FEATURES, WINDOW, feature_rows, save_tabular_onnx_mlflow

pytestmark = pytest.mark.integration


def infer_http(predictor, name: str, array: np.ndarray, datatype: str, *, binary: bool) -> triton_http.InferResult:
    client = triton_http.InferenceServerClient(predictor.http)
    tensor = triton_http.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return client.infer(
        predictor.model_name, [tensor], outputs=[triton_http.InferRequestedOutput("probabilities", binary_data=binary)]
    )


def infer_grpc(predictor, name: str, array: np.ndarray, datatype: str) -> dict:
    answer = triton_grpc_client.call(predictor.grpc, predictor.model_name, [(name, array, datatype)])
    assert "outputs" in answer, answer
    return answer


def booster_probabilities(booster, rows: np.ndarray) -> np.ndarray:
    p_up = booster.predict(rows)
    return np.column_stack((1 - p_up, p_up)).astype(np.float32)


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_lightgbm_packed_features_match_booster_predict(lightgbm_server, booster, datatype: str) -> None:
    rows = feature_rows(16, seed=11).astype(np.float32 if datatype == "FP32" else np.float64)
    expected = booster_probabilities(booster, rows)
    for binary in (True, False):
        result = infer_http(lightgbm_server, "features", rows, datatype, binary=binary)
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-6)
    np.testing.assert_allclose(
        infer_grpc(lightgbm_server, "features", rows, datatype)["outputs"]["probabilities"], expected, rtol=1e-6
    )


def test_lightgbm_one_tensor_per_column_equals_packed(lightgbm_server, booster) -> None:
    rows = feature_rows(5, seed=12)
    client = triton_http.InferenceServerClient(lightgbm_server.http)
    tensors = []
    for position, name in enumerate(FEATURES):
        tensor = triton_http.InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(rows[:, position].copy())
        tensors.append(tensor)
    result = client.infer(lightgbm_server.model_name, tensors)
    np.testing.assert_allclose(result.as_numpy("probabilities"), booster_probabilities(booster, rows), rtol=1e-6)


def test_tritonclient_grpc_gets_bad_input_as_invalid_argument(lightgbm_server) -> None:
    answer = triton_grpc_client.call(
        lightgbm_server.grpc, lightgbm_server.model_name, [("feats", np.zeros((1, 6)), "FP64")]
    )
    assert answer["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "unknown input(s) 'feats'" in answer["message"]


def test_lightgbm_metadata_lists_the_signature_columns_in_order(lightgbm_server) -> None:
    metadata = triton_http.InferenceServerClient(lightgbm_server.http).get_model_metadata(lightgbm_server.model_name)
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [(f, "FP64", [-1]) for f in FEATURES]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}]
    grpc_metadata = triton_grpc_client.call(lightgbm_server.grpc, lightgbm_server.model_name)
    assert [tensor["name"] for tensor in grpc_metadata["inputs"]] == FEATURES


def test_response_carries_the_model_version_and_an_id(lightgbm_server) -> None:
    body = {"inputs": [{"name": "features", "shape": [1, 6], "datatype": "FP64", "data": [0.1] * 6}]}
    without_id = httpx.post(f"{lightgbm_server.url}/v2/models/signal/infer", json=body).json()
    assert without_id["id"]
    assert without_id["model_version"] == "3"  # from the MLmodel metadata
    with_id = httpx.post(f"{lightgbm_server.url}/v2/models/signal/infer", json={**body, "id": "req-42"}).json()
    assert with_id["id"] == "req-42"
    grpc_answer = infer_grpc(lightgbm_server, "features", np.full((1, 6), 0.1), "FP64")
    assert grpc_answer["id"] and grpc_answer["model_version"] == "3"


@pytest.mark.parametrize("model", ["onnx", "torchscript"])
def test_window_models_match_the_torch_module(request, start_predictor, window_torch, model: str) -> None:
    import onnxruntime
    import torch

    model_dir = request.getfixturevalue(f"{model}_dir")
    window = np.random.default_rng(5).normal(size=(7, *WINDOW)).astype(np.float32)
    with torch.inference_mode():
        expected = window_torch(torch.from_numpy(window)).numpy()
    if model == "onnx":
        session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(None, {"window": window})[0], expected, rtol=1e-5, atol=1e-6)
    with start_predictor(model_dir, name="window") as predictor:
        for binary in (True, False):
            result = infer_http(predictor, "window", window, "FP32", binary=binary).as_numpy("probabilities")
            np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
        grpc_answer = infer_grpc(predictor, "window", window, "FP32")["outputs"]["probabilities"]
        np.testing.assert_allclose(grpc_answer, expected, rtol=1e-5, atol=1e-6)
        metadata = triton_http.InferenceServerClient(predictor.http).get_model_metadata("window")
        assert metadata["inputs"] == [{"name": "window", "datatype": "FP32", "shape": [-1, *WINDOW]}]


def test_onnx_model_with_a_column_signature_takes_packed_features(start_predictor, tmp_path) -> None:
    import onnxruntime

    model_dir = save_tabular_onnx_mlflow(tmp_path / "tabular-onnx")
    rows = feature_rows(4, seed=31).astype(np.float32)
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"float_input": rows})[0]
    with start_predictor(model_dir, name="tabular") as predictor:
        metadata = triton_http.InferenceServerClient(predictor.http).get_model_metadata("tabular")
        assert [tensor["name"] for tensor in metadata["inputs"]] == FEATURES
        result = infer_http(predictor, "features", rows, "FP32", binary=True).as_numpy("probabilities")
    np.testing.assert_allclose(result, expected, rtol=1e-6)
