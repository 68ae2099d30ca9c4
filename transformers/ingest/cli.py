"""`tickserve ingest`: market data -> feature engine -> Redis hot features, with Prometheus metrics.

Settings are `--<name>` flags or `TICKSERVE_<NAME>` environment variables, e.g.

    tickserve ingest --source synthetic --synthetic_symbols BTCUSDT,ETHUSDT --metrics_port 9100
    tickserve ingest --source replay --replay_path bars.csv --replay_speed 0
    tickserve ingest --source websocket --websocket_url wss://feed.example/bars

A replay (or a synthetic run with `--synthetic_live_bars`) ends when its data does and prints a summary; a
WebSocket feed runs until stopped. Exit codes: 0 done, 1 unreadable input, 2 bad settings.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Literal

from prometheus_client import start_http_server
from pydantic import Field, model_validator

from tickserve.settings import RedisSettings, parse_settings
from tickserve.transformers.features.bars import BarInputError
from tickserve.transformers.features.engine import DEFAULT_WINDOWS, FeatureConfig, FeatureEngine
from tickserve.transformers.ingest.pipeline import Ingest
from tickserve.transformers.ingest.sources import replay_source, synthetic_source, websocket_source
from tickserve.transformers.ingest.synthetic import SyntheticMarket
from tickserve.transformers.store.features import FeatureWriter
from tickserve.transformers.store.redis import connect

log = logging.getLogger("tickserve.ingest")


class IngestSettings(RedisSettings):
    """Where market data comes from and how features are computed; Redis settings are shared."""

    source: Literal["replay", "websocket", "synthetic"] = Field(description="where market data comes from")
    metrics_port: int = Field(0, ge=0, description="Prometheus /metrics port (0: no metrics server)")
    windows: tuple[int, ...] = Field(DEFAULT_WINDOWS, description="feature windows in bars, JSON list")
    book_levels: tuple[int, ...] = Field((), description="order-book imbalance levels, JSON list")
    queue_size: int = Field(1024, gt=0, description="batches buffered for the Redis writer before dropping the oldest")
    price_history_seconds: float = Field(2 * 86400.0, gt=0, description="close-price history kept for the monitor")
    replay_path: Path | None = Field(None, description="bar CSV (symbol,ts,open,high,low,close,volume)")
    replay_speed: float = Field(0.0, ge=0, description="replay pace as a multiple of real time; 0: as fast as Redis")
    websocket_url: str | None = Field(None, description="feed URL sending JSON bar/book frames")
    synthetic_symbols: str = Field("BTCUSDT,ETHUSDT,SOLUSDT", description="comma-separated symbols")
    synthetic_interval_seconds: float = Field(1.0, gt=0, description="bar interval of the synthetic market")
    synthetic_history_bars: int = Field(300, ge=0, description="past bars written at start so features are ready")
    synthetic_live_bars: int | None = Field(None, ge=0, description="stop after this many live bars (default: never)")
    synthetic_seed: int = Field(0, description="random seed of the synthetic market")

    @model_validator(mode="after")
    def _source_is_configured(self) -> IngestSettings:
        if self.source == "replay" and self.replay_path is None:
            raise ValueError("--source replay needs --replay_path")
        if self.source == "websocket" and not self.websocket_url:
            raise ValueError("--source websocket needs --websocket_url")
        return self


async def ingest(settings: IngestSettings) -> int:
    config = FeatureConfig(windows=settings.windows, book_levels=settings.book_levels)
    client = connect(settings)
    if settings.source == "replay":
        assert settings.replay_path is not None
        source = replay_source(settings.replay_path, settings.replay_speed)
    elif settings.source == "websocket":
        assert settings.websocket_url is not None
        source = websocket_source(settings.websocket_url)
    else:
        symbols = [symbol.strip() for symbol in settings.synthetic_symbols.split(",") if symbol.strip()]
        market = SyntheticMarket(symbols, settings.synthetic_seed, book_levels=max(settings.book_levels, default=0))
        source = synthetic_source(
            market, settings.synthetic_interval_seconds, settings.synthetic_history_bars, settings.synthetic_live_bars
        )
    pipeline = Ingest(
        FeatureEngine(config),
        FeatureWriter(client, settings.price_history_seconds),
        settings.queue_size,
        wait_for_writer=settings.source == "replay" and settings.replay_speed == 0,
    )
    log.info("ingest from %s into %s, feature schema %s", settings.source, settings.redis_url, config.schema_version)
    try:
        report = await pipeline.run(source)
    finally:
        await client.aclose()
    print(
        f"ingested {report.bars} bars in {report.writes} Redis writes "
        f"({report.dropped} batches dropped, {report.skipped} bars skipped), schema {config.schema_version}",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings, _ = parse_settings(IngestSettings, "tickserve ingest", argv, description=__doc__.split("\n")[0])
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    try:
        return asyncio.run(ingest(settings))
    except BarInputError as exc:
        print(f"tickserve ingest: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
