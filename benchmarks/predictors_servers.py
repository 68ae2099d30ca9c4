"""How each peer is started for the predictor benchmark: tickserve's predictor and MLServer, as child processes.

MLServer lives in its own virtualenv (.bench/mlserver-venv, git-ignored) so that its pinned dependencies
never touch the project's .venv; it is created on first use and reused after. Both servers get the same
worker count and the same environment (one intra-op thread per process), listen on loopback only, and are
considered up only when their v2 model-ready endpoint answers 200.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tickserve import launch
from tickserve.processes import ServerProcess

REPO = Path(__file__).resolve().parent.parent
MLSERVER_VENV = REPO / ".bench" / "mlserver-venv"
MLSERVER_VERSION = "1.7.1"
# uvloop 0.22 made get_event_loop() raise in MLServer's inference-pool workers (SeldonIO/MLServer#2286, unfixed
# in 1.7.1), so the pool never starts; 0.21 is the last release it works with.
MLSERVER_PACKAGES = [f"mlserver=={MLSERVER_VERSION}", f"mlserver-lightgbm=={MLSERVER_VERSION}", "uvloop<0.22"]
# One compute thread per server process: parallelism comes from worker processes, equally for both servers,
# and 2 cores leave no room for thread pools inside each worker on top of that.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
START_TIMEOUT_S = 120.0


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, all held open while picking so that none is handed out twice."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass
class Endpoint:
    """A server to start: its process, the v2 REST URL of the model's infer route and how it was configured."""

    process: ServerProcess
    infer_url: str
    config: dict[str, object] = field(default_factory=dict)


def ensure_mlserver_venv(venv: Path = MLSERVER_VENV) -> Path:
    """Return the `mlserver` executable, (re)installing the pinned packages when the venv lacks them.

    A marker file records what was installed, so later runs skip pip entirely and a changed pin re-installs.
    """
    marker = venv / "tickserve-bench-packages.txt"
    wanted = "\n".join(MLSERVER_PACKAGES)
    if not marker.exists() or marker.read_text() != wanted:
        print(f"installing {' '.join(MLSERVER_PACKAGES)} into {venv}", flush=True)
        if not (venv / "bin" / "pip").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *MLSERVER_PACKAGES], check=True)
        marker.write_text(wanted)
    return venv / "bin" / "mlserver"


def mlserver_lightgbm(
    model_file: Path,
    workdir: Path,
    *,
    name: str,
    workers: int,
    n_features: int,
    adaptive_batching: tuple[int, float] | None = None,
) -> Endpoint:
    """MLServer with its LightGBM runtime, in one of the configurations its docs recommend.

    settings.json: `parallel_workers` (the parallel-inference guide sizes the pool to the cores; 0 runs
    inference inside the HTTP process), `debug` off. model-settings.json: the LightGBM runtime, the model
    file, and the input declared as one FP32 [-1, F] tensor with the NumPy content type, so a single packed
    2-D tensor decodes straight to the array `Booster.predict` takes (the same body tickserve gets).
    `adaptive_batching` = (max_batch_size, max_batch_time in seconds) turns on MLServer's adaptive batching.
    """
    executable = ensure_mlserver_venv()
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": workers,
    }
    model_settings = {
        "name": name,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": str(model_file)},
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [-1, n_features], "parameters": {"content_type": "np"}}
        ],
    }
    if adaptive_batching is not None:
        model_settings["max_batch_size"], model_settings["max_batch_time"] = adaptive_batching
    workdir = Path(tempfile.mkdtemp(prefix="mlserver-", dir=workdir))
    repository = workdir / "repository"
    (repository / name).mkdir(parents=True, exist_ok=True)
    (repository / "settings.json").write_text(json.dumps(settings, indent=2))
    (repository / name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    base = f"http://127.0.0.1:{http_port}/v2/models/{name}"
    process = ServerProcess(
        f"mlserver-w{workers}{'-batching' if adaptive_batching else ''}",
        [str(executable), "start", str(repository)],
        ready_url=f"{base}/ready",
        cwd=workdir,
        env=SINGLE_THREAD_ENV,
        timeout=START_TIMEOUT_S,
    )
    return Endpoint(process, f"{base}/infer", {"settings.json": settings, "model-settings.json": model_settings})


def tickserve_predictor(
    model_dir: Path,
    workdir: Path,
    *,
    name: str,
    workers: int,
    max_batch_size: int | None = None,
    max_latency_ms: float | None = None,
    runtime: str | None = None,
) -> Endpoint:
    """tickserve's predictor server (`tickserve predictor`, from `tickserve.launch`) on one model directory.

    Micro-batching settings left at None keep the server's own defaults (its documented configuration);
    `runtime="pyfunc"` serves the model through mlflow.pyfunc instead of its native runtime.
    """
    env = {**SINGLE_THREAD_ENV, "TICKSERVE_THREADS": "1"}
    if runtime is not None:
        env["TICKSERVE_RUNTIME"] = runtime
    if max_batch_size is not None:
        env["TICKSERVE_MAX_BATCH_SIZE"] = str(max_batch_size)
    if max_latency_ms is not None:
        env["TICKSERVE_MAX_LATENCY_MS"] = f"{max_latency_ms:g}"
    workdir = Path(tempfile.mkdtemp(prefix="tickserve-", dir=workdir))
    process = launch.predictor(name, model_dir, args=["--workers", str(workers)], env=env, cwd=workdir)
    process.name = f"tickserve-{name}-batch{max_batch_size}-wait{max_latency_ms}-{runtime or 'native'}"
    config = {"command": " ".join(process.command[1:]), "env": env}
    return Endpoint(process, f"{process.url}/v2/models/{name}/infer", config)


def cpu_seconds(pid: int) -> float:
    """User+system CPU seconds used so far by a server process and all its children (workers, pools).

    CPU per request is what a busy shared machine distorts least: throughput there depends on who else
    runs, CPU spent per answer mostly does not.
    """
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total
