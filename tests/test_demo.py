"""`tickserve demo --duration`: the main job runs unattended end to end and exits 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_trains_registers_serves_and_scores(tmp_path: Path, redis_url: str) -> None:
    workdir = tmp_path / "demo"
    command = [
        sys.executable, "-m", "tickserve", "demo", "--duration", "25", "--symbols", "3", "--training_bars", "1200",
        "--workdir", str(workdir), "--redis_url", redis_url,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=420)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]

    served = re.search(r"stopped: (\d+) predictions served", result.stdout)
    assert served and int(served.group(1)) > 0, output[-2000:]
    assert "servers that died" not in result.stdout
    # the live view showed each model's signal and the monitor scored the short horizon
    assert "15s/stable" in result.stdout and "1m/stable" in result.stdout and "15s/canary" in result.stdout
    assert re.search(r"signal-15s\s+stable\s+15s\s+[01]\.\d{3}\s+over [1-9]\d* predictions", result.stdout), output[
        -3000:
    ]

    from mlflow import MlflowClient

    uri = f"sqlite:///{workdir / 'mlflow' / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    for name in ("signal-15s", "signal-1m", "signal-15s-mlp"):
        production = client.get_model_version_by_alias(name, "production")
        assert (workdir / "models" / name / "MLmodel").exists()
        assert production.current_stage == "Production"


def test_demo_promotion_shows_a_challenger_become_canary_then_stable(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickserve", "demo", "--promotion", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trafficPercent: 10" in done.stdout and "in_sync" in done.stdout
