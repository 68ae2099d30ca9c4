"""`tickserve monitor`: the prediction quality monitor with its Prometheus /metrics endpoint.

Settings are `--<name>` flags or `TICKSERVE_<NAME>` environment variables, e.g.

    tickserve monitor --redis_url redis://127.0.0.1:6379/0 --metrics_port 9102 --high_confidence 0.6

Run several with the same `--group` (and distinct `--consumer`) to share the stream. See `quality` for how
predictions are joined with realised returns and what is exported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys

from prometheus_client import REGISTRY, start_http_server
from pydantic import Field

from tickserve.monitoring.judge import JudgeConfig
from tickserve.monitoring.quality import QualityMetrics, QualityMonitor, run_monitor
from tickserve.settings import RedisSettings, parse_settings
from tickserve.transformers.store.redis import connect


class MonitorSettings(RedisSettings):
    """How predictions are scored and exported; Redis settings are shared with ingest and the transformer."""

    metrics_port: int = Field(9102, ge=0, description="Prometheus /metrics port")
    group: str = Field("quality-monitor", description="consumer group on the predictions stream")
    consumer: str = Field(socket.gethostname(), description="this monitor's consumer name within the group")
    high_confidence: float = Field(0.6, ge=0, le=1, description="confidence from which a prediction is high-confidence")
    window: int = Field(200, gt=0, description="scored predictions per rolling-accuracy window")
    grace_seconds: float = Field(3600.0, ge=0, description="wall time past the horizon before giving up on prices")
    poll_seconds: float = Field(1.0, gt=0, description="longest wait for new predictions between scoring passes")
    judge_alpha: float = Field(0.05, gt=0, lt=1, description="quality judge: false-rollback rate under continuous use")
    judge_tau: float = Field(0.05, gt=0, description="quality judge: accuracy difference it is most sensitive to")
    judge_min_scored: int = Field(200, ge=1, description="quality judge: scored outcomes per track before a verdict")
    judge_worse_margin: float = Field(0.0, ge=0, description="quality judge: `worse` needs the drop to exceed this")
    judge_no_worse_margin: float = Field(
        0.01, description="quality judge: `no_worse` allows the canary this much below stable (negative: above)"
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings, _ = parse_settings(MonitorSettings, "tickserve monitor", argv, description=__doc__.split("\n")[0])
    # The blocking stream read must not hit the socket timeout.
    client = connect(settings, extra_wait_seconds=settings.poll_seconds)
    judge = JudgeConfig(
        settings.judge_alpha, settings.judge_tau, settings.judge_min_scored, settings.judge_worse_margin,
        settings.judge_no_worse_margin,
    )  # fmt: skip
    metrics = QualityMetrics(REGISTRY, settings.window, settings.high_confidence, judge)
    monitor = QualityMonitor(client, metrics, settings.group, settings.consumer, settings.grace_seconds)
    start_http_server(settings.metrics_port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_monitor(monitor, settings.poll_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
