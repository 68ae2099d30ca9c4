"""Every registry-sync decision, as one pure function: registry state + deployed values -> a `Plan`.

`plan()` reads no clock, network or disk, so the controller can call it on every pass (level-triggered) and the
tests can enumerate its cases. Rules:

- stable is the version holding a stable alias (`champion`), else the newest version in a stable stage
  (`Production`); with neither, the deployed stable stays.
- canary is the version holding a canary alias (`challenger`), else the newest version in a canary stage
  (`Staging`); none, or the same version as the desired stable, means no canary (a promotion drops it).
- canary traffic is the version's `tickserve.traffic` tag; without one an unchanged canary keeps its deployed
  share (so a human's or the rollback controller's edit is not fought) and a new canary starts at the default.
- a version entering a slot must pass every gate on its run's metrics; a refused version leaves that slot as
  deployed, and its reason is reported for the version's `tickserve.gate` tag.
- a change whose PR was closed without merging (same change id, same registry fingerprint) is not proposed
  again; any registry change (new version, alias, stage or traffic tag) lifts that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from tickserve.registry_sync.registry import ModelState, VersionState
from tickserve.registry_sync.settings import Gate, RegistrySyncSettings
from tickserve.registry_sync.values import Canary, Deployment, Slot

GATE_PASSED = "passed"
ROLLBACK_TAG = "tickserve.rollback"  # written by the rollback receiver on a rolled-back version


@dataclass(frozen=True)
class Policy:
    """The settings the planner needs, and nothing else."""

    stable_aliases: tuple[str, ...] = ("champion",)
    stable_stages: tuple[str, ...] = ("Production",)
    canary_aliases: tuple[str, ...] = ("challenger",)
    canary_stages: tuple[str, ...] = ("Staging",)
    canary_traffic_percent: int = 10
    traffic_tag: str = "tickserve.traffic"
    gates: tuple[Gate, ...] = ()

    @classmethod
    def from_settings(cls, settings: RegistrySyncSettings) -> Policy:
        return cls(
            stable_aliases=tuple(settings.stable_aliases),
            stable_stages=tuple(settings.stable_stages),
            canary_aliases=tuple(settings.canary_aliases),
            canary_stages=tuple(settings.canary_stages),
            canary_traffic_percent=settings.canary_traffic_percent,
            traffic_tag=settings.traffic_tag,
            gates=tuple(settings.gates),
        )


@dataclass(frozen=True)
class Rejection:
    """A change a human closed without merging, as recorded in that PR's marker."""

    change_id: str
    fingerprint: str


@dataclass(frozen=True)
class Plan:
    chart_model: str
    current: Deployment
    desired: Deployment
    change_id: str
    fingerprint: str
    rejected: bool
    # version -> GATE_PASSED or the refusal reason, for every version that tried to enter a slot
    gate_verdicts: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.desired != self.current

    @property
    def should_propose(self) -> bool:
        return self.changed and not self.rejected

    def summary(self) -> list[str]:
        """Human lines saying what the change does, for PR titles and bodies."""
        lines = []
        old, new = self.current, self.desired
        if old.stable != new.stable and new.stable is not None:
            was = old.stable.version if old.stable else "none"
            lines.append(f"promote version {new.stable.version} to stable (was {was})")
        if old.canary != new.canary:
            if new.canary is None:
                assert old.canary is not None
                if new.stable is not None and new.stable.version == old.canary.version:
                    lines.append(f"drop canary {old.canary.version} (now stable)")
                else:
                    lines.append(f"retire canary {old.canary.version}")
            elif old.canary is not None and old.canary.version == new.canary.version:
                lines.append(
                    f"step canary {new.canary.version} traffic {old.canary.traffic_percent}% -> "
                    f"{new.canary.traffic_percent}%"
                )
            else:
                lines.append(f"canary version {new.canary.version} at {new.canary.traffic_percent}%")
        return lines


def _pick(state: ModelState, aliases: Sequence[str], stages: Sequence[str]) -> VersionState | None:
    for alias in aliases:
        holder = state.with_alias(alias)
        if holder is not None:
            return holder
    return next((v for v in state.versions if v.stage in stages), None)  # versions are newest first


def gate_verdict(version: VersionState, gates: Sequence[Gate]) -> str:
    reasons = [reason for gate in gates if (reason := gate.check(version.metrics.get(gate.metric)))]
    return "; ".join(reasons) if reasons else GATE_PASSED


def _traffic(version: VersionState, current: Deployment, policy: Policy, notes: list[str]) -> int:
    raw = version.tags.get(policy.traffic_tag)
    if raw is not None:
        try:
            value = int(str(raw).strip().rstrip("%"))
        except ValueError:
            value = -1
        if 0 <= value <= 100:
            return value
        notes.append(f"ignored {policy.traffic_tag}={raw!r} on version {version.version}: not a percentage 0-100")
    if current.canary is not None and current.canary.version == version.version:
        return current.canary.traffic_percent
    return policy.canary_traffic_percent


def change_id(chart_model: str, desired: Deployment) -> str:
    """Content hash of the desired state: the same desired state always gets the same branch name."""
    payload = {
        "model": chart_model,
        "stable": None if desired.stable is None else [desired.stable.version, desired.stable.storage_uri],
        "canary": None
        if desired.canary is None
        else [desired.canary.version, desired.canary.storage_uri, desired.canary.traffic_percent],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def fingerprint(state: ModelState, policy: Policy) -> str:
    """Hash of what registry users change on purpose (versions, aliases, stages, traffic tags), not of the
    tags registry-sync writes itself."""
    payload = [(v.version, v.stage, list(v.aliases), v.tags.get(policy.traffic_tag)) for v in state.versions]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:12]


def plan(
    state: ModelState,
    chart_model: str,
    current: Deployment,
    policy: Policy,
    rejections: Collection[Rejection] = (),
) -> Plan:
    verdicts: dict[str, str] = {}
    notes: list[str] = []

    def admitted(version: VersionState) -> bool:
        verdicts[version.version] = gate_verdict(version, policy.gates)
        return verdicts[version.version] == GATE_PASSED

    stable = current.stable
    wanted_stable = _pick(state, policy.stable_aliases, policy.stable_stages)
    if (
        wanted_stable is not None
        and (stable is None or stable.version != wanted_stable.version)
        and admitted(wanted_stable)
    ):
        stable = Slot(wanted_stable.version, wanted_stable.storage_uri)

    canary: Canary | None = None
    wanted_canary = _pick(state, policy.canary_aliases, policy.canary_stages)
    if wanted_canary is not None and ROLLBACK_TAG in wanted_canary.tags:
        # Rolled back: that version stays out until the registry names a new canary (the rollback receiver also
        # removes its alias; this holds even when a human puts the alias back).
        notes.append(
            f"v{wanted_canary.version} is not canaried again: {ROLLBACK_TAG} = {wanted_canary.tags[ROLLBACK_TAG]}"
        )
        wanted_canary = None
    if wanted_canary is not None and (stable is None or wanted_canary.version != stable.version):
        deployed = current.canary
        if (deployed is not None and deployed.version == wanted_canary.version) or admitted(wanted_canary):
            storage = deployed.storage_uri if deployed and deployed.version == wanted_canary.version else None
            canary = Canary(
                wanted_canary.version,
                storage or wanted_canary.storage_uri,
                _traffic(wanted_canary, current, policy, notes),
            )
        else:
            canary = (
                current.canary if current.canary and current.canary.version != (stable and stable.version) else None
            )

    desired = Deployment(stable=stable, canary=canary)
    cid = change_id(chart_model, desired)
    fp = fingerprint(state, policy)
    rejected = desired != current and Rejection(cid, fp) in set(rejections)
    return Plan(chart_model, current, desired, cid, fp, rejected, verdicts, tuple(notes))
