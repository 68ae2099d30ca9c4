"""`tickserve rollout status --config registry-sync.yaml [--namespace NS] [--prometheus_url URL]`.

Prints, per model registry-sync maps: stable and canary version, the canary's traffic, the lifecycle phase and
the reason for it, the open pull request and the quality judge's verdict with its n. Exit 0 when every model
was read, 1 naming the models that could not be (the others are still printed), 2 on invalid settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tickserve import kube
from tickserve.monitoring.rollback.status import HEADER, model_status, render
from tickserve.registry_sync.cli import build
from tickserve.registry_sync.git import GitError
from tickserve.registry_sync.settings import SettingsError, load_settings

PROG = "tickserve rollout"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Canary rollouts: the lifecycle of each model.")
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help=__doc__.splitlines()[0])
    status.add_argument("--config", type=Path, help="registry-sync's YAML settings (TICKSERVE_REGISTRY_SYNC_* too)")
    status.add_argument("--namespace", help="namespace of the InferenceServices (default: rollback.namespace)")
    status.add_argument("--kubeconfig", type=Path, help="default: in-cluster, then KUBECONFIG / ~/.kube/config")
    status.add_argument("--prometheus_url", help="Prometheus with the quality judge's series (optional)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    try:
        reconciler = build(settings).reconciler
    except (GitError, OSError) as error:
        print(f"{PROG}: cannot read the GitOps repository: {error}", file=sys.stderr)
        return 1
    api_client = kube.api_client(args.kubeconfig)
    namespace = args.namespace or settings.rollback.namespace
    rows, failed = [HEADER], []
    for mapping in settings.models:
        try:
            rows.append(model_status(reconciler, api_client, namespace, mapping, args.prometheus_url).row())
        except Exception as error:  # one unreadable model must not hide the others
            failed.append(f"{mapping.chart_model} ({type(error).__name__}: {error})")
    print(render(rows))
    if failed:
        print(f"{PROG}: could not read: {'; '.join(failed)}", file=sys.stderr)
        return 1
    return 0
