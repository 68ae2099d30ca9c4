"""The v2 infer fast path shared by the predictor and the transformer servers.

`InferFastPath` answers POST /v2/models/{name}/infer before KServe's FastAPI app sees the request: its
middleware (KServe's timing middleware, FastAPI's telemetry and body-limit layers), route matching,
dependency solving and pydantic body model cost more CPU than a 1-row LightGBM call or a cached transformer
answer. Errors still become the responses of the app's exception handlers, and every other request goes
to the app unchanged.

`tickserve.kserve_compat.serve_app` points KServe's uvicorn (and its worker processes) at such a wrapper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

InferHandler = Callable[[Request, str], Awaitable[Response]]


class InferFastPath:
    """ASGI app around KServe's FastAPI app: POST /v2/models/{name}/infer goes to `infer(request, name)`,
    everything else (lifespan, health, metadata, repository ...) to the app. An error becomes the response
    the app's exception handler for its class makes of it (KServe's: InvalidInput -> 400, ModelNotFound ->
    404, anything else -> 500 naming the error)."""

    PREFIX, SUFFIX = "/v2/models/", "/infer"

    def __init__(self, app: FastAPI, infer: InferHandler) -> None:
        self.app = app
        self.infer = infer

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") != "POST" or not path.endswith(self.SUFFIX):
            return await self.app(scope, receive, send)
        model_name = path[len(self.PREFIX) : -len(self.SUFFIX)]
        if not path.startswith(self.PREFIX) or not model_name or "/" in model_name:
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            response = await self.infer(request, model_name)
        except Exception as error:
            handler = handler_for(self.app.exception_handlers, error)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)


def handler_for(handlers: dict[Any, Any], error: Exception) -> Any:
    """The exception handler for `error`'s class, most specific first (Starlette's lookup)."""
    for cls in type(error).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
