"""One level-triggered reconcile pass per model: registry + base branch + forge -> at most one open PR.

Nothing is remembered between passes. Each pass reads the model from MLflow, the deployed values from the freshly
fetched base branch and our PRs from the forge, asks `planner.plan` what should be deployed, and then converges:

1. writes gate verdicts (`tickserve.gate`) on versions that tried to enter a slot;
2. in sync (or the change was rejected): closes any open PR of ours for the model as obsolete;
3. otherwise builds the content-addressed branch `<prefix>/<model>/<change id>` on the base (values edit +
   manifests refresh in one commit), pushes it with a lease, opens the PR or adopts the open one;
4. links the PR on the version (`tickserve.pr`) and supersedes older open PRs: comment linking the new one,
   close, delete branch.

Because the branch name and the PR marker derive from the desired state, a pass killed at any step and rerun
finds what the killed one made and continues: at most one PR per change. A push refused by its lease, or a base
that moved while the branch was built, restarts the model's pass on the new base (bounded).

`TICKSERVE_REGISTRY_SYNC_CRASH_AT=<step>` is a test hook: the process SIGKILLs itself at that step (see STEPS);
the crash-safety tests use it, nothing else sets it.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tickserve.registry_sync.forges.base import Forge, ForgeUnavailable, Marker, PullRequest
from tickserve.registry_sync.git import CommandFailed, GitError, GitRepo, PushRejected
from tickserve.registry_sync.metrics import Metrics
from tickserve.registry_sync.planner import GATE_PASSED, Plan, Policy, Rejection, plan
from tickserve.registry_sync.registry import ModelState, Registry, RegistryUnavailable
from tickserve.registry_sync.settings import ModelMapping, RegistrySyncSettings
from tickserve.registry_sync.values import ValuesFormatError, read_deployment, write_deployment

log = logging.getLogger("tickserve.registry_sync")
T = TypeVar("T")

CRASH_ENV = "TICKSERVE_REGISTRY_SYNC_CRASH_AT"
STEPS = ("after-gate-tags", "after-commit", "before-push", "after-push", "after-pr", "after-pr-tag", "after-supersede")
MAX_BASE_RETRIES = 3


def crash_hook(step: str) -> None:
    """Default step hook: SIGKILL this process when CRASH_ENV names `step` (test hook, see the module docstring)."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class BaseMoved(RuntimeError):
    """The base branch (or our branch) moved while a change was being built; the pass restarts on the new base."""


@dataclass(frozen=True)
class Outcome:
    """What one pass did for one model. result: in_sync, proposed, adopted, rejected, failed."""

    model: str
    result: str
    detail: str = ""
    pr: PullRequest | None = None
    revision: str = ""  # the base branch commit the pass read (set when in_sync or rejected: what git deploys)


class Reconciler:
    def __init__(
        self,
        settings: RegistrySyncSettings,
        registry: Registry,
        forge: Forge,
        repo: GitRepo,
        metrics: Metrics,
        hook: Callable[[str], None] = crash_hook,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.forge = forge
        self.repo = repo
        self.metrics = metrics
        self.hook = hook
        self.policy = Policy.from_settings(settings)

    # -- dependencies with bounded retries ---------------------------------------------------------------------
    def _call(self, dependency: str, what: Callable[[], T]) -> T:
        delay = self.settings.retry_backoff_seconds
        for attempt in range(1, self.settings.retries + 1):
            try:
                result = what()
            except PushRejected:
                raise
            except (RegistryUnavailable, ForgeUnavailable, GitError) as error:
                if attempt == self.settings.retries:
                    self.metrics.up.labels(dependency).set(0)
                    self.metrics.failures.labels(dependency).inc()
                    log.warning("%s unavailable after %d attempts: %s", dependency, attempt, error)
                    raise
                time.sleep(delay)
                delay *= 2
            else:
                self.metrics.up.labels(dependency).set(1)
                return result
        raise AssertionError("unreachable")

    # -- one model ---------------------------------------------------------------------------------------------
    def reconcile(self, mapping: ModelMapping) -> Outcome:
        """One pass for one model; never raises: failures come back as Outcome(result='failed')."""
        try:
            for _ in range(MAX_BASE_RETRIES):
                try:
                    outcome = self._reconcile(mapping)
                    break
                except BaseMoved as moved:
                    log.info("%s: %s; rebuilding on the new base", mapping.chart_model, moved)
            else:
                outcome = Outcome(mapping.registered_model, "failed", f"base kept moving ({MAX_BASE_RETRIES} tries)")
        except RegistryUnavailable as error:
            outcome = Outcome(mapping.registered_model, "failed", f"MLflow unavailable: {error}")
        except ForgeUnavailable as error:
            outcome = Outcome(mapping.registered_model, "failed", f"forge unavailable: {error}")
        except GitError as error:
            outcome = Outcome(mapping.registered_model, "failed", f"forge unavailable (git): {error}")
        except ValuesFormatError as error:
            outcome = Outcome(mapping.registered_model, "failed", f"values file: {error}")
        except CommandFailed as error:
            outcome = Outcome(mapping.registered_model, "failed", f"manifests refresh: {error}")
        except Exception as error:  # a model's bug must not stop the other models' passes
            log.exception("%s: reconcile failed", mapping.registered_model)
            outcome = Outcome(mapping.registered_model, "failed", f"{type(error).__name__}: {error}")
        self.metrics.passes.labels(mapping.chart_model, outcome.result).inc()
        log.info("%s: %s %s", mapping.registered_model, outcome.result, outcome.detail)
        return outcome

    def _reconcile(self, mapping: ModelMapping) -> Outcome:
        name, chart_model = mapping.registered_model, mapping.chart_model
        repo_settings = self.settings.repo
        state = self._call("mlflow", lambda: self.registry.read(name))
        base_sha = self._call("forge", lambda: self.repo.fetch_base(repo_settings.base_branch))
        current = read_deployment(self._values_text(base_sha), chart_model)
        prs = self._call("forge", lambda: self.forge.pull_requests(chart_model))
        rejections = [Rejection(pr.marker.change, pr.marker.fingerprint) for pr in prs if pr.rejected and pr.marker]
        the_plan = plan(state, chart_model, current, self.policy, rejections)
        for note in the_plan.notes:
            log.warning("%s: %s", name, note)
        self._write_gate_verdicts(state, the_plan)
        self.hook("after-gate-tags")

        open_prs = [pr for pr in prs if pr.state == "open"]
        if not the_plan.should_propose:
            reason = "the base branch already deploys what the registry asks for"
            if the_plan.rejected:
                reason = "the registry asks for a change that was rejected (PR closed without merging)"
            for pr in open_prs:
                self._close(pr, f"Closed by tickserve registry-sync: {reason}.", "closed", chart_model)
            return Outcome(name, "rejected" if the_plan.rejected else "in_sync", reason, revision=base_sha)

        branch = f"{repo_settings.branch_prefix}/{chart_model}/{the_plan.change_id}"
        existing = next((pr for pr in open_prs if pr.branch == branch), None)
        remote = self._call("forge", lambda: self.repo.remote_sha(branch))
        if remote is None or self._call("forge", lambda: self._parent(branch)) != base_sha:
            self._publish(branch, the_plan, base_sha, remote)
        if existing is None:
            title, body = self._describe(mapping, the_plan, state)
            pr, adopted = self._call(
                "forge", lambda: self.forge.open_pull_request(branch, repo_settings.base_branch, title, body)
            )
            self.metrics.pull_requests.labels(chart_model, "adopted" if adopted else "opened").inc()
        else:
            pr, adopted = existing, True
        self.hook("after-pr")
        self._link_pr(state, the_plan, pr)
        self.hook("after-pr-tag")
        for old in open_prs:
            if old.branch != branch:
                link = pr.url or pr.branch
                self._close(
                    old, f"Superseded by {link}: the registry now asks for a newer state.", "superseded", chart_model
                )
        self.hook("after-supersede")
        return Outcome(name, "adopted" if adopted else "proposed", branch, pr)

    def _values_text(self, base_sha: str) -> str:
        path = self.settings.repo.values_file
        try:
            return self.repo.show(base_sha, path)
        except GitError as error:
            raise ValuesFormatError(f"{path} not found on {self.settings.repo.base_branch}: {error}") from error

    def _parent(self, branch: str) -> str | None:
        """The commit our pushed branch was built on (its single commit's parent)."""
        self.repo.git("fetch", "--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}")
        return self.repo.parent_of(f"refs/remotes/origin/{branch}")

    def _publish(self, branch: str, the_plan: Plan, base_sha: str, remote: str | None) -> None:
        """Build the change on `base_sha` and push it with a lease; BaseMoved when the base moved meanwhile."""
        repo_settings = self.settings.repo
        self.repo.branch_from(branch, base_sha)
        values_path = Path(self.repo.path) / repo_settings.values_file
        values_path.write_text(
            write_deployment(values_path.read_text(), the_plan.chart_model, the_plan.desired), encoding="utf-8"
        )
        if repo_settings.manifests_command:
            self.repo.run(repo_settings.manifests_command)
        message = f"registry-sync: {the_plan.chart_model}: {'; '.join(the_plan.summary())}\n\n{self._marker(the_plan).render()}"
        self.repo.commit_all(message, (repo_settings.author_name, repo_settings.author_email))
        self.hook("after-commit")
        self.hook("before-push")
        try:
            self._call("forge", lambda: self.repo.push(branch, expect=remote))
        except PushRejected as rejected:
            raise BaseMoved(str(rejected)) from rejected
        self.hook("after-push")
        now = self._call("forge", lambda: self.repo.remote_sha(repo_settings.base_branch))
        if now != base_sha:
            raise BaseMoved(f"{repo_settings.base_branch} moved from {base_sha[:12]} to {(now or 'nothing')[:12]}")

    def _marker(self, the_plan: Plan) -> Marker:
        return Marker(the_plan.chart_model, the_plan.change_id, the_plan.fingerprint)

    def _close(self, pr: PullRequest, text: str, action: str, chart_model: str) -> None:
        self._call("forge", lambda: self.forge.comment(pr, text))
        self._call("forge", lambda: self.forge.close(pr))
        self._call("forge", lambda: self.forge.delete_branch(pr.branch))
        self.metrics.pull_requests.labels(chart_model, action).inc()
        log.info("%s: %s %s", chart_model, action, pr.url or pr.branch)

    def _write_gate_verdicts(self, state: ModelState, the_plan: Plan) -> None:
        tag = self.settings.gate_tag
        for version, verdict in the_plan.gate_verdicts.items():
            found = state.version(version)
            if found is None or found.tags.get(tag) == verdict:
                continue
            self._call("mlflow", lambda v=version, val=verdict: self.registry.set_tag(state.name, v, tag, val))
            if verdict != GATE_PASSED:
                self.metrics.gate_refusals.labels(the_plan.chart_model).inc()
                log.warning("%s version %s refused by a gate: %s", state.name, version, verdict)

    def _link_pr(self, state: ModelState, the_plan: Plan, pr: PullRequest) -> None:
        if not pr.url:
            return
        desired, current = the_plan.desired, the_plan.current
        versions = {
            slot.version
            for slot, before in ((desired.stable, current.stable), (desired.canary, current.canary))
            if slot is not None and slot != before
        }
        for version in sorted(versions):
            found = state.version(version)
            if found is not None and found.tags.get(self.settings.pr_tag) != pr.url:
                self._call(
                    "mlflow", lambda v=version: self.registry.set_tag(state.name, v, self.settings.pr_tag, pr.url)
                )

    def _describe(self, mapping: ModelMapping, the_plan: Plan, state: ModelState) -> tuple[str, str]:
        summary = the_plan.summary()
        title = f"registry-sync: {mapping.chart_model}: {'; '.join(summary)}"
        ui = (self.settings.mlflow_ui_url or self.settings.tracking_uri).rstrip("/")

        def slot_text(slot) -> str:  # type: ignore[no-untyped-def]
            if slot is None:
                return "none"
            traffic = f", {slot.traffic_percent}% traffic" if hasattr(slot, "traffic_percent") else ""
            return f"version {slot.version} (`{slot.storage_uri}`{traffic})"

        lines = [
            f"tickserve registry-sync proposes a change to chart model `{mapping.chart_model}` "
            f"(MLflow registered model `{mapping.registered_model}`):",
            "",
            *[f"- {line}" for line in summary],
            "",
            "| slot | deployed | proposed |",
            "| --- | --- | --- |",
            f"| stable | {slot_text(the_plan.current.stable)} | {slot_text(the_plan.desired.stable)} |",
            f"| canary | {slot_text(the_plan.current.canary)} | {slot_text(the_plan.desired.canary)} |",
            "",
        ]
        for version in sorted(the_plan.gate_verdicts):
            found = state.version(version)
            if found is None:
                continue
            metrics = ", ".join(
                f"{gate.metric} {found.metrics[gate.metric]:g} ({gate.op} {gate.threshold:g})"
                for gate in self.policy.gates
                if gate.metric in found.metrics
            )
            lines.append(f"Gate metrics of version {version} (run `{found.run_id}`): {metrics or 'none'}.")
            lines.append(f"MLflow: {ui}/#/models/{mapping.registered_model}/versions/{version}")
            lines.append("")
        lines += [
            "The rendered manifests are refreshed in the same commit. Merging deploys it; closing without merging "
            "rejects this exact change until the registry changes.",
            "",
            self._marker(the_plan).render(),
        ]
        return title, "\n".join(lines)


class Controller:
    """A reconcile pass over every mapped model."""

    def __init__(self, settings: RegistrySyncSettings, reconciler: Reconciler, metrics: Metrics) -> None:
        self.settings = settings
        self.reconciler = reconciler
        self.metrics = metrics

    def run_pass(self, only: str | None = None) -> list[Outcome]:
        """Reconcile every mapped model (or only the registered model `only`)."""
        outcomes = [
            self.reconciler.reconcile(mapping)
            for mapping in self.settings.models
            if only is None or mapping.registered_model == only
        ]
        if only is None and all(outcome.result != "failed" for outcome in outcomes):
            self.metrics.last_success.set(time.time())
        return outcomes
