"""Concurrent cache misses share predictor calls: rows that queue up while calls are in flight go out together.

No timer: an idle transformer sends every request at once, and batches form only under load, where they
save a predictor round trip (and its per-call overhead on both sides) for every row that joins one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import numpy as np

from tickserve.transformers.transformer.predictor_client import PredictorOutput


class CoalescingCaller:
    """At most `max_in_flight` concurrent `call`s; rows queued meanwhile leave together, `max_rows` per call
    (the transformer's `predictor_calls_in_flight` and `predictor_call_rows` settings)."""

    def __init__(
        self, call: Callable[[np.ndarray], Awaitable[PredictorOutput]], *, max_in_flight: int, max_rows: int
    ) -> None:
        self._call = call
        self._max_in_flight = max_in_flight
        self._max_rows = max_rows
        self._queue: deque[tuple[np.ndarray, asyncio.Future[PredictorOutput]]] = deque()
        self._drainers: set[asyncio.Task[None]] = set()

    async def __call__(self, matrix: np.ndarray) -> PredictorOutput:
        future: asyncio.Future[PredictorOutput] = asyncio.get_running_loop().create_future()
        self._queue.append((matrix, future))
        if len(self._drainers) < self._max_in_flight:
            drainer = asyncio.create_task(self._drain())
            self._drainers.add(drainer)
            drainer.add_done_callback(self._drainers.discard)
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch, rows = [], 0
            while self._queue and (not batch or rows + len(self._queue[0][0]) <= self._max_rows):
                matrix, future = self._queue.popleft()
                batch.append((matrix, future))
                rows += len(matrix)
            await self._send(batch)

    async def _send(self, batch: list[tuple[np.ndarray, asyncio.Future[PredictorOutput]]]) -> None:
        try:
            output = await self._call(np.concatenate([matrix for matrix, _ in batch]))
        except Exception as exc:  # every caller of the batch gets the failure (a 503/502 for each)
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for matrix, future in batch:
            rows = output.probabilities[start : start + len(matrix)]
            start += len(matrix)
            if not future.done():
                future.set_result(PredictorOutput(rows, output.model_version, output.track))
