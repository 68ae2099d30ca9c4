"""Adaptive micro-batching: concurrent requests to one model are coalesced into one framework call.

While the model is busy, requests accumulate and leave together (up to `max_batch_size` rows) as soon as it is
free: with the default `max_latency_ms` of 0 that is all, so batches cost no latency and grow only when the
model is the bottleneck. With a wait set, an idle model also waits up to `max_latency_ms` for a batch to fill, but only while requests are arriving
concurrently (one arrived while another was still unanswered, within the last `LOAD_MEMORY_S`, or ten times
the wait if longer): a lone caller never waits for companions that are not coming, so batches grow with load and
low-load latency stays that of a single call. Concurrency is judged by overlapping requests, not by the size of
the previous batch: under load a batch of one (the wait ran out with one request, as happens when the HTTP
front end rather than the model is the bottleneck) must not turn the wait off for the batches after it.
Each request's rows are split back to its own caller. If a batched call fails, its requests are retried one
by one so a single bad request fails only itself. Model calls run on the model's executor thread, never on
the event loop, so health checks answer while the model is saturated.
The queue is bounded: a request arriving while QUEUED_BATCHES full batches of rows already wait is refused at
once with `Overloaded` (503 with Retry-After, gRPC UNAVAILABLE, outcome `overloaded`) before any model call,
so an overloaded predictor answers the requests it holds in bounded time and is not mistaken for a broken one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from grpc_interceptor.exceptions import Unavailable

from tickserve import kserve_compat

Arrays = dict[str, np.ndarray]
ModelCall = Callable[[Arrays], Arrays]
LOAD_MEMORY_S = 0.1
QUEUED_BATCHES = 4  # a request may wait behind at most this many full model calls
RETRY_AFTER_S = 1


class Overloaded(Unavailable):
    """The model's queue is full: refused before the model call, so retrying soon (or elsewhere) may succeed."""

    cause = "overloaded"


async def _overloaded_response(_: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"error": str(error), "cause": Overloaded.cause},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


kserve_compat.add_exception_handler(Overloaded, _overloaded_response)


@dataclass
class _Pending:
    inputs: Arrays
    rows: int
    future: asyncio.Future[Arrays]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        """Requests can share a batch only if every input has the same trailing shape and dtype."""
        return tuple((name, array.shape[1:], array.dtype.str) for name, array in self.inputs.items())


class MicroBatcher:
    def __init__(
        self,
        call: ModelCall,
        executor: Executor,
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: Callable[[int], None],
    ) -> None:
        self._call = call
        self._executor = executor
        self._max_rows = max_batch_size
        self._max_wait = max_latency_ms / 1000.0
        self._on_batch = on_batch
        self._pending: list[_Pending] = []
        self._running = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._load_memory = max(LOAD_MEMORY_S, 10 * self._max_wait)
        self._unanswered = 0  # submitted requests whose callers have not resumed yet
        self._max_queued_rows = QUEUED_BATCHES * max_batch_size
        self._overlap_at = -float("inf")  # when a request last arrived while another was unanswered

    async def submit(self, inputs: Arrays, rows: int) -> Arrays:
        queued = sum(item.rows for item in self._pending if not item.future.done())
        if queued >= self._max_queued_rows:
            raise Overloaded(f"overloaded: {queued} rows already queued for the model (limit {self._max_queued_rows})")
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        item = _Pending(inputs, rows, future)
        if self._unanswered:
            self._overlap_at = item.enqueued
        self._unanswered += 1
        try:
            self._pending.append(item)
            self._dispatch()
            return await future
        finally:
            self._unanswered -= 1

    def _dispatch(self) -> None:
        """Start a batch if the model is idle and the oldest request is due (or the batch is full)."""
        self._pending = [item for item in self._pending if not item.future.done()]  # drop cancelled callers
        if self._running or not self._pending:
            return
        loop = asyncio.get_running_loop()
        due_at = self._pending[0].enqueued + self._max_wait
        under_load = time.monotonic() - self._overlap_at < self._load_memory
        if under_load and sum(item.rows for item in self._pending) < self._max_rows and time.monotonic() < due_at:
            if self._timer is None:
                self._timer = loop.call_at(loop.time() + (due_at - time.monotonic()), self._on_timer)
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = self._take_batch()
        self._running = True
        self._task = loop.create_task(self._run(batch))  # referenced so it is not collected mid-flight

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take_batch(self) -> list[_Pending]:
        """Oldest first, same input layout as the oldest, up to max_batch_size rows (at least one request)."""
        first = self._pending[0]
        batch, rest, rows = [first], [], first.rows
        for item in self._pending[1:]:
            if item.key == first.key and rows + item.rows <= self._max_rows:
                batch.append(item)
                rows += item.rows
            else:
                rest.append(item)
        self._pending = rest
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(self._executor, self._call_batch, [item.inputs for item in batch])
            for item, result in zip(batch, results, strict=True):
                if item.future.done():
                    continue
                if isinstance(result, BaseException):
                    item.future.set_exception(result)
                else:
                    item.future.set_result(result)
        except BaseException as error:  # never leave a caller waiting
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            raise
        finally:
            self._running = False
            self._dispatch()

    def _call_batch(self, inputs: list[Arrays]) -> list[Arrays | BaseException]:
        """Runs on the executor thread: one framework call for the whole batch, split back by rows."""
        if len(inputs) == 1:
            return [self._call_alone(inputs[0])]
        rows = [_rows(item) for item in inputs]
        joined = {name: np.concatenate([item[name] for item in inputs]) for name in inputs[0]}
        try:
            self._on_batch(sum(rows))
            outputs = self._call(joined)
        except Exception:
            return [self._call_alone(item) for item in inputs]
        bounds = np.cumsum(rows)[:-1]
        pieces = {name: np.split(array, bounds) for name, array in outputs.items()}
        return [{name: pieces[name][i] for name in pieces} for i in range(len(inputs))]

    def _call_alone(self, inputs: Arrays) -> Arrays | BaseException:
        try:
            self._on_batch(_rows(inputs))
            return self._call(inputs)
        except Exception as error:
            return error


def _rows(inputs: Arrays) -> int:
    return next(iter(inputs.values())).shape[0]
