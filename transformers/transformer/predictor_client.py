"""Talks to the tickserve predictor over Open Inference Protocol v2, by REST or gRPC.

Two calls matter: the model metadata (its inputs list the feature columns, each a named FP32/FP64 tensor) and
inference with one named tensor [N] per feature column, answered by `probabilities` [N, K]. Columns go by name,
never by position: stable and canary pods behind one Service may order their features differently, and the
metadata read and the inference call may reach different pods; each predictor puts named columns into its own
order (a packed [N, F] matrix would silently mean another order to the other pod). Transport failures are
reported as `PredictorUnavailable` (with whether an immediate retry can help) and refusals as
`PredictorRejected`, whatever the protocol, so the transformer's retry and 503 logic is protocol-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp
import grpc
import numpy as np
import orjson
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from kserve.protocol.infer_type import InferResponse, to_http_parameters

from tickserve.v2.names import PROBABILITIES_OUTPUT

# Reconnect quickly once a restarted predictor is back (gRPC's default backoff grows to two minutes).
_GRPC_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 0),
]
_RETRYABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class PredictorUnavailable(Exception):
    """The predictor (or the model on it) cannot answer now."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class PredictorRejected(Exception):
    """The predictor answered with an error about the request itself."""


@dataclass(frozen=True)
class PredictorOutput:
    probabilities: np.ndarray  # [N, K]: K=2 [down, up], K=3 [down, flat, up]
    model_version: str
    track: str | None = None  # the rollout track of the predictor that answered, when it says


Column = tuple[str, str]  # (feature name, v2 datatype) as the model's metadata lists it
_COLUMN_DTYPES = {"FP32": "<f4", "FP64": "<f8"}


class PredictorClient(Protocol):
    async def feature_columns(self, model: str) -> tuple[Column, ...]: ...

    async def infer(self, model: str, columns: tuple[Column, ...], features: np.ndarray) -> PredictorOutput: ...

    async def close(self) -> None: ...


def _columns(metadata_inputs: list[tuple[str, str]], model: str) -> tuple[Column, ...]:
    unusable = [f"{name} {datatype}" for name, datatype in metadata_inputs if datatype not in _COLUMN_DTYPES]
    if unusable:
        raise PredictorRejected(f"model {model} has inputs that are not FP32/FP64 feature columns: {unusable}")
    return tuple(metadata_inputs)


def _grpc_request(model: str, columns: tuple[Column, ...], features: np.ndarray) -> pb.ModelInferRequest:
    """One named [N] tensor per column as raw little-endian bytes, built straight into the message (KServe's
    InferRequest round trip costs more than the call on a 1-row miss)."""
    rows = [len(features)]
    tensors, contents = [], []
    for position, (name, datatype) in enumerate(columns):
        tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=rows))
        contents.append(np.ascontiguousarray(features[:, position], dtype=_COLUMN_DTYPES[datatype]).tobytes())
    return pb.ModelInferRequest(model_name=model, inputs=tensors, raw_input_contents=contents)


def _output(model: str, response: InferResponse) -> PredictorOutput:
    output = response.get_output_by_name(PROBABILITIES_OUTPUT)
    if output is None:
        raise PredictorRejected(f"model {model} answered without a {PROBABILITIES_OUTPUT!r} output")
    probabilities = output.as_numpy().astype(np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] not in (2, 3):
        raise PredictorRejected(f"model {model} answered probabilities of shape {probabilities.shape}, not [N, 2|3]")
    parameters = to_http_parameters(response.parameters) if response.parameters else {}
    track = parameters.get("track")
    return PredictorOutput(probabilities, str(response.model_version or ""), str(track) if track else None)


class RestPredictorClient:
    """v2 over HTTP/1.1 keep-alive connections with JSON bodies (KServe's REST client drops `model_version` from
    binary responses). aiohttp rather than httpx: at 1,000 calls/s httpx's per-request CPU cost was the
    transformer's largest, enough to saturate two cores. aiohttp sets TCP_NODELAY on its sockets."""

    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self._base_url = base_url
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the serving event loop

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256)  # enough keep-alive connections: no reconnect churn
            self._session = aiohttp.ClientSession(self._base_url, timeout=self._timeout, connector=connector)
        return self._session

    async def feature_columns(self, model: str) -> tuple[Column, ...]:
        answer = await self._send("GET", model, f"/v2/models/{model}")
        return _columns([(item["name"], item["datatype"]) for item in orjson.loads(answer)["inputs"]], model)

    async def infer(self, model: str, columns: tuple[Column, ...], features: np.ndarray) -> PredictorOutput:
        rows = [len(features)]
        tensors = [
            {"name": name, "datatype": datatype, "shape": rows, "data": features[:, position].tolist()}
            for position, (name, datatype) in enumerate(columns)
        ]
        body = orjson.dumps({"inputs": tensors})
        answer = await self._send("POST", model, f"/v2/models/{model}/infer", body)
        return _output(model, InferResponse.from_rest(orjson.loads(answer)))

    async def _send(self, method: str, model: str, path: str, body: bytes | None = None) -> bytes:
        headers = {"content-type": "application/json"} if body is not None else None
        try:
            async with self._http().request(method, path, data=body, headers=headers) as response:
                answer = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PredictorUnavailable(f"predictor at {self._base_url} unreachable: {exc!r}", retryable=True) from exc
        self._raise_for_status(model, response.status, answer)
        return answer

    @staticmethod
    def _raise_for_status(model: str, status: int, answer: bytes) -> None:
        if status < 300:
            return
        message = f"predictor model {model} answered {status}: {answer[:200].decode(errors='replace')}"
        if status == 404:
            raise PredictorUnavailable(message, retryable=False)
        if status in (502, 503, 504):
            raise PredictorUnavailable(message, retryable=True)
        raise PredictorRejected(message)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class GrpcPredictorClient:
    """v2 over gRPC on one channel that reconnects within a second of the predictor coming back."""

    def __init__(self, target: str, timeout_seconds: float) -> None:
        self._target = target
        self._timeout = timeout_seconds
        self._channel = grpc.aio.insecure_channel(target, options=_GRPC_CHANNEL_OPTIONS)
        self._stub = GRPCInferenceServiceStub(self._channel)

    async def feature_columns(self, model: str) -> tuple[Column, ...]:
        try:
            metadata = await self._stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(model, exc) from exc
        return _columns([(item.name, item.datatype) for item in metadata.inputs], model)

    async def infer(self, model: str, columns: tuple[Column, ...], features: np.ndarray) -> PredictorOutput:
        try:
            response = await self._stub.ModelInfer(_grpc_request(model, columns, features), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(model, exc) from exc
        return _output(model, InferResponse.from_grpc(response))

    def _translate(self, model: str, exc: grpc.aio.AioRpcError) -> Exception:
        message = f"predictor at {self._target} model {model}: {exc.code().name} {exc.details()}"
        if exc.code() in _RETRYABLE_GRPC:
            return PredictorUnavailable(message, retryable=True)
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return PredictorUnavailable(message, retryable=False)
        return PredictorRejected(message)

    async def close(self) -> None:
        await self._channel.close()


def predictor_client(host: str, protocol: str, use_ssl: bool, timeout_seconds: float) -> PredictorClient:
    """A client for KServe's `--predictor_host` / `--predictor_protocol` (v2 or grpc-v2)."""
    if protocol == "grpc-v2":
        if use_ssl:
            raise ValueError("TLS to the predictor over gRPC is not supported; use --predictor_protocol v2")
        return GrpcPredictorClient(host, timeout_seconds)
    if protocol == "v2":
        return RestPredictorClient(f"{'https' if use_ssl else 'http'}://{host}", timeout_seconds)
    raise ValueError(f"predictor protocol {protocol!r} is not supported; use v2 or grpc-v2")
