"""`tickserve transformer`: serve the feature transformer with KServe.

KServe's standard transformer flags apply (`--model_name`, `--http_port`, `--grpc_port`, `--predictor_host`,
`--predictor_protocol v2|grpc-v2`, `--predictor_request_timeout_seconds` ...), plus the tickserve settings
of `TransformerSettings` as `--<name>` flags or `TICKSERVE_<NAME>` environment variables, e.g.

    tickserve transformer --model_name signal --predictor_host 127.0.0.1:8081 --predictor_protocol grpc-v2 \\
        --redis_url redis://127.0.0.1:6379/0 --horizons '{"1h": "signal-1h", "4h": "signal-4h"}'
"""

from __future__ import annotations

import logging
import sys
from functools import partial

from kserve import ModelServer
from kserve.predictor_config import PredictorConfig

from tickserve import kserve_compat
from tickserve.settings import parse_settings, usage_error
from tickserve.transformers.store.redis import connect
from tickserve.transformers.transformer.errors import add_rest_handlers
from tickserve.transformers.transformer.model import FeatureTransformer
from tickserve.transformers.transformer.predictor_client import predictor_client
from tickserve.transformers.transformer.rest import serve_transformer
from tickserve.transformers.transformer.settings import TransformerSettings


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_settings(
        TransformerSettings,
        "tickserve transformer",
        argv,
        parent=kserve_compat.kserve_parser(),
        description="KServe feature transformer: symbols in, trading signal out (Redis features, v2 predictor).",
        # Defaults suited to a latency-sensitive transformer rather than KServe's generic ones.
        defaults={
            "model_name": "signal",
            "predictor_protocol": "v2",
            "predictor_request_timeout_seconds": 5,
            "enable_latency_logging": False,
        },
    )
    if not args.predictor_host and not set(settings.horizons.values()) <= set(settings.predictor_hosts):
        usage_error(
            "tickserve transformer", "--predictor_host is required (host:port of the predictor's REST or gRPC endpoint)"
        )
    if args.predictor_protocol not in ("v2", "grpc-v2"):
        usage_error(
            "tickserve transformer",
            "--predictor_protocol must be v2 or grpc-v2 (the predictor speaks Open Inference Protocol v2)",
        )

    transformer = FeatureTransformer(
        args.model_name,
        settings,
        connect(settings),
        partial(
            predictor_client,
            protocol=args.predictor_protocol,
            use_ssl=args.predictor_use_ssl,
            timeout_seconds=args.predictor_request_timeout_seconds,
        ),
        args.predictor_host,
    )
    transformer.load()
    add_rest_handlers()
    serve_transformer(transformer)
    server = ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        enable_latency_logging=args.enable_latency_logging,
        predictor_config=PredictorConfig(
            predictor_host=args.predictor_host or "",
            predictor_protocol=args.predictor_protocol,
            predictor_use_ssl=args.predictor_use_ssl,
            predictor_request_timeout_seconds=args.predictor_request_timeout_seconds,
        ),
    )
    if not args.enable_latency_logging:
        # KServe logs two lines per request (access log, timing middleware): at 1,000 requests/s that is a
        # large share of the transformer's CPU. Keep them for --enable_latency_logging true.
        for name in ("uvicorn.access", "kserve.trace"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.event_loop in ("auto", "uvloop"):  # one process: KServe's asyncio.run() serves REST and gRPC
        kserve_compat.use_uvloop(required=args.event_loop == "uvloop")
    server.start([transformer])
    return 0


if __name__ == "__main__":
    sys.exit(main())
