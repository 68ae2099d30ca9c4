"""Benchmark one variant in a fresh process, so its peak RSS is its own: the runtime's import, the loaded model
and the calls, and nothing another variant left behind.

Per batch size: a few warm-up calls, then timed calls for `seconds` (at least 20): p50 and p99 latency; rows/s
is the largest batch's rows over its median latency (the median, because on a shared machine a few calls
delayed by other processes would otherwise decide the figure; p99 shows them). `runtime_rss_mb` is the process RSS after importing the
runtime and before loading the model; `peak_rss_mb` is the process's peak. `load_ms` is the model load,
including ONNX Runtime's online graph optimisation.

The parent runs `python -m tickserve.predictors.optimize.bench '<json>'` and reads one JSON line back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tickserve.predictors.optimize.variants import Variant

BATCHES = (1, 32)
WARMUP_CALLS = 5
MIN_CALLS = 20


class BenchError(RuntimeError):
    """A benchmark worker failed; the message carries its stderr."""


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (Linux). VmHWM, not ru_maxrss: ru_maxrss keeps
    the forking parent's peak across exec, so every worker would report the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _batch(sample: np.ndarray, rows: int) -> np.ndarray:
    repeats = -(-rows // len(sample))
    return np.ascontiguousarray(np.concatenate([sample] * repeats)[:rows])


def measure(variant: Variant, sample_path: Path, input_name: str, threads: int, seconds: float) -> dict[str, float]:
    from tickserve.predictors.optimize.variants import import_runtime, open_runner

    import_runtime(variant)  # counted in the runtime's RSS, not the model's, and not in load_ms
    sample = np.load(sample_path)
    runtime_rss = _status_mb("VmRSS")
    started = time.perf_counter()
    run = open_runner(variant, input_name, threads)
    figures: dict[str, float] = {"load_ms": (time.perf_counter() - started) * 1e3}
    for rows in BATCHES:
        batch = _batch(sample, rows)
        for _ in range(WARMUP_CALLS):
            run(batch)
        latencies = []
        deadline = time.perf_counter() + seconds
        while len(latencies) < MIN_CALLS or time.perf_counter() < deadline:
            begin = time.perf_counter()
            run(batch)
            latencies.append(time.perf_counter() - begin)
        figures[f"p50_ms_b{rows}"] = float(np.percentile(latencies, 50) * 1e3)
        figures[f"p99_ms_b{rows}"] = float(np.percentile(latencies, 99) * 1e3)
        figures["rows_per_s"] = rows / float(np.median(latencies))
    figures["model_mb"] = variant.size_bytes / 2**20
    figures["runtime_rss_mb"] = runtime_rss
    figures["peak_rss_mb"] = _status_mb("VmHWM")
    return figures


def run_isolated(
    variant: Variant, sample_path: Path, input_name: str, threads: int, seconds: float
) -> dict[str, float]:
    """`measure` in a child process; BenchError with the child's complaint when it fails."""
    job = {**variant.as_dict(), "sample": str(sample_path), "input": input_name, "threads": threads, "seconds": seconds}
    done = subprocess.run(
        [sys.executable, "-m", "tickserve.predictors.optimize.bench", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"benchmark of {variant.name} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    variant = Variant(job["name"], job["runtime"], job["path"], job["provider"])
    figures = measure(variant, Path(job["sample"]), job["input"], job["threads"], job["seconds"])
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
