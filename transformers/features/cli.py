"""`tickserve features replay`: compute the serving features offline from a bar file, for training.

It feeds the bars through the same `FeatureEngine` that ingest runs online, so a model is trained on exactly
the values it will be served. Output: `symbol,ts` plus the feature columns in `feature_names` order, one row
per bar from each symbol's first bar with every window full, in input order; floats are written with the
shortest repr that round-trips. The output is written to a temporary file and renamed only on success, so a
bad input (reported with its line and column, exit code 1) never leaves a truncated features file behind.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

from tickserve.transformers.features.bars import BarInputError, distinct_symbol_runs, read_bars
from tickserve.transformers.features.engine import DEFAULT_WINDOWS, FeatureConfig, FeatureEngine


def _windows(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated bar counts like 60,120,240, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tickserve features", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay", help="compute features from a bar CSV file")
    replay.add_argument("--input", type=Path, required=True, help="CSV with symbol,ts,open,high,low,close,volume")
    replay.add_argument("--output", type=Path, required=True, help="features CSV to write")
    replay.add_argument(
        "--windows",
        type=_windows,
        default=DEFAULT_WINDOWS,
        help=f"window lengths in bars (default {','.join(map(str, DEFAULT_WINDOWS))})",
    )
    return parser


def replay(input_path: Path, output_path: Path, config: FeatureConfig) -> int:
    """Write the features of every ready bar of `input_path` to `output_path`; the number of rows written."""
    engine = FeatureEngine(config)
    written = 0
    directory = output_path.resolve().parent
    with tempfile.NamedTemporaryFile(
        "w", newline="", dir=directory, prefix=f".{output_path.name}.", delete=False
    ) as out:
        try:
            writer = csv.writer(out)
            writer.writerow(["symbol", "ts", *engine.names])
            for run in distinct_symbol_runs(read_bars(input_path)):
                ids = engine.symbol_ids(bar.symbol for bar in run)
                batch = engine.update(ids, [bar.close for bar in run], [bar.volume for bar in run])
                for bar, values, ready in zip(run, batch.values.tolist(), batch.ready.tolist(), strict=True):
                    if ready:
                        writer.writerow([bar.symbol, bar.ts, *values])
                        written += 1
        except BaseException:
            os.unlink(out.name)
            raise
    os.replace(out.name, output_path)
    return written


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        config = FeatureConfig(windows=args.windows)
    except ValueError as error:
        print(f"tickserve features replay: invalid --windows: {error}", file=sys.stderr)
        return 2
    try:
        written = replay(args.input, args.output, config)
    except BarInputError as error:
        print(f"tickserve features replay: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"tickserve features replay: {error}", file=sys.stderr)
        return 1
    print(f"wrote {written} feature rows ({len(config.names)} features, {config.schema_version}) to {args.output}")
    return 0
