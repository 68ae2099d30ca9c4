"""A model's canary phase is derived from what is observed: registry tags, open pull requests, the cluster."""

from __future__ import annotations

from tickserve.monitoring.rollback.lifecycle import PR_TAG, ROLLBACK_TAG, Deployed, Phase, decide

NO_CANARY = Deployed(stable="6", canary=None, traffic=0)
CANARY_7 = Deployed(stable="6", canary="7", traffic=10)


def test_a_rolled_back_version_stays_rolled_back_while_its_revert_pr_is_open() -> None:
    tags = {"6": {}, "7": {ROLLBACK_TAG: "canary errors"}}
    verdict = decide(NO_CANARY, tags, named_canary=None, open_pull_request="http://forge/pr/3")
    assert verdict.phase is Phase.ROLLED_BACK
    assert "v7" in verdict.reason and "canary errors" in verdict.reason


def test_a_new_canary_named_by_the_registry_ends_the_rolled_back_phase() -> None:
    tags = {"6": {}, "7": {ROLLBACK_TAG: "canary errors"}, "8": {}}
    verdict = decide(NO_CANARY, tags, named_canary="8", open_pull_request="http://forge/pr/4")
    assert verdict.phase is Phase.PROPOSED


def test_a_canary_with_traffic_is_progressing_and_an_open_pr_is_proposed() -> None:
    assert decide(CANARY_7, {"6": {}, "7": {}}, named_canary="7", open_pull_request=None).phase is Phase.PROGRESSING
    assert decide(NO_CANARY, {"6": {}, "7": {}}, named_canary="7", open_pull_request="pr").phase is Phase.PROPOSED


def test_a_stable_version_that_came_through_a_pr_is_promoted_else_idle() -> None:
    assert decide(NO_CANARY, {"6": {PR_TAG: "pr/2"}}, None, None).phase is Phase.PROMOTED
    assert decide(NO_CANARY, {"6": {}}, None, None).phase is Phase.IDLE


def test_deployed_versions_are_read_from_the_chart_labels_in_both_modes() -> None:
    def predictor(version: str) -> dict:
        return {"labels": {"tickserve.io/model-version": version}}

    standard = {
        "metadata": {"annotations": {"serving.kserve.io/deploymentMode": "Standard"}},
        "spec": {"predictor": predictor("6"), "canary": [{"trafficPercent": 25, "predictor": predictor("7")}]},
    }
    assert Deployed.of(standard) == Deployed(stable="6", canary="7", traffic=25)
    knative = {
        "metadata": {"annotations": {"tickserve.io/stable-version": "6"}},
        "spec": {"predictor": {**predictor("7"), "canaryTrafficPercent": 10}},
    }
    assert Deployed.of(knative) == Deployed(stable="6", canary="7", traffic=10)
