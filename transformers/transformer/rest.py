"""POST /v2/models/{name}/infer for the transformer, answered by `tickserve.v2.fast_path.InferFastPath`.

KServe's route validates a JSON body with pydantic, converts it again into its own types, then re-validates
and re-encodes the response, behind FastAPI's middleware and routing: at 1,000 requests/s that costs more
than the transformer's own work. This handler decodes the raw body once (the predictor's `wire` decoder:
JSON or the binary extension, bad input a 400) and writes the response with orjson.

Load shedding comes first: the handler takes its admission place (or is refused, 503 `overloaded`) before it
reads or decodes the body, so a refusal costs the routing and the error response only. `TimedRefusals` records
each refusal's time in the server (`tickserve_transformer_refusal_seconds`), from the app receiving the request
(headers parsed) to the 503 handed to the connection: a client's figure adds the network and any wait for the
event loop before the request reached the app.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from fastapi import Request, Response
from kserve.errors import ModelNotFound
from prometheus_client import Histogram

from tickserve import kserve_compat
from tickserve.transformers.transformer.errors import Overloaded, rest_error_response
from tickserve.transformers.transformer.model import FeatureTransformer
from tickserve.v2.fast_path import InferFastPath
from tickserve.v2.wire import decode_rest_body, rest_response

REFUSAL_SECONDS = Histogram(
    "tickserve_transformer_refusal_seconds",
    "Server-side time of an overloaded refusal: app received the request (headers parsed) -> 503 handed to the "
    "connection",
    buckets=(0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)
REFUSED = "tickserve.refused"  # scope key `infer` sets on an overloaded refusal, for `TimedRefusals`

app: Any = None  # what uvicorn serves, once `serve_transformer` has run


async def infer(transformer: FeatureTransformer, request: Request, model_name: str) -> Response:
    if model_name != transformer.name:
        raise ModelNotFound(model_name)
    try:
        with transformer.admitted():  # before the body is read: a refusal parses nothing
            headers = dict(request.headers)
            infer_request = decode_rest_body(await request.body(), headers, model_name)
            response, _ = await transformer.serve(infer_request, headers)
    except Overloaded as refusal:
        request.scope[REFUSED] = True
        return rest_error_response(refusal)  # what the app's handler would answer, without looking it up
    return rest_response(response)


class TimedRefusals:
    """ASGI wrapper that observes `REFUSAL_SECONDS` for the requests `infer` refused as overloaded."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        started = time.perf_counter()
        await self.app(scope, receive, send)
        if scope.get(REFUSED):
            REFUSAL_SECONDS.observe(time.perf_counter() - started)


def serve_transformer(transformer: FeatureTransformer) -> None:
    """Have the ModelServer about to start answer infer requests through `infer` (single process only: the
    transformer object lives in this one), and close the transformer's connections when it shuts down."""
    global app
    app = TimedRefusals(InferFastPath(kserve_compat.kserve_app(), infer=partial(infer, transformer)))
    kserve_compat.on_shutdown(transformer.close)
    kserve_compat.serve_app(f"{__name__}:app")
