"""registry-sync leader election on a coordination.k8s.io Lease of the real kube-apiserver: of two replicas only
one leads at any moment, and when the leader is SIGKILLed the other takes over once the Lease expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kube import ControlPlane

# A replica reduced to its elector: every 0.1 s it appends "<unix time> <1 if leading else 0>" to its log.
CANDIDATE = """
import sys, time
from kubernetes import config
from tickserve.registry_sync.leader import LeaseElector
kubeconfig, namespace, identity, log = sys.argv[1:]
elector = LeaseElector(config.new_client_from_config(config_file=kubeconfig), namespace=namespace,
                       name="tickserve-registry-sync", identity=identity,
                       lease_duration=3.0, renew_deadline=2.0, retry_period=0.25).start()
with open(log, "a", buffering=1) as out:
    while True:
        out.write(f"{time.time():.3f} {int(elector.is_leader)}\\n")
        time.sleep(0.1)
"""


def leading_times(log: Path) -> list[float]:
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [float(t) for t, leading in rows if leading == "1"]


def wait_for(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def test_two_replicas_never_lead_at_once_and_the_survivor_takes_over_from_a_killed_leader(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    logs = {name: tmp_path / f"{name}.log" for name in ("replica-a", "replica-b")}
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", CANDIDATE, str(control_plane.kubeconfig), namespace, name, str(log)],
            cwd=tmp_path,
            start_new_session=True,
        )
        for name, log in logs.items()
    }
    try:
        wait_for(lambda: all(log.exists() for log in logs.values()), 30)
        wait_for(lambda: any(leading_times(log) for log in logs.values()), 30)
        leader = next(name for name, log in logs.items() if leading_times(log))
        follower = next(name for name in logs if name != leader)
        time.sleep(2)
        assert leading_times(logs[follower]) == []

        os.killpg(processes[leader].pid, signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: bool(leading_times(logs[follower])), 15)

        took_over = leading_times(logs[follower])[0]
        last_led = max(leading_times(logs[leader]))
        assert took_over > last_led, "both replicas led at the same time"
        assert took_over - killed_at < 3.0 + 2.0, f"takeover took {took_over - killed_at:.1f}s"
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
