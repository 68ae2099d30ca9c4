"""The command line refuses what it cannot serve with an exit code and a message, before binding any port."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_predictor(*args: str, env: dict[str, str] | None = None, cwd=None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tickserve.predictors", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_a_missing_model_dir_exits_1_naming_it(tmp_path) -> None:
    done = run_predictor("--model_name", "m", "--model_dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert done.returncode == 1
    assert "nowhere does not exist" in done.stderr


@pytest.mark.parametrize(
    ("flag", "value", "named"), [("--track", "blue", "track"), ("--max_batch_size", "0", "max_batch_size")]
)
def test_an_invalid_setting_exits_2_naming_it(tmp_path, flag: str, value: str, named: str) -> None:
    done = run_predictor("--model_dir", str(tmp_path), flag, value, cwd=tmp_path)
    assert done.returncode == 2
    assert named in done.stderr


def test_the_tickserve_command_routes_to_the_predictor(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickserve", "predictor", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0
    assert "--max_latency_ms" in done.stdout and "--http_port" in done.stdout
