"""How each peer is started for the predictor benchmark: tickserve's predictor and MLServer, as child processes.

MLServer lives in its own virtualenv (.bench/mlserver-venv, git-ignored) so that its pinned dependencies
never touch the project's .venv; it is created on first use and reused after. Both servers get the same
worker count and the same environment (one intra-op thread per process), listen on loopback only, and are
considered up only when their v2 model-ready endpoint answers 200.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tickserve.processes import ServerProcess, free_port

REPO = Path(__file__).resolve().parent.parent
MLSERVER_VENV = REPO / ".bench" / "mlserver-venv"
MLSERVER_VERSION = "1.7.1"
# uvloop 0.22 made get_event_loop() raise in MLServer's inference-pool workers (SeldonIO/MLServer#2286, unfixed
# in 1.7.1), so the pool never starts; 0.21 is the last release it works with.
MLSERVER_PACKAGES = [f"mlserver=={MLSERVER_VERSION}", f"mlserver-lightgbm=={MLSERVER_VERSION}", "uvloop<0.22"]
# One compute thread per server process: parallelism comes from worker processes, equally for both servers,
# and 2 cores leave no room for thread pools inside each worker on top of that.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
START_TIMEOUT_S = 180.0


@dataclass
class Endpoint:
    """A started server: its process and the v2 REST URL of the model's infer route."""

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


def mlserver_lightgbm(model_file: Path, workdir: Path, *, name: str, workers: int, n_features: int) -> Endpoint:
    """MLServer with its LightGBM runtime, configured as its docs recommend for CPU-bound models.

    settings.json: `parallel_workers` = the CPU budget (MLServer's parallel-inference guide: size the
    inference pool to the cores), `debug` off. model-settings.json: the LightGBM runtime, the model file,
    and the input declared as one FP32 [-1, F] tensor with the NumPy content type, so a single packed 2-D
    tensor decodes straight to the array `Booster.predict` takes (the same body tickserve gets).
    """
    executable = ensure_mlserver_venv()
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
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
    repository = workdir / "mlserver-repository"
    (repository / name).mkdir(parents=True, exist_ok=True)
    (repository / "settings.json").write_text(json.dumps(settings, indent=2))
    (repository / name / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
    base = f"http://127.0.0.1:{http_port}/v2/models/{name}"
    process = ServerProcess(
        f"mlserver-w{workers}",
        [str(executable), "start", str(repository)],
        ready_url=f"{base}/ready",
        cwd=workdir,
        env=SINGLE_THREAD_ENV,
        timeout=START_TIMEOUT_S,
    )
    return Endpoint(process, f"{base}/infer", {"settings.json": settings, "model-settings.json": model_settings})


def tickserve_predictor(
    model_dir: Path, workdir: Path, *, name: str, workers: int, max_batch_size: int, max_latency_ms: float
) -> Endpoint:
    """tickserve's predictor server (`python -m tickserve.predictors`) on one model directory."""
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "tickserve.predictors",
        "--model_name",
        name,
        "--model_dir",
        str(model_dir),
        "--http_port",
        str(http_port),
        "--grpc_port",
        str(grpc_port),
        "--workers",
        str(workers),
    ]
    env = {
        **SINGLE_THREAD_ENV,
        "TICKSERVE_MAX_BATCH_SIZE": str(max_batch_size),
        "TICKSERVE_MAX_LATENCY_MS": f"{max_latency_ms:g}",
        "TICKSERVE_THREADS": "1",
    }
    base = f"http://127.0.0.1:{http_port}/v2/models/{name}"
    tag = f"tickserve-{name}-b{max_batch_size}-l{max_latency_ms:g}"
    process = ServerProcess(tag, command, ready_url=f"{base}/ready", cwd=workdir, env=env, timeout=START_TIMEOUT_S)
    config = {"command": " ".join(command[1:]), "env": env}
    return Endpoint(process, f"{base}/infer", config)
