"""Typed settings of the feature transformer: environment variables `TICKSERVE_<NAME>`, or `--<name>` flags.

KServe's own transformer flags (`--model_name`, `--predictor_host`, `--predictor_protocol`, ports, timeouts)
stay KServe's; these are the tickserve-specific ones.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from tickserve.settings import RedisSettings, Track

_HORIZON = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def horizon_seconds(label: str) -> float:
    """'90s', '15m', '4h', '1d' -> seconds of event time after the feature timestamp the horizon is judged at."""
    match = _HORIZON.match(label)
    if match is None:
        raise ValueError(f"horizon {label!r} is not <number><s|m|h|d>, e.g. 1h")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class TransformerSettings(RedisSettings):
    """The feature transformer's own settings; the Redis ones are shared with ingest and the monitor."""

    horizons: dict[str, str] = Field(
        {"1h": "signal-1h"}, description='horizon label -> predictor model name, JSON, e.g. {"1h": "signal-1h"}'
    )
    predictor_hosts: dict[str, str] = Field(
        {}, description="predictor model name -> host:port where it differs from --predictor_host, JSON"
    )
    default_horizon: str | None = Field(None, description="horizon used when a request names none (default: first)")
    track: Track = Field("stable", description="rollout track of this deployment, recorded per prediction")
    max_symbols: int = Field(1024, gt=0, description="symbols one request may name; more is a 400")
    max_feature_age_seconds: float = Field(
        300.0, gt=0, description="features whose bar is older than this (event time vs now) are refused"
    )
    prediction_cache_ttl_seconds: float = Field(300.0, gt=0, description="lifetime of a cached prediction")
    stream_maxlen: int = Field(100_000, gt=0, description="approximate cap of the predictions stream")
    dependency_attempts: int = Field(3, ge=1, description="attempts per Redis or predictor call before a 503")
    retry_wait_seconds: float = Field(0.02, ge=0, description="first wait between attempts (doubles each time)")
    retry_max_wait_seconds: float = Field(
        0.2, ge=0, description="longest wait between attempts: a request waits at most this long per retry"
    )
    predictor_calls_in_flight: int = Field(
        4, ge=1, description="concurrent calls per predictor; misses arriving meanwhile share the next call"
    )
    predictor_call_rows: int = Field(256, ge=1, description="most rows (symbols) one predictor call carries")
    max_requests_held: int = Field(
        64,
        ge=1,
        description="requests admitted and not yet answered (running or queued for the predictor); past it a "
        "request is refused at once with 503 overloaded and Retry-After, so admitted ones keep their latency",
    )
    overload_retry_after_seconds: int = Field(1, ge=0, description="Retry-After of an overloaded refusal")

    @field_validator("horizons")
    @classmethod
    def _horizons_parse(cls, horizons: dict[str, str]) -> dict[str, str]:
        if not horizons:
            raise ValueError("at least one horizon is needed")
        for label in horizons:
            horizon_seconds(label)
        return horizons

    @model_validator(mode="after")
    def _default_is_known(self) -> TransformerSettings:
        if self.default_horizon is None:
            self.default_horizon = next(iter(self.horizons))
        elif self.default_horizon not in self.horizons:
            raise ValueError(f"default_horizon {self.default_horizon!r} is not one of {sorted(self.horizons)}")
        return self
