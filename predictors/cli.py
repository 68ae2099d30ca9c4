"""`tickserve predictor --model_name NAME --model_dir DIR [KServe flags]` (or `python -m tickserve.predictors`).

The framework is detected from DIR. KServe's own flags (--http_port, --grpc_port, --workers ...) come from
its parser, used as a parent; the TICKSERVE_* settings have flags of the same name that override the env.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tickserve import kserve_compat
from tickserve.predictors.settings import PredictorSettings
from tickserve.settings import parse_settings


def model_flags() -> argparse.ArgumentParser:
    """KServe's flags plus the model directory; `parse_settings` adds the TICKSERVE_* settings as flags."""
    parser = argparse.ArgumentParser(add_help=False, parents=[kserve_compat.kserve_parser()])
    parser.add_argument("--model_dir", default="/mnt/models", help="MLflow model dir or a plain model file")
    return parser


def share_metrics_between_processes(argv: list[str]) -> None:
    """With --workers > 1 KServe serves REST from several processes; prometheus_client aggregates them only in
    multiprocess mode, which must be chosen before prometheus_client is imported (KServe imports it)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--workers", type=int, default=1)
    wanted = pre.parse_known_args(argv)[0].workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if wanted and "prometheus_client" not in sys.modules:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir = tempfile.mkdtemp(prefix="tickserve-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    share_metrics_between_processes(argv)
    settings, args = parse_settings(
        PredictorSettings,
        "tickserve predictor",
        argv,
        parent=model_flags(),
        description="Serve an MLflow model (LightGBM, ONNX, PyTorch natively; any pyfunc flavor) over the Open "
        "Inference Protocol (REST + gRPC).",
        # Throughput default: no log line per request (KServe's default logs every request's latency).
        defaults={"enable_latency_logging": False},
    )
    from kserve.utils.utils import cpu_count

    threads = settings.threads or max(1, cpu_count() // max(1, args.workers))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))  # before any framework is imported

    from kserve import logging as kserve_logging

    from tickserve.predictors.model_dir import ModelDirError
    from tickserve.predictors.repository import PredictorRepository
    from tickserve.predictors.server import PredictorServer, write_log_config

    if args.configure_logging and not args.log_config_file:
        args.log_config_file = write_log_config(args.enable_latency_logging)
        atexit.register(os.unlink, args.log_config_file)  # read by REST workers as they (re)start: keep until exit
    kserve_compat.adopt_arguments(args)
    if args.configure_logging:
        kserve_logging.configure_logging(args.log_config_file)
    repository = PredictorRepository({args.model_name: Path(args.model_dir)}, settings, threads)
    try:
        repository.load_model(args.model_name)
    except (ModelDirError, OSError, ValueError) as error:
        print(
            f"tickserve predictor: cannot load model {args.model_name!r} from {args.model_dir}: {error}",
            file=sys.stderr,
        )
        return 1
    model = repository.get_model(args.model_name)
    # gRPC messages get the REST body limit too (the server is built for this one model).
    args.grpc_max_receive_message_length = min(args.grpc_max_receive_message_length, model.max_request_bytes)
    gc.freeze()  # startup objects (frameworks, MLflow) leave the GC's scans: shorter collection pauses, lower p99
    server = PredictorServer(
        repository,
        grpc_enabled=args.enable_grpc,
        grpc_options=vars(args),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        workers=args.workers,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_docs_url=args.enable_docs_url,
        enable_latency_logging=args.enable_latency_logging,
        access_log_format=args.access_log_format,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
