"""Concurrent cache misses share predictor calls (the predictor here is a plain function recording its calls;
the real predictor behind it is exercised by the integration tests)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tickserve.transformers.transformer.predictor_batching import CoalescingCaller
from tickserve.transformers.transformer.predictor_client import PredictorOutput


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    async def __call__(self, matrix: np.ndarray) -> PredictorOutput:
        self.calls.append(len(matrix))
        await asyncio.sleep(0.01)
        if self.fail:
            raise RuntimeError("predictor down")
        up = matrix[:, 0]
        return PredictorOutput(np.stack([1 - up, up], axis=1), "9")


def rows(*values: float) -> np.ndarray:
    return np.array([[value] for value in values], dtype=np.float32)


async def test_requests_arriving_together_share_one_call() -> None:
    predictor = Recorder()
    caller = CoalescingCaller(predictor, max_in_flight=4, max_rows=256)
    outputs = await asyncio.gather(caller(rows(0.1)), caller(rows(0.2, 0.3)), caller(rows(0.4)))

    assert predictor.calls == [4]
    split = [output.probabilities[:, 1].tolist() for output in outputs]
    assert split == [pytest.approx([0.1]), pytest.approx([0.2, 0.3]), pytest.approx([0.4])]
    assert {output.model_version for output in outputs} == {"9"}


async def test_requests_arriving_during_a_call_share_the_next_one() -> None:
    predictor = Recorder()
    caller = CoalescingCaller(predictor, max_in_flight=1, max_rows=256)
    first = asyncio.create_task(caller(rows(0.1)))
    await asyncio.sleep(0.002)  # the first call is in flight
    await asyncio.gather(caller(rows(0.2, 0.3)), caller(rows(0.4)), first)
    assert predictor.calls == [1, 3]


async def test_an_idle_caller_sends_each_request_at_once() -> None:
    predictor = Recorder()
    caller = CoalescingCaller(predictor, max_in_flight=4, max_rows=256)
    for value in (0.1, 0.2):
        await caller(rows(value))
    assert predictor.calls == [1, 1]


async def test_batches_respect_the_row_limit() -> None:
    predictor = Recorder()
    caller = CoalescingCaller(predictor, max_in_flight=1, max_rows=2)
    await asyncio.gather(*(caller(rows(0.5)) for _ in range(5)))
    assert predictor.calls == [2, 2, 1]


async def test_a_failed_call_fails_every_request_in_it() -> None:
    caller = CoalescingCaller(Recorder(fail=True), max_in_flight=1, max_rows=256)
    results = await asyncio.gather(caller(rows(0.1)), caller(rows(0.2)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    with pytest.raises(RuntimeError, match="predictor down"):
        await caller(rows(0.3))
