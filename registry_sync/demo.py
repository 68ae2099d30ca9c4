"""A promotion end to end on one machine, for `tickserve demo` (the demo calls `promotion_demo`): an embedded
MLflow registry (sqlite), a local bare GitOps repository holding the chart, and registry-sync with forge `none`.

challenger on version 2 -> a branch with the canary; "merge" it -> champion on version 2 -> a branch that
promotes it. Each step prints what registry-sync did and the values diff it proposed.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tickserve.registry_sync.cli import build
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.settings import RegistrySyncSettings

VALUES_FILE = "deploy/values.yaml"
START = """# The demo's GitOps values: registry-sync edits models[] here.
models:
  - name: ticks-1m
    horizon: 1m
    stable:
      version: "1"
      storageUri: s3://tickserve-models/ticks-1m/1
    canary: null
"""


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid", "GIT_COMMITTER_NAME": "demo",
           "GIT_COMMITTER_EMAIL": "demo@example.invalid", "PATH": "/usr/bin:/bin:/usr/local/bin"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def promotion_demo(workdir: Path, say: Callable[[str], None] = print) -> bool:
    """Run the promotion; True when both steps produced the expected branch."""
    import mlflow

    shutil.rmtree(workdir, ignore_errors=True)
    bare, seed = workdir / "gitops.git", workdir / "seed"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    (seed / "deploy").mkdir(parents=True)
    (seed / VALUES_FILE).write_text(START)
    _git(seed, "init", "--quiet", "-b", "main")
    _git(seed, "add", "--all")
    _git(seed, "commit", "--quiet", "-m", "GitOps repository")
    _git(seed, "push", "--quiet", str(bare), "main")

    tracking = f"sqlite:///{workdir / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking, tracking)
    experiment = client.create_experiment("registry-sync-demo", artifact_location=(workdir / "artifacts").as_uri())
    client.create_registered_model("signal-1m")
    for metrics in ({"test_accuracy": 0.57, "sharpe": 1.4}, {"test_accuracy": 0.6, "sharpe": 1.8}):
        run = client.create_run(experiment)
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.create_model_version("signal-1m", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("signal-1m", "champion", "1")

    settings = RegistrySyncSettings(
        tracking_uri=tracking,
        repo={"url": str(bare), "values_file": VALUES_FILE, "workdir": workdir / "clone"},
        forge={"kind": "none"},
        models=[{"registered_model": "signal-1m", "chart_model": "ticks-1m"}],
        metrics_port=None,
        retries=1,
    )
    controller = build(settings, Metrics())
    ok = True
    for step, alias in (
        ("1. alias challenger -> version 2", "challenger"),
        ("2. alias champion -> version 2", "champion"),
    ):
        client.set_registered_model_alias("signal-1m", alias, "2")
        (outcome,) = controller.run_pass()
        say(f"{step}: registry-sync {outcome.result} {outcome.detail}")
        ok &= outcome.result == "proposed"
        if outcome.result != "proposed":
            continue
        say(_git(bare, "diff", "main", outcome.detail, "--", VALUES_FILE))
        _git(bare, "update-ref", "refs/heads/main", outcome.detail)  # a reviewer merges the branch
        say(f"   merged {outcome.detail} into main")
    (outcome,) = controller.run_pass()
    say(f"3. after the merge: registry-sync {outcome.result}")
    return ok and outcome.result == "in_sync"
