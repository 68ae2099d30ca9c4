"""An output table written chunk by chunk into a temporary file beside the target, renamed over it on success.

A scoring run that fails (a bad row, a model error, Ctrl-C) removes its temporary file and leaves an existing
output untouched: a half-written predictions file must never look like a finished one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tickserve.predictors.score.reader import file_format


class AtomicTableWriter:
    """`with AtomicTableWriter(path) as writer: writer.write(table)`; the format follows the file suffix."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = file_format(path)
        self.rows = 0
        self._writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
        self._temp: Path | None = None

    def __enter__(self) -> AtomicTableWriter:
        handle, name = tempfile.mkstemp(dir=self.path.resolve().parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(handle)
        self._temp = Path(name)
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            assert self._temp is not None, "use AtomicTableWriter in a with block"
            if self.format == "parquet":
                self._writer = pq.ParquetWriter(self._temp, table.schema)
            else:
                self._writer = pacsv.CSVWriter(self._temp, table.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._temp is not None
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            if kind is None:
                os.replace(self._temp, self.path)
            else:
                self._temp.unlink(missing_ok=True)
