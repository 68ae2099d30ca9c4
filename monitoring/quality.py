"""Prediction quality: join each prediction with the realised return after its horizon and export accuracy.

Input: the transformer's Redis Stream `tickserve:predictions` (read with a consumer group, so several
monitors share the work and a restarted monitor resumes from its pending entries) and ingest's close-price
history `tickserve:prices:{symbol}` (sorted set scored by event time).

The join, in event time: a prediction made on features of bar time `t` with horizon `h` seconds is judged by
the first close at or after `t` (the entry) and the first close at or after `t + h` (the exit); it waits until
ingest has written a bar at or after `t + h`. Realised return = exit / entry - 1. The prediction is correct
when `prediction` (p_up - p_down) and the realised return have the same sign; when either is exactly 0 it is
not scored (counted as `flat`). A prediction is high-confidence when its confidence (top class probability)
is at least `high_confidence`. A prediction whose symbol has no price after `h + grace` seconds of wall time is
dropped as `no_price`. Entries are acknowledged only once scored or dropped.

Exported per model, model_version, track and horizon, for scope `all` and `high_confidence`:
- `tickserve_quality_scored_total{outcome="correct|wrong"}`: counters, for rates over any range in PromQL;
- `tickserve_quality_directional_accuracy`: correct / scored since the monitor started;
- `tickserve_quality_rolling_accuracy`: over the last `window` scored predictions;
- `tickserve_quality_rolling_accuracy_trend`: rolling accuracy of the last window minus that of the window
  before it (present once two full windows exist; negative means getting worse).

Each scored prediction (scope `all`) also feeds the quality judge (judge.py, judge_metrics.py): canary vs stable
directional accuracy by an anytime-valid sequential test, exported as `tickserve_judge_*`.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import ResponseError
from tenacity import RetryCallState

from tickserve.monitoring.judge import JudgeConfig
from tickserve.monitoring.judge_metrics import JudgeMetrics
from tickserve.transformers.store.features import prices_key
from tickserve.transformers.store.predictions import STREAM_KEY, Prediction
from tickserve.transformers.store.redis import until_redis_returns

log = logging.getLogger("tickserve.monitor")

LABELS = ("model", "model_version", "track", "horizon")
SCOPES = ("all", "high_confidence")


class QualityMetrics:
    """Accuracy bookkeeping per (model, version, track, horizon) and scope, exported as Prometheus metrics."""

    def __init__(
        self, registry: CollectorRegistry, window: int, high_confidence: float, judge: JudgeConfig | None = None
    ) -> None:
        self.window = window
        self.high_confidence = high_confidence
        scoped = (*LABELS, "scope")
        self._scored = Counter(
            "tickserve_quality_scored", "Scored predictions", [*scoped, "outcome"], registry=registry
        )
        self._accuracy = Gauge(
            "tickserve_quality_directional_accuracy", "Correct / scored since start", scoped, registry=registry
        )
        self._rolling = Gauge(
            "tickserve_quality_rolling_accuracy", "Accuracy over the last window", scoped, registry=registry
        )
        self._trend = Gauge(
            "tickserve_quality_rolling_accuracy_trend",
            "Rolling accuracy of the last window minus the window before",
            scoped,
            registry=registry,
        )
        self.unscored = Counter(
            "tickserve_quality_unscored", "Predictions not scored, by reason", ["reason"], registry=registry
        )
        self.pending = Gauge("tickserve_quality_pending_predictions", "Predictions waiting", registry=registry)
        self._totals: dict[tuple[str, ...], list[int]] = {}
        self._recent: dict[tuple[str, ...], deque[bool]] = {}
        self.judge = JudgeMetrics(registry, judge or JudgeConfig())

    def record(self, prediction: Prediction, realised_return: float) -> bool | None:
        """Score one prediction; True/False for correct/wrong, None when flat (not scored)."""
        if prediction.prediction == 0 or realised_return == 0:
            self.unscored.labels("flat").inc()
            return None
        correct = (prediction.prediction > 0) == (realised_return > 0)
        labels = (prediction.model, prediction.model_version, prediction.track, prediction.horizon)
        scopes = SCOPES if prediction.confidence >= self.high_confidence else SCOPES[:1]
        for scope in scopes:
            self._observe((*labels, scope), correct)
        self.judge.observe(prediction, correct)
        return correct

    def _observe(self, key: tuple[str, ...], correct: bool) -> None:
        self._scored.labels(*key, "correct" if correct else "wrong").inc()
        totals = self._totals.setdefault(key, [0, 0])
        totals[0] += correct
        totals[1] += 1
        self._accuracy.labels(*key).set(totals[0] / totals[1])
        recent = self._recent.setdefault(key, deque(maxlen=2 * self.window))
        recent.append(correct)
        last = list(recent)[-self.window :]
        self._rolling.labels(*key).set(sum(last) / len(last))
        if len(recent) == 2 * self.window:
            previous = list(recent)[: self.window]
            self._trend.labels(*key).set((sum(last) - sum(previous)) / self.window)


@dataclass(frozen=True)
class PendingPrediction:
    entry_id: bytes
    prediction: Prediction

    @property
    def exit_ts(self) -> float:
        return self.prediction.feature_ts + self.prediction.horizon_seconds


def _price(members: list[bytes]) -> float | None:
    """The close of a `"{ts}:{close}"` price-history member (first of a ZRANGEBYSCORE ... LIMIT 0 1)."""
    try:
        return float(members[0].rsplit(b":", 1)[1]) if members else None
    except (IndexError, ValueError):
        log.warning("ignoring a price-history member that is not ts:close: %r", members[0])
        return None


class QualityMonitor:
    """Reads predictions with a consumer group, scores them when their horizon has passed, acknowledges."""

    def __init__(
        self,
        client: redis.Redis,
        metrics: QualityMetrics,
        group: str,
        consumer: str,
        grace_seconds: float,
        read_count: int = 1000,
    ) -> None:
        self._redis = client
        self._metrics = metrics
        self._group = group
        self._consumer = consumer
        self._grace = grace_seconds
        self._read_count = read_count
        self._pending: dict[bytes, PendingPrediction] = {}

    async def start(self) -> None:
        """Create the consumer group if needed and take back this consumer's unacknowledged entries."""
        try:
            await self._redis.xgroup_create(STREAM_KEY, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # "0" would return the same first `read_count` pending entries on every call: page by the last id read.
        start = "0"
        while (last_id := await self._read(start, block_ms=None)) is not None:
            start = last_id

    async def step(self, block_ms: int) -> int:
        """Read new predictions (waiting up to block_ms), score what is due; the number scored or dropped."""
        await self._read(">", block_ms)
        return await self._score_due()

    async def run(self, poll_seconds: float) -> None:
        await self.start()
        while True:
            try:
                await self.step(round(poll_seconds * 1000))
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("the consumer group is gone (Redis restarted empty?); creating it again")
                await self.start()

    async def _read(self, start: str | bytes, block_ms: int | None) -> bytes | None:
        """Add entries after `start` (an id: this consumer's pending ones after it; ">": new ones).

        The id of the last entry read when a full `read_count` came back (there may be more), else None.
        """
        replies = await self._redis.xreadgroup(
            self._group, self._consumer, {STREAM_KEY: start}, count=self._read_count, block=block_ms
        )
        entries = replies[0][1] if replies else []
        malformed = []
        for entry_id, fields in entries:
            try:
                prediction = Prediction.from_fields(fields)
            except (KeyError, ValueError, TypeError):
                malformed.append(entry_id)
                continue
            self._pending[entry_id] = PendingPrediction(entry_id, prediction)
        if malformed:
            log.warning("acknowledging %d stream entries that are not predictions", len(malformed))
            self._metrics.unscored.labels("malformed").inc(len(malformed))
            await self._redis.xack(STREAM_KEY, self._group, *malformed)
        self._metrics.pending.set(len(self._pending))
        return entries[-1][0] if len(entries) == self._read_count else None

    async def _score_due(self) -> int:
        if not self._pending:
            return 0
        symbols = sorted({item.prediction.symbol for item in self._pending.values()})
        pipe = self._redis.pipeline(transaction=False)
        for symbol in symbols:
            pipe.zrange(prices_key(symbol), -1, -1, withscores=True)
        latest = {
            symbol: (reply[0][1] if reply else None)
            for symbol, reply in zip(symbols, await pipe.execute(), strict=True)
        }
        now = time.time()
        due, expired = [], []
        for item in self._pending.values():
            newest = latest[item.prediction.symbol]
            if newest is not None and newest >= item.exit_ts:
                due.append(item)
            elif now - item.prediction.predicted_at > item.prediction.horizon_seconds + self._grace:
                expired.append(item)
        if not due and not expired:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for item in due:
            key = prices_key(item.prediction.symbol)
            pipe.zrangebyscore(key, item.prediction.feature_ts, "+inf", start=0, num=1)
            pipe.zrangebyscore(key, item.exit_ts, "+inf", start=0, num=1)
        replies = await pipe.execute()
        for i, item in enumerate(due):
            entry, exit_ = _price(replies[2 * i]), _price(replies[2 * i + 1])
            if entry is None or exit_ is None:
                self._metrics.unscored.labels("no_price").inc()
            else:
                self._metrics.record(item.prediction, exit_ / entry - 1.0)
        self._metrics.unscored.labels("no_price").inc(len(expired))
        done = [item.entry_id for item in (*due, *expired)]
        await self._redis.xack(STREAM_KEY, self._group, *done)
        for entry_id in done:
            del self._pending[entry_id]
        self._metrics.pending.set(len(self._pending))
        return len(done)


def _log_outage(state: RetryCallState) -> None:
    log.warning(
        "Redis unavailable (%s); resuming when it is back", state.outcome.exception() if state.outcome else None
    )


async def run_monitor(monitor: QualityMonitor, poll_seconds: float) -> None:
    """Run forever, surviving Redis outages: unacknowledged entries stay in the group and are taken back."""
    retrying = until_redis_returns(first_wait_seconds=0.1, max_wait_seconds=poll_seconds * 5, on_retry=_log_outage)
    await retrying(monitor.run, poll_seconds)
