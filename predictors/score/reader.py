"""Chunked reading of feature files (parquet or CSV) with pyarrow, so memory stays flat on files of any size.

Only the feature and kept columns are read, `chunk_rows` rows at a time. CSV feature columns are read as text
and converted per chunk: a value that is not a number must be reported with its row, not fail the whole read.
A row is bad when a feature is missing, not a number, or not finite (NaN/inf): a NaN scored silently would
look like a real prediction downstream. Row numbers count data rows from 1 (the CSV header is not a row).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
PARQUET_BUFFER_BYTES = 1 << 20


class InputFileError(ValueError):
    """The input file cannot be read as a table; the message names the file and, where known, the row."""


class BadRow(ValueError):
    """A row whose features cannot be scored."""

    def __init__(self, row: int, problem: str) -> None:
        self.row, self.problem = row, problem
        super().__init__(f"row {row}: {problem}")


@dataclass
class Chunk:
    """`rows` consecutive data rows starting at data row `first_row`: the kept columns, the feature matrix
    (float64, [rows, F]) and which rows are bad."""

    first_row: int
    kept: pa.Table
    matrix: np.ndarray
    bad: np.ndarray
    features: pa.Table = field(repr=False)

    def describe_bad(self, index: int) -> BadRow:
        """Why row `index` of this chunk is bad, naming the first offending feature and its value."""
        finite = np.isfinite(self.matrix[index])
        column = self.features.column_names[int(np.argmin(finite))]
        value = self.features.column(column)[index].as_py()
        problem = "is missing" if value is None else f"is {value!r}, not a finite number"
        return BadRow(self.first_row + index, f"feature {column!r} {problem}")


def file_format(path: Path) -> str:
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return "parquet"
    if path.suffix.lower() in CSV_SUFFIXES:
        return "csv"
    raise InputFileError(f"{path}: unknown table format {path.suffix!r}; use .parquet or .csv")


def file_columns(path: Path) -> list[str]:
    """The column names of a parquet or CSV file, without reading its rows."""
    try:
        if file_format(path) == "parquet":
            return list(pq.read_schema(path).names)
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, pa.ArrowException) as error:
        raise InputFileError(f"{path}: {error}") from error
    if not header:
        raise InputFileError(f"{path}: empty file, expected a header row")
    return header


def row_count(path: Path) -> int | None:
    """Rows of a parquet file from its footer (a progress bar's total); None for CSV, which would need a scan."""
    return pq.ParquetFile(path).metadata.num_rows if file_format(path) == "parquet" else None


class ChunkReader:
    """Iterate `Chunk`s of `chunk_rows` rows over `path`. Under `skip_ragged`, CSV lines with the wrong number of
    fields are skipped and counted in `ragged` (line numbers in `ragged_lines`); otherwise they stop the read."""

    def __init__(
        self, path: Path, features: tuple[str, ...], keep: tuple[str, ...], chunk_rows: int, skip_ragged: bool
    ) -> None:
        self.path, self.features, self.keep, self.chunk_rows = path, features, keep, chunk_rows
        self.skip_ragged = skip_ragged
        self.ragged = 0
        self.ragged_lines: list[int] = []

    def __iter__(self) -> Iterator[Chunk]:
        first_row = 1
        try:
            for batch in _rebatch(self._batches(), self.chunk_rows):
                table = pa.Table.from_batches([batch])
                chunk = self._chunk(first_row, table)
                first_row += table.num_rows
                yield chunk
        except pa.ArrowInvalid as error:
            if self.ragged_lines and not self.skip_ragged:
                line = self.ragged_lines[-1]
                raise BadRow(line - 1, f"CSV line {line} has the wrong number of fields ({error})") from None
            raise InputFileError(f"{self.path}: {error}") from error

    def _batches(self) -> Iterator[pa.RecordBatch]:
        columns = list(dict.fromkeys((*self.keep, *self.features)))
        if file_format(self.path) == "parquet":
            # Streamed pages: by default pyarrow reads whole column chunks (a row group can be a million rows) and
            # pre-buffers the row groups it has read, so memory would grow with the file.
            parquet = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=PARQUET_BUFFER_BYTES)
            yield from parquet.iter_batches(batch_size=self.chunk_rows, columns=columns)
            return
        convert = pacsv.ConvertOptions(
            include_columns=columns, column_types=dict.fromkeys(self.features, pa.string()), strings_can_be_null=True
        )
        parse = pacsv.ParseOptions(invalid_row_handler=self._ragged_row)
        # Single-threaded parsing is what makes pyarrow report the line number of a ragged line.
        read = pacsv.ReadOptions(use_threads=False)
        reader = pacsv.open_csv(self.path, read_options=read, convert_options=convert, parse_options=parse)
        yield from reader

    def _ragged_row(self, row: pacsv.InvalidRow) -> str:
        if row.number is not None:
            self.ragged_lines.append(row.number)
        if self.skip_ragged:
            self.ragged += 1
            return "skip"
        return "error"

    def _chunk(self, first_row: int, table: pa.Table) -> Chunk:
        features = table.select(list(self.features))
        matrix = np.column_stack([_as_float(features.column(name)) for name in self.features])
        bad = ~np.isfinite(matrix).all(axis=1)
        return Chunk(first_row, table.select(list(self.keep)), matrix, bad, features)


def _as_float(column: pa.ChunkedArray) -> np.ndarray:
    """float64 values with NaN for missing ones; text that is not a number becomes NaN (so the row is bad)."""
    if not pa.types.is_floating(column.type):
        try:
            column = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pd.to_numeric(column.to_pandas(), errors="coerce").to_numpy(dtype=np.float64)
    return column.to_numpy().astype(np.float64, copy=False)


def _rebatch(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Regroup record batches of any size (CSV blocks are sized in bytes) into batches of exactly `rows` rows
    (the last one shorter), holding at most one chunk plus one source batch in memory."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield table.slice(0, rows).to_batches(max_chunksize=rows)[0]
            rest = table.slice(rows)
            pending = rest.to_batches() if rest.num_rows else []
            held = rest.num_rows
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches(max_chunksize=held)[0]
