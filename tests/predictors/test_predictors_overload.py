"""An overloaded predictor refuses at once instead of queueing without bound, with a real server: once its queue
holds QUEUED_BATCHES full batches of rows, a request is answered 503 `overloaded` with Retry-After (gRPC
UNAVAILABLE) before any model call, and counted as outcome `overloaded`, apart from `server_error`, so the
canary alert rules do not take a merely busy canary for a broken one."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from tickserve.launch import metric_sum

pytestmark = pytest.mark.integration
BLOCKER_ROWS = 16384  # ~1 s of model work (guarded_module): the queue stays full while the small requests arrive


def body(rows: int) -> dict:
    return {"inputs": [{"name": "x", "shape": [rows, 2], "datatype": "FP32", "data": [1.0, 1.0] * rows}]}


def grpc_small(target: str) -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        tensor = pb.ModelInferRequest.InferInputTensor(name="x", datatype="FP32", shape=[1, 2])
        raw = np.ones((1, 2), dtype="<f4").tobytes()
        request = pb.ModelInferRequest(model_name="guarded", inputs=[tensor], raw_input_contents=[raw])
        try:
            GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        except grpc.RpcError as error:
            return error.code()
        return grpc.StatusCode.OK


def test_a_full_queue_refuses_before_the_model_call_and_counts_overloaded(start_predictor, guarded_dir) -> None:
    args = ("--max_batch_size", "2", "--max_request_rows", str(BLOCKER_ROWS))  # queue bound: 4 batches = 8 rows
    with start_predictor(guarded_dir, name="guarded", args=args) as guarded:
        url = f"{guarded.url}/v2/models/guarded/infer"
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(httpx.post, url, json=body(BLOCKER_ROWS), timeout=60)
            time.sleep(0.3)
            queued = pool.submit(httpx.post, url, json=body(BLOCKER_ROWS), timeout=60)
            time.sleep(0.3)
            refusals = []
            for _ in range(4):
                started = time.perf_counter()
                answer = httpx.post(url, json=body(1), timeout=60)
                refusals.append((answer, time.perf_counter() - started))
            grpc_code = grpc_small(guarded.grpc)
            blockers = [running.result(), queued.result()]
        samples = guarded.metrics_text()
    assert [answer.status_code for answer in blockers] == [200, 200], [answer.text[:200] for answer in blockers]
    for answer, seconds in refusals:
        assert answer.status_code == 503, answer.text
        assert answer.json()["cause"] == "overloaded"
        assert answer.headers["retry-after"] == "1"
        assert seconds < 0.5, f"a refusal took {seconds:.3f} s: it waited for the model"
    assert grpc_code == grpc.StatusCode.UNAVAILABLE
    labels = {"model_name": "guarded"}
    outcomes = {
        outcome: metric_sum(samples, "tickserve_predictor_requests_total", outcome=outcome, **labels)
        for outcome in ("ok", "overloaded", "server_error")
    }
    assert outcomes == {"ok": 2, "overloaded": len(refusals) + 1, "server_error": 0}
    assert metric_sum(samples, "tickserve_predictor_batch_size_count", **labels) == 2, "a refusal reached the model"
