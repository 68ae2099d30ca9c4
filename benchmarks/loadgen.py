"""Closed-loop HTTP load from a second process: wrk posting one fixed JSON body at a fixed concurrency.

wrk is written in C, so on a 2-core machine it leaves nearly all CPU to the server under test, and it reports
latency percentiles from a full histogram. Every peer is driven by this same function, so the load generator
is never the difference between two rows. Errors (socket errors, timeouts, non-2xx answers) are counted and
returned, never dropped: a run with errors is reported as such.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "loadgen.lua"
RESULT_PREFIX = "LOADGEN_RESULT "


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    duration_s: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def successful_per_s(self) -> float:
        return max(0, self.requests - self.errors) / self.duration_s if self.duration_s else 0.0


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not on PATH; `make system-deps` installs it (Debian package wrk)")
    return path


def parse_wrk_output(stdout: str) -> LoadResult:
    """Read the JSON line that loadgen.lua's `done` hook prints."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            raw = json.loads(line.removeprefix(RESULT_PREFIX))
            errors = sum(raw[key] for key in ("connect_errors", "read_errors", "write_errors", "non_2xx", "timeouts"))
            return LoadResult(
                requests=raw["requests"],
                duration_s=raw["duration_us"] / 1e6,
                errors=errors,
                p50_ms=raw["p50_us"] / 1e3,
                p99_ms=raw["p99_us"] / 1e3,
            )
    raise RuntimeError(f"wrk printed no {RESULT_PREFIX.strip()} line:\n{stdout}")


def run_wrk(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    duration_s: float,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> LoadResult:
    """POST `body` to `url` from `concurrency` connections for `duration_s` seconds (JSON unless `headers` say).

    One wrk thread drives all connections: it sustains far more requests per second than a Python server
    answers, and a second thread would only take CPU from the server on a 2-core machine.
    """
    with tempfile.NamedTemporaryFile(prefix="loadgen-body-", suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        command = [
            wrk_binary(),
            "--threads",
            "1",
            "--connections",
            str(concurrency),
            "--duration",
            f"{max(1, round(duration_s))}s",
            "--timeout",
            f"{timeout_s:g}s",
            "--script",
            str(SCRIPT),
            url,
            "--",
            body_file.name,
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        completed = subprocess.run(command, capture_output=True, text=True, check=False, timeout=duration_s + 60)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr or completed.stdout}")
    return parse_wrk_output(completed.stdout)
