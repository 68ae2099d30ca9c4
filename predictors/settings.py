"""Typed predictor settings: environment (TICKSERVE_*) first, command-line flags override.

Kubernetes manifests set the environment (track, version, batching) per InferenceService, so the same image
serves stable and canary; flags exist for local runs and tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PredictorSettings(BaseSettings):
    """Per-model serving behaviour. `threads=None` means: this process's share of the CPUs."""

    model_config = SettingsConfigDict(env_prefix="TICKSERVE_", extra="ignore")

    max_batch_size: int = Field(64, ge=1, description="rows coalesced into one model call; 1 disables batching")
    max_latency_ms: float = Field(
        0.0, ge=0, description="extra wait for a batch to fill under concurrent load; 0: only requests that queued"
    )
    max_request_rows: int = Field(4096, ge=1, description="rows one request may carry; more is a 400")
    track: Literal["stable", "canary"] = Field("stable", description="rollout track, a metrics label")
    model_version: str | None = Field(None, description="overrides the version read from the MLmodel file")
    threads: int | None = Field(None, ge=1, description="framework intra-op threads per worker process")
    onnx_tensorrt: bool = Field(False, description="let ONNX Runtime use TensorRT when present (slow first call)")


SETTINGS_FLAGS = tuple(PredictorSettings.model_fields)


def settings_from(overrides: dict[str, object]) -> PredictorSettings:
    """Environment values, overridden by the flags the caller actually passed (None means not passed)."""
    return PredictorSettings(**{key: value for key, value in overrides.items() if value is not None})
