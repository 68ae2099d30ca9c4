"""Load shedding: a bound on the requests the transformer holds at once, past which it refuses at once.

Without a bound, requests arriving faster than the transformer (or its predictor) can answer pile up in the
event loop and in the predictor callers' queues, and every answer, not only the late ones, waits behind the
pile: latency grows without limit and so does memory. With one, a request that would exceed
`max_requests_held` (the admitted requests not yet answered, whether running or queued for a predictor call)
is answered 503 `overloaded` with `Retry-After` before any Redis or predictor work, which costs a small fraction
of serving it, so the admitted requests keep the latency of a busy but not overloaded transformer. Size the
bound as (latency budget) x (requests per second the transformer sustains); the refusals metric counts
`overloaded` apart from the dependency causes.
"""

from __future__ import annotations

from types import TracebackType

from prometheus_client import Gauge

from tickserve.transformers.transformer.errors import Overloaded

HELD = Gauge("tickserve_transformer_requests_held", "Requests admitted and not yet answered (running or queued)")


class Admission:
    """`with admission:` around serving one request; raises Overloaded when `limit` requests are already held."""

    def __init__(self, limit: int, retry_after_seconds: int) -> None:
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds
        self.held = 0

    def __enter__(self) -> None:
        if self.held >= self.limit:
            raise Overloaded(
                f"overloaded: {self.held} requests in flight or queued, the limit (max_requests_held); "
                f"retry after {self.retry_after_seconds} s",
                self.retry_after_seconds,
            )
        self.held += 1
        HELD.set(self.held)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.held -= 1
        HELD.set(self.held)
