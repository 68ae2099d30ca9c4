"""Errors the feature transformer answers with, each carrying its HTTP status, gRPC status and cause.

A strategy must be able to tell "Redis is down" from "the predictor is down" from "features are stale" from
"no such symbol" without parsing prose, so every error names its `cause`. The classes derive from
grpc-interceptor's exceptions, which KServe's gRPC server already maps to their status codes; the REST side
gets the same mapping through `add_rest_handlers`.
"""

from __future__ import annotations

from http import HTTPStatus

import orjson
from fastapi import Request, Response
from grpc_interceptor.exceptions import GrpcException, Internal, NotFound, Unavailable

from tickserve import kserve_compat


class TransformerError(GrpcException):
    """Base class: `details` is the message, `cause` a stable machine-readable word."""

    http_status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR
    cause: str = "internal"

    def __init__(self, details: str) -> None:
        super().__init__(details)

    def __str__(self) -> str:
        return self.details

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers the REST answer carries besides its JSON body."""
        return {}


class DependencyUnavailable(Unavailable, TransformerError):
    """Redis or the predictor cannot be reached after bounded retries; retrying later may succeed."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, cause: str, details: str) -> None:
        super().__init__(details)
        self.cause = cause


class BadPredictorAnswer(Internal, TransformerError):
    """The predictor answered our request with an error (a signature or deployment mismatch): a bad gateway."""

    http_status = HTTPStatus.BAD_GATEWAY
    cause = "predictor_rejected"


class StaleFeatures(Unavailable, TransformerError):
    """Features are older than the configured maximum age: refused rather than silently served."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    cause = "stale_features"


class Overloaded(Unavailable, TransformerError):
    """The transformer already holds as many requests as it may (in flight or queued): refused at once so that
    the requests it holds keep their latency; a client should retry after `retry_after_seconds` or elsewhere."""

    http_status = HTTPStatus.SERVICE_UNAVAILABLE
    cause = "overloaded"

    def __init__(self, details: str, retry_after_seconds: int) -> None:
        super().__init__(details)
        self.retry_after_seconds = retry_after_seconds

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds)}


class UnknownSymbol(NotFound, TransformerError):
    """No hot features exist for a requested symbol."""

    http_status = HTTPStatus.NOT_FOUND
    cause = "unknown_symbol"


def rest_error_response(exc: TransformerError) -> Response:
    """The REST answer to `exc`: its status, headers and `{"error": details, "cause": cause}`."""
    body = orjson.dumps({"error": exc.details, "cause": exc.cause})
    return Response(body, status_code=exc.http_status, headers=exc.headers, media_type="application/json")


async def _rest_handler(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, TransformerError)
    return rest_error_response(exc)


def add_rest_handlers() -> None:
    """Map TransformerError to its HTTP status on KServe's FastAPI app (KServe would answer 500 otherwise)."""
    kserve_compat.add_exception_handler(TransformerError, _rest_handler)
