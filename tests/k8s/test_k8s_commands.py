"""The command lines, environment and probe paths the chart renders are the ones the real programs accept: the
predictor, transformer and ingest containers of the cpu value set run here as local processes (only ports, hosts,
the model directory and the Redis URL are swapped for local ones), and a v2 request flows ingest -> Redis ->
transformer -> predictor. The programs are written concurrently with the chart; this catches flag drift without a
cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import lightgbm
import numpy as np
import pytest
from ruamel.yaml import YAML
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from tickserve.processes import ServerProcess, free_port
from tickserve.transformers.features.engine import feature_names

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "tickserve"
BIN = Path(sys.executable).parent


def with_flags(args: list[str], **flags: object) -> list[str]:
    """`args` with each `--name=value` of `flags` replacing the chart's (or appended when the chart has none)."""
    kept = [arg for arg in args if not any(arg.startswith(f"--{name}=") for name in flags)]
    return kept + [f"--{name}={value}" for name, value in flags.items()]


def local_command(container: dict) -> list[str]:
    """The container's command with `python` / `tickserve` resolved to this virtualenv's."""
    return [str(BIN / part) if part in ("python", "tickserve") else part for part in container["command"]]


def env_of(container: dict, **overrides: str) -> dict[str, str]:
    env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    return {**env, **overrides}


@pytest.fixture(scope="module")
def rendered(helm_cli) -> dict[str, dict]:
    """The cpu value set's first InferenceService (predictor, transformer containers) and the ingest container."""
    text = helm_cli("template", "tickserve", str(CHART), "--values", str(CHART / "ci" / "cpu-values.yaml")).stdout
    docs = [doc for doc in YAML(typ="safe").load_all(text) if doc]
    isvc = next(doc for doc in docs if doc["kind"] == "InferenceService")
    ingest = next(doc for doc in docs if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith("-ingest"))
    return {
        "name": isvc["metadata"]["name"],
        "predictor": isvc["spec"]["predictor"]["containers"][0],
        "transformer": isvc["spec"]["transformer"]["containers"][0],
        "ingest": ingest["spec"]["template"]["spec"]["containers"][0],
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LightGBM model over the transformer's default features, as KServe's storage would mount it."""
    names = feature_names()
    rng = np.random.default_rng(7)
    features = rng.normal(size=(500, len(names)))
    data = lightgbm.Dataset(features, label=(features[:, 0] > 0).astype(int), feature_name=names)
    booster = lightgbm.train({"objective": "binary", "verbose": -1}, data, num_boost_round=5)
    out = tmp_path_factory.mktemp("mnt-models")
    booster.save_model(str(out / "model.txt"))
    return out


@pytest.mark.integration
def test_rendered_containers_serve_a_prediction_end_to_end(rendered: dict, model_dir: Path, redis_url: str) -> None:
    name, predictor, transformer, ingest = rendered["name"], rendered["predictor"], rendered["transformer"], rendered["ingest"]  # fmt: skip
    predictor_port, transformer_port, metrics_port = free_port(), free_port(), free_port()
    readiness = predictor["readinessProbe"]["httpGet"]["path"]
    servers = [
        ServerProcess(
            "ingest",
            local_command(ingest) + with_flags(ingest["args"], metrics_port=metrics_port),
            env=env_of(ingest, TICKSERVE_REDIS_URL=redis_url),
            ready_url=f"http://127.0.0.1:{metrics_port}{ingest['livenessProbe']['httpGet']['path']}",
            timeout=120,
        ),
        ServerProcess(
            "predictor",
            local_command(predictor)
            + with_flags(predictor["args"], model_dir=model_dir, http_port=predictor_port, grpc_port=free_port()),
            env=env_of(predictor),
            ready_url=f"http://127.0.0.1:{predictor_port}{readiness}",
            timeout=120,
        ),
        ServerProcess(
            "transformer",
            local_command(transformer)
            + with_flags(
                transformer["args"],
                http_port=transformer_port,
                grpc_port=free_port(),
                predictor_host=f"127.0.0.1:{predictor_port}",
            ),
            env=env_of(transformer, TICKSERVE_REDIS_URL=redis_url),
            ready_url=f"http://127.0.0.1:{transformer_port}{transformer['readinessProbe']['httpGet']['path']}",
            timeout=120,
        ),
    ]
    for server in servers:
        server.launch()
    try:
        for server in servers:
            server.wait_ready()
        for port, container in ((predictor_port, predictor), (transformer_port, transformer)):
            live = httpx.get(f"http://127.0.0.1:{port}{container['livenessProbe']['httpGet']['path']}", timeout=5)
            assert live.status_code == 200
        request = {"inputs": [{"name": "symbols", "datatype": "BYTES", "shape": [1], "data": ["BTCUSDT"]}]}
        url = f"http://127.0.0.1:{transformer_port}/v2/models/{name}/infer"
        # Ingest answers /metrics before its first features reach Redis; until then the symbol is unknown (404).
        answer = Retrying(
            stop=stop_after_delay(30), wait=wait_fixed(0.5), retry=retry_if_result(lambda r: r.status_code == 404)
        )(httpx.post, url, json=request, timeout=30)
        assert answer.status_code == 200, answer.text
        outputs = {output["name"]: output["data"] for output in answer.json()["outputs"]}
        version = env_of(predictor)["TICKSERVE_MODEL_VERSION"]
        assert outputs["model_version"] == [version]
        # The track and version the chart sets are the labels the predictor's own metrics carry (PodMonitors
        # keep them: honorLabels).
        metrics = httpx.get(f"http://127.0.0.1:{predictor_port}/metrics", timeout=5).text
        assert f'model_version="{version}"' in metrics and 'track="stable"' in metrics
    finally:
        for server in reversed(servers):
            server.stop()
