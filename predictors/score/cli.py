"""`tickserve score`: score a feature file (parquet or CSV) or a bar file with a model, chunk by chunk.

    tickserve score --model models:/signal@champion --input features.parquet --output scores.parquet
    tickserve score --model ./model --input bars.csv --from_bars --output scores.csv --skip_bad_rows

The model runs on the predictors' own runtimes (LightGBM, ONNX Runtime, TorchScript), with every core for its
framework threads. Features are taken by column name, or in signature order when the file has exactly the
model's number of feature columns; `--from_bars` computes them from bars with the feature engine exactly as
`tickserve features replay` does. The output holds the kept columns, one column per prediction value,
`model_name`, `model_version` and `scored_at`, and replaces an existing file only when the run succeeds.

Exit codes: 0 scored; 1 a bad row (named by its data row number, counting from 1), an unreadable input or a
model that cannot score it; 2 bad settings.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tickserve.predictors.model_dir import ModelDirError
from tickserve.predictors.score.columns import ColumnMismatch, layout
from tickserve.predictors.score.model_ref import ModelRefError, resolve
from tickserve.predictors.score.reader import BadRow, ChunkReader, InputFileError, file_columns, row_count
from tickserve.predictors.score.scorer import ModelCallError, load_predictor, score
from tickserve.predictors.score.writer import AtomicTableWriter
from tickserve.settings import TickserveSettings, parse_settings, usage_error

PROG = "tickserve score"
BAR_KEYS = ("symbol", "ts")


class ScoreSettings(TickserveSettings):
    """What to score with which model, and how."""

    model_config = SettingsConfigDict(env_prefix="TICKSERVE_SCORE_", extra="ignore", cli_implicit_flags=True)

    model: str = Field(
        description="model directory or file, or a registered version: models:/name/7, models:/name@alias"
    )
    input: Path = Field(description="features as .parquet or .csv (or bars with --from_bars)")
    output: Path = Field(description=".parquet or .csv to write; replaced only when scoring succeeds")
    from_bars: bool = Field(False, description="the input is a bar CSV; compute features with the feature engine")
    windows: tuple[int, ...] | None = Field(
        None, description="feature windows in bars for --from_bars, JSON list (default: the feature engine's)"
    )
    keep_columns: str = Field(
        "", description="comma-separated input columns copied to the output (default with --from_bars: symbol,ts)"
    )
    chunk_rows: int = Field(65536, ge=1, description="rows read and scored at a time; bounds memory")
    skip_bad_rows: bool = Field(False, description="skip and count rows with missing or non-numeric features")
    threads: int = Field(os.cpu_count() or 1, ge=1, description="framework intra-op threads")
    model_name: str | None = Field(None, description="model_name written to the output (default: the model's name)")
    model_version: str | None = Field(None, description="model_version written (default: registry or MLmodel version)")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI for models:/ (default: MLFLOW_TRACKING_URI)"
    )
    progress: bool = Field(True, description="show a progress bar with rows/s on stderr")


def bar_features(bars: Path, windows: tuple[int, ...] | None, path: Path) -> Path:
    """The features `tickserve features replay` computes from `bars`, written to `path`. Imported here: the
    feature engine compiles its kernel with numba, which scoring a feature file does not need."""
    from tickserve.transformers.features.bars import BarInputError
    from tickserve.transformers.features.cli import replay
    from tickserve.transformers.features.engine import FeatureConfig

    try:
        config = FeatureConfig() if windows is None else FeatureConfig(windows=windows)
    except ValueError as error:
        usage_error(PROG, f"invalid --windows: {error}")
    try:
        replay(bars, path, config)
    except BarInputError as error:
        raise InputFileError(str(error)) from error
    return path


def run(settings: ScoreSettings, workdir: Path) -> str:
    """Score as configured; returns the summary line."""
    ref = resolve(settings.model, workdir / "model", settings.tracking_uri)
    keep = tuple(name.strip() for name in settings.keep_columns.split(",") if name.strip())
    features_path = settings.input
    if settings.from_bars:
        keep = keep or BAR_KEYS
        features_path = bar_features(settings.input, settings.windows, workdir / "features.csv")
    predictor = load_predictor(
        ref.path, settings.model_name or ref.name, settings.model_version or ref.version, settings.threads
    )
    input_layout = layout(predictor.signature, file_columns(features_path), keep)
    reader = ChunkReader(features_path, input_layout.columns, keep, settings.chunk_rows, settings.skip_bad_rows)
    with AtomicTableWriter(settings.output) as writer:
        summary = score(
            predictor,
            input_layout,
            reader,
            writer,
            keep=keep,
            skip_bad_rows=settings.skip_bad_rows,
            total_rows=row_count(features_path),
            progress=settings.progress,
        )
    line = (
        f"scored {summary.rows_scored} rows with {predictor.name} version {predictor.model_version} "
        f"into {settings.output}"
    )
    skipped = summary.rows_skipped + reader.ragged
    if skipped:
        line += f"; skipped {skipped} bad rows ({summary.rows_skipped} with missing or non-numeric features"
        line += f", {reader.ragged} CSV lines with the wrong number of fields)" if reader.ragged else ")"
    return line


def main(argv: list[str] | None = None) -> int:
    settings, _ = parse_settings(ScoreSettings, PROG, argv, description=__doc__.splitlines()[0])
    try:
        with tempfile.TemporaryDirectory(prefix="tickserve-score-") as workdir:
            print(run(settings, Path(workdir)))
    except BadRow as error:
        print(f"{PROG}: {settings.input}: {error}; fix it or pass --skip_bad_rows to skip such rows", file=sys.stderr)
        return 1
    except (ModelRefError, ModelDirError, ColumnMismatch, InputFileError, ModelCallError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    return 0
