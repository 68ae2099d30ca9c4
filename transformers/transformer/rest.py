"""POST /v2/models/{name}/infer for the transformer, answered by `tickserve.v2.fast_path.InferFastPath`.

KServe's route validates a JSON body with pydantic, converts it again into its own types, then re-validates
and re-encodes the response, behind FastAPI's middleware and routing: at 1,000 requests/s that costs more
than the transformer's own work. This handler decodes the raw body once (the predictor's `wire` decoder:
JSON or the binary extension, bad input a 400) and writes the response with orjson.
"""

from __future__ import annotations

from functools import partial

from fastapi import Request, Response
from kserve.errors import ModelNotFound

from tickserve import kserve_compat
from tickserve.transformers.transformer.model import FeatureTransformer
from tickserve.v2.fast_path import InferFastPath
from tickserve.v2.wire import decode_rest_body, rest_response

app: InferFastPath | None = None  # what uvicorn serves, once `serve_transformer` has run


async def infer(transformer: FeatureTransformer, request: Request, model_name: str) -> Response:
    if model_name != transformer.name:
        raise ModelNotFound(model_name)
    headers = dict(request.headers)
    infer_request = decode_rest_body(await request.body(), headers, model_name)
    response, _ = await transformer(infer_request, headers)
    return rest_response(response)


def serve_transformer(transformer: FeatureTransformer) -> None:
    """Have the ModelServer about to start answer infer requests through `infer` (single process only: the
    transformer object lives in this one), and close the transformer's connections when it shuts down."""
    global app
    app = InferFastPath(kserve_compat.kserve_app(), infer=partial(infer, transformer))
    kserve_compat.on_shutdown(transformer.close)
    kserve_compat.serve_app(f"{__name__}:app")
