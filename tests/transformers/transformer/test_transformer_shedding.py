"""Load shedding with real processes: a transformer that already holds `max_requests_held` requests refuses the
next ones at once (503, cause `overloaded`, Retry-After, counted), and the requests it holds still succeed.

The predictor process is frozen with SIGSTOP so that admitted cache misses stay held for as long as the test
needs, deterministically, whatever the machine's load; SIGCONT lets them finish.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import numpy as np
import pytest
from serving_stack import NAMES, infer_body, predictor, redis_db, save_signal_model, transformer, write_features

from tickserve.launch import Server

pytestmark = pytest.mark.integration
LIMIT = 3


async def held(front: Server, count: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while front.metric("tickserve_transformer_requests_held") != count:
        assert time.monotonic() < deadline, f"the transformer never held {count} requests"
        await asyncio.sleep(0.05)


async def test_past_the_bound_requests_are_refused_at_once_and_held_ones_still_succeed(redis_url, tmp_path) -> None:
    store_url = redis_db(redis_url, 9)
    save_signal_model(tmp_path / "model", version="1", seed=1)
    symbols = [f"S{i}" for i in range(LIMIT + 4)]
    rng = np.random.default_rng(4)
    with (
        predictor(tmp_path / "model", "signal-1h") as frozen,
        transformer(
            store_url,
            {"signal-1h": frozen},
            {"1h": "signal-1h"},
            args=["--max_requests_held", str(LIMIT), "--overload_retry_after_seconds", "2"],
        ) as front,
    ):
        await write_features(store_url, {symbol: rng.normal(size=len(NAMES)) for symbol in symbols})
        url = f"{front.url}/v2/models/signal/infer"
        refused_before = front.metric("tickserve_transformer_refusals_total", cause="overloaded")
        timed_before = front.metric("tickserve_transformer_refusal_seconds_count")
        async with httpx.AsyncClient(timeout=30) as client:
            os.killpg(frozen.process.pid, signal.SIGSTOP)
            try:
                admitted = [asyncio.create_task(client.post(url, json=infer_body([s]))) for s in symbols[:LIMIT]]
                await held(front, LIMIT)
                refusals = []
                for symbol in symbols[LIMIT:]:
                    started = time.perf_counter()
                    answer = await client.post(url, json=infer_body([symbol]))
                    refusals.append((answer, time.perf_counter() - started))
            finally:
                os.killpg(frozen.process.pid, signal.SIGCONT)
            answers = await asyncio.gather(*admitted)
        for answer, seconds in refusals:
            assert answer.status_code == 503, answer.text
            assert answer.json()["cause"] == "overloaded"
            assert answer.headers["retry-after"] == "2"
            assert seconds < 1.0, f"a refusal took {seconds:.3f} s: it waited for something"
        assert [answer.status_code for answer in answers] == [200] * LIMIT, [answer.text for answer in answers]
        refused = front.metric("tickserve_transformer_refusals_total", cause="overloaded") - refused_before
        assert refused == len(refusals)
        timed = front.metric("tickserve_transformer_refusal_seconds_count") - timed_before
        assert timed == len(refusals), "each refusal's time in the server is recorded"
        assert front.metric("tickserve_transformer_requests_held") == 0
        after = httpx.post(url, json=infer_body(symbols[LIMIT:]), timeout=30)
        assert after.status_code == 200, "once the held requests are answered, new ones are admitted again"


async def test_a_refusal_is_answered_before_the_request_body_is_read(redis_url, tmp_path) -> None:
    """At the bound, a request whose body has not even arrived yet (its headers promise 1 MB, 10 bytes are sent)
    is answered 503 `overloaded`: the refusal never waits for, reads or decodes the body."""
    store_url = redis_db(redis_url, 9)
    save_signal_model(tmp_path / "model", version="1", seed=1)
    symbols = [f"B{i}" for i in range(LIMIT)]
    with (
        predictor(tmp_path / "model", "signal-1h") as frozen,
        transformer(
            store_url, {"signal-1h": frozen}, {"1h": "signal-1h"}, args=["--max_requests_held", str(LIMIT)]
        ) as front,
    ):
        await write_features(store_url, {symbol: np.ones(len(NAMES)) for symbol in symbols})
        url = f"{front.url}/v2/models/signal/infer"
        async with httpx.AsyncClient(timeout=30) as client:
            os.killpg(frozen.process.pid, signal.SIGSTOP)
            try:
                admitted = [asyncio.create_task(client.post(url, json=infer_body([s]))) for s in symbols]
                await held(front, LIMIT)
                host, port = front.http.split(":")
                reader, writer = await asyncio.open_connection(host, int(port))
                writer.write(
                    b"POST /v2/models/signal/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 1000000\r\n\r\n{"inputs":'
                )
                status_line = await asyncio.wait_for(reader.readline(), 5)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                writer.close()
            finally:
                os.killpg(frozen.process.pid, signal.SIGCONT)
            answers = await asyncio.gather(*admitted)
    assert status_line.split()[1] == b"503", status_line
    assert b"retry-after" in head.lower()
    assert [answer.status_code for answer in answers] == [200] * LIMIT
