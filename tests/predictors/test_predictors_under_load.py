"""Behaviour under concurrency, with real servers: micro-batching returns each caller its own rows (the same as
unbatched), a failing request does not fail its batch, health answers while the model is saturated, hot reload
swaps versions with zero failed requests, and the metrics carry the labels alert rules select on."""

from __future__ import annotations

import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub
from predictor_models import feature_rows, save_lightgbm_mlflow, save_plain_torchscript, slow_module, train_booster

from tickserve.launch import metric_sum

pytestmark = pytest.mark.integration


def infer_rows(predictor, rows: np.ndarray) -> np.ndarray:
    client = triton_http.InferenceServerClient(predictor.http)
    tensor = triton_http.InferInput("features", list(rows.shape), "FP64")
    tensor.set_data_from_numpy(rows)
    return client.infer(predictor.model_name, [tensor]).as_numpy("probabilities")


def test_batched_results_equal_unbatched(start_predictor, lightgbm_dir, booster) -> None:
    requests = [feature_rows(1 + i % 4, seed=100 + i) for i in range(32)]
    batching = ("--max_latency_ms", "20", "--max_batch_size", "64")
    with start_predictor(lightgbm_dir, name="batched", args=batching) as batched:
        with ThreadPoolExecutor(16) as pool:
            batched_results = list(pool.map(lambda rows: infer_rows(batched, rows), requests))
        samples = batched.metrics_text()
    with start_predictor(lightgbm_dir, name="unbatched", args=("--max_batch_size", "1")) as unbatched:
        unbatched_results = [infer_rows(unbatched, rows) for rows in requests]
    for rows, from_batch, alone in zip(requests, batched_results, unbatched_results, strict=True):
        np.testing.assert_array_equal(from_batch, alone)
        np.testing.assert_allclose(from_batch[:, 1], booster.predict(rows), rtol=1e-6)
    labels = {"model_name": "batched", "model_version": "3", "track": "stable"}
    model_calls = metric_sum(samples, "tickserve_predictor_batch_size_count", **labels)
    assert metric_sum(samples, "tickserve_predictor_batch_size_sum", **labels) == sum(len(rows) for rows in requests)
    assert model_calls < len(requests), "concurrent requests were never coalesced"


def test_a_failing_request_does_not_fail_the_others_in_its_batch(start_predictor, guarded_dir) -> None:
    values = [1.0, 2.0, 3.0, -1.0, 4.0, 5.0, 6.0, 7.0]
    blocker_rows = 16384  # ~1 s of model work here: still running when the small requests arrive 0.3 s later
    args = ("--max_latency_ms", "50", "--max_request_rows", str(blocker_rows))
    with start_predictor(guarded_dir, name="guarded", args=args) as guarded:

        def call(v: float, rows: int = 1) -> httpx.Response:
            body = {"inputs": [{"name": "x", "shape": [rows, 2], "datatype": "FP32", "data": [v, v] * rows}]}
            return httpx.post(f"{guarded.url}/v2/models/guarded/infer", json=body, timeout=60)

        with ThreadPoolExecutor(len(values) + 1) as pool:
            blocker = pool.submit(call, 0.5, blocker_rows)  # keeps the model busy: small requests queue into one batch
            time.sleep(0.3)
            responses = list(pool.map(call, values))
            assert blocker.result().status_code == 200
        samples = guarded.metrics_text()
    for v, response in zip(values, responses, strict=True):
        if v < 0:
            assert response.status_code == 500 and "negative input" in response.text
        else:
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == [2 * v, 2 * v]
    rows_tried = metric_sum(
        samples, "tickserve_predictor_batch_size_sum", model_name="guarded", model_version="1", track="stable"
    )
    assert rows_tried > blocker_rows + len(values), (
        "the failing request never shared a batch (no batch was retried row by row)"
    )


def test_health_answers_while_the_model_is_saturated(start_predictor, tmp_path) -> None:
    # A call of about a third of a second: GIL hand-offs delay a health check by tens of milliseconds.
    slow_dir = save_plain_torchscript(tmp_path / "slower", slow_module(iterations=400), example=None)
    body = {"inputs": [{"name": "x", "shape": [256, 256], "datatype": "FP32", "data": [0.01] * 256 * 256}]}
    with start_predictor(slow_dir, name="slow", args=("--max_batch_size", "1")) as slow:
        started = time.monotonic()
        assert httpx.post(f"{slow.url}/v2/models/slow/infer", json=body, timeout=120).status_code == 200
        one_call = time.monotonic() - started
        with ThreadPoolExecutor(4) as pool:
            inferences = [
                pool.submit(httpx.post, f"{slow.url}/v2/models/slow/infer", json=body, timeout=120) for _ in range(4)
            ]
            time.sleep(min(one_call / 2, 1.0))
            health_latencies = []
            while not all(future.done() for future in inferences):
                for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/slow/ready"):
                    started = time.monotonic()
                    assert httpx.get(f"{slow.url}{path}", timeout=30).status_code == 200
                    health_latencies.append(time.monotonic() - started)
            assert all(future.result().status_code == 200 for future in inferences)
    # Four queued calls keep the model busy for about 4 x one_call. Were inference on the event loop, a health
    # check would wait for the running call, half a call on average; off the loop it waits for nothing. The
    # median separates the two without tripping on one check delayed by the GIL on a busy machine.
    assert len(health_latencies) >= 6
    assert statistics.median(health_latencies) < one_call / 4


def test_hot_reload_under_load_fails_no_request(start_predictor, tmp_path) -> None:
    first, second = train_booster(seed=1), train_booster(seed=7, rounds=30)
    save_lightgbm_mlflow(tmp_path / "v1", first, version="1")
    save_lightgbm_mlflow(tmp_path / "v2", second, version="2")
    (tmp_path / "broken").mkdir()
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "v1")
    rows = feature_rows(3, seed=9)

    def point_at(version_dir: str) -> None:  # what a storage sync does: swap the directory atomically
        link = tmp_path / "next"
        link.symlink_to(tmp_path / version_dir)
        os.replace(link, current)

    with start_predictor(current, name="signal") as predictor:
        stop, failures, seen = threading.Event(), [], {}

        def keep_calling(worker: int) -> None:
            """Alternates REST (tritonclient.http) and gRPC (KServe's stub) calls until told to stop."""
            versions = seen.setdefault(worker, [])
            http = triton_http.InferenceServerClient(predictor.http)
            tensor = triton_http.InferInput("features", list(rows.shape), "FP64")
            tensor.set_data_from_numpy(rows)
            grpc_tensor = pb.ModelInferRequest.InferInputTensor(
                name="features", datatype="FP64", shape=list(rows.shape)
            )
            grpc_request = pb.ModelInferRequest(
                model_name="signal", inputs=[grpc_tensor], raw_input_contents=[rows.tobytes()]
            )
            with grpc.insecure_channel(predictor.grpc) as channel:
                stub = GRPCInferenceServiceStub(channel)
                while not stop.is_set():
                    try:
                        if len(versions) % 2:
                            versions.append(http.infer("signal", [tensor]).get_response()["model_version"])
                        else:
                            versions.append(stub.ModelInfer(grpc_request, timeout=30).model_version)
                    except Exception as error:
                        failures.append(repr(error))

        with ThreadPoolExecutor(4) as pool:
            workers = [pool.submit(keep_calling, worker) for worker in range(4)]
            time.sleep(1.0)
            point_at("v2")
            reload = httpx.post(f"{predictor.url}/v2/repository/models/signal/load", timeout=60)
            time.sleep(1.0)
            point_at("broken")
            broken = httpx.post(f"{predictor.url}/v2/repository/models/signal/load", timeout=60)
            time.sleep(0.5)
            stop.set()
            for worker in workers:
                worker.result()
        unknown = httpx.post(f"{predictor.url}/v2/repository/models/nosuchmodel/load", timeout=60)
        after = infer_rows(predictor, rows)
        ready_after = httpx.get(f"{predictor.url}/v2/models/signal/ready").status_code

    assert reload.status_code == 200, reload.text
    assert broken.status_code == 503 and "no model file" in broken.text  # the bad version is refused ...
    assert unknown.status_code == 404
    assert failures == []
    for versions in seen.values():
        assert versions, "a worker never got an answer"
        assert versions == sorted(versions), f"went back to an old version after the swap: {versions}"
    assert {v for versions in seen.values() for v in versions} == {"1", "2"}
    np.testing.assert_allclose(after[:, 1], second.predict(rows), rtol=1e-6)  # ... and the good one keeps serving
    assert ready_after == 200


def test_metrics_count_outcomes_with_model_version_and_track(lightgbm_server) -> None:
    labels = {"model_name": "signal", "model_version": "3", "track": "canary"}
    before = lightgbm_server.metrics_text()
    url = f"{lightgbm_server.url}/v2/models/signal/infer"
    good = {"inputs": [{"name": "features", "shape": [2, 6], "datatype": "FP64", "data": [0.3] * 12}]}
    wrong_name = {"inputs": [{"name": "feats", "shape": [2, 6], "datatype": "FP64", "data": [0.3] * 12}]}
    for _ in range(3):
        answer = httpx.post(url, json=good)
        assert answer.status_code == 200
        assert answer.json()["parameters"] == {"track": "canary"}  # callers learn which track answered
    for _ in range(2):
        assert httpx.post(url, json=wrong_name).status_code == 400
    assert httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 400
    after = lightgbm_server.metrics_text()

    def delta(name: str, **extra: str) -> float:
        return metric_sum(after, name, **labels, **extra) - metric_sum(before, name, **labels, **extra)

    assert delta("tickserve_predictor_requests_total", outcome="ok") == 3
    assert delta("tickserve_predictor_requests_total", outcome="client_error") == 3  # wrong name x2, unparsable body
    assert delta("tickserve_predictor_requests_total", outcome="server_error") == 0
    assert delta("tickserve_predictor_request_duration_seconds_count") == 5  # bodies that never reached the model: none
    assert delta("tickserve_predictor_batch_size_sum") == 6


def test_several_rest_workers_serve_and_report_one_set_of_metrics(start_predictor, lightgbm_dir, booster) -> None:
    rows = feature_rows(2, seed=21)
    with start_predictor(lightgbm_dir, name="workers", args=("--workers", "2")) as predictor:
        for _ in range(12):  # a new connection each time, so both worker processes take some
            np.testing.assert_allclose(infer_rows(predictor, rows)[:, 1], booster.predict(rows), rtol=1e-6)
        samples = predictor.metrics_text()
    labels = {"model_name": "workers", "model_version": "3", "track": "stable"}
    assert metric_sum(samples, "tickserve_predictor_requests_total", **labels, outcome="ok") == 12
