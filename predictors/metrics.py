"""Prometheus metrics KServe lacks, on KServe's own /metrics (the default registry).

Canary-rollback alert rules compare tracks, so every series carries model_name, model_version and track.
Names are part of the alerting contract: change them only together with the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client import Counter, Histogram

LABELS = ("model_name", "model_version", "track")


class Outcome(StrEnum):
    OK = "ok"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    OVERLOADED = "overloaded"  # refused before the model call because its queue was full: not a fault


REQUESTS = Counter(
    "tickserve_predictor_requests",
    "Inference requests by outcome: ok, client_error (4xx / INVALID_ARGUMENT), server_error (5xx / INTERNAL), "
    "overloaded (503 / UNAVAILABLE: queue full, refused before the model call).",
    (*LABELS, "outcome"),
)
REQUEST_DURATION = Histogram(
    "tickserve_predictor_request_duration_seconds",
    "Time from a decoded request to its response, including time queued for a micro-batch.",
    LABELS,
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
BATCH_SIZE = Histogram(
    "tickserve_predictor_batch_size",
    "Rows per model call after micro-batching.",
    LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)


@dataclass(frozen=True)
class ModelMetrics:
    """The label values of one loaded model version; creates its series at zero so rate() works at once.

    The labelled series are looked up once here: `labels()` per request costs more than the observation."""

    model_name: str
    model_version: str
    track: str
    _series: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for outcome in Outcome:
            self._series[outcome.value] = REQUESTS.labels(*self._values, outcome.value)
        self._series["duration"] = REQUEST_DURATION.labels(*self._values)
        self._series["batch"] = BATCH_SIZE.labels(*self._values)

    @property
    def _values(self) -> tuple[str, str, str]:
        return (self.model_name, self.model_version, self.track)

    def request(self, outcome: Outcome, seconds: float) -> None:
        self._series[outcome.value].inc()
        self._series["duration"].observe(seconds)

    def rejected(self) -> None:
        """A body that could not be decoded: a client error that never reached the model."""
        self._series[Outcome.CLIENT_ERROR.value].inc()

    def batch(self, rows: int) -> None:
        self._series["batch"].observe(rows)
