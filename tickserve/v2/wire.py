"""Decoding v2 request bodies from the wire, where KServe's own decoding turns bad input into 500s, and writing
v2 REST responses (predictor and transformer alike).

REST binary extension: the JSON header (Inference-Header-Content-Length bytes) is followed by each binary
input's bytes; they are kept as bytes and viewed by numpy later, never converted to Python lists.
gRPC: the ModelInferRequest protobuf is parsed here so that a malformed message is INVALID_ARGUMENT.
A REST body over the server's limit is refused (413) before it is read (`read_body`), not read and parsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from google.protobuf.message import DecodeError
from kserve.errors import InvalidInput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferInput, InferRequest, InferResponse, RequestedOutput
from pydantic import BaseModel, ValidationError

INFERENCE_HEADER = "inference-header-content-length"


class RequestTooLarge(Exception):
    """A request body over the limit: HTTP 413, answered without reading the rest of the body."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed `limit` bytes: from Content-Length before any byte is
    read, else (chunked transfer, or a Content-Length that lies) while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None  # absent when the tensor travels as binary after the JSON header


class _Output(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class _Header(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[_Tensor]
    outputs: list[_Output] | None = None


def decode_rest_body(body: bytes, headers: dict[str, str], model_name: str) -> InferRequest:
    """A v2 REST body: plain JSON, or JSON header + binary tensors when the binary extension header is set."""
    length_header = headers.get(INFERENCE_HEADER)
    if length_header is None:
        json_length = len(body)
    else:
        try:
            json_length = int(length_header)
        except ValueError:
            raise InvalidInput(f"header Inference-Header-Content-Length={length_header!r} is not a number") from None
        if not 0 < json_length <= len(body):
            raise InvalidInput(
                f"header Inference-Header-Content-Length={json_length} does not fit a body of {len(body)} bytes"
            )
    try:
        header = _Header.model_validate_json(body[:json_length])
    except ValidationError as error:
        raise InvalidInput(f"malformed v2 inference request: {pydantic_problems(error.errors())}") from None
    inputs, offset = [], json_length
    for tensor in header.inputs:
        parameters = tensor.parameters or {}
        infer_input = InferInput(tensor.name, list(tensor.shape), tensor.datatype, parameters=parameters)
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(body):
                raise InvalidInput(
                    f"input '{tensor.name}': binary_data_size={size!r} does not fit the {len(body) - offset} "
                    "binary bytes left in the body"
                )
            infer_input._raw_data = body[offset : offset + size]  # read by codec.tensor_array
            offset += size
        elif tensor.data is not None:
            infer_input.data = tensor.data
        else:
            raise InvalidInput(f"input '{tensor.name}' has neither 'data' nor binary_data_size")
        inputs.append(infer_input)
    if offset != len(body):
        raise InvalidInput(f"{len(body) - offset} bytes after the last binary input are not claimed by any input")
    outputs = [RequestedOutput(output.name, output.parameters or {}) for output in header.outputs or []]
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=header.id,
        parameters=header.parameters,
        request_outputs=outputs or None,
    )


def rest_response(response: InferResponse) -> Response:
    """The v2 REST answer: JSON written by orjson, or JSON header + binary outputs when the client asked for them."""
    body, json_length = response.to_rest()
    if json_length is None:
        return Response(orjson.dumps(body), media_type="application/json")
    return Response(body, media_type="application/octet-stream", headers={INFERENCE_HEADER: str(json_length)})


def decode_grpc_message(raw: bytes) -> pb.ModelInferRequest:
    try:
        return pb.ModelInferRequest.FromString(raw)
    except DecodeError as error:
        raise InvalidInput(f"malformed ModelInferRequest protobuf: {error}") from None


def grpc_to_infer_request(message: pb.ModelInferRequest) -> InferRequest:
    """KServe's conversion, with its failures on inconsistent messages reported as bad input."""
    if message.raw_input_contents and len(message.raw_input_contents) != len(message.inputs):
        raise InvalidInput(
            f"{len(message.inputs)} inputs but {len(message.raw_input_contents)} raw_input_contents entries"
        )
    try:
        return InferRequest.from_grpc(message)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InvalidInput(f"malformed ModelInferRequest: {error}") from None


def pydantic_problems(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's (or FastAPI's) validation errors as one line: `location: message (cause)` per problem."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem.get('loc', ())) or 'body'}: {problem.get('msg')}"
        + (
            f" ({problem['ctx']['error']})"
            if isinstance(problem.get("ctx"), dict) and "error" in problem["ctx"]
            else ""
        )
        for problem in errors
    )
