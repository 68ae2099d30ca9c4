"""The predictor benchmark's load generator against a real tickserve predictor: its counts must match the
server's own request counters, and answers that are not 2xx must come back as errors, never as throughput."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tiers import require_binary

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))  # benchmarks/ is a folder of scripts, not a package

import predictors_models  # noqa: E402
from bench_predictors import rounded, v2_body  # noqa: E402
from loadgen import run_wrk  # noqa: E402
from predictors_servers import tickserve_predictor  # noqa: E402

CONCURRENCY = 4


@pytest.fixture(scope="module")
def bench_lightgbm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The benchmark's own LightGBM model (MLflow layout), built once."""
    mlflow_dir, _ = predictors_models.build_lightgbm(tmp_path_factory.mktemp("bench-models"))
    return mlflow_dir


def served(metrics_url: str, outcome: str) -> float:
    """tickserve_predictor_requests_total for one outcome, summed over models and tracks."""
    text = httpx.get(metrics_url, timeout=5.0).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "tickserve_predictor_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome
    )


def settled(metrics_url: str, outcome: str) -> float:
    """The counter once in-flight requests wrk abandoned at its deadline have been answered."""
    previous = served(metrics_url, outcome)
    for _ in range(20):
        time.sleep(0.1)
        current = served(metrics_url, outcome)
        if current == previous:
            return current
        previous = current
    return previous


@pytest.mark.integration
@pytest.mark.parametrize(
    ("input_name", "outcome"),
    [("features", "ok"), ("not_the_input", "client_error")],
    ids=["valid-body", "rejected-body"],
)
def test_wrk_counts_match_the_server(bench_lightgbm_dir: Path, tmp_path: Path, input_name: str, outcome: str) -> None:
    require_binary("wrk")
    endpoint = tickserve_predictor(bench_lightgbm_dir, tmp_path, name="lgbm", workers=1)
    body = v2_body(input_name, rounded(predictors_models.synthetic_features(1)))
    metrics_url = endpoint.infer_url.split("/v2/")[0] + "/metrics"
    with endpoint.process:
        before = served(metrics_url, outcome)
        result = run_wrk(endpoint.infer_url, body, concurrency=CONCURRENCY, duration_s=2)
        counted = settled(metrics_url, outcome) - before

    assert result.requests > 0
    # The server may also have answered requests still in flight when wrk stopped reading: at most one per
    # connection.
    assert result.requests <= counted <= result.requests + CONCURRENCY
    if outcome == "ok":
        assert result.errors == 0
        assert result.successful_per_s == pytest.approx(result.requests / result.duration_s)
    else:
        assert result.errors == result.requests
        assert result.successful_per_s == 0
    assert 0 < result.p50_ms <= result.p99_ms
    assert np.isfinite(result.p99_ms)
