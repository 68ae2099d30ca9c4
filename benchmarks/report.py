"""One result format for every benchmark: rows of measurements, written as JSON and printed as a table.

A row is a flat dict; `bench` and `case` name it, `system` says which peer was measured (tickserve, mlserver,
the in-process floor ...). Benchmarks compare peers measured side by side in the same run, so the JSON also
records the machine they ran on.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; samples need not be sorted."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def machine() -> dict[str, object]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def write(out_dir: Path, bench: str, rows: list[dict], notes: dict | None = None) -> Path:
    """Write `rows` to out_dir/bench.json with the machine description and return the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{bench}.json"
    document = {
        "bench": bench,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "notes": notes or {},
        "rows": rows,
    }
    path.write_text(json.dumps(document, indent=2, default=float))
    return path


def table(rows: list[dict], columns: Sequence[str] | None = None) -> str:
    """A plain-text table of rows; floats are shown with 3 significant decimals."""
    if not rows:
        return "(no rows)"
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
        return "" if value is None else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    header = "  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True))
    rule = "  ".join("-" * width for width in widths)
    body = ["  ".join(value.rjust(width) for value, width in zip(line, widths, strict=True)) for line in cells]
    return "\n".join([header, rule, *body])
