"""The canary part of the demo's live view: the judge's verdict, the alert state and the rollback, as they happen.

Each comes from where an operator would look: the verdict and its n per track from the quality monitor's
`tickserve_judge_*` metrics, the alerts (pending, firing) from Prometheus's `/api/v1/alerts`, the rollback from the
rollback receiver's reports. Every change is also written to a timeline with its time since the canary started
taking traffic, and `summary` tells the story at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickserve.demo.rollback import LocalRollback, TrafficSplit
from tickserve.launch import metric_samples
from tickserve.monitoring.rollback.lifecycle import ROLLBACK_TAG
from tickserve.registry_sync.registry import Registry

VERDICT, SCORED, EFFECT = "tickserve_judge_verdict", "tickserve_judge_scored", "tickserve_judge_effect"


@dataclass(frozen=True)
class Judged:
    """The judge's comparison of the demo's canary with stable, as the monitor exports it."""

    verdict: str
    canary_n: int
    stable_n: int
    effect: float

    def __str__(self) -> str:
        return f"{self.verdict} (canary n={self.canary_n}, stable n={self.stable_n}, effect {self.effect:+.3f})"


def judged(metrics_text: str, model: str, canary_version: str, horizon: str) -> Judged | None:
    """The judge's evidence on `model` v`canary_version` at `horizon` in the monitor's /metrics, if any yet."""
    verdict, scored, effect = None, {}, float("nan")
    for name, labels, value in metric_samples(metrics_text):
        if (labels.get("model"), labels.get("model_version"), labels.get("horizon")) != (
            model,
            canary_version,
            horizon,
        ):
            continue
        if name == VERDICT and value == 1.0:
            verdict = labels["verdict"]
        elif name == SCORED:
            scored[labels["track"]] = int(value)
        elif name == EFFECT:
            effect = value
    if verdict is None:
        return None
    return Judged(verdict, scored.get("canary", 0), scored.get("stable", 0), effect)


def alert_states(alerts_payload: dict) -> dict[str, str]:
    """Prometheus `/api/v1/alerts` -> "AlertName model vN" -> pending | firing."""
    states = {}
    for alert in alerts_payload.get("data", {}).get("alerts", []):
        labels = alert.get("labels", {})
        subject = f" {labels['model']} v{labels['model_version']}" if "model_version" in labels else ""
        states[f"{labels.get('alertname', '?')}{subject}"] = alert.get("state", "?")
    return states


class RolloutView:
    """What happened to the canary, kept up to date by the demo's loop (`observe_*`), rendered into the view."""

    def __init__(
        self, split: TrafficSplit, horizon: str, bad: bool, rollback: LocalRollback | None, alerting_note: str
    ) -> None:
        self.split, self.horizon, self.bad, self.rollback = split, horizon, bad, rollback
        self.alerting_note = alerting_note  # why there are no alerts and no rollback, or how they are wired
        self.judge: Judged | None = None
        self.alerts: dict[str, str] = {}
        self.requests = {"stable": 0, "canary": 0}
        self.timeline: list[tuple[float, str]] = []
        self.rolled_back_at: float | None = None
        self._reports_seen = 0

    def count(self, track: str) -> None:
        self.requests[track] += 1

    def observe_judge(self, metrics_text: str, now: float) -> None:
        judge = judged(metrics_text, self.split.model, self.split.canary or "", self.horizon)
        if judge is not None and (self.judge is None or judge.verdict != self.judge.verdict):
            self.timeline.append((now, f"judge: {judge}"))
        self.judge = judge or self.judge

    def observe_alerts(self, alerts_payload: dict, now: float) -> None:
        states = alert_states(alerts_payload)
        for alert, state in sorted(states.items()):
            if self.alerts.get(alert) != state:
                self.timeline.append((now, f"alert {alert}: {state}"))
        for alert in sorted(set(self.alerts) - set(states)):
            self.timeline.append((now, f"alert {alert}: resolved"))
        self.alerts = states

    def observe_rollbacks(self, now: float) -> None:
        reports = self.rollback.reports if self.rollback else []
        for report in reports[self._reports_seen :]:
            self.timeline.append((now, f"rollback receiver: {report}"))
            if report.result == "rolled_back" and self.rolled_back_at is None:
                self.rolled_back_at = now
        self._reports_seen = len(reports)

    def render(self) -> list[str]:
        split, deployed = self.split, self.split.deployed()
        bad = "  (bad on purpose: its answers inverted)" if self.bad else ""
        lines = [
            f"canary rollout of {split.model} ({self.horizon}): stable v{split.stable} | canary v{split.canary} "
            f"at {deployed.traffic}%{bad}",
            f"  requests: stable {self.requests['stable']}, canary {self.requests['canary']}",
            f"  judge (quality monitor): {self.judge or 'waiting for scored outcomes on both tracks ...'}",
        ]
        if self.alerting_note:
            lines.append(f"  alerts and rollback: {self.alerting_note}")
        else:
            alerts = "; ".join(f"{alert} {state}" for alert, state in sorted(self.alerts.items()))
            lines.append(f"  alerts (Prometheus): {alerts or 'none'}")
            latest = self.rollback.reports[-1] if self.rollback and self.rollback.reports else None
            lines.append(f"  rollback (receiver): {latest or 'none'}")
        lines += [f"  t={at:6.1f}s  {event}" for at, event in self.timeline[-8:]]
        return lines

    def summary(self, registry: Registry | None) -> list[str]:
        """The story of the canary, for the end of the demo; `registry` to show the version's tag as MLflow has it."""
        split = self.split
        lines = [f"canary {split.model} v{split.canary}{' (bad on purpose)' if self.bad else ''}:"]
        lines += [f"  t={at:6.1f}s  {event}" for at, event in self.timeline]
        if self.rolled_back_at is not None:
            lines.append(f"  rolled back {self.rolled_back_at:.1f} s after the canary started taking traffic")
        else:
            lines.append(f"  not rolled back; last verdict: {self.judge or 'none'}")
        if registry is not None and split.canary:
            version = registry.read(split.model).version(split.canary)
            if version is not None:
                tag = version.tags.get(ROLLBACK_TAG, "(none)")
                lines.append(
                    f"  MLflow {split.model} v{split.canary}: {ROLLBACK_TAG} = {tag}; aliases: {version.aliases}"
                )
        return lines
