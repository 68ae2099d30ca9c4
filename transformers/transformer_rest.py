"""POST /v2/models/{name}/infer for the transformer without KServe's FastAPI body model.

KServe's route validates a JSON body with pydantic, converts it again into its own types, then re-validates
and re-encodes the response: at 1,000 requests/s that costs more than the transformer's own work. This route
decodes the raw body once (the predictor's `wire` decoder: JSON or the binary extension, bad input a 400) and
writes the response with orjson. Registered before KServe adds its routes, so it is the one that answers.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, Response
from kserve.errors import ModelNotFound
from tickserve.predictors.wire import decode_rest_body, rest_response
from tickserve.transformers.transformer import FeatureTransformer


def add_infer_route(app: FastAPI, transformer: FeatureTransformer) -> None:
    async def infer(request: Request, model_name: str) -> Response:
        if model_name != transformer.name:
            raise ModelNotFound(model_name)
        headers = dict(request.headers)
        infer_request = decode_rest_body(await request.body(), headers, model_name)
        response, _ = await transformer(infer_request, headers)
        return rest_response(response)

    app.add_api_route("/v2/models/{model_name}/infer", infer, methods=["POST"])
