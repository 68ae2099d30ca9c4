"""The quality judge inside the quality monitor: one comparison per (model, horizon), exported as Prometheus metrics.

The comparison is between the current canary version and the current stable version of a model: for each track the
version of the most recently made prediction (outcomes arrive late and out of order, so "most recently scored" would
flip back to an old version). When either version changes a new comparison starts from zero (a new canary is a new
test) and the old comparison's series are removed, so an alert on a replaced canary resolves.

Exported per model, model_version (the canary's), stable_version and horizon:
- `tickserve_judge_verdict{verdict="inconclusive|no_worse|worse"}`: 1 for the current verdict, 0 for the others;
  TickserveCanaryQualityWorse fires on verdict="worse";
- `tickserve_judge_statistic`: log of the mixture likelihood ratio of "no difference" (rejects at log(1/alpha));
- `tickserve_judge_p_value`: the always-valid p-value of "no difference";
- `tickserve_judge_effect`: canary accuracy minus stable accuracy, and `tickserve_judge_effect_bound{bound=
  "lower|upper"}`: the running (1 - alpha) confidence sequence of it;
- `tickserve_judge_scored{track}`: scored outcomes per track in the comparison.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from tickserve.monitoring.judge import VERDICTS, Evidence, JudgeConfig, SequentialJudge
from tickserve.transformers.store.predictions import Prediction

LABELS = ("model", "model_version", "stable_version", "horizon")
TRACKS = ("canary", "stable")


class JudgeMetrics:
    def __init__(self, registry: CollectorRegistry, config: JudgeConfig) -> None:
        self.config = config
        self._verdict = Gauge(
            "tickserve_judge_verdict", "1 for the judge's current verdict on the canary", [*LABELS, "verdict"],
            registry=registry,
        )  # fmt: skip
        self._statistic = Gauge(
            "tickserve_judge_statistic", "log mixture likelihood ratio of no difference", LABELS, registry=registry
        )
        self._p_value = Gauge(
            "tickserve_judge_p_value", "Always-valid p-value of no difference", LABELS, registry=registry
        )
        self._effect = Gauge("tickserve_judge_effect", "Canary minus stable accuracy", LABELS, registry=registry)
        self._bound = Gauge(
            "tickserve_judge_effect_bound", "Confidence sequence of the effect", [*LABELS, "bound"], registry=registry
        )
        self._scored = Gauge(
            "tickserve_judge_scored", "Scored outcomes compared", [*LABELS, "track"], registry=registry
        )
        self._counts: dict[tuple[str, str, str, str], list[int]] = {}  # (model, horizon, track, version)
        self._current: dict[tuple[str, str, str], tuple[float, str]] = {}  # (model, horizon, track) -> (time, version)
        self._judges: dict[tuple[str, ...], SequentialJudge] = {}
        self._exported: dict[tuple[str, str], tuple[str, ...]] = {}  # (model, horizon) -> labels

    def observe(self, prediction: Prediction, correct: bool) -> Evidence | None:
        """Count one scored outcome and re-judge its model's comparison; its evidence, or None without one."""
        if prediction.track not in TRACKS:
            return None
        model, horizon = prediction.model, prediction.horizon
        counts = self._counts.setdefault((model, horizon, prediction.track, prediction.model_version), [0, 0])
        counts[0] += correct
        counts[1] += 1
        current = self._current.get((model, horizon, prediction.track))
        if current is None or prediction.predicted_at >= current[0]:
            self._current[(model, horizon, prediction.track)] = (prediction.predicted_at, prediction.model_version)
        canary, stable = (self._current.get((model, horizon, track)) for track in TRACKS)
        if canary is None or stable is None:
            return None
        labels = (model, canary[1], stable[1], horizon)
        judge = self._judges.get(labels)
        if judge is None:
            judge = self._judges[labels] = SequentialJudge(self.config)
            self._forget(model, horizon)
        evidence = judge.update(
            *self._counts[(model, horizon, "canary", canary[1])], *self._counts[(model, horizon, "stable", stable[1])]
        )
        self._export(labels, evidence)
        return evidence

    def _forget(self, model: str, horizon: str) -> None:
        """Remove the replaced comparison's series and state."""
        old = self._exported.pop((model, horizon), None)
        if old is None:
            return
        del self._judges[old]
        for verdict in VERDICTS:
            self._verdict.remove(*old, verdict.value)
        for gauge in (self._statistic, self._p_value, self._effect):
            gauge.remove(*old)
        for bound in ("lower", "upper"):
            self._bound.remove(*old, bound)
        for track in TRACKS:
            self._scored.remove(*old, track)

    def _export(self, labels: tuple[str, ...], evidence: Evidence) -> None:
        self._exported[(labels[0], labels[3])] = labels
        for verdict in VERDICTS:
            self._verdict.labels(*labels, verdict.value).set(1.0 if verdict is evidence.verdict else 0.0)
        self._statistic.labels(*labels).set(evidence.log_likelihood_ratio)
        self._p_value.labels(*labels).set(evidence.p_value)
        self._effect.labels(*labels).set(evidence.effect)
        self._bound.labels(*labels, "lower").set(evidence.lower)
        self._bound.labels(*labels, "upper").set(evidence.upper)
        self._scored.labels(*labels, "canary").set(evidence.scored_canary)
        self._scored.labels(*labels, "stable").set(evidence.scored_stable)
