"""Every kind of model in the zoo (`tickserve.zoo.kinds`: saved with the ordinary MLflow and framework calls) is
served as a process and called the way a v2 client calls it: inputs as the metadata endpoint lists them, with
Triton's HTTP client (JSON and binary) and its gRPC client. The answers equal the framework's own predict, and no
malformed request, on REST or gRPC, gets a 5xx or stops the server serving."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
import triton_grpc_client
import tritonclient.http as triton_http
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from tickserve import launch
from tickserve.zoo import kinds

pytestmark = pytest.mark.integration

MAX_ROWS = 64
# Requests that are unusual but valid: a model may answer them (200) or refuse them (4xx), never fail (5xx).
MAY_ANSWER = {"nan-value", "huge-values", "lowercase-datatype"}
NUMPY = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, kinds.ZooModel]:
    root = tmp_path_factory.mktemp("zoo")
    return {kind: kinds.build(kind, root / kind) for kind in kinds.available_kinds()}


@pytest.fixture(scope="module", params=kinds.available_kinds())
def served(request, zoo) -> Iterator[tuple[kinds.ZooModel, launch.Server]]:
    model = zoo[request.param]
    env = {"TICKSERVE_MAX_REQUEST_ROWS": str(MAX_ROWS)}
    with launch.predictor(model.kind, model.path, env=env) as server:
        yield model, server


def metadata(server: launch.Server) -> dict:
    return httpx.get(f"{server.url}/v2/models/{server.model_name}", timeout=10).json()


def request_from_metadata(model: kinds.ZooModel, server: launch.Server) -> list[kinds.Tensor]:
    """The request as a client reading only the metadata builds it: one tensor per listed input. A column
    signature lists one [-1] tensor per feature column; the zoo's request then holds the packed matrix."""
    listed = metadata(server)["inputs"]
    if [spec["name"] for spec in listed] == [tensor.name for tensor in model.inputs]:
        return list(model.inputs)
    (packed,) = model.inputs
    assert packed.name == "features" and len(listed) == packed.array.shape[1], listed
    return [
        kinds.Tensor(spec["name"], packed.array[:, i].astype(NUMPY[spec["datatype"]]), spec["datatype"])
        for i, spec in enumerate(listed)
    ]


def test_metadata_names_the_runtime_why_and_the_inputs_inference_takes(served) -> None:
    model, server = served
    answer = metadata(server)
    assert answer["platform"] == model.runtime
    assert answer["parameters"]["runtime"] == model.runtime and answer["parameters"]["reason"]
    tensors = request_from_metadata(model, server)
    for spec, tensor in zip(answer["inputs"], tensors, strict=True):
        assert spec["datatype"] == tensor.datatype
        assert len(spec["shape"]) == tensor.array.ndim or spec["shape"] == [-1]  # [-1]: no shape declared
    reason = answer["parameters"]["reason"]
    assert f"model {model.kind}: served by the {model.runtime} runtime ({reason})" in server.log_path.read_text()
    grpc_metadata = triton_grpc_client.call(server.grpc, server.model_name)
    assert [tensor["name"] for tensor in grpc_metadata["inputs"]] == [spec["name"] for spec in answer["inputs"]]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_triton_http_answers_equal_the_framework_predict(served, binary: bool) -> None:
    model, server = served
    client = triton_http.InferenceServerClient(server.http)
    inputs = []
    for tensor in request_from_metadata(model, server):
        infer_input = triton_http.InferInput(tensor.name, list(tensor.array.shape), tensor.datatype)
        infer_input.set_data_from_numpy(tensor.array, binary_data=binary)
        inputs.append(infer_input)
    outputs = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in model.expected]
    result = client.infer(server.model_name, inputs, outputs=outputs)
    for name, expected in model.expected.items():
        assert_answer(result.as_numpy(name), expected, model, name)


def test_triton_grpc_answers_equal_the_framework_predict(served) -> None:
    model, server = served
    tensors = [(t.name, t.array, t.datatype) for t in request_from_metadata(model, server)]
    answer = triton_grpc_client.call(server.grpc, server.model_name, tensors)
    assert "outputs" in answer, answer
    for name, expected in model.expected.items():
        assert_answer(np.asarray(answer["outputs"][name]), expected, model, name)


def assert_answer(answer: np.ndarray, expected: np.ndarray, model: kinds.ZooModel, name: str) -> None:
    """Numbers within the kind's tolerance; text (BYTES class labels) exactly."""
    if expected.dtype == object:
        text = [value.decode() if isinstance(value, bytes) else value for value in answer.ravel().tolist()]
        assert text == expected.ravel().tolist(), name
    else:
        np.testing.assert_allclose(answer, expected, rtol=model.rtol, atol=model.atol, err_msg=name)


def rest_malformed(tensor: kinds.Tensor, limit: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """(case, body, headers) of requests that are wrong in every way a client gets them wrong."""
    name, array, datatype = tensor.name, tensor.array, tensor.datatype
    shape, flat = list(array.shape), array.ravel().tolist()
    inner = int(np.prod(shape[1:]))
    wider = [shape[0], *[d + 1 for d in shape[1:]]]

    def body(*tensors: dict, **extra) -> bytes:
        return json.dumps({"inputs": list(tensors), **extra}).encode()

    def t(shape=shape, data=flat, datatype=datatype, name=name) -> dict:
        return {"name": name, "shape": shape, "datatype": datatype, "data": data}

    nan_body = body(t()).replace(b"[" + json.dumps(flat[0]).encode(), b"[NaN", 1)
    other = "INT32" if datatype != "INT32" else "FP32"
    cases = [
        ("no-inputs", body(), {}),
        ("unknown-name", body(t(name="nope")), {}),
        ("wrong-datatype", body(t(datatype=other, data=[1] * len(flat))), {}),
        ("bytes-datatype", body(t(datatype="BYTES", data=["a"] * len(flat))), {}),
        ("lowercase-datatype", body(t(datatype=datatype.lower())), {}),
        ("extra-dimension", body(t(shape=[*shape, 1])), {}),
        ("inner-dimension-plus-one", body(t(shape=wider, data=[0.5] * int(np.prod(wider)))), {}),
        ("rank-one", body(t(shape=[len(flat)])), {}),
        ("scalar", body(t(shape=[], data=[1.0])), {}),
        ("zero-rows", body(t(shape=[0, *shape[1:]], data=[])), {}),
        ("too-many-rows", body(t(shape=[MAX_ROWS + 1, *shape[1:]], data=[0.5] * ((MAX_ROWS + 1) * inner))), {}),
        ("short-data", body(t(data=flat[:-1])), {}),
        ("text-data", body(t(data=["x"] * len(flat))), {}),
        ("null-data", body(t(data=None)), {}),
        ("negative-dimension", body(t(shape=[-1, *shape[1:]])), {}),
        ("astronomic-dimension", body(t(shape=[10**30, *shape[1:]])), {}),
        ("overflowing-dimensions", body(t(shape=[2**40, 2**40, 2**40])), {}),
        ("nan-value", nan_body, {}),
        ("huge-values", body(t(data=[1e308] * len(flat))), {}),
        ("duplicate-input", body(t(), t()), {}),
        ("unknown-output", body(t(), outputs=[{"name": "nope"}]), {}),
        ("json-array", b"[1, 2, 3]", {}),
        ("not-json", b"hello", {}),
        ("float-shape", body(t(shape=[1.5, *shape[1:]])), {}),
        ("binary-header-past-the-end", body(t()), {"Inference-Header-Content-Length": "999999999"}),
        ("over-the-body-limit", b" " * (limit + 1), {}),
    ]
    return cases


def grpc_malformed(model_name: str, tensor: kinds.Tensor, limit: int) -> list[tuple[str, bytes]]:
    name, array, datatype = tensor.name, tensor.array, tensor.datatype

    def message(shape=array.shape, raw: bytes | None = None, datatype=datatype, name=name) -> bytes:
        raw = array.tobytes() if raw is None else raw
        infer_input = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=list(shape))
        request = pb.ModelInferRequest(model_name=model_name, inputs=[infer_input], raw_input_contents=[raw])
        return request.SerializeToString()

    nan = array.copy()
    nan.flat[0] = math.nan
    return [
        ("unknown-name", message(name="nope")),
        ("wrong-datatype", message(datatype="INT8")),
        ("wrong-shape", message(shape=(array.shape[0], *[d + 1 for d in array.shape[1:]]))),
        ("zero-rows", message(shape=(0, *array.shape[1:]), raw=b"")),
        ("raw-size-mismatch", message(raw=array.tobytes()[:-1])),
        ("negative-dimension", message(shape=(-1, *array.shape[1:]))),
        ("overflowing-dimensions", message(shape=(2**40, 2**40, 2**40))),
        ("nan-value", message(raw=nan.tobytes())),
        ("not-a-protobuf", b"\xff\xff\xff garbage"),
        ("over-the-size-limit", message(raw=b"\0" * (limit + 1))),
    ]


def test_no_malformed_request_gets_a_5xx_and_the_server_keeps_serving(served) -> None:
    model, server = served
    tensor = model.inputs[0]
    limit = int(metadata(server)["parameters"]["max_request_bytes"])
    url = f"{server.url}/v2/models/{server.model_name}/infer"
    failures = []
    for case, body, headers in rest_malformed(tensor, limit):
        response = httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=30)
        if not 400 <= response.status_code < 500 and not (case in MAY_ANSWER and response.status_code == 200):
            failures.append(f"REST {case}: {response.status_code} {response.text[:300]}")
    with grpc.insecure_channel(server.grpc) as channel:
        model_infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        for case, message in grpc_malformed(server.model_name, tensor, limit):
            try:
                model_infer(message, timeout=30)
                if case not in MAY_ANSWER:
                    failures.append(f"gRPC {case}: answered")
            except grpc.RpcError as error:
                if error.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE):
                    failures.append(f"gRPC {case}: {error.code()} {error.details()[:300]}")
    assert not failures, "\n".join(failures)
    test_triton_grpc_answers_equal_the_framework_predict(served)
    labels = {"model_name": server.model_name, "outcome": "server_error"}
    assert server.metric("tickserve_predictor_requests_total", **labels) == 0
