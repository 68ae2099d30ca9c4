"""What the predictor and the transformer servers share on top of KServe's ModelServer.

- `InferFastPath` answers POST /v2/models/{name}/infer before KServe's FastAPI app sees the request: its
  middleware (KServe's timing middleware, FastAPI's telemetry and body-limit layers), route matching,
  dependency solving and pydantic body model cost more CPU than a 1-row LightGBM call or a cached transformer
  answer. Errors still become the responses of the app's exception handlers, and every other request goes
  to the app unchanged.
- `serve_app` points KServe's uvicorn (and its worker processes) at such a wrapper.
- `use_uvloop` makes KServe's single-process server run on uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from kserve import model_server

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


def serve_app(import_string: str) -> None:
    """Make KServe's ModelServer serve the ASGI app at `import_string` ("module:attribute") instead of its
    FastAPI app. KServe hands uvicorn an import string (worker processes import it afresh), read from this
    module constant when the server starts; KServe still sets up its FastAPI app, which the wrapper calls."""
    model_server.FASTAPI_APP_IMPORT_STRING = import_string


def use_uvloop(*, required: bool) -> None:
    """With one worker KServe serves REST inside its own asyncio.run(), whatever --event_loop says (uvicorn picks
    uvloop only for the worker processes it starts): make that run use uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        if required:
            raise
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # KServe's setup_event_loop() calls get_event_loop() before asyncio.run(), which uvloop >= 0.22 refuses
    # without a current loop (asyncio itself would quietly make one, as this does).
    asyncio.set_event_loop(asyncio.new_event_loop())
