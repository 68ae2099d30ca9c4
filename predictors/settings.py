"""Typed predictor settings: environment (TICKSERVE_*) first, command-line flags override.

Kubernetes manifests set the environment (track, version, batching) per InferenceService, so the same image
serves stable and canary; flags exist for local runs and tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tickserve.settings import TickserveSettings, Track


class PredictorSettings(TickserveSettings):
    """Per-model serving behaviour. `threads=None` means: this process's share of the CPUs."""

    max_batch_size: int = Field(64, ge=1, description="rows coalesced into one model call; 1 disables batching")
    max_latency_ms: float = Field(
        0.0, ge=0, description="extra wait for a batch to fill under concurrent load; 0: only requests that queued"
    )
    max_request_rows: int = Field(4096, ge=1, description="rows one request may carry; more is a 400")
    max_request_bytes: int | None = Field(
        None,
        ge=1,
        description="largest REST body (and gRPC message) accepted, refused with 413 before it is read; "
        "default: max_request_rows rows of the model's inputs as JSON numbers (32 bytes a value) plus 1 MiB",
    )
    track: Track = Field("stable", description="rollout track, a metrics label")
    model_version: str | None = Field(None, description="overrides the version read from the MLmodel file")
    threads: int | None = Field(None, ge=1, description="framework intra-op threads per worker process")
    runtime: Literal["native", "pyfunc"] = Field(
        "native",
        description="native: the framework's own runtime wherever it serves the model exactly, mlflow.pyfunc "
        "otherwise; pyfunc: mlflow.pyfunc for every MLflow model (to compare, or to bypass a native runtime)",
    )
    onnx_tensorrt: bool = Field(False, description="let ONNX Runtime use TensorRT when present (slow first call)")
