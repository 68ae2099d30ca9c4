"""KServe's ModelServer, adjusted where its defaults hurt a realtime predictor.

- POST /v2/models/{name}/infer refuses a body over the model's `max_request_bytes` with 413 before reading it
  (gRPC messages are capped at the same size), then decodes the raw body once (`wire`: JSON or the binary
  extension, binary tensors stay bytes) and answers with orjson; malformed JSON / protobuf is a 400 /
  INVALID_ARGUMENT, not a 500, and counts as a client error of the model. It is served by
  `tickserve.v2.fast_path.InferFastPath`, the ASGI app uvicorn runs, ahead of KServe's FastAPI app and its
  middleware.
- The metadata endpoint says which runtime serves the model (`platform`) and, on REST, why (`parameters`).
- gRPC runs without KServe's per-call logging interceptor and parses ModelInfer messages itself.
- /metrics aggregates all processes when --workers > 1; REST worker processes load their models at startup.
- Per-request log lines (latency, access log) are off unless --enable_latency_logging is set, and rejected
  requests log one WARNING line instead of an ERROR traceback.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import tempfile
from concurrent import futures
from typing import Any, ClassVar

import grpc
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from grpc import aio
from kserve import ModelServer
from kserve import logging as kserve_logging
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor
from kserve.protocol.grpc.server import GRPCServer
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.infer_type import InferRequest, InferResponse
from kserve.utils.utils import to_headers
from prometheus_client import REGISTRY, CollectorRegistry, exposition, multiprocess

from tickserve import kserve_compat
from tickserve.predictors.base import TickPredictor
from tickserve.predictors.repository import (
    PredictorRepository,
    PredictorRepositoryExtension,
    load_restored_repositories,
)
from tickserve.v2.fast_path import InferFastPath
from tickserve.v2.wire import (
    RequestTooLarge,
    decode_grpc_message,
    decode_rest_body,
    grpc_to_infer_request,
    pydantic_problems,
    read_body,
    rest_response,
)


async def request_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI answers JSON bodies it cannot parse with 422 and its own shape; v2 clients expect 400 {"error"}."""
    return JSONResponse(
        status_code=400, content={"error": f"malformed v2 inference request: {pydantic_problems(error.errors())}"}
    )


async def request_too_large(_: Request, error: RequestTooLarge) -> JSONResponse:
    return JSONResponse(status_code=413, content={"error": str(error)})


async def model_metadata(model_name: str) -> JSONResponse:
    """GET /v2/models/{name}: KServe's metadata plus `parameters` (runtime, why it was chosen, version), which
    KServe's own route drops."""
    dataplane = PredictorDataPlane.current
    if dataplane is None:
        raise ServerNotReady("the predictor data plane is not set up")
    return JSONResponse(await dataplane.model_metadata(model_name))


async def metrics(request: Request) -> Response:
    """KServe's /metrics, aggregated over all processes when --workers > 1 (PROMETHEUS_MULTIPROC_DIR is set):
    otherwise a scrape would see only the one REST worker that happened to answer it."""
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = exposition.choose_encoder(request.headers.get("accept"))
    return Response(content=encoder(registry), headers={"content-type": content_type})


async def infer(request: Request, model_name: str) -> Response:
    """POST /v2/models/{name}/infer without KServe's FastAPI body model: KServe's route validates JSON bodies with
    pydantic, converts them again into its own types and re-validates and re-encodes the response; this one
    decodes the raw body once (JSON or binary extension, `wire`) and writes the response with orjson."""
    dataplane = PredictorDataPlane.current
    if dataplane is None:
        raise ServerNotReady("the predictor data plane is not set up")
    if not await dataplane.model_ready(model_name, True):
        raise ModelNotReady(model_name)
    headers = dict(request.headers)
    model = dataplane.get_model_from_registry(model_name)
    try:
        body = await read_body(request, model.max_request_bytes if isinstance(model, TickPredictor) else sys.maxsize)
    except RequestTooLarge:
        dataplane.count_rejected(model_name)
        raise
    infer_request = dataplane.decode_inference_request(body, headers, model_name)
    response, _ = await dataplane.infer(model_name=model_name, request=infer_request, headers=headers)
    return rest_response(response)


# At import, on KServe's module-level app: REST worker processes (--workers > 1) import this module (the app they
# serve, see PredictorServer.start), so every process answers the same way. Routes added here come before the
# ones KServe adds when the server starts, so this /metrics is the one served.
kserve_compat.add_exception_handler(RequestValidationError, request_validation_error)
kserve_compat.add_exception_handler(RequestTooLarge, request_too_large)
kserve_compat.add_route("/metrics", metrics, methods=["GET"])
kserve_compat.add_route("/v2/models/{model_name}", model_metadata, methods=["GET"])
kserve_compat.on_startup(load_restored_repositories)
app = InferFastPath(kserve_compat.kserve_app(), infer=infer)


class PredictorDataPlane(DataPlane):
    """The process's data plane, also reachable by the module-level routes above (set when built or unpickled)."""

    current: ClassVar[PredictorDataPlane | None] = None

    def __init__(self, model_registry: PredictorRepository) -> None:
        super().__init__(model_registry=model_registry)
        PredictorDataPlane.current = self

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        PredictorDataPlane.current = self

    def decode_inference_request(self, body: Any, headers: dict[str, str], model_name: str) -> InferRequest:
        try:
            if isinstance(body, bytes):
                return decode_rest_body(body, headers, model_name)
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            self.count_rejected(model_name)
            raise

    async def model_metadata(self, model_name: str) -> dict[str, Any]:
        metadata = await super().model_metadata(model_name)
        model = self.get_model_from_registry(model_name)
        if isinstance(model, TickPredictor):
            metadata.update(
                platform=model.PLATFORM, versions=[model.model_version], parameters=model.metadata_parameters()
            )
        return metadata

    def count_rejected(self, model_name: str) -> None:
        model = self._model_registry.get_model(model_name)
        if isinstance(model, TickPredictor):
            model.metrics.rejected()


class PredictorServicer(InferenceServicer):
    """ModelInfer receives raw bytes (see `add_servicer`) so a malformed message is the client's error."""

    async def ModelInfer(self, request: bytes, context: grpc.ServicerContext) -> pb.ModelInferResponse:  # type: ignore[override]
        model_name = ""
        try:
            message = decode_grpc_message(request)
            model_name = message.model_name
            infer_request = grpc_to_infer_request(message)
        except InvalidInput:
            if isinstance(self._data_plane, PredictorDataPlane) and model_name:
                self._data_plane.count_rejected(model_name)
            raise
        response, _ = await self._data_plane.infer(
            model_name=message.model_name, request=infer_request, headers=to_headers(context)
        )
        if isinstance(response, InferResponse):
            return response.to_grpc()
        return response


def add_servicer(servicer: PredictorServicer, server: aio.Server) -> None:
    """KServe's generated registration, with ModelInfer taking undecoded bytes."""

    class Capture:
        def add_generic_rpc_handlers(self, handlers: object) -> None:
            pass

        def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
            self.service, self.handlers = service, dict(handlers)

    capture = Capture()
    grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, capture)
    capture.handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(
        servicer.ModelInfer, request_deserializer=None, response_serializer=pb.ModelInferResponse.SerializeToString
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(capture.service, capture.handlers),))
    server.add_registered_method_handlers(capture.service, capture.handlers)


class PredictorGRPCServer(GRPCServer):
    async def start(self, max_workers: int) -> None:
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(ExceptionToStatusInterceptor(),),
            options=[
                ("grpc.max_send_message_length", self._kwargs["grpc_max_send_message_length"]),
                ("grpc.max_receive_message_length", self._kwargs["grpc_max_receive_message_length"]),
            ],
        )
        add_servicer(PredictorServicer(self._data_plane, self._model_repository_extension), self._server)
        self._server.add_insecure_port(f"[::]:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


class PredictorServer(ModelServer):
    """ModelServer with the predictor data plane, repository extension and gRPC server.

    KServe builds its gRPC server inside start(); this one is built here instead (pass enable_grpc=False to
    the parent) and registered where ModelServer.stop() looks for it.
    """

    def __init__(
        self, repository: PredictorRepository, *, grpc_enabled: bool, grpc_options: dict[str, Any], **kwargs: Any
    ):
        super().__init__(registered_models=repository, enable_grpc=False, **kwargs)
        self.dataplane = PredictorDataPlane(model_registry=repository)
        self.model_repository_extension = PredictorRepositoryExtension(model_registry=repository)
        self._grpc_enabled = grpc_enabled
        self._grpc_options = grpc_options

    def start(self, models: list) -> None:  # type: ignore[override]
        kserve_compat.serve_app(f"{__name__}:app")
        if self.workers == 1 and self.event_loop in ("auto", "uvloop"):
            kserve_compat.use_uvloop(required=self.event_loop == "uvloop")
        if self._grpc_enabled:
            self._grpc_server = PredictorGRPCServer(
                self.grpc_port, self.dataplane, self.model_repository_extension, kwargs=self._grpc_options
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        super().start(models)


class ClientErrorsWithoutTraceback(logging.Filter):
    """KServe logs every rejected request at ERROR with a traceback; bad input is the client's problem, so one
    WARNING line naming it is enough (a client sending garbage must not flood the logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, (InvalidInput, ModelNotFound)):
            record.msg, record.args, record.exc_info, record.exc_text = (
                f"{type(error).__name__}: {error}",
                (),
                None,
                None,
            )
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def log_config(per_request_logs: bool) -> dict[str, Any]:
    """KServe's log format; per-request lines (latency trace, access log) only when asked for."""
    config = copy.deepcopy(kserve_logging.KSERVE_LOG_CONFIG)
    config["filters"] = {"client_errors": {"()": f"{__name__}.ClientErrorsWithoutTraceback"}}
    config["loggers"]["kserve"]["filters"] = ["client_errors"]
    # tickserve's own lines (which runtime serves the model and why, signature warnings) in KServe's format.
    config["loggers"]["tickserve"] = {
        "handlers": config["loggers"]["kserve"]["handlers"],
        "level": "INFO",
        "propagate": False,
    }
    if not per_request_logs:
        config["loggers"]["kserve.trace"]["level"] = "WARNING"
        config["loggers"]["uvicorn.access"]["level"] = "WARNING"
    return config


def write_log_config(per_request_logs: bool) -> str:
    """As a file, because KServe's REST worker processes configure logging from a file path only."""
    handle, path = tempfile.mkstemp(prefix="tickserve-logging-", suffix=".json")
    with os.fdopen(handle, "w") as file:
        json.dump(log_config(per_request_logs), file)
    return path
