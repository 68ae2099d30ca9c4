"""The scoring loop: chunks in, one predictor call per chunk, predictions out, with the run's identity.

The predictor is the serving runtime itself (`locate` + `predictor_class`, the classes `tickserve predictor`
serves), called through `predict_arrays` without the server around it, so a batch score and a served answer
come from the same code. Every output row carries `model_name`, `model_version` and one `scored_at` (the
run's start, UTC) so a predictions file says which model produced it.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from tickserve.predictors.base import TickPredictor
from tickserve.predictors.model_dir import locate
from tickserve.predictors.repository import predictor_class
from tickserve.predictors.score.columns import InputLayout
from tickserve.predictors.score.reader import Chunk
from tickserve.predictors.score.writer import AtomicTableWriter
from tickserve.predictors.settings import PredictorSettings

META_COLUMNS = ("model_name", "model_version", "scored_at")


class ModelCallError(RuntimeError):
    """The model failed on a chunk; the message names the rows of that chunk."""


def load_predictor(model_path: Path, name: str, version: str | None, threads: int) -> TickPredictor:
    """The serving runtime for `model_path`, loaded outside a server: no micro-batcher, `threads` for the
    framework's intra-op pool (batch scoring wants every core, a server shares them with its event loop)."""
    artifact = locate(model_path)
    settings = PredictorSettings(max_batch_size=1, model_version=version, threads=threads)
    predictor = predictor_class(artifact.framework)(name, artifact, settings, ThreadPoolExecutor(1), threads)
    predictor.load()
    return predictor


@dataclass
class ScoreSummary:
    rows_read: int = 0
    rows_scored: int = 0
    rows_skipped: int = 0


def prediction_columns(outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One column per output value: [N] or [N, 1] keeps the output's name, [N, K] becomes name_0 .. name_K-1."""
    columns: dict[str, np.ndarray] = {}
    for name, array in outputs.items():
        flat = array.reshape(len(array), -1)
        if flat.shape[1] == 1:
            columns[name] = flat[:, 0]
        else:
            columns.update({f"{name}_{i}": flat[:, i] for i in range(flat.shape[1])})
    return columns


def score(
    predictor: TickPredictor,
    layout: InputLayout,
    chunks: Iterable[Chunk],
    writer: AtomicTableWriter,
    *,
    keep: tuple[str, ...],
    skip_bad_rows: bool,
    total_rows: int | None,
    progress: bool,
) -> ScoreSummary:
    """Score every chunk into `writer`; BadRow on the first bad row unless `skip_bad_rows` (then counted)."""
    summary = ScoreSummary()
    meta = {
        "model_name": pa.scalar(predictor.name, pa.string()),
        "model_version": pa.scalar(str(predictor.model_version), pa.string()),
        "scored_at": pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC")),
    }
    bar = tqdm(total=total_rows, unit="rows", unit_scale=True, desc="scoring", disable=not progress, smoothing=0.1)
    with bar:
        for chunk in chunks:
            summary.rows_read += len(chunk.matrix)
            kept, matrix = chunk.kept, chunk.matrix
            if chunk.bad.any():
                if not skip_bad_rows:
                    raise chunk.describe_bad(int(np.argmax(chunk.bad)))
                summary.rows_skipped += int(chunk.bad.sum())
                good = ~chunk.bad
                kept, matrix = kept.filter(pa.array(good)), matrix[good]
            if len(matrix):
                try:
                    outputs = predictor.predict_arrays(layout.inputs(matrix))
                except Exception as error:
                    last = chunk.first_row + len(chunk.matrix) - 1
                    raise ModelCallError(f"the model failed on rows {chunk.first_row}-{last}: {error}") from error
                columns = {name: pa.array(values) for name, values in prediction_columns(outputs).items()}
                rows = len(matrix)
                columns.update({name: pa.repeat(value, rows) for name, value in meta.items()})
                table = pa.Table.from_pydict({**{name: kept.column(name) for name in kept.column_names}, **columns})
                writer.write(table)
                summary.rows_scored += rows
            bar.update(len(chunk.matrix))
    if writer.rows == 0:  # nothing scored (an empty file, or every row skipped): still a valid, empty table
        empty = {name: pa.array([], pa.string()) for name in keep}
        writer.write(pa.table({**empty, **{name: pa.array([], value.type) for name, value in meta.items()}}))
    return summary
