"""`tickserve transformer` / `python -m tickserve.transformers`: serve the feature transformer with KServe.

KServe's standard transformer flags apply (`--model_name`, `--http_port`, `--grpc_port`, `--predictor_host`,
`--predictor_protocol v2|grpc-v2`, `--predictor_request_timeout_seconds` ...), plus the tickserve settings
of `TransformerSettings` as `--<name>` flags or `TICKSERVE_<NAME>` environment variables, e.g.

    tickserve transformer --model_name signal --predictor_host 127.0.0.1:8081 --predictor_protocol grpc-v2 \\
        --redis_url redis://127.0.0.1:6379/0 --horizons '{"1h": "signal-1h", "4h": "signal-4h"}'
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial

from kserve import ModelServer, model_server
from kserve.predictor_config import PredictorConfig
from pydantic import ValidationError
from pydantic_settings import CliSettingsSource
from tickserve.transformers.feature_store import connect
from tickserve.transformers.predictor_client import predictor_client
from tickserve.transformers.transformer import FeatureTransformer
from tickserve.transformers.transformer_errors import add_rest_handlers
from tickserve.transformers.transformer_rest import serve_transformer
from tickserve.transformers.transformer_settings import TransformerSettings

from tickserve.serving import use_uvloop


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickserve transformer",
        parents=[model_server.parser],
        description="KServe feature transformer: symbols in, trading signal out (Redis features, v2 predictor).",
    )
    # Defaults suited to a latency-sensitive transformer rather than KServe's generic ones.
    parser.set_defaults(
        model_name="signal", predictor_protocol="v2", predictor_request_timeout_seconds=5, enable_latency_logging=False
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    settings_flags = CliSettingsSource(TransformerSettings, root_parser=parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = TransformerSettings(_cli_settings_source=settings_flags(parsed_args=args))
    except ValidationError as exc:
        parser.error(str(exc))
    if not args.predictor_host and not set(settings.horizons.values()) <= set(settings.predictor_hosts):
        parser.error("--predictor_host is required (host:port of the predictor's REST or gRPC endpoint)")
    if args.predictor_protocol not in ("v2", "grpc-v2"):
        parser.error("--predictor_protocol must be v2 or grpc-v2 (the predictor speaks Open Inference Protocol v2)")

    transformer = FeatureTransformer(
        args.model_name,
        settings,
        connect(settings.redis_url, settings.redis_timeout_seconds),
        partial(
            predictor_client,
            protocol=args.predictor_protocol,
            use_ssl=args.predictor_use_ssl,
            timeout_seconds=args.predictor_request_timeout_seconds,
        ),
        args.predictor_host,
    )
    transformer.load()
    add_rest_handlers(model_server.app)
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
        use_uvloop(required=args.event_loop == "uvloop")
    server.start([transformer])
    return 0


if __name__ == "__main__":
    sys.exit(main())
