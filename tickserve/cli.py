"""The `tickserve` command: one entry point whose subcommands live with the component they run.

Each subcommand is a module with `main(argv: list[str]) -> int` that owns its own argument parser, so a
component can be run (and tested) on its own and this file only routes.
"""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with main(argv), one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "predictor": ("tickserve.predictors.cli", "serve a model over the Open Inference Protocol (KServe v2)"),
    "features": (
        "tickserve.transformers.features.cli",
        "compute features offline: features replay --input bars.csv --output features.csv",
    ),
    "ingest": ("tickserve.transformers.ingest.cli", "market data (replay, websocket, synthetic) -> Redis hot features"),
    "transformer": (
        "tickserve.transformers.transformer.cli",
        "serve the KServe feature transformer (symbols in, signal out)",
    ),
    "monitor": ("tickserve.monitoring.cli", "score predictions against realised returns, export accuracy"),
    "registry-sync": (
        "tickserve.registry_sync.cli",
        "turn MLflow registry alias, stage and traffic-tag changes into GitOps pull requests",
    ),
    "score": ("tickserve.predictors.score.cli", "batch-score a parquet/CSV feature or bar file with a model"),
    "optimize": (
        "tickserve.predictors.optimize.cli",
        "export PyTorch to ONNX, optimise, quantise; parity-gate, benchmark and register the variants",
    ),
    "rollout": ("tickserve.monitoring.rollback.cli", "canary rollouts: `rollout status` prints each model's phase"),
    "demo": ("tickserve.demo.cli", "the whole data path on one machine: train, register, serve, stream, watch"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: tickserve <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "Run `tickserve <command> --help` for the options of one command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tickserve: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
