"""Predictor servers side by side: tickserve vs MLServer on one LightGBM model, and tickserve's micro-batching.

Method (the same for every peer, in one run, on one machine):
- Same model files: one LightGBM booster (40 named features) that tickserve loads from its MLflow layout and
  MLServer from a byte-identical copy; two networks over a [60, 110] window, each exported as ONNX and
  TorchScript: a 2-layer LSTM (hidden 128), whose cost is compute that a batch barely shares, and a dense MLP
  (hidden 2048, 512), whose cost is weight traffic that a batch shares. Every server's first answer is
  compared with the in-process prediction before load starts.
- Same request bodies: v2 JSON REST, one packed FP32 tensor (`features` [N, 40] or `window` [1, 60, 110]);
  the window is also sent with the v2 binary tensor extension, to show what JSON parsing costs.
- Same load generator: wrk in a second process, closed loop, loopback only (benchmarks/loadgen.py).
- Same CPU budget: one compute thread per process; MLServer with WORKERS inference workers or inline (0),
  tickserve with WORKERS uvicorn workers or one (its event loop plus the model's executor thread); every layout
  is measured and named in its row. Micro-batching is measured in both tickserve layouts (one worker's batcher
  sees all concurrent requests), against batching off in its best layout (WORKERS workers); rows_per_model_call
  (from tickserve's batch-size histogram) shows the batches actually formed.
- Peers compared in one case run at the same time and are measured in turns, REPEATS times, after a
  warm-up; rows quote the median of the repeats, so load from other processes on a shared machine hits all
  peers alike. Errors (non-2xx, socket errors, timeouts) are summed into the row, never dropped.
- Runtimes: the same LightGBM MLflow model through tickserve's native LightGBM runtime and through its generic
  mlflow.pyfunc runtime (TICKSERVE_RUNTIME=pyfunc), same layout, c16: what a flavor without a native runtime costs.
- The in-process floor is the model call alone (`Booster.predict`, an ONNX Runtime / TorchScript call).
- CPU per answer (user+system of the server's whole process tree / answers) is recorded next to throughput:
  on a busy shared machine it is the figure other processes distort least.

TICKSERVE_BENCH_SECONDS sets the length of one measured repeat (default 3 s; the whole run takes 6-9 min on
2 cores).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import predictors_models as models
import predictors_servers as servers
import report
from loadgen import LoadResult, run_wrk

BENCH = "predictors"
MODELS_DIR = servers.REPO / ".bench" / "models"
WORKERS = 2
REPEATS = 3
SECONDS = float(os.environ.get("TICKSERVE_BENCH_SECONDS", "3"))
WARMUP_SECONDS = 2.0
CONCURRENCIES = (1, 16)
LIGHTGBM_ROWS = (1, 32)
BATCH_ROWS = 64
BATCH_WAIT_MS = 2.0
P99_BOUND_MS = 10.0
TARGET_VS_MLSERVER = 3.0
TARGET_BATCHING = 5.0
# tickserve runs LightGBM in two layouts: WORKERS uvicorn workers (as many processes as MLServer's pool), and one
# worker whose event loop hands model calls to its executor thread (loop + model thread use the two cores).
TICKSERVE_LAYOUTS = {workers: f"tickserve, {workers} worker{'s' * (workers > 1)}" for workers in (WORKERS, 1)}
FLOOR = "in-process floor"
RUNTIME_CASE = "lightgbm runtimes"
RUNTIMES = {runtime: f"tickserve, {runtime} runtime, {WORKERS} workers" for runtime in ("native", "pyfunc")}
BATCHING_OFF = f"tickserve, batching off, {WORKERS} workers"
# Batching is measured in two worker layouts: with WORKERS workers each batcher sees only its share of the
# concurrent requests (c16 -> <= 8 rows a batch); one worker sees all of them, with one event loop for HTTP.
BATCHING_ON = {
    workers: f"tickserve, batching {BATCH_ROWS} rows / {BATCH_WAIT_MS:g} ms, {workers} worker{'s' * (workers > 1)}"
    for workers in (WORKERS, 1)
}


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    concurrency: int
    body: bytes
    headers: dict[str, str] | None = None


@dataclass
class Run:
    """Everything one benchmark run accumulates: rows for the table, notes for the JSON."""

    rows: list[dict]
    notes: dict


def v2_body(input_name: str, array: np.ndarray) -> bytes:
    """A v2 JSON inference request with one FP32 tensor; values have 6 decimals, as a feature store sends."""
    return json.dumps(
        {
            "inputs": [
                {"name": input_name, "shape": list(array.shape), "datatype": "FP32", "data": array.ravel().tolist()}
            ]
        }
    ).encode()


def v2_binary_body(input_name: str, array: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """The same request with the v2 binary tensor extension: a JSON header, then the raw FP32 bytes."""
    raw = array.astype(np.float32).tobytes()
    tensor = {"name": input_name, "shape": list(array.shape), "datatype": "FP32"}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}).encode()
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
    return header + raw, headers


def rounded(array: np.ndarray) -> np.ndarray:
    """Float64 values with 6 decimals (short JSON), whose float32 cast is what the servers compute on."""
    return np.round(array.astype(np.float64), 6)


def timed_calls(call: Callable[[], object], seconds: float) -> tuple[list[float], float]:
    """Per-call latencies (ms) of `call` repeated for `seconds` after a short warm-up, and CPU ms per call."""
    for _ in range(5):
        call()
    latencies: list[float] = []
    cpu_start = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - start) * 1e3)
    return latencies, (time.process_time() - cpu_start) * 1e3 / len(latencies)


def floor_row(case: str, rows: int, timed: tuple[list[float], float]) -> dict:
    latencies, cpu_ms = timed
    per_call_s = statistics.fmean(latencies) / 1e3
    return {
        "bench": BENCH,
        "case": case,
        "system": FLOOR,
        "rows_per_request": rows,
        "concurrency": 1,
        "requests_per_s": 1 / per_call_s,
        "predictions_per_s": rows / per_call_s,
        "p50_ms": report.percentile(latencies, 50),
        "p99_ms": report.percentile(latencies, 99),
        "errors": 0,
        "cpu_ms_per_request": cpu_ms,
    }


def batch_totals(infer_url: str) -> tuple[float, float] | None:
    """(rows, model calls) so far from tickserve's tickserve_predictor_batch_size histogram; None elsewhere."""
    try:
        text = httpx.get(infer_url.split("/v2/", 1)[0] + "/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return None
    totals = {}
    for line in text.splitlines():
        for part in ("sum", "count"):
            if line.startswith(f"tickserve_predictor_batch_size_{part}{{"):
                totals[part] = totals.get(part, 0.0) + float(line.rsplit(" ", 1)[1])
    return (totals["sum"], totals["count"]) if len(totals) == 2 else None


def measured_row(case: Case, system: str, results: list[LoadResult], cpu_ms: list[float]) -> dict:
    """Median over the repeats; requests_per_s counts successful (2xx) answers only."""
    per_s = report.median([result.successful_per_s for result in results])
    return {
        **row_key(case, system),
        "requests_per_s": per_s,
        "predictions_per_s": per_s * case.rows,
        "p50_ms": report.median([result.p50_ms for result in results]),
        "p99_ms": report.median([result.p99_ms for result in results]),
        "errors": sum(result.errors for result in results),
        "cpu_ms_per_request": report.median(cpu_ms),
    }


def failed_row(case: Case, system: str, reason: str) -> dict:
    return {**row_key(case, system), "errors": reason}


def row_key(case: Case, system: str) -> dict:
    """The columns that say what a row measured."""
    return {
        "bench": BENCH,
        "case": case.name,
        "system": system,
        "rows_per_request": case.rows,
        "concurrency": case.concurrency,
    }


def first_answer(url: str, case: Case) -> np.ndarray:
    """POST the case's body once and return the first output as a flat array; anything but a 200 v2 answer raises."""
    headers = case.headers or {"Content-Type": "application/json"}
    response = httpx.post(url, content=case.body, headers=headers, timeout=30.0)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:300]}")
    return np.asarray(response.json()["outputs"][0]["data"], dtype=np.float64)


def deviation_from(expected: np.ndarray, answer: np.ndarray) -> float | None:
    """Largest difference between a server's answer and the in-process prediction, None if shapes disagree.

    A binary booster predicts P(class 1) per row; a server may answer that alone or both class
    probabilities per row, so with 1-D `expected` the answer's last column is compared.
    """
    rows = expected.shape[0]
    if answer.size % rows:
        return None
    per_row = answer.reshape(rows, -1)
    if expected.ndim == 1:
        per_row = per_row[:, -1]
    if per_row.shape != expected.shape:
        return None
    return float(np.max(np.abs(per_row - expected)))


def start_peer(make: Callable[[], servers.Endpoint]) -> servers.Endpoint:
    """Start a server; a failed start is retried once on fresh ports (another process on a shared machine may
    have taken one), a second failure raises with the server's log tail."""
    endpoint = make()
    try:
        endpoint.process.start()
    except (RuntimeError, TimeoutError) as error:
        print(f"  {endpoint.process.name} did not start, retrying once: {str(error)[-500:]}", flush=True)
        endpoint.process.stop()
        endpoint = make()
        endpoint.process.start()
    return endpoint


@contextlib.contextmanager
def started(
    peers: dict[str, Callable[[], servers.Endpoint]], cases: list[Case], expected: np.ndarray, run: Run
) -> Iterator[dict[str, servers.Endpoint]]:
    """Start every peer and keep those that answer the last case's body like the in-process model.

    A peer that cannot start or answer gets a row per case saying so (and its log tail in the notes); a wrong
    answer is recorded in the notes' failures, and the peer is still measured.
    """
    check = cases[-1]
    with contextlib.ExitStack() as stack:
        ready: dict[str, servers.Endpoint] = {}
        for system, make in peers.items():
            label = f"{check.name} / {system}"
            try:
                endpoint = start_peer(make)
                stack.callback(endpoint.process.stop)
                run.notes["configs"][label] = endpoint.config
                answer = first_answer(endpoint.infer_url, check)
            except (RuntimeError, TimeoutError, httpx.HTTPError, KeyError, ValueError) as error:
                run.notes["failures"].append(f"{label}: {error}")
                print(f"  {system}: FAILED: {str(error)[-3000:]}", flush=True)
                run.rows.extend(failed_row(case, system, "did not start or answer") for case in cases)
                continue
            deviation = deviation_from(expected, answer)
            run.notes["agreement_max_abs_diff"][label] = deviation
            if deviation is None or deviation > 1e-4:
                run.notes["failures"].append(f"{label}: answer {answer[:4]} differs from in-process {expected[:2]}")
            ready[system] = endpoint
        yield ready


def compare(peers: dict[str, servers.Endpoint], cases: list[Case], run: Run) -> None:
    """Measure every case on every started peer: warm-up, then REPEATS turns across peers, median per row."""
    for case in cases:
        results: dict[str, list[LoadResult]] = {system: [] for system in peers}
        cpu_ms: dict[str, list[float]] = {system: [] for system in peers}
        batches: dict[str, tuple[float, float] | None] = {}
        for endpoint in peers.values():
            run_wrk(
                endpoint.infer_url,
                case.body,
                concurrency=case.concurrency,
                duration_s=WARMUP_SECONDS,
                headers=case.headers,
            )
        for system, endpoint in peers.items():
            batches[system] = batch_totals(endpoint.infer_url)
        for _ in range(REPEATS):
            for system, endpoint in peers.items():
                pid = endpoint.process.process.pid  # type: ignore[union-attr]  # started
                cpu_before = servers.cpu_seconds(pid)
                result = run_wrk(
                    endpoint.infer_url,
                    case.body,
                    concurrency=case.concurrency,
                    duration_s=SECONDS,
                    headers=case.headers,
                )
                cpu_ms[system].append((servers.cpu_seconds(pid) - cpu_before) * 1e3 / max(1, result.requests))
                results[system].append(result)
        for system, measured in results.items():
            row = measured_row(case, system, measured, cpu_ms[system])
            before, after = batches[system], batch_totals(peers[system].infer_url)
            if before and after and after[1] > before[1]:
                # Rows per framework call over the measured repeats: what micro-batching actually achieved.
                row["rows_per_model_call"] = (after[0] - before[0]) / (after[1] - before[1])
            run.rows.append(row)
            per_call = f"  {row['rows_per_model_call']:.1f} rows/call" if "rows_per_model_call" in row else ""
            print(
                f"  {case.name:<24} {system:<44} {case.rows:>3} rows c{case.concurrency:<3}"
                f" {row['requests_per_s']:>8.0f} req/s  p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms"
                f"  cpu {row['cpu_ms_per_request']:.2f} ms/req  errors {row['errors']}{per_call}",
                flush=True,
            )


def lightgbm_bench(bench_models: models.BenchModels, workdir: Path, run: Run) -> None:
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(bench_models.lightgbm_text))
    name = "lightgbm"
    inputs = {rows: rounded(models.synthetic_features(rows, seed=100 + rows)) for rows in LIGHTGBM_ROWS}
    for rows, array in inputs.items():
        features = array.astype(np.float32)
        timed = timed_calls(lambda features=features: booster.predict(features, num_threads=1), SECONDS)
        run.rows.append(floor_row(name, rows, timed))
    cases = [
        Case(name, rows, concurrency, v2_body("features", inputs[rows]))
        for rows in LIGHTGBM_ROWS
        for concurrency in CONCURRENCIES
    ]
    mlserver_variants = {
        f"mlserver, parallel_workers={WORKERS}": {"workers": WORKERS},
        "mlserver, parallel_workers=0": {"workers": 0},
        f"mlserver, parallel_workers={WORKERS}, adaptive batching": {
            "workers": WORKERS,
            "adaptive_batching": (BATCH_ROWS, BATCH_WAIT_MS / 1e3),
        },
    }
    peers = {
        **{
            system: functools.partial(
                servers.tickserve_predictor, bench_models.lightgbm_mlflow, workdir, name=name, workers=workers
            )
            for workers, system in TICKSERVE_LAYOUTS.items()
        },
        **{
            system: functools.partial(
                servers.mlserver_lightgbm,
                bench_models.lightgbm_text,
                workdir,
                name=name,
                n_features=models.N_FEATURES,
                **options,
            )
            for system, options in mlserver_variants.items()
        },
    }
    expected = booster.predict(inputs[cases[-1].rows].astype(np.float32), num_threads=1)
    with started(peers, cases, expected, run) as ready:
        compare(ready, cases, run)


def runtime_bench(bench_models: models.BenchModels, workdir: Path, run: Run) -> None:
    """The same LightGBM MLflow model through tickserve's native runtime and through its mlflow.pyfunc fallback
    (TICKSERVE_RUNTIME=pyfunc): what serving a flavor without a native runtime costs."""
    import lightgbm as lgb

    booster = lgb.Booster(model_file=str(bench_models.lightgbm_text))
    inputs = {rows: rounded(models.synthetic_features(rows, seed=200 + rows)) for rows in LIGHTGBM_ROWS}
    cases = [Case(RUNTIME_CASE, rows, 16, v2_body("features", inputs[rows])) for rows in LIGHTGBM_ROWS]
    peers = {
        system: functools.partial(
            servers.tickserve_predictor,
            bench_models.lightgbm_mlflow,
            workdir,
            name="lightgbm",
            workers=WORKERS,
            runtime=runtime,
        )
        for runtime, system in RUNTIMES.items()
    }
    expected = booster.predict(inputs[cases[-1].rows].astype(np.float32), num_threads=1)
    with started(peers, cases, expected, run) as ready:
        compare(ready, cases, run)


def window_bench(network_name: str, model: models.WindowModel, workdir: Path, run: Run) -> None:
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model.onnx / "model.onnx"), options)
    torch.set_num_threads(1)
    scripted = torch.jit.load(str(model.torchscript / "data" / "model.pth"))
    floors = {
        "onnx": lambda window: session.run(None, {models.WINDOW_INPUT: window}),
        "torchscript": lambda window: scripted(torch.from_numpy(window)),
    }
    window = rounded(models.synthetic_windows(1, seed=200))
    expected = session.run(None, {models.WINDOW_INPUT: window.astype(np.float32)})[0]
    for fmt, model_dir in (("onnx", model.onnx), ("torchscript", model.torchscript)):
        name = f"window-{network_name} {fmt}"
        cpu_per_row = {}
        with torch.inference_mode():
            for rows in (1, BATCH_ROWS):
                batch = models.synthetic_windows(rows, seed=300 + rows)
                row = floor_row(name, rows, timed_calls(lambda batch=batch, fmt=fmt: floors[fmt](batch), SECONDS))
                run.rows.append(row)
                cpu_per_row[rows] = row["cpu_ms_per_request"] / rows
        # The most batching can gain on this model: CPU per window alone vs in a full batch.
        run.notes["batching_ceiling_in_process"][name] = cpu_per_row[1] / cpu_per_row[BATCH_ROWS]
        binary_body, binary_headers = v2_binary_body(models.WINDOW_INPUT, window)
        cases = [
            *(Case(name, 1, concurrency, v2_body(models.WINDOW_INPUT, window)) for concurrency in CONCURRENCIES),
            Case(f"{name} binary", 1, 16, binary_body, binary_headers),
        ]
        layouts = [
            (BATCHING_OFF, WORKERS, 1, 0.0),
            *((system, n, BATCH_ROWS, BATCH_WAIT_MS) for n, system in BATCHING_ON.items()),
        ]
        peers = {
            system: functools.partial(
                servers.tickserve_predictor,
                model_dir,
                workdir,
                name="window",
                workers=workers,
                max_batch_size=batch_rows,
                max_latency_ms=latency_ms,
            )
            for system, workers, batch_rows, latency_ms in layouts
        }
        with started(peers, cases, expected, run) as ready:
            compare(ready, cases, run)


def find(rows: list[dict], case: str, system: str, concurrency: int, rows_per_request: int = 1) -> dict | None:
    for row in rows:
        if (row["case"], row["system"], row["concurrency"], row["rows_per_request"]) == (
            case,
            system,
            concurrency,
            rows_per_request,
        ) and isinstance(row.get("requests_per_s"), float):
            return row
    return None


def summary_row(case: str, system: str, ratio: float, target: str, met: bool | None = None) -> dict:
    row = {"bench": BENCH, "case": case, "system": system, "ratio": ratio, "target": target}
    if met is not None:
        row["met"] = met
    return row


def cpu_info(case: str, system: str, leaner: dict, costlier: dict) -> dict:
    """Server CPU per answer, costlier / leaner: robust where a busy shared machine distorts throughput."""
    ratio = costlier["cpu_ms_per_request"] / leaner["cpu_ms_per_request"]
    return summary_row(case, system, ratio, "info only: CPU per answer, > 1 favours the first-named side")


def summary_rows(rows: list[dict]) -> list[dict]:
    """The ratios the targets name, each saying whether the target was met, plus CPU-per-answer ratios."""
    summaries = []
    theirs = [
        row
        for row in rows
        if row["case"] == "lightgbm" and row["system"].startswith("mlserver") and row["concurrency"] == 16
    ]
    theirs = [row for row in theirs if row["rows_per_request"] == 1 and "p99_ms" in row]
    for system in TICKSERVE_LAYOUTS.values():
        ours = find(rows, "lightgbm", system, 16)
        if not (ours and theirs):
            continue
        best = max(theirs, key=lambda row: row["requests_per_s"])
        ratio = ours["requests_per_s"] / best["requests_per_s"]
        met = ratio >= TARGET_VS_MLSERVER and ours["p99_ms"] < P99_BOUND_MS and ours["errors"] == 0
        target = f">= {TARGET_VS_MLSERVER:g}x and tickserve p99 < {P99_BOUND_MS:g} ms"
        summaries.append(
            summary_row(
                f"target: lightgbm 1 row c16, {system} / best mlserver", f"vs {best['system']}", ratio, target, met
            )
        )
        lean = min(theirs, key=lambda row: row["cpu_ms_per_request"])
        summaries.append(
            cpu_info(f"cpu: lightgbm 1 row c16, {system} vs leanest mlserver", f"vs {lean['system']}", ours, lean)
        )
    for per_request in LIGHTGBM_ROWS:
        native = find(rows, RUNTIME_CASE, RUNTIMES["native"], 16, per_request)
        pyfunc = find(rows, RUNTIME_CASE, RUNTIMES["pyfunc"], 16, per_request)
        if native and pyfunc:
            ratio = native["requests_per_s"] / pyfunc["requests_per_s"]
            target = "info only: native / pyfunc throughput, same model and layout"
            case = f"runtimes: lightgbm {per_request} rows c16, native / pyfunc"
            summaries.append(summary_row(case, "tickserve", ratio, target))
            summaries.append(
                cpu_info(f"cpu: lightgbm {per_request} rows c16, native vs pyfunc", "tickserve", native, pyfunc)
            )
    window_cases = [
        f"window-{network} {fmt}{body}"
        for network in models.WINDOW_NETWORKS
        for fmt in ("onnx", "torchscript")
        for body in ("", " binary")
    ]
    for case in window_cases:
        off = find(rows, case, BATCHING_OFF, 16)
        for system in BATCHING_ON.values():
            on = find(rows, case, system, 16)
            if not (off and on):
                continue
            ratio = on["requests_per_s"] / off["requests_per_s"]
            met = ratio >= TARGET_BATCHING and on["p99_ms"] < P99_BOUND_MS and on["errors"] == 0
            target = f">= {TARGET_BATCHING:g}x and batched p99 < {P99_BOUND_MS:g} ms"
            summaries.append(summary_row(f"target: {case} c16, batching on / off", system, ratio, target, met))
            summaries.append(cpu_info(f"cpu: {case} c16, batching on vs off", system, on, off))
    return summaries


@contextlib.contextmanager
def stop_servers_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (`timeout`, CI cancelling) into SystemExit so every started server is stopped on the way out.

    The servers run in their own sessions; without this a terminated benchmark would leave them running.
    """
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(out_dir: Path) -> list[dict]:
    bench_models = models.build_all(MODELS_DIR)
    servers.ensure_mlserver_venv()
    measured = Run(
        rows=[],
        notes={
            "method": __doc__,
            "workers_per_server": f"{WORKERS} or 1, named in each row's system",
            "threads_per_worker": 1,
            "repeats": REPEATS,
            "seconds_per_repeat": SECONDS,
            "warmup_seconds": WARMUP_SECONDS,
            "load_generator": "wrk 1 thread, closed loop, keep-alive, 127.0.0.1 (benchmarks/loadgen.lua)",
            "requests_per_s": "successful (2xx) requests per second, median of the repeats",
            "p99_target_reading": "a ratio target is met only if the faster side also keeps p99 under the bound",
            "mlserver": f"{' '.join(servers.MLSERVER_PACKAGES)} in {servers.MLSERVER_VENV}",
            "configs": {},
            "agreement_max_abs_diff": {},
            "batching_ceiling_in_process": {},
            "failures": [],
            "load_average_start": os.getloadavg(),
        },
    )
    with stop_servers_on_sigterm(), tempfile.TemporaryDirectory(prefix="bench-predictors-") as scratch:
        lightgbm_bench(bench_models, Path(scratch), measured)
        runtime_bench(bench_models, Path(scratch), measured)
        for network_name, window_model in bench_models.windows.items():
            window_bench(network_name, window_model, Path(scratch), measured)
    measured.notes["load_average_end"] = os.getloadavg()
    measured.rows.extend(summary_rows(measured.rows))
    path = report.write(out_dir, BENCH, measured.rows, measured.notes)
    print(f"  wrote {path}", flush=True)
    return measured.rows
