"""Pieces of the predictor that need no server: provider choice, settings, signatures, codecs, batching."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest
from predictor_models import FEATURES, save_lightgbm_mlflow, save_plain_torchscript, train_booster, window_module

from tickserve.predictors.batching import MicroBatcher
from tickserve.predictors.codec import decode_request
from tickserve.predictors.model_dir import Framework, ModelDirError, locate
from tickserve.predictors.runtimes.onnx import select_providers
from tickserve.predictors.settings import PredictorSettings
from tickserve.predictors.signature import Signature, TensorSpec, tabular_signature
from tickserve.settings import parse_settings

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("available", "tensorrt", "expected"),
    [
        pytest.param([CPU], False, [CPU], id="cpu-only"),
        pytest.param([CPU], True, [CPU], id="cpu-only-tensorrt-allowed"),
        pytest.param(["AzureExecutionProvider", CPU], False, [CPU], id="cpu-wheel-with-azure"),
        pytest.param([CUDA, CPU], False, [CUDA, CPU], id="cuda"),
        pytest.param([CUDA, CPU], True, [CUDA, CPU], id="cuda-tensorrt-allowed-but-absent"),
        pytest.param([TRT, CUDA, CPU], False, [CUDA, CPU], id="tensorrt-not-allowed"),
        pytest.param([TRT, CUDA, CPU], True, [TRT, CUDA, CPU], id="tensorrt-allowed"),
        pytest.param([CPU, CUDA, TRT], True, [TRT, CUDA, CPU], id="preference-order-not-runtime-order"),
        pytest.param([TRT, CPU], False, [CPU], id="tensorrt-only-not-allowed"),
    ],
)
def test_provider_selection_prefers_gpu_and_always_keeps_cpu(available, tensorrt, expected) -> None:
    assert select_providers(available, tensorrt=tensorrt) == expected


def test_provider_selection_on_this_machine() -> None:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    assert select_providers(available) == ([CUDA, CPU] if CUDA in available else [CPU])


def test_flags_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKSERVE_TRACK", "canary")
    monkeypatch.setenv("TICKSERVE_MAX_BATCH_SIZE", "8")
    settings, _ = parse_settings(PredictorSettings, "tickserve predictor", ["--max_batch_size", "32"])
    assert settings.track == "canary"
    assert settings.max_batch_size == 32


def test_invalid_setting_exits_2_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TICKSERVE_TRACK", "blue")
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(PredictorSettings, "tickserve predictor", [])
    assert exit_info.value.code == 2
    assert "track" in capsys.readouterr().err


def test_mlflow_lightgbm_dir_is_detected_with_its_signature(tmp_path) -> None:
    artifact = locate(save_lightgbm_mlflow(tmp_path / "m", train_booster(seed=2, rounds=2), version="9"))
    assert artifact.framework is Framework.LIGHTGBM
    assert artifact.signature is not None and artifact.signature.tabular
    assert artifact.signature.input_names == FEATURES
    assert artifact.version == "9"


def test_plain_files_are_detected_by_extension(tmp_path) -> None:
    assert (
        locate(save_plain_torchscript(tmp_path / "ts", window_module(), example=None)).framework
        is Framework.TORCHSCRIPT
    )
    (tmp_path / "lgb").mkdir()
    train_booster(seed=3, rounds=2).save_model(str(tmp_path / "lgb" / "model.txt"))
    artifact = locate(tmp_path / "lgb")
    assert (artifact.framework, artifact.signature) == (Framework.LIGHTGBM, None)


def test_a_dir_without_a_model_is_refused_with_what_was_found(tmp_path) -> None:
    (tmp_path / "notes.md").write_text("no model here")
    with pytest.raises(ModelDirError, match="no model file"):
        locate(tmp_path)


def _request(*tensors: tuple[str, list[int], str, list]) -> InferRequest:
    return InferRequest("m", [InferInput(name, shape, datatype, data) for name, shape, datatype, data in tensors])


TABULAR = tabular_signature([("a", "FP64"), ("b", "FP64")])
WINDOW = Signature(inputs=(TensorSpec("window", "FP32", (-1, 2, 3)),))


def test_packed_and_per_column_requests_give_the_same_matrix() -> None:
    packed, rows = decode_request(_request(("features", [2, 2], "FP32", [1, 2, 3, 4])), TABULAR, 10)
    columns, _ = decode_request(_request(("b", [2], "FP64", [2, 4]), ("a", [2], "FP64", [1, 3])), TABULAR, 10)
    assert rows == 2
    np.testing.assert_array_equal(packed["features"], columns["features"])


@pytest.mark.parametrize(
    ("request_", "signature", "message"),
    [
        (_request(("x", [1], "FP64", [1])), TABULAR, "unknown input"),
        (_request(("a", [1], "FP64", [1])), TABULAR, "missing input"),
        (_request(("a", [1], "FP32", [1]), ("b", [1], "FP64", [1])), TABULAR, "datatype FP32"),
        (_request(("features", [1, 3], "FP32", [1, 2, 3])), TABULAR, r"expected \[N, 2\]"),
        (_request(("features", [1, 2], "BYTES", ["a", "b"])), TABULAR, "expected FP32 or FP64"),
        (_request(("features", [0, 2], "FP32", [])), TABULAR, "empty batch"),
        (_request(("features", [11, 2], "FP32", [0.0] * 22)), TABULAR, "max_request_rows=10"),
        (_request(("window", [1, 2, 4], "FP32", [0.0] * 8)), WINDOW, r"expects \[-1, 2, 3\]"),
        (_request(("window", [1, 2, 3], "FP32", [0.0] * 5)), WINDOW, "do not fill"),
        (_request(("window", [1, 2, 3], "FP32", ["x"] * 6)), WINDOW, "not FP32"),
        (
            _request(("window", [1, 2, 3], "FP32", [0.0] * 6), ("window", [1, 2, 3], "FP32", [0.0] * 6)),
            WINDOW,
            "more than once",
        ),
    ],
)
def test_bad_requests_are_refused_with_a_message_naming_the_problem(request_, signature, message) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode_request(request_, signature, max_rows=10)


async def test_batcher_coalesces_concurrent_requests_and_splits_results() -> None:
    calls: list[int] = []

    def double(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2}

    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(double, executor, max_batch_size=64, max_latency_ms=50, on_batch=lambda rows: None)
        requests = [np.full((i % 3 + 1, 2), float(i)) for i in range(10)]
        results = await asyncio.gather(*(batcher.submit({"x": x}, len(x)) for x in requests))
    for x, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], x * 2)
    assert len(calls) < len(requests)
    assert sum(calls) == sum(len(x) for x in requests)


async def test_batcher_respects_max_batch_size() -> None:
    sizes: list[int] = []
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(
            lambda i: {"y": i["x"]}, executor, max_batch_size=4, max_latency_ms=50, on_batch=sizes.append
        )
        await asyncio.gather(*(batcher.submit({"x": np.zeros((1, 1))}, 1) for _ in range(10)))
    assert max(sizes) <= 4
    assert sum(sizes) == 10


async def test_one_failing_request_does_not_fail_its_batch() -> None:
    def refuse_negative(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (inputs["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": inputs["x"] + 1}

    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(
            refuse_negative, executor, max_batch_size=64, max_latency_ms=50, on_batch=lambda rows: None
        )
        values = [1.0, 2.0, -1.0, 3.0]
        results = await asyncio.gather(
            *(batcher.submit({"x": np.array([[v]])}, 1) for v in values), return_exceptions=True
        )
    assert isinstance(results[2], ValueError)
    assert [r["y"][0, 0] for i, r in enumerate(results) if i != 2] == [2.0, 3.0, 4.0]


async def test_a_lone_caller_does_not_wait_for_a_batch_to_fill() -> None:
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(
            lambda i: {"y": i["x"]}, executor, max_batch_size=64, max_latency_ms=60_000, on_batch=lambda rows: None
        )
        for _ in range(3):  # each alone: had it waited max_latency_ms, this would time out
            await asyncio.wait_for(batcher.submit({"x": np.zeros((1, 1))}, 1), timeout=10)


async def test_a_batch_of_one_under_load_does_not_stop_the_batcher_waiting_for_companions() -> None:
    """Under concurrent load the wait ran out with one request once; the next lone request still waits."""
    sizes: list[int] = []
    gate = threading.Event()

    def gated(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        gate.wait(timeout=30)
        return {"y": inputs["x"]}

    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(gated, executor, max_batch_size=2, max_latency_ms=60_000, on_batch=sizes.append)
        first = asyncio.ensure_future(batcher.submit({"x": np.zeros((1, 1))}, 1))
        await asyncio.sleep(0)  # the first runs alone, held at the gate
        second = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1))}, 1))  # arrives while the first is busy
        await asyncio.sleep(0)
        gate.set()
        await asyncio.wait_for(first, timeout=10)
        assert not second.done()  # waiting for a companion, not sent alone after a batch of one
        third = batcher.submit({"x": np.full((1, 1), 2.0)}, 1)
        results = await asyncio.wait_for(asyncio.gather(second, third), timeout=10)
    assert sizes == [1, 2]
    assert [r["y"][0, 0] for r in results] == [1.0, 2.0]


def test_only_torch_shape_complaints_count_as_bad_input() -> None:
    torch = pytest.importorskip("torch")
    from tickserve.predictors.runtimes.torch_module import shape_complaint

    scripted = "The following operation failed in the TorchScript interpreter.\n  x.shape[0] <--- HERE\nRuntimeError: "
    assert shape_complaint(RuntimeError(scripted + "mm: mat1 and mat2 shapes cannot be multiplied (1x5 and 6x2)")) == (
        "mm: mat1 and mat2 shapes cannot be multiplied (1x5 and 6x2)"
    )
    assert shape_complaint(RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got [4]"))
    assert shape_complaint(RuntimeError(scripted + "CUDA error: device-side assert triggered")) is None
    assert shape_complaint(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (of size 8 GiB)")) is None
    assert shape_complaint(torch.OutOfMemoryError("Tried to allocate a tensor of size 2 GiB")) is None


def test_rest_response_is_json_or_header_plus_binary_outputs() -> None:
    import orjson
    from kserve.protocol.infer_type import InferOutput, InferResponse

    from tickserve.v2.wire import rest_response

    values = np.array([[0.25, 0.75]], dtype=np.float32)

    def answer(binary: bool) -> InferResponse:
        output = InferOutput("probabilities", [1, 2], "FP32")
        output.set_data_from_numpy(values, binary_data=binary)
        return InferResponse("r1", "signal", [output], use_binary_outputs=binary)

    plain = rest_response(answer(binary=False))
    assert plain.media_type == "application/json"
    assert orjson.loads(plain.body)["outputs"][0]["data"] == [0.25, 0.75]
    binary = rest_response(answer(binary=True))
    length = int(binary.headers["inference-header-content-length"])
    assert binary.media_type == "application/octet-stream"
    assert orjson.loads(binary.body[:length])["outputs"][0]["parameters"]["binary_data_size"] == 8
    assert np.frombuffer(binary.body[length:], dtype=np.float32).tolist() == [0.25, 0.75]


async def test_hot_reload_starts_the_new_version_and_stops_the_old_without_failing_its_requests(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tickserve.predictors.base import TickPredictor
    from tickserve.predictors.repository import PredictorRepository

    calls: list[tuple[str, int]] = []

    def recorded(hook: str):
        kserve_hook = getattr(TickPredictor, hook)

        def call(self) -> None:
            calls.append((hook, id(self)))
            kserve_hook(self)

        return call

    monkeypatch.setattr(TickPredictor, "start", recorded("start"))
    monkeypatch.setattr(TickPredictor, "stop", recorded("stop"))
    model_dir = save_lightgbm_mlflow(tmp_path / "m", train_booster(seed=2, rounds=3))
    repository = PredictorRepository({"m": model_dir}, PredictorSettings(), threads=1)
    repository.load_model("m")
    old = repository.get_model("m")
    assert calls == [("start", id(old))]
    release = threading.Event()
    repository._executors["m"].submit(release.wait, 10)  # the model's inference thread is busy ...
    in_flight = asyncio.create_task(old(_request(("features", [1, 6], "FP64", [0.1] * 6))))
    await asyncio.sleep(0.05)  # ... so this request is queued on the old version while it is replaced
    await repository.load("m")
    new = repository.get_model("m")
    assert new is not old and new.ready and not old.ready
    assert calls == [("start", id(old)), ("start", id(new)), ("stop", id(old))]
    assert await repository.is_model_ready("m")
    release.set()
    response, _ = await asyncio.wait_for(in_flight, 10)
    assert response.outputs[0].name == "probabilities"


def test_validation_problems_name_where_and_why() -> None:
    from tickserve.v2.wire import decode_rest_body, pydantic_problems

    problems = [
        {"loc": ("body", "inputs", 0, "shape"), "msg": "Input should be a valid list"},
        {"loc": (), "msg": "Value error", "ctx": {"error": "not JSON"}},
    ]
    assert (
        pydantic_problems(problems) == "body.inputs.0.shape: Input should be a valid list; body: Value error (not JSON)"
    )
    body = b'{"inputs": [{"name": "x", "shape": "1x6", "datatype": "FP32", "data": [1]}]}'
    with pytest.raises(InvalidInput, match=r"malformed v2 inference request: inputs\.0\.shape: Input should be"):
        decode_rest_body(body, {}, "m")
