"""One Redis connection and retry policy for ingest, the transformer and the quality monitor.

Clients are made without redis-py's own retries: the caller owns the policy. Background loops (the ingest
writer, the monitor) wait for Redis to come back with `until_redis_returns`; the transformer, which answers
requests, retries a bounded number of times and then refuses with a 503.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from tickserve.settings import RedisSettings

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
"""The errors that mean "Redis is unreachable or slow", as opposed to a bad command: worth a retry."""


def connect(settings: RedisSettings, *, extra_wait_seconds: float = 0.0, max_connections: int = 64) -> redis.Redis:
    """A client with socket timeouts of `redis_timeout_seconds` (plus `extra_wait_seconds` for a caller that
    makes blocking reads) and no retries of its own.

    The pool blocks (up to the timeout) when all `max_connections` are busy instead of failing at once, so a
    burst of concurrent requests queues for a connection rather than being reported as Redis being down.
    """
    timeout = settings.redis_timeout_seconds + extra_wait_seconds
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


def until_redis_returns(
    *, first_wait_seconds: float, max_wait_seconds: float, on_retry: Callable[[RetryCallState], None]
) -> AsyncRetrying:
    """Retry forever on `REDIS_ERRORS`, waits doubling from `first_wait_seconds` up to `max_wait_seconds`;
    `on_retry` logs and counts each failed attempt. Any other error is raised at once."""
    return AsyncRetrying(
        retry=retry_if_exception_type(REDIS_ERRORS),
        wait=wait_exponential(multiplier=first_wait_seconds, max=max_wait_seconds),
        before_sleep=on_retry,
    )
