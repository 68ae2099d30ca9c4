"""`tickserve demo`: the main job runs unattended end to end, and `--bad_challenger` shows a canary rollback
happening through real Prometheus, Alertmanager and the rollback receiver."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from tiers import require_binary

from tickserve.monitoring.rollback.lifecycle import ROLLBACK_TAG

pytestmark = pytest.mark.integration


def demo(tmp_path: Path, redis_url: str, database: int, *args: str, env: dict[str, str] | None = None) -> str:
    """Run the demo on a Redis database of its own (a previous run's predictions must not reach its judge)."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{database}"
    redis.Redis.from_url(url).flushdb()
    command = [
        sys.executable, "-m", "tickserve", "demo", "--symbols", "6", "--training_bars", "1200",
        "--workdir", str(tmp_path / "demo"), "--redis_url", url, *args,
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=420, env={**os.environ, **(env or {})}
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    served = re.search(r"stopped: (\d+) predictions served", result.stdout)
    assert served and int(served.group(1)) > 0, output[-2000:]
    assert "servers that died" not in result.stdout
    return result.stdout


def mlflow_client(tmp_path: Path):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'demo' / 'mlflow' / 'mlflow.db'}"
    return MlflowClient(uri, uri)


def views(stdout: str) -> list[str]:
    return stdout.split("tickserve demo  t=")[1:]


def test_demo_trains_registers_serves_and_scores_even_without_prometheus(tmp_path: Path, redis_url: str) -> None:
    """PATH holds no Prometheus or Alertmanager: the demo says so and still serves and scores both tracks."""
    stdout = demo(tmp_path, redis_url, 5, "--duration", "25", env={"PATH": str(tmp_path)})

    assert "lacks the `prometheus` binary" in stdout and "`prometheus-alertmanager` binary" in stdout
    # the live view showed each model's signal and the monitor scored the short horizon
    assert "15s/stable" in stdout and "1m/stable" in stdout and "15s/canary" in stdout
    assert re.search(r"signal-15s\s+stable\s+15s\s+[01]\.\d{3}\s+over [1-9]\d* predictions", stdout), stdout[-3000:]
    assert "not rolled back" in stdout

    client = mlflow_client(tmp_path)
    for name in ("signal-15s", "signal-1m"):
        production = client.get_model_version_by_alias(name, "production")
        assert str(production.version) == "1" and production.current_stage == "Production"
        assert (tmp_path / "demo" / "models" / name / "MLmodel").exists()
    challenger = client.get_model_version_by_alias("signal-15s", "challenger")
    assert str(challenger.version) == "2" and ROLLBACK_TAG not in challenger.tags


def test_a_bad_challenger_is_judged_worse_alerted_and_rolled_back(tmp_path: Path, redis_url: str) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    stdout = demo(
        tmp_path, redis_url, 6, "--bad_challenger", "--canary_share", "0.3", "--after_rollback_seconds", "6",
        "--duration", "150",
    )  # fmt: skip
    summary = stdout[stdout.rindex("canary signal-15s v2 (bad on purpose):") :]

    # the story, in order: the judge's verdict, the alert pending then firing, the receiver's rollback
    judged = re.search(r"t=\s*([\d.]+)s  judge: worse \(canary n=(\d+), stable n=(\d+)", summary)
    pending = re.search(r"t=\s*([\d.]+)s  alert TickserveCanaryQualityWorse signal-15s v2: pending", summary)
    firing = re.search(r"t=\s*([\d.]+)s  alert TickserveCanaryQualityWorse signal-15s v2: firing", summary)
    rolled = re.search(r"t=\s*([\d.]+)s  rollback receiver: demo/signal-15s v2: rolled_back \((.*)\)", summary)
    assert judged and pending and firing and rolled, summary
    assert int(judged.group(2)) >= 100 and int(judged.group(3)) >= 100  # the demo's judge_min_scored
    times = [float(match.group(1)) for match in (judged, pending, firing, rolled)]
    assert times == sorted(times), summary
    assert "canary traffic 30% -> 0%" in rolled.group(2) and "phase RolledBack" in rolled.group(2)
    assert re.search(r"rolled back [\d.]+ s after the canary started taking traffic", summary)

    # after the rollback no request went to the canary while stable kept serving
    after = [view for view in views(stdout) if "rollback (receiver): demo/signal-15s v2: rolled_back" in view]
    counts = [tuple(map(int, re.search(r"requests: stable (\d+), canary (\d+)", v).groups())) for v in after]
    assert len(counts) >= 3 and len({canary for _, canary in counts}) == 1, counts
    assert counts[-1][0] > counts[0][0]

    # the registry: tagged with the alert's evidence, no longer the challenger
    client = mlflow_client(tmp_path)
    version = client.get_model_version("signal-15s", "2")
    assert '"alert": "TickserveCanaryQualityWorse"' in version.tags[ROLLBACK_TAG]
    assert "challenger" not in client.get_registered_model("signal-15s").aliases
    assert str(client.get_model_version_by_alias("signal-15s", "production").version) == "1"


def test_demo_promotion_shows_a_challenger_become_canary_then_stable(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tickserve", "demo", "--promotion", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "trafficPercent: 10" in done.stdout and "in_sync" in done.stdout
